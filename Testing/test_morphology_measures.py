"""The back measures one by one (SpineMorphologyLib.morphology, numpy only), on midlines and
surfaces whose answer follows from the definitions in the module's docstring: a leaning, curved,
rotated midline with a known sagittal profile; pinhole and relief surfaces; bilinear sampling;
the dimple search and the refusals a user sees."""
from __future__ import annotations

import numpy as np
import pytest

from SpineMorphologyLib import morphology
from test_back_morphology import DM_Y, LENGTH, VP_Y, X0, constructed_back

N = morphology.N_LINE
HEIGHT = 400.0


def midline(imbalance=12.0, inclination=-20.0, amplitude=-9.0, kyphosis=18.0, n=N):
    """VP at the top, DM 400 mm lower: x = DM's x + imbalance (1 - t) + amplitude sin(pi t),
    z = inclination t + kyphosis sin(2 pi t), evenly in height."""
    t = np.linspace(0.0, 1.0, n)
    x = 200.0 + imbalance * (1 - t) + amplitude * np.sin(np.pi * t)
    y = 100.0 + HEIGHT * t
    z = 30.0 + inclination * t + kyphosis * np.sin(2 * np.pi * t)
    return np.column_stack([x, y, z]), t


def test_trunk_length_imbalance_and_inclination_follow_vp_and_dm():
    line, t = midline()
    m = morphology.surface_measures(line, np.zeros(N), units="mm")
    assert m.units == "mm"
    assert m.trunk_length == pytest.approx(np.sqrt(12.0**2 + HEIGHT**2 + 20.0**2))
    assert m.trunk_imbalance == pytest.approx(12.0)  # VP to the right of DM
    assert m.trunk_imbalance_deg == pytest.approx(np.degrees(np.arctan2(12.0, HEIGHT)))
    assert m.trunk_inclination == pytest.approx(-20.0)  # DM nearer the camera than VP
    assert m.trunk_inclination_deg == pytest.approx(np.degrees(np.arctan2(-20.0, HEIGHT)))
    left, _ = midline(imbalance=-7.0, inclination=5.0)
    m = morphology.surface_measures(left, np.zeros(N), units="px")
    assert m.units == "px" and m.trunk_imbalance == pytest.approx(-7.0) and m.trunk_inclination == pytest.approx(5.0)
    assert m.trunk_imbalance_deg == pytest.approx(np.degrees(np.arctan2(-7.0, HEIGHT)))


def test_lateral_deviation_is_measured_from_the_vp_dm_line():
    line, t = midline(amplitude=-9.0)
    m = morphology.surface_measures(line, np.zeros(N))
    deviation = -9.0 * np.sin(np.pi * t)
    assert m.lateral_deviation_max == pytest.approx(-9.0)  # signed: to the patient's left
    assert m.lateral_deviation_rms == pytest.approx(np.sqrt(np.mean(deviation**2)))
    straight, _ = midline(amplitude=0.0)
    m = morphology.surface_measures(straight, np.zeros(N))
    assert m.lateral_deviation_max == pytest.approx(0.0, abs=1e-9) and m.lateral_deviation_rms == pytest.approx(0.0, abs=1e-9)


def test_surface_rotation_rms_and_signed_maximum():
    line, t = midline()
    rotation = 4.0 * np.sin(np.pi * t) - 6.0 * t**2  # +2.5 at mid-height, -6 at DM: the maximum is -6
    m = morphology.surface_measures(line, rotation)
    assert m.surface_rotation_max_deg == pytest.approx(rotation[np.argmax(np.abs(rotation))])
    assert m.surface_rotation_max_deg == pytest.approx(-6.0)
    assert m.surface_rotation_rms_deg == pytest.approx(np.sqrt(np.mean(rotation**2)))
    m = morphology.surface_measures(line, 5.0 * np.sin(np.pi * t))
    assert m.surface_rotation_max_deg == pytest.approx(5.0)


