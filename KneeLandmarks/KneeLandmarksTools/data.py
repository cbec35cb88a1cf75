"""Training samples for the two KNEEL stages, and the pixel grids both stages share with inference.

Grids (the one definition used by training and by ``predict``):
- Detector: the whole film letterboxed into a DET x DET square (aspect kept, centred, zero pad).
- ROI: 140 mm around a knee centre at 0.3 mm/pixel, 466 x 466 pixels with the centre on pixel
  233 (as in KNEEL's CSV); a left knee's ROI is mirrored so every knee looks like a right knee.
  The landmark network sees the ROI resized to S x S (pixel u <-> ROI pixel (u+0.5)*466/S - 0.5).

Sources of samples:
- ``SyntheticSource``: films sampled from the shape model and rendered by ``phantom`` directly on
  the network grids (fast, exact ground truth), with geometric and texture augmentation
  (histogram matching to real OAI crops, gamma, blur, noise, cutout).
- ``RealSource``: the user's own radiographs (DICOM with pixel spacing, or PNG with a given
  spacing) with landmarks in KNEEL/OAI's VIA CSV (``oai_landmarks_via_refined.csv`` layout, full
  radiograph pixels) or a KNEEL ``bf_landmarks`` CSV plus bbox/centre; crops are cut through the
  same code as inference.
No torch here.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from . import phantom
from . import shape_model as sm

from KneeLandmarksLib.roi import (  # noqa: F401  (the grids inference uses, shared with training)
    ROI_CENTRE, ROI_PX, ROI_SPACING, SIDES, extract_roi, film_px_to_roi, letterbox, net_to_roi, normalise,
    roi_to_film_px, roi_to_net,
)


# --------------------------------------------------------------------------------------------
# augmentation (numpy)

def intensity_augment(img: np.ndarray, rng: np.random.Generator, real_quantiles=None) -> np.ndarray:
    """img in 0..1: a film response of another kind: histogram match to a real crop, gamma.
    Pointwise and nonlinear, so applied where a film's own response acts: at the detector's
    pixels, before they are averaged into coarser ones."""
    if real_quantiles is not None and rng.random() < 0.5:
        img = phantom.match_histogram(img, real_quantiles[rng.integers(len(real_quantiles))])
    return (np.clip(img, 0, 1) ** np.float32(np.exp(rng.normal(0, 0.25)))).astype(np.float32)


def degrade_augment(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """blur, noise, cutout."""
    if rng.random() < 0.3:
        img = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(0.4, 1.2)))
    if rng.random() < 0.5:
        img = img + rng.standard_normal(img.shape).astype(np.float32) * np.float32(rng.uniform(0, 0.04))
    if rng.random() < 0.5:
        h, w = img.shape
        for _ in range(int(rng.integers(1, 4))):
            ch, cw = int(rng.uniform(0.05, 0.25) * h), int(rng.uniform(0.05, 0.25) * w)
            y, x = int(rng.integers(0, h - ch)), int(rng.integers(0, w - cw))
            img[y:y + ch, x:x + cw] = np.float32(rng.uniform(0, 1))
    return img.astype(np.float32)


def texture_augment(img: np.ndarray, rng: np.random.Generator, real_quantiles=None) -> np.ndarray:
    """img in 0..1: histogram match to a real crop, gamma, blur, noise, cutout."""
    return degrade_augment(intensity_augment(img, rng, real_quantiles), rng)


# --------------------------------------------------------------------------------------------
# sources

@dataclass
class LandmarkSample:
    image: np.ndarray  # (S, S) normalised
    points: np.ndarray  # (16, 2) network pixels


@dataclass
class DetectorSample:
    image: np.ndarray  # (D, D) normalised
    points: np.ndarray  # (2, 2): right knee centre, left knee centre (detector pixels)
    present: np.ndarray  # (2,) 0/1


class SyntheticSource:
    """``oversample``: landmark ROIs are rendered on a grid ``oversample`` times finer and
    averaged down (as a film's pixels are averaged into the ROI at inference): the film response
    is nonlinear, so a bone edge that covers part of a coarse pixel must be averaged after the
    response, not before, or the edge moves (about +0.1 mm per edge at the 1.09 mm ROI pixels)."""

    def __init__(self, roi_size: int = 128, det_size: int = 128, centre_jitter_mm: float = 4.0,
                 model: Optional[sm.ShapeModel] = None, augment: bool = True, oversample: int = 3):
        self.roi_size, self.det_size = roi_size, det_size
        self.centre_jitter_mm = centre_jitter_mm
        self.model = model or sm.load()
        self.augment = augment
        self.oversample = max(1, int(oversample))
        self.real_q = phantom.real_quantiles()

    def _film(self, rng):
        return phantom.sample_film(int(rng.integers(0, 2**31 - 1)), self.model)

    def roi_window(self, film: phantom.FilmSpec, knee: phantom.KneeSpec, centre_mm, rng=None,
                   noise_seed: Optional[int] = None) -> np.ndarray:
        """The network's ROI (roi_size^2, 0..1, mirrored for a left knee) of ``film`` around
        ``centre_mm`` (film mm), rendered on the network grid (pixel u <-> ROI pixel
        (u + 0.5) * 466 / S - 0.5), oversampled and averaged down; with ``rng`` the intensity
        augmentation is applied on the fine grid."""
        s, k = self.roi_size, self.oversample
        offsets = (net_to_roi(np.arange(s), s) - ROI_CENTRE) * ROI_SPACING  # mm from the centre per pixel
        step = offsets[1] - offsets[0]
        x0 = centre_mm[0] - offsets[-1] if knee.side == "left" else centre_mm[0] + offsets[0]
        fine = (k - 1) / (2 * k) * step  # the first fine pixel's centre lies this far before the coarse one's
        origin = (x0 - fine, centre_mm[1] + offsets[0] - fine)
        img = phantom.render(film, origin, step / k, (s * k, s * k), noise_seed=noise_seed)
        if knee.side == "left":
            img = img[:, ::-1].copy()
        if rng is not None:
            img = intensity_augment(img, rng, self.real_q)
        if k > 1:
            img = cv2.resize(img, (s, s), interpolation=cv2.INTER_AREA)
        return img

    def landmark_sample(self, rng: np.random.Generator) -> LandmarkSample:
        film = self._film(rng)
        knee = film.knees[int(rng.integers(len(film.knees)))]
        pts_mm = knee.landmarks_film_mm
        jitter = np.clip(rng.normal(0, self.centre_jitter_mm, 2), -3 * self.centre_jitter_mm, 3 * self.centre_jitter_mm)
        centre_mm = pts_mm[sm.CENTRE_INDEX] + jitter
        img = self.roi_window(film, knee, centre_mm, rng if self.augment else None,
                              noise_seed=int(rng.integers(0, 2**31 - 1)))
        spacing = (1.0, 1.0)  # work in mm as "pixels" of a 1 mm film
        roi = film_px_to_roi(pts_mm, centre_mm, knee.side, spacing)
        if self.augment:
            img = degrade_augment(img, rng)
        return LandmarkSample(normalise(img), roi_to_net(roi, self.roi_size))

    def detector_sample(self, rng: np.random.Generator) -> DetectorSample:
        film = self._film(rng)
        d = self.det_size
        mm_per_px = max(film.width_mm, film.height_mm) / d
        nw, nh = film.width_mm / mm_per_px, film.height_mm / mm_per_px
        ox, oy = (d - nw) / 2, (d - nh) / 2
        origin = (-(ox + 0.5) * mm_per_px + 0.5 * mm_per_px, -(oy + 0.5) * mm_per_px + 0.5 * mm_per_px)
        img = phantom.render(film, origin, mm_per_px, (d, d), noise_seed=int(rng.integers(0, 2**31 - 1)))
        xs = np.arange(d) * mm_per_px + origin[0]
        ys = np.arange(d) * mm_per_px + origin[1]
        inside = ((ys >= 0) & (ys <= film.height_mm))[:, None] & ((xs >= 0) & (xs <= film.width_mm))[None, :]
        if self.augment:
            img = texture_augment(img, rng, None)
        img = normalise(np.where(inside, img, np.float32(np.median(img[inside]))))
        img[~inside] = 0
        points, present = np.zeros((2, 2)), np.zeros(2)
        for k in film.knees:
            i = SIDES.index(k.side)
            points[i] = (k.landmarks_film_mm[sm.CENTRE_INDEX] - origin) / mm_per_px
            present[i] = 1
        return DetectorSample(img.astype(np.float32), points, present)


def read_via_csv(path) -> dict:
    """KNEEL/OAI VIA annotations -> {file name: [(side 'right'/'left', (16, 2) film pixels)]}, the
    points in anatomical order (T1/F1 lateral), assuming the standard PA display (a right knee's
    lateral side on the viewer's left)."""
    points: dict = {}
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            shape = json.loads(row["region_shape_attributes"] or "{}")
            attrs = json.loads(row["region_attributes"] or "{}")
            if shape.get("name") != "point":
                continue
            side = "left" if str(attrs.get("Side", "R")).upper().startswith("L") else "right"
            bone = str(attrs.get("Bone", "")).upper()[:1]
            points.setdefault(row["filename"], {}).setdefault(side, {"T": [], "F": []})[bone].append(
                (float(shape["cx"]), float(shape["cy"])))
    out = {}
    for name, sides in points.items():
        knees = []
        for side, bones in sides.items():
            if len(bones["T"]) != 9 or len(bones["F"]) != 7:
                continue
            t = np.array(sorted(bones["T"]))
            fm = np.array(sorted(bones["F"]))
            if side == "left":
                t, fm = t[::-1], fm[::-1]
            knees.append((side, np.vstack([t, fm])))
        if knees:
            out[name] = knees
    return out


class RealSource:
    """Real radiographs with landmarks: ``images`` folder + VIA CSV (names as in the CSV; a .png
    name also matches NAME.dcm / NAME without extension)."""

    def __init__(self, images_dir, via_csv, roi_size: int = 128, det_size: int = 128,
                 default_spacing: Optional[float] = None, centre_jitter_mm: float = 4.0):
        from MSKCommonLib.image import read_image

        self.roi_size, self.det_size, self.centre_jitter_mm = roi_size, det_size, centre_jitter_mm
        self.films = []
        annotations = read_via_csv(via_csv)
        folder = Path(images_dir)
        for name, knees in sorted(annotations.items()):
            stem = Path(name).stem
            candidates = [folder / name, folder / f"{stem}.dcm", folder / stem, folder / f"{stem}.png"]
            path = next((p for p in candidates if p.is_file()), None)
            if path is None:
                continue
            r = read_image(path)
            spacing = r.spacing_mm or ((default_spacing, default_spacing) if default_spacing else None)
            if spacing is None:
                raise ValueError(f"{path.name} has no pixel spacing; give --spacing")
            self.films.append((r.pixels, spacing, knees))
        if not self.films:
            raise ValueError(f"none of the {len(annotations)} annotated images were found in {folder}")
        self.real_q = phantom.real_quantiles()

    def landmark_sample(self, rng) -> LandmarkSample:
        pixels, spacing, knees = self.films[int(rng.integers(len(self.films)))]
        side, pts = knees[int(rng.integers(len(knees)))]
        jitter_px = rng.normal(0, self.centre_jitter_mm, 2) / np.array([spacing[1], spacing[0]])
        centre = pts[sm.CENTRE_INDEX] + jitter_px
        roi = extract_roi(pixels, spacing, centre, side, self.roi_size)
        lo, hi = np.percentile(roi, [0.5, 99.5])
        img = texture_augment(np.clip((roi - lo) / max(hi - lo, 1e-6), 0, 1), rng, None)
        return LandmarkSample(normalise(img), roi_to_net(film_px_to_roi(pts, centre, side, spacing), self.roi_size))

    def detector_sample(self, rng) -> DetectorSample:
        pixels, spacing, knees = self.films[int(rng.integers(len(self.films)))]
        img, scale, offset = letterbox(pixels, spacing, self.det_size)
        points, present = np.zeros((2, 2)), np.zeros(2)
        for side, pts in knees:
            i = SIDES.index(side)
            points[i] = pts[sm.CENTRE_INDEX] * np.array(scale) + np.array(offset)
            present[i] = 1
        return DetectorSample(img, points, present)
