"""The Inspector end to end on the CPU with tiny and oracle models, and the shipped default."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from config import load_config
from config.errors import CheckpointError, ConfigError, PipelineError
from config.rules import RulesConfig
from models import DEFAULT_CHECKPOINT
from models.build import ModelSpec
from models.checkpoint import read_checkpoint
from models.operating_point import OperatingPoint
from pipeline import Inspector
from pipeline.types import CameraCalibration, InputImage, Verdict
from tests.models.tester import ConstantModel, OracleModel, inspector_for, tiny_spec

RULES = RulesConfig.model_validate({"default": {"min_area_mm2": 1.0, "min_area_px": 50}})


def _frame(h: int = 150, w: int = 200) -> np.ndarray:
    img = np.full((h, w), 40, np.uint8)
    img[30:50, 60:100] = 220  # 20 x 40 = 800 px bright square
    img[100:104, 150:154] = 220  # 16 px
    return img


def test_known_defects_through_the_whole_pipeline() -> None:
    """Bright squares of known size come back as Crack defects with exactly that area, in
    full-frame coordinates, with mm², and the verdict names the large one."""
    ins = inspector_for(OracleModel(), rules=RULES)
    result = ins.inspect([InputImage("cam0", _frame(), "Mono8")], mm_per_px={"cam0": 0.1})
    (cam,) = result.cameras
    assert [(d.class_name, d.area_px, d.box) for d in cam.defects] == [
        ("Crack", 800, (60, 30, 40, 20)), ("Crack", 16, (150, 100, 4, 4))]
    assert cam.defects[0].area_mm2 == pytest.approx(8.0)
    assert result.verdict is Verdict.FAIL
    assert result.reasons == ["Crack 8.0 mm2 >= 1.0 mm2 at (80, 40) on cam0 (score 1.00)"]
    assert cam.defect_map.shape == (38, 50) and cam.defect_map.dtype == np.uint8
    assert set(np.unique(cam.defect_map)) == {0, 2}
    assert set(result.timings_ms) == {"preprocess", "infer", "postprocess", "verdict", "total"}


def test_two_cameras_bayer_and_flat_field() -> None:
    """Two cameras: a vignetted Bayer frame corrected by its flat field gives what the ideal
    frame gives (and not what the uncorrected one gives), a clean camera passes, and the
    calibration's scale wins over the argument."""
    h, w = 96, 128
    scene = np.full((h, w), 40.0, np.float32)
    scene[40:60, 40:70] = 220.0
    flat = np.linspace(0.7, 1.3, w, dtype=np.float32)[None, :].repeat(h, 0)
    raw = np.clip(scene * flat, 0, 255).astype(np.uint8)
    cal = CameraCalibration(flat=flat, mm_per_px=0.2, calibration_id="c")
    ins = inspector_for(OracleModel(), rules=RULES)
    images = [InputImage("cam0", raw, "BayerRG8"),
              InputImage("cam1", np.full((h, w), 30, np.uint8), "Mono8")]
    result = ins.inspect(images, {"cam0": cal}, {"cam0": 0.1, "cam1": 0.1})
    cam0, cam1 = result.cameras
    ideal = ins.inspect([InputImage("cam0", scene.astype(np.uint8), "BayerRG8")])
    uncorrected = ins.inspect([InputImage("cam0", raw, "BayerRG8")])
    areas = [d.area_px for d in ideal.cameras[0].defects]
    assert [d.area_px for d in cam0.defects] == areas
    assert [d.area_px for d in uncorrected.cameras[0].defects] != areas
    assert 600 <= areas[0] <= 600 + 2 * (20 + 30) + 4  # the square, one demosaic px around
    assert cam0.defects[0].area_mm2 == pytest.approx(areas[0] * 0.04)
    assert cam1.defects == []
    assert result.verdict is Verdict.FAIL and "on cam0" in result.reasons[0]


def test_clean_frames_pass() -> None:
    """Nothing bright, nothing found: PASS without reasons, an all-zero defect map."""
    ins = inspector_for(OracleModel(), rules=RULES)
    result = ins.inspect([InputImage("cam0", np.full((70, 90), 10, np.uint8), "Mono8")])
    assert result.verdict is Verdict.PASS and result.reasons == []
    assert not result.cameras[0].defect_map.any()


