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


# --------------------------------------------------------------------------------------------
# the full-spine film (issue 25): C1 to the pelvis on a long cassette

CERVICAL = ("C1", "C2", "C3", "C4", "C5", "C6", "C7")


@pytest.fixture(scope="module")
def full_film():
    return render_spine_phantom(3, height=1600, width=600, field="full", keep_layers=True)


def _all_vertebrae(ph):
    """(names, corners (25, 4, 2)) of C1..C7, T1..L5, S1."""
    names = list(CERVICAL) + [f"T{i}" for i in range(1, 13)] + [f"L{i}" for i in range(1, 6)] + ["S1"]
    corners = [ph.other_landmarks[n] for n in CERVICAL] + list(ph.landmarks) + [ph.other_landmarks["S1"]]
    return names, np.array(corners)


def _band(shape, c, u0, u1, v0, v1):
    mask = np.zeros(shape, np.uint8)
    poly = np.array([_bilinear(c, u0, v0), _bilinear(c, u1, v0), _bilinear(c, u1, v1), _bilinear(c, u0, v1)])
    cv2.fillPoly(mask, [np.round(poly).astype(np.int32)], 1)
    return mask.astype(bool)


def test_full_spine_film_is_framed_from_c1_to_the_pelvis(full_film):
    h, w = full_film.pixels.shape
    assert full_film.field == "full" and (h, w) == (1600, 600)
    names, v = _all_vertebrae(full_film)
    centres = v.mean(axis=1)
    assert np.all(np.diff(centres[:, 1]) > 0)  # C1 at the top .. S1 at the bottom, in order
    assert v[0, :, 1].min() < 0.1 * h  # C1 near the top (the skull base above it)
    assert 0.6 * h < centres[-1, 1] < 0.85 * h  # the sacrum with the pelvis and hips below it
    # the cervical vertebrae are smaller than T1, C1 (the atlas' lateral masses) the widest of them
    widths = np.linalg.norm(v[:, 1] - v[:, 0], axis=1)
    assert np.all(widths[2:7] < widths[7]) and widths[0] > widths[7]
    # the AASCE framing puts the same 17 vertebrae over ~90 % of the height; here they are smaller
    aasce = render_spine_phantom(3, height=1600, width=600, landmarks_only=True)
    span = lambda lm: lm[16, 2:, 1].max() - lm[0, :2, 1].min()  # noqa: E731
    assert span(full_film.landmarks) < 0.7 * span(aasce.landmarks)


def test_c7_one_step_above_t1_and_s1_one_below_l5(full_film):
    names, v = _all_vertebrae(full_film)
    c = v.mean(axis=1)
    step = lambda i, j: float(np.linalg.norm(c[j] - c[i]))  # noqa: E731
    t1, l5 = names.index("T1"), names.index("L5")
    assert names[t1 - 1] == "C7" and names[l5 + 1] == "S1"
    assert 0.6 < step(t1 - 1, t1) / step(t1, t1 + 1) < 1.4  # C7 -> T1 about one T1 -> T2 step
    assert 0.6 < step(l5, l5 + 1) / step(l5 - 1, l5) < 1.6  # L5 -> S1 about one L4 -> L5 step
    # C7's lower endplate above T1's upper one, S1's upper below L5's lower: no overlap
    assert v[t1 - 1, 2:, 1].mean() < v[t1, :2, 1].mean() and v[l5, 2:, 1].mean() < v[l5 + 1, :2, 1].mean()


@pytest.mark.parametrize("seed", [3, 8])
def test_full_spine_labels_lie_on_the_drawn_vertebrae(seed):
    """T1..L5 (and the drawn C3..C7 bodies): the body brighter than the disc below it and than
    just outside its side walls, as on the AASCE-framed film."""
    ph = render_spine_phantom(seed, height=1600, width=600, field="full")
    image = ph.pixels.astype(np.float32)
    names, v = _all_vertebrae(ph)
    u = np.linspace(0.1, 0.9, 9)
    first, last = names.index("C3"), names.index("L5")
    brighter_than_disc = brighter_than_outside = 0
    for i in range(first, last + 1):
        body = _sample(image, [_bilinear(v[i], uu, vv) for uu in u for vv in (0.2, 0.5, 0.8)])
        disc = _sample(image, [(_bilinear(v[i], uu, 1.0) + _bilinear(v[i + 1], uu, 0.0)) / 2 for uu in u])
        brighter_than_disc += body > disc
        walls = _sample(image, [_bilinear(v[i], uu, vv) for uu in (0.1, 0.9) for vv in (0.3, 0.5, 0.7)])
        outside = _sample(image, [_bilinear(v[i], uu, vv) for uu in (-0.35, 1.35) for vv in (0.3, 0.5, 0.7)])
        brighter_than_outside += walls > outside
    n = last + 1 - first  # 22 vertebrae
    assert brighter_than_disc >= n - 3 and brighter_than_outside >= n - 3