def test_sagittal_apices_heights_and_depths():
    line, t = midline(kyphosis=18.0)
    m = morphology.surface_measures(line, np.zeros(N))
    # profile s = 18 sin(2 pi t) about the VP-DM line: kyphotic apex at t = 1/4, lordotic at 3/4
    assert m.kyphotic_apex_height == pytest.approx(0.25 * HEIGHT)
    assert m.lordotic_apex_height == pytest.approx(0.75 * HEIGHT)
    assert m.kyphotic_apex_depth == pytest.approx(18.0)
    assert m.lordotic_apex_depth == pytest.approx(-18.0)
    # tangent angles: steepest rise 2 pi 18 / 400 at VP and DM, steepest fall in between
    steep = np.degrees(np.arctan((2 * np.pi * 18.0 - 20.0) / HEIGHT)) - np.degrees(np.arctan((-2 * np.pi * 18.0 - 20.0) / HEIGHT))
    assert m.kyphotic_angle_deg == pytest.approx(steep, abs=1.5)
    assert m.lordotic_angle_deg == pytest.approx(steep, abs=1.5)
    assert m.kyphotic_angle_deg > 0.85 * steep and m.lordotic_angle_deg > 0.85 * steep


def test_a_deeper_lordosis_gives_a_larger_lordotic_angle_only():
    t = np.linspace(0.0, 1.0, N)
    base, _ = midline(kyphosis=0.0, inclination=0.0)
    profile = np.where(t < 0.5, 15.0 * np.sin(2 * np.pi * t), 30.0 * np.sin(2 * np.pi * t))
    line = base.copy()
    line[:, 2] = 30.0 + profile
    m = morphology.surface_measures(line, np.zeros(N))
    assert m.lordotic_apex_depth == pytest.approx(-30.0) and m.kyphotic_apex_depth == pytest.approx(15.0)
    assert m.lordotic_angle_deg > m.kyphotic_angle_deg + 5.0


def test_pelvic_obliquity_from_the_two_dimples():
    line, _ = midline()
    m = morphology.surface_measures(line, np.zeros(N), [150.0, 480.0, 0.0], [250.0, 470.0, 2.0])
    assert m.pelvic_obliquity == pytest.approx(10.0)  # the right dimple is higher
    assert m.pelvic_obliquity_deg == pytest.approx(np.degrees(np.arctan2(10.0, 100.0)))
    m = morphology.surface_measures(line, np.zeros(N), [150.0, 470.0, 0.0], [250.0, 476.0, 0.0])
    assert m.pelvic_obliquity == pytest.approx(-6.0) and m.pelvic_obliquity_deg < 0
    for one in (dict(dimple_left=[150.0, 470.0, 0.0]), dict(dimple_right=[250.0, 470.0, 0.0])):
        m = morphology.surface_measures(line, np.zeros(N), **one)
        assert m.pelvic_obliquity is None and m.pelvic_obliquity_deg is None


def test_an_unevenly_sampled_midline_is_resampled_evenly_in_height():
    even, t = midline()
    s = np.linspace(0.0, 1.0, 400) ** 1.6  # dense near VP
    x = np.interp(s, t, even[:, 0])
    z = np.interp(s, t, even[:, 2])
    uneven = np.column_stack([x, 100.0 + HEIGHT * s, z])
    uneven = np.insert(uneven, 3, uneven[3], axis=0)  # a repeated point
    a = morphology.surface_measures(even, np.sin(np.pi * t)).to_dict()
    b = morphology.surface_measures(uneven, np.sin(np.pi * s[np.r_[0:4, 3:400]])).to_dict()
    for key in ("trunk_length", "trunk_imbalance", "lateral_deviation_max", "lateral_deviation_rms",
                "surface_rotation_rms_deg", "surface_rotation_max_deg", "kyphotic_apex_depth", "lordotic_apex_depth"):
        assert b[key] == pytest.approx(a[key], abs=0.05), key
    for key in ("kyphotic_apex_height", "lordotic_apex_height"):
        assert b[key] == pytest.approx(a[key], abs=HEIGHT / (N - 1) + 0.01), key