def test_whole_frame_mode_agrees_with_tiles() -> None:
    """Whole-frame mode finds the same defects as tiled mode for a pointwise model."""
    tiled = inspector_for(OracleModel(), rules=RULES)
    whole = inspector_for(OracleModel(), rules=RULES, mode="whole")
    img = [InputImage("cam0", _frame(), "Mono8")]
    assert tiled.inspect(img).cameras[0].defects == whole.inspect(img).cameras[0].defects


def test_region_of_interest_hides_defects_outside() -> None:
    """A region around the small square leaves only the small square."""
    from pipeline.verdict import Region

    ins = inspector_for(OracleModel(), rules=RULES)
    ins.regions["cam0"] = Region(polygon=((140.0, 90.0), (170.0, 90.0), (170.0, 120.0),
                                          (140.0, 120.0)))
    result = ins.inspect([InputImage("cam0", _frame(), "Mono8")])
    assert [d.area_px for d in result.cameras[0].defects] == [16]


def test_truncated_list_keeps_the_verdict() -> None:
    """With max_defects 1 only the largest is listed, but the verdict saw all of them."""
    ins = inspector_for(OracleModel(), rules=RULES, max_defects=1)
    result = ins.inspect([InputImage("cam0", _frame(), "Mono8")])
    assert len(result.cameras[0].defects) == 1
    assert result.verdict is Verdict.FAIL


def test_bad_input_raises() -> None:
    """No images, two images of one camera, foreign objects: PipelineError, not a verdict."""
    ins = inspector_for(ConstantModel([1.0, 0.0, 0.0]))
    img = InputImage("cam0", np.zeros((64, 64), np.uint8), "Mono8")
    with pytest.raises(PipelineError, match="at least one"):
        ins.inspect([])
    with pytest.raises(PipelineError, match="one image per camera"):
        ins.inspect([img, img])
    with pytest.raises(PipelineError, match="InputImage"):
        ins.inspect([np.zeros((4, 4))])  # type: ignore[list-item]


def test_nan_output_is_an_error_not_a_pass() -> None:
    """A network producing NaN makes the inspection fail loudly (never a silent PASS)."""
    ins = inspector_for(ConstantModel([float("nan"), 0.0, 0.0]))
    with pytest.raises(PipelineError, match="NaN"):
        ins.inspect([InputImage("cam0", np.zeros((64, 64), np.uint8), "Mono8")])


def test_rules_and_thresholds_must_name_model_classes() -> None:
    """A rule or threshold for a class the model lacks is a ConfigError listing the classes."""
    with pytest.raises(ConfigError, match="Blowhole, Crack"):
        inspector_for(OracleModel(), rules=RulesConfig.model_validate(
            {"classes": {"Scratch": {}}}))
    from tests.models.tester import checkpoint_for

    with pytest.raises(ConfigError, match=r"model\.thresholds"):
        Inspector(checkpoint_for(OracleModel()), thresholds={"Dent": 0.3})


def test_sigmoid_head() -> None:
    """A sigmoid (multi-label/binary) head: channels are the defect classes, no background."""
    spec = tiny_spec(head="sigmoid", classes=["background", "defect"])
    ins = inspector_for(ConstantModel([4.0]), spec=spec, rules=RULES)
    result = ins.inspect([InputImage("cam0", np.zeros((64, 64), np.uint8), "Mono8")])
    (d,) = result.cameras[0].defects
    assert d.class_name == "defect" and d.area_px == 64 * 64
    assert d.max_score == pytest.approx(float(torch.sigmoid(torch.tensor(4.0))))


def test_from_config_runs_the_shipped_default_model() -> None:
    """The default config loads the shipped model on the CPU and reports what it runs."""
    cfg = load_config("default", ["pipeline.device=cpu"])
    ins = Inspector.from_config(cfg)
    info = ins.model_info
    meta = read_checkpoint(DEFAULT_CHECKPOINT)[0]
    assert isinstance(info["trained"], bool) and info["device"] == "cpu"
    assert info["classes"] == meta.spec.classes and meta.spec.classes[0] == "background"
    assert info["model_id"] == meta.model_id
    assert {"architecture", "encoder"} <= set(info)
    result = ins.inspect([InputImage("cam0", np.full((64, 96), 100, np.uint8), "Mono8")],
                         mm_per_px={"cam0": 0.1})
    assert result.cameras[0].defect_map.shape == (16, 24)


