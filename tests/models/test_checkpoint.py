"""The checkpoint format: round trip, digest, and refusal of corrupt or mismatched files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from config.errors import CheckpointError
from models import DEFAULT_CHECKPOINT
from models.checkpoint import (
    FORMAT,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
    weights_sha256,
)
from tests.models.tester import save_tiny, tiny_model, tiny_spec


def test_round_trip(tmp_path: Path) -> None:
    """Weights, spec, thresholds, provenance and the digest survive a save and a load."""
    spec = tiny_spec()
    model = tiny_model(spec, seed=3)
    meta = save_checkpoint(tmp_path / "m.ckpt", model, name="rt", spec=spec, patch_size=128,
                           thresholds={"Crack": 0.7}, trained=True,
                           provenance={"epochs": 3, "dataset": "tiles"})
    ckpt = load_checkpoint(tmp_path / "m.ckpt")
    assert ckpt.meta == meta
    assert ckpt.meta.trained and ckpt.meta.threshold("Crack") == 0.7
    assert ckpt.meta.threshold("Blowhole") == 0.5
    assert ckpt.meta.model_id == f"rt@{meta.weights_sha256[:12]}"
    for k, v in model.state_dict().items():
        assert torch.equal(ckpt.model.state_dict()[k], v)
    assert not ckpt.model.training
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(ckpt.model(x), model(x))


def test_digest_is_independent_of_key_order() -> None:
    """The sha256 is over sorted keys, so the order of the dict does not matter."""
    a = {"x": torch.ones(2), "y": torch.zeros(3)}
    b = {"y": torch.zeros(3), "x": torch.ones(2)}
    assert weights_sha256(a) == weights_sha256(b)
    assert weights_sha256(a) != weights_sha256({"x": torch.ones(2), "y": torch.ones(3)})


def _payload(path: Path) -> dict[str, object]:
    data = torch.load(path, weights_only=True)
    assert isinstance(data, dict)
    return data


@pytest.mark.parametrize("damage", ["truncate", "garbage", "flip"])
def test_corrupt_files_are_refused(tmp_path: Path, damage: str) -> None:
    """Truncated files, random bytes and a flipped byte in the weights all raise
    CheckpointError naming the file."""
    path = save_tiny(tmp_path / "bad.ckpt")
    raw = bytearray(path.read_bytes())
    if damage == "truncate":
        path.write_bytes(raw[: len(raw) // 2])
    elif damage == "garbage":
        path.write_bytes(b"\x00not a checkpoint" * 100)
    else:  # one byte inside the largest tensor's stored bytes
        state = _payload(path)["state_dict"]
        assert isinstance(state, dict)
        big = max(state.values(), key=lambda t: t.numel())
        blob = big.contiguous().view(-1).view(torch.uint8).numpy().tobytes()
        pos = bytes(raw).find(blob)
        assert pos > 0
        raw[pos + len(blob) // 2] ^= 0xFF
        path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match=r"bad\.ckpt"):
        load_checkpoint(path)


def test_edited_weights_fail_the_digest(tmp_path: Path) -> None:
    """Weights changed after saving (a valid file, wrong content) fail the sha256 check."""
    path = save_tiny(tmp_path / "m.ckpt")
    data = _payload(path)
    state = data["state_dict"]
    assert isinstance(state, dict)
    key = next(iter(state))
    state[key] = state[key] + 1
    torch.save(data, path)
    with pytest.raises(CheckpointError, match="digest mismatch"):
        read_checkpoint(path)


def test_mismatched_meta_and_weights(tmp_path: Path) -> None:
    """Meta describing another network (here: one more class) than the weights is refused,
    saying which tensors do not fit."""
    path = save_tiny(tmp_path / "m.ckpt")
    data = _payload(path)
    meta = json.loads(str(data["meta"]))
    meta["spec"]["classes"].append("Fray")
    data["meta"] = json.dumps(meta)
    torch.save(data, path)
    with pytest.raises(CheckpointError, match=r"do not fit.*wrong shape"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [("format", "something-else", "not an inspection-station checkpoint"),
     ("format_version", 99, "format version 99"),
     ("meta", "{not json", "invalid meta"),
     ("state_dict", [1, 2], "state_dict")],
)
def test_wrong_container_fields(tmp_path: Path, field: str, value: object, match: str) -> None:
    """Wrong format name, version, meta or state dict are each named in the error."""
    path = save_tiny(tmp_path / "m.ckpt")
    data = _payload(path)
    data[field] = value
    torch.save(data, path)
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(path)


def test_pickled_objects_are_not_loaded(tmp_path: Path) -> None:
    """A file holding arbitrary pickled objects is refused (weights_only loading)."""
    path = tmp_path / "evil.ckpt"
    torch.save({"format": FORMAT, "obj": Path("/")}, path)
    with pytest.raises(CheckpointError, match="unreadable"):
        read_checkpoint(path)


def test_missing_file(tmp_path: Path) -> None:
    """A missing file says so."""
    with pytest.raises(CheckpointError, match="no such file"):
        read_checkpoint(tmp_path / "none.ckpt")


def test_shipped_default_model() -> None:
    """The default checkpoint verifies, is small, starts with the background class and (while
    untrained) has the documented magnetic-tile classes (models/default/README.md)."""
    meta, state = read_checkpoint(DEFAULT_CHECKPOINT)
    assert DEFAULT_CHECKPOINT.stat().st_size < 25e6
    assert meta.spec.classes[0] == "background"
    if not meta.trained:
        assert meta.spec.classes == ["background", "Blowhole", "Break", "Crack", "Fray",
                                     "Uneven"]
        assert meta.spec.encoder == "tu-efficientnet_lite0" and meta.spec.head == "softmax"
    assert state
