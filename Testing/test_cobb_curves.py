"""The clinical Cobb convention curve by curve (CobbAngleLib.geometry, numpy only): spines built
from vertebrae whose tilts are given, so each curve's end vertebrae are the most tilted ones and
its angle is the difference of their tilts; how each curve is named and flagged, on full and
cropped films; the record of a measurement; the challenge's SMAPE over several films."""
from __future__ import annotations

import numpy as np
import pytest

from CobbAngleLib import geometry
from conftest import synthetic_spine

# three curves bending alternately; the largest one is the lowest (TL/L), then the highest (PT)
LOWER_MAJOR = [0, 8, 15, 8, 0, -8, -15, -8, 0, 10, 20, 30, 20, 10, 0, -10, -20]
UPPER_MAJOR = [20, 30, 20, 10, 0, -10, -20, -10, 0, 8, 15, 8, 0, -8, -15, -8, 0]


def curves(tilts, **kw):
    m = geometry.cobb_angles(synthetic_spine(tilts), **kw)
    return m, {c.name: c for c in m.curves}


def ends(c):
    return c.upper_end_vertebra, c.apex, c.lower_end_vertebra


@pytest.mark.parametrize("mirror", [1, -1])
def test_three_curves_with_the_major_lowest(mirror):
    m, c = curves(np.multiply(mirror, LOWER_MAJOR))
    assert [x.name for x in m.curves] == ["PT", "MT", "TL_L"]
    assert c["TL_L"].angle_deg == pytest.approx(50.0) and ends(c["TL_L"])[::2] == ("T12", "L5")
    assert c["MT"].angle_deg == pytest.approx(45.0) and ends(c["MT"])[::2] == ("T7", "T12")
    assert c["PT"].angle_deg == pytest.approx(30.0) and ends(c["PT"])[::2] == ("T3", "T7")
    if mirror == 1:  # the apex: the vertebra farthest from the line joining the end vertebrae
        assert [c[n].apex for n in ("PT", "MT", "TL_L")] == ["T5", "T10", "L2"]
    assert [c[n].role for n in ("PT", "MT", "TL_L")] == ["minor", "minor", "major"]
    assert c["MT"].upper_line == (6, "sup") and c["MT"].lower_line == (11, "inf")


@pytest.mark.parametrize("mirror", [1, -1])
def test_three_curves_with_the_major_highest(mirror):
    m, c = curves(np.multiply(mirror, UPPER_MAJOR))
    assert c["PT"].angle_deg == pytest.approx(50.0) and ends(c["PT"])[::2] == ("T2", "T7")
    assert c["MT"].angle_deg == pytest.approx(35.0) and ends(c["MT"])[::2] == ("T7", "T11")
    assert c["TL_L"].angle_deg == pytest.approx(30.0) and ends(c["TL_L"])[::2] == ("T11", "L3")
    assert [c[n].role for n in ("PT", "MT", "TL_L")] == ["major", "minor", "minor"]


@pytest.mark.parametrize("tilts, angle, upper, apex, lower", [
    ([10] * 5 + [5, 0, -5] + [-10] * 9, 20.0, "T1", "T6", "T9"),  # apex T6: the first main thoracic vertebra
    ([-12] * 5 + [-6, 0, 6] + [12] * 9, 24.0, "T1", "T7", "T10"),
])
def test_a_single_curve_has_no_compensatory_curves(tilts, angle, upper, apex, lower):
    m, c = curves(tilts)
    assert c["MT"].angle_deg == pytest.approx(angle) and ends(c["MT"]) == (upper, apex, lower)
    assert c["MT"].role == "major"
    for name in ("PT", "TL_L"):  # on the film but straight: no curve (no angle, never 0.0), no end vertebrae
        assert c[name].angle_deg is None and ends(c[name]) == (None, None, None) and c[name].role == "no curve"
        assert c[name].upper_line is None and c[name].lower_line is None


def test_a_main_thoracic_apex_at_t11_and_a_small_compensatory_curve():
    tilts = [0.0] * 5 + [0.0, 6.0, 12.0, 18.0, 12.0, 6.0, 0.0, -6.0, -12.0, -13.0, -12.0, -12.2]
    m, c = curves(tilts)
    assert c["MT"].apex is not None
    # a lumbar curve of 0.8 deg below the major one is still a curve with its ends
    tilts = [10] * 5 + [5, 0, -5] + [-10] * 7 + [-9.6, -9.2]
    m, c = curves(tilts)
    assert c["TL_L"].angle_deg == pytest.approx(0.8) and ends(c["TL_L"])[0] is not None


