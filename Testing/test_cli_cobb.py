"""``mskmorph cobb`` end to end: AASCE angles reproduced from their landmark files, outputs that
Slicer loads, a batch in which one bad file fails alone, refusals with clear reasons."""
import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from CobbAngleLib import geometry
from CobbAngleLib.geometry import vertebrae_out_of_order
from CobbAngleLib.landmarks_io import read_aasce_mat, write_aasce_mat
from MSKCommonLib.cli import main
from conftest import DOUBLE_CURVE_TILTS, REPO, synthetic_spine


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def make_film(folder: Path, name: str, tilts=DOUBLE_CURVE_TILTS):
    """A drawn spine film (gray PNG) and its landmark file in the AASCE layout."""
    spine = synthetic_spine(tilts, spacing=120, width=95, height=80, x0=450, y0=170)
    image = np.full((2300, 900), 40, np.uint8)
    for q in spine:
        cv2.fillPoly(image, [q[[0, 1, 3, 2]].round().astype(np.int32)], 200)
    path = folder / name
    cv2.imwrite(str(path), image)
    write_aasce_mat(folder / f"{name}.mat", spine)
    return path, spine


def test_cli_reproduces_aasce_angles_from_their_landmark_files(aasce, tmp_path):
    names = [l.strip() for l in open(aasce / "labels" / "filenames.csv") if l.strip()]
    truth = dict(zip(names, np.loadtxt(aasce / "labels" / "angles.csv", delimiter=",")))
    chosen = names[::12]  # 41 films across the set (the geometry test covers all 481)
    images = tmp_path / "films"
    images.mkdir()
    for name in chosen:
        os.symlink(aasce / "images" / name, images / name)
    out = tmp_path / "out"
    # files whose vertebrae do not run T1 -> L5 (the top vertebra stored last, two vertebrae marked
    # on one) are measured as stored in the organisers' convention, with a warning naming them; all
    # give the organisers' angles
    out_of_order = {n for n in chosen if vertebrae_out_of_order(read_aasce_mat(aasce / "labels" / f"{n}.mat"))}
    assert 0 < len(out_of_order) < len(chosen) // 4
    assert main(["cobb", str(images), "--landmarks", str(aasce / "labels"), "--out", str(out), "--no-overlay",
                 "--convention", "aasce"]) == 0
    rows = read_csv(out / "cobb.csv")
    assert [r["image"] for r in rows] == sorted(chosen)
    for row in rows:
        measured = [float(row[k]) for k in ("PT", "MT", "TL_L")]
        assert measured == pytest.approx(truth[row["image"]], abs=0.01), row["image"]
        assert row["convention"] == "aasce" and row["status"] == "ok"
        record = json.loads((out / f"{Path(row['image']).stem}_cobb.json").read_text())
        assert ("out of order" in (record["warning"] or "")) == (row["image"] in out_of_order), row["image"]
    # the clinical convention refuses the same files, with the vertebrae named
    clinical = tmp_path / "clinical"
    first = sorted(out_of_order)[0]
    assert main(["cobb", str(images / first), "--landmarks", str(aasce / "labels"), "--out", str(clinical),
                 "--no-overlay"]) == 1
    row = read_csv(clinical / "cobb.csv")[0]
    assert row["status"] == "failed" and "do not run T1 -> L5 down the spine" in row["error"]


def test_an_order_inverted_label_file_is_measured_in_aasce_and_refused_in_clinical(tmp_path):
    """A landmark file storing L5 above L4 (as 5 of the organisers' files do): the ``aasce``
    convention measures it as stored, as the organisers did, with a warning that names the pair;
    the clinical convention refuses it with the same names."""
    films = tmp_path / "films"
    films.mkdir()
    film, spine = make_film(films, "inverted.png")
    swapped = spine.copy()
    swapped[[15, 16]] = spine[[16, 15]]  # L4 and L5 stored the other way round
    write_aasce_mat(films / "inverted.png.mat", swapped)
    out = tmp_path / "aasce"
    assert main(["cobb", str(film), "--landmarks", str(films), "--out", str(out), "--no-overlay",
                 "--convention", "aasce"]) == 0
    record = json.loads((out / "inverted_cobb.json").read_text())
    expected = geometry.cobb_angles(swapped, "aasce", 2300, check_order=False).angles
    assert {c["name"]: c["angle_deg"] for c in record["curves"]} == pytest.approx(expected, abs=1e-6)
    assert "out of order (L5 is not below L4" in record["warning"]
    assert "the clinical convention refuses this file" in record["warning"]
    out = tmp_path / "clinical"
    assert main(["cobb", str(film), "--landmarks", str(films), "--out", str(out), "--no-overlay"]) == 1
    row = read_csv(out / "cobb.csv")[0]
    assert row["status"] == "failed" and "L5 is not below L4" in row["error"]


