"""The framings of the naming benchmark (CobbAngleTools.framing): each moves the labels with the
pixels, cuts where it says, and the naming figures count what they say."""
import cv2
import numpy as np
import pytest

from CobbAngleTools.framing import (
    CUT_HEIGHTS, FRAMINGS, framing_figures, level_offsets, names_of_true_vertebrae, reframe, shifted_as_whole,
    vertebra_height,
)
from conftest import DOUBLE_CURVE_TILTS, synthetic_spine


def drawn_film():
    spine = synthetic_spine(DOUBLE_CURVE_TILTS, spacing=120, width=95, height=80, x0=450, y0=300)
    film = np.full((2500, 900), 40.0, np.float32)
    for q in spine:
        cv2.fillPoly(film, [np.round(q[[0, 1, 3, 2]] * 16).astype(np.int32)], 200.0, shift=4)
    return film, spine


@pytest.mark.parametrize("framing", FRAMINGS)
def test_each_framing_moves_the_labels_with_the_pixels(framing):
    film, spine = drawn_film()
    pixels, labels, _ = reframe(film, spine, framing)
    for q in labels:
        c = q.mean(0)
        assert pixels[int(round(c[1])), int(round(c[0]))] > 150  # each vertebra's centre is on a vertebra
    if framing == "cut-above-T1":
        top = min(labels[0, 0, 1], labels[0, 1, 1])
        assert top == pytest.approx(CUT_HEIGHTS * vertebra_height(spine, 0), abs=1.0)
    if framing == "cut-below-L5":
        bottom = max(labels[16, 2, 1], labels[16, 3, 1])
        assert pixels.shape[0] - bottom == pytest.approx(CUT_HEIGHTS * vertebra_height(spine, 16), abs=2.0)
    if framing == "shrunk":
        assert pixels.shape == film.shape
        assert np.ptp(labels[:, :, 1]) == pytest.approx(0.6 * np.ptp(spine[:, :, 1]), rel=1e-9)


def test_naming_figures_count_a_whole_spine_shifted_by_one_level():
    film, spine = drawn_film()
    shifted = np.concatenate([spine[1:], spine[-1:] + np.array([0, 120])])  # "T1" on T2, ... "L5" below L5
    offsets = level_offsets(shifted, spine)
    assert np.count_nonzero(offsets == 1) == 16 and shifted_as_whole(offsets)
    assert not shifted_as_whole(level_offsets(spine, spine))
    np.testing.assert_array_equal(names_of_true_vertebrae(spine, spine), np.arange(17))
    # a reader that names every framing right, then one that names the shrunk film a level off
    truths = iter([reframe(film, spine, f)[1] for f in FRAMINGS])
    right = framing_figures([("drawn", film, spine)], lambda px, named: next(truths))
    assert all(r["misnamed_share"] == 0 and r["films_shifted"] == 0 for r in right["framings"].values())
    assert right["same_name_share"] == 1.0
    truths = iter([reframe(film, spine, f)[1] for f in FRAMINGS])
    off = iter([False, False, False, True])

    def reader(px, named):
        lm = next(truths)
        return np.concatenate([lm[1:], lm[-1:] + np.array([0, 72])]) if next(off) else lm

    wrong = framing_figures([("drawn", film, spine)], reader)
    assert wrong["framings"]["shrunk"]["films_shifted"] == 1 and wrong["framings"]["as-is"]["films_shifted"] == 0
    assert wrong["same_name_share"] < 0.1  # the shrunk film names 16 of 17 vertebrae otherwise


def test_the_reader_names_the_vertebrae_at_their_true_centres_in_each_framing():
    film, spine = drawn_film()
    seen = []

    def reader(px, named):
        seen.append(named)
        return spine

    framing_figures([("drawn", film, spine)], reader, ("T1", "T12"))
    assert len(seen) == len(FRAMINGS)
    for framing, named in zip(FRAMINGS, seen):
        lm = reframe(film, spine, framing)[1]
        assert [n for n, _, _ in named] == ["T1", "T12"]
        np.testing.assert_allclose([xy for _, *xy in named], [lm[0].mean(0), lm[11].mean(0)])
