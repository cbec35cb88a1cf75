"""The overlay's text is legible on any photo: light letters with a dark outline that stays on the
letters along the whole line (SpineMorphologyLib.overlay.draw_text)."""
import cv2
import numpy as np
import pytest

from SpineMorphologyLib.overlay import draw_text

TEXT = "surface rotation max +12.5 deg, rms 4.1"


def glyphs(shape, org, font_scale, thickness):
    """Where OpenCV puts the letters themselves: their coverage 0..255."""
    reference = np.zeros(shape[:2], np.uint8)
    cv2.putText(reference, TEXT, org, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 255, thickness, cv2.LINE_AA)
    return reference


def outline_misses(img, coverage, outline_px, background):
    """(pixels next to a letter where the background still shows, dark pixels farther than the
    outline from any letter)."""
    gray = img[..., 1].astype(int)
    letters = (coverage > 127).astype(np.uint8)
    near = cv2.dilate(letters, np.ones((3, 3), np.uint8)).astype(bool) & (coverage == 0)
    around = cv2.dilate((coverage > 0).astype(np.uint8), cv2.getStructuringElement(
        cv2.MORPH_ELLIPSE, (2 * outline_px + 3, 2 * outline_px + 3))).astype(bool)
    unringed = near & (gray > background - 40)
    stray = (gray < background - 40) & ~around
    return int(unringed.sum()), int(stray.sum())


@pytest.mark.parametrize("scale", [1, 2, 4])
@pytest.mark.parametrize("background", [128, 255])
def test_the_outline_surrounds_exactly_the_letters(scale, background):
    img = np.full((24 * scale, 320 * scale, 3), background, np.uint8)
    org = (6, 16 * scale)
    draw_text(img, TEXT, org, 0.4 * scale, (255, 255, 255), scale, outline_px=scale)
    coverage = glyphs(img.shape, org, 0.4 * scale, scale)
    letters = coverage > 0
    unringed, stray = outline_misses(img, coverage, scale, background)
    assert stray == 0  # no outline off the letters
    assert unringed < 0.01 * letters.sum()  # and a ring all round them
    light = img[..., 1] > max(background, 200) if background < 255 else None
    if light is not None:  # the light letters are where OpenCV draws them
        assert light.sum() > 50 * scale and not (light & ~letters).any()


def test_on_a_dark_photo_the_letters_are_light():
    img = np.zeros((24, 320, 3), np.uint8)
    draw_text(img, TEXT, (6, 16), 0.4, (255, 255, 255), 1)
    letters = glyphs(img.shape, (6, 16), 0.4, 1) > 0
    assert img[..., 1][letters].max() == 255 and not (img[..., 1][~letters] > 0).any()


def test_a_thicker_dark_copy_drifts_off_the_letters():
    """What the overlay did before: the same text drawn thick and dark, then thin and light; the
    Hershey font's advance grows with the thickness, so the dark copy runs ahead of the letters.
    The check above catches it."""
    img = np.full((72, 960, 3), 128, np.uint8)
    cv2.putText(img, TEXT, (6, 48), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(img, TEXT, (6, 48), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (255, 255, 255), 1, cv2.LINE_AA)
    unringed, stray = outline_misses(img, glyphs(img.shape, (6, 48), 1.2, 1), 1, 128)
    assert stray > 50


def test_text_at_the_photo_edge_is_clipped_not_refused():
    img = np.full((30, 60, 3), 200, np.uint8)
    draw_text(img, TEXT, (40, 10), 0.5, (255, 255, 255), 1)
    assert (img[..., 1] < 40).any()
