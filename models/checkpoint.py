"""The checkpoint format: weights plus everything needed to run them, in one file.

A checkpoint is a ``torch.save`` file holding a plain dict (no pickled classes, so it loads
with ``torch.load(weights_only=True)``)::

    {"format": "inspection-station/checkpoint",
     "format_version": 1,
     "meta": "<JSON text of CheckpointMeta>",   # construction config, classes, thresholds, ...
     "state_dict": {name: tensor, ...}}

``meta.weights_sha256`` is the sha256 of the weights in a canonical serialisation (keys in
sorted order, each as name, dtype, shape and raw little-endian bytes; see
:func:`weights_sha256`), so it does not depend on how the file was written. Loading checks the
format, the meta, the digest, and that the weights fit the network the meta describes; any
failure is a :class:`config.errors.CheckpointError` naming the file and what is wrong.
See ``docs/model-format.md``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from torch import nn

from config.errors import CheckpointError, ModelError
from models.build import ModelSpec, build_model
from models.operating_point import OperatingPoint, legacy

FORMAT = "inspection-station/checkpoint"
FORMAT_VERSION = 2
#: Versions this station reads (1: no operating point field; its provenance may hold one).
READABLE_VERSIONS = (1, 2)
#: ImageNet statistics (for inputs scaled to [0, 1]).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Normalisation(BaseModel):
    """``x = (pixel / max_value - mean[c]) / std[c]`` per input channel."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mean: list[float] = Field(description="Per-channel mean of inputs scaled to [0, 1] [-]")
    std: list[float] = Field(description="Per-channel standard deviation [-]")

    @model_validator(mode="after")
    def _same_length(self) -> Normalisation:
        if len(self.mean) != len(self.std) or not self.mean:
            raise ValueError("mean and std need the same, non-zero number of entries")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std must be positive, got {self.std}")
        return self


class CheckpointMeta(BaseModel):
    """Everything about a checkpoint except the weights."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, description="Short model name, e.g. 'default' [-]")
    spec: ModelSpec = Field(description="How to construct the network [-]")
    normalisation: Normalisation = Field(description="Input normalisation [-]")
    patch_size: int = Field(384, ge=32, le=8192, description="Training patch edge [px]")
    thresholds: dict[str, float] = Field(
        default_factory=dict, description="Probability threshold per defect class [0..1]"
    )
    trained: bool = Field(False, description="False for randomly initialised decoders [-]")
    provenance: dict[str, Any] = Field(
        default_factory=dict, description="Who/what made it: dataset, epochs, metrics, git [-]"
    )
    operating_point: OperatingPoint | None = Field(
        None, description="Qualified part-level decision, chosen on a validation split [-]"
    )
    created_utc: str = Field(description="ISO 8601 time of writing [-]")
    weights_sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="Digest of weights [-]")

    @model_validator(mode="after")
    def _consistent(self) -> CheckpointMeta:
        if len(self.normalisation.mean) != self.spec.in_channels:
            raise ValueError(
                f"normalisation has {len(self.normalisation.mean)} channels but the network "
                f"takes {self.spec.in_channels}"
            )
        unknown = set(self.thresholds) - set(self.spec.defect_classes)
        if unknown:
            raise ValueError(
                f"thresholds for unknown classes {sorted(unknown)}; defect classes: "
                f"{self.spec.defect_classes}"
            )
        bad = {k: v for k, v in self.thresholds.items() if not 0.0 <= v <= 1.0}
        if bad:
            raise ValueError(f"thresholds must be within [0, 1], got {bad}")
        op = self.operating_point
        if op is not None and set(op.pixel_thresholds) != set(self.spec.defect_classes):
            raise ValueError(
                f"operating point names classes {sorted(op.pixel_thresholds)}; the network's "
                f"defect classes are {self.spec.defect_classes}"
            )
        if op is not None and op.uses_head and not self.spec.image_head:
            raise ValueError(f"operating point rule {op.rule!r} needs an image head; the "
                             "network has none")
        return self

    def effective_operating_point(self) -> OperatingPoint:
        """The stored operating point; for older checkpoints, the one their thresholds and
        provenance describe (see :func:`models.operating_point.legacy`)."""
        if self.operating_point is not None:
            return self.operating_point
        prov = self.provenance.get("operating_point")
        return legacy(
            dict(self.thresholds), prov if isinstance(prov, dict) else None,
            self.spec.defect_classes,
        )

    def threshold(self, class_name: str) -> float:
        """The checkpoint's threshold for ``class_name`` (0.5 when it names none)."""
        return self.thresholds.get(class_name, 0.5)

    @property
    def model_id(self) -> str:
        """``name`` + ``@`` + the first 12 hex digits of the weights' sha256."""
        return f"{self.name}@{self.weights_sha256[:12]}"


@dataclass
class Checkpoint:
    """A loaded checkpoint: its meta and the network with its weights, in eval mode."""

    meta: CheckpointMeta
    model: nn.Module
    path: Path | None = None


