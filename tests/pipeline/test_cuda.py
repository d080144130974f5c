"""The pipeline on a CUDA device (marked ``cuda``; skipped without a GPU)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from pipeline.preprocess import Normaliser, Preprocessor
from pipeline.types import InputImage
from tests.models.tester import ConvStack, OracleModel, inspector_for

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def test_preprocess_on_cuda_equals_cpu() -> None:
    """Demosaicing and normalisation on the GPU give the CPU's numbers."""
    rng = np.random.default_rng(0)
    image = InputImage("cam0", rng.integers(0, 256, (64, 96), dtype=np.uint8), "BayerRG8")
    norm = Normaliser([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    cpu = Preprocessor(torch.device("cpu"), 3, norm)(image)
    gpu = Preprocessor(torch.device("cuda"), 3, norm)(image)
    assert gpu.is_cuda
    assert torch.allclose(gpu.cpu(), cpu, atol=1e-5)


def test_half_channels_last_inspector_matches_cpu() -> None:
    """fp16 + channels-last on CUDA finds the CPU's defects, areas equal."""
    img = np.full((200, 300), 40, np.uint8)
    img[50:90, 100:160] = 220
    images = [InputImage("cam0", img, "Mono8")]
    cpu = inspector_for(OracleModel()).inspect(images)
    gpu_ins = inspector_for(OracleModel(), device="cuda", half=True, channels_last=True)
    assert gpu_ins.model_info["dtype"] == "float16"
    gpu = gpu_ins.inspect(images)
    assert [d.area_px for d in gpu.cameras[0].defects] == [
        d.area_px for d in cpu.cameras[0].defects]


def test_fp16_probabilities_close_to_fp32() -> None:
    """Tiled fp16 probabilities of a conv stack stay within 1e-2 of fp32."""
    torch.manual_seed(0)
    model = ConvStack(layers=3)
    image = InputImage("cam0", np.random.default_rng(1).integers(0, 256, (130, 170),
                                                                 dtype=np.uint8), "Mono8")
    a = inspector_for(copy.deepcopy(model), device="cuda", half=True).probabilities(image)
    b = inspector_for(model, device="cuda", half=False).probabilities(image)
    assert float((a - b).abs().max()) < 1e-2
