"""Command-line plumbing shared by the modules: which files to run, a progress bar, one failure
per image without stopping the batch, and the CSV/JSON summary."""
from __future__ import annotations

import csv
import json
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".dcm", ".dicom", ".nrrd", ".nhdr", ".nii", ".nii.gz")
NOT_IMAGES = (".mat", ".json", ".csv", ".tsv", ".txt", ".md", ".mrk.json", ".mrb", ".seg.nrrd")


@dataclass
class Item:
    """One input image and what became of it."""

    path: Path
    error: Optional[str] = None
    values: dict = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


def _is_dicom(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def _looks_like_image(path: Path) -> bool:
    name = path.name.lower()
    if name.startswith(".") or name.endswith(NOT_IMAGES):
        return False
    if name.endswith(IMAGE_SUFFIXES):
        return True
    return path.suffix == "" and _is_dicom(path)


def expand_inputs(inputs: Iterable) -> list[Item]:
    """Files as given (any name: the reader says what is wrong with a bad one) and the image files
    directly inside each folder, sorted. A missing path becomes an item that failed."""
    items: list[Item] = []
    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and _looks_like_image(p))
            if not found:
                items.append(Item(path, error=f"no image files in folder {path}"))
            items.extend(Item(p) for p in found)
        elif path.exists():
            items.append(Item(path))
        else:
            items.append(Item(path, error=f"file not found: {path}"))
    return items


def output_stem(path: Path, taken: set) -> str:
    """The image's name without its extension(s), made unique within one run."""
    name = path.name
    for suffix in sorted(IMAGE_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    stem, n = name, 2
    while stem in taken:
        stem, n = f"{name}_{n}", n + 1
    taken.add(stem)
    return stem


def run_batch(items: Sequence[Item], process: Callable[[Item], None], description: str) -> list[Item]:
    """Call ``process(item)`` for each item not failed already, with a progress bar on stderr when
    there is more than one. An exception fails that item only; its message is kept."""
    from tqdm import tqdm

    bar = tqdm(items, desc=description, unit="image", disable=len(items) < 2, file=sys.stderr)
    for item in bar:
        if item.error is not None:
            continue
        start = time.perf_counter()
        try:
            process(item)
        except (ValueError, OSError, RuntimeError) as e:  # the expected failures carry user-facing messages
            item.error = str(e) or type(e).__name__
        except Exception as e:  # a bug: keep going, but say what it was
            item.error = f"internal error ({type(e).__name__}: {e})"
            traceback.print_exc(file=sys.stderr)
        item.seconds = time.perf_counter() - start
        if item.error:
            bar.write(f"FAILED {item.path.name}: {item.error}", file=sys.stderr)
    return list(items)


def write_summary(out_dir: Path, name: str, items: Sequence[Item], columns: Sequence[str], extra: dict) -> dict:
    """``DIR/<name>.csv`` (one row per image, the given value columns, then status and error) and
    ``DIR/<name>.json`` (the same plus outputs and run details). Returns the JSON content."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / f"{name}.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["image", *columns, "status", "error"])
        for item in items:
            values = [_csv_value(item.values.get(c)) for c in columns]
            writer.writerow([item.path.name, *values, "ok" if item.ok else "failed", item.error or ""])
    summary = {
        **extra,
        "images": len(items),
        "succeeded": sum(i.ok for i in items),
        "failed": sum(not i.ok for i in items),
        "results": [
            {
                "image": i.path.name,
                "path": str(i.path),
                "status": "ok" if i.ok else "failed",
                "error": i.error,
                "seconds": round(i.seconds, 3),
                "values": i.values,
                "outputs": {k: str(v) for k, v in i.outputs.items()},
            }
            for i in items
        ],
    }
    (out_dir / f"{name}.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return summary


def _csv_value(v):
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4f}"
    return v


class Runner:
    """One run of a module's command: a headless Slicer scene (results are written through the
    module's MRML layer with Slicer's own storage nodes), the network made on first use (a run on
    landmark files never loads it), unique output names. Subclasses give ``make_predictor`` and
    ``process(item)``."""

    def __init__(self, args, single: bool = False):
        from MSKCommonLib.headless import make_app

        self.args = args
        self.app = make_app()
        self.stems: set = set()
        self.single = single  # one input: a file given for "each image" may be for just this one
        self._predictor = None

    def make_predictor(self):
        raise NotImplementedError

    def predictor_for(self):
        if self._predictor is None:
            self._predictor = self.make_predictor()
        return self._predictor
