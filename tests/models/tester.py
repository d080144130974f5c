"""The shared model tester: tiny networks and checkpoints for pipeline, model and CLI tests.

Everything here runs on the CPU in milliseconds: a plain UNet with 4 base channels, a constant
model, a pointwise (1 x 1) model, a translation-equivariant 3 x 3 conv stack, and an "oracle"
that calls bright pixels a defect (so synthetic defects of known area come back known).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from config.pipeline import PipelineConfig
from config.rules import RulesConfig
from models.build import ModelSpec, build_model
from models.checkpoint import Checkpoint, make_meta, save_checkpoint
from pipeline.inspector import Inspector

CLASSES = ["background", "Blowhole", "Crack"]


def tiny_spec(head: str = "softmax", classes: list[str] | None = None, in_channels: int = 3
              ) -> ModelSpec:
    """A plain UNet, 4 base channels, depth 2 (a few thousand parameters)."""
    return ModelSpec.model_validate({
        "architecture": "plain-unet", "encoder": None, "in_channels": in_channels,
        "classes": classes or CLASSES, "head": head,
        "kwargs": {"base_channels": 4, "depth": 2},
    })


def tiny_model(spec: ModelSpec | None = None, seed: int = 0) -> nn.Module:
    """The network of ``spec`` (default :func:`tiny_spec`), seeded, eval mode."""
    torch.manual_seed(seed)
    return build_model(spec or tiny_spec()).eval()


def save_tiny(path: Path, spec: ModelSpec | None = None, trained: bool = False) -> Path:
    """Write a tiny checkpoint to ``path`` and return it."""
    spec = spec or tiny_spec()
    save_checkpoint(path, tiny_model(spec), name="tiny", spec=spec, patch_size=64,
                    thresholds={c: 0.5 for c in spec.defect_classes}, trained=trained,
                    provenance={"made_by": "tests"})
    return path


class ConstantModel(nn.Module):
    """Outputs the same value per channel everywhere (logits)."""

    def __init__(self, values: list[float]) -> None:
        super().__init__()
        self.values = nn.Parameter(torch.tensor(values), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, K, H, W)`` of the constants."""
        n, _, h, w = x.shape
        return self.values.view(1, -1, 1, 1).expand(n, -1, h, w).to(x.dtype).contiguous()


class PointwiseModel(nn.Module):
    """A 1 x 1 convolution: translation-equivariant with no spatial context at all."""

    def __init__(self, cin: int = 3, cout: int = 3, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Per-pixel linear map."""
        out: torch.Tensor = self.conv(x)
        return out


class ConvStack(nn.Module):
    """``layers`` 3 x 3 convolutions (zero padded, stride 1): translation-equivariant away
    from the input's border, receptive radius ``layers`` px."""

    def __init__(self, cin: int = 3, cout: int = 3, layers: int = 2, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        mods: list[nn.Module] = []
        for i in range(layers):
            mods.append(nn.Conv2d(cin if i == 0 else 8, cout if i == layers - 1 else 8, 3,
                                  padding=1))
            if i < layers - 1:
                mods.append(nn.Tanh())
        self.net = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits."""
        out: torch.Tensor = self.net(x)
        return out


class OracleModel(nn.Module):
    """Softmax logits that make bright pixels (normalised channel 0 > ``level``) class
    ``defect_class`` with probability ~1, everything else background with probability ~1."""

    def __init__(self, n_classes: int = 3, defect_class: int = 2, level: float = 0.0) -> None:
        super().__init__()
        self.n_classes = n_classes
        self.defect_class = defect_class
        self.level = level
        self.dummy = nn.Parameter(torch.zeros(1), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, n_classes, H, W)``."""
        bright = (x[:, :1] > self.level).to(x.dtype)
        logits = torch.full((x.shape[0], self.n_classes, *x.shape[2:]), -20.0,
                            dtype=x.dtype, device=x.device)
        logits[:, :1] = 20.0 * (1 - bright)
        logits[:, self.defect_class:self.defect_class + 1] = 20.0 * bright
        return logits


def checkpoint_for(model: nn.Module, spec: ModelSpec | None = None) -> Checkpoint:
    """A :class:`Checkpoint` wrapping any module (meta from ``spec``), without a file."""
    spec = spec or tiny_spec()
    meta = make_meta(name="test", spec=spec, state_dict=model.state_dict(), patch_size=64,
                     thresholds={c: 0.5 for c in spec.defect_classes})
    return Checkpoint(meta=meta, model=model.eval())


def inspector_for(
    model: nn.Module,
    spec: ModelSpec | None = None,
    rules: RulesConfig | None = None,
    **pipeline: object,
) -> Inspector:
    """An :class:`Inspector` on the CPU running ``model`` (tile 64 px unless overridden)."""
    cfg = {"device": "cpu", "tile_size": 64, "overlap": 0.25, "batch_size": 4,
           "min_area_px": 1, "defect_map_downscale": 4}
    cfg.update(pipeline)
    return Inspector(checkpoint_for(model, spec), pipeline=PipelineConfig.model_validate(cfg),
                     rules=rules)
