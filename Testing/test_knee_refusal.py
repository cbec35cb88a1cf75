"""No knee, no JSW: a film without a knee joint (the spine phantom, a blank film) is refused by the
pipeline with that reason, and so by ``mskmorph knee``; a synthetic knee film is still measured;
contours that cross are reported as not measurable, never as a width of 0."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from KneeLandmarksLib import measure
from KneeLandmarksLib.pipeline import KneeOptions, KneePipeline, LOW_CONFIDENCE
from KneeLandmarksTools import phantom
from MSKCommonLib.image import read_image

SPINE = Path(__file__).resolve().parents[1] / "Resources" / "SampleData" / "SpinePhantom_AP.png"


@pytest.fixture(scope="module")
def pipeline():
    return KneePipeline()


@pytest.fixture(scope="module")
def blank_png(tmp_path_factory):
    path = tmp_path_factory.mktemp("blank") / "blank.png"
    # an unexposed film: grey with faint noise (an exactly constant image is refused earlier, by the reader)
    noise = np.random.default_rng(0).normal(128, 3, (1500, 1500))
    cv2.imwrite(str(path), np.clip(noise, 0, 255).astype(np.uint8))
    return path


@pytest.mark.parametrize("which", ["spine", "blank"])
def test_pipeline_refuses_a_film_without_a_knee(pipeline, blank_png, which):
    image = read_image(SPINE if which == "spine" else blank_png)
    with pytest.raises(ValueError, match="no knee joint found: the landmark network's heatmaps are diffuse"):
        pipeline.run(image, KneeOptions(spacing_mm=0.2, device="cpu"))


def test_cli_refuses_spine_and_blank_films_with_the_reason(blank_png, tmp_path):
    from MSKCommonLib.cli import main

    out = tmp_path / "out"
    assert main(["knee", str(SPINE), str(blank_png), "--spacing", "0.2", "--out", str(out), "--device", "cpu"]) == 1
    summary = json.loads((out / "knee_images.json").read_text())
    assert [r["status"] for r in summary["results"]] == ["failed", "failed"]
    for r in summary["results"]:
        assert "no knee joint found" in r["error"]
    assert not (out / "SpinePhantom_AP_knee.json").exists()
    assert open(out / "knee.csv").read().count("\n") == 1  # the header only: no knee, no JSW


def test_synthetic_knee_film_is_still_measured_without_a_low_confidence_warning(pipeline, tmp_path):
    phantom.generate(tmp_path, n=1, seed=7, single_knee_fraction=0.0, spacing_range=(0.2, 0.2), dicom=False)
    truth = json.loads((tmp_path / "knee_007_0000.json").read_text())
    result = pipeline.run(read_image(tmp_path / "knee_007_0000.png"),
                          KneeOptions(spacing_mm=0.2, device="cpu"))
    assert [m.side for m in result.knees] == ["right", "left"]
    record = result.to_record()
    for knee, gt in zip(record["knees"], truth["knees"]):
        assert abs(knee["jsw_medial_mm"] - gt["jsw_medial_mm"]) < 0.6
        assert abs(knee["jsw_lateral_mm"] - gt["jsw_lateral_mm"]) < 0.6
        assert np.mean(knee["landmark_confidence"]) >= LOW_CONFIDENCE
    assert not any("low landmark confidence" in w for w in record["warnings"])


def test_a_real_crop_is_measured_with_a_low_confidence_warning(pipeline):
    crop = Path("/work/shared/data/knee-kl224-val/0/9006140R.png")
    if not crop.exists():
        pytest.skip("the shared real crops are not on this machine")  # data, not a shipped thing
    result = pipeline.run(read_image(crop), KneeOptions(spacing_mm=0.4, device="cpu"))
    record = result.to_record()
    assert len(record["knees"]) == 1
    assert any("low landmark confidence" in w for w in record["warnings"])
    assert any("low landmark confidence" in n for n in record["knees"][0]["notes"])


def test_crossing_contours_are_not_measurable():
    tibia = np.column_stack([np.linspace(-40, 40, 9), np.zeros(9)])
    femur = np.column_stack([np.linspace(-38, 38, 7), np.full(7, -5.0)])
    femur[:3, 1] = 2.0  # the lateral condyle through the plateau
    m = measure.joint_space_width(np.vstack([tibia, femur]) + 300.0, "right", 0.2)
    d = m.to_dict()
    assert d["jsw_lateral_mm"] is None and d["overlap"]["lateral"]
    assert d["jsw_medial_mm"] == pytest.approx(1.0, abs=0.01)
    assert measure.format_mm(m.reported_mm("lateral")) == "not measurable"
    assert any("not measurable" in n for n in m.notes)
