"""The Segmenter: heads, image-level logits, precision choices, bad network outputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from config.errors import ModelError
from pipeline.infer import Segmenter, select_device
from tests.models.tester import ConvStack


class WithImageHead(nn.Module):
    """Segmentation logits plus image logits (N, 2): a network with an image-level head."""

    def __init__(self) -> None:
        super().__init__()
        self.seg = ConvStack(layers=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(seg logits, image logits)."""
        return self.seg(x), torch.stack([x.mean(dim=(1, 2, 3)), x.amax(dim=(1, 2, 3))], dim=1)


def test_probabilities_from_either_head() -> None:
    """Softmax probabilities sum to one per pixel; sigmoid ones are independent."""
    x = torch.randn(2, 3, 16, 16)
    soft = Segmenter(ConvStack(layers=1), "softmax", torch.device("cpu"))(x)
    assert isinstance(soft, torch.Tensor) and soft.dtype == torch.float32
    assert torch.allclose(soft.sum(dim=1), torch.ones(2, 16, 16), atol=1e-6)
    sig = Segmenter(ConvStack(layers=1), "sigmoid", torch.device("cpu"))(x)
    assert isinstance(sig, torch.Tensor) and float(sig.min()) > 0 and float(sig.max()) < 1


def test_image_head_pure_and_accumulated() -> None:
    """``predict`` returns (probabilities, image logits float32) and changes nothing (what a
    CUDA graph can hold); calling the segmenter returns the probabilities and keeps the image
    logits' maximum since ``begin_frame``."""
    x = torch.randn(3, 3, 16, 16)
    seg = Segmenter(WithImageHead(), "softmax", torch.device("cpu"))
    out = seg.predict(x)
    assert isinstance(out, tuple)
    probs, image = out
    assert probs.shape == (3, 3, 16, 16) and image.shape == (3, 2)
    assert image.dtype == torch.float32 and seg.image_logits is None
    assert torch.allclose(image[:, 1], x.amax(dim=(1, 2, 3)))
    assert torch.allclose(seg(x), probs)
    assert seg.image_logits is not None
    assert torch.allclose(seg.image_logits, image.amax(dim=0, keepdim=True))
    seg.begin_frame()
    assert seg.image_logits is None
    plain = Segmenter(ConvStack(layers=1), "softmax", torch.device("cpu"))
    assert isinstance(plain.predict(x), torch.Tensor)


def test_bad_settings_and_outputs_are_model_errors() -> None:
    """An unknown head or half type, and a network returning three outputs, are refused."""
    with pytest.raises(ModelError, match="unknown head"):
        Segmenter(ConvStack(), "relu", torch.device("cpu"))
    with pytest.raises(ModelError, match="bfloat16"):
        Segmenter(ConvStack(), "softmax", torch.device("cpu"), half_dtype="float8")

    class Bad(nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
            return x, x, x

    with pytest.raises(ModelError, match="expected 1 or 2"):
        Segmenter(Bad(), "softmax", torch.device("cpu")).predict(torch.zeros(1, 3, 8, 8))


def test_cpu_runs_float32_whatever_the_half_setting() -> None:
    """Half precision and channels-last apply on CUDA only."""
    seg = Segmenter(ConvStack(), "softmax", torch.device("cpu"), half=True,
                    half_dtype="bfloat16")
    assert seg.dtype == torch.float32 and seg.memory_format == torch.contiguous_format
    assert select_device("cpu") == torch.device("cpu")
