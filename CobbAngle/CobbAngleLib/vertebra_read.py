"""Stage 2 of the Cobb cascade: read each vertebra again from the film's own pixels.

    reader = VertebraReader()                        # models/cobb_vertebra.onnx (ONNX Runtime)
    corners, scale = reader.read(film01, stage1)     # (17, 4, 2) film pixels, (17, 2) degrees

For every vertebra stage 1 found, a patch of the film around it (``vertebra_patch``: scaled by the
vertebra's size, aligned to the local spine axis) goes through the second-stage network in one
batched call per film; its corners come back to the film through the same affine, with the
Laplace scale (degrees) of the superior and the inferior endplate's tilt: how sure the network is
of each endplate. ``test_time_flip`` also reads each mirrored patch and averages. Pre- and
post-processing are this module's numpy code for both backends.
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np

from MSKCommonLib.resources import packaged
from MSKCommonLib.runtime import PackagedNetwork, shipped

from .frame import FLIP_CORNERS
from .vertebra_patch import PATCH_HW, extract_patches, patch_frames, standardise, to_film

DEFAULT_WEIGHTS = packaged("CobbAngleLib", "models", "cobb_vertebra.pt")  # the .onnx lies beside it
WEIGHTS_FORMAT = "mskmorph-cobb-vertebra-v1"
OUTPUTS = ("corners", "endplate_scale_deg")
# a vertebra whose endplate stage 2 turns by more than this from stage 1's is kept as stage 1 read
# it: stage 2 reads a vertebra better, it does not find another one (on the validation films its
# rare large departures were misreadings, up to 79 deg on a T1 under the clavicles)
GATE_DEG = 20.0


def read_patches(network: Callable[[np.ndarray], dict], patches01: np.ndarray, test_time_flip: bool):
    """(N, 4, 2) corners in patch pixels and (N, 2) endplate scales (degrees) of (N, H, W) patches in
    [0, 1], one network call."""
    x = standardise(patches01)[:, None]
    n = len(x)
    if test_time_flip:
        x = np.concatenate([x, x[..., ::-1]])
    out = network(np.ascontiguousarray(x, dtype=np.float32))
    corners = np.asarray(out["corners"], dtype=np.float64)
    scale = np.asarray(out["endplate_scale_deg"], dtype=np.float64)
    if test_time_flip:
        mirrored = corners[n:][:, FLIP_CORNERS].copy()
        mirrored[..., 0] = PATCH_HW[1] - 1 - mirrored[..., 0]
        corners = (corners[:n] + mirrored) / 2
        # a mirror keeps which endplate is which; the two readings' disagreement adds to the scale
        scale = (scale[:n] + scale[n:]) / 2
    return corners, scale


class VertebraReader(PackagedNetwork):
    def __init__(self, weights=None, device: str = "auto", threads: Optional[int] = None, backend: str = "onnx"):
        super().__init__(DEFAULT_WEIGHTS if weights is None else weights, WEIGHTS_FORMAT, build_network, OUTPUTS,
                         device, threads, backend, "Cobb vertebra")
        self.test_time_flip = bool(self.config.get("test_time_flip", False))

    def read(self, film01: np.ndarray, stage1: np.ndarray):
        """Stage 2 on a film in [0, 1] (``frame.intensity_window``) at stage 1's corners (17, 4, 2):
        the refined corners (17, 4, 2) in film pixels and the endplate scales (17, 2) in degrees.
        Vertebrae not on the film (NaN rows of ``stage1``, a run at either end) stay NaN."""
        v = np.asarray(stage1, dtype=np.float64)
        shown = np.all(np.isfinite(v), axis=(1, 2))
        refined, scale = np.full_like(v, np.nan), np.full((len(v), 2), np.nan)
        if shown.sum() < 2:
            return v.copy(), scale
        frames = patch_frames(v[shown])
        corners, scale[shown] = read_patches(self.network, extract_patches(film01, frames), self.test_time_flip)
        refined[shown] = on_film(v[shown], frames, corners)
        return refined, scale


def on_film(stage1: np.ndarray, frames: np.ndarray, patch_corners: np.ndarray) -> np.ndarray:
    """Stage 2's corners read in the patches (``frames`` from ``stage1``) as the result takes them:
    back on the film, with stage 1's corners kept where stage 2 turns an endplate too far
    (``gate``) or puts neighbours out of order (``in_order``)."""
    return in_order(stage1, gate(stage1, to_film(frames, patch_corners)))


def in_order(stage1: np.ndarray, refined: np.ndarray) -> np.ndarray:
    """``refined``, except where it puts two neighbouring vertebrae out of order (one read on its
    neighbour) that stage 1 had in order: those two keep stage 1's corners. Stage 1's order is
    what names the vertebrae; stage 2 must not undo it (the geometry would refuse the film)."""
    from .geometry import vertebrae_out_of_order

    out = np.array(refined, dtype=np.float64, copy=True)
    s1 = np.asarray(stage1, dtype=np.float64)
    before = set(vertebrae_out_of_order(s1))
    for _ in range(len(out)):
        wrong = [i for i in vertebrae_out_of_order(out) if i not in before]
        if not wrong:
            break
        for i in wrong:
            out[i:i + 2] = s1[i:i + 2]
    return out


def gate(stage1: np.ndarray, refined: np.ndarray, max_deg: float = GATE_DEG) -> np.ndarray:
    """``refined`` (17, 4, 2), except the vertebrae whose superior or inferior endplate it turns by
    more than ``max_deg`` from ``stage1``'s: those keep stage 1's corners."""
    from .geometry import endplate_vectors, tilt_deg

    out = np.array(refined, dtype=np.float64, copy=True)
    s1 = np.asarray(stage1, dtype=np.float64)
    turned = np.zeros(len(out), dtype=bool)
    for which in ("sup", "inf"):
        d = tilt_deg(endplate_vectors(out, which)) - tilt_deg(endplate_vectors(s1, which))
        turned |= np.abs((d + 180) % 360 - 180) > max_deg
    out[turned] = s1[turned]
    return out


def available(weights=None) -> bool:
    """Whether the second stage's weights are shipped (the .pt and its .onnx)."""
    return shipped(DEFAULT_WEIGHTS if weights is None else weights)


def build_network(config: dict):
    """The torch module for a stage-2 weights file's ``config``."""
    from .vertebra_network import VertebraNet

    return VertebraNet(tuple(config.get("widths", (16, 32, 64, 128))))
