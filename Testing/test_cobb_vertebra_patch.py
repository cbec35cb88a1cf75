"""The second stage's patches: corners go to a vertebra's patch and back exactly, the patch shows
the vertebra where its corners say, and a rotated film gives the same patch with rotated endplates."""
import math

import cv2
import numpy as np
import pytest

from CobbAngleLib import geometry
from CobbAngleLib.vertebra_patch import (
    PATCH_HW, VERTEBRA_WIDTH_PX, extract_patches, patch_frames, spine_axes, to_film, to_patch, vertebra_widths,
)


def constructed_spine(angle_deg=0.0, scale=1.0, size=(1600, 700), fit=False):
    """A film (H, W) in [0, 1] with 17 bright quadrilateral vertebrae on a dark background along a
    curved spine, each with its own tilt, and their exact corners; the whole film turned by
    ``angle_deg`` about its centre and scaled by ``scale`` (``fit``: then moved onto a film of
    the size that holds it)."""
    h, w = size
    corners = []
    for k in range(17):
        cy = 150 + 78 * k
        cx = 350 + 60 * math.sin(k / 16 * math.pi * 1.5)
        tilt = math.radians(12 * math.sin(k / 16 * math.pi * 2))
        width, height = 90 + 3 * k, 55 + k
        ex = np.array([math.cos(tilt), math.sin(tilt)])
        ey = np.array([-math.sin(tilt), math.cos(tilt)])
        c = np.array([cx, cy])
        corners.append([c - width / 2 * ex - height / 2 * ey, c + width / 2 * ex - height / 2 * ey,
                        c - width / 2 * ex + height / 2 * ey, c + width / 2 * ex + height / 2 * ey])
    corners = np.array(corners)
    m = cv2.getRotationMatrix2D((w / 2, h / 2), -angle_deg, scale)  # -: cv2 turns counter-clockwise
    corners = corners @ m[:, :2].T + m[:, 2]
    if fit:  # the whole spine on the film, 150 px from its edges
        corners = corners - corners.reshape(-1, 2).min(0) + 150
        w, h = (np.ceil(corners.reshape(-1, 2).max(0)) + 150).astype(int)
    film = np.full((h, w), 0.1, np.float32)
    for q in corners:
        cv2.fillPoly(film, [np.round(q[[0, 1, 3, 2]] * 16).astype(np.int32)], 0.9, lineType=cv2.LINE_AA, shift=4)
    return film, corners


def raster(quad, hw):
    mask = np.zeros(hw, np.uint8)
    cv2.fillPoly(mask, [np.round(quad[[0, 1, 3, 2]] * 16).astype(np.int32)], 1, shift=4)
    return mask.astype(bool)


def test_corners_go_to_the_patch_and_back_exactly():
    _, corners = constructed_spine(angle_deg=23.0, scale=1.3)
    frames = patch_frames(corners)
    in_patch = to_patch(frames, corners)
    np.testing.assert_allclose(to_film(frames, in_patch), corners, atol=1e-9)
    # each vertebra is centred, spine-aligned and VERTEBRA_WIDTH_PX wide (its smoothed width) in its patch
    centre = np.array([(PATCH_HW[1] - 1) / 2, (PATCH_HW[0] - 1) / 2])
    np.testing.assert_allclose(in_patch.mean(axis=1), np.tile(centre, (17, 1)), atol=1e-9)
    widths = vertebra_widths(corners)
    own = (np.linalg.norm(corners[:, 1] - corners[:, 0], axis=-1) + np.linalg.norm(corners[:, 3] - corners[:, 2], axis=-1)) / 2
    patch_width = (np.linalg.norm(in_patch[:, 1] - in_patch[:, 0], axis=-1) + np.linalg.norm(in_patch[:, 3] - in_patch[:, 2], axis=-1)) / 2
    np.testing.assert_allclose(patch_width, VERTEBRA_WIDTH_PX * own / widths, rtol=1e-9)
    # the spine axis at each vertebra maps to the patch's +y
    axes = spine_axes(corners.mean(axis=1))
    down = np.einsum("nij,nj->ni", frames[:, :, :2], axes)
    np.testing.assert_allclose(down[:, 0], 0, atol=1e-9)
    assert np.all(down[:, 1] > 0)


