"""A knee's joint space width as the record reports it (KneeLandmarksLib.measure, numpy only):
widths in mm to 4 decimals or None when the contours cross, the JSW line's ends, landmarks in
pixels and in mm on a film whose pixels are not square, the confidence, the notes; and the contour
and distance geometry underneath, on knees whose answer is known."""
from __future__ import annotations

import numpy as np
import pytest

from KneeLandmarksLib import measure
from KneeLandmarksLib.landmarks import LANDMARK_LABELS
from test_knee_measure import straight_knee

SPACING = (0.2, 0.1)  # rows 0.2 mm, columns 0.1 mm


def test_the_record_of_a_measured_knee():
    pts = straight_knee(5.0, 0.05, px_per_mm=7.0) + [0.123456, 0.654321]
    m = measure.joint_space_width(pts, "right", SPACING, confidence=0.8765432)
    d = m.to_dict()
    assert set(d) == {"side", "jsw_medial_mm", "jsw_lateral_mm", "jsw_medial_points_px", "jsw_lateral_points_px",
                      "overlap", "confidence", "pixel_spacing_mm", "landmarks_px", "landmarks_mm", "notes"}
    assert d["side"] == "right" and d["notes"] == [] and d["pixel_spacing_mm"] == [0.2, 0.1]
    assert d["jsw_medial_mm"] == round(m.medial_mm, 4) and d["jsw_lateral_mm"] == round(m.lateral_mm, 4)
    assert d["jsw_medial_mm"] != d["jsw_lateral_mm"]
    assert d["jsw_medial_points_px"] == [np.round(m.medial.femur_point_px, 3).tolist(), np.round(m.medial.tibia_point_px, 3).tolist()]
    assert d["jsw_lateral_points_px"] == [np.round(m.lateral.femur_point_px, 3).tolist(), np.round(m.lateral.tibia_point_px, 3).tolist()]
    assert d["overlap"] == {"medial": False, "lateral": False}
    assert d["confidence"] == 0.8765
    assert list(d["landmarks_px"]) == list(LANDMARK_LABELS)
    for label, p in zip(LANDMARK_LABELS, pts):
        assert d["landmarks_px"][label] == np.round(p, 3).tolist()
        assert d["landmarks_mm"][label] == [round(p[0] * 0.1, 3), round(p[1] * 0.2, 3)]  # x: columns, y: rows
    assert measure.joint_space_width(pts, "right", SPACING).to_dict()["confidence"] is None
    assert measure.format_mm(m.medial_mm) == f"{m.medial_mm:.2f} mm" and measure.format_mm(None) == "not measurable"


def test_a_crossing_compartment_is_reported_not_measurable():
    m = measure.joint_space_width(straight_knee(2.0, 0.1), "right", 1.0)
    assert m.lateral.overlap and m.reported_mm("lateral") is None and m.reported_mm("medial") == m.medial_mm
    d = m.to_dict()
    assert d["jsw_lateral_mm"] is None and d["jsw_medial_mm"] == round(m.medial_mm, 4) and d["jsw_medial_mm"] > 0
    assert d["overlap"] == {"medial": False, "lateral": True}
    assert d["notes"] == ["lateral: femoral and tibial contours touch or cross: JSW not measurable"]
    both = measure.joint_space_width(straight_knee(-1.0), "right", 1.0)
    assert both.to_dict()["overlap"] == {"medial": True, "lateral": True}
    assert [n.split(":")[0] for n in both.notes] == ["medial", "lateral"]


def test_one_spacing_number_is_both_axes_and_the_side_is_checked():
    pts = straight_knee(3.0, 0.02)
    a = measure.joint_space_width(pts, "right", 0.3)
    b = measure.joint_space_width(pts, "right", (0.3, 0.3))
    assert a.spacing_mm == (0.3, 0.3) and a.medial_mm == pytest.approx(b.medial_mm) and a.lateral_mm == pytest.approx(b.lateral_mm)
    assert measure.joint_space_width(pts, "right", [0.25, 0.5]).spacing_mm == (0.25, 0.5)
    with pytest.raises(ValueError, match="side must be 'right' or 'left'"):
        measure.joint_space_width(pts, "both", 0.3)
    with pytest.raises(measure.LandmarkError, match="expected 16 landmarks"):
        measure.joint_space_width(pts[:15], "right", 0.3)


def test_a_left_knee_crossing_is_flagged_as_on_a_right_knee():
    right = measure.joint_space_width(straight_knee(2.0, 0.1), "right", 1.0)
    left_pts = straight_knee(2.0, 0.1)
    left_pts[:, 0] = 1000.0 - left_pts[:, 0]
    left = measure.joint_space_width(left_pts, "left", 1.0)
    assert left.lateral.overlap and not left.medial.overlap and left.notes == right.notes
    assert left.medial_mm == pytest.approx(right.medial_mm)


def test_a_femur_beside_the_tibia_does_not_cross_it():
    pts = straight_knee(4.0)
    pts[9:, 0] += 200.0  # the femoral contour entirely to the side of the tibial one
    m = measure.joint_space_width(pts, "right", 1.0)
    assert not m.lateral.overlap and not m.medial.overlap and m.notes == []


def test_contours_through_points_on_a_line_are_the_line_sampled_evenly():
    line = np.column_stack([np.linspace(0, 80, 9), np.linspace(10, 50, 9)])
    curve = measure.catmull_rom(line, 4)
    assert len(curve) == 8 * 4 + 1
    assert curve == pytest.approx(np.column_stack([np.linspace(0, 80, 33), np.linspace(10, 50, 33)]))
    two = measure.catmull_rom(line[:2])
    assert two == pytest.approx(line[:2]) and two is not line