def test_measures_as_a_record_are_rounded_numbers_and_none():
    line, _ = midline()
    d = morphology.surface_measures(line, np.full(N, 1.234567891), units="mm").to_dict()
    assert set(d) == set(morphology.MEASURE_TITLES) | {"units"}
    assert d["units"] == "mm" and d["pelvic_obliquity"] is None and d["pelvic_obliquity_deg"] is None
    assert d["surface_rotation_rms_deg"] == 1.2346 and isinstance(d["trunk_length"], float)
    assert d["trunk_imbalance"] == 12.0


@pytest.mark.parametrize("line, message", [
    (np.zeros((4, 3)), "at least 5 finite 3D points"),
    (np.zeros((10, 2)), "at least 5 finite 3D points"),
    (np.zeros(30), "at least 5 finite 3D points"),
    (np.where(np.arange(30).reshape(10, 3) == 4, np.nan, np.arange(30).reshape(10, 3)), "at least 5 finite 3D points"),
    (np.column_stack([np.zeros(10), np.linspace(400, 0, 10), np.zeros(10)]), "must lie above"),
    (np.column_stack([np.zeros(10), np.full(10, 5.0), np.zeros(10)]), "must lie above"),
])
def test_midlines_that_cannot_be_measured_are_refused(line, message):
    with pytest.raises(morphology.MorphologyError, match=message):
        morphology.surface_measures(line, np.zeros(len(line)))


# --- surfaces


def test_pinhole_surface_from_depth_with_its_centre_and_holes():
    depth = np.full((40, 60), 500.0)
    depth[10, 20] = 0.0  # no measurement
    depth[30, 50] = 520.0
    mask = np.ones((40, 60), bool)
    mask[:, :3] = False
    s = morphology.surface_from_depth(depth, mask, focal_px=250.0, estimated=True)
    assert s.units == "mm" and s.estimated and s.shape == (40, 60)
    assert not s.mask[10, 20] and not s.mask[5, 1] and s.mask[30, 50] and s.mask.sum() == 40 * 57 - 1
    cx, cy = 29.5, 19.5
    assert s.xyz[30, 50] == pytest.approx([(50 - cx) * 520 / 250, (30 - cy) * 520 / 250, -520.0])
    assert s.xyz[0, 3] == pytest.approx([(3 - cx) * 2.0, (0 - cy) * 2.0, -500.0])
    assert s.xyz[10, 20] == pytest.approx([(20 - cx) * 2.0, (10 - cy) * 2.0, -500.0])  # hole: nearest depth
    assert s.xyz[5, 1, 2] == pytest.approx(-500.0)
    s = morphology.surface_from_depth(depth, np.ones((40, 60), bool), focal_px=100.0, cx=0.0, cy=10.0)
    assert s.xyz[0, 0] == pytest.approx([0.0, -50.0, -500.0]) and not s.estimated
    assert s.xyz[30, 50] == pytest.approx([50 * 5.2, 20 * 5.2, -520.0])
    assert s.xyz[10, 20, 2] == -500.0 and not s.mask[10, 20]  # no depth: not on the back, filled from nearby


def test_relief_surface_and_the_units_rule():
    relief = np.arange(12.0).reshape(3, 4)
    mask = relief > 2
    s = morphology.surface_from_relief(relief, mask)
    assert s.units == "px" and s.estimated and s.xyz[2, 1] == pytest.approx([1.0, 2.0, 9.0])
    assert (s.mask == mask).all()
    px = morphology.surface_for(relief, mask, "px", estimated=False)
    assert px.units == "px" and not px.estimated and px.xyz[2, 1, 2] == -9.0  # depth grows away from the camera
    mm = morphology.surface_for(np.full((3, 4), 400.0), np.ones((3, 4), bool), "mm", focal_px=200.0, cx=1.0, cy=1.0)
    assert mm.units == "mm" and mm.estimated and mm.xyz[2, 3] == pytest.approx([4.0, 2.0, -400.0])
    with pytest.raises(ValueError, match="focal length"):
        morphology.surface_for(relief, mask, "mm")
    with pytest.raises(ValueError, match="'mm' or 'px', not 'cm'"):
        morphology.surface_for(relief, mask, "cm")


