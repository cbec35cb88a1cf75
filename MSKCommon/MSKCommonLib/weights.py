"""Loading trained weights safely: tensors and plain values only, never pickled code.

PyTorch is imported when a .pt is loaded (the torch backend, training, export), not on import:
``WeightsError`` serves the ONNX path too."""
from __future__ import annotations

import pickle
from pathlib import Path


class WeightsError(ValueError):
    """A weights file that is corrupt, not a weights file, or holds more than plain data."""


def load_state(path, map_location="cpu"):
    """``torch.load(path, weights_only=True)`` with clear messages.

    Missing file -> FileNotFoundError naming the path; a file that is truncated, not a torch
    file, or that carries executable pickled objects (anything beyond tensors, numbers, strings,
    lists and dicts) -> WeightsError, and nothing from it is executed."""
    from .runtime import require_torch

    torch = require_torch("loading .pt weights")
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(
            f"weights file not found: {p}. Train a model (mskmorph train ...) or put the released "
            f"weights file at this path."
        )
    try:
        return torch.load(str(p), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise WeightsError(
            f"refused to load {p}: it is not a plain weights file (it holds objects other than tensors and "
            f"plain values, which could run code). Details: {str(exc).splitlines()[0] if str(exc) else exc!r}"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, AttributeError, KeyError) as exc:
        raise WeightsError(f"could not read weights file {p} (corrupt or not a PyTorch file): {exc}") from None
