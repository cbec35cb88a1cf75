"""Choosing where the networks run: CUDA GPU, Apple GPU (MPS) or the CPU, and how many CPU threads.

Importing this module does not import PyTorch: the ONNX Runtime path (``MSKCommonLib.runtime``)
uses the same thread rule without it; the torch functions import it when called."""
from __future__ import annotations

from contextlib import contextmanager

PREFERENCES = ("auto", "cpu", "cuda", "mps")


def _mps_available() -> bool:
    import torch

    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def choose_device(preference: str = "auto"):
    """The torch device: auto: CUDA if available, else MPS if available, else CPU. 'cuda' / 'mps'
    that are not available raise ValueError with the reason instead of silently falling back."""
    from .runtime import require_torch

    torch = require_torch("the torch backend")
    pref = (preference or "auto").strip().lower()
    if pref not in PREFERENCES:
        raise ValueError(f"unknown device {preference!r}; choose one of {', '.join(PREFERENCES)}")
    if pref == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if pref == "cuda" and not torch.cuda.is_available():
        build = "this PyTorch build has no CUDA support" if torch.version.cuda is None else "no CUDA GPU is visible"
        raise ValueError(f"device 'cuda' was requested but {build}; use --device cpu or auto")
    if pref == "mps" and not _mps_available():
        raise ValueError("device 'mps' was requested but Apple's Metal (MPS) backend is not available here; "
                         "use --device cpu or auto")
    return torch.device(pref)


THREADS_VARIABLE = "MSKMORPH_THREADS"


def inference_threads() -> int:
    """CPU threads for the networks: ``$MSKMORPH_THREADS``, else every core. The same count in every
    front end on a machine: the count decides the order in which a convolution's floats are summed,
    so the command line, Slicer's worker and the browser review would otherwise differ in the last
    digits."""
    import os

    given = os.environ.get(THREADS_VARIABLE, "").strip()
    return max(1, int(given)) if given.isdigit() else max(1, os.cpu_count() or 1)


@contextmanager
def fixed_threads(count: int | None = None):
    """Run the block with ``count`` (default ``inference_threads()``) torch CPU threads, then
    restore the caller's setting."""
    import torch

    want = int(count or inference_threads())
    before = torch.get_num_threads()
    if before != want:
        torch.set_num_threads(want)
    try:
        yield want
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