@pytest.mark.parametrize("angle,scale", [(0.0, 1.0), (-17.0, 0.6), (31.0, 1.8)])
def test_the_patch_shows_the_vertebra_where_its_corners_say(angle, scale):
    film, corners = constructed_spine(angle, scale, fit=True)
    frames = patch_frames(corners)
    patches = extract_patches(film, frames)
    assert patches.shape == (17, *PATCH_HW)
    quads = to_patch(frames, corners)
    for k in range(1, 16):
        truth = raster(quads[k], PATCH_HW)
        bright = patches[k] > 0.5
        # the neighbours show too: compare only within 2 px of the vertebra itself
        near = cv2.dilate(truth.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        iou = (bright & truth & near).sum() / ((bright | truth) & near).sum()
        assert iou > 0.9, (k, iou)


def test_a_turned_film_gives_the_same_patches_and_turned_endplates():
    film, corners = constructed_spine(0.0)
    turned, turned_corners = constructed_spine(20.0)
    a, b = patch_frames(corners), patch_frames(turned_corners)
    pa, pb = extract_patches(film, a), extract_patches(turned, b)
    # aligned to the spine, the patches do not depend on how the film was turned
    assert np.mean(np.abs(pa[1:16] - pb[1:16])) < 0.02
    # corners read in the patch come back onto the turned film with every endplate turned by 20 deg
    back = to_film(b, to_patch(a, corners))
    np.testing.assert_allclose(back, turned_corners, atol=1e-6)
    for which in ("sup", "inf"):
        t0 = geometry.tilt_deg(geometry.endplate_vectors(corners, which))
        t1 = geometry.tilt_deg(geometry.endplate_vectors(back, which))
        np.testing.assert_allclose((t1 - t0 + 180) % 360 - 180, 20.0, atol=1e-6)


def test_a_training_patch_carries_its_corners_exactly():
    """The training augmentation (rotation, zoom, shift, mirror) moves the corners with the pixels."""
    from CobbAngleTools.train_vertebrae import CACHE_HW, augmented

    window = np.full(CACHE_HW, 25, np.uint8)
    cy, cx = (CACHE_HW[0] - 1) / 2, (CACHE_HW[1] - 1) / 2
    quad = np.array([[cx - 28, cy - 14], [cx + 28, cy - 20], [cx - 28, cy + 16], [cx + 28, cy + 10]], np.float32)
    cv2.fillPoly(window, [np.round(quad[[0, 1, 3, 2]] * 16).astype(np.int32)], 230, shift=4)
    rng = np.random.default_rng(3)
    for _ in range(20):
        patch, c = augmented(window, quad, rng)
        truth = raster(c.astype(np.float64), PATCH_HW)
        iou = ((patch > 0.5) & truth).sum() / ((patch > 0.5) | truth).sum()
        assert iou > 0.85


@pytest.mark.parametrize("scale", [0.45, 0.3, 0.2])
def test_a_patch_that_shrinks_the_film_keeps_its_pixels_in_place(scale):
    """Area-averaged first (a vertebra 150 px wide read 56 px wide), the film's pixels still land
    where the affine puts them, to a tenth of a patch pixel (without ``pixel_centres``: 0.13, 0.20 and 0.40 px off)."""
    from MSKCommonLib.resample import warp_affine_area

    film = np.zeros((1200, 1200), np.float32)
    film[600:610, 400:410] = 1.0  # centre (404.5, 604.5)
    m = np.array([[scale, 0.0, 7.0], [0.0, scale, -3.0]])
    out = warp_affine_area(film, m, (400, 400), shrink_below=0.5, pixel_centres=True)
    ys, xs = np.nonzero(out > 0)
    w = out[ys, xs]
    assert (xs * w).sum() / w.sum() == pytest.approx(404.5 * scale + 7.0, abs=0.1)
    assert (ys * w).sum() / w.sum() == pytest.approx(604.5 * scale - 3.0, abs=0.1)


def test_stage2_keeps_stage1_where_it_would_turn_an_endplate_too_far():
    from CobbAngleLib.vertebra_read import GATE_DEG, gate

    _, stage1 = constructed_spine(0.0)
    refined = stage1.copy()

    def turned(q, deg):
        c = q.mean(0)
        r = np.radians(deg)
        rot = np.array([[np.cos(r), -np.sin(r)], [np.sin(r), np.cos(r)]])
        return (q - c) @ rot.T + c

    refined[4] = turned(stage1[4], GATE_DEG - 5)  # a correction stage 2 may make
    refined[9] = turned(stage1[9], GATE_DEG + 5)  # another vertebra read, or a misreading
    refined[12] = stage1[12] + np.array([3.0, -2.0])
    out = gate(stage1, refined)
    np.testing.assert_array_equal(out[4], refined[4])
    np.testing.assert_array_equal(out[9], stage1[9])
    np.testing.assert_array_equal(out[12], refined[12])


def test_stage2_never_puts_vertebrae_out_of_the_order_stage1_found():
    from CobbAngleLib.geometry import vertebrae_out_of_order
    from CobbAngleLib.vertebra_read import in_order

    _, stage1 = constructed_spine(0.0)
    refined = stage1 + 1.5
    refined[8] = stage1[9] + np.array([0.0, 20.0])  # T9 read on (and below) T10: T10 no longer below T9
    assert vertebrae_out_of_order(refined)
    out = in_order(stage1, refined)
    assert not vertebrae_out_of_order(out)
    np.testing.assert_array_equal(out[8:10], stage1[8:10])
    np.testing.assert_array_equal(out[:8], refined[:8])
    np.testing.assert_array_equal(out[10:], refined[10:])
