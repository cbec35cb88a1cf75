"""End vertebrae chosen by the reader (``CobbAngleLib.review.choose_ends``), headless on the review
layer: the angle is measured between the chosen ends (``geometry.curve_between``) and stays so
while corners move; a curve the automatic search missed is added by choosing its ends; the
automatic choice changing a curve's ends or role is said in the table, never silent; the record
keeps the choice."""
from __future__ import annotations

import numpy as np
import pytest

from CobbAngleLib import geometry
from conftest import synthetic_spine

C_CURVE = [10] * 5 + [5, 0, -5] + [-10] * 9  # one main thoracic curve T1-T9: PT and TL/L are straight


@pytest.fixture
def live(slicer_app):
    from CobbAngleLib.pipeline import result_from_landmarks
    from CobbAngleLib.review import CobbPresenter
    from MSKCommonLib import mrml as common
    from MSKCommonLib.image import Image
    from MSKCommonLib.review import Review

    image = Image(pixels=np.full((2300, 900), 100, np.float32), spacing_mm=None, source="film.png", bits=8,
                  normalisation="none")
    result = result_from_landmarks(image, synthetic_spine(C_CURVE), source="constructed corners")
    volume = common.volume_from_image(slicer_app.scene, image, "film")
    review = Review(CobbPresenter())
    shown = review.show(slicer_app.scene, volume, result, on_existing="replace")
    yield shown
    review.detach_all()


def move(live, label, step):
    from MSKCommonLib import mrml as common

    node = live.node("landmarks")
    index = live.labels("landmarks").index(label)
    xy = common.ras_to_pixels(live.volume, common.control_points(node)[index:index + 1])[0]
    node.SetNthControlPointPosition(index, *common.pixels_to_ras(live.volume, xy + np.asarray(step, float))[0])


def curves(live) -> dict:
    return {c.name: c for c in live.measurement.curves}


def corners_now(live) -> np.ndarray:
    return live.points_px("landmarks").reshape(17, 4, 2)


def test_chosen_ends_hold_while_corners_move_and_the_angle_uses_them(live):
    from CobbAngleLib.review import choose_ends

    assert (curves(live)["MT"].upper_end_vertebra, curves(live)["MT"].lower_end_vertebra) == ("T1", "T9")
    choose_ends(live, "MT", "T2", "T10")
    mt = curves(live)["MT"]
    assert (mt.upper_end_vertebra, mt.lower_end_vertebra) == ("T2", "T10") and mt.role.endswith("ends chosen by the reader")
    assert mt.angle_deg == pytest.approx(geometry.curve_between(corners_now(live), "MT", 1, 9).angle_deg)
    # T5's corner pulled so that T5 becomes the most tilted: the automatic choice would take it, the chosen ends stay
    move(live, "T5 sup-L", (0, 40))
    automatic = geometry.cobb_angles(corners_now(live)).curve("MT")
    assert automatic.upper_end_vertebra != "T2"
    mt = curves(live)["MT"]
    assert (mt.upper_end_vertebra, mt.lower_end_vertebra) == ("T2", "T10")
    assert mt.angle_deg == pytest.approx(geometry.curve_between(corners_now(live), "MT", 1, 9).angle_deg)
    record = live.record()
    assert record["chosen_ends"] == {"MT": ["T2", "T10"]}
    assert {c["name"]: c["upper_end_vertebra"] for c in record["curves"]}["MT"] == "T2"
    # back to the automatic choice
    choose_ends(live, "MT", None, None)
    assert curves(live)["MT"].upper_end_vertebra == automatic.upper_end_vertebra
    assert live.record()["chosen_ends"] == {}


def test_a_missed_curve_is_added_by_choosing_its_ends_and_bad_ends_change_nothing(live):
    from CobbAngleLib.review import choose_ends

    assert curves(live)["TL_L"].angle_deg is None and curves(live)["TL_L"].role == "no curve"
    choose_ends(live, "TL_L", "T12", "L4")
    tl = curves(live)["TL_L"]
    assert tl.angle_deg == pytest.approx(0.0, abs=1e-6) and (tl.upper_end_vertebra, tl.lower_end_vertebra) == ("T12", "L4")
    before = live.saved_record()
    for upper, lower in (("L4", "T12"), ("T12", "X9"), ("T12", "T12")):
        with pytest.raises(ValueError):
            choose_ends(live, "TL_L", upper, lower)
    assert live.saved_record() == before


def test_the_automatic_choice_changing_a_curve_is_said_in_the_table(live):
    from MSKCommonLib.mrml import table_rows

    move(live, "T5 sup-L", (0, 40))
    notes = {str(r["Note"]) for r in table_rows(live.table)}
    assert any("MT: the automatic choice changed it from T1-T9 major" in n and "choose its end vertebrae" in n
               for n in notes), notes


