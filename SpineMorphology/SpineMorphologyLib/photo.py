"""What makes a picture a back photo the module can measure: colour, and (after the network) skin
where it found the back. Plain numpy, so these checks run in Slicer's own process as well."""
from __future__ import annotations

import numpy as np

MIN_COLOURFULNESS = 0.06  # mean HSV saturation below this: a grayscale picture (a radiograph?)


class NotABackPhoto(ValueError):
    """The picture is not a colour photo of a bare back (message for the user)."""


def colourfulness(rgb: np.ndarray) -> float:
    """Mean HSV saturation (0..1) of an RGB picture."""
    a = np.asarray(rgb)[..., :3].astype(np.float32)
    high, low = a.max(axis=2), a.min(axis=2)
    return float(np.mean(np.divide(high - low, high, out=np.zeros_like(high), where=high > 0)))


def skin_fraction(rgb: np.ndarray, mask: np.ndarray) -> float:
    """Share of the masked pixels whose chroma is skin-like (YCrCb box, all skin tones)."""
    if not mask.any():
        return 0.0
    r, g, b = (np.asarray(rgb)[..., k][mask].astype(np.float64) for k in range(3))
    y = 0.299 * r + 0.587 * g + 0.114 * b  # YCrCb as OpenCV computes it for 8-bit pictures
    cr = np.clip(np.round((r - y) * 0.713 + 128), 0, 255)
    cb = np.clip(np.round((b - y) * 0.564 + 128), 0, 255)
    return float(np.mean((cr >= 128) & (cr <= 185) & (cb >= 70) & (cb <= 135)))


def as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    a = np.asarray(image)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] < 3:
        raise NotABackPhoto(f"expected an RGB photo, got an array of shape {a.shape}")
    a = a[..., :3]
    if a.dtype != np.uint8:
        a = a.astype(np.float64)
        a = (a / 65535.0 if a.max() > 255 else a / 255.0 if a.max() > 1.0 else a)
        a = (np.clip(a, 0, 1) * 255 + 0.5).astype(np.uint8)
    return a


def require_colour_photo(rgb: np.ndarray, name: str = "the image") -> None:
    c = colourfulness(rgb)
    if c < MIN_COLOURFULNESS:
        raise NotABackPhoto(
            f"{name} is a grayscale picture (mean saturation {c:.3f}), e.g. a radiograph, not a colour photo "
            "of a bare back; back surface measures need an RGB photo taken from behind"
        )
