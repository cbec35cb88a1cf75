"""``mskmorph knee`` end to end on a generated bilateral DICOM film (real files out: .mrk.json
per knee, JSON, overlay, knee.csv), and the refusal of a film without pixel spacing."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from KneeLandmarksLib import predict

from KneeLandmarksTools import phantom
from KneeLandmarksTools import shape_model as sm


@pytest.fixture(scope="module")
def film_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("films")
    phantom.generate(out, n=1, seed=2, single_knee_fraction=0.0, spacing_range=(0.3, 0.3))
    return out


def test_cli_measures_both_knees_of_a_dicom_film(film_dir, tmp_path):
    from MSKCommonLib.cli import main
    from MSKCommonLib.headless import make_app
    from MSKCommonLib import mrml as common

    out = tmp_path / "out"
    assert main(["knee", str(film_dir / "knee_002_0000.dcm"), "--out", str(out), "--device", "cpu"]) == 0
    truth = json.loads((film_dir / "knee_002_0000.json").read_text())
    rows = list(csv.DictReader(open(out / "knee.csv")))
    assert [r["side"] for r in rows] == ["right", "left"]
    for row, knee in zip(rows, truth["knees"]):
        pred = np.array([[float(row[f"{lab}_x_px"]), float(row[f"{lab}_y_px"])] for lab in sm.LANDMARK_LABELS])
        pred_mm = np.array([[float(row[f"{lab}_x_mm"]), float(row[f"{lab}_y_mm"])] for lab in sm.LANDMARK_LABELS])
        assert np.allclose(pred * 0.3, pred_mm, atol=2e-3)
        gt = np.array([knee["landmarks_px"][lab] for lab in sm.LANDMARK_LABELS])
        # measured on this film: median landmark error 0.19 / 0.25 mm, JSW error at most 0.24 mm
        assert np.median(np.linalg.norm(pred - gt, axis=1)) * 0.3 < 0.6
        assert abs(float(row["jsw_medial_mm"]) - knee["jsw_medial_mm"]) < 0.6
        assert abs(float(row["jsw_lateral_mm"]) - knee["jsw_lateral_mm"]) < 0.6
    record = json.loads((out / "knee_002_0000_knee.json").read_text())
    assert record["pixel_spacing_mm"] == [0.3, 0.3] and len(record["knees"]) == 2
    assert (out / "knee_002_0000_overlay.png").stat().st_size > 1000
    app = make_app()
    try:
        for side in ("right", "left"):
            node = common.read_node(app.scene, "vtkMRMLMarkupsFiducialNode", out / f"knee_002_0000_{side}_knee.mrk.json")
            assert node.GetNumberOfControlPoints() == 16 and node.GetNthControlPointLabel(15) == "F7"
    finally:
        app.scene.Clear(1)


def test_png_without_spacing_is_refused_then_measured_with_spacing(film_dir, tmp_path):
    from MSKCommonLib.cli import main

    png = film_dir / "preview" / "knee_002_0000.png"
    out = tmp_path / "refused"
    assert main(["knee", str(png), "--out", str(out), "--device", "cpu", "--no-overlay"]) == 1
    status = list(csv.DictReader(open(out / "knee_images.csv")))[0]
    assert status["status"] == "failed" and "--spacing" in status["error"]
    assert list(csv.DictReader(open(out / "knee.csv"))) == []
    out2 = tmp_path / "given"
    assert main(["knee", str(png), "--out", str(out2), "--spacing", "0.3", "--device", "cpu", "--no-overlay"]) == 0
    rows = list(csv.DictReader(open(out2 / "knee.csv")))
    assert len(rows) == 2 and rows[0]["pixel_spacing_mm"] == "0.3"


def test_a_phantom_folder_runs_as_it_is_written(film_dir, tmp_path):
    """`mskmorph phantom knee --out DIR` then `mskmorph knee DIR`: the DICOM films are measured
    (the PNG previews, which carry no pixel spacing, lie in DIR/preview) and every row of the
    ground truth finds its prediction."""
    from MSKCommonLib.cli import main

    out = tmp_path / "out"
    assert main(["knee", str(film_dir), "--out", str(out), "--device", "cpu", "--no-overlay"]) == 0
    truth = list(csv.DictReader(open(film_dir / "ground_truth.csv")))
    rows = list(csv.DictReader(open(out / "knee.csv")))
    assert sorted((r["image"], r["side"]) for r in truth) == sorted((r["image"], r["side"]) for r in rows)