def test_endplates_more_than_90_degrees_apart_are_measured_between_lines():
    # lines have no direction: endplates 120 deg apart make a 60 deg angle (read as 120 deg it
    # would be the largest); the turn is made in two 60 deg steps, since a vertebra turned by over
    # 90 deg from its neighbour no longer lies below it along the spine (refused as out of order)
    tilts = [55] * 8 + [-5] + [-65] * 8
    _, c = curves(tilts)
    assert c["MT"].angle_deg == pytest.approx(60.0)
    assert geometry.vertebrae_out_of_order(synthetic_spine(tilts)) == []
    with pytest.raises(geometry.LandmarkError, match="T9 is not below T8"):
        geometry.cobb_angles(synthetic_spine([55] * 8 + [-65] * 9))


def test_full_film_notes_and_roles_carry_no_film_edge():
    m, c = curves(LOWER_MAJOR)
    assert m.vertebrae_present == geometry.VERTEBRA_NAMES and "only" not in m.note
    assert m.note.startswith("clinical:")
    assert c["TL_L"].lower_end_vertebra == "L5" and c["TL_L"].role == "major"  # ends at L5, the last vertebra
    _, c = curves(UPPER_MAJOR)
    assert c["PT"].upper_end_vertebra == "T2" and c["PT"].role == "major"


def cropped(tilts, first, last):
    v = synthetic_spine(tilts)
    v[:first] = np.nan
    v[last + 1:] = np.nan
    return geometry.cobb_angles(v)


def test_cropped_films_say_what_is_on_them_and_flag_end_vertebrae_at_the_edge():
    full = geometry.cobb_angles(synthetic_spine(LOWER_MAJOR))
    m = cropped(LOWER_MAJOR, 2, 15)  # T3..L4
    assert m.vertebrae_present == geometry.VERTEBRA_NAMES[2:16]
    assert m.note == full.note + "; only T3-L4 on the film"
    c = {x.name: x for x in m.curves}
    assert c["PT"].upper_end_vertebra == "T3" and c["PT"].role == "minor" + geometry._FILM_EDGE
    assert c["TL_L"].lower_end_vertebra == "L4" and c["TL_L"].role == "minor" + geometry._FILM_EDGE
    assert c["MT"].role == "major"  # T7-T12: inside the film, now the largest
    # a film from T2: a curve ending at T2 touches the edge too
    m = cropped(UPPER_MAJOR, 1, 16)
    assert {x.name: x for x in m.curves}["PT"].role == "major" + geometry._FILM_EDGE


C_CURVE = [10] * 5 + [5, 0, -5] + [-10] * 9  # one main thoracic curve, T1-T9


def test_regions_at_the_film_edge_are_on_the_film():
    # T5..L5: the proximal thoracic region (T1-T5) is on the film through T5 alone
    c = {x.name: x for x in cropped(C_CURVE, 4, 16).curves}
    assert c["PT"].angle_deg is None and c["PT"].role == "no curve"
    # T1..T12: the thoracolumbar region (T12-L5) is on the film through T12 alone
    c = {x.name: x for x in cropped(C_CURVE, 0, 11).curves}
    assert c["TL_L"].angle_deg is None and c["TL_L"].role == "no curve"
    # T1..T11: it is not
    m = cropped(C_CURVE, 0, 10)
    c = {x.name: x for x in m.curves}
    assert c["TL_L"].angle_deg is None and c["TL_L"].role == "not on film"
    assert m.vertebrae_present == geometry.VERTEBRA_NAMES[:11]


def test_the_record_of_a_measurement():
    m = geometry.cobb_angles(synthetic_spine(LOWER_MAJOR))
    d = m.to_dict()
    assert d["convention"] == "clinical" and d["vertebrae_present"] == list(geometry.VERTEBRA_NAMES)
    mt = {c["name"]: c for c in d["curves"]}["MT"]
    assert mt["title"] == "main thoracic" and mt["angle_deg"] == pytest.approx(45.0)
    assert mt["upper_line"] == {"vertebra": "T7", "line": "sup"} and mt["lower_line"] == {"vertebra": "T12", "line": "inf"}
    assert [c["title"] for c in d["curves"]] == ["proximal thoracic", "main thoracic", "thoracolumbar/lumbar"]
    straight = geometry.cobb_angles(synthetic_spine([0] * 17)).to_dict()
    assert all(c["upper_line"] is None or isinstance(c["upper_line"], dict) for c in straight["curves"])
    assert m.curve("MT").angle_deg == pytest.approx(45.0) and m.angles["TL_L"] == pytest.approx(50.0)
    with pytest.raises(KeyError) as missing:
        m.curve("lumbar")
    assert missing.value.args == ("lumbar",)


