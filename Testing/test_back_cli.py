"""``mskmorph back`` end to end on generated photos: the measured-depth path with a user's RGB-D
pair (no network), the network path, and photos that are not backs refused clearly."""
import csv
import json

import cv2
import numpy as np
import pytest

from MSKCommonLib.cli import main
from SpineMorphologyTools import phantom


@pytest.fixture(scope="module")
def rgbd(tmp_path_factory):
    """A user's RGB-D pair: photo + registered 16-bit depth PNG in mm (from the phantom)."""
    folder = tmp_path_factory.mktemp("rgbd")
    photo = phantom.make_back_photo(phantom.photo_seed(7, 2))
    paths = phantom.write_photo(photo, folder, "patient")
    return photo, paths


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_measured_depth_with_given_keypoints_needs_no_network(rgbd, tmp_path):
    photo, paths = rgbd
    out = tmp_path / "out"
    code = main(["back", str(paths["photo"]), "--depth", str(paths["depth"]), "--keypoints", str(paths["truth"]),
                 "--focal-px", str(photo.camera.focal_px), "--out", str(out), "--surface-format", "ply"])
    assert code == 0
    for suffix in ("_depth.png", "_depth.nrrd", "_surface.ply", "_keypoints.mrk.json", "_dimples.mrk.json",
                   "_midline.mrk.json", "_midline3d.mrk.json", "_overlay.png", "_back.json"):
        assert (out / f"patient{suffix}").is_file(), suffix
    record = json.loads((out / "patient_back.json").read_text())
    assert record["depth_units"] == "mm" and record["depth_from"].startswith("measured")
    assert record["keypoints_from"].startswith("file")
    # measured depth written back unchanged (mm)
    depth = cv2.imread(str(out / "patient_depth.png"), cv2.IMREAD_UNCHANGED)
    given = cv2.imread(str(paths["depth"]), cv2.IMREAD_UNCHANGED)
    inside = depth > 0
    assert inside.sum() > 0.9 * photo.back_mask.sum()
    assert np.array_equal(depth[inside], given[inside])
    # the measures agree with the phantom's exact ones (principal point assumed central, depth in whole mm)
    row = read_csv(out / "back.csv")[0]
    truth = photo.measures
    assert row["status"] == "ok" and row["units"] == "mm"
    assert float(row["trunk_length"]) == pytest.approx(truth["trunk_length"], abs=8)
    assert float(row["lateral_deviation_max"]) == pytest.approx(truth["lateral_deviation_max"], abs=6)
    assert float(row["surface_rotation_max_deg"]) == pytest.approx(truth["surface_rotation_max_deg"], abs=2)
    assert float(row["pelvic_obliquity_deg"]) == pytest.approx(truth["pelvic_obliquity_deg"], abs=2)


def test_measured_depth_needs_the_focal_length(rgbd, tmp_path):
    photo, paths = rgbd
    code = main(["back", str(paths["photo"]), "--depth", str(paths["depth"]), "--keypoints", str(paths["truth"]),
                 "--out", str(tmp_path)])
    assert code == 1
    assert "focal" in read_csv(tmp_path / "back.csv")[0]["error"]


def test_grayscale_radiograph_is_refused(tmp_path):
    rng = np.random.default_rng(0)
    film = (rng.uniform(0, 1, (600, 300)) * 80 + 60).astype(np.uint8)
    cv2.rectangle(film, (130, 50), (170, 550), 220, -1)  # a bright "spine"
    path = tmp_path / "spine_AP.png"
    cv2.imwrite(str(path), film)
    code = main(["back", str(path), "--out", str(tmp_path / "out")])
    assert code == 1
    row = read_csv(tmp_path / "out" / "back.csv")[0]
    assert row["status"] == "failed" and "grayscale" in row["error"] and "radiograph" in row["error"]


def test_network_path_on_a_generated_photo(tmp_path):
    photo = phantom.make_back_photo(phantom.photo_seed(2000, 77))
    paths = phantom.write_photo(photo, tmp_path, "synthetic")
    out = tmp_path / "out"
    assert main(["back", str(paths["photo"]), "--out", str(out)]) == 0
    record = json.loads((out / "synthetic_back.json").read_text())
    assert record["depth_units"] == "px" and record["depth_from"].startswith("network")
    assert len(record["keypoints_px"]) == 9 and len(record["midline_px"]) == 101
    assert (out / "synthetic_surface.vtk").is_file() and (out / "synthetic_overlay.png").is_file()
    # with the camera scale the depth comes out in mm, near the camera distance
    out_mm = tmp_path / "out_mm"
    z_ref = float(np.median(photo.depth_mm[photo.back_mask]))
    assert main(["back", str(paths["photo"]), "--out", str(out_mm), "--focal-px", str(photo.camera.focal_px),
                 "--distance-mm", str(z_ref)]) == 0
    depth = cv2.imread(str(out_mm / "synthetic_depth.png"), cv2.IMREAD_UNCHANGED).astype(float)
    both = (depth > 0) & photo.back_mask
    assert np.median(np.abs(depth[both] - photo.depth_mm[both])) < 30
    # the relief itself, not only its distance: a flat back at the right distance scores 21 mm and
    # no correlation here; the shipped network 1.9 mm and 0.995 (bounds with a 3x margin)
    pred, true = depth[both], photo.depth_mm[both]
    assert np.corrcoef(pred, true)[0, 1] > 0.95
    assert np.median(np.abs((pred - np.median(pred)) - (true - np.median(true)))) < 6.0


def test_landscape_photo_is_refused(tmp_path):
    h, w = 480, 640
    yy = np.linspace(0, 1, h)[:, None, None]
    sky = np.array([235, 180, 120]) * (1 - yy) + np.array([250, 220, 200]) * yy  # BGR
    img = np.where(np.arange(h)[:, None, None] < 260, np.broadcast_to(sky, (h, w, 3)), np.array([40, 140, 60]))
    rng = np.random.default_rng(1)
    img = np.clip(img + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8)
    path = tmp_path / "landscape.png"
    cv2.imwrite(str(path), img)
    assert main(["back", str(path), "--out", str(tmp_path / "out")]) == 1
    row = read_csv(tmp_path / "out" / "back.csv")[0]
    assert row["status"] == "failed" and ("no bare back" in row["error"] or "no spine" in row["error"])


def test_a_phantom_folder_measures_its_photos_not_their_depth_and_mask_images(rgbd, tmp_path):
    """`mskmorph back DIR` on a folder in the RGB-D layout (NAME.png, NAME_depth.png,
    NAME_mask.png, as `mskmorph phantom back` writes it): one photo measured, nothing failed; the
    depth image named on its own is still tried (and refused: it is not a colour photo)."""
    photo, paths = rgbd
    folder = paths["photo"].parent
    out = tmp_path / "folder"
    assert main(["back", str(folder), "--out", str(out), "--device", "cpu"]) == 0
    rows = read_csv(out / "back.csv")
    assert [r["image"] for r in rows] == [paths["photo"].name]
    alone = tmp_path / "alone"
    assert main(["back", str(paths["depth"]), "--out", str(alone), "--device", "cpu"]) == 1
