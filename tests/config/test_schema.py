"""Tests of config.schema: every field is documented with a unit and has a default."""

from __future__ import annotations

import re
from typing import Any

import pytest
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from config.loader import _inner_model
from config.schema import StationConfig


def leaf_fields(model: type[BaseModel], prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    for name, info in model.model_fields.items():
        out.append((prefix + name, info))
        inner = _inner_model(info.annotation)
        if inner is not None:
            out.extend(leaf_fields(inner, f"{prefix}{name}."))
    return out


FIELDS = leaf_fields(StationConfig)


@pytest.mark.parametrize(("key", "info"), FIELDS, ids=[k for k, _ in FIELDS])
def test_every_field_has_a_unit_and_a_default(key: str, info: Any) -> None:
    """Each key's description ends with its unit in brackets, and it has a default."""
    assert info.description, f"{key} has no description"
    unit = re.search(r"\[[^\[]+[\])]$", info.description.rstrip())  # "[s]", "[0..1)"
    assert unit, f"{key}: no [unit] at the end of {info.description!r}"
    has_default = info.default is not PydanticUndefined or info.default_factory is not None
    assert has_default, f"{key} has no default"


def test_defaults_validate() -> None:
    """The schema's own defaults form a valid config."""
    cfg = StationConfig()
    assert cfg.camera("cam1").name == "cam1"
    with pytest.raises(KeyError, match="the config has: cam0, cam1"):
        cfg.camera("cam9")


def test_hardware_trigger_needs_line_triggered_cameras() -> None:
    """cycle.trigger hardware with a camera that is not line-triggered is refused, naming
    the camera, its setting and the fix; with every camera line-triggered it loads."""
    from config import load_config
    from config.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        load_config("default", ["cycle.trigger=hardware", "cameras.1.replay.trigger=external"],
                    env={})
    text = str(err.value)
    assert "cam0 (replay: replay.trigger is 'software')" in text and "cam1" not in text
    assert "genicam.trigger: hardware" in text and "cycle.trigger: software" in text
    cfg = load_config("default", ["cycle.trigger=hardware", "cameras.0.replay.trigger=external",
                                  "cameras.1.replay.trigger=external"], env={})
    assert cfg.cycle.trigger == "hardware" and cfg.cycle.pipeline_depth == 1
    with pytest.raises(ConfigError, match=r"cam0 \(genicam: genicam.trigger is 'auto'\)"):
        load_config("default", ["cycle.trigger=hardware", "cameras.0.backend=genicam",
                                "cameras.1.replay.trigger=external"], env={})


def test_pair_timeout_covers_the_window_and_depths_are_bounded() -> None:
    """pair_timeout_ms shorter than pair_window_ms is refused with both values and the fix;
    pipeline_depth and the pairing times have ranges."""
    from config import load_config
    from config.errors import ConfigError

    with pytest.raises(ConfigError, match=r"pair_timeout_ms = 20 is shorter than "
                       r"cycle.pair_window_ms = 50"):
        load_config("default", ["cycle.pair_timeout_ms=20"], env={})
    for bad in ("cycle.pipeline_depth=0", "cycle.pipeline_depth=9", "cycle.pair_window_ms=0",
                "cameras.0.replay.line_period_ms=-1"):
        with pytest.raises(ConfigError):
            load_config("default", [bad], env={})
