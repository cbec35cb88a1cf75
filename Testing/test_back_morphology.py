"""Surface measures on constructed backs whose deviation, rotation, sagittal profile and pelvic
obliquity are known exactly (SpineMorphologyLib.morphology: numpy only)."""
import numpy as np
import pytest

from SpineMorphologyLib import morphology

H, W = 620, 420
VP_Y, DM_Y, X0 = 80.0, 480.0, 210.0
LENGTH = DM_Y - VP_Y
LEVELS = np.array([1.07, 0.93, 0.80, 0.62, 0.37, 0.12, 0.0, -0.10, -0.19])


def spine_x(y, amplitude):
    t = np.clip((y - VP_Y) / LENGTH, 0, 1)
    return X0 + amplitude * np.sin(np.pi * t)


def constructed_back(amplitude=0.0, rotation_deg=0.0, kyphosis=0.0, obliquity_mm=0.0, dimple_half=45.0):
    """Orthographic back, 1 mm per pixel: a rounded trunk, a spinal groove along a lateral curve
    of the given amplitude, a surface rotation rotation_deg * sin(pi t) around the groove, a
    sagittal profile kyphosis * sin(2 pi t), and two dimples (the right one obliquity_mm higher)."""
    v, u = np.mgrid[0:H, 0:W].astype(float)
    t = (v - VP_Y) / LENGTH
    s = spine_x(v, amplitude)
    dx = u - s
    z = -60.0 * ((u - X0) / 170.0) ** 2
    z += kyphosis * np.sin(2 * np.pi * np.clip(t, 0, 1))
    z -= 4.0 * np.exp(-0.5 * (dx / 10.0) ** 2)  # groove
    theta = np.radians(rotation_deg) * np.sin(np.pi * np.clip(t, 0, 1))
    z += np.tan(theta) * dx * np.exp(-0.5 * (dx / 300.0) ** 2)  # ~ a plane turned around the groove
    dm_x = spine_x(DM_Y, amplitude)
    for side, dy in ((-1, +obliquity_mm / 2), (1, -obliquity_mm / 2)):
        z -= 4.0 * np.exp(-((u - dm_x - side * dimple_half) ** 2 + (v - DM_Y - dy) ** 2) / (2 * 10.0**2))
    mask = np.abs(u - X0) < 180
    surface = morphology.Surface(xyz=np.stack([u, v, z], -1), mask=mask, units="mm")
    ys = VP_Y + LEVELS * LENGTH
    keypoints = np.column_stack([spine_x(ys, amplitude), ys])
    return surface, keypoints


def test_straight_symmetric_back_has_no_deviation_rotation_or_obliquity():
    surface, kp = constructed_back()
    result = morphology.measure_back(surface, kp)
    m = result.measures
    assert m.units == "mm"
    assert m.trunk_length == pytest.approx(LENGTH, abs=1.0)
    assert abs(m.lateral_deviation_max) < 0.5 and m.lateral_deviation_rms < 0.3
    assert abs(m.surface_rotation_max_deg) < 0.3
    assert abs(m.trunk_imbalance) < 0.5 and abs(m.trunk_inclination) < 0.5
    assert m.pelvic_obliquity_deg == pytest.approx(0.0, abs=0.5)
    assert np.abs(result.dimples_px - [[X0 - 45, DM_Y], [X0 + 45, DM_Y]]).max() < 1.0
    assert np.abs(result.line_px[:, 0] - X0).max() < 0.5


@pytest.mark.parametrize("amplitude", [15.0, -25.0])
def test_lateral_deviation_of_a_curved_spine(amplitude):
    surface, kp = constructed_back(amplitude=amplitude)
    m = morphology.measure_back(surface, kp).measures
    # the curve vanishes at VP and DM: deviation from the VP-DM line is amplitude * sin(pi t)
    assert m.lateral_deviation_max == pytest.approx(amplitude, abs=1.5)
    assert m.lateral_deviation_rms == pytest.approx(abs(amplitude) / np.sqrt(2), abs=1.0)


def test_surface_rotation_follows_the_turned_surface():
    surface, kp = constructed_back(rotation_deg=8.0)
    m = morphology.measure_back(surface, kp).measures
    assert m.surface_rotation_max_deg == pytest.approx(8.0, abs=0.5)  # + : right side posterior
    assert m.surface_rotation_rms_deg == pytest.approx(8.0 / np.sqrt(2), abs=0.5)
    surface, kp = constructed_back(rotation_deg=-6.0)
    assert morphology.measure_back(surface, kp).measures.surface_rotation_max_deg == pytest.approx(-6.0, abs=0.5)


