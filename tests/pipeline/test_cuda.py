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


def test_graphed_tiles_equal_plain_calls() -> None:
    """CUDA-graph replays give the plain calls' blended map (fp16, channels-last), for a batch
    that needs padding; bf16 stays within 2e-2 of fp32; automatic batches are balanced."""
    from pipeline.infer import Segmenter
    from pipeline.tiling import Tiler

    torch.manual_seed(0)
    model = ConvStack(layers=3)
    x = torch.randn(1, 3, 700, 1000, device="cuda")
    seg = Segmenter(copy.deepcopy(model), "softmax", torch.device("cuda"), half=True)
    with torch.inference_mode():
        plain = Tiler(384, 0.25, 8, cuda_batch=5, graphs=False)(x, seg)
        tiler = Tiler(384, 0.25, 8, cuda_batch=5, graphs=True)
        graphed = tiler(x, seg)
        again = tiler(x, seg)
        assert tiler.graph_failures == 0 and tiler._graph_cache
        assert float((plain - graphed).abs().max()) < 2e-3  # same kernels; fp16 at worst
        assert torch.equal(graphed, again)
        auto = Tiler(384, 0.25, 8)
        assert 1 <= auto.batch_for(247, seg, 3, x.device, seg.dtype) <= 247
        bf = Segmenter(copy.deepcopy(model), "softmax", torch.device("cuda"),
                       half_dtype="bfloat16")
        f32 = Segmenter(copy.deepcopy(model), "softmax", torch.device("cuda"), half=False)
        a = Tiler(384, 0.25, 8, graphs=True)(x, bf)
        b = Tiler(384, 0.25, 8)(x, f32)
        assert float((a - b).abs().max()) < 2e-2


def test_find_defects_on_cuda_equals_the_cpu() -> None:
    """Dense per-block sums on the GPU (lanes, pinned buffers) give the CPU's defects, on
    blobs and on a noise map."""
    import cv2

    from pipeline.postprocess import classify, find_defects

    rng = np.random.default_rng(5)
    labels = np.zeros((300, 500), np.uint8)
    for _ in range(30):
        cv2.circle(labels, (int(rng.integers(0, 500)), int(rng.integers(0, 300))),
                   int(rng.integers(0, 12)), int(rng.integers(1, 4)), -1)
    scores = np.where(labels > 0, rng.uniform(0.3, 1.0, labels.shape), 0).astype(np.float32)
    g = torch.Generator().manual_seed(0)
    noise_l, noise_s = classify(torch.rand(3, 600, 800, generator=g), torch.full((3,), 0.5))
    names = ["bg", "a", "b", "c"]
    for lab, sc in ((torch.from_numpy(labels), torch.from_numpy(scores)), (noise_l, noise_s)):
        kw = {"camera": "c", "class_names": names, "min_area_px": 2, "mm_per_px": 0.1}
        cpu = find_defects(lab, sc, **kw)  # type: ignore[arg-type]
        gpu = find_defects(lab.cuda(), sc.cuda(), **kw)  # type: ignore[arg-type]
        assert cpu[1] == gpu[1]
        assert [(d.class_index, d.area_px, d.box, d.outline) for d in cpu[0]] == [
            (d.class_index, d.area_px, d.box, d.outline) for d in gpu[0]]
        for a, b in zip(cpu[0], gpu[0], strict=True):
            assert a.mean_score == pytest.approx(b.mean_score, abs=1e-9)
            assert a.centroid == pytest.approx(b.centroid, abs=1e-9)


def test_graphs_stay_right_when_many_frame_sizes_come_and_go() -> None:
    """More batch shapes than the tiler keeps (graphs and their buffers are dropped together)
    and a size seen again: every result still equals plain calls."""
    from pipeline.infer import Segmenter
    from pipeline.tiling import Tiler

    torch.manual_seed(1)
    seg = Segmenter(ConvStack(layers=2), "softmax", torch.device("cuda"), half=False)
    graphed = Tiler(128, 0.25, 8, cuda_batch=64, graphs=True)
    plain = Tiler(128, 0.25, 8, cuda_batch=64, graphs=False)
    sizes = [(128, 128), (200, 300), (300, 500), (400, 650), (500, 900), (128, 128)]
    with torch.inference_mode():
        for h, w in sizes:
            x = torch.randn(1, 3, h, w, device="cuda")
            assert float((graphed(x, seg) - plain(x, seg)).abs().max()) < 1e-5
    assert graphed.graph_failures == 0 and len(graphed._graph_cache) <= 4
