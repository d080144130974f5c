"""``station bench`` on small frames with a tiny model (the real figures are in docs), and the
end-to-end mode against a real ``station run`` with tiny replay frames."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from station.cli import main
from tests.models.tester import save_tiny

ROOT = Path(__file__).resolve().parents[2]


def test_bench_small_frame_both_modes(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                      ) -> None:
    """Every stage is timed (median and p99), the naive loop runs once per model, the tiny
    model's output agrees with it (to float rounding away from the border, where OpenCV's
    demosaic differs), whole-frame mode is compared with tiled, the worst-case maps are
    post-processed, and the JSON carries the same figures with device, torch and commit."""
    ckpt = save_tiny(tmp_path / "tiny.ckpt")
    out = tmp_path / "bench.json"
    code = main(["bench", "--model", str(ckpt), "--device", "cpu", "--size", "300x200",
                 "--tile-size", "128", "--repeats", "2", "--warmup", "0", "--mode", "both",
                 "--json", str(out)])
    assert code == 0
    table = capsys.readouterr().out
    for word in ("preprocess", "tile", "infer", "blend", "postprocess", "verdict", "total",
                 "median ms", "p99 ms", "naive loop", "speed-up", "max |dp|", "vs tiled",
                 "worst noise", "worst specks"):
        assert word in table
    data = json.loads(out.read_text())
    env = data["environment"]
    assert env["device"] == "cpu" and env["torch"] and env["git_commit"]
    tiled, whole = data["runs"]
    assert (tiled["mode"], whole["mode"]) == ("tiled", "whole")
    assert tiled["frame"] == {"width": 300, "height": 200, "pixel_format": "BayerRG8"}
    assert tiled["tiles"] == 6 and tiled["batch"] == 6 and len(tiled["runs_ms"]) == 2
    assert set(tiled["stages_ms"]) == set(tiled["stages_p99_ms"])
    assert tiled["stages_p99_ms"]["total"] >= tiled["stages_ms"]["total"]
    assert tiled["naive_ms"] > 0 and tiled["speedup"] > 0
    assert whole["naive_ms"] == tiled["naive_ms"]  # measured once per model
    assert tiled["max_abs_diff"] < 0.05
    assert tiled["max_abs_diff_interior"] < 1e-5
    assert tiled["class_disagreement"] < 0.01
    assert whole["vs_tiled"]["class_disagreement"] < 0.5
    for run in (tiled, whole):
        noise, specks = run["worst_case"]["noise"], run["worst_case"]["specks"]
        assert noise["postprocess_ms"] > 0 and 1 <= noise["regions"] <= 4
        assert specks["regions"] == 38 * 25 and specks["capped"]  # one per 8 x 8 px
        assert specks["listed"] == 100


def test_several_models_in_one_invocation(tmp_path: Path) -> None:
    """--encoder takes a list ('default' is the checkpoint, others random-weight smp Unets);
    --only-noise times post-processing of the worst cases without running the networks."""
    ckpt = save_tiny(tmp_path / "tiny.ckpt")
    out = tmp_path / "bench.json"
    assert main(["bench", "--model", str(ckpt), "--encoder", "default,efficientnet-b0",
                 "--device", "cpu", "--size", "160x128", "--only-noise", "--repeats", "1",
                 "--json", str(out)]) == 0
    runs = json.loads(out.read_text())["runs"]
    assert [r["model"]["name"] for r in runs] == ["default", "efficientnet-b0"]
    assert runs[1]["model"]["encoder"] == "efficientnet-b0" and runs[1]["runs_ms"] == []
    assert all(r["worst_case"]["noise"]["postprocess_ms"] > 0 for r in runs)


def test_bench_rejects_bad_options() -> None:
    """--size must be WxH, --mode tiled/whole/both."""
    with pytest.raises(SystemExit, match="5472x3648"):
        main(["bench", "--size", "big"])
    with pytest.raises(SystemExit, match="--mode"):
        main(["bench", "--mode", "sideways"])


def test_the_harness_never_imports_the_command_and_loads_torch_lazily() -> None:
    """station/bench.py is the harness; the command module imports it, not the reverse, and
    importing it (as `station --help` does) does not load torch."""
    code = ("import sys, station.bench; "
            "print('station.commands.bench' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == ["False", "False"]


def test_end_to_end_with_two_replay_cameras(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """--e2e starts station run with two BayerRG8 replay cameras (tiny frames, a tiny model,
    the CPU), triggers parts as fast as the queue takes them and then one at a time: every
    part gets its verdict, in order, and the daemon stops cleanly."""
    ckpt = save_tiny(tmp_path / "tiny.ckpt")
    out = tmp_path / "e2e.json"
    assert main(["bench", "--e2e", "--device", "cpu", "--size", "192x128", "--parts", "6",
                 "--duration", "60", "--serial-parts", "2", "--warmup-parts", "1",
                 "--set", f"model.checkpoint={ckpt}", "--set", "pipeline.tile_size=64",
                 "--json", str(out)]) == 0
    assert "parts/s" in capsys.readouterr().out
    e2e = json.loads(out.read_text())["e2e"]
    burst, serial = e2e["throughput"], e2e["serial"]
    assert burst["parts"] == 6 and burst["lost"] == 0 and burst["reordered"] == 0
    assert burst["parts_per_s"] > 0 and burst["latency_ms"]["p99"] > 0
    assert sum(burst["verdicts"].values()) == 6
    assert serial["parts"] == 2 and serial["lost"] == 0
    assert "pipeline" in serial["stages_ms"] and "acquire" in serial["stages_ms"]
    assert e2e["frame"] == {"width": 192, "height": 128, "pixel_format": "BayerRG8",
                            "cameras": 2}
    assert e2e["exit_code"] == 0


def test_a_misspelt_encoder_fails_before_anything_runs(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    """An unknown encoder in the list is refused at once, naming it."""
    code = main(["bench", "--encoder", "default,efficientnet-b99", "--device", "cpu",
                 "--only-noise", "--size", "64x64"])
    assert code != 0
    assert "efficientnet-b99" in capsys.readouterr().err


def test_a_failing_run_is_recorded_and_the_others_still_count(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run that raises (here: whole-frame mode cannot build its inspector) is written down
    with its error; the tiled run before it keeps its figures and the bench exits 0."""
    import station.bench as harness

    real = harness._inspector

    def whole_fails(ckpt: object, s: harness.BenchSettings, mode: str) -> object:
        if mode == "whole":
            raise RuntimeError("CUDA out of memory (simulated)")
        return real(ckpt, s, mode)  # type: ignore[arg-type]

    monkeypatch.setattr(harness, "_inspector", whole_fails)
    ckpt = save_tiny(tmp_path / "tiny.ckpt")
    out = tmp_path / "b.json"
    assert main(["bench", "--model", str(ckpt), "--device", "cpu", "--size", "128x96",
                 "--tile-size", "64", "--repeats", "1", "--warmup", "0", "--no-naive",
                 "--mode", "both", "--json", str(out)]) == 0
    tiled, whole = json.loads(out.read_text())["runs"]
    assert tiled["error"] is None and tiled["stages_ms"]["total"] > 0
    assert whole["error"] == "RuntimeError: CUDA out of memory (simulated)"


