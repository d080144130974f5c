"""Network construction: a registry of architectures and encoders, by name.

Every network is built with ``encoder_weights=None``: nothing is ever downloaded. Pretrained
encoder weights come only from local files (:mod:`models.pretrained`).

Registered architectures: ``unet``, ``unetplusplus``, ``fpn`` (segmentation-models-pytorch,
each with one of :data:`ENCODERS`) and ``plain-unet`` (a small UNet of plain 3 x 3
convolutions, no pretrained encoder; ``encoder`` must be ``None``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from torch import nn

from config.errors import ModelError, UnknownName

#: smp architectures by registry name.
SMP_ARCHITECTURES: tuple[str, ...] = ("unet", "unetplusplus", "fpn")
#: Architectures without a pretrained encoder.
PLAIN_ARCHITECTURES: tuple[str, ...] = ("plain-unet",)
ARCHITECTURES: tuple[str, ...] = SMP_ARCHITECTURES + PLAIN_ARCHITECTURES
#: Encoders for the smp architectures (smp names; ``tu-`` = a timm model through smp).
ENCODERS: tuple[str, ...] = (
    "resnet50",
    "efficientnet-b0",
    "efficientnet-b3",
    "efficientnet-b7",
    "tu-efficientnet_lite0",
)
#: Output heads: ``softmax`` = one channel per class including background (index 0);
#: ``sigmoid`` = one channel per defect class (no background channel), independent probabilities.
HEADS: tuple[str, ...] = ("softmax", "sigmoid")
#: Input sizes of every registered network must be multiples of this [px].
SIZE_DIVISOR = 32


class ModelSpec(BaseModel):
    """Everything needed to construct a network (not its weights).

    ``classes`` always starts with the background class (index 0 of the defect map);
    ``kwargs`` go to the architecture's constructor (e.g. ``decoder_channels`` for smp,
    ``base_channels`` / ``depth`` for ``plain-unet``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    architecture: str = Field(description="Registry name, one of ARCHITECTURES [-]")
    encoder: str | None = Field(None, description="Encoder name (smp); None for plain-unet [-]")
    in_channels: Literal[1, 3] = Field(3, description="Input channels: 1 grey, 3 RGB [-]")
    classes: list[str] = Field(
        min_length=2, description="Class names; index 0 is the background [-]"
    )
    head: Literal["softmax", "sigmoid"] = Field("softmax", description="Output activation [-]")
    kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Extra constructor arguments [-]"
    )
    image_head: bool = Field(
        False,
        description="Also output image-level logits (one per defect class) from the deepest "
        "encoder features (smp architectures only) [-]",
    )

    @field_validator("classes")
    @classmethod
    def _unique_classes(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v) or any(not c for c in v):
            raise ValueError(f"class names must be unique and non-empty, got {v}")
        return v

    @model_validator(mode="after")
    def _known_names(self) -> ModelSpec:
        check_names(self.architecture, self.encoder)
        if self.image_head and self.architecture in PLAIN_ARCHITECTURES:
            raise ValueError(
                f"image_head needs an encoder architecture ({', '.join(SMP_ARCHITECTURES)}); "
                f"{self.architecture!r} has none: set image_head to false"
            )
        return self

    @property
    def out_channels(self) -> int:
        """Channels the network produces: all classes (softmax) or defect classes (sigmoid)."""
        return len(self.classes) if self.head == "softmax" else len(self.classes) - 1

    @property
    def defect_classes(self) -> list[str]:
        """Class names without the background."""
        return self.classes[1:]


def check_names(architecture: str, encoder: str | None) -> None:
    """Raise :class:`UnknownName` (listing the valid names) for an unknown combination."""
    if architecture not in ARCHITECTURES:
        raise UnknownName(
            f"unknown architecture {architecture!r}; valid: {', '.join(ARCHITECTURES)}"
        )
    if architecture in PLAIN_ARCHITECTURES:
        if encoder is not None:
            raise UnknownName(
                f"architecture {architecture!r} has no encoder; set encoder to null "
                f"(got {encoder!r})"
            )
        return
    if encoder not in ENCODERS:
        raise UnknownName(
            f"unknown encoder {encoder!r} for {architecture!r}; valid: {', '.join(ENCODERS)}"
        )


