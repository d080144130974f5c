"""The image head fitted again on whole images (models.head_fit)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from config.errors import ModelError
from models.build import MaxImageHead, ModelSpec, build_model
from models.data import load_dataset
from models.head_fit import (
    HeadFitSettings,
    fit_head,
    image_features,
    image_head_of,
    image_targets,
    refit_image_head,
)
from models.runtime import predict_image
from tests.models.test_data import make_tile_dataset

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def lite0_with_head() -> torch.nn.Module:
    """A small lite0 UNet with an image head over Blowhole and Crack, random weights."""
    spec = ModelSpec.model_validate({
        "architecture": "unet", "encoder": "tu-efficientnet_lite0", "head": "sigmoid",
        "classes": ["background", "Blowhole", "Crack"], "image_head": True,
        "kwargs": {"decoder_channels": [16, 16, 8, 8, 8]}})
    torch.manual_seed(0)
    return build_model(spec).eval()


def test_features_give_the_runtime_image_logits() -> None:
    """The head over the cached plain features equals the image logits the station's runtime
    computes for that image; the flip variants are the mirrored image's features."""
    model = lite0_with_head()
    img = np.random.default_rng(0).integers(0, 255, (70, 45), dtype=np.uint8)
    feats = image_features(model, img, MEAN, STD, 3)
    assert len(feats) == 3 and all(f.dtype == torch.float16 for f in feats)
    head = image_head_of(model)
    _, logits = predict_image(model, "sigmoid", MEAN, STD, 3, img)
    with torch.no_grad():
        ours = head(feats[0].float()[None])[0].numpy()
    assert logits is not None and np.allclose(ours, logits, atol=2e-2)
    _, flipped = predict_image(model, "sigmoid", MEAN, STD, 3, img[:, ::-1].copy())
    with torch.no_grad():
        lr = head(feats[1].float()[None])[0].numpy()
    assert flipped is not None and np.allclose(lr, flipped, atol=2e-2)
    assert len(image_features(model, img, MEAN, STD, 3, flips=False)) == 1


def test_fit_separates_a_position_that_marks_defects() -> None:
    """Synthetic features where one channel is high at one position of defective images only:
    the fitted head scores every defective image above every defect-free one, and the loss
    falls."""
    gen = torch.Generator().manual_seed(0)
    features, rows = [], []
    for k in range(24):
        f = torch.randn(8, 3 + k % 3, 4, generator=gen) * 0.1
        defective = k % 2 == 1
        if defective:
            f[5, 1, 2] = 3.0
        features.append([f.half()])
        rows.append([1.0 if defective else 0.0])
    head = MaxImageHead(8, 1)
    torch.nn.init.zeros_(head.conv.weight)
    first, last = fit_head(head, features, torch.tensor(rows),
                           HeadFitSettings(steps=150, batch_size=8, dropout=0.0))
    assert last < first
    head.eval()
    with torch.no_grad():
        scores = [float(head(f[0].float()[None])[0, 0]) for f in features]
    assert min(scores[1::2]) > max(scores[0::2])


def test_targets_follow_the_folder_class(tmp_path: Path) -> None:
    """One-hot by the sample's class, zero rows for defect-free; a class the model lacks is
    refused with the image and the valid classes named."""
    ds = load_dataset(make_tile_dataset(tmp_path / "tiles", per_class=1), "folder-classes")
    rows = image_targets(ds, range(len(ds)), ["Blowhole", "Crack"])
    for row, s in zip(rows.tolist(), ds.samples, strict=True):
        assert row == {"": [0, 0], "Blowhole": [1, 0], "Crack": [0, 1]}[s.label]
    assert image_targets(ds, range(len(ds)), ["defect"]).sum() == 2
    with pytest.raises(ModelError, match=r"'Crack' is not one of .*\['Blowhole', 'Other'\]"):
        image_targets(ds, range(len(ds)), ["Blowhole", "Other"])


def test_refit_changes_only_the_head_and_reports(tmp_path: Path) -> None:
    """refit_image_head on a tiny dataset: only the head's weights change, the network is left
    in the mode it was in, and the report counts images, defective ones and flips."""
    ds = load_dataset(make_tile_dataset(tmp_path / "tiles", per_class=2), "folder-classes")
    model = lite0_with_head().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    seen: list[str] = []
    report = refit_image_head(model, ds, list(range(len(ds))), ["Blowhole", "Crack"], MEAN, STD,
                              3, HeadFitSettings(steps=5, batch_size=4),
                              progress=lambda stage, *_: seen.append(stage))
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"classification_head.conv.weight", "classification_head.conv.bias"}
    assert model.training
    assert (report.images, report.defective, report.variants, report.steps) == (6, 4, 3, 5)
    assert seen.count("features") == 6 and seen.count("fit") == 5
    assert report.as_dict()["images"] == 6


def test_refit_refuses_what_it_cannot_fit(tmp_path: Path) -> None:
    """No image head, no images, or bad settings: a ModelError naming the value and the fix."""
    ds = load_dataset(make_tile_dataset(tmp_path / "tiles", per_class=1), "folder-classes")
    plain = build_model(ModelSpec.model_validate({
        "architecture": "plain-unet", "encoder": None, "classes": ["background", "Blowhole"],
        "kwargs": {"base_channels": 4, "depth": 2}}))
    with pytest.raises(ModelError, match=r"no image head.*image_head: true"):
        refit_image_head(plain, ds, [0], ["Blowhole"], MEAN, STD, 3)
    with pytest.raises(ModelError, match="at least one image"):
        refit_image_head(lite0_with_head(), ds, [], ["Blowhole", "Crack"], MEAN, STD, 3)
    with pytest.raises(ModelError, match="steps must be >= 1, got 0"):
        HeadFitSettings(steps=0)
    with pytest.raises(ModelError, match=r"dropout must be in \[0, 1\), got 1.5"):
        HeadFitSettings(dropout=1.5)
    with pytest.raises(ModelError, match="one target row per image"):
        fit_head(MaxImageHead(4, 1), [[torch.zeros(4, 1, 1)]], torch.zeros(2, 1),
                 HeadFitSettings(steps=1))


def test_fit_is_the_same_for_the_same_seed() -> None:
    """Two fits from the same head on the same features with the same seed give the same
    weights, whatever the global torch generator did in between; another seed differs."""
    gen = torch.Generator().manual_seed(1)
    features = [[torch.randn(6, 2, 3, generator=gen).half()] for _ in range(8)]
    targets = torch.tensor([[float(k % 2)] for k in range(8)])

    def fit(seed: int) -> torch.Tensor:
        head = MaxImageHead(6, 1)
        with torch.no_grad():
            head.conv.weight.fill_(0.1)
            head.conv.bias.zero_()  # type: ignore[union-attr]
        torch.rand(100)  # the global generator moves on
        fit_head(head, features, targets, HeadFitSettings(steps=20, batch_size=4, seed=seed))
        return head.conv.weight.detach().clone()

    assert torch.equal(fit(0), fit(0))
    assert not torch.equal(fit(0), fit(1))