def test_sampling_is_bilinear_and_clipped_to_the_photo():
    v, u = np.mgrid[0:20, 0:30].astype(float)
    s = morphology.Surface(xyz=np.stack([2 * u, 3 * v, u * v], -1), mask=np.ones((20, 30), bool))
    got = morphology.sample_surface(s, [[4.5, 7.25], [-3.0, 2.0], [40.0, 25.0]])
    assert got[0] == pytest.approx([9.0, 21.75, 4.5 * 7.25])
    assert got[1] == pytest.approx([0.0, 6.0, 0.0]) and got[2] == pytest.approx([58.0, 57.0, 29 * 19])


def test_surface_rotation_along_a_turned_plane_in_mm_and_pixels():
    v, u = np.mgrid[0:80, 0:120].astype(float)
    for mm_per_px in (0.5, 2.0):
        x, y = u * mm_per_px, v * mm_per_px
        z = np.tan(np.radians(10.0)) * x - 0.3 * y
        s = morphology.Surface(xyz=np.stack([x, y, z], -1), mask=np.ones(u.shape, bool))
        rotation = morphology.rotation_along(s, np.array([[60.0, 20.0], [61.0, 50.0]]))
        assert rotation == pytest.approx([10.0, 10.0], abs=1e-6)
    # the window: a parabola z = x^2 / 200 turns by atan(x / 100) at x, whatever the window
    s = morphology.Surface(xyz=np.stack([u, v, (u - 60.0) ** 2 / 200.0], -1), mask=np.ones(u.shape, bool), units="px")
    assert morphology.rotation_along(s, [[80.0, 30.0]], half_window=10.0) == pytest.approx([np.degrees(np.arctan(0.2))])
    # a cubic's least-squares slope grows with the window: 25 mm either side by default
    cubic = lambda x: x**3 / 3e4  # noqa: E731
    s = morphology.Surface(xyz=np.stack([u, v, cubic(u - 60.0)], -1), mask=np.ones(u.shape, bool), units="mm")
    expected = []
    for hw in (25.0, 10.0):
        xs = np.linspace(-hw, hw, 21)
        expected.append(np.degrees(np.arctan(np.polyfit(xs, cubic(xs), 1)[0])))
    # (bilinear sampling of the cubic between pixels: within 0.01 deg; 26 mm instead of 25 gives +0.06)
    assert morphology.rotation_along(s, [[60.0, 30.0]])[0] == pytest.approx(expected[0], abs=0.01)
    assert morphology.rotation_along(s, [[60.0, 30.0]], half_window=10.0)[0] == pytest.approx(expected[1], abs=0.01)


# --- along a midline, from a surface


