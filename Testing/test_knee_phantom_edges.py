"""Where the knee phantom puts a bone's edge, at any pixel size.

The networks are trained on windows rendered at about 1.09 mm/pixel (the 128 x 128 ROI of 140 mm)
and evaluated on films of 0.14-0.3 mm/pixel, so the ground truth (the landmarks, on the bone
outline) must be where the rendered edge is at every pixel size: a shape drawn half a pixel too
large per edge puts the trained landmarks inside the bone on real-resolution films.
"""
from __future__ import annotations

import numpy as np
import pytest

from KneeLandmarksTools import data as D
from KneeLandmarksTools import phantom
from KneeLandmarksTools import shape_model as sm

SPACINGS_MM = (0.14, 0.3, 0.7, 1.1)
TOLERANCE_MM = 0.1


def crossing(profile: np.ndarray, start: float = 0.0) -> float:
    """Where a rising profile first crosses halfway between its first and last samples."""
    lo, hi = float(profile[0]), float(profile[-1])
    half = (lo + hi) / 2
    i = int(np.nonzero((profile[:-1] < half) & (profile[1:] >= half))[0][0])
    return start + i + (half - profile[i]) / (profile[i + 1] - profile[i])


def column(image: np.ndarray, x: float, y0: int, y1: int) -> np.ndarray:
    """Rows y0..y1-1 of the image at a sub-pixel column x (linear between the two columns)."""
    j = int(np.floor(x))
    f = x - j
    return image[y0:y1, j] * (1 - f) + image[y0:y1, j + 1] * f


@pytest.mark.parametrize("spacing", SPACINGS_MM)
def test_polygon_fill_covers_exactly_the_shape(spacing):
    rng = np.random.default_rng(int(spacing * 1000))
    for _ in range(10):
        x0, y0 = rng.uniform(4, 6, 2)
        w_mm, h_mm = 30.0, 20.0
        rect = np.array([[x0, y0], [x0 + w_mm, y0], [x0 + w_mm, y0 + h_mm], [x0, y0 + h_mm]])
        n = int(45 / spacing)
        cover = phantom._fill((n, n), [rect / spacing]).astype(np.float32)
        # extent of the box-filtered shape along a row and a column = the true width and height
        row, col = cover[int((y0 + h_mm / 2) / spacing)], cover[:, int((x0 + w_mm / 2) / spacing)]
        assert row.sum() * spacing == pytest.approx(w_mm, abs=2 * TOLERANCE_MM / 4)
        assert col.sum() * spacing == pytest.approx(h_mm, abs=2 * TOLERANCE_MM / 4)
        # its 50 % crossings lie on the edges
        left = crossing(row[: int((x0 + 3) / spacing)]) * spacing
        top = crossing(col[: int((y0 + 3) / spacing)]) * spacing
        assert abs(left - x0) <= TOLERANCE_MM and abs(top - y0) <= TOLERANCE_MM, (left - x0, top - y0)
        # a rotated square: its area
        a = np.radians(rng.uniform(0, 90))
        sq = np.array([[-8, -8], [8, -8], [8, 8], [-8, 8]]) @ np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]).T
        cover = phantom._fill((n, n), [(sq + 22.3) / spacing]).astype(np.float32)
        assert cover.sum() * spacing ** 2 == pytest.approx(256.0, rel=0.004)


def known_knee_film(spacing: float, side: str = "right") -> phantom.FilmSpec:
    """A knee of known shape: flat tibial plateau at y = 0 (T1..T9 at x = -40..40 mm) and flat
    femoral condyles 10 mm above it (F1..F7 at x = -38..38), no rotation, no osteophytes."""
    t = np.column_stack([np.linspace(-40, 40, 9), np.zeros(9)])
    f = np.column_stack([np.linspace(-38, 38, 7), np.full(7, -10.0)])
    knee = phantom.KneeSpec(side=side, shape_mm=np.vstack([t, f]), kl=0, centre_mm=(100.0, 120.0))
    appearance = {  # a plain film: uniform bone, linear response, 1 mm unsharpness
        "soft_tissue": 0.3, "bone": 0.6, "cortex": 0.0, "cortex_mm": 1.0, "texture": 0.0, "texture_mm": 1.0,
        "patella": 0.0, "attenuation": 0.02, "gamma": 1.0, "blur_mm": 1.0, "noise": 0.0, "heel": 0.0,
        "background": 0.05, "marker": False, "collimation": False}
    return phantom.FilmSpec(200.0, 240.0, spacing, [knee], appearance, seed=1)


