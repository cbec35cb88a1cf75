"""Shared fixtures: a real headless Slicer scene (slicer-core), the shared data folder, and
synthetic spines with known angles."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MSKMORPH_SHARED_DATA", REPO.parent / "shared" / "data"))
AASCE = SHARED_DATA / "aasce2019-train"
SAMPLE_DATA = REPO / "Resources" / "SampleData"


def require_aasce():
    if not (AASCE / "labels" / "angles.csv").is_file():
        pytest.skip(f"AASCE data not found at {AASCE} (the shared data folder beside the repository)")
    return AASCE


@pytest.fixture
def aasce():
    return require_aasce()


@pytest.fixture
def slicer_app():
    """A fresh real MRML scene with the module logics, torn down after the test."""
    from MSKCommonLib.headless import make_app

    app = make_app()
    yield app
    app.scene.Clear(1)


def synthetic_spine(tilts_deg, spacing=110.0, width=90.0, height=70.0, x0=400.0, y0=150.0):
    """17 vertebrae as rectangles whose tilt is given (degrees, positive: right end lower), laid
    along a curve that follows the tilts, as a scoliotic spine does. Returns (17, 4, 2)."""
    tilts = np.radians(np.asarray(tilts_deg, dtype=float))
    out = np.zeros((17, 4, 2))
    x, y = x0, y0
    for i, t in enumerate(tilts):
        u = np.array([np.cos(t), np.sin(t)])  # along the endplate
        n = np.array([-np.sin(t), np.cos(t)])  # down the spine
        c = np.array([x, y])
        out[i] = [c - u * width / 2 - n * height / 2, c + u * width / 2 - n * height / 2,
                  c - u * width / 2 + n * height / 2, c + u * width / 2 + n * height / 2]
        x, y = x - spacing * np.sin(t), y + spacing * np.cos(t)
    return out


# T1..L5: a right thoracic curve T1-T5-T11 and a lumbar one T11-L2 bending back
DOUBLE_CURVE_TILTS = [-3, 0, 5, 12, 20, 12, 5, 0, -5, -12, -15, -8, 0, 5, 8, 4, 0]
