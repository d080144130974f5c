"""``station collect`` through the CLI entry point (its work: tests/station/test_plant_collector.py
and tests/e2e/test_fleet.py)."""

from __future__ import annotations

import pytest

from station.cli import main


def test_a_bad_collector_config_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """A table name that is not a plain identifier: exit 2 with the key and the rule, before
    any connection."""
    assert main(["collect", "--set", "collect.table=bad name"]) == 2
    assert "collect.table" in capsys.readouterr().err


def test_help_names_the_extra_and_the_docs(capsys: pytest.CaptureFixture[str]) -> None:
    """`station collect --help` says what it does, the extra it needs and where to read more."""
    with pytest.raises(SystemExit):
        main(["collect", "--help"])
    out = capsys.readouterr().out
    flat = " ".join(out.split()).replace("- ", "-")
    assert "inspection-station[collect]" in flat and "docs/fleet.md" in flat
