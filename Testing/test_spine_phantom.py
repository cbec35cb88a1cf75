"""The spine phantom generator: deterministic, exact ground truth, pictures that match it, and
the bundled sample is what the generator makes."""
import json

import cv2
import numpy as np
import pytest
import scipy.io

from CobbAngleLib import geometry
from CobbAngleLib.phantom import render_spine_phantom, write_phantom
from conftest import SAMPLE_DATA


@pytest.fixture(scope="module")
def phantom():
    return render_spine_phantom(3, height=1200, width=450)


def test_same_seed_same_film_other_seed_other_film(phantom):
    again = render_spine_phantom(3, height=1200, width=450)
    assert np.array_equal(again.pixels, phantom.pixels) and np.array_equal(again.landmarks, phantom.landmarks)
    other = render_spine_phantom(4, height=1200, width=450)
    assert not np.allclose(other.landmarks, phantom.landmarks)


def test_landmarks_are_anatomical(phantom):
    v = phantom.landmarks
    h, w = phantom.pixels.shape
    assert v.shape == (17, 4, 2) and phantom.pixels.dtype == np.uint8
    assert np.all((v[..., 0] > 0) & (v[..., 0] < w) & (v[..., 1] > 0) & (v[..., 1] < h))
    centres = v.mean(axis=1)
    assert np.all(np.diff(centres[:, 1]) > 0)  # T1 at the top, L5 at the bottom
    widths = np.linalg.norm(v[:, 1] - v[:, 0], axis=1)
    assert widths[-4:].mean() > 1.3 * widths[:4].mean()  # lumbar bodies are wider
    assert np.all(v[:, 0, 0] < v[:, 1, 0]) and np.all(v[:, 0, 1] < v[:, 2, 1])  # corner order


def test_the_picture_matches_the_landmarks(phantom):
    """Each vertebral body is brighter than the disc space just below it."""
    image = phantom.pixels.astype(float)
    v = phantom.landmarks
    brighter = 0
    for i in range(16):
        body = v[i].mean(axis=0)
        disc = ((v[i, 2] + v[i, 3]) / 2 + (v[i + 1, 0] + v[i + 1, 1]) / 2) / 2
        patch = lambda p: image[int(p[1]) - 2 : int(p[1]) + 3, int(p[0]) - 6 : int(p[0]) + 7].mean()
        brighter += patch(body) > patch(disc)
    assert brighter >= 14


def test_written_files_round_trip(phantom, tmp_path):
    paths = write_phantom(phantom, tmp_path, "film")
    assert np.array_equal(cv2.imread(str(paths["image"]), cv2.IMREAD_UNCHANGED), phantom.pixels)
    p2 = scipy.io.loadmat(str(paths["landmarks"]))["p2"]
    assert np.array_equal(p2, phantom.landmarks.reshape(68, 2))
    truth = json.loads(paths["truth"].read_text())
    aasce = geometry.cobb_angles(phantom.landmarks, "aasce", image_height=1200).angles
    assert truth["aasce_angles_deg"] == pytest.approx(aasce)


def test_bundled_sample_is_the_generators_seed_0_with_a_real_curve():
    truth = json.loads((SAMPLE_DATA / "SpinePhantom_AP.json").read_text())
    sample = render_spine_phantom(truth["seed"])
    bundled = cv2.imread(str(SAMPLE_DATA / "SpinePhantom_AP.png"), cv2.IMREAD_UNCHANGED)
    # equal up to library-version rounding (OpenCV's filters may differ by a grey level)
    assert np.abs(bundled.astype(int) - sample.pixels).mean() < 1.0
    p2 = scipy.io.loadmat(str(SAMPLE_DATA / "SpinePhantom_AP.png.mat"))["p2"]
    assert np.allclose(p2, sample.landmarks.reshape(68, 2))
    mt = geometry.cobb_angles(sample.landmarks, "clinical").curve("MT")
    assert 25 < mt.angle_deg < 60