def test_aasce_mid_axis_lines_join_the_midpoints_of_the_sides():
    v = synthetic_spine(LOWER_MAJOR)
    q = v[5]
    assert geometry.line_endpoints(v, 5, "mid") == pytest.approx(np.array([(q[0] + q[2]) / 2, (q[1] + q[3]) / 2]))
    assert geometry.line_endpoints(v, 5, "sup") == pytest.approx(q[:2])
    assert geometry.line_endpoints(v, 5, "inf") == pytest.approx(q[2:])
    mid = geometry.line_endpoints(v, 5, "mid")
    assert np.degrees(np.arctan2(*(mid[1] - mid[0])[::-1])) == pytest.approx(LOWER_MAJOR[5])
    with pytest.raises(ValueError):
        geometry.line_endpoints(v, 5, "side")
    with pytest.raises(ValueError):
        geometry.endplate_vectors(v, "side")


def test_smape_is_the_mean_over_films_of_each_films_share():
    truth = [[10.0, 5.0, 5.0], [40.0, 30.0, 10.0], [0.2, 0.1, 0.1], [0.0, 0.0, 0.0]]
    pred = [[12.0, 5.0, 3.0], [40.0, 30.0, 10.0], [0.1, 0.1, 0.1], [0.0, 0.0, 0.0]]
    shares = [4.0 / 40.0, 0.0, 0.1 / 0.7, 0.0]  # a film with no curve at all counts as agreement
    assert geometry.smape(truth, pred) == pytest.approx(100 * np.mean(shares))
    assert geometry.smape(np.ravel(truth), np.ravel(pred)) == pytest.approx(100 * np.mean(shares))


# an S-shaped spine (its centres cross the line from T1 to L5): the organisers' S-curve rule applies
S_SPINE = [-18, -12, -4, 4, 12, 18, 20, 19, 14, 6, -2, -10, -17, -20, -19, -15, -9]


def test_aasce_s_curve_rule_looks_at_which_half_of_the_film_the_major_curve_is_in():
    v = synthetic_spine(S_SPINE)  # centres from y = 150 to about 1900 pixels
    tall = geometry.cobb_angles(v, "aasce", image_height=4000)  # the major curve in the upper half
    assert [(c.angle_deg, c.upper_end_vertebra, c.lower_end_vertebra, c.role) for c in tall.curves] == [
        pytest.approx((40.0, "T7", "L2", "major")), pytest.approx((38.0, "T1", "T7", "proximal")),
        pytest.approx((11.0, "L2", "L5", "distal"))]
    short = geometry.cobb_angles(v, "aasce", image_height=1000)  # in the lower half: two curves above it
    assert [c.role for c in short.curves] == ["major", "proximal", "proximal of proximal"]
    assert short.curves[1].angle_deg == pytest.approx(38.0) and short.curves[2].upper_end_vertebra == "T1"
    assert all(c.upper_line[1] == "mid" and c.lower_line[1] == "mid" for c in tall.curves)
    assert tall.vertebrae_present == geometry.VERTEBRA_NAMES
    # a spacing scales the film's height with its rows: the same half of the film
    for spacing in ((2.0, 2.0), (2.0, 0.5)):
        scaled = geometry.cobb_angles(v, "aasce", 1000, spacing_mm=spacing)
        assert [c.role for c in scaled.curves] == [c.role for c in short.curves]


@pytest.mark.parametrize("height", [None, 0, -5.0])
def test_aasce_needs_the_image_height(height):
    with pytest.raises(geometry.LandmarkError, match="image height"):
        geometry.cobb_angles(synthetic_spine(S_SPINE), "aasce", image_height=height)


# one curve from T1 to T12, then straight and equally tilted down to L5
T1_T12 = [10] * 4 + [7.5, 5, 2.5, 0, -2.5, -5, -7.5] + [-10] * 6


@pytest.mark.parametrize("mirror", [1, -1])
def test_a_straight_stretch_below_a_curve_is_no_curve(mirror):
    _, c = curves(np.multiply(mirror, T1_T12))
    assert c["MT"].angle_deg == pytest.approx(20.0) and ends(c["MT"])[::2] == ("T1", "T12")
    # T12-L5 equally tilted: no thoracolumbar curve, and no end vertebrae for one
    assert c["TL_L"].angle_deg is None and ends(c["TL_L"]) == (None, None, None) and c["TL_L"].role == "no curve"