def test_a_midline_drawn_upwards_is_measured_from_vp_down_and_a_wandering_one_by_arc_length():
    surface, _ = constructed_back()
    down = np.array([[X0, VP_Y], [X0 + 10.0, VP_Y + 0.5 * LENGTH], [X0, DM_Y]])
    a = morphology.measure_along_line(surface, down)
    b = morphology.measure_along_line(surface, down[::-1])
    assert b.vp_px == pytest.approx([X0, VP_Y]) and b.dm_px == pytest.approx([X0, DM_Y])
    assert b.measures.lateral_deviation_max == pytest.approx(a.measures.lateral_deviation_max)
    assert a.measures.lateral_deviation_max == pytest.approx(10.0, abs=0.3)
    assert len(a.line_px) == N and a.line_xyz.shape == (N, 3) and a.rotation_deg.shape == (N,)
    assert a.dimples_px is None and a.measures.pelvic_obliquity is None and a.warnings == []
    # a line that turns back on itself in height is followed along its length
    hook = np.array([[X0, VP_Y], [X0 + 30.0, VP_Y + 200.0], [X0 + 20.0, VP_Y + 190.0], [X0, DM_Y]])
    c = morphology.measure_along_line(surface, hook)
    assert np.abs(np.diff(c.line_px, axis=0)).sum(axis=1).max() < 1.1 * np.linalg.norm(np.diff(hook, axis=0), axis=1).sum() / (N - 1) * 1.5
    assert c.line_px[:, 0].max() == pytest.approx(X0 + 30.0, abs=3.0)
    # two points are enough: the straight VP-DM line
    d = morphology.measure_along_line(surface, [[X0, VP_Y], [X0, DM_Y]])
    assert d.line_px[:, 0] == pytest.approx(np.full(N, X0)) and d.line_px[:, 1] == pytest.approx(np.linspace(VP_Y, DM_Y, N))
    with pytest.raises(morphology.MorphologyError, match="at least 2 points"):
        morphology.measure_along_line(surface, [[X0, VP_Y]])


def test_a_midline_off_the_back_is_measured_with_a_warning_and_dimples_are_used_as_given():
    surface, _ = constructed_back()
    off = np.array([[X0, VP_Y], [X0 + 400.0, VP_Y + 0.5 * LENGTH], [X0, DM_Y]])  # the back ends 180 mm out
    result = morphology.measure_along_line(surface, off, warnings=["given"])
    assert result.warnings[0] == "given" and len(result.warnings) == 2
    cols = np.clip(np.round(result.line_px[:, 0]).astype(int), 0, surface.shape[1] - 1)
    share = 1 - surface.mask[np.round(result.line_px[:, 1]).astype(int), cols].mean()
    assert result.warnings[1] == f"{100 * share:.0f}% of the midline lies outside the back mask" and share > 0.1
    on = morphology.measure_along_line(surface, [[X0, VP_Y], [X0 + 170.0, VP_Y + 0.5 * LENGTH], [X0, DM_Y]])
    assert on.warnings == []
    dimples = [[X0 - 45.0, DM_Y + 4.0], [X0 + 45.0, DM_Y - 4.0]]
    result = morphology.measure_along_line(surface, [[X0, VP_Y], [X0, DM_Y]], dimples)
    assert result.dimples_px == pytest.approx(np.array(dimples))
    assert result.measures.pelvic_obliquity == pytest.approx(8.0)
    assert result.to_dict()["dimples_px"] == np.round(dimples, 3).tolist()


def test_the_record_of_a_back_lists_its_lines_and_measures():
    surface, kp = constructed_back(amplitude=15.0)
    result = morphology.measure_back(surface, kp)
    d = result.to_dict()
    assert d["units"] == "mm" and d["measures"] == result.measures.to_dict()
    assert d["vp_px"] == np.round(result.vp_px, 3).tolist() and d["dm_px"] == np.round(result.dm_px, 3).tolist()
    assert np.array(d["midline_px"]).shape == (N, 2) and np.array(d["midline_xyz"]).shape == (N, 3)
    assert len(d["surface_rotation_deg"]) == N and d["warnings"] == result.warnings
    assert np.array(d["dimples_px"]) == pytest.approx(result.dimples_px, abs=1e-3)
    assert result.vp_px == pytest.approx(kp[morphology.I_C7])
    assert result.dm_px == pytest.approx(result.dimples_px.mean(axis=0))


# --- dimples and keypoints


