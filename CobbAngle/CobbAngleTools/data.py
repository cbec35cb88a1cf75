"""AASCE 2019 spine radiographs for training the Cobb networks: reading, caching, the fixed
train/validation split, radiograph augmentation and the training targets (vertebra label masks
rasterised from the corner quadrilaterals, vertebra centres and corners).

Network frame: a portrait film letterboxed into ``INPUT_HW`` (height x width) pixels, intensity
windowed to the 1st..99th percentile and scaled to [0, 1]; padding is 0 (black).
Landmarks are (17, 4, 2) arrays, AASCE corner order top-left, top-right, bottom-left, bottom-right.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from CobbAngleLib.frame import (  # noqa: F401  (the grids inference uses, re-exported for training)
    FLIP_CORNERS, INPUT_HW, STRIDE, apply_affine, compose, intensity_window, invert_affine, letterbox_matrix,
    to_network_frame,
)

CACHE_LONG_SIDE = 768  # cached films fit in 768 x 384 (1.5x the network input)
SPLIT_FILE = Path(__file__).resolve().parent / "cobb_split.json"


# ------------------------------------------------------------------------------------------
# reading the AASCE folder

def read_names(data_dir: Path) -> list[str]:
    lines = (Path(data_dir) / "labels" / "filenames.csv").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip()]


def read_landmarks(data_dir: Path, name: str, labels: str = "official") -> np.ndarray:
    """The film's (17, 4, 2) corners: ``labels`` "official" as annotated, "fixed" with the committed
    fixes of clear errors (``label_check.FIXES_FILE``) applied."""
    from scipy.io import loadmat

    from .label_check import fixed_landmarks

    p2 = loadmat(str(Path(data_dir) / "labels" / (name + ".mat")))["p2"]
    return fixed_landmarks(name, np.asarray(p2, dtype=np.float64).reshape(17, 4, 2), labels)


def read_angles(data_dir: Path) -> np.ndarray:
    rows = (Path(data_dir) / "labels" / "angles.csv").read_text().splitlines()
    return np.array([[float(x) for x in r.split(",")] for r in rows if r.strip()], dtype=np.float64)


def patient_of(name: str) -> str:
    """Films of one patient (``... 162 A AP.jpg``, ``... 162 B AP.jpg``) share a key, so that a
    patient never sits on both sides of the split."""
    stem = re.sub(r"\.jpg$", "", name, flags=re.I)
    return re.sub(r"( [A-Z])? AP\d*$|-?coronal\d*$", "", stem)


def write_split(data_dir: Path, path: Path = SPLIT_FILE, n_validation: int = 80, seed: int = 2019) -> dict:
    """The fixed split, grouped by patient (about ``n_validation`` films in validation)."""
    names = read_names(data_dir)
    groups: dict[str, list[str]] = {}
    for n in names:
        groups.setdefault(patient_of(n), []).append(n)
    keys = sorted(groups)
    rng = np.random.default_rng(seed)
    rng.shuffle(keys)
    val: list[str] = []
    for k in keys:
        if len(val) >= n_validation:
            break
        val.extend(groups[k])
    val_set = set(val)
    split = {
        "description": "AASCE 2019 training set split by patient; seed %d" % seed,
        "train": [n for n in names if n not in val_set],
        "validation": [n for n in names if n in val_set],
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(split, indent=1) + "\n")
    return split


def read_split(path: Path = SPLIT_FILE) -> dict:
    return json.loads(Path(path).read_text())


# ------------------------------------------------------------------------------------------
# targets

def vertebra_label_mask(landmarks: np.ndarray, hw: tuple[int, int], scale: float = 1.0) -> np.ndarray:
    """uint8 label map: 0 background, k+1 inside vertebra k's corner quadrilateral."""
    mask = np.zeros(hw, np.uint8)
    shift = 4
    for k in range(landmarks.shape[0]):
        q = landmarks[k]
        if not np.all(np.isfinite(q)):
            continue
        poly = np.round(q[[0, 1, 3, 2]] * scale * (1 << shift)).astype(np.int32)
        cv2.fillPoly(mask, [poly], int(k + 1), lineType=cv2.LINE_8, shift=shift)
    return mask


# ------------------------------------------------------------------------------------------
# cached, downsampled films

