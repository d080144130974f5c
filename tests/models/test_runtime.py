"""The model runtime: devices, normalisation, padding, outputs, probabilities."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from config.errors import ModelError
from models.build import ModelSpec, build_model
from models.runtime import (
    class_map,
    divisor_pad,
    grey_batch,
    head_score,
    logits_to_probs,
    normalise,
    pad_to_divisor,
    predict_image,
    select_device,
    split_outputs,
)


def test_device_choice_and_its_errors() -> None:
    """auto and cpu work everywhere; CUDA without a GPU and unknown names are errors that say
    what to use."""
    assert select_device("cpu").type == "cpu"
    assert select_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ModelError, match="auto, cpu, cuda"):
        select_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ModelError, match="no CUDA device"):
            select_device("cuda")


def test_normalisation_replicates_grey_and_applies_mean_and_std() -> None:
    """A grey image becomes three identical channels, each (x/255 - mean) / std."""
    img = np.full((4, 6), 255, np.uint8)
    x = grey_batch([img], [0.5, 0.25, 0.0], [0.5, 0.25, 1.0], 3)
    assert x.shape == (1, 3, 4, 6)
    assert torch.allclose(x[0, :, 0, 0], torch.tensor([1.0, 3.0, 1.0]))
    with pytest.raises(ModelError, match="channels"):
        normalise(torch.zeros(1, 2, 4, 4), [0.0], [1.0], 3)


def test_padding_to_the_divisor_is_split_evenly() -> None:
    """70 -> 96 px: 13 before, 13 after; a multiple stays as it is; reflect keeps the edge."""
    assert divisor_pad(70, 64) == (13, 13, 0, 0)
    assert divisor_pad(65, 33) == (15, 16, 15, 16)
    x = torch.arange(70 * 5, dtype=torch.float32).view(1, 1, 70, 5)
    xp, pad = pad_to_divisor(x)
    assert xp.shape[-2:] == (96, 32) and pad == divisor_pad(70, 5)
    top, _, left, _ = pad
    assert torch.equal(xp[..., top:top + 70, left:left + 5], x)


def test_outputs_and_probabilities_of_either_head() -> None:
    """A plain tensor has no image logits; a pair does; softmax drops the background and
    sigmoid keeps every channel; the part score is the largest logit."""
    seg = torch.zeros(2, 3, 4, 4)
    assert split_outputs(seg)[1] is None
    s, i = split_outputs((seg, torch.tensor([[1.0, 3.0], [-2.0, -1.0]])))
    assert i is not None and torch.equal(head_score(i), torch.tensor([3.0, -1.0]))
    assert logits_to_probs(s, "softmax").shape == (2, 2, 4, 4)
    assert torch.allclose(logits_to_probs(s, "sigmoid"), torch.full((2, 3, 4, 4), 0.5))
    with pytest.raises(ModelError, match="head"):
        logits_to_probs(s, "relu")


def test_class_map_takes_the_most_probable_passing_class() -> None:
    """Below every threshold is background; among passing classes the most probable wins."""
    probs = np.zeros((2, 1, 3), np.float32)
    probs[:, 0, 0] = (0.4, 0.3)   # none passes 0.5 / 0.6
    probs[:, 0, 1] = (0.7, 0.65)  # both pass: class 1 more probable
    probs[:, 0, 2] = (0.55, 0.9)  # both pass: class 2 more probable
    assert class_map(probs, [0.5, 0.6]).tolist() == [[0, 1, 2]]


def test_predict_image_with_an_image_head() -> None:
    """A lite0 UNet with an image head: probabilities of the image's own size, one logit per
    defect class, flips average to the same shapes."""
    spec = ModelSpec.model_validate({
        "architecture": "unet", "encoder": "tu-efficientnet_lite0", "head": "sigmoid",
        "classes": ["background", "a", "b"], "image_head": True,
        "kwargs": {"decoder_channels": [16, 16, 8, 8, 8]}})
    torch.manual_seed(0)
    model = build_model(spec).eval()
    img = np.random.default_rng(0).integers(0, 255, (50, 70), dtype=np.uint8)
    probs, logits = predict_image(model, "sigmoid", [0.5] * 3, [0.25] * 3, 3, img)
    assert probs.shape == (2, 50, 70) and logits is not None and logits.shape == (2,)
    p2, l2 = predict_image(model, "sigmoid", [0.5] * 3, [0.25] * 3, 3, img, flips=True)
    assert p2.shape == probs.shape and l2 is not None and l2.shape == (2,)
