"""The Anny body source of the synthetic back photos: the same fields and meaning as the parametric
generator's, an exact depth map from the Z buffer, a spine line on the rendered back surface and
scoliosis parameters that drive the measures. Skipped where the optional `anny` package is missing."""
import numpy as np
import pytest

import anny  # noqa: F401,E402  (the test extra installs it: missing is a failure, not a skip)
import vtk  # noqa: F401,E402

from SpineMorphologyTools import phantom  # noqa: E402

from SpineMorphologyTools import anny_phantom, photos


@pytest.fixture(scope="module")
def photo():
    anny_phantom.anny_model()  # built once for the module (the first use ever builds anny's cache)
    return anny_phantom.make_anny_back_photo(phantom.photo_seed(7, 2))


def test_fields_shapes_and_types(photo):
    assert photo.rgb.shape == (512, 384, 3) and photo.rgb.dtype == np.uint8
    assert photo.depth_mm.shape == (512, 384) and photo.depth_mm.dtype == np.float32
    assert photo.labels.shape == (512, 384) and photo.labels.dtype == np.uint8
    assert photo.back_mask.dtype == bool and np.array_equal(photo.back_mask, photo.labels == phantom.LABEL_BACK)
    assert photo.keypoints_px.shape == (9, 2) and photo.keypoints_visible.shape == (9,)
    assert photo.spine_line_px.shape == (121, 2) and photo.spine_line_mm.shape == (121, 3)
    assert photo.dimples_px.shape == (2, 2) and photo.dimples_mm.shape == (2, 3)
    assert set(np.unique(photo.labels)) <= {0, 1, 2, 3, 4}
    for key in ("trunk_length", "lateral_deviation_max", "surface_rotation_max_deg", "pelvic_obliquity_deg"):
        assert np.isfinite(photo.measures[key])
    truth = photo.truth()
    assert truth["keypoint_names"][6] == "C7"


def test_depth_is_exactly_on_the_person_and_at_the_camera_distance(photo):
    person = photo.labels > 0
    assert np.all(photo.depth_mm[person] > 0)
    assert np.all(photo.depth_mm[~person] == 0)
    d = photo.depth_mm[photo.back_mask]
    assert abs(np.median(d) - photo.camera.distance_mm) < 400
    # the back mask: a good part of the photo, the trunk inside the frame
    assert 0.05 < photo.back_mask.mean() < 0.7
    line = photo.spine_line_px
    assert np.all((line[:, 0] >= 0) & (line[:, 0] < 384) & (line[:, 1] >= 0) & (line[:, 1] < 512))
    border = np.concatenate([photo.back_mask[0], photo.back_mask[-1], photo.back_mask[:, 0], photo.back_mask[:, -1]])
    assert border.mean() < 0.1


def test_spine_line_lies_on_the_rendered_back_surface(photo):
    px = np.round(photo.spine_line_px).astype(int)
    on_back = photo.back_mask[px[:, 1], px[:, 0]]
    assert on_back.mean() >= 0.9
    rendered = photo.depth_mm[px[:, 1], px[:, 0]][on_back]
    err = np.abs(rendered - photo.spine_line_mm[on_back, 2])
    assert np.percentile(err, 90) < 5.0  # mm (pixel rounding on a sloped surface)
    # pinhole projection of the camera-frame line gives its pixels
    cam = photo.camera
    u = cam.cx + cam.focal_px * photo.spine_line_mm[:, 0] / photo.spine_line_mm[:, 2]
    assert np.abs(u - photo.spine_line_px[:, 0]).max() < 1e-6


def test_keypoints_in_order_along_the_line(photo):
    kp = photo.keypoints_px
    assert np.all(np.diff(kp[:, 1]) < 0)  # sacrum (lowest) ... C7 ... C1 upwards
    line = photo.spine_line_px
    assert np.linalg.norm(line[0] - kp[6]) < 1e-6  # the line starts at C7
    assert np.linalg.norm(line[-1] - photo.dimples_px.mean(axis=0)) < 5.0  # and ends between the dimples
    assert photo.keypoints_visible[1:7].all()  # L5 .. C7 on the bare back


def test_same_seed_same_photo(photo):
    again = anny_phantom.make_anny_back_photo(phantom.photo_seed(7, 2))
    assert np.array_equal(photo.rgb, again.rgb)
    assert np.array_equal(photo.depth_mm, again.depth_mm)
    assert np.array_equal(photo.labels, again.labels)
    assert photo.measures == again.measures


