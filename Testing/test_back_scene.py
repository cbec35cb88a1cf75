"""Varied scenes of the synthetic back photos (SpineMorphologyTools.phantom.shade, scene="varied"):
the same body, camera and truth as the plain photo, only the look changes (lights, skin tone,
body hair, shadows, clutter); the plain scene stays the photos the weights were trained on."""
import numpy as np
import pytest

from SpineMorphologyTools import phantom


def test_a_varied_scene_changes_the_look_not_the_truth():
    seed = phantom.photo_seed(3, 4)
    plain, varied = phantom.make_back_photo(seed), phantom.make_back_photo(seed, scene="varied")
    assert np.array_equal(plain.depth_mm, varied.depth_mm) and np.array_equal(plain.labels, varied.labels)
    assert np.array_equal(plain.keypoints_px, varied.keypoints_px) and plain.measures == varied.measures
    assert np.abs(plain.rgb.astype(int) - varied.rgb.astype(int)).mean() > 5


def test_varied_skin_tones_span_light_to_dark_backs():
    means = []
    for i in range(10):
        photo = phantom.make_back_photo(phantom.photo_seed(4, i), 96, 128, scene="varied")
        means.append(photo.rgb[photo.back_mask].mean())
    assert max(means) - min(means) > 60


def test_unknown_scene_is_refused():
    with pytest.raises(ValueError, match="unknown scene"):
        phantom.make_back_photo(phantom.photo_seed(3, 4), scene="disco")