def test_undo_and_redo_step_through_each_edit_exactly_and_one_point_is_reset(live):
    from MSKCommonLib import mrml as common

    start, angle0 = live.snapshot()["landmarks"], curves(live)["MT"].angle_deg
    assert not live.can_undo and not live.undo()
    move(live, "T3 sup-L", (0, 8))
    first, angle1 = live.snapshot()["landmarks"], curves(live)["MT"].angle_deg
    move(live, "T9 inf-R", (5, -6))
    second = live.snapshot()["landmarks"]
    assert live.edited_labels() == {"landmarks": ["T3 sup-L", "T9 inf-R"]}
    assert live.undo()  # the last edit only
    np.testing.assert_array_equal(live.snapshot()["landmarks"], first)
    assert curves(live)["MT"].angle_deg == angle1 and live.edited_labels() == {"landmarks": ["T3 sup-L"]}
    assert live.undo()
    np.testing.assert_array_equal(live.snapshot()["landmarks"], start)
    assert curves(live)["MT"].angle_deg == angle0 and not live.edited() and not live.can_undo
    assert live.redo() and live.redo() and not live.redo()
    np.testing.assert_array_equal(live.snapshot()["landmarks"], second)
    # a drag by a widget (start ... many moves ... end) is one edit
    node = live.node("landmarks")
    node.InvokeEvent(node.PointStartInteractionEvent)
    for k in range(1, 6):
        move(live, "T5 sup-R", (0, 2))
    node.InvokeEvent(node.PointEndInteractionEvent)
    assert live.undo()
    np.testing.assert_array_equal(live.snapshot()["landmarks"], second)
    # reset of one point: that point back where the computation put it, the other edit stays
    live.reset_point("landmarks", live.labels("landmarks").index("T3 sup-L"))
    assert live.edited_labels() == {"landmarks": ["T9 inf-R"]}
    np.testing.assert_allclose(live.points_px("landmarks")[live.labels("landmarks").index("T3 sup-L")],
                               start[live.labels("landmarks").index("T3 sup-L")], atol=1e-6)
    assert live.undo() and live.edited_labels() == {"landmarks": ["T3 sup-L", "T9 inf-R"]}
    assert common.control_points(node).shape == (68, 3)


def test_the_film_shows_the_levels_and_each_curves_angle_and_ends(live):
    labels = live.node("labels")
    assert [labels.GetNthControlPointLabel(i) for i in range(labels.GetNumberOfControlPoints())] == list(
        geometry.VERTEBRA_NAMES)
    corners = corners_now(live)
    levels = live.points_px("labels")
    assert np.all(levels[:, 0] < corners[:, [0, 2], 0].min(axis=1))  # beside each vertebra, on the image left
    assert np.all(np.abs(levels[:, 1] - corners.mean(axis=1)[:, 1]) < 40)
    mt = live.node("angle.MT")
    assert mt.GetNumberOfControlPoints() == 1 and mt.GetNthControlPointLabel(0) == "MT 20.0° T1-T9"
    assert live.node("angle.PT").GetNumberOfControlPoints() == 0  # no curve: no text
    from CobbAngleLib.colors import CURVE_COLORS

    assert mt.GetDisplayNode().GetSelectedColor() == pytest.approx(CURVE_COLORS["MT"])
    move(live, "T1 sup-L", (0, 10))  # the text follows the angle
    assert mt.GetNthControlPointLabel(0) == f"MT {curves(live)['MT'].angle_deg:.1f}° T1-T9"
    assert not live.node("labels").GetAttribute("MSKMorphometry.ComputedPoints")  # not an editable node


def test_the_vertebra_segments_follow_their_corners_once_an_edit_is_done(slicer_app, tmp_path):
    """A drag is one edit: the segments stay during it (too slow for every mouse move) and are
    drawn from the moved corners when it ends, as the pipeline draws them; undo draws them back."""
    import slicerio

    from CobbAngleLib.pipeline import result_from_landmarks
    from CobbAngleLib.review import CobbPresenter
    from CobbAngleLib.segments import vertebra_labelmap
    from MSKCommonLib import mrml as common
    from MSKCommonLib.image import Image
    from MSKCommonLib.review import Review

    corners = synthetic_spine(C_CURVE)
    image = Image(pixels=np.full((2300, 900), 100, np.float32), spacing_mm=None, source="film.png", bits=8,
                  normalisation="none")
    result = result_from_landmarks(image, corners, source="constructed corners",
                                   vertebra_labelmap=vertebra_labelmap(corners, (2300, 900)))
    review = Review(CobbPresenter())
    live = review.show(slicer_app.scene, common.volume_from_image(slicer_app.scene, image, "film"), result,
                       on_existing="replace")

    def t7_pixels():
        seg = slicerio.read_segmentation(str(common.save_node(live.node("segmentation"), tmp_path / "v.seg.nrrd")))
        t7 = next(s for s in seg["segments"] if s["name"] == "T7")
        voxels = seg["voxels"] if seg["voxels"].ndim == 3 else seg["voxels"][..., t7.get("layer", 0)]
        return int(np.count_nonzero(voxels == t7["labelValue"]))

    try:
        before = t7_pixels()
        assert before == int(np.count_nonzero(vertebra_labelmap(corners, (2300, 900)) == 7))
        node = live.node("landmarks")
        node.InvokeEvent(node.PointStartInteractionEvent)
        move(live, "T7 inf-L", (30, 25))  # the corner pulled away: T7 grows
        assert t7_pixels() == before  # during the drag: as they were
        node.InvokeEvent(node.PointEndInteractionEvent)
        grown = t7_pixels()
        assert grown == int(np.count_nonzero(vertebra_labelmap(corners_now(live), (2300, 900)) == 7)) > before
        live.undo()
        assert t7_pixels() == before
    finally:
        review.detach_all()