def test_worst_cases_fit_a_sigmoid_head(tmp_path: Path) -> None:
    """The shipped model has a sigmoid head (no background channel): its speck map is specks
    on background too (one 2 x 2 px region per 8 x 8 px, capped)."""
    out = tmp_path / "b.json"
    assert main(["bench", "--device", "cpu", "--size", "128x96", "--only-noise",
                 "--repeats", "1", "--json", str(out)]) == 0
    (run,) = json.loads(out.read_text())["runs"]
    specks, noise = run["worst_case"]["specks"], run["worst_case"]["noise"]
    assert specks["regions"] == 12 * 16 and specks["capped"]
    assert specks["defect_pixels"] == 4 * specks["listed"] == 400
    assert noise["regions"] >= 1 and noise["postprocess_ms"] > 0


def test_the_image_heads_box_is_timed_once_per_model_with_a_head(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The shipped model has an image head: what its box costs a failed part (one more
    encoder pass of the frame) is timed once, in the table and the JSON; a model without a
    head has no such line."""
    out = tmp_path / "bench.json"
    assert main(["bench", "--device", "cpu", "--size", "256x192", "--repeats", "1",
                 "--warmup", "0", "--mode", "whole", "--no-naive", "--json", str(out)]) == 0
    assert "head box" in capsys.readouterr().out
    (run,) = json.loads(out.read_text())["runs"]
    assert run["locate_ms"]["median"] > 0 and run["locate_ms"]["p99"] >= run["locate_ms"][
        "median"]
    tiny = save_tiny(tmp_path / "tiny.ckpt")
    assert main(["bench", "--model", str(tiny), "--device", "cpu", "--size", "128x96",
                 "--repeats", "1", "--warmup", "0", "--no-naive", "--json", str(out)]) == 0
    assert "head box" not in capsys.readouterr().out
    assert json.loads(out.read_text())["runs"][0]["locate_ms"] is None
