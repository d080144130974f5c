"""models.distributed: the epoch shared out among ranks, and ``station train`` under torchrun
with two processes on the CPU (gloo), as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from models.checkpoint import load_checkpoint
from models.distributed import Dist, ShardedSampler, agree, setup, shard, share, wrap
from tests.models.test_data import make_tile_dataset
from tests.station.test_cmd_train import TINY


def test_shards_cover_the_epoch_in_equal_shares() -> None:
    """Every item goes to some rank; each rank gets the same count (the epoch padded from its
    start), so every rank takes the same number of steps."""
    items = list(range(10))
    shares = [shard(items, r, 3) for r in range(3)]
    assert [len(s) for s in shares] == [4, 4, 4]
    assert set().union(*shares) == set(items)
    assert sorted(x for s in shares for x in s) == sorted([*items, 0, 1])
    assert shard(items, 0, 1) == items and shard([], 1, 2) == []


def test_a_sharded_sampler_splits_one_draw_among_ranks() -> None:
    """Two ranks over the same sampler: disjoint halves of the same epoch, and len() is the
    share's length."""
    draw = list(range(7))
    ranks = [ShardedSampler(draw, Dist(rank=r, world=2)) for r in range(2)]  # type: ignore[arg-type]
    got = [list(s) for s in ranks]
    assert got == [[0, 2, 4, 6], [1, 3, 5, 0]] and [len(s) for s in ranks] == [4, 4]


def test_one_process_changes_nothing() -> None:
    """Without torchrun's environment: a single-process Dist; wrap, agree and share are
    identities."""
    env = {k: os.environ.pop(k) for k in ("WORLD_SIZE", "RANK") if k in os.environ}
    try:
        dist = setup("cpu")
    finally:
        os.environ.update(env)
    assert dist == Dist() and dist.is_main and not dist.active
    import torch

    m = torch.nn.Linear(1, 1)
    assert wrap(m, dist) is m
    assert agree(True, dist, torch.device("cpu")) and not agree(False, dist, torch.device("cpu"))
    assert share({"a": 1}, dist) == {"a": 1}


def test_two_processes_under_torchrun_write_one_loadable_checkpoint(tmp_path: Path) -> None:
    """``torchrun --standalone --nproc-per-node 2 station train`` on the CPU (gloo): rank 0
    alone writes the run's files (no file twice, nothing of rank 1's), best.pt loads with its
    operating point, the summary counts two processes and each rank took half of every
    epoch's steps. The operating point is the one a single process chooses on the same
    weights with the station's own scorer (as ``station train`` does)."""
    data = make_tile_dataset(tmp_path / "tiles", per_class=2)
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "STATION_LOG_LEVEL": "info",
           "PYTHONUNBUFFERED": "1"}
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "station.cli", "train", "--data", str(data), "--out", str(out), "--epochs", "2",
         *TINY],
        capture_output=True, text=True, env=env, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.count("best checkpoint") == 2  # both ranks report rank 0's result
    ckpt = load_checkpoint(out / "best.pt")
    assert ckpt.meta.trained and ckpt.meta.operating_point is not None
    summary = json.loads((out / "summary.json").read_text())
    # 16 items per epoch, 8 per rank, batch 4: 2 steps per epoch on each rank
    assert summary["steps"] == 4 and summary["epochs_run"] == 2
    assert ckpt.meta.provenance["processes"] == 2
    names = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert names == sorted(["best.pt", "last.pt", "config.json", "history.csv", "history.json",
                            "loss_curve.png", "summary.json", "split/test.txt", "split/train.txt",
                            "split/val.txt"]), names
    assert done.stderr.count("train.start") == 1  # rank 1's info lines are quiet
    import torch

    from config.train import TrainConfig
    from models.scoring import choose_operating_point
    from models.train import prepare_data
    from station.qualify import scorer_factory

    cfg = TrainConfig.model_validate_json((out / "config.json").read_text())
    ds, split = prepare_data(cfg)
    alone, _ = choose_operating_point(scorer_factory()(ckpt, torch.device("cpu")), ds,
                                      list(split.val), ckpt.meta.spec.defect_classes, cfg, "")
    assert alone.model_dump(exclude={"chosen_on"}) == ckpt.meta.operating_point.model_dump(
        exclude={"chosen_on"})
