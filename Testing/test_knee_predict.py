"""Two-stage inference with the shipped weights on small generated films: one result per knee,
the right sides, 16 landmarks in the original image's pixels near the exact ground truth."""
from __future__ import annotations

import numpy as np
import pytest

from KneeLandmarksLib import predict

from KneeLandmarksTools import phantom
from KneeLandmarksTools import shape_model as sm


@pytest.fixture(scope="module")
def predictor():
    import torch

    torch.set_num_threads(1)
    return predict.KneePredictor(device="cpu")


def _film(seed, n_knees, spacing=0.35):
    film = phantom.sample_film(seed, n_knees=n_knees, spacing_range=(spacing, spacing))
    return film, phantom.render(film) * 4095.0


def test_bilateral_film_gives_both_knees_in_original_pixels(predictor):
    film, pixels = _film(3, 2)
    knees = predictor.predict(pixels, film.spacing_mm)
    assert [k.side for k in knees] == ["right", "left"]
    right, left = knees
    assert right.landmarks_px.shape == (16, 2) and right.point_confidence.shape == (16,)
    assert right.landmarks_px[:, 0].mean() < left.landmarks_px[:, 0].mean()  # right knee on the viewer's left
    assert right.landmarks_px[0, 0] < right.landmarks_px[8, 0]  # T1 lateral ...
    assert left.landmarks_px[0, 0] > left.landmarks_px[8, 0]  # ... on both knees (left mirrored back)
    for k, truth in zip(knees, film.knees):
        error_mm = np.linalg.norm(k.landmarks_px - film.landmarks_px(truth), axis=1) * film.spacing_mm
        assert np.median(error_mm) < 1.0, error_mm  # about 0.3 mm on held-out shapes (model card)
        assert 0.0 <= k.confidence <= 1.0
    assert knees[0].to_dict()["landmarks_px"].keys() == set(sm.LANDMARK_LABELS)


def test_single_knee_film_gives_one_knee_with_its_side(predictor):
    for seed in (5, 6):
        film, pixels = _film(seed, 1, spacing=0.3)
        knees = predictor.predict(pixels, (film.spacing_mm, film.spacing_mm))
        assert [k.side for k in knees] == [film.knees[0].side]


def test_anisotropic_spacing_maps_back_to_original_pixels(predictor):
    film, pixels = _film(8, 2, spacing=0.3)
    import cv2

    squeezed = cv2.resize(pixels, (pixels.shape[1] // 2, pixels.shape[0]), interpolation=cv2.INTER_AREA)
    knees = predictor.predict(squeezed, (0.3, 0.6))  # rows 0.3 mm, columns 0.6 mm
    truth = film.landmarks_px(film.knees[0]) * [0.5, 1.0] + [-0.25, 0.0]
    error_mm = np.linalg.norm((knees[0].landmarks_px - truth) * [0.6, 0.3], axis=1)
    assert np.median(error_mm) < 1.5, error_mm  # 0.6 mm columns: twice the error of square 0.3 mm pixels


def test_spacing_is_required(predictor):
    with pytest.raises(ValueError, match="spacing"):
        predictor.predict(np.zeros((300, 300), np.float32), None)
