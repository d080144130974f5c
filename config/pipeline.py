"""Config of the segmentation pipeline and of the model it runs."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from config._base import Section


class PipelineConfig(Section):
    """How frames become probability maps and defects."""

    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Where inference runs; 'auto' takes CUDA when present [-]"
    )
    mode: Literal["tiled", "whole"] = Field(
        "tiled", description="Tiles with overlap, or the whole frame in one pass [-]"
    )
    flips: Literal["model", "on", "off"] = Field(
        "model",
        description="Test-time flips: average the network over horizontal and vertical flips "
        "(three passes per frame). 'model': as the model's operating point was chosen (its "
        "thresholds assume it); 'on' / 'off' force it [-]",
    )

    @field_validator("flips", mode="before")
    @classmethod
    def _flips_from_yes_no(cls, value: object) -> object:
        """YAML reads a bare ``on`` / ``off`` (also ``yes`` / ``no``, ``true`` / ``false``) as
        a boolean: take it as 'on' / 'off'."""
        if isinstance(value, bool):
            return "on" if value else "off"
        return value

    tile_size: int = Field(
        384, ge=32, le=4096, multiple_of=32,
        description="Tile edge length, a multiple of 32 (the network's stride) [px]",
    )
    overlap: float = Field(0.25, ge=0.0, lt=0.9, description="Tile overlap share [0..1)")
    batch_size: int = Field(
        8, ge=1, le=256, description="Tiles per forward pass on the CPU [count]"
    )
    small_frames: Literal["whole", "tiled"] = Field(
        "whole",
        description="In tiled mode, a frame of at most batch_size tiles' pixels runs 'whole' "
        "(one pass, padded to a multiple of 32 only, not mirrored out to full tiles) or "
        "'tiled' like any other [-]",
    )
    cuda_batch_size: int = Field(
        0, ge=0, le=4096,
        description="Tiles per forward pass on CUDA; 0 = as many as fit in half the free "
        "device memory (all tiles of a frame when they fit) [count]",
    )
    cuda_graphs: bool = Field(
        True,
        description="Capture the network's forward for the tile batch as a CUDA graph "
        "(replayed per batch; falls back to plain calls if capture fails) [-]",
    )
    half: bool = Field(True, description="Half precision on CUDA (ignored on the CPU) [-]")
    half_dtype: Literal["float16", "bfloat16"] = Field(
        "float16", description="Which half precision on CUDA [-]"
    )
    channels_last: bool = Field(True, description="Channels-last memory on CUDA [-]")
    compile: bool = Field(
        False,
        description="torch.compile the model (compiled at start-up, before the station "
        "reports ready) [-]",
    )
    min_area_px: int = Field(
        4, ge=1, le=1_000_000, description="Smaller connected components are ignored [px]"
    )
    defect_map_downscale: int = Field(
        4, ge=1, le=64, description="Published defect maps are this many times smaller [x]"
    )
    max_defects: int = Field(
        1000, ge=1, le=100_000,
        description="Defects listed per camera (largest first); the verdict sees all that were "
        "examined (up to max_regions) [count]",
    )
    head_location: bool = Field(
        True,
        description="When the image head fails a camera, run its encoder once more over the "
        "frame to report where (part_box: the head's hot cells, 32 px granular); costs one "
        "encoder pass on failing cameras only [-]",
    )
    max_regions: int = Field(
        100, ge=1, le=10_000,
        description="Defect regions examined per camera (largest first); a frame with more is "
        "never a PASS and its reason says how many there were [count]",
    )
    region_block: int = Field(
        4, ge=1, le=64,
        description="Defects are grouped into regions on blocks of this edge: defects more than "
        "twice this apart are always separate; larger is cheaper on noisy frames [px]",
    )
    outline_points: int = Field(
        64, ge=4, le=4096, description="Most vertices of a defect's outline polygon [count]"
    )
    flat_field_eps: float = Field(
        0.05, gt=0, le=1.0,
        description="Flat-field values below this are clamped to it before dividing [-]",
    )


class ModelConfig(Section):
    """Which checkpoint the station runs."""

    checkpoint: str = Field(
        "default",
        description="Checkpoint file, relative to the config file; 'default' is the shipped "
        "model [path]",
    )
    thresholds: dict[str, float] = Field(
        default_factory=dict,
        description="Per-class probability thresholds overriding the checkpoint's [0..1]",
    )
