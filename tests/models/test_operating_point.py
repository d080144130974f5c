"""The operating point: its validation, its choice on validation records, its stored form."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.errors import ModelError
from models.build import ModelSpec, build_model
from models.checkpoint import load_checkpoint, save_checkpoint
from models.operating_point import ImageRecord, OperatingPoint, choose, flagged, legacy

CLASSES = ["Blowhole", "Crack"]


def record(blowhole: int = 0, crack: int = 0, head: float | None = None,
           label: str = "") -> ImageRecord:
    """A validation image with the given largest regions [px], head score and true label."""
    return ImageRecord({"Blowhole": blowhole, "Crack": crack}, head, label)


def test_the_rule_is_checked() -> None:
    """A head rule needs a head threshold; classes must agree; areas and thresholds must be
    in range; each error says which rule was broken."""
    base = {"pixel_thresholds": {"a": 0.5}, "min_area_px": {"a": 4}}
    with pytest.raises(ValueError, match="head_threshold is needed"):
        OperatingPoint.model_validate({**base, "rule": "either"})
    with pytest.raises(ValueError, match="same classes"):
        OperatingPoint.model_validate({**base, "rule": "segmentation", "min_area_px": {"b": 4}})
    with pytest.raises(ValueError, match="within"):
        OperatingPoint.model_validate({**base, "rule": "segmentation",
                                       "pixel_thresholds": {"a": 1.5}})
    with pytest.raises(ValueError, match=">= 1 px"):
        OperatingPoint.model_validate({**base, "rule": "segmentation", "min_area_px": {"a": 0}})


def test_segmentation_rule_meets_the_target_with_per_class_areas() -> None:
    """Small blowholes are real defects while defect-free parts show small cracks-like noise:
    the choice keeps blowholes at a small area and raises the crack area above the noise."""
    recs = [
        record(blowhole=6, label="Blowhole"), record(blowhole=9, label="Blowhole"),
        record(crack=300, label="Crack"), record(crack=120, label="Crack"),
        *(record(crack=40) for _ in range(20)), *(record() for _ in range(30)),
    ]
    op = choose(recs, CLASSES, {c: 0.5 for c in CLASSES}, target=0.0, rule="segmentation")
    assert op.rule == "segmentation"
    assert op.figures["defect_recall"] == 1.0 and op.figures["false_reject_rate"] == 0.0
    assert op.min_area_px["Blowhole"] <= 6 and 40 < op.min_area_px["Crack"] <= 120
    assert all(flagged(op, r) == bool(r.label) for r in recs)


def test_head_rule_allows_exactly_the_false_reject_budget() -> None:
    """100 defect-free images at 2 %: the head threshold lets at most 2 of them through,
    ties included (a threshold among tied scores counts them all)."""
    free = [record(head=float(i) / 10) for i in range(98)] + [record(head=20.0)] * 2
    bad = [record(head=15.0, label="Crack"), record(head=30.0, label="Crack")]
    op = choose([*free, *bad], CLASSES, {c: 0.5 for c in CLASSES}, target=0.02,
                rule="image_head")
    assert op.head_threshold is not None
    assert sum(flagged(op, r) for r in free) <= 2
    assert op.figures["defect_recall"] == 1.0
    tied = [record(head=1.0)] * 3 + [record(head=5.0, label="Crack")]
    op2 = choose(tied, CLASSES, {c: 0.5 for c in CLASSES}, target=0.34, rule="image_head")
    assert op2.figures["false_reject_rate"] <= 0.34


def test_either_rule_and_auto_take_the_best_recall() -> None:
    """A defect only the head sees and one only the regions see: auto picks ``either``, which
    flags both without a false reject."""
    recs = [record(blowhole=50, head=-5.0, label="Blowhole"),
            record(crack=0, head=4.0, label="Crack"),
            *(record(blowhole=2, head=-4.0) for _ in range(10))]
    op = choose(recs, CLASSES, {c: 0.5 for c in CLASSES}, target=0.0)
    assert op.rule == "either"
    assert op.figures["defect_recall"] == 1.0 and op.figures["false_reject_rate"] == 0.0


def test_infeasible_target_falls_back_to_the_fewest_false_rejects() -> None:
    """When every candidate rejects good parts, the one with the fewest wins and says the
    target was not met."""
    recs = [record(blowhole=5000, label="Blowhole"), record(blowhole=5000)]
    op = choose(recs, CLASSES, {c: 0.5 for c in CLASSES}, target=0.0, rule="segmentation")
    assert op.figures["target_met"] == 0.0


def test_rules_that_need_a_head_are_refused_without_one() -> None:
    """Asking for the head rule without head scores is an error that says so."""
    with pytest.raises(ValueError, match="image head"):
        choose([record(label="Crack"), record()], CLASSES, {c: 0.5 for c in CLASSES},
               rule="image_head")


def test_round_trip_through_the_checkpoint(tmp_path: Path) -> None:
    """The operating point is stored in the checkpoint, read back equal, with the same id;
    a head rule on a network without a head is refused when writing."""
    spec = ModelSpec.model_validate({
        "architecture": "plain-unet", "encoder": None, "classes": ["background", *CLASSES],
        "head": "sigmoid", "kwargs": {"base_channels": 4, "depth": 2}})
    op = OperatingPoint(rule="segmentation", pixel_thresholds={"Blowhole": 0.4, "Crack": 0.6},
                        min_area_px={"Blowhole": 4, "Crack": 64}, chosen_on="val",
                        figures={"defect_recall": 0.9})
    save_checkpoint(tmp_path / "m.pt", build_model(spec), name="m", spec=spec,
                    operating_point=op)
    back = load_checkpoint(tmp_path / "m.pt").meta
    assert back.operating_point == op and back.operating_point.op_id == op.op_id
    assert back.effective_operating_point() is back.operating_point
    head_op = op.model_copy(update={"rule": "image_head", "head_threshold": 1.0})
    with pytest.raises(ModelError, match="image head"):
        save_checkpoint(tmp_path / "n.pt", build_model(spec), name="n", spec=spec,
                        operating_point=head_op)


def test_format_1_checkpoints_get_their_provenance_point() -> None:
    """Old checkpoints (an image threshold and one minimum area in the provenance) read as a
    segmentation rule with those values."""
    op = legacy({"Blowhole": 0.78, "Crack": 0.78}, {"image_threshold": 0.97, "min_area_px": 1024},
                CLASSES)
    assert op.rule == "segmentation"
    assert op.pixel_thresholds == {"Blowhole": 0.97, "Crack": 0.97}
    assert op.min_area_px == {"Blowhole": 1024, "Crack": 1024}
    assert legacy({}, None, CLASSES).min_area_px["Crack"] == 16


def test_id_ignores_figures_and_provenance() -> None:
    """Two points that decide alike share an id whatever they report."""
    a = OperatingPoint(rule="segmentation", pixel_thresholds={"x": 0.5}, min_area_px={"x": 4},
                       figures={"defect_recall": 0.5})
    b = a.model_copy(update={"figures": {}, "chosen_on": "elsewhere"})
    assert a.op_id == b.op_id and a.op_id.startswith("op-")
    assert "rule segmentation" in a.describe()


def test_flips_are_part_of_the_decision() -> None:
    """A point chosen on flipped outputs records it (choose(flips=True)); its id differs from
    the same thresholds without flips, whose id stays what it always was; describe says so."""
    records = [record(blowhole=50, label="Blowhole"), record()]
    plain = choose(records, CLASSES, {"Blowhole": 0.5, "Crack": 0.5}, rule="segmentation")
    flipped = choose(records, CLASSES, {"Blowhole": 0.5, "Crack": 0.5}, rule="segmentation",
                     flips=True)
    assert not plain.flips and flipped.flips
    assert plain.op_id != flipped.op_id
    assert plain.op_id == plain.model_copy(update={"flips": False}).op_id
    assert "flips" in flipped.describe() and "flips" not in plain.describe()
