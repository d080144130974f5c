"""pipeline.errors: torch's memory and device failures become InferenceError with the fix;
bugs pass through unchanged."""

from __future__ import annotations

import weakref

import pytest
import torch

from config.errors import CameraError, InferenceError, PipelineError
from pipeline.errors import torch_errors, translate_torch_error

SETTINGS = {"pipeline.batch_size": 8, "pipeline.tile_size": 384}


def test_a_real_cpu_allocation_failure_names_where_device_settings_and_fix() -> None:
    """Allocating 10 TB on the CPU fails in torch's allocator; the station's error says where,
    on which device, the settings in force and what to lower, and keeps torch's as the cause."""
    with pytest.raises(InferenceError) as info, torch_errors("inference", "cpu", SETTINGS):
        torch.empty(10**13, dtype=torch.uint8)
    message = str(info.value)
    assert message.startswith("inference on cpu (pipeline.batch_size = 8, "
                              "pipeline.tile_size = 384) ran out of memory: ")
    assert "can't allocate memory" in message
    assert "lower pipeline.batch_size or pipeline.tile_size" in message
    assert isinstance(info.value.__cause__, RuntimeError)
    assert isinstance(info.value, PipelineError)


def test_cuda_out_of_memory_names_the_gpu_fix_and_is_cut_short() -> None:
    """torch.OutOfMemoryError (as CUDA raises it, several lines long) becomes one bounded line
    that points at the batch and tile size, half precision and nvidia-smi."""
    exc = torch.OutOfMemoryError(
        "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of "
        "23.65 GiB of which 1.2 GiB is free.\n" + "Of the allocated memory ... " * 40
    )
    err = translate_torch_error(exc, "inference", torch.device("cuda", 0), SETTINGS)
    assert isinstance(err, InferenceError)
    message = str(err)
    assert message.startswith("inference on cuda:0 (pipeline.batch_size = 8, "
                              "pipeline.tile_size = 384) ran out of GPU memory: CUDA out of "
                              "memory. Tried to allocate 2.00 GiB.")
    assert "keep pipeline.half true" in message and "nvidia-smi" in message
    assert "\n" not in message and len(message) < 600


def test_a_failing_gpu_says_restart_or_run_on_the_cpu() -> None:
    """A CUDA driver error (here a device-side assert, as torch words it) names the device, the
    checks and the ways out."""
    exc = RuntimeError("CUDA error: device-side assert triggered\nCompile with "
                       "`TORCH_USE_CUDA_DSA` to enable device-side assertions.")
    err = translate_torch_error(exc, "preprocess", "cuda:1")
    assert isinstance(err, InferenceError)
    assert str(err).startswith("preprocess on cuda:1: the GPU or its driver failed: CUDA error: "
                               "device-side assert triggered")
    assert "nvidia-smi" in str(err) and "pipeline.device: cpu" in str(err)


def test_bugs_and_the_station_s_own_errors_pass_through_unchanged() -> None:
    """A real shape mismatch (a bug, not the device) and a StationError leave the block as they
    entered it; so do non-runtime errors."""
    with pytest.raises(RuntimeError) as info, torch_errors("inference", "cpu"):
        torch.ones(2) + torch.ones(3)
    assert not isinstance(info.value, InferenceError)
    assert "must match the size" in str(info.value)
    own = CameraError("camera cam0: timeout")
    with pytest.raises(CameraError) as caught, torch_errors("inference", "cpu"):
        raise own
    assert caught.value is own
    assert translate_torch_error(ValueError("out of memory"), "inference", "cpu") is None
    assert translate_torch_error(RuntimeError("expected scalar type Half"), "x", "cpu") is None


def test_after_out_of_memory_the_failed_work_is_released_while_the_error_travels() -> None:
    """What the failed work held (on a GPU: its tensors) is freed as soon as the block is
    left, not only when the InferenceError is handled: torch's traceback is dropped. Other
    errors keep theirs."""

    class Held:
        """Stands for a tensor the failed work allocated."""

    refs: list[weakref.ref[Held]] = []

    def work(exc: RuntimeError) -> None:
        held = Held()
        refs.append(weakref.ref(held))
        raise exc

    with pytest.raises(InferenceError) as info, torch_errors("inference", "cuda:0"):
        work(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB"))
    assert refs[0]() is None and info.value.__cause__ is not None
    with pytest.raises(RuntimeError) as bug, torch_errors("inference", "cuda:0"):
        work(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    assert refs[1]() is not None and bug.value.__traceback__ is not None


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_real_cuda_out_of_memory_is_translated_and_the_memory_freed() -> None:
    """Filling the GPU in 8 GiB blocks until it fails, as a too-big batch would: InferenceError
    naming the GPU; while that error is still alive the blocks are already released and the
    cache emptied, and half the card can be had again."""
    device = torch.device("cuda")
    total = torch.cuda.get_device_properties(device).total_memory
    allocated, reserved = torch.cuda.memory_allocated(device), torch.cuda.memory_reserved(device)

    def too_big() -> None:
        held = [torch.empty(8 * 2**30, dtype=torch.uint8, device=device)
                for _ in range(total // 2**33 + 2)]
        del held  # never reached

    with pytest.raises(InferenceError, match=r"ran out of GPU memory: CUDA out of memory"
                       ) as info, torch_errors("inference", device, SETTINGS):
        too_big()
    assert isinstance(info.value.__cause__, torch.OutOfMemoryError)
    assert torch.cuda.memory_allocated(device) <= allocated
    assert torch.cuda.memory_reserved(device) <= reserved
    half = torch.empty(total // 2, dtype=torch.uint8, device=device)
    assert half.numel() == total // 2