def build_cache(data_dir: Path, cache_file: Path, labels: str = "official") -> dict:
    """Read all films once, shrink to fit CACHE_LONG_SIDE x CACHE_LONG_SIDE/2, store as npz. With
    ``labels="fixed"`` the corners are the fixed ones and a fixed film's angles are recomputed from
    them (the organisers' rule, ``geometry.cobb_angles(..., "aasce")``; their own angles.csv was
    computed from the files as annotated)."""
    cache_file = Path(cache_file)
    if cache_file.exists():
        with np.load(cache_file) as z:
            cached = {k: z[k] for k in z.files}
        if str(cached.get("labels", "official")) != labels:
            raise ValueError(f"{cache_file} holds the {cached.get('labels', 'official')} labels, not the {labels} ones")
        return cached
    from CobbAngleLib import geometry

    from .label_check import read_fixes

    names = read_names(data_dir)
    angles = read_angles(data_dir)
    fixed = set(read_fixes()) if labels == "fixed" else set()
    out: dict[str, np.ndarray] = {"names": np.array(names), "angles": angles, "labels": np.array(labels)}
    lms, shapes, scales = [], [], []
    for i, n in enumerate(names):
        img = cv2.imread(str(Path(data_dir) / "images" / n), cv2.IMREAD_GRAYSCALE)
        h, w = img.shape
        s = min(1.0, CACHE_LONG_SIDE / h, CACHE_LONG_SIDE / 2 / w)
        small = cv2.resize(img, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
        out[f"img{i}"] = small
        lms.append(read_landmarks(data_dir, n, labels))
        if n in fixed:
            res = geometry.cobb_angles(lms[-1], "aasce", h).angles
            angles[i] = [res[c] for c in geometry.CURVE_NAMES]
        shapes.append((h, w))
        scales.append((small.shape[1] / w, small.shape[0] / h))
    out["landmarks"] = np.array(lms)
    out["shapes"] = np.array(shapes)
    out["scales"] = np.array(scales)
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache_file, **out)
    return out


@dataclass
class Sample:
    image: np.ndarray  # (H, W) float32 in [0, 1], network frame
    landmarks: np.ndarray  # (17, 4, 2) network frame pixels
    labels: np.ndarray  # (H/STRIDE, W/STRIDE) uint8
    angles: np.ndarray  # (3,) ground truth, organisers' order
    to_original: np.ndarray  # 2x3 affine network frame -> original film pixels
    index: int
    visible: np.ndarray = None  # (17,) bool: the vertebrae left on the film (a cut film shows part of the spine)


