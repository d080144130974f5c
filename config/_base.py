"""The base class of every config section: strict, documented, immutable."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A config section: unknown keys are errors, values are validated on assignment.

    Every field carries a description that ends with its unit in brackets, e.g.
    ``"Grab timeout per camera [s]"``; ``[-]`` marks a unitless value. ``tests/config``
    checks that no field lacks one.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)
