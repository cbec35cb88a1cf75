"""Joint space width from constructed knees whose gaps are known exactly."""
from __future__ import annotations

import numpy as np
import pytest

from KneeLandmarksLib import measure

TIBIA_X = np.array([-40, -30, -20, -10, 0, 10, 20, 30, 40], float)
FEMUR_X = np.array([-40, -27, -13, 0, 13, 27, 40], float)


def straight_knee(gap0: float, slope: float = 0.0, px_per_mm: float = 1.0) -> np.ndarray:
    """Tibial plateau on y = 0, femoral contour on y = -(gap0 + slope * x) (mm), as pixels
    (x right, y down) with the lateral side at small x (a right knee)."""
    tibia = np.column_stack([TIBIA_X, np.zeros(9)])
    femur = np.column_stack([FEMUR_X, -(gap0 + slope * FEMUR_X)])
    return np.vstack([tibia, femur]) * px_per_mm + 500.0


def test_parallel_contours_give_the_gap_in_both_compartments():
    m = measure.joint_space_width(straight_knee(4.0, px_per_mm=5.0), "right", 0.2)
    assert m.medial_mm == pytest.approx(4.0, abs=1e-9)
    assert m.lateral_mm == pytest.approx(4.0, abs=1e-9)
    assert not m.notes


def test_tilted_femur_gives_the_known_minimum_per_compartment():
    g0, s = 5.0, 0.05
    m = measure.joint_space_width(straight_knee(g0, s), "right", 1.0)
    # lateral (T1-T3 x in [-40, -20]): narrowest at the margin x = -40, where both contours end,
    # so the gap is the vertical one between the two margins
    assert m.lateral_mm == pytest.approx(g0 - 40 * s, abs=1e-9)
    # medial (T7-T9 x in [20, 40]): narrowest from the tibial point at x = 20, perpendicular to the
    # femoral line (whose medial part starts at x = 13)
    assert m.medial_mm == pytest.approx((g0 + 20 * s) / np.sqrt(1 + s * s), abs=1e-6)
    ends = measure.jsw_line_points(m, "lateral")
    assert ends[1] == pytest.approx([500 - 40, 500], abs=1e-6)  # on the tibial margin


def test_spacing_per_axis_and_pixels():
    pts = straight_knee(3.0, px_per_mm=1.0)  # gap 3 px vertically
    m = measure.joint_space_width(pts, "right", (0.25, 0.1))  # rows 0.25 mm, columns 0.1 mm
    assert m.medial_mm == pytest.approx(0.75, abs=1e-9)


def test_left_knee_is_the_mirror_image():
    right = straight_knee(5.0, 0.05)
    left = right.copy()
    left[:, 0] = 1000.0 - left[:, 0]  # mirrored: lateral now at large x
    mr = measure.joint_space_width(right, "right", 0.3)
    ml = measure.joint_space_width(left, "left", 0.3)
    assert ml.medial_mm == pytest.approx(mr.medial_mm) and ml.lateral_mm == pytest.approx(mr.lateral_mm)
    assert not ml.notes
    # the same landmarks called a right knee: flagged, not silently accepted
    assert any("unexpected side" in n for n in measure.joint_space_width(left, "right", 0.3).notes)


def test_bone_on_bone_is_zero_and_flagged():
    pts = straight_knee(2.0, 0.1)  # femur crosses the tibia on the lateral side (gap < 0 at x < -20)
    m = measure.joint_space_width(pts, "right", 1.0)
    assert m.lateral_mm == 0.0 and m.lateral.overlap
    assert m.medial_mm > 0
    assert any("touch or cross" in n for n in m.notes)


def test_contours_pass_through_the_landmarks():
    rng = np.random.default_rng(0)
    pts = straight_knee(4.0) + rng.normal(0, 1.0, (16, 2))
    tib, fem = measure.contours(pts)
    assert np.allclose(tib[:: measure.PER_SEGMENT], pts[:9])
    assert np.allclose(fem[:: measure.PER_SEGMENT], pts[9:])


def test_bad_landmarks_are_refused():
    with pytest.raises(measure.LandmarkError):
        measure.joint_space_width(np.zeros((15, 2)), "right", 0.2)
    bad = straight_knee(3.0)
    bad[4, 0] = np.nan
    with pytest.raises(measure.LandmarkError):
        measure.joint_space_width(bad, "right", 0.2)
