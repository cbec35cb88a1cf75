"""Vertebrae named by their anatomy: which level each vertebra stage 1 found is.

Stage 1 finds the vertebrae well but names them by counting down from where T1's heatmap fires,
and T1's heatmap learnt where T1 sits on a training film: on a film that shows more neck it fires
on C7 and every name below follows. A radiologist counts from the first rib (on T1), the last
rib (on T12) and the sacrum (below L5). Here:

* the chain of stage 1's vertebra centres is extended by ``EXTEND`` positions above and below
  (extrapolated along the spine, each step as long as the nearest found one);
* around every position a context patch (``CONTEXT_HW``, the vertebra ``CONTEXT_WIDTH_PX`` wide,
  aligned to the spine: it shows the vertebra, two neighbours on each side, the ribs' heads and
  the sacrum's wings) goes through the level network, which gives its evidence over ``LEVELS``
  (above C7, C7, T1..L5, S1, below S1);
* the names follow from one shift of the whole chain (a chain does not skip or repeat a level):
  the shift that maximises the summed log-evidence of every position on the film
  (``choose_shift``); positions off the film give no evidence;
* the vertebrae T1..L5 are the chain's positions at that shift; a level whose position lies off
  the film is not shown (its corners NaN): a film that shows T6-L5 gets T6-L5.

Numpy and OpenCV only (both backends, inference and training).
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np

from MSKCommonLib.resources import packaged
from MSKCommonLib.runtime import PackagedNetwork, shipped

from .geometry import points_on_film as on_film  # noqa: F401  (whether each centre lies on the film)
from .vertebra_patch import extract_patches, frames_at, spine_axes, standardise, vertebra_widths

DEFAULT_WEIGHTS = packaged("CobbAngleLib", "models", "cobb_level.pt")  # the .onnx lies beside it
WEIGHTS_FORMAT = "mskmorph-cobb-level-v1"
OUTPUTS = ("level_logits",)
CONTEXT_HW = (96, 96)  # height x width of a context patch
CONTEXT_WIDTH_PX = 22.0  # a vertebra's endplate width in it
LEVELS = ("above C7", "C7") + tuple(f"T{i}" for i in range(1, 13)) + tuple(f"L{i}" for i in range(1, 6)) + ("S1", "below S1")
T1_CLASS = 2  # LEVELS.index("T1")
N_VERTEBRAE = 17
EXTEND = 6  # positions added above and below stage 1's 17 (the shifts tried: -EXTEND..+EXTEND)
# the share of a vertebra step a position's centre may lie beyond the film's edge and still count
# as shown (a vertebra cut through its middle is on the film)
EDGE_SHARE = 0.0


def level_class(level: np.ndarray) -> np.ndarray:
    """Class index in ``LEVELS`` of vertebra levels counted from T1 = 0 (C7 = -1, S1 = 17)."""
    return np.clip(np.asarray(level) + T1_CLASS, 0, len(LEVELS) - 1)


def extended_chain(centres: np.ndarray, widths: np.ndarray, extend: int = EXTEND):
    """(17 + 2 extend, 2) centres and widths: stage 1's centres with ``extend`` positions
    extrapolated above T1 and below L5 (each step as the mean of the two nearest found steps,
    widths as the nearest found vertebra's)."""
    c = np.asarray(centres, dtype=np.float64)
    w = np.asarray(widths, dtype=np.float64)
    up = (c[0] - c[2]) / 2
    down = (c[-1] - c[-3]) / 2
    above = c[0] + up * np.arange(extend, 0, -1)[:, None]
    below = c[-1] + down * np.arange(1, extend + 1)[:, None]
    return (np.concatenate([above, c, below]),
            np.concatenate([np.full(extend, w[0]), w, np.full(extend, w[-1])]))


def context_frames(centres: np.ndarray, widths: np.ndarray, hw=CONTEXT_HW, width_px: float = CONTEXT_WIDTH_PX):
    """(N, 2, 3) affines film -> context patch (``hw``, the vertebra ``width_px`` wide) at the
    given chain positions."""
    return frames_at(centres, spine_axes(centres), widths, width_px, hw)


def context_of(config: dict):
    """(patch height x width, vertebra width in px) a level network's weights were trained at."""
    return ((int(config.get("patch_height", CONTEXT_HW[0])), int(config.get("patch_width", CONTEXT_HW[1]))),
            float(config.get("vertebra_width_px", CONTEXT_WIDTH_PX)))


def shift_scores(log_evidence: np.ndarray, shown: np.ndarray, extend: int = EXTEND) -> np.ndarray:
    """(2 extend + 1,) summed log-evidence of the shifts -extend..+extend. ``log_evidence`` (N, 21)
    log-probabilities of the N = 17 + 2 extend chain positions, ``shown`` (N,) which to count.
    Shift s names chain position i (0 = stage 1's T1 at index ``extend``) level i + s."""
    n = len(log_evidence)
    pos = np.arange(n) - extend
    out = []
    for s in range(-extend, extend + 1):
        cls = level_class(pos + s)
        out.append(float(log_evidence[np.arange(n), cls][shown].sum()))
    return np.array(out)


def choose_shift(log_evidence: np.ndarray, shown: np.ndarray, extend: int = EXTEND) -> int:
    """The shift of the whole chain with the most evidence (ties: the smallest move)."""
    scores = shift_scores(log_evidence, shown, extend)
    shifts = np.arange(-extend, extend + 1)
    best = scores.max()
    ties = shifts[scores >= best - 1e-9]
    return int(ties[np.argmin(np.abs(ties))])


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def read_levels(network: Callable[[np.ndarray], dict], patches01: np.ndarray) -> np.ndarray:
    """(N, 21) log-probabilities of (N, H, W) context patches in [0, 1] (one network call; the
    mirrored patches are read too and the logits averaged)."""
    x = standardise(patches01)[:, None]
    n = len(x)
    out = network(np.ascontiguousarray(np.concatenate([x, x[..., ::-1]]), dtype=np.float32))
    logits = np.asarray(out["level_logits"], dtype=np.float64)
    return log_softmax((logits[:n] + logits[n:]) / 2)


class Naming:
    """What the level network found on one film: the chosen ``shift``, the positions' centres and
    widths, which are on the film, and their log-evidence; ``vertebra_positions`` (17,) the chain
    position of T1..L5 and ``shown`` (17,) which of them lie on the film."""

    def __init__(self, shift: int, centres: np.ndarray, widths: np.ndarray, on: np.ndarray, log_evidence: np.ndarray,
                 extend: int = EXTEND):
        self.shift, self.centres, self.widths, self.on, self.log_evidence = shift, centres, widths, on, log_evidence
        self.extend = extend
        self.vertebra_positions = np.arange(N_VERTEBRAE) + extend - shift
        self.shift_from_stage1 = shift  # the predictor's, when it found the chain again from T1
        self.shown = on[self.vertebra_positions]

    def renamed(self, per_vertebra: np.ndarray, fill=np.nan) -> np.ndarray:
        """A per-vertebra array of stage 1 (17, ...) in the new names: T1..L5 take the values of the
        stage-1 vertebra at their position, ``fill`` where the position is not one stage 1 found or
        is off the film."""
        a = np.asarray(per_vertebra)
        out = np.full(a.shape, fill, dtype=np.result_type(a.dtype, np.asarray(fill).dtype))
        for k, p in enumerate(self.vertebra_positions):
            i = p - self.extend
            if 0 <= i < N_VERTEBRAE and self.on[p]:
                out[k] = a[i]
        return out

    def level_probability(self) -> np.ndarray:
        """(17,) the level network's probability that each named vertebra is that level."""
        cls = level_class(np.arange(N_VERTEBRAE))
        return np.exp(self.log_evidence[self.vertebra_positions, cls])


class LevelReader(PackagedNetwork):
    def __init__(self, weights=None, device: str = "auto", threads: Optional[int] = None, backend: str = "onnx"):
        super().__init__(DEFAULT_WEIGHTS if weights is None else weights, WEIGHTS_FORMAT, build_network, OUTPUTS,
                         device, threads, backend, "Cobb level")

    def name(self, film01: np.ndarray, stage1: np.ndarray) -> Naming:
        """The names of stage 1's vertebrae (17, 4, 2) on a film in [0, 1]."""
        return name_chain(self.network, film01, stage1, EXTEND, *context_of(self.config))


def name_chain(network, film01: np.ndarray, stage1: np.ndarray, extend: int = EXTEND, hw=CONTEXT_HW,
               width_px: float = CONTEXT_WIDTH_PX) -> Naming:
    v = np.asarray(stage1, dtype=np.float64).reshape(N_VERTEBRAE, 4, 2)
    centres, widths = extended_chain(v.mean(axis=1), vertebra_widths(v), extend)
    on = on_film(centres, np.shape(film01))
    # only the positions on the film are read (the others give no evidence: uniform)
    log_evidence = np.full((len(centres), len(LEVELS)), -np.log(len(LEVELS)))
    if on.any():
        patches = extract_patches(film01, context_frames(centres, widths, hw, width_px)[on], hw)
        log_evidence[on] = read_levels(network, patches)
    return Naming(choose_shift(log_evidence, on, extend), centres, widths, on, log_evidence, extend)


def renamed_corners(stage1: np.ndarray, naming: Naming) -> np.ndarray:
    """(17, 4, 2) corners of T1..L5 at the chosen shift: stage 1's own corners where the position is
    one stage 1 found, the nearest found vertebra's corners moved to the extrapolated centre where it
    is not (stage 2 then reads them), NaN where the position lies off the film."""
    v = np.asarray(stage1, dtype=np.float64).reshape(N_VERTEBRAE, 4, 2)
    out = np.full_like(v, np.nan)
    for k, p in enumerate(naming.vertebra_positions):
        if not naming.on[p]:
            continue
        i = p - naming.extend  # index into stage 1's vertebrae
        if 0 <= i < N_VERTEBRAE:
            out[k] = v[i]
        else:
            nearest = int(np.clip(i, 0, N_VERTEBRAE - 1))
            out[k] = v[nearest] - v[nearest].mean(axis=0) + naming.centres[p]
    return out


def renamed_labels(labels: np.ndarray, naming: Naming) -> np.ndarray:
    """A label map of stage 1 (0 background, 1..17 = stage 1's T1..L5) in the new names (0 where the
    stage-1 vertebra is not one of the new T1..L5)."""
    lut = np.zeros(N_VERTEBRAE + 1, dtype=np.uint8)
    for k, p in enumerate(naming.vertebra_positions):
        i = p - naming.extend
        if 0 <= i < N_VERTEBRAE and naming.on[p]:
            lut[i + 1] = k + 1
    return lut[np.asarray(labels)]


def available(weights=None) -> bool:
    """Whether the level network's weights are shipped (the .pt or its .onnx)."""
    return shipped(DEFAULT_WEIGHTS if weights is None else weights)


def build_network(config: dict):
    """The torch module for a level network weights file's ``config``."""
    from .level_network import LevelNet

    return LevelNet(tuple(config.get("widths", (16, 32, 64, 128))), context_of(config)[0])
