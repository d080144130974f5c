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