def test_from_config_missing_checkpoint(tmp_path: Path) -> None:
    """A checkpoint path that does not exist is a CheckpointError naming it."""
    cfg = load_config("default", [f"model.checkpoint={tmp_path / 'nope.ckpt'}"])
    with pytest.raises(CheckpointError, match=r"nope\.ckpt"):
        Inspector.from_config(cfg)


def test_a_frame_with_more_regions_than_the_cap_never_passes() -> None:
    """Many separate specks (more regions than pipeline.max_regions) make the camera FAIL
    even though no speck fails a rule; the reason counts them and says the largest are
    reported, and only that many are listed."""
    img = np.full((120, 160), 40, np.uint8)
    img[4:120:12, 4:160:12] = 220  # 10 x 13 = 130 one-pixel specks, far apart
    ins = inspector_for(OracleModel(), rules=RULES, max_regions=20)
    result = ins.inspect([InputImage("cam0", img, "Mono8")], mm_per_px={"cam0": 0.1})
    (cam,) = result.cameras
    assert cam.capped and cam.regions_found == 130 and len(cam.defects) == 20
    assert result.verdict is Verdict.FAIL
    assert result.reasons == [
        "130 defect regions on cam0, more than pipeline.max_regions allows; only the 20 "
        "largest were examined and are reported (a noisy or textured frame: check the part, "
        "the lighting and the model)"]
    relaxed = inspector_for(OracleModel(), rules=RULES, max_regions=1000)
    result = relaxed.inspect([InputImage("cam0", img, "Mono8")], mm_per_px={"cam0": 0.1})
    assert result.verdict is Verdict.PASS and len(result.cameras[0].defects) == 130


def test_noise_frame_is_bounded_and_never_a_pass() -> None:
    """A noise frame (every other pixel bright at random: thousands of components) is
    examined as a few regions, quickly, and fails on their size, not on a timeout."""
    rng = np.random.default_rng(0)
    img = np.where(rng.random((192, 256)) < 0.5, 220, 40).astype(np.uint8)
    ins = inspector_for(OracleModel(), rules=RULES, max_regions=20)
    result = ins.inspect([InputImage("cam0", img, "Mono8")], mm_per_px={"cam0": 0.1})
    (cam,) = result.cameras
    assert not cam.capped and 1 <= cam.regions_found <= 20
    assert sum(d.area_px for d in cam.defects) == int((img > 128).sum())
    assert result.verdict is Verdict.FAIL


def test_warmup_runs_blank_frames_only_where_it_pays() -> None:
    """On the CPU warm-up costs nothing by default; forced, it runs a blank frame of each
    size through the same path (tiled and whole) and the next inspection is unchanged."""
    tiled = inspector_for(OracleModel(), rules=RULES)
    assert tiled.warmup([(150, 200)]) == 0.0
    assert tiled.warmup([(150, 200), (64, 96)], always=True) > 0.0
    result = tiled.inspect([InputImage("cam0", _frame(), "Mono8")])
    assert [d.area_px for d in result.cameras[0].defects] == [800, 16]
    whole = inspector_for(OracleModel(), rules=RULES, mode="whole")
    assert whole.warmup([(150, 200)], always=True) > 0.0


