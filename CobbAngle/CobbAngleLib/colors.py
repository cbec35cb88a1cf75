"""Colours shared by the Slicer nodes and the overlay PNGs (RGB, 0..1)."""
import colorsys

import numpy as np

from .geometry import N_VERTEBRAE

# 17 distinct hues running down the spine, alternating in lightness so neighbours stand apart.
VERTEBRA_COLORS = np.array(
    [colorsys.hsv_to_rgb((i * 0.61803) % 1.0, 0.75, 1.0 if i % 2 == 0 else 0.8) for i in range(N_VERTEBRAE)]
)
CURVE_COLORS = {"PT": (0.2, 0.85, 0.3), "MT": (1.0, 0.3, 0.2), "TL_L": (0.25, 0.6, 1.0)}
LANDMARK_COLOR = (1.0, 0.85, 0.1)