def test_one_bad_file_fails_alone_with_its_reason(tmp_path):
    films = tmp_path / "films"
    films.mkdir()
    make_film(films, "a.png")
    make_film(films, "c.png", tilts=[0] * 17)
    (films / "b.png").write_bytes(b"")  # an empty file among good ones
    (films / "b.png.mat").write_bytes(b"")
    out = tmp_path / "out"
    assert main(["cobb", str(films), "--landmarks", str(films), "--out", str(out)]) == 1
    rows = {r["image"]: r for r in read_csv(out / "cobb.csv")}
    assert rows["a.png"]["status"] == "ok" and rows["c.png"]["status"] == "ok"
    # a straight spine: no curve (an empty value and a status), never 0.0
    assert [(rows["c.png"][c], rows["c.png"][f"{c}_status"]) for c in ("PT", "MT", "TL_L")] == [("", "no curve")] * 3
    assert rows["b.png"]["status"] == "failed" and "empty" in rows["b.png"]["error"]
    summary = json.loads((out / "cobb.json").read_text())
    assert summary["failed"] == 1 and summary["succeeded"] == 2
    assert not list(out.glob("b_*"))  # nothing written for the failed image


@pytest.mark.parametrize(
    "make_input, reason",
    [
        (lambda d: d / "missing.png", "not found"),
        (lambda d: _write(d / "notes.png", b"these are not pixels"), "named like a PNG file but is not one"),
        (lambda d: _colour_photo(d / "photo.jpg"), "colour"),
    ],
)
def test_bad_inputs_are_refused_with_a_reason(tmp_path, make_input, reason):
    path = make_input(tmp_path)
    if path.exists():
        write_aasce_mat(tmp_path / f"{path.name}.mat", synthetic_spine(DOUBLE_CURVE_TILTS))
    out = tmp_path / "out"
    assert main(["cobb", str(path), "--landmarks", str(tmp_path), "--out", str(out)]) == 1
    row = read_csv(out / "cobb.csv")[0]
    assert row["status"] == "failed" and reason in row["error"] and row["error"]


def test_landmarks_for_another_image_are_refused(tmp_path):
    film, _ = make_film(tmp_path, "film.png")
    far = synthetic_spine(DOUBLE_CURVE_TILTS, x0=5000, y0=9000)
    write_aasce_mat(tmp_path / "far.mat", far)
    out = tmp_path / "out"
    assert main(["cobb", str(film), "--landmarks", str(tmp_path / "far.mat"), "--out", str(out)]) == 1
    assert "another image" in read_csv(out / "cobb.csv")[0]["error"]


def test_installed_command_runs_and_reports_failure_in_its_exit_status(tmp_path):
    exe = Path(sys.executable).parent / "mskmorph"
    assert exe.exists(), "the mskmorph command is installed by the set-up (.ci/setup)"
    film, _ = make_film(tmp_path, "film.png")
    ok = subprocess.run([str(exe), "cobb", str(film), "--landmarks", str(tmp_path), "--out", str(tmp_path / "o1")],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "deg (clinical)" in ok.stdout  # the clinical convention is the default of every front end
    assert "1 of 1 images measured" in ok.stdout
    bad = subprocess.run([str(exe), "cobb", str(tmp_path / "nothing.png"), "--out", str(tmp_path / "o2")],
                         capture_output=True, text=True)
    assert bad.returncode == 1 and "not found" in bad.stdout


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _colour_photo(path: Path) -> Path:
    rng = np.random.default_rng(1)
    image = np.zeros((900, 600, 3), np.uint8)
    image[:450] = (200, 120, 30)  # sky
    image[450:] = (40, 160, 60)  # grass
    image = np.clip(image + rng.normal(0, 10, image.shape), 0, 255).astype(np.uint8)
    cv2.imwrite(str(path), image)
    return path


def _knee_film(path: Path) -> Path:
    from KneeLandmarksTools import phantom

    film = phantom.sample_film(3, n_knees=2, spacing_range=(0.2, 0.2))
    cv2.imwrite(str(path), (phantom.render(film) * 65535).astype(np.uint16))
    return path


def _noise_film(path: Path) -> Path:
    cv2.imwrite(str(path), np.random.default_rng(0).normal(120, 25, (2000, 800)).clip(0, 255).astype(np.uint8))
    return path


@pytest.mark.parametrize("make_film_without_spine", [_knee_film, _noise_film])
def test_a_film_without_a_spine_is_refused_with_its_reason(tmp_path, make_film_without_spine):
    path = make_film_without_spine(tmp_path / "film.png")
    out = tmp_path / "out"
    assert main(["cobb", str(path), "--out", str(out), "--device", "cpu"]) == 1
    row = read_csv(out / "cobb.csv")[0]
    assert row["status"] == "failed" and "no spine found" in row["error"] and "vertebrae" in row["error"]
    assert not list(out.glob("film_*"))  # nothing written for it
