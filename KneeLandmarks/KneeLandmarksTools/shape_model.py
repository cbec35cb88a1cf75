"""The 16 KNEEL knee landmarks and a statistical shape model (PCA) of the real annotations.

Landmarks (KNEEL order, Tiulpin et al., "KNEEL: Knee Anatomical Landmark Localization Using
Hourglass Networks", ICCV Workshops 2019, annotations made on Osteoarthritis Initiative films):

    T1..T9  tibial plateau, from the lateral margin (T1) over the lateral plateau, the lateral
            tibial spine (T4), the centre between the spines (T5), the medial spine (T6) and the
            medial plateau to the medial margin (T9)
    F1..F7  femoral condyles, from the lateral margin (F1) over the lateral condyle, the top of
            the intercondylar notch (F4) and the medial condyle to the medial margin (F7)

Coordinates in KNEEL's CSV (``bf_landmarks_1_0.3.csv``) are pixels of a 140 mm region of interest
sampled at 0.3 mm/pixel, centred on T5, with left knees mirrored so every knee looks like a right
knee on a PA film: the lateral side at small x, the medial side at large x, y down. This module
works in millimetres in that same "right-knee" frame with the origin at T5.

The committed model (``Resources/kneel_shape_model.json``) holds only statistics: the mean shape,
the principal components, their variances and per-KL-grade coefficient means/standard deviations,
fitted on the subjects not listed in its ``held_out_subjects`` (kept for evaluation).
No torch, no Slicer.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from KneeLandmarksLib.landmarks import (  # noqa: F401  (the landmark definitions live with inference)
    CENTRE_INDEX, FEMUR, KNEEL_ROI_CENTRE_PX, KNEEL_ROI_SIZE_PX, KNEEL_ROI_SPACING_MM, LANDMARK_DESCRIPTIONS,
    LANDMARK_LABELS, N_FEMUR, N_LANDMARKS, N_TIBIA, ROI_SIZE_MM, TIBIA,
)

MODEL_PATH = Path(__file__).resolve().parent / "kneel_shape_model.json"
ATTRIBUTION = (
    "Statistics of the 598 public KNEEL landmark annotations (Tiulpin A., Melekhov I., Saarakkala S., "
    "'KNEEL: Knee Anatomical Landmark Localization Using Hourglass Networks', ICCV Workshops 2019), "
    "made on radiographs of the Osteoarthritis Initiative (OAI). Research use; cite the paper."
)


@dataclass
class KneeAnnotation:
    """One knee of the KNEEL CSV: landmarks in ROI pixels (right-knee frame, 0.3 mm/pixel)."""

    subject_id: str
    side: str  # "L" or "R" as in the CSV
    kl: int
    landmarks_roi_px: np.ndarray  # (16, 2)
    bbox: tuple = ()
    center: tuple = ()

    @property
    def landmarks_mm(self) -> np.ndarray:
        return roi_px_to_mm(self.landmarks_roi_px)


def roi_px_to_mm(points_px: np.ndarray) -> np.ndarray:
    """KNEEL ROI pixels -> mm in the right-knee frame with the origin at the ROI centre."""
    return (np.asarray(points_px, float) - KNEEL_ROI_CENTRE_PX) * KNEEL_ROI_SPACING_MM


def mm_to_roi_px(points_mm: np.ndarray) -> np.ndarray:
    return np.asarray(points_mm, float) / KNEEL_ROI_SPACING_MM + KNEEL_ROI_CENTRE_PX


def _points(text: str, n: int) -> np.ndarray:
    values = [float(v) for v in str(text).replace(";", ",").split(",") if v.strip()]
    if len(values) != 2 * n:
        raise ValueError(f"expected {2 * n} numbers (x, y for {n} points), got {len(values)}")
    return np.array(values).reshape(n, 2)


def read_kneel_csv(path) -> list[KneeAnnotation]:
    """Read KNEEL's ``bf_landmarks_1_0.3.csv`` layout: subject_id, side, kl, tibia (9 x,y), femur
    (7 x,y), and optionally bbox, center. Raises ValueError naming the bad row."""
    path = Path(path)
    out = []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"tibia", "femur"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path.name} is not a KNEEL landmark CSV: missing column(s) {', '.join(sorted(missing))}")
        for i, row in enumerate(reader, start=2):
            try:
                pts = np.vstack([_points(row["tibia"], N_TIBIA), _points(row["femur"], N_FEMUR)])
            except ValueError as e:
                raise ValueError(f"{path.name}, line {i}: {e}") from None
            kl_text = (row.get("kl") or "").strip()
            out.append(KneeAnnotation(
                subject_id=str(row.get("subject_id", i)), side=(row.get("side") or "R").strip().upper()[:1] or "R",
                kl=int(float(kl_text)) if kl_text else -1, landmarks_roi_px=pts,
                bbox=tuple(float(v) for v in str(row.get("bbox") or "").split(",") if v.strip()),
                center=tuple(float(v) for v in str(row.get("center") or "").split(",") if v.strip()),
            ))
    if not out:
        raise ValueError(f"{path.name} holds no knees")
    return out


def write_kneel_csv(path, annotations) -> Path:
    """The same layout (subject_id, side, kl, tibia, femur, bbox, center)."""
    path = Path(path)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["subject_id", "side", "kl", "tibia", "femur", "bbox", "center"])
        for a in annotations:
            p = np.asarray(a.landmarks_roi_px)
            fmt = lambda q: ",".join(f"{v:.3f}".rstrip("0").rstrip(".") for v in q.reshape(-1))  # noqa: E731
            w.writerow([a.subject_id, a.side, a.kl, fmt(p[TIBIA]), fmt(p[FEMUR]),
                        ",".join(f"{v:g}" for v in a.bbox), ",".join(f"{v:g}" for v in a.center)])
    return path


# --------------------------------------------------------------------------------------------
# the PCA model

@dataclass
class ShapeModel:
    mean_mm: np.ndarray  # (16, 2), right-knee frame, origin T5
    components: np.ndarray  # (k, 32), orthonormal rows
    variances: np.ndarray  # (k,) in mm^2
    kl_coefficient_mean: dict  # kl grade -> (k,)
    kl_coefficient_std: dict  # kl grade -> (k,)
    held_out_subjects: tuple = ()
    n_fit: int = 0

    @property
    def n_components(self) -> int:
        return len(self.variances)

    def shape(self, coefficients) -> np.ndarray:
        """Mean + sum_i b_i * component_i (b in mm, not in standard deviations)."""
        b = np.asarray(coefficients, float)
        return self.mean_mm + (b @ self.components).reshape(-1, N_LANDMARKS, 2).squeeze(0) if b.ndim == 1 else \
            self.mean_mm[None] + (b @ self.components).reshape(-1, N_LANDMARKS, 2)

    def project(self, shapes_mm) -> np.ndarray:
        x = np.asarray(shapes_mm, float).reshape(-1, 2 * N_LANDMARKS) - self.mean_mm.reshape(-1)
        return x @ self.components.T

    def sample(self, rng: np.random.Generator, n: Optional[int] = None, kl: Optional[int] = None,
               max_sd: float = 3.0) -> np.ndarray:
        """Shapes in mm (16, 2), or (n, 16, 2) when n is given. With ``kl`` the coefficients follow
        that KL grade's distribution (joint space narrowing comes with it); each coefficient is
        clipped at ``max_sd`` standard deviations of the whole model."""
        count = 1 if n is None else int(n)
        sd = np.sqrt(self.variances)
        if kl is None:
            b = rng.standard_normal((count, self.n_components)) * sd
        else:
            mu, s = self.kl_coefficient_mean[int(kl)], self.kl_coefficient_std[int(kl)]
            b = mu + rng.standard_normal((count, self.n_components)) * s
        b = np.clip(b, -max_sd * sd, max_sd * sd)
        shapes = self.shape(b)
        return shapes[0] if n is None else shapes

    def to_dict(self) -> dict:
        r = lambda a: np.round(np.asarray(a, float), 6).tolist()  # noqa: E731
        return {
            "format": "mskmorph-kneel-shape-model-v1",
            "attribution": ATTRIBUTION,
            "frame": "mm, right-knee frame (left knees mirrored), origin at T5, x lateral->medial, y down",
            "landmarks": list(LANDMARK_LABELS),
            "n_fit": self.n_fit,
            "held_out_subjects": list(self.held_out_subjects),
            "mean_mm": r(self.mean_mm),
            "components": r(self.components),
            "variances_mm2": r(self.variances),
            "kl_coefficient_mean": {str(k): r(v) for k, v in self.kl_coefficient_mean.items()},
            "kl_coefficient_std": {str(k): r(v) for k, v in self.kl_coefficient_std.items()},
        }

    @classmethod
    def from_dict(cls, d: dict) -> "ShapeModel":
        return cls(
            mean_mm=np.array(d["mean_mm"], float), components=np.array(d["components"], float),
            variances=np.array(d["variances_mm2"], float),
            kl_coefficient_mean={int(k): np.array(v, float) for k, v in d["kl_coefficient_mean"].items()},
            kl_coefficient_std={int(k): np.array(v, float) for k, v in d["kl_coefficient_std"].items()},
            held_out_subjects=tuple(d.get("held_out_subjects", ())), n_fit=int(d.get("n_fit", 0)),
        )

    def save(self, path=MODEL_PATH) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1), encoding="utf-8")
        return path


def fit(shapes_mm, kl=None, variance_kept: float = 0.995, held_out_subjects=()) -> ShapeModel:
    """PCA of (N, 16, 2) shapes in mm; keeps the components explaining ``variance_kept``."""
    x = np.asarray(shapes_mm, float).reshape(len(shapes_mm), -1)
    mean = x.mean(0)
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    var = s ** 2 / max(1, len(x) - 1)
    k = int(np.searchsorted(np.cumsum(var) / var.sum(), variance_kept) + 1)
    comps, var = vt[:k], var[:k]
    coeff = (x - mean) @ comps.T
    kl = np.full(len(x), -1) if kl is None else np.asarray(kl)
    kl_mean, kl_std = {}, {}
    for g in sorted(set(int(v) for v in kl if v >= 0)):
        c = coeff[kl == g]
        kl_mean[g], kl_std[g] = c.mean(0), c.std(0, ddof=1) if len(c) > 1 else np.sqrt(var)
    return ShapeModel(mean.reshape(N_LANDMARKS, 2), comps, var, kl_mean, kl_std,
                      tuple(str(s) for s in held_out_subjects), n_fit=len(x))


def split_subjects(annotations, held_out_fraction: float = 0.2, seed: int = 0):
    """Subjects (not knees) divided into fit and held-out sets, deterministic."""
    subjects = sorted({a.subject_id for a in annotations})
    rng = np.random.default_rng(seed)
    held = set(rng.choice(subjects, int(round(held_out_fraction * len(subjects))), replace=False).tolist())
    return [a for a in annotations if a.subject_id not in held], [a for a in annotations if a.subject_id in held]


def fit_from_csv(path, held_out_fraction: float = 0.2, seed: int = 0) -> ShapeModel:
    annotations = read_kneel_csv(path)
    fit_set, held = split_subjects(annotations, held_out_fraction, seed)
    return fit([a.landmarks_mm for a in fit_set], [a.kl for a in fit_set],
               held_out_subjects=sorted({a.subject_id for a in held}))


_cached: dict = {}


def load(path=MODEL_PATH) -> ShapeModel:
    path = Path(path)
    if path not in _cached:
        if not path.is_file():
            raise FileNotFoundError(f"shape model not found: {path} (fit it with "
                                    "python -m KneeLandmarksTools.shape_model --csv bf_landmarks_1_0.3.csv)")
        _cached[path] = ShapeModel.from_dict(json.loads(path.read_text(encoding="utf-8")))
    return _cached[path]


def main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(description="fit the KNEEL shape model and write its statistics")
    p.add_argument("--csv", required=True, help="KNEEL bf_landmarks_1_0.3.csv")
    p.add_argument("--out", default=str(MODEL_PATH))
    p.add_argument("--held-out", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    model = fit_from_csv(a.csv, a.held_out, a.seed)
    model.save(a.out)
    print(f"{model.n_components} components, {model.n_fit} knees fitted, "
          f"{len(model.held_out_subjects)} subjects held out -> {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