@pytest.mark.parametrize("spacing", SPACINGS_MM)
@pytest.mark.parametrize("side", ("right", "left"))
def test_rendered_bone_edges_fall_on_the_landmarks(spacing, side):
    """The 50 % crossing of the intensity from the joint space into the bone lies on the plateau
    (T2, T3, T7, T8) and condyle (F2, F3, F5, F6) landmarks within 0.1 mm, for windows placed at
    any sub-pixel offset."""
    film = known_knee_film(spacing, side)
    knee = film.knees[0]
    rng = np.random.default_rng(7)
    for _ in range(3):
        origin = knee.landmarks_film_mm[sm.CENTRE_INDEX] - (60.0, 40.0) + rng.uniform(0, spacing, 2)
        image = phantom.render(film, origin, spacing, (int(80 / spacing), int(120 / spacing)))
        pts = (knee.landmarks_film_mm - origin) / spacing
        reach = int(round(5.0 / spacing))  # 5 mm: the middle of the 10 mm joint space
        for i in (1, 2, 6, 7):  # tibia: going down from the joint space into the bone
            x, y = pts[i]
            y0 = int(round(y)) - reach
            edge = crossing(column(image, x, y0, int(round(y)) + reach + 1), y0)
            assert abs(edge - y) * spacing <= TOLERANCE_MM, (sm.LANDMARK_LABELS[i], (edge - y) * spacing)
        for i in (10, 11, 13, 14):  # femur: going up from the joint space into the bone
            x, y = pts[i]
            y1 = int(round(y)) + reach
            profile = column(image, x, int(round(y)) - reach, y1 + 1)[::-1]
            edge = y1 - crossing(profile)
            assert abs(edge - y) * spacing <= TOLERANCE_MM, (sm.LANDMARK_LABELS[i], (edge - y) * spacing)


@pytest.mark.parametrize("side", ("right", "left"))
def test_training_rois_match_rois_cut_from_a_film(side):
    """The landmark network's training windows (rendered on its own 1.09 mm grid) put the bone
    edges where inference puts them: a film rendered at 0.2 mm and cut by ``extract_roi``. The
    film's response is nonlinear, so edge pixels must be averaged after the response (a window
    rendered straight at 1.09 mm puts the edges about 0.07 mm further out)."""
    film = known_knee_film(0.2, side)
    film.appearance.update({"attenuation": 1.2, "gamma": 1.3, "cortex": 0.6, "blur_mm": 0.3})
    knee = film.knees[0]
    source = D.SyntheticSource(roi_size=128, augment=False)
    pixels = phantom.render(film)
    mm_per_px = D.ROI_PX * D.ROI_SPACING / 128
    outward = []  # training edge minus inference edge, mm, positive away from the bone
    for phase in np.linspace(0, 1, 6, endpoint=False):  # where the edges fall inside the coarse pixels
        centre_mm = knee.landmarks_film_mm[sm.CENTRE_INDEX] + (1.37, -2.11 + phase * mm_per_px)
        trained = source.roi_window(film, knee, centre_mm, noise_seed=1)
        cut = D.extract_roi(pixels, (0.2, 0.2), centre_mm / 0.2, side, 128)
        net = D.roi_to_net(D.film_px_to_roi(knee.landmarks_film_mm, centre_mm, side, (1.0, 1.0)), 128)
        for i in (1, 2, 6, 7, 10, 11, 13, 14):
            x, y = net[i]
            y0 = int(round(y)) - 4
            edges = []
            for image in (trained, cut):
                profile = column(image, x, y0, y0 + 9)
                edges.append(y0 + crossing(profile) if i < 9 else y0 + 8 - crossing(profile[::-1]))
            outward.append((edges[1] - edges[0] if i < 9 else edges[0] - edges[1]) * mm_per_px)
    outward = np.array(outward)
    assert abs(outward.mean()) <= 0.03, outward.mean()
    assert np.abs(outward).max() <= 0.08, np.abs(outward).max()
