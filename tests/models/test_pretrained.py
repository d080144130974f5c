"""The offline lite0 ImageNet weights: every key mapped, every shape equal, values copied."""

from __future__ import annotations

import pytest
import timm
import torch

from config.errors import CheckpointError, ModelError
from models.build import ModelSpec, build_model
from models.pretrained import (
    HEAD_KEYS_PREFIXES,
    init_encoder_from_imagenet,
    load_lite0_imagenet,
    load_lite0_source,
    map_lite0_keys,
)


@pytest.fixture(scope="module")
def source() -> dict[str, torch.Tensor]:
    """The package's state dict (EfficientNet-PyTorch names)."""
    return load_lite0_source()


def test_timm_model_every_key_mapped_with_equal_shapes(source: dict[str, torch.Tensor]
                                                       ) -> None:
    """All 296 tensors map one to one onto timm's efficientnet_lite0, shapes equal, values
    copied exactly."""
    model = timm.create_model("efficientnet_lite0", pretrained=False)
    target = model.state_dict()
    mapping, dropped = map_lite0_keys(list(source), list(target))
    assert dropped == []
    assert set(mapping) == set(source)
    assert set(mapping.values()) == set(target)
    assert len(set(mapping.values())) == len(mapping)
    for s, t in mapping.items():
        assert source[s].shape == target[t].shape, (s, t)
    assert load_lite0_imagenet(model, source) == len(target)
    got = model.state_dict()
    assert torch.equal(got["conv_stem.weight"], source["_conv_stem.weight"])
    assert torch.equal(got["blocks.6.0.conv_pwl.weight"], source["_blocks.15._project_conv.weight"])
    assert torch.equal(got["classifier.bias"], source["_fc.bias"])


def test_smp_encoder_every_key_mapped(source: dict[str, torch.Tensor]) -> None:
    """The smp encoder tu-efficientnet_lite0 gets every tensor; only the classification head's
    keys are dropped, by name."""
    spec = ModelSpec.model_validate({"architecture": "unet", "encoder": "tu-efficientnet_lite0",
                                     "classes": ["background", "defect"]})
    model = build_model(spec)
    encoder = model.encoder
    assert isinstance(encoder, torch.nn.Module)
    enc = encoder.state_dict()
    mapping, dropped = map_lite0_keys(list(source), list(enc))
    assert set(mapping.values()) == set(enc)
    assert dropped and all(k.startswith(HEAD_KEYS_PREFIXES) for k in dropped)
    assert len(mapping) + len(dropped) == len(source)
    assert init_encoder_from_imagenet(model, spec.encoder) == len(enc)
    assert torch.equal(encoder.state_dict()["model.bn1.running_var"],
                       source["_bn0.running_var"])


def test_broken_sources_are_refused(source: dict[str, torch.Tensor]) -> None:
    """A missing tensor, an unknown key or a wrong shape is a CheckpointError."""
    model = timm.create_model("efficientnet_lite0", pretrained=False)
    missing = {k: v for k, v in source.items() if k != "_blocks.3._bn1.weight"}
    with pytest.raises(CheckpointError, match="get no weights"):
        load_lite0_imagenet(model, missing)
    extra = dict(source, **{"_blocks.3._se_reduce.weight": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="no target"):
        load_lite0_imagenet(model, extra)
    wrong = dict(source, **{"_conv_stem.weight": torch.zeros(32, 3, 5, 5)})
    with pytest.raises(CheckpointError, match="shape mismatch"):
        load_lite0_imagenet(model, wrong)


def test_other_encoders_have_no_offline_weights() -> None:
    """Asking for ImageNet weights of an encoder without a local file is a ModelError."""
    with pytest.raises(ModelError, match="only 'tu-efficientnet_lite0'"):
        init_encoder_from_imagenet(torch.nn.Linear(1, 1), "resnet50")