def test_contours_through_points_on_a_circle_stay_on_it():
    angles = np.radians(np.linspace(200, 340, 9))
    circle = 50.0 * np.column_stack([np.cos(angles), np.sin(angles)])
    curve = measure.catmull_rom(circle)
    off = np.abs(np.linalg.norm(curve, axis=1) - 50.0)
    n = measure.PER_SEGMENT
    assert off[n:-n].max() < 0.02  # between inner points: within 0.02 of the radius 50
    assert off.max() < 0.5  # the end segments, continued straight beyond the ends: within 1 %
    assert curve[:: measure.PER_SEGMENT] == pytest.approx(circle)
    step = np.linalg.norm(np.diff(curve, axis=0), axis=1)
    assert step.max() < 1.05 * step.min()  # evenly spaced points make evenly spaced samples


def test_the_narrowest_gap_under_a_round_condyle():
    # tibia flat (y = 500), femoral condyle a circle of radius 30 whose lowest point is 4 px above it
    tibia = np.column_stack([np.linspace(420, 580, 9), np.full(9, 500.0)])
    centre = np.array([440.0, 500.0 - 4.0 - 30.0])
    a = np.radians(np.linspace(110, -10, 7))  # F2 at the bottom of the circle, over the lateral plateau
    femur = centre + 30.0 * np.column_stack([np.cos(a), np.sin(a)])
    m = measure.joint_space_width(np.vstack([tibia, femur]), "right", 0.5)
    assert m.lateral_mm == pytest.approx(0.5 * 4.0, abs=0.01)
    assert m.lateral.femur_point_px == pytest.approx([440.0, 496.0], abs=0.05)
    assert m.lateral.tibia_point_px == pytest.approx([440.0, 500.0], abs=0.05)
    assert measure.jsw_line_points(m, "lateral") == pytest.approx(np.array([m.lateral.femur_point_px, m.lateral.tibia_point_px]))
    assert measure.jsw_line_points(m, "medial")[0] == pytest.approx(m.medial.femur_point_px)


def test_closest_points_between_segments():
    d, pa, pb = measure._segment_closest(np.array([[0.0, 0.0]]), np.array([[10.0, 0.0]]),
                                         np.array([[3.0, 2.0], [12.0, 5.0], [-4.0, -1.0], [5.0, -3.0]]),
                                         np.array([[7.0, 2.0], [12.0, 9.0], [-2.0, -1.0], [5.0, 3.0]]))
    # parallel above; beyond the end; before the start; crossing
    assert d[0] == pytest.approx([2.0, np.hypot(2.0, 5.0), np.hypot(2.0, 1.0), 0.0])
    assert pa[0, 1] == pytest.approx([10.0, 0.0]) and pb[0, 1] == pytest.approx([12.0, 5.0])
    assert pa[0, 2] == pytest.approx([0.0, 0.0]) and pb[0, 2] == pytest.approx([-2.0, -1.0])
    assert pa[0, 3] == pytest.approx([5.0, 0.0]) and pb[0, 3] == pytest.approx([5.0, 0.0])
    dist, p, q = measure.polyline_distance(np.array([[0.0, 0.0], [10.0, 0.0], [20.0, 0.0]]),
                                           np.array([[5.0, 4.0], [15.0, 1.0], [25.0, 4.0]]))
    assert dist == pytest.approx(1.0) and p == pytest.approx([15.0, 0.0]) and q == pytest.approx([15.0, 1.0])


def rotated(points, deg, centre=(500.0, 500.0)):
    a = np.radians(deg)
    r = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return (np.asarray(points) - centre) @ r.T + centre


@pytest.mark.parametrize("deg", [0, 35, 60, -25, -60])
@pytest.mark.parametrize("side", ["right", "left"])
def test_a_femur_through_the_tibia_is_flagged_on_a_turned_film(deg, side):
    """Lateral: the femoral contour 1.3-4 mm under the tibial one without meeting it; medial: above.
    "Under" is in the joint's own frame, on films turned up to 60 degrees either way (a film upside
    down is not read: the femur is taken to be above the tibia in the image)."""
    pts = straight_knee(0.0, 0.1)
    if side == "left":
        pts[:, 0] = 1000.0 - pts[:, 0]
    upright = measure.joint_space_width(pts, side, 1.0)
    m = measure.joint_space_width(rotated(pts, deg), side, 1.0)
    assert m.lateral.overlap and m.lateral_mm == 0.0
    assert not m.medial.overlap and m.medial_mm == pytest.approx(upright.medial_mm, abs=1e-6) and m.medial_mm > 1.0


def test_short_contours_and_close_landmarks():
    three = np.array([[0.0, 0.0], [10.0, 2.0], [20.0, 0.0]])
    curve = measure.catmull_rom(three, 8)
    assert len(curve) == 17 and curve[::8] == pytest.approx(three) and curve[4, 1] > 1.0
    # landmarks a fraction of a pixel apart: still the straight line, sampled evenly
    line = np.column_stack([np.linspace(0, 2.4, 9), np.linspace(0, 1.2, 9)])
    assert measure.catmull_rom(line, 4) == pytest.approx(np.column_stack([np.linspace(0, 2.4, 33), np.linspace(0, 1.2, 33)]))
