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
    # on one) are refused with the reason, the others give the organisers' angles
    out_of_order = {n for n in chosen if vertebrae_out_of_order(read_aasce_mat(aasce / "labels" / f"{n}.mat"))}
    assert 0 < len(out_of_order) < len(chosen) // 4
    assert main(["cobb", str(images), "--landmarks", str(aasce / "labels"), "--out", str(out), "--no-overlay",
                 "--convention", "aasce"]) == 1  # some images failed
    rows = read_csv(out / "cobb.csv")
    assert [r["image"] for r in rows] == sorted(chosen)
    for row in rows:
        if row["image"] in out_of_order:
            assert row["status"] == "failed" and "do not run T1 -> L5 down the spine" in row["error"], row["image"]
            continue
        measured = [float(row[k]) for k in ("PT", "MT", "TL_L")]
        assert measured == pytest.approx(truth[row["image"]], abs=0.01), row["image"]
        assert row["convention"] == "aasce" and row["status"] == "ok"


def test_outputs_load_as_slicer_nodes_and_agree(tmp_path, slicer_app):
    from MSKCommonLib import mrml as common

    film, spine = make_film(tmp_path, "spine film.png")
    out = tmp_path / "out"
    code = main(["cobb", str(film), "--landmarks", str(tmp_path / "spine film.png.mat"),
                 "--convention", "clinical", "--out", str(out), "--scene"])
    assert code == 0
    record = json.loads((out / "spine film_cobb.json").read_text())
    assert record["convention"] == "clinical"
    mt = next(c for c in record["curves"] if c["name"] == "MT")
    assert mt["angle_deg"] == pytest.approx(35.0, abs=1e-6)
    assert (mt["upper_end_vertebra"], mt["lower_end_vertebra"]) == ("T5", "T11")
    assert record["landmarks_px"]["T7 inf-R"] == pytest.approx(spine[6, 2], abs=1e-3)

    markups = common.read_node(slicer_app.scene, "vtkMRMLMarkupsFiducialNode", out / "spine film_landmarks.mrk.json")
    assert markups.GetNumberOfControlPoints() == 68
    assert markups.GetNthControlPointLabel(26) == "T7 inf-R"
    # a PNG has no spacing: Slicer shows pixel (x, y) at RAS (-x, -y, 0)
    ras = np.array(markups.GetNthControlPointPositionVector(26))
    assert ras == pytest.approx([-spine[6, 2, 0], -spine[6, 2, 1], 0.0], abs=1e-3)

    overlay = cv2.imread(str(out / "spine film_overlay.png"))
    assert overlay.shape[0] == 1600 and overlay.shape[1] > 900 * 1600 / 2300

    rows = read_csv(out / "cobb.csv")
    assert float(rows[0]["MT"]) == pytest.approx(35.0, abs=1e-3)
    assert rows[0]["MT_upper"] == "T5" and rows[0]["MT_lower"] == "T11"

    assert slicer_app.scene.ReadFromMRB(str(out / "spine film.mrb"))
    table = slicer_app.scene.GetFirstNodeByName("spine film Cobb angles")
    assert table is not None and common.table_rows(table)[1]["Angle (deg)"] == pytest.approx(35.0, abs=0.01)


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