def test_scoliosis_parameters_drive_the_deviation():
    straight = anny_phantom.make_anny_back_photo(3, params=phantom.BackParams(curves=())).measures
    curved = anny_phantom.make_anny_back_photo(
        3, params=phantom.BackParams(curves=((25.0, 0.4, 0.15),), rotation_gain_deg_per_mm=0.4)).measures
    assert abs(straight["lateral_deviation_max"]) < 5
    assert curved["lateral_deviation_max"] > 10  # to the patient's right
    assert curved["surface_rotation_max_deg"] > straight["surface_rotation_max_deg"] + 3  # right rib hump


def test_zbuffer_gives_the_exact_distance_along_the_axis():
    """A tilted plane and a small square at known distances: depth and projection are exact."""
    W, H, f, cx, cy = 160, 120, 150.0, 77.3, 61.8
    Z0, gx, gy = 1500.0, 0.3, -0.2
    R = 4000.0
    X = np.array([-R, R, R, -R])
    Y = np.array([-R, -R, R, R])
    quad = np.column_stack([X, Y, Z0 + gx * X + gy * Y])
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    red = np.array([[255, 0, 0], [255, 0, 0]], np.uint8)
    r = anny_phantom.renderer(W, H)
    depth, (img,) = r.render(quad, faces, f, cx, cy, [("cell", red)], near=500.0, far=3500.0)
    v, u = np.mgrid[0:H, 0:W].astype(float)
    expected = Z0 / (1 - gx * (u - cx) / f - gy * (v - cy) / f)
    assert np.abs(depth - expected).max() < 0.01  # mm
    assert np.all(img == [255, 0, 0])  # flat, unlit colours read back exactly
    # a square of 0.98 pixel at 1000 mm centred on pixel (u=30, v=20) covers exactly that pixel
    Zm = 1000.0
    x0, y0, s = (30 - cx) / f * Zm, (20 - cy) / f * Zm, 0.49 / f * Zm
    square = np.array([[x0 - s, y0 - s, Zm], [x0 + s, y0 - s, Zm], [x0 + s, y0 + s, Zm], [x0 - s, y0 + s, Zm]])
    depth, _ = r.render(square, faces, f, cx, cy, [("cell", red)], near=500.0, far=3500.0)
    assert np.argwhere(depth > 0).tolist() == [[20, 30]]
    assert depth[20, 30] == pytest.approx(Zm, abs=0.01)


def test_command_with_the_anny_body(tmp_path):
    import cv2
    from MSKCommonLib.cli import main

    assert main(["phantom", "back", "--body", "anny", "--out", str(tmp_path), "--n", "1", "--seed", "4"]) == 0
    depth = cv2.imread(str(tmp_path / "back_0004_0000_depth.png"), cv2.IMREAD_UNCHANGED)
    expected = anny_phantom.make_anny_back_photo(phantom.photo_seed(4, 0))
    assert depth.dtype == np.uint16 and np.abs(depth.astype(float) - expected.depth_mm).max() <= 0.5
    assert (tmp_path / "back_0004_0000_truth.json").is_file()


def test_command_says_how_to_install_anny_when_it_is_missing(tmp_path, monkeypatch, capsys):
    from MSKCommonLib.cli import main

    def missing():
        raise anny_phantom.AnnyNotInstalled("No module named 'anny'")

    monkeypatch.setattr(anny_phantom, "anny_model", missing)
    assert main(["phantom", "back", "--body", "anny", "--out", str(tmp_path), "--n", "1"]) == 2
    assert "pip install anny==0.6.2" in capsys.readouterr().err


def test_training_samples_from_anny_bodies_and_the_mix():
    from SpineMorphologyTools import data
    from SpineMorphologyLib.network import INPUT_HEIGHT, INPUT_WIDTH

    s = data.make_sample(data.TRAIN_SEED, 1, body="anny")
    assert s["image"].shape == (INPUT_HEIGHT, INPUT_WIDTH, 3)
    m = s["mask"] > 0
    assert 0.05 < m.mean() < 0.7
    assert abs(np.median(s["relief"][m])) < 0.05  # relative to the back's median
    # the keypoints L5..C7 lie on the back mask, in order from the bottom up
    kp = np.round(s["keypoints"][1:7]).astype(int)
    assert m[kp[:, 1].clip(0, INPUT_HEIGHT - 1), kp[:, 0].clip(0, INPUT_WIDTH - 1)].mean() >= 0.8
    assert np.all(np.diff(s["keypoints"][:, 1]) < 0)
    assert data.bodies_for(10, 0.5).count("anny") == 5 and data.bodies_for(7, 0.0) == ["parametric"] * 7
    with pytest.raises(ValueError):
        photos.make_photo("robot", 1, 160, 192)
