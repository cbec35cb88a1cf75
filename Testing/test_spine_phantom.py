"""The spine phantom generator: deterministic per seed, exact ground truth in the AASCE layout,
a picture that matches its landmarks, and the bundled sample is what the generator makes."""
import json

import cv2
import numpy as np
import pytest
import scipy.io

from CobbAngleLib import geometry
from CobbAngleTools.phantom import configure_parser, render_spine_phantom, run, write_phantom
from conftest import SAMPLE_DATA

SAMPLE_SEED = 37


@pytest.fixture(scope="module")
def phantom():
    return render_spine_phantom(3, height=1200, width=450)


def test_same_seed_same_film_other_seed_other_film(phantom):
    again = render_spine_phantom(3, height=1200, width=450)
    assert np.array_equal(again.pixels, phantom.pixels) and np.array_equal(again.landmarks, phantom.landmarks)
    assert again.curve_description == phantom.curve_description and again.spacing_mm == phantom.spacing_mm
    other = render_spine_phantom(4, height=1200, width=450)
    assert not np.allclose(other.landmarks, phantom.landmarks)
    assert np.abs(other.pixels.astype(int) - phantom.pixels).mean() > 5


def test_film_looks_like_a_radiograph(phantom):
    img = phantom.pixels
    assert img.shape == (1200, 450) and img.dtype == np.uint8
    assert 0.1 < phantom.spacing_mm[0] < 0.5 and phantom.spacing_mm[0] == phantom.spacing_mm[1]
    assert img.std() > 25  # real contrast: dark lungs, bright bone
    v = phantom.landmarks
    spine = img[int(v[12:, :, 1].min()):int(v[12:, :, 1].max()), int(v[12:, :, 0].min()):int(v[12:, :, 0].max())]
    assert spine.mean() > img.mean()  # bone bright on a darker background


@pytest.mark.parametrize("seed", [0, 3, 11])
def test_landmarks_are_anatomical(seed):
    ph = render_spine_phantom(seed, height=1200, width=450)
    v = ph.landmarks
    h, w = ph.pixels.shape
    assert v.shape == (17, 4, 2) and v.dtype == np.float64
    assert np.all((v[..., 0] > 0) & (v[..., 0] < w - 1) & (v[..., 1] > 0) & (v[..., 1] < h - 1))
    centres = v.mean(axis=1)
    assert np.all(np.diff(centres[:, 1]) > 0)  # T1 at the top, L5 at the bottom
    # no overlap: each vertebra's top below the previous one's bottom
    assert np.all(v[1:, :2, 1].mean(axis=1) > v[:-1, 2:, 1].mean(axis=1))
    widths = np.linalg.norm(v[:, 1] - v[:, 0], axis=1)
    heights = np.linalg.norm(v[:, 2] - v[:, 0], axis=1)
    assert widths[-5:].mean() > 1.3 * widths[:5].mean() and heights[-5:].mean() > 1.3 * heights[:5].mean()
    assert np.corrcoef(np.arange(17), heights)[0, 1] > 0.8  # larger downwards
    assert np.all(v[:, 0, 0] < v[:, 1, 0]) and np.all(v[:, 2, 0] < v[:, 3, 0])  # left before right
    assert np.all(v[:, 0, 1] < v[:, 2, 1]) and np.all(v[:, 1, 1] < v[:, 3, 1])  # top before bottom
    # the field covers T1 near the top to L5 near the bottom, as on AASCE films
    assert v[0, :, 1].min() < 0.1 * h and v[16, :, 1].max() > 0.85 * h


def _bilinear(c, u, v):
    top = (1 - u) * c[0] + u * c[1]
    bottom = (1 - u) * c[2] + u * c[3]
    return (1 - v) * top + v * bottom


def _sample(image, pts):
    pts = np.asarray(pts, dtype=np.float32).reshape(-1, 1, 2)
    return cv2.remap(image, pts[..., 0], pts[..., 1], cv2.INTER_LINEAR).mean()


@pytest.mark.parametrize("seed", [3, SAMPLE_SEED])
def test_the_picture_matches_the_landmarks(seed):
    """Inside each vertebral body (from its four corners) the film is brighter than in the disc
    space between it and the next one, and brighter than just outside its side walls."""
    ph = render_spine_phantom(seed, height=1200, width=450)
    image = ph.pixels.astype(np.float32)
    v = ph.landmarks
    u = np.linspace(0.1, 0.9, 9)
    brighter_than_disc = 0
    for i in range(16):
        body = _sample(image, [_bilinear(v[i], uu, vv) for uu in u for vv in (0.2, 0.5, 0.8)])
        # the disc: midway between this body's inferior endplate and the next one's superior endplate
        disc = _sample(image, [(_bilinear(v[i], uu, 1.0) + _bilinear(v[i + 1], uu, 0.0)) / 2 for uu in u])
        brighter_than_disc += body > disc
    assert brighter_than_disc >= 14
    brighter_than_outside = 0
    for i in range(17):
        body = _sample(image, [_bilinear(v[i], uu, vv) for uu in (0.1, 0.9) for vv in (0.3, 0.5, 0.7)])
        outside = _sample(image, [_bilinear(v[i], uu, vv) for uu in (-0.35, 1.35) for vv in (0.3, 0.5, 0.7)])
        brighter_than_outside += body > outside
    assert brighter_than_outside >= 15


