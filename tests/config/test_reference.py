"""docs/configuration.md is the reference generated from the schema, and is current."""

from __future__ import annotations

from pathlib import Path

from config.reference import reference_markdown

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_reference_is_current() -> None:
    """Regenerate with `station config reference > docs/configuration.md` when this fails."""
    assert DOC.read_text() == reference_markdown()


def test_reference_lists_nested_keys_with_units() -> None:
    """Nested keys appear with their list/dict placeholders and units."""
    text = reference_markdown()
    assert "| `cameras.N.timeout_s` |" in text
    assert "| `rules.classes.NAME.min_area_mm2` |" in text
    assert "[s]" in text
