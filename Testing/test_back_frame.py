"""Tilt is measured, not assumed: the pipeline measures the back in its own frame (the plane
fitted to the back), so a camera turned by a known angle on a straight back reads no surface
rotation and the same sagittal profile as the face-on photo (SpineMorphologyLib.morphology
.measure_back_in_its_frame, through pipeline.result_from_surface on the phantom's exact depth)."""
import dataclasses

import numpy as np
import pytest

from MSKCommonLib.image import Image
from SpineMorphologyLib import morphology
from SpineMorphologyLib.pipeline import result_from_surface

from SpineMorphologyTools import phantom

# bounds from measurement (exact depth, straight phantom backs, seeds 1-2): the turned camera read
# 10.4-10.8 deg of surface rotation in the camera's frame; in the back's frame at most 1.0 deg
# (yaw 10, pitch 10), kyphosis and lordosis within 0.5 deg of face-on, lateral deviation 1.3 mm
ROTATION_BOUND_DEG = 1.5
PROFILE_TOLERANCE_DEG = 1.5
LATERAL_TOLERANCE_MM = 2.0


def straight_params(seed):
    base = phantom.BackParams.sample(np.random.default_rng(seed))
    return dataclasses.replace(base, curves=(), imbalance_deg=0.0, pelvic_obliquity_deg=0.0)


def measured(photo):
    cam = photo.camera
    image = Image(pixels=photo.rgb.mean(axis=2).astype(np.float32), spacing_mm=None, source="<phantom back>", bits=8,
                  normalisation="none", was_colour=True, rgb=photo.rgb)
    return result_from_surface(image, photo.depth_mm, "mm", photo.back_mask, photo.keypoints_px, cam.focal_px,
                               (cam.cx, cam.cy), estimated=False)


@pytest.fixture(scope="module")
def face_on():
    return phantom.make_back_photo(phantom.photo_seed(11, 1), params=straight_params(1))


@pytest.mark.parametrize("turn", [(10, 0, 0), (-10, 0, 0), (0, 10, 0), (0, -10, 0), (10, 10, 0)])
def test_a_turned_camera_on_a_straight_back_reads_no_rotation(face_on, turn):
    photo = phantom.make_back_photo(phantom.photo_seed(11, 1), params=straight_params(1), turn=turn)
    result = measured(photo)
    m, ref = result.measurement.measures, measured(face_on).measurement.measures
    assert abs(m.surface_rotation_max_deg) < ROTATION_BOUND_DEG
    assert m.kyphotic_angle_deg == pytest.approx(ref.kyphotic_angle_deg, abs=PROFILE_TOLERANCE_DEG)
    assert m.lordotic_angle_deg == pytest.approx(ref.lordotic_angle_deg, abs=PROFILE_TOLERANCE_DEG)
    assert m.lateral_deviation_max == pytest.approx(ref.lateral_deviation_max, abs=LATERAL_TOLERANCE_MM)
    # the camera's turn is measured and recorded: the back's plane turned by the yaw
    tilt = result.to_record()["back_tilt_deg"]
    assert tilt["yaw"] - measured(face_on).measurement.back_tilt_deg["yaw"] == pytest.approx(turn[0], abs=1.5)
    # in the camera's own frame the same photo reads the turn as a rotated trunk
    cam = photo.camera
    surface = morphology.surface_from_depth(photo.depth_mm, photo.back_mask, cam.focal_px, cam.cx, cam.cy)
    in_camera = morphology.measure_back(surface, photo.keypoints_px).measures
    if turn[0]:
        assert abs(in_camera.surface_rotation_max_deg) > 0.8 * abs(turn[0])


def test_the_midline_in_3d_stays_on_the_camera_frame_surface(face_on):
    photo = phantom.make_back_photo(phantom.photo_seed(11, 1), params=straight_params(1), turn=(10, 10, 0))
    result = measured(photo)
    on_surface = morphology.sample_surface(result.surface(), result.measurement.line_px)
    assert np.abs(result.measurement.line_xyz - on_surface).max() < 1e-9


def test_the_back_frame_is_a_rotation():
    photo = phantom.make_back_photo(phantom.photo_seed(11, 2), turn=(12, -8, 3))
    cam = photo.camera
    surface = morphology.surface_from_depth(photo.depth_mm, photo.back_mask, cam.focal_px, cam.cx, cam.cy)
    frame = morphology.back_frame(surface, photo.keypoints_px)
    assert frame.axes @ frame.axes.T == pytest.approx(np.eye(3), abs=1e-9)
    assert np.linalg.det(frame.axes) == pytest.approx(1.0)
    turned = morphology.in_back_frame(surface, frame)
    a, b = surface.xyz[surface.mask][:500], turned.xyz[turned.mask][:500]
    assert np.linalg.norm(a[1:] - a[:-1], axis=1) == pytest.approx(np.linalg.norm(b[1:] - b[:-1], axis=1))
