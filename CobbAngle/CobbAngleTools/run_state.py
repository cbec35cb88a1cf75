"""What the Cobb trainings (``train_vertebrae``, ``train_levels``) share about their run folder:
weights files (half precision, with their config), the checkpoint a run resumes from, and the
learning rate (a warm-up of 200 steps, then a cosine over the run's time budget)."""
from __future__ import annotations

import math
from pathlib import Path


def save_weights(model, path: Path, config: dict) -> None:
    """``model``'s state in half precision and its ``config`` (the format inference checks)."""
    import torch

    torch.save({"state_dict": {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()},
                "config": config}, path)


def load_weights(path: Path, build):
    """The model ``build(config)`` of a weights file, in float32, with ``model.config``."""
    import torch

    saved = torch.load(path, map_location="cpu", weights_only=True)
    model = build(dict(saved["config"]))
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in saved["state_dict"].items()})
    model.config = dict(saved["config"])
    return model


def resume(ckpt: Path, model, optimizer):
    """The run state saved in ``ckpt`` (model and optimizer restored from it), or None when absent."""
    import torch

    if not Path(ckpt).exists():
        return None
    saved = torch.load(ckpt, map_location="cpu", weights_only=False)
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    return saved["state"]


def save_checkpoint(ckpt: Path, model, optimizer, state: dict) -> None:
    """Model, optimizer and run state, written whole or not at all."""
    import torch

    tmp = Path(str(ckpt) + ".tmp")
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "state": state}, str(tmp))
    tmp.replace(ckpt)


def learning_rate(base: float, step: int, progress: float) -> float:
    """Warm-up over the first 200 steps, then a cosine to 0 as the time budget is spent (``progress`` 0..1)."""
    return base * min(1.0, (step + 1) / 200) * 0.5 * (1 + math.cos(math.pi * progress))
