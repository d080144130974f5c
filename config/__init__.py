"""The station's configuration: schema, loader, shipped configs, and the errors module."""

from config.loader import dump_config, find_config, load_config, shipped_config
from config.schema import SCHEMA_VERSION, StationConfig

__all__ = [
    "SCHEMA_VERSION",
    "StationConfig",
    "dump_config",
    "find_config",
    "load_config",
    "shipped_config",
]
