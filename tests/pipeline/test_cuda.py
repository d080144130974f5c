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


def test_pinned_uploads_on_a_stream_per_camera_equal_plain_uploads() -> None:
    """prefetch: each camera's frame through its own pinned buffer and stream gives the
    plain upload's numbers (8 and 16 bit, above 32767 too), buffers grow for bigger frames
    and are reused for smaller ones, and a frame sent again is not the old one."""
    rng = np.random.default_rng(3)
    norm = Normaliser([0.5, 0.5, 0.5], [0.25, 0.25, 0.25])
    gpu = Preprocessor(torch.device("cuda"), 3, norm)
    cpu = Preprocessor(torch.device("cpu"), 3, norm)
    assert gpu.uploader is not None and cpu.uploader is None
    for h, w in ((64, 96), (128, 160), (32, 48)):
        images = [
            InputImage("cam0", rng.integers(0, 256, (h, w), dtype=np.uint8), "BayerRG8"),
            InputImage("cam1", rng.integers(0, 65536, (h, w), dtype=np.uint16), "Mono16"),
        ]
        gpu.prefetch(images)
        for image in images:
            assert torch.allclose(gpu(image).cpu(), cpu(image), atol=1e-5)
    lanes = gpu.uploader.lanes
    assert set(lanes) == {"cam0", "cam1"} and lanes["cam0"].stream != lanes["cam1"].stream
    assert lanes["cam1"].host.numel() == 128 * 160 * 2 and lanes["cam1"].host.is_pinned()


def test_inspector_prefetching_two_cameras_finds_the_cpu_defects() -> None:
    """Two cameras inspected on CUDA (uploads prefetched on their streams) find what the CPU
    finds on each."""
    frames = []
    for k in range(2):
        img = np.full((200, 300), 40, np.uint8)
        img[50 + 20 * k:90 + 20 * k, 100:160] = 220
        frames.append(InputImage(f"cam{k}", img, "Mono8"))
    cpu = inspector_for(OracleModel()).inspect(frames)
    gpu = inspector_for(OracleModel(), device="cuda").inspect(frames)
    for a, b in zip(cpu.cameras, gpu.cameras, strict=True):
        assert [d.area_px for d in a.defects] == [d.area_px for d in b.defects]


def test_the_image_heads_box_on_cuda_equals_the_cpu() -> None:
    """A part the head fails gets the same part_box on CUDA (fp16, channels-last) as on the
    CPU (the box is cells, so fp16 rounding does not move it unless two cells tie)."""
    from tests.pipeline.test_locate import _inspector, _lite0_with_head

    spec, model = _lite0_with_head()
    frame = np.random.default_rng(1).integers(0, 255, (300, 420), dtype=np.uint8)
    image = InputImage("cam0", frame, "Mono8")
    cpu_score = _inspector(copy.deepcopy(model), spec, 1e9).inspect([image]).cameras[0]
    assert cpu_score.part_score is not None
    cpu = _inspector(copy.deepcopy(model), spec, cpu_score.part_score - 1.0).inspect([image])
    gpu_ins = _inspector(copy.deepcopy(model), spec, cpu_score.part_score - 1.0, device="cuda")
    gpu = gpu_ins.inspect([image])
    assert gpu.cameras[0].part_box == cpu.cameras[0].part_box is not None
    assert "locate" in gpu.timings_ms
