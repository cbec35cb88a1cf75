"""The second stage's view of one vertebra: a patch of the film's own pixels around it.

Stage 1 (the whole-film network) finds the vertebrae at a quarter of the network input's
resolution; the endplates, whose tilt is the Cobb angle, are read again here at the film's own
resolution. For each vertebra a 2x3 affine maps the film into a ``PATCH_HW`` patch:

* centred on the vertebra's centre (the mean of its four corners from stage 1);
* rotated so that the local spine axis (from the centre of the vertebra above to the centre of
  the one below) points down the patch: the patch is aligned to the spine, not to stage 1's
  endplate tilt, which is what the second stage is there to correct;
* scaled so that the vertebra is ``VERTEBRA_WIDTH_PX`` wide, its width taken from stage 1's
  endplates and smoothed along the spine (a median over neighbours), so that one bad vertebra
  of stage 1 does not shrink or blow up its own patch.

Corners go to the patch and back through the same affine exactly (``to_patch`` / ``to_film``).
Numpy and OpenCV only: inference (both backends) and training use these functions.
"""
from __future__ import annotations

import cv2
import numpy as np

PATCH_HW = (128, 96)  # height x width of a vertebra patch
VERTEBRA_WIDTH_PX = 56.0  # a vertebra's endplate width in the patch
N_VERTEBRAE = 17


def vertebra_widths(landmarks: np.ndarray) -> np.ndarray:
    """(17,) endplate width of each vertebra (mean of the superior and inferior endplates), smoothed
    along the spine by a median over the vertebra and its two neighbours on each side."""
    v = np.asarray(landmarks, dtype=np.float64)
    w = (np.linalg.norm(v[:, 1] - v[:, 0], axis=-1) + np.linalg.norm(v[:, 3] - v[:, 2], axis=-1)) / 2
    out = np.empty_like(w)
    n = len(w)
    for k in range(n):
        window = w[max(0, k - 2):min(n, k + 3)]
        window = window[np.isfinite(window)]
        out[k] = np.median(window) if window.size else np.nan
    return out


def spine_axes(centres: np.ndarray) -> np.ndarray:
    """(17, 2) unit vectors down the spine at each vertebra: from the centre above to the centre
    below (one-sided at T1 and L5)."""
    c = np.asarray(centres, dtype=np.float64)
    n = len(c)
    axes = np.empty_like(c)
    for k in range(n):
        d = c[min(k + 1, n - 1)] - c[max(k - 1, 0)]
        norm = np.hypot(*d)
        axes[k] = d / norm if norm > 0 else (0.0, 1.0)
    return axes


def patch_frames(landmarks: np.ndarray, width_px: float = VERTEBRA_WIDTH_PX, patch_hw=PATCH_HW) -> np.ndarray:
    """(N, 2, 3) affines, film pixels -> each vertebra's patch pixels, from stage 1's corners
    (N, 4, 2) of N consecutive vertebrae (17, or those a partial film shows)."""
    v = np.asarray(landmarks, dtype=np.float64).reshape(-1, 4, 2)
    centres = v.mean(axis=1)
    return frames_at(centres, spine_axes(centres), vertebra_widths(v), width_px, patch_hw)


def frames_at(centres: np.ndarray, axes: np.ndarray, widths: np.ndarray, width_px: float = VERTEBRA_WIDTH_PX,
              patch_hw=PATCH_HW) -> np.ndarray:
    """(N, 2, 3) affines for given centres, spine axes (unit, down the spine) and vertebra widths
    (film pixels): the axis maps to the patch's +y, the centre to the patch centre."""
    h, w = patch_hw
    out = np.zeros((len(centres), 2, 3))
    for k, (c, a, width) in enumerate(zip(np.asarray(centres, float), np.asarray(axes, float), np.asarray(widths, float))):
        s = width_px / width
        # rows of the rotation: the patch's x axis (perpendicular to the spine, image-left to
        # image-right when the spine runs down) and its y axis (down the spine)
        ex = np.array([a[1], -a[0]])
        ey = np.array([a[0], a[1]])
        r = s * np.stack([ex, ey])
        out[k, :, :2] = r
        out[k, :, 2] = np.array([(w - 1) / 2, (h - 1) / 2]) - r @ c
    return out


def to_patch(frames: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Points (N, ..., 2) in film pixels -> each vertebra's patch pixels (frame k for points[k])."""
    p = np.asarray(points, dtype=np.float64)
    f = np.asarray(frames, dtype=np.float64)
    shape = p.shape
    q = p.reshape(shape[0], -1, 2)
    return (np.einsum("nij,nkj->nki", f[:, :, :2], q) + f[:, None, :, 2]).reshape(shape)


def to_film(frames: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Patch pixels (N, ..., 2) -> film pixels: the inverse of ``to_patch``."""
    inv = np.stack([cv2.invertAffineTransform(np.asarray(f, dtype=np.float64)) for f in frames])
    return to_patch(inv, points)


def extract_patches(film01: np.ndarray, frames: np.ndarray, patch_hw=PATCH_HW) -> np.ndarray:
    """(N, H, W) float32 patches of a film already scaled to [0, 1] (``frame.intensity_window``):
    the film's own pixels, area-averaged when a patch shrinks the film below half its size, the
    film's edge repeated outside it."""
    from MSKCommonLib.resample import warp_affine_area

    h, w = patch_hw
    film = np.asarray(film01, dtype=np.float32)
    corners = np.array([[0, 0], [w - 1, 0], [0, h - 1], [w - 1, h - 1]], dtype=np.float64)
    out = []
    for f in np.asarray(frames, dtype=np.float64):
        # only the part of the film the patch covers (and a margin for the area averaging and the
        # interpolation) is resampled: 17 patches do not shrink the whole film 17 times
        inv = cv2.invertAffineTransform(f)
        footprint = corners @ inv[:, :2].T + inv[:, 2]
        margin = 4.0 / float(np.sqrt(abs(np.linalg.det(f[:, :2])))) + 2.0
        x0, y0 = np.maximum(np.floor(footprint.min(0) - margin).astype(int), 0)
        x1, y1 = np.minimum(np.ceil(footprint.max(0) + margin).astype(int) + 1, [film.shape[1], film.shape[0]])
        if x1 <= x0 or y1 <= y0:  # the patch lies off the film: the nearest edge repeated, as for the whole film
            x0, y0, x1, y1 = 0, 0, film.shape[1], film.shape[0]
        m = f.copy()
        m[:, 2] += f[:, :2] @ np.array([x0, y0], dtype=np.float64)
        out.append(warp_affine_area(film[y0:y1, x0:x1], m, (w, h), shrink_below=0.5,
                                    border_mode=cv2.BORDER_REPLICATE, pixel_centres=True))
    return np.stack(out).astype(np.float32)


def standardise(patches: np.ndarray) -> np.ndarray:
    """Each patch to zero mean and unit standard deviation (the network's input: films differ in
    exposure, a vertebra's contrast against its surroundings is what it reads)."""
    p = np.asarray(patches, dtype=np.float32)
    mean = p.mean(axis=(-2, -1), keepdims=True)
    std = p.std(axis=(-2, -1), keepdims=True)
    return ((p - mean) / np.maximum(std, 1e-3)).astype(np.float32)