def test_ribs_on_t1_to_t12_only(full_film):
    """Beside every thoracic vertebra a rib leaves it; beside C1..C6 and L1..S1 the rib layer is
    empty (beside C7 at most the edge of T1's rib)."""
    rib = (full_film.layers["rib_post"] > 0) | (full_film.layers["rib_ant"] > 0)
    names, v = _all_vertebrae(full_film)
    count = {n: int(rib[_band(rib.shape, c, -0.3, 1.3, 0.0, 1.0)].sum()) for n, c in zip(names, v)}
    thoracic = [f"T{i}" for i in range(1, 13)]
    assert all(count[n] > 200 for n in thoracic), count
    assert all(count[n] == 0 for n in names if n not in thoracic and n != "C7"), count
    assert count["C7"] < 0.1 * count["T1"], count


def test_full_spine_film_is_the_same_spine_as_the_aasce_film():
    """The same seed: T1..L5 of the full film are those of the AASCE-framed film, scaled and
    moved (the spine is the same, the framing differs), so their Cobb angles agree."""
    for seed in (0, 5):
        a = render_spine_phantom(seed, landmarks_only=True).landmarks.reshape(-1, 2)
        b = render_spine_phantom(seed, landmarks_only=True, field="full").landmarks.reshape(-1, 2)
        ac, bc = a - a.mean(0), b - b.mean(0)
        scale = np.sqrt((bc ** 2).sum() / (ac ** 2).sum())
        assert 0.4 < scale < 0.7 and np.abs(bc - scale * ac).max() < 0.25
        ca = geometry.cobb_angles(a, "clinical").curve("MT").angle_deg
        cb = geometry.cobb_angles(b, "clinical").curve("MT").angle_deg
        assert cb == pytest.approx(ca, abs=0.1)


def test_full_spine_files_and_command_line(tmp_path, capsys):
    import argparse

    parser = argparse.ArgumentParser()
    configure_parser(parser)
    assert run(parser.parse_args(["--out", str(tmp_path), "--seed", "4", "--height", "800", "--width", "300",
                                  "--field", "full"])) == 0
    truth = json.loads((tmp_path / "spine_phantom_0004.json").read_text())
    ph = render_spine_phantom(4, height=800, width=300, field="full")
    assert truth["field"] == "full" and truth["other_vertebrae"] == list(CERVICAL) + ["S1"]
    for name in CERVICAL + ("S1",):
        assert np.allclose(truth["other_landmarks_px"][name], ph.other_landmarks[name], atol=1e-4)
    assert np.allclose(np.array(truth["landmarks_px"]), ph.landmarks.reshape(68, 2), atol=1e-4)
    assert np.array_equal(scipy.io.loadmat(str(tmp_path / "spine_phantom_0004.png.mat"))["p2"], ph.landmarks.reshape(68, 2))
    with pytest.raises(SystemExit, match="follow-up"):
        run(parser.parse_args(["--out", str(tmp_path), "--field", "full", "--follow-up", "8"]))
    with pytest.raises(ValueError, match="unknown field"):
        render_spine_phantom(4, field="eos")


def test_default_field_is_unchanged_by_the_full_spine_option(tmp_path):
    """The AASCE-framed film writes exactly the bundled sample's truth file (no full-spine keys)
    and its exact corners, for the sample's seed."""
    ph = render_spine_phantom(SAMPLE_SEED)
    assert ph.field == "aasce" and set(ph.other_landmarks) == {"C6", "C7", "S1"} and ph.layers is None
    paths = write_phantom(ph, tmp_path, "SpinePhantom_AP")
    assert json.loads(paths["truth"].read_text()) == json.loads((SAMPLE_DATA / "SpinePhantom_AP.json").read_text())
    assert np.array_equal(scipy.io.loadmat(str(SAMPLE_DATA / "SpinePhantom_AP.png.mat"))["p2"], ph.landmarks.reshape(68, 2))