def weights_sha256(state_dict: dict[str, torch.Tensor]) -> str:
    """sha256 over the weights: per key in sorted order, name, dtype, shape and raw bytes."""
    digest = hashlib.sha256()
    for key in sorted(state_dict):
        t = state_dict[key].detach().to("cpu").contiguous()
        digest.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def make_meta(
    *,
    name: str,
    spec: ModelSpec,
    state_dict: dict[str, torch.Tensor],
    normalisation: Normalisation | None = None,
    patch_size: int = 384,
    thresholds: dict[str, float] | None = None,
    trained: bool = False,
    provenance: dict[str, Any] | None = None,
    operating_point: OperatingPoint | None = None,
) -> CheckpointMeta:
    """A :class:`CheckpointMeta` for ``state_dict`` (digest and time filled in).

    ``normalisation`` defaults to ImageNet statistics (3 channels) or their mean (1 channel).
    """
    if normalisation is None:
        if spec.in_channels == 3:
            normalisation = Normalisation(mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD))
        else:
            normalisation = Normalisation(
                mean=[sum(IMAGENET_MEAN) / 3], std=[sum(IMAGENET_STD) / 3]
            )
    try:
        return CheckpointMeta(
            name=name,
            spec=spec,
            normalisation=normalisation,
            patch_size=patch_size,
            thresholds=thresholds if thresholds is not None else {},
            trained=trained,
            provenance=provenance or {},
            operating_point=operating_point,
            created_utc=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            weights_sha256=weights_sha256(state_dict),
        )
    except ValidationError as exc:
        raise ModelError(f"invalid checkpoint meta: {exc}") from exc


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    *,
    name: str,
    spec: ModelSpec,
    normalisation: Normalisation | None = None,
    patch_size: int = 384,
    thresholds: dict[str, float] | None = None,
    trained: bool = False,
    provenance: dict[str, Any] | None = None,
    operating_point: OperatingPoint | None = None,
) -> CheckpointMeta:
    """Write ``model``'s weights and their meta to ``path`` atomically; return the meta.

    The weights are written as float32 on the CPU. The file appears complete or not at all
    (written beside, then renamed).
    """
    state = {k: v.detach().to("cpu", torch.float32 if v.is_floating_point() else v.dtype)
             .contiguous().clone() for k, v in model.state_dict().items()}
    meta = make_meta(
        name=name, spec=spec, state_dict=state, normalisation=normalisation,
        patch_size=patch_size, thresholds=thresholds, trained=trained, provenance=provenance,
        operating_point=operating_point,
    )
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "meta": meta.model_dump_json(),
        "state_dict": state,
    }
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=target.name + ".", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(payload, fh)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return meta


def read_checkpoint(
    path: str | os.PathLike[str],
) -> tuple[CheckpointMeta, dict[str, torch.Tensor]]:
    """Read and verify a checkpoint file without building the network.

    Checks the container, the format and version, the meta, and the weights' digest.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint {p}: no such file")
    try:
        payload = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for damaged files
        raise CheckpointError(
            f"checkpoint {p}: unreadable (truncated, corrupt or not a checkpoint): {exc}"
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"checkpoint {p}: not an inspection-station checkpoint (missing format {FORMAT!r})"
        )
    version = payload.get("format_version")
    if version not in READABLE_VERSIONS:
        raise CheckpointError(
            f"checkpoint {p}: format version {version!r}, this station reads "
            f"{', '.join(map(str, READABLE_VERSIONS))}; update the station or re-export the model"
        )
    state = payload.get("state_dict")
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise CheckpointError(f"checkpoint {p}: state_dict missing or not a name -> tensor map")
    try:
        meta = CheckpointMeta.model_validate(json.loads(str(payload.get("meta"))))
    except (ValueError, ModelError) as exc:
        raise CheckpointError(f"checkpoint {p}: invalid meta: {exc}") from exc
    actual = weights_sha256(state)
    if actual != meta.weights_sha256:
        raise CheckpointError(
            f"checkpoint {p}: weights digest mismatch (file says {meta.weights_sha256[:12]}..., "
            f"weights are {actual[:12]}...): the file is corrupt or was edited"
        )
    return meta, state


def load_checkpoint(
    path: str | os.PathLike[str], device: str | torch.device = "cpu"
) -> Checkpoint:
    """Read, verify and build a checkpoint's network (eval mode, on ``device``)."""
    p = Path(path)
    meta, state = read_checkpoint(p)
    try:
        model = build_model(meta.spec)
    except ModelError as exc:
        raise CheckpointError(f"checkpoint {p}: cannot build its network: {exc}") from exc
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(
        f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    )
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
        if wrong:
            parts.append(f"{len(wrong)} of wrong shape (e.g. {'; '.join(wrong[:3])})")
        raise CheckpointError(
            f"checkpoint {p}: weights do not fit {meta.spec.architecture}/{meta.spec.encoder} "
            f"with {meta.spec.out_channels} outputs: {', '.join(parts)}"
        )
    model.load_state_dict(state)
    model.eval()
    model.to(device)
    return Checkpoint(meta=meta, model=model, path=p)
