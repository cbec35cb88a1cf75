"""Landmark files in the AASCE layout: a MATLAB ``.mat`` file holding ``p2``, 68 x 2 pixel (x, y)
coordinates (17 vertebrae T1..L5 x corners top-left, top-right, bottom-left, bottom-right), one
file per image named ``<image file name>.mat``."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from .geometry import LandmarkError, as_vertebra_array


def read_aasce_mat(path) -> np.ndarray:
    """(17, 4, 2) pixel landmarks from an AASCE ``.mat`` file."""
    import scipy.io

    path = Path(path)
    if not path.is_file():
        raise LandmarkError(f"landmark file not found: {path}")
    try:
        content = scipy.io.loadmat(str(path))
    except Exception as e:  # scipy raises several types for non-MAT or truncated files
        raise LandmarkError(f"{path.name} is not a readable MATLAB .mat file ({e})") from None
    if "p2" not in content:
        keys = ", ".join(k for k in content if not k.startswith("__")) or "none"
        raise LandmarkError(f"{path.name} has no 'p2' array of 68 x 2 landmarks (variables found: {keys})")
    try:
        return as_vertebra_array(content["p2"])
    except LandmarkError as e:
        raise LandmarkError(f"{path.name}: {e}") from None


def write_aasce_mat(path, landmarks) -> Path:
    import scipy.io

    path = Path(path)
    scipy.io.savemat(str(path), {"p2": as_vertebra_array(landmarks).reshape(-1, 2)})
    return path


def landmarks_for_image(landmarks_arg: Optional[Path], image_path: Path, single_image: bool) -> Optional[Path]:
    """Which landmark file belongs to an image: ``--landmarks`` is a .mat file (one image only) or a
    folder holding ``<image file name>.mat`` (the AASCE layout). None when no ``--landmarks``."""
    if landmarks_arg is None:
        return None
    landmarks_arg = Path(landmarks_arg)
    if landmarks_arg.is_dir():
        candidate = landmarks_arg / f"{image_path.name}.mat"
        if not candidate.is_file():
            raise LandmarkError(f"no landmark file {candidate.name} in {landmarks_arg}")
        return candidate
    if not single_image:
        raise LandmarkError("--landmarks is a single file but several images were given; pass a folder of <image>.mat")
    return landmarks_arg


def check_landmarks_fit_image(landmarks: np.ndarray, shape, name: str) -> None:
    """Refuse landmarks lying far outside the image (they belong to another image). AASCE allows a
    point slightly outside, so a margin of 10 % of the image is tolerated."""
    h, w = shape[:2]
    points = as_vertebra_array(landmarks)
    x, y = points[..., 0], points[..., 1]
    margin = 0.1
    outside = (x < -margin * w) | (x > (1 + margin) * w) | (y < -margin * h) | (y > (1 + margin) * h)
    if np.any(outside):
        raise LandmarkError(f"the landmarks do not fit {name} ({w} x {h} px): are they for another image?")
