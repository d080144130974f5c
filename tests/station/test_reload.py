"""station.reload: which sections a reload applies, and refusals that name the part."""

from __future__ import annotations

from pathlib import Path

import pytest

from config import load_config
from config.errors import ConfigError
from station.reload import ReloadError, changed_sections, merged_config, prepare


def test_changed_and_merged_sections() -> None:
    """model/rules/pipeline/calibration come from the new file; other changes are listed."""
    old = load_config("default", [], env={})
    new = load_config("default", ["rules.default.min_score=0.5", "cycle.queue_depth=5",
                                  "cameras.0.timeout_s=9"], env={})
    assert changed_sections(old, new) == ["cameras", "cycle"]
    merged = merged_config(old, new)
    assert merged.rules.default.min_score == 0.5
    assert merged.cycle.queue_depth == old.cycle.queue_depth
    assert merged.cameras == old.cameras


def test_refusals_name_the_part(tmp_path: Path) -> None:
    """A config the schema refuses and a missing checkpoint: ReloadError saying which."""
    running = load_config("default", [], env={})

    def bad_config() -> object:
        raise ConfigError("rules.default.min_score: must be <= 1 (got 7)")

    with pytest.raises(ReloadError, match=r"^config: rules\.default\.min_score"):
        prepare(bad_config, running, None, tmp_path, None, {})  # type: ignore[arg-type]
    missing = load_config("default", [f"model.checkpoint={tmp_path / 'none.ckpt'}"], env={})
    with pytest.raises(ReloadError, match=r"^model \("):
        prepare(lambda: missing, running, None, tmp_path, None, {})