def test_a_curve_within_one_vertebra_has_it_as_its_apex():
    m = geometry.cobb_angles(synthetic_spine(LOWER_MAJOR), "aasce", image_height=4000)
    last = m.curves[2]
    assert (last.upper_end_vertebra, last.lower_end_vertebra, last.apex) == ("L5", "L5", "L5")
    assert last.angle_deg == pytest.approx(0.0, abs=1e-6)


def test_two_vertebrae_are_enough_and_a_gap_is_named():
    m = cropped(C_CURVE, 5, 6)
    assert m.vertebrae_present == ("T6", "T7") and m.curve("MT").angle_deg == pytest.approx(5.0)
    with pytest.raises(geometry.LandmarkError, match="at least 2 vertebrae"):
        cropped(C_CURVE, 5, 5)
    v = synthetic_spine(C_CURVE)
    v[0] = np.nan  # T1 off the film: not a gap
    v[[4, 5, 15]] = np.nan
    with pytest.raises(geometry.LandmarkError, match=r"corners are missing for T5, T6, L4$"):
        geometry.cobb_angles(v)


def test_aasce_on_a_spine_with_one_curve():
    # not S-shaped: the second curve runs from T1 to the major curve, the third from it to L5
    m = geometry.cobb_angles(synthetic_spine(T1_T12), "aasce", image_height=4000)
    assert [(c.upper_end_vertebra, c.lower_end_vertebra, c.role) for c in m.curves] == [
        ("T1", "T12", "major"), ("T1", "T1", "proximal"), ("T12", "L5", "distal")]
    assert [c.angle_deg for c in m.curves] == pytest.approx([20.0, 0.0, 0.0], abs=1e-5)


# a main thoracic curve of 60 deg (T4-T9) above a lumbar one of 50 deg whose apex, by the corners,
# is T11: both in the main thoracic region by their apex, so the lumbar curve was dropped and TL/L
# read as straight (0.0, no end vertebrae: issue 26) or as a small curve below it
LUMBAR_APEX_AT_T11 = {
    "alone": [0, 10, 25, 25, 15, 0, -15, -30, -35, -20, -5, 5, 12, 15, 15, 15, 15],
    "with a small curve below": [0, 10, 25, 25, 15, 0, -15, -30, -35, -20, -5, 5, 12, 15, 15, 12, 8],
}


@pytest.mark.parametrize("mirror", [1, -1])
@pytest.mark.parametrize("case", sorted(LUMBAR_APEX_AT_T11))
def test_a_lumbar_curve_of_50_degrees_with_its_apex_at_t11_is_the_tl_l_curve(case, mirror):
    tilts = np.multiply(mirror, LUMBAR_APEX_AT_T11[case])
    v = synthetic_spine(tilts)
    lumbar = geometry.curve_between(v, "TL_L", 8, 13)
    assert lumbar.angle_deg == pytest.approx(50.0) and lumbar.apex == "T11"  # what the corners show
    _, c = curves(tilts)
    assert c["MT"].angle_deg == pytest.approx(60.0) and ends(c["MT"])[::2] == ("T4", "T9")
    assert c["TL_L"].angle_deg == pytest.approx(lumbar.angle_deg)
    assert ends(c["TL_L"]) == ("T9", "T11", lumbar.lower_end_vertebra)
    assert c["TL_L"].role == "minor" and c["MT"].role == "major"


def test_a_curve_is_never_renamed_upwards():
    # a curve of 15 deg (T1-T9, apex in the main thoracic region) above a larger one of that region
    # (T9-L2, apex T11) stays dropped: it is no proximal thoracic curve
    tilts = [0, 0, 0, 0, 0, -4, -10, -14, -15, -5, 10, 25, 35, 40, 40, 40, 40]
    v = synthetic_spine(tilts)
    assert geometry.curve_between(v, "PT", 0, 8).angle_deg == pytest.approx(15.0)
    _, c = curves(tilts)
    assert c["MT"].angle_deg == pytest.approx(55.0) and ends(c["MT"]) == ("T9", "T11", "L2")
    assert c["PT"].angle_deg is None and c["PT"].role == "no curve"
    assert c["TL_L"].angle_deg is None and c["TL_L"].role == "no curve"  # L2-L5 equally tilted, not 0.0