class SpineDataset:
    """Films from the cache; ``augment`` adds radiograph-style variation."""

    def __init__(self, cache: dict, names: list[str], augment: bool, seed: int = 0, input_hw=INPUT_HW,
                 cut_share: float = 0.0, framing_share: float = 0.0):
        all_names = list(cache["names"])
        self.cut_share = float(cut_share)  # share of augmented films cut through the spine (see ``_cut``)
        # share of augmented films framed otherwise (``_random_geometry(zoom_out=True)``, ``_film_edge``):
        # shrunk into a larger canvas off-centre, and/or cut by a film edge at any level from the neck
        # to T8 or T11 to the pelvis
        self.framing_share = float(framing_share)
        self.hw = tuple(input_hw)
        self.cache = cache
        self.indices = [all_names.index(n) for n in names]
        self.augment = augment
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.indices)

    def set_epoch(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def __getitem__(self, j: int) -> Sample:
        i = self.indices[j]
        img = self.cache[f"img{i}"].astype(np.float32) / 255.0
        img = intensity_window(img)
        sx, sy = self.cache["scales"][i]
        orig_to_cache = np.array([[sx, 0, 0], [0, sy, 0]], dtype=np.float64)
        lm_cache = apply_affine(orig_to_cache, self.cache["landmarks"][i])
        h, w = img.shape
        m = letterbox_matrix(h, w, self.hw)
        flip = False
        zoom_out, edge = False, False
        if self.augment and self.framing_share > 0 and self.rng.random() < self.framing_share:
            kind = self.rng.random()
            zoom_out, edge = kind < 0.6, kind >= 0.3  # shrunk 30 %, both 30 %, cut 40 %
        if self.augment:
            m, flip = self._random_geometry(m, lm_cache, img.shape, zoom_out)
            img = self._random_intensity(img)
        net = cv2.warpAffine(img, m, (self.hw[1], self.hw[0]), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
        lm = apply_affine(m, lm_cache)
        if flip:
            net = net[:, ::-1].copy()
            lm[..., 0] = self.hw[1] - 1 - lm[..., 0]
            lm = lm[:, FLIP_CORNERS]
            fm = np.array([[-1, 0, self.hw[1] - 1], [0, 1, 0]], dtype=np.float64)
            m = compose(fm, m)
        if self.augment:
            net = np.clip(net + self.rng.normal(0, self.rng.uniform(0, 0.03), net.shape), 0, 1).astype(np.float32)
        visible = np.ones(17, dtype=bool)
        if self.augment and self.cut_share > 0 and self.rng.random() < self.cut_share:
            net, visible = self._cut(net, lm)
        if edge:
            net, visible = self._film_edge(net, lm)
        labels = vertebra_label_mask(lm, (self.hw[0] // STRIDE, self.hw[1] // STRIDE), 1.0 / STRIDE)
        labels[np.isin(labels, np.flatnonzero(~visible) + 1)] = 0
        to_original = compose(invert_affine(orig_to_cache), invert_affine(m))
        return Sample(net.astype(np.float32), lm, labels, self.cache["angles"][i].astype(np.float64), to_original, i,
                      visible)

    def _cut(self, net: np.ndarray, lm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The film cut through the spine at a disc: above T2..T5 or below L1..L4, the cut part black
        (as the letterbox's padding). The network must then tell T1 and L5 by their anatomy, not by
        their place on the film (its identity errors on the AASCE films are whole-spine shifts of one
        level, starting at C7 or ending on the sacrum). Returns the film and the vertebrae left."""
        visible = np.ones(17, dtype=bool)
        top = self.rng.random() < 0.5
        first = int(self.rng.integers(1, 5)) if top else int(self.rng.integers(12, 16))  # top: first kept; bottom: last kept
        above, below = (first - 1, first) if top else (first, first + 1)
        y0 = float(lm[above][:, 1].max())  # the lowest corner of the upper vertebra
        y1 = float(lm[below][:2, 1].min())  # the highest upper corner of the lower one
        if not y0 < y1:
            return net, visible  # the disc is not level enough to cut cleanly here
        y = int(round((y0 + y1) / 2))
        net = net.copy()
        if top:
            net[:max(0, y)] = 0.0
            visible[:first] = False
        else:
            net[max(0, y):] = 0.0
            visible[first + 1:] = False
        return net, visible

    def _film_edge(self, net: np.ndarray, lm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A film edge anywhere from the neck to T8 (top) or from T11 to the pelvis (bottom): the
        film beyond it black (as the letterbox's padding). The vertebrae not wholly on the film are
        marked not visible (no loss: neither where they are nor that they are gone). Unlike ``_cut``
        the edge need not lie in a disc, so that any level can be the first or last one shown and a
        film may show more or less neck or pelvis than the AASCE films."""
        r = self.rng
        centres = lm.mean(axis=1)
        step = float(np.median(np.diff(centres[:, 1])))
        if r.random() < 0.5:
            y = r.uniform(lm[0][:, 1].min() - 1.5 * step, centres[7, 1])  # above T1 .. T8's centre
            visible = lm[..., 1].min(axis=1) >= y
            net = net.copy()
            net[:max(0, int(np.ceil(y)))] = 0.0
        else:
            y = r.uniform(centres[10, 1], lm[16][:, 1].max() + 1.5 * step)  # T11's centre .. below L5
            visible = lm[..., 1].max(axis=1) <= y
            net = net.copy()
            net[max(0, int(np.floor(y)) + 1):] = 0.0
        return net, visible

    def _random_geometry(self, m: np.ndarray, lm: np.ndarray, hw, zoom_out: bool = False) -> tuple[np.ndarray, bool]:
        """Turned, zoomed and moved; ``zoom_out``: the film shrunk to 45..85 % into a larger canvas
        and placed anywhere the spine stays on it (off-centre)."""
        r = self.rng
        H, W = self.hw
        angle = r.uniform(-8, 8)
        zoom = r.uniform(0.45, 0.85) if zoom_out else r.uniform(0.9, 1.25)
        centre = apply_affine(m, np.array([[hw[1] / 2, hw[0] / 2]]))[0]
        rot = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), angle, zoom)
        m2 = compose(rot, m)
        pts = apply_affine(m2, lm.reshape(-1, 2))
        # keep the whole spine (plus a margin) on the frame: shrink if needed, then shift randomly
        lo, hi = pts.min(0), pts.max(0)
        margin = np.array([6.0, 10.0])
        span = hi - lo + 2 * margin
        fit = min(1.0, W / span[0], H / span[1])
        if fit < 1.0:
            sc = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), 0, fit)
            m2 = compose(sc, m2)
            pts = apply_affine(m2, lm.reshape(-1, 2))
            lo, hi = pts.min(0), pts.max(0)
        tmin = margin - lo  # smallest allowed shift
        tmax = np.array([W, H]) - margin - hi
        t = np.array([r.uniform(min(a, b), max(a, b)) for a, b in zip(tmin, tmax)])
        # prefer small shifts: pull toward 0 when 0 is allowed (not for a film shrunk off-centre)
        if not zoom_out:
            t = np.where((tmin <= 0) & (tmax >= 0), t * 0.5, t)
        m2 = m2.copy()
        m2[:, 2] += t
        return m2, bool(r.random() < 0.5)

    def _random_intensity(self, img: np.ndarray) -> np.ndarray:
        r = self.rng
        img = np.power(np.clip(img, 0, 1), r.uniform(0.6, 1.6))
        img = (img - 0.5) * r.uniform(0.75, 1.3) + 0.5 + r.uniform(-0.1, 0.1)
        if r.random() < 0.3:
            img = cv2.GaussianBlur(img, (0, 0), r.uniform(0.5, 1.5))
        return np.clip(img, 0, 1).astype(np.float32)


def collate(samples: list[Sample]) -> dict:
    import torch

    return {
        "image": torch.from_numpy(np.stack([s.image for s in samples]))[:, None],
        "landmarks": torch.from_numpy(np.stack([s.landmarks for s in samples]).astype(np.float32)),
        "labels": torch.from_numpy(np.stack([s.labels for s in samples]).astype(np.int64)),
        "angles": torch.from_numpy(np.stack([s.angles for s in samples]).astype(np.float32)),
        "to_original": np.stack([s.to_original for s in samples]),
        "index": [s.index for s in samples],
        "visible": torch.from_numpy(np.stack([np.ones(17, bool) if s.visible is None else s.visible for s in samples])),
    }
