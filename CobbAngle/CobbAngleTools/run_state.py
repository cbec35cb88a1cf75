"""What the Cobb trainings (``train_vertebrae``, ``train_levels``) share about their run folder:
weights files (half precision, with their config), the checkpoint a run resumes from, and the
learning rate (a warm-up of 200 steps, then a cosine over the run's time budget)."""
from __future__ import annotations

import math
from pathlib import Path


def add_run_options(parser, minutes: float, batch_size: int, weights_name: str):
    """The options every Cobb training takes (data, run folder, schedule, resume, split, smoke-test
    limit, widths)."""
    from .data import SPLIT_FILE

    parser.add_argument("--data", required=True, help="AASCE 2019 training folder (images/, labels/)")
    parser.add_argument("--out", required=True,
                        help="run folder (cache, checkpoints, log, weights): keep it outside the work tree")
    parser.add_argument("--max-minutes", type=float, default=minutes,
                        help="wall-time budget of this run's schedule (the cosine learning rate follows its elapsed share)")
    parser.add_argument("--batch-size", type=int, default=batch_size)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch (default 1)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last.ckpt when it is there")
    parser.add_argument("--init-from", default=None,
                        help=f"start from these weights (default: the committed models/{weights_name} when it exists)")
    parser.add_argument("--split", default=str(SPLIT_FILE), help="split JSON (train/validation names)")
    parser.add_argument("--limit", type=int, default=None, help="use only N training/validation films (smoke tests)")
    parser.add_argument("--widths", default="16,32,64,128", help="channels at strides 2, 4, 8, 16")
    return parser


def prepare(args, train_names=None):
    """(run folder, training films, validation films) of a run's ``args`` (``--out``, ``--split``,
    ``--limit``, ``--threads``, ``--seed``), with torch's and OpenCV's threads and torch's seed set;
    ``train_names``: other training films than the split's."""
    import cv2
    import torch

    from .data import read_split

    torch.set_num_threads(max(1, args.threads))
    cv2.setNumThreads(max(1, args.threads))
    torch.manual_seed(args.seed)
    out_dir = Path(args.out).expanduser()
    out_dir.mkdir(parents=True, exist_ok=True)
    split = read_split(Path(args.split))
    train = split["train"] if train_names is None else train_names
    validation = split["validation"]
    if args.limit:
        train, validation = train[:args.limit], validation[:max(2, args.limit // 4)]
    return out_dir, train, validation


def log_epoch(out_dir: Path, line: dict) -> None:
    """One epoch's figures: a line of ``OUT/log.jsonl`` and of the output."""
    import json

    with open(Path(out_dir) / "log.jsonl", "a") as log:
        log.write(json.dumps(line) + "\n")
    print(json.dumps(line), flush=True)


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


def end_epoch(out_dir: Path, ckpt: Path, model, optimizer, state: dict, line: dict, score: float, improved: bool,
              export) -> None:
    """What both trainings do after an epoch's validation: log ``line``; when ``improved``, keep
    ``score`` as the best and ``export()`` the weights; save the checkpoint to resume from."""
    log_epoch(out_dir, line)
    if improved:
        state["best"] = score
        export()
    save_checkpoint(ckpt, model, optimizer, state)


def learning_rate(base: float, step: int, progress: float) -> float:
    """Warm-up over the first 200 steps, then a cosine to 0 as the time budget is spent (``progress`` 0..1)."""
    return base * min(1.0, (step + 1) / 200) * 0.5 * (1 + math.cos(math.pi * progress))