class _HeadOracle(torch.nn.Module):
    """The oracle's masks plus image logits ``(N, 2)``: ``head`` for Crack, -10 for Blowhole."""

    def __init__(self, head: float) -> None:
        super().__init__()
        self.oracle = OracleModel()
        self.head = head

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(segmentation logits, image logits)."""
        img = torch.tensor([[-10.0, self.head]], dtype=x.dtype).expand(x.shape[0], 2)
        return self.oracle(x), img


def _op_spec(rule: str, head: float | None = None) -> tuple[ModelSpec, OperatingPoint]:
    spec = tiny_spec().model_copy(update={"architecture": "unet",
                                          "encoder": "tu-efficientnet_lite0", "kwargs": {},
                                          "image_head": True})
    op = OperatingPoint.model_validate({
        "rule": rule, "pixel_thresholds": {"Blowhole": 0.5, "Crack": 0.5},
        "min_area_px": {"Blowhole": 100, "Crack": 100}, "head_threshold": head})
    return spec, op


def _inspector_with_op(model: torch.nn.Module, rule: str, head: float | None,
                       rules: RulesConfig | None = None) -> Inspector:
    from config.pipeline import PipelineConfig
    from models.checkpoint import Checkpoint, make_meta

    spec, op = _op_spec(rule, head)
    meta = make_meta(name="op", spec=spec, state_dict=model.state_dict(),
                     thresholds={"Blowhole": 0.5, "Crack": 0.5}, operating_point=op)
    cfg = PipelineConfig.model_validate({"device": "cpu", "tile_size": 64, "min_area_px": 1})
    return Inspector(Checkpoint(meta, model.eval()), pipeline=cfg, rules=rules)


def test_the_model_operating_point_decides_by_default() -> None:
    """No rules in the config: the checkpoint's operating point decides, in px even where a
    scale is known (800 px >= 100 px fails, 16 px does not), and the result names it."""
    ins = _inspector_with_op(OracleModel(), "segmentation", None)
    result = ins.inspect([InputImage("cam0", _frame(), "Mono8")], mm_per_px={"cam0": 0.1})
    assert result.verdict is Verdict.FAIL
    assert result.reasons == ["Crack 800 px >= 100 px at (80, 40) on cam0 (score 1.00)"]
    assert result.operating_point == ins.operating_point.op_id  # type: ignore[union-attr]
    assert ins.model_info["operating_point"].startswith("op-")  # type: ignore[union-attr]
    assert "model operating point" in str(ins.model_info["decision"])


def test_config_rules_override_the_operating_point_and_say_so() -> None:
    """rules.default in the config: those rules decide, and model_info says it overrides."""
    ins = _inspector_with_op(OracleModel(), "segmentation", None, rules=RULES)
    assert ins.operating_point is None and ins.decision_id == "config-rules"
    assert "override" in str(ins.model_info["decision"])
    result = ins.inspect([InputImage("cam0", _frame(), "Mono8")], mm_per_px={"cam0": 0.1})
    assert result.reasons == ["Crack 8.0 mm2 >= 1.0 mm2 at (80, 40) on cam0 (score 1.00)"]
    assert result.operating_point == "config-rules"


def test_image_head_rule_fails_a_part_the_regions_would_pass() -> None:
    """rule either: a clean frame with a confident head (logit 3 >= 2) fails with the head's
    reason and its class; a head below its threshold passes; the part score is reported."""
    clean = np.full((150, 200), 40, np.uint8)
    sure = _inspector_with_op(_HeadOracle(3.0), "either", 2.0)
    result = sure.inspect([InputImage("cam0", clean, "Mono8")])
    assert result.verdict is Verdict.FAIL
    assert result.reasons == ["part score 3.00 >= 2.00 on cam0 (image head; most likely Crack)"]
    assert result.cameras[0].part_score == pytest.approx(3.0)
    unsure = _inspector_with_op(_HeadOracle(1.0), "either", 2.0)
    assert unsure.inspect([InputImage("cam0", clean, "Mono8")]).verdict is Verdict.PASS
    head_only = _inspector_with_op(_HeadOracle(1.0), "image_head", 2.0)
    big = head_only.inspect([InputImage("cam0", _frame(), "Mono8")])
    assert big.verdict is Verdict.PASS  # regions do not decide under the head-only rule


def test_flips_follow_the_operating_point_unless_the_config_forces_them() -> None:
    """pipeline.flips 'model' (default): the station flips when the model's point was chosen
    on flipped outputs; 'on' / 'off' force it; config rules (no point) flip only when 'on'."""
    from config.pipeline import PipelineConfig
    from models.checkpoint import Checkpoint, make_meta

    spec, op = _op_spec("segmentation")
    model = OracleModel()

    def ins(flips: str, op_flips: bool, rules: RulesConfig | None = None) -> Inspector:
        meta = make_meta(name="op", spec=spec, state_dict=model.state_dict(),
                         thresholds={"Blowhole": 0.5, "Crack": 0.5},
                         operating_point=op.model_copy(update={"flips": op_flips}))
        cfg = PipelineConfig.model_validate({"device": "cpu", "tile_size": 64, "flips": flips})
        return Inspector(Checkpoint(meta, model.eval()), pipeline=cfg, rules=rules)

    assert ins("model", True).flips and not ins("model", False).flips
    assert ins("on", False).flips and not ins("off", True).flips
    assert not ins("model", True, rules=RULES).flips and ins("on", True, rules=RULES).flips
    result = ins("model", True).inspect([InputImage("cam0", _frame(), "Mono8")])
    assert [d.area_px for d in result.cameras[0].defects] == [800, 16]  # symmetric oracle
