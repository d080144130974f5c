"""The config reference (docs/configuration.md), generated from the schema itself."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from config.loader import _inner_model, field_bounds
from config.schema import StationConfig


def _bounds(info: Any) -> str:
    return ", ".join(field_bounds(info))


def _default(info: Any) -> str:
    if info.default_factory is not None:
        value = info.default_factory()
        if isinstance(value, BaseModel):
            return "(section)"
        if isinstance(value, list) and value and isinstance(value[0], BaseModel):
            return f"{len(value)} item(s)"
        return f"`{value!r}`"
    if info.default is PydanticUndefined:
        return "(required)"
    return f"`{info.default!r}`"


def _type(info: Any) -> str:
    text = str(info.annotation).replace("typing.", "").replace("config.", "")
    for prefix in ("cameras.", "lights.", "rules.", "pipeline.", "storage.", "messaging.",
                   "calibration.", "schema.", "train.", "hmi.", "opcua.", "mqtt."):
        text = text.replace(prefix, "")
    return text.replace("<class '", "").replace("'>", "").replace("|", "\\|")


def _rows(model: type[BaseModel], prefix: str) -> list[str]:
    rows = []
    nested = []
    for name, info in model.model_fields.items():
        key = prefix + name
        inner = _inner_model(info.annotation)
        desc = (info.description or "").replace("|", "\\|")
        rows.append(f"| `{key}` | {_type(info)} | {_default(info)} | {_bounds(info)} | {desc} |")
        if inner is not None:
            sep = ".N." if "list[" in str(info.annotation) else (
                ".NAME." if "dict[" in str(info.annotation) else ".")
            nested.append((inner, key + sep))
    for inner, key in nested:
        rows.extend(_rows(inner, key))
    return rows


def reference_markdown() -> str:
    """The whole reference as Markdown."""
    head = [
        "# Configuration reference",
        "",
        "Generated from the schema by `station config reference` (a test keeps this file",
        "current). Units are in brackets at the end of each description; `[-]` is unitless.",
        "`N` is a list index, `NAME` a key you choose. Override any key with",
        "`--set dotted.key=value` or `STATION_SECTION__KEY=value` (see config/loader.py).",
        "Relative `[path]` values are resolved against the folder of the config file (for a",
        "shipped config such as `default`, the repository's `config/` folder), not the working",
        "directory; `station config check` says which folder and whether the files exist.",
        "",
        "| key | type | default | range | description |",
        "|---|---|---|---|---|",
    ]
    return "\n".join([*head, *_rows(StationConfig, "")]) + "\n"