def test_dimples_are_found_where_they_are_and_not_where_there_are_none():
    surface, kp = constructed_back(obliquity_mm=6.0, dimple_half=40.0)
    found = morphology.find_dimples(surface, kp)
    assert found == pytest.approx(np.array([[X0 - 40, DM_Y + 3], [X0 + 40, DM_Y - 3]]), abs=1.5)
    flat = morphology.Surface(surface.xyz.copy(), surface.mask)
    v, u = np.mgrid[0:surface.shape[0], 0:surface.shape[1]].astype(float)
    flat.xyz[..., 2] = -60.0 * ((u - X0) / 170.0) ** 2  # the rounded trunk alone: no bowl
    assert morphology.find_dimples(flat, kp) is None
    result = morphology.measure_back(flat, kp)
    assert result.dimples_px is None and result.measures.pelvic_obliquity_deg is None
    assert any("lumbar dimples not found" in w for w in result.warnings)
    assert result.dm_px == pytest.approx(0.5 * (kp[morphology.I_L5] + kp[morphology.I_SACRUM]), abs=0.5)


def test_dimples_too_far_apart_or_off_the_back_are_not_taken():
    wide, kp = constructed_back(dimple_half=93.0)  # 186 mm apart on a 400 mm trunk: not a pelvis
    assert morphology.find_dimples(wide, kp) is None
    tilted, kp = constructed_back(obliquity_mm=60.0)  # one dimple far higher than the other
    assert morphology.find_dimples(tilted, kp) is None
    narrow, kp = constructed_back()
    masked = morphology.Surface(narrow.xyz, narrow.mask & (np.arange(narrow.shape[1]) < X0 + 20)[None, :])
    assert morphology.find_dimples(masked, kp) is None  # the right dimple's search window is off the back


def test_user_dimples_replace_the_search():
    surface, kp = constructed_back()
    mine = np.array([[X0 - 50.0, DM_Y + 5.0], [X0 + 50.0, DM_Y - 5.0]])
    result = morphology.measure_back(surface, kp, dimples_px=mine.ravel())
    assert result.dimples_px == pytest.approx(mine) and result.dm_px == pytest.approx(mine.mean(axis=0))
    assert result.measures.pelvic_obliquity == pytest.approx(10.0, abs=0.01) and result.warnings == []


def test_keypoints_and_masks_that_cannot_be_measured_are_refused():
    surface, kp = constructed_back()
    bad = kp.copy()
    bad[3, 0] = np.nan
    with pytest.raises(morphology.MorphologyError, match="9 spine keypoints"):
        morphology.measure_back(surface, bad)
    with pytest.raises(morphology.MorphologyError, match="downwards"):
        morphology.measure_back(surface, kp * [1, 0] + [0, 100.0])  # all at one height
    empty = morphology.Surface(surface.xyz, np.zeros(surface.shape, bool))
    with pytest.raises(morphology.MorphologyError, match="mask is empty"):
        morphology.measure_back(empty, kp)
    close = kp.copy()
    close[:, 1] = VP_Y + (kp[:, 1] - VP_Y) * 0.02  # C7 to the sacrum in 8 pixels
    with pytest.raises(morphology.MorphologyError, match="too close together"):
        morphology.measure_back(surface, close, dimples_px=[[X0 - 45, VP_Y + 8], [X0 + 45, VP_Y + 8]])


def test_a_keypoint_slightly_out_of_order_does_not_bend_the_midline():
    surface, kp = constructed_back()
    shuffled = kp.copy()
    shuffled[3, 1], shuffled[4, 1] = kp[4, 1], kp[3, 1]  # T12/L1 and T8 swapped in height
    shuffled[3, 0] += 30.0
    result = morphology.measure_back(surface, shuffled)
    assert np.abs(result.line_px[:, 0] - X0).max() < 1.0


def test_a_strap_across_the_back_is_bridged():
    surface, kp = constructed_back(amplitude=15.0)
    strapped = morphology.Surface(surface.xyz, surface.mask.copy())
    strapped.mask[250:262, :] = False
    line = morphology.measure_back(strapped, kp).line_px
    rows = (line[:, 1] > 245) & (line[:, 1] < 267)
    from test_back_morphology import spine_x
    assert np.abs(line[rows, 0] - spine_x(line[rows, 1], 15.0)).max() < 1.5
