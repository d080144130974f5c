"""``station bench`` on a small frame with a tiny model (the real figures are in docs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from station.cli import main
from tests.models.tester import save_tiny


def test_bench_small_frame(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every stage is timed, the naive loop runs, and the tiny model's output agrees with the
    naive loop's (to float rounding away from the border, where OpenCV's demosaic differs);
    the JSON carries the same figures."""
    ckpt = save_tiny(tmp_path / "tiny.ckpt")
    out = tmp_path / "bench.json"
    code = main(["bench", "--model", str(ckpt), "--device", "cpu", "--size", "300x200",
                 "--tile-size", "128", "--repeats", "2", "--warmup", "0", "--json", str(out)])
    assert code == 0
    table = capsys.readouterr().out
    for word in ("preprocess", "tile", "infer", "blend", "postprocess", "verdict", "total",
                 "naive loop", "speed-up", "max |dp|"):
        assert word in table
    data = json.loads(out.read_text())
    assert data["frame"] == {"width": 300, "height": 200, "pixel_format": "BayerRG8"}
    assert data["tiles"] == 6 and len(data["runs_ms"]) == 2
    assert data["naive_ms"] > 0 and data["speedup"] > 0
    assert data["max_abs_diff"] < 0.05
    assert data["max_abs_diff_interior"] < 1e-5
    assert data["class_disagreement"] < 0.01


def test_bench_rejects_a_bad_size(capsys: pytest.CaptureFixture[str]) -> None:
    """--size must be WxH."""
    with pytest.raises(SystemExit, match="5472x3648"):
        main(["bench", "--size", "big"])