def test_written_files_round_trip(phantom, tmp_path):
    paths = write_phantom(phantom, tmp_path, "film")
    assert paths["image"].name == "film.png" and paths["landmarks"].name == "film.png.mat"
    assert np.array_equal(cv2.imread(str(paths["image"]), cv2.IMREAD_UNCHANGED), phantom.pixels)
    p2 = scipy.io.loadmat(str(paths["landmarks"]))["p2"]
    assert p2.shape == (68, 2) and np.array_equal(p2, phantom.landmarks.reshape(68, 2))
    truth = json.loads(paths["truth"].read_text())
    assert truth["seed"] == 3 and truth["size_px"] == [450, 1200]
    assert np.allclose(np.array(truth["landmarks_px"]), phantom.landmarks.reshape(68, 2), atol=1e-4)
    aasce = geometry.cobb_angles(phantom.landmarks, "aasce", image_height=1200).angles
    assert truth["aasce_angles_deg"] == pytest.approx(aasce)
    clinical = geometry.cobb_angles(phantom.landmarks, "clinical").to_dict()
    assert truth["clinical"]["curves"][1]["angle_deg"] == pytest.approx(clinical["curves"][1]["angle_deg"])


def test_command_line_writes_n_films(tmp_path, capsys):
    import argparse

    parser = argparse.ArgumentParser()
    configure_parser(parser)
    args = parser.parse_args(["--out", str(tmp_path), "--n", "2", "--seed", "7", "--height", "800", "--width", "300"])
    assert run(args) == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["spine_phantom_0007.json", "spine_phantom_0007.png", "spine_phantom_0007.png.mat",
                     "spine_phantom_0008.json", "spine_phantom_0008.png", "spine_phantom_0008.png.mat"]
    assert len(capsys.readouterr().out.strip().splitlines()) == 2
    again = render_spine_phantom(8, height=800, width=300)
    assert np.array_equal(cv2.imread(str(tmp_path / "spine_phantom_0008.png"), cv2.IMREAD_UNCHANGED), again.pixels)


def test_curve_is_what_the_generator_intends():
    """The designed curve is measured back: the AASCE major angle matches the intended main curve."""
    for seed in range(6):
        ph = render_spine_phantom(seed, height=1200, width=450)
        major = geometry.cobb_angles(ph.landmarks, "aasce", image_height=1200).angles["PT"]
        intended = max(float(w) for w in ph.curve_description.replace(",", " ").split() if w.isdigit())
        assert major == pytest.approx(intended, abs=6.0), ph.curve_description


def test_bundled_sample_is_the_generators_own():
    truth = json.loads((SAMPLE_DATA / "SpinePhantom_AP.json").read_text())
    assert truth["seed"] == SAMPLE_SEED
    sample = render_spine_phantom(truth["seed"])
    bundled = cv2.imread(str(SAMPLE_DATA / "SpinePhantom_AP.png"), cv2.IMREAD_UNCHANGED)
    assert bundled.shape == sample.pixels.shape == (2400, 900)
    # equal up to library-version rounding (OpenCV's filters and JPEG codec may differ slightly)
    assert np.abs(bundled.astype(int) - sample.pixels).mean() < 1.0
    p2 = scipy.io.loadmat(str(SAMPLE_DATA / "SpinePhantom_AP.png.mat"))["p2"]
    assert np.allclose(p2, sample.landmarks.reshape(68, 2))
    aasce = geometry.cobb_angles(p2, "aasce", image_height=bundled.shape[0]).angles
    assert aasce["PT"] > 10  # a real curve (the AASCE first column is the largest curve)
    assert truth["aasce_angles_deg"] == pytest.approx(aasce)
    mt = geometry.cobb_angles(p2, "clinical").curve("MT")
    assert 30 < mt.angle_deg < 50
    thumb = cv2.imread(str(SAMPLE_DATA / "SpinePhantom_AP_thumbnail.png"), cv2.IMREAD_UNCHANGED)
    assert thumb.shape[:2] == (256, 256)