def test_pelvic_obliquity_from_the_dimples():
    surface, kp = constructed_back(obliquity_mm=8.0, dimple_half=45.0)
    result = morphology.measure_back(surface, kp)
    expected = np.degrees(np.arctan2(8.0, 90.0))  # right dimple higher: positive
    assert result.measures.pelvic_obliquity_deg == pytest.approx(expected, abs=0.7)
    assert result.measures.pelvic_obliquity == pytest.approx(8.0, abs=1.0)


def test_sagittal_apices_and_angles():
    K = 15.0
    surface, kp = constructed_back(kyphosis=K)
    m = morphology.measure_back(surface, kp).measures
    assert m.kyphotic_apex_height == pytest.approx(0.25 * LENGTH, abs=8)
    assert m.lordotic_apex_height == pytest.approx(0.75 * LENGTH, abs=8)
    assert m.kyphotic_apex_depth == pytest.approx(K, abs=1.0)
    assert m.lordotic_apex_depth == pytest.approx(-K, abs=1.0)
    expected = 2 * np.degrees(np.arctan(2 * np.pi * K / LENGTH))
    assert m.kyphotic_angle_deg == pytest.approx(expected, abs=2.0)
    assert m.lordotic_angle_deg == pytest.approx(expected, abs=2.0)


def test_imbalance_and_inclination_of_a_leaning_trunk():
    line = np.column_stack([np.linspace(20, 0, 50), np.linspace(0, 400, 50), np.linspace(-30, 0, 50)])
    m = morphology.surface_measures(line, np.zeros(50), units="mm")
    assert m.trunk_imbalance == pytest.approx(20.0)
    assert m.trunk_imbalance_deg == pytest.approx(np.degrees(np.arctan2(20, 400)))
    assert m.trunk_inclination == pytest.approx(30.0)  # VP anterior of DM
    assert m.pelvic_obliquity_deg is None


def test_an_edited_midline_is_measured_as_drawn():
    surface, _ = constructed_back()
    # a hand-drawn line bowing 12 mm to the right
    ys = np.linspace(VP_Y, DM_Y, 9)
    line = np.column_stack([X0 + 12 * np.sin(np.pi * (ys - VP_Y) / LENGTH), ys])
    m = morphology.measure_along_line(surface, line).measures
    assert m.lateral_deviation_max == pytest.approx(12.0, abs=0.8)


def test_relative_surface_in_pixels_keeps_angles():
    surface, kp = constructed_back(rotation_deg=8.0)
    relative = morphology.surface_from_relief(surface.xyz[..., 2], surface.mask)
    m = morphology.measure_back(relative, kp).measures
    assert m.units == "px"
    assert m.surface_rotation_max_deg == pytest.approx(8.0, abs=1.0)


def test_keypoints_that_do_not_run_down_the_back_are_refused():
    surface, kp = constructed_back()
    with pytest.raises(morphology.MorphologyError, match="downwards"):
        morphology.measure_back(surface, kp[::-1])
    with pytest.raises(morphology.MorphologyError, match="9 spine keypoints"):
        morphology.measure_back(surface, kp[:5])


def test_estimated_depth_leans_on_the_keypoints_measured_depth_on_the_symmetry():
    """A curved groove, keypoints placed 12 mm off it: on a measured surface the midline follows
    the groove (surface symmetry); on a network-estimated one it stays nearer the keypoints."""
    surface, kp = constructed_back(amplitude=25.0)
    kp_off = kp + np.array([12.0, 0.0])
    groove = lambda line: np.abs(line[:, 0] - spine_x(line[:, 1], 25.0))  # noqa: E731
    inner = slice(15, -15)  # away from VP and DM, which are pinned to the keypoints
    measured = morphology.measure_back(surface, kp_off).line_px[inner]
    estimated_surface = morphology.Surface(surface.xyz, surface.mask, surface.units, estimated=True)
    estimated = morphology.measure_back(estimated_surface, kp_off).line_px[inner]
    assert groove(measured).mean() < 3.0
    assert groove(estimated).mean() > groove(measured).mean() + 1.0  # pulled towards the keypoints
