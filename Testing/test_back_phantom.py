"""The synthetic back generator: the same seed gives the same photo, and its ground truth agrees
with itself (keypoints on the spine line and the surface, depth in mm, mask, exact measures)."""
import json

import cv2
import numpy as np
import pytest

from SpineMorphologyLib import morphology

from SpineMorphologyTools import phantom


@pytest.fixture(scope="module")
def photo():
    return phantom.make_back_photo(phantom.photo_seed(7, 2))


def test_same_seed_same_photo_and_independent_of_the_set_size(photo):
    again = phantom.make_back_photo(phantom.photo_seed(7, 2))
    assert np.array_equal(photo.rgb, again.rgb)
    assert np.array_equal(photo.depth_mm, again.depth_mm)
    assert photo.measures == again.measures
    other = phantom.make_back_photo(phantom.photo_seed(7, 9))
    assert not np.array_equal(photo.rgb, other.rgb)


def test_photo_looks_like_a_back_photo(photo):
    assert photo.rgb.shape == (512, 384, 3) and photo.rgb.dtype == np.uint8
    assert 0.15 < photo.back_mask.mean() < 0.7
    # colour photo, skin-coloured back
    hsv = cv2.cvtColor(photo.rgb, cv2.COLOR_RGB2HSV)
    assert hsv[..., 1].mean() > 20
    # depth: mm along the optical axis, about the camera distance, 0 outside the person
    d = photo.depth_mm[photo.back_mask]
    assert np.all(d > 0)
    assert abs(np.median(d) - photo.camera.distance_mm) < 250
    assert np.all(photo.depth_mm[photo.labels == phantom.LABEL_BACKGROUND] == 0)


def test_keypoints_lie_on_the_spine_line_in_order(photo):
    kp = photo.keypoints_px
    assert kp.shape == (9, 2)
    assert np.all(np.diff(kp[:7, 1]) < 0)  # sacrum (lowest) ... C7 ... C1 upwards
    line = photo.spine_line_px
    # C7 starts the spine line, the line ends at the dimple midpoint
    assert np.linalg.norm(line[0] - kp[6]) < 1e-6
    assert np.linalg.norm(line[-1] - photo.dimples_px.mean(axis=0)) < 3.0
    # the thoracolumbar keypoints sit on the line
    for i in (1, 2, 3, 4, 5):
        x_on_line = np.interp(kp[i, 1], line[:, 1], line[:, 0])
        assert abs(kp[i, 0] - x_on_line) < 1.0


def test_spine_line_depth_agrees_with_the_depth_map(photo):
    px = np.round(photo.spine_line_px).astype(int)
    rendered = photo.depth_mm[px[:, 1], px[:, 0]]
    assert np.median(np.abs(rendered - photo.spine_line_mm[:, 2])) < 2.0  # mm
    # pinhole projection of the camera-frame line gives its pixels
    cam = photo.camera
    u = cam.cx + cam.focal_px * photo.spine_line_mm[:, 0] / photo.spine_line_mm[:, 2]
    assert np.abs(u - photo.spine_line_px[:, 0]).max() < 1e-6


def test_measures_on_the_exact_surface_match_the_truth(photo):
    cam = photo.camera
    surface = morphology.surface_from_depth(photo.depth_mm, photo.back_mask, cam.focal_px, cam.cx, cam.cy)
    result = morphology.measure_back(surface, photo.keypoints_px)
    m = result.measures.to_dict()
    t = photo.measures
    # the surface symmetry line follows the true spine line (here the scapulae are not symmetric
    # about the spine, the hardest part: a few mm near T3-T5)
    true_x = np.interp(result.line_xyz[:, 1], photo.spine_line_mm[:, 1], photo.spine_line_mm[:, 0])
    assert np.mean(np.abs(result.line_xyz[:, 0] - true_x)) < 3.0
    assert m["trunk_length"] == pytest.approx(t["trunk_length"], abs=6)
    assert m["lateral_deviation_max"] == pytest.approx(t["lateral_deviation_max"], abs=6)
    assert m["surface_rotation_max_deg"] == pytest.approx(t["surface_rotation_max_deg"], abs=1.5)
    assert m["kyphotic_angle_deg"] == pytest.approx(t["kyphotic_angle_deg"], abs=4)
    assert m["pelvic_obliquity_deg"] == pytest.approx(t["pelvic_obliquity_deg"], abs=1.5)


def test_scoliosis_parameters_drive_deviation_and_rotation():
    straight = phantom.BackParams(curves=())
    curved = phantom.BackParams(curves=((25.0, 0.4, 0.15),), rotation_gain_deg_per_mm=0.4)
    a = phantom.make_back_photo(1, params=straight).measures
    b = phantom.make_back_photo(1, params=curved).measures
    assert abs(a["lateral_deviation_max"]) < 0.5 and abs(a["surface_rotation_max_deg"]) < 0.5
    assert b["lateral_deviation_max"] > 15  # to the patient's right
    assert b["surface_rotation_max_deg"] > 5  # right rib hump


def test_command_writes_photos_depth_mask_and_truth(tmp_path):
    from MSKCommonLib.cli import main

    assert main(["phantom", "back", "--out", str(tmp_path), "--n", "2", "--seed", "5"]) == 0
    stem = tmp_path / "back_0005_0001"
    rgb = cv2.imread(str(stem) + ".png")
    depth = cv2.imread(str(stem) + "_depth.png", cv2.IMREAD_UNCHANGED)
    mask = cv2.imread(str(stem) + "_mask.png", cv2.IMREAD_UNCHANGED)
    truth = json.loads((tmp_path / "back_0005_0001_truth.json").read_text())
    assert rgb.shape == (512, 384, 3) and depth.dtype == np.uint16 and mask.shape == (512, 384)
    expected = phantom.make_back_photo(phantom.photo_seed(5, 1))
    assert np.abs(depth.astype(float) - expected.depth_mm).max() <= 0.5
    assert truth["keypoint_names"][6] == "C7" and len(truth["keypoints_px"]) == 9
    assert truth["measures"] == expected.measures
