"""Network construction by name: every registered combination, no downloads, clear errors."""

from __future__ import annotations

import pytest
import torch

from config.errors import ModelError, UnknownName
from models.build import (
    ARCHITECTURES,
    ENCODERS,
    SMP_ARCHITECTURES,
    ModelSpec,
    build_model,
    count_parameters,
)
from tests.models.tester import tiny_spec


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to download weights fails the test."""
    import torch.hub

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"download attempted: {args}")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr("urllib.request.urlopen", refuse)


def _spec(arch: str, encoder: str | None, **kwargs: object) -> ModelSpec:
    return ModelSpec.model_validate({"architecture": arch, "encoder": encoder,
                                     "classes": ["background", "a", "b"], "kwargs": kwargs})


@pytest.mark.usefixtures("no_network")
@pytest.mark.parametrize("arch", SMP_ARCHITECTURES)
def test_smp_architectures_with_lite0_run(arch: str) -> None:
    """Unet, Unet++ and FPN with the lite0 encoder build offline and keep the input size."""
    model = build_model(_spec(arch, "tu-efficientnet_lite0")).eval()
    with torch.no_grad():
        out = model(torch.zeros(1, 3, 64, 64))
    assert out.shape == (1, 3, 64, 64)


@pytest.mark.slow
@pytest.mark.usefixtures("no_network")
@pytest.mark.parametrize("arch", SMP_ARCHITECTURES)
@pytest.mark.parametrize("encoder", ENCODERS)
def test_every_registered_combination_builds_offline(arch: str, encoder: str) -> None:
    """All architectures x encoders construct without touching the network (B7 is big)."""
    model = build_model(_spec(arch, encoder))
    assert count_parameters(model) > 1_000_000


def test_plain_unet_shapes_and_heads() -> None:
    """The plain UNet outputs one channel per class (softmax) or per defect class (sigmoid)."""
    soft = build_model(tiny_spec("softmax")).eval()
    sig = build_model(tiny_spec("sigmoid")).eval()
    x = torch.zeros(2, 3, 32, 48)
    with torch.no_grad():
        assert soft(x).shape == (2, 3, 32, 48)
        assert sig(x).shape == (2, 2, 32, 48)
    assert count_parameters(soft) < 10_000


def test_unknown_names_list_the_valid_ones() -> None:
    """Unknown architecture or encoder raises UnknownName listing what exists."""
    with pytest.raises(UnknownName, match="valid: " + ", ".join(ARCHITECTURES)):
        _spec("segformer", "resnet50")
    with pytest.raises(UnknownName, match="tu-efficientnet_lite0"):
        _spec("unet", "resnet18")
    with pytest.raises(UnknownName, match="has no encoder"):
        _spec("plain-unet", "resnet50")


def test_bad_arguments_are_model_errors() -> None:
    """Constructor arguments the network does not take become a ModelError."""
    with pytest.raises(ModelError, match="cannot build"):
        build_model(_spec("unet", "tu-efficientnet_lite0", wings=2))
    with pytest.raises(ModelError, match="depth"):
        build_model(_spec("plain-unet", None, depth=9))


def test_class_names_must_be_unique() -> None:
    """Duplicate class names are refused."""
    with pytest.raises(ValueError, match="unique"):
        ModelSpec.model_validate({"architecture": "plain-unet", "classes": ["bg", "a", "a"]})


def test_image_head_outputs_one_logit_per_class_and_pools_by_maximum() -> None:
    """A network with an image head returns (masks, logits (N, K)); the head's pooling is a
    maximum over positions, so two halves' maxima give the whole's; plain-unet refuses it."""
    import pytest
    import torch

    from models.build import MaxImageHead, ModelSpec, build_model

    spec = ModelSpec.model_validate({"architecture": "unet", "encoder": "tu-efficientnet_lite0",
                                     "classes": ["background", "a", "b", "c"],
                                     "head": "sigmoid", "image_head": True})
    out = build_model(spec).eval()(torch.zeros(2, 3, 64, 96))
    assert isinstance(out, tuple) and out[0].shape == (2, 3, 64, 96) and out[1].shape == (2, 3)
    head = MaxImageHead(8, 2).eval()
    f = torch.randn(1, 8, 4, 6)
    whole = head(f)
    halves = torch.maximum(head(f[..., :3]), head(f[..., 3:]))
    assert torch.allclose(whole, halves)
    with pytest.raises(ValueError, match="image_head"):
        ModelSpec.model_validate({"architecture": "plain-unet", "encoder": None,
                                  "classes": ["background", "a"], "image_head": True})
