"""The relief measure of issue 15 in ``mskmorph bench back`` (SpineMorphologyTools.bench
.fitted_relief): height above the back's farthest point, the prediction fitted by scale and offset."""
import numpy as np
import pytest

from SpineMorphologyTools import phantom
from SpineMorphologyTools.bench import fitted_relief


@pytest.fixture(scope="module")
def photo():
    return phantom.make_back_photo(phantom.photo_seed(7, 2))


def test_any_scale_and_offset_of_the_true_relief_scores_perfectly(photo):
    predicted = -0.37 * photo.depth_mm + 123.0  # nearer = larger, in other units
    r = fitted_relief(photo.depth_mm, photo.back_mask, predicted)
    assert r["rmse_mm"] < 1e-3
    assert r["delta1"] > 0.999  # all but the farthest point itself (relief 0)


def test_a_flat_back_scores_the_baseline_and_noise_scores_worse(photo):
    flat = fitted_relief(photo.depth_mm, photo.back_mask, np.zeros_like(photo.depth_mm))
    assert flat["delta1"] == pytest.approx(flat["flat_delta1"]) and flat["rmse_mm"] == pytest.approx(flat["flat_rmse_mm"])
    true_relief = photo.depth_mm[photo.back_mask].max() - photo.depth_mm
    assert flat["rmse_mm"] == pytest.approx(float(np.std(true_relief[photo.back_mask])), rel=1e-3)
    rng = np.random.default_rng(0)
    noisy = fitted_relief(photo.depth_mm, photo.back_mask, -photo.depth_mm + rng.normal(0, 10, photo.depth_mm.shape))
    assert flat["delta1"] < noisy["delta1"] < 0.999
    assert 5 < noisy["rmse_mm"] < flat["rmse_mm"]
