"""Training data for the KNEEL stages: the grids shared with inference, the KNEEL/OAI VIA format
of a user's own films, and a short training run on such films (DICOM with spacing)."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from conftest import SHARED_DATA
from KneeLandmarksTools import data as D
from KneeLandmarksTools import phantom
from KneeLandmarksTools import shape_model as sm

VIA_CSV = SHARED_DATA / "kneel-annotations" / "oai_landmarks_via_refined.csv"


def write_via(path, films: dict) -> None:
    """films: file name -> [(side, (16, 2) pixels)], written as KNEEL/OAI's VIA annotations
    (tibia then femur, each ordered left to right on the image, as the annotators clicked)."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["filename", "file_size", "file_attributes", "region_count", "region_id",
                    "region_shape_attributes", "region_attributes"])
        for name, knees in films.items():
            rid = 0
            for side, pts in knees:
                for bone, part in (("T", pts[:9]), ("F", pts[9:])):
                    for x, y in sorted(part.tolist()):
                        w.writerow([name, 0, "{}", 16 * len(knees), rid,
                                    json.dumps({"name": "point", "cx": x, "cy": y}),
                                    json.dumps({"Bone": bone, "Side": "R" if side == "right" else "L"})])
                        rid += 1


def test_roi_grid_round_trip_and_mirroring():
    centre = np.array([500.0, 400.0])
    pts = np.array([[480.0, 390.0], [530.0, 420.0]])
    for side in ("right", "left"):
        roi = D.film_px_to_roi(pts, centre, side, (0.15, 0.2))
        assert np.allclose(D.roi_to_film_px(roi, centre, side, (0.15, 0.2)), pts)
        assert np.allclose(D.net_to_roi(D.roi_to_net(roi, 128), 128), roi)
    right, left = (D.film_px_to_roi(pts, centre, s, (0.3, 0.3)) for s in ("right", "left"))
    assert np.allclose(right[:, 0] - D.ROI_CENTRE, -(left[:, 0] - D.ROI_CENTRE))  # mirrored
    # a bright pixel on the film lands where the grid says in the extracted ROI
    film = np.zeros((800, 1000), np.float32)
    film[420, 530] = 1.0
    for side in ("right", "left"):
        roi = D.extract_roi(film, (0.3, 0.3), centre, side)
        expected = D.film_px_to_roi(np.array([530.0, 420.0]), centre, side, (0.3, 0.3))
        y, x = np.unravel_index(np.argmax(roi), roi.shape)
        assert abs(x - expected[0]) <= 1 and abs(y - expected[1]) <= 1


def test_synthetic_samples_have_consistent_targets():
    source = D.SyntheticSource(roi_size=64, det_size=64, augment=False)
    rng = np.random.default_rng(0)
    s = source.landmark_sample(rng)
    assert s.image.shape == (64, 64) and s.points.shape == (16, 2)
    assert np.all((s.points > 0) & (s.points < 64))
    assert s.points[0, 0] < s.points[8, 0]  # every ROI looks like a right knee
    d = source.detector_sample(rng)
    assert d.image.shape == (64, 64) and d.present.sum() >= 1


def test_real_via_annotations_are_read_in_anatomical_order():
    if not VIA_CSV.is_file():
        pytest.skip(f"KNEEL VIA annotations not found at {VIA_CSV} (the shared data folder beside the repository)")
    films = D.read_via_csv(VIA_CSV)
    assert len(films) > 500
    for knees in list(films.values())[:50]:
        for side, pts in knees:
            assert pts.shape == (16, 2)
            # lateral margin T1 on the outer side: the viewer's left for a right knee
            assert (pts[0, 0] < pts[8, 0]) == (side == "right")


def test_training_runs_on_user_dicom_films_with_via_csv(tmp_path):
    from KneeLandmarksTools import train

    truths = phantom.generate(tmp_path / "films", n=1, seed=9, single_knee_fraction=0.0, png=False,
                              spacing_range=(0.4, 0.4))
    films = {}
    for t in truths:
        films[t["files"]["dicom"]] = [
            (k["side"], np.array([k["landmarks_px"][lab] for lab in sm.LANDMARK_LABELS])) for k in t["knees"]]
    write_via(tmp_path / "via.csv", films)
    read = D.read_via_csv(tmp_path / "via.csv")
    for name, knees in films.items():
        assert len(read[name]) == len(knees) == 2  # every knee read back, none dropped
        for (side, pts), (side2, pts2) in zip(knees, read[name]):
            assert side == side2 and np.allclose(pts, pts2, atol=1e-3)
    source = D.RealSource(tmp_path / "films", tmp_path / "via.csv", roi_size=64, det_size=64)
    s = source.landmark_sample(np.random.default_rng(1))
    assert s.points[0, 0] < s.points[8, 0]
    args = train.configure_parser(__import__("argparse").ArgumentParser()).parse_args([
        "--out", str(tmp_path / "run"), "--stage", "both", "--steps", "2", "--width", "8", "--depth", "2",
        "--size", "64", "--batch-size", "2", "--images", str(tmp_path / "films"), "--via", str(tmp_path / "via.csv"),
        "--checkpoint-seconds", "0", "--val-batches", "1"])
    assert train.run(args) == 0
    for stage in ("detector", "landmarks"):
        weights = tmp_path / "run" / stage / f"knee_{stage}.pt"
        import torch

        saved = torch.load(weights, weights_only=True)
        assert saved["config"]["stage"] == stage and saved["config"]["data"].startswith("real")
        log = [json.loads(line) for line in open(tmp_path / "run" / stage / "log.jsonl")]
        assert log[-1]["step"] == 2
    # resume continues from the checkpoint
    args.steps, args.resume = 3, True
    assert train.run(args) == 0
    assert json.loads(open(tmp_path / "run" / "landmarks" / "log.jsonl").readlines()[-1])["step"] == 3