class _DoubleConv(nn.Sequential):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )


class PlainUNet(nn.Module):
    """The classic UNet (Ronneberger 2015) with batch norm; no pretrained encoder.

    ``depth`` poolings (input sizes must be multiples of ``2**depth``), ``base_channels``
    at full resolution, doubling per level.
    """

    def __init__(
        self, in_channels: int, out_channels: int, base_channels: int = 16, depth: int = 4
    ) -> None:
        super().__init__()
        if not 1 <= depth <= 5:
            raise ModelError(f"plain-unet depth must be 1..5, got {depth}")
        if not 1 <= base_channels <= 256:
            raise ModelError(f"plain-unet base_channels must be 1..256, got {base_channels}")
        widths = [base_channels * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList([_DoubleConv(in_channels, widths[0])])
        self.down.extend(_DoubleConv(widths[i], widths[i + 1]) for i in range(depth))
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2)
            for i in reversed(range(depth))
        )
        self.merge = nn.ModuleList(
            _DoubleConv(widths[i] * 2, widths[i]) for i in reversed(range(depth))
        )
        self.head = nn.Conv2d(widths[0], out_channels, 1)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, out_channels, H, W)`` for input ``(N, in_channels, H, W)``."""
        skips: list[torch.Tensor] = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        x = skips.pop()
        for up, merge in zip(self.up, self.merge, strict=True):
            x = merge(torch.cat([skips.pop(), up(x)], dim=1))
        out: torch.Tensor = self.head(x)
        return out


class MaxImageHead(nn.Module):
    """Image-level logits: a 1 x 1 convolution over the deepest encoder features, then the
    maximum over all positions (multiple-instance pooling).

    Because the pooling is a maximum of a per-position score, the logits of a large frame
    equal the maximum over its tiles' logits (up to border effects), so tiled and whole-frame
    inference agree on the part-level decision.
    """

    def __init__(self, in_channels: int, classes: int, dropout: float = 0.2) -> None:
        super().__init__()
        self.dropout = nn.Dropout2d(dropout)
        self.conv = nn.Conv2d(in_channels, classes, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``(N, C, h, w)`` features -> ``(N, classes)`` logits."""
        out: torch.Tensor = self.conv(self.dropout(features)).amax(dim=(2, 3))
        return out


def _smp_builder(architecture: str) -> Callable[..., nn.Module]:
    import segmentation_models_pytorch as smp

    builders: dict[str, Callable[..., nn.Module]] = {
        "unet": smp.Unet,
        "unetplusplus": smp.UnetPlusPlus,
        "fpn": smp.FPN,
    }
    return builders[architecture]


def build_model(spec: ModelSpec) -> nn.Module:
    """Construct the network of ``spec`` with freshly initialised weights (never downloads).

    Raises :class:`UnknownName` for unknown names, :class:`ModelError` for bad arguments.
    """
    check_names(spec.architecture, spec.encoder)
    try:
        if spec.architecture == "plain-unet":
            return PlainUNet(spec.in_channels, spec.out_channels, **spec.kwargs)
        builder = _smp_builder(spec.architecture)
        kwargs = {k: v for k, v in spec.kwargs.items() if k != "encoder_weights"}
        if isinstance(kwargs.get("decoder_channels"), list):
            kwargs["decoder_channels"] = tuple(kwargs["decoder_channels"])
        model = builder(
            encoder_name=spec.encoder,
            encoder_weights=None,
            in_channels=spec.in_channels,
            classes=spec.out_channels,
            **kwargs,
        )
        if spec.image_head:  # smp's forward returns (masks, classification_head(deepest))
            deepest = int(getattr(model, "encoder").out_channels[-1])  # noqa: B009
            model.classification_head = MaxImageHead(deepest, len(spec.defect_classes))
        return model
    except ModelError:
        raise
    except (TypeError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelError(
            f"cannot build {spec.architecture}/{spec.encoder} with {spec.kwargs}: {exc}"
        ) from exc


def count_parameters(model: nn.Module) -> int:
    """Number of parameters of ``model``."""
    return sum(p.numel() for p in model.parameters())
