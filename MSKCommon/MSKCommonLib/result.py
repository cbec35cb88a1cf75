"""What every pipeline result shares, and how results travel between processes.

``ImageInfo`` is the part of a result that says what was measured: the image's name, size, pixel
spacing and where the spacing came from. ``dump`` / ``load`` write a result (any of the modules'
result dataclasses, with numpy arrays inside) to a JSON file plus an ``.npz`` of its arrays and
read it back: how the worker process hands its result to Slicer or the browser review. ``load``
rebuilds only dataclasses of this project's packages and never unpickles anything.
"""
from __future__ import annotations

import dataclasses
import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

PACKAGES = ("MSKCommonLib", "CobbAngleLib", "KneeLandmarksLib", "SpineMorphologyLib")


@dataclass
class ImageInfo:
    """The measured image: name, size in pixels, spacing (row, column mm) and its source."""

    name: str
    width: int
    height: int
    spacing_mm: Optional[tuple] = None
    spacing_source: str = ""
    normalisation: str = ""

    @classmethod
    def of(cls, image, spacing_mm=None, spacing_source: Optional[str] = None) -> "ImageInfo":
        """From an ``MSKCommonLib.image.Image``; ``spacing_mm`` overrides the image's own (a spacing
        the user gave)."""
        spacing = image.spacing_mm if spacing_mm is None else spacing_mm
        source = image.spacing_source if spacing_source is None else spacing_source
        return cls(image.name, image.width, image.height, None if spacing is None else tuple(float(s) for s in spacing),
                   source if spacing is not None else "", image.normalisation)

    def to_record(self) -> dict:
        return {"image": self.name, "image_size_px": [self.width, self.height],
                "pixel_spacing_mm": None if self.spacing_mm is None else list(self.spacing_mm),
                "pixel_spacing_from": self.spacing_source or None}


# --------------------------------------------------------------------------------------------
# results between processes

def dump(obj, path) -> Path:
    """Write ``obj`` (dataclasses, dicts, lists, tuples, numpy arrays, plain values) to
    ``path`` (JSON) and ``path.npz`` (its arrays)."""
    path = Path(path)
    arrays: dict = {}

    def enc(x):
        if dataclasses.is_dataclass(x) and not isinstance(x, type):
            return {"__dataclass__": f"{type(x).__module__}:{type(x).__qualname__}",
                    "fields": {f.name: enc(getattr(x, f.name)) for f in dataclasses.fields(x)}}
        if isinstance(x, np.ndarray):
            key = f"a{len(arrays)}"
            arrays[key] = x
            return {"__array__": key}
        if isinstance(x, np.generic):
            return x.item()
        if isinstance(x, dict):
            return {"__dict__": [[enc(k), enc(v)] for k, v in x.items()]}
        if isinstance(x, tuple):
            return {"__tuple__": [enc(v) for v in x]}
        if isinstance(x, list):
            return [enc(v) for v in x]
        if isinstance(x, Path):
            return str(x)
        if x is None or isinstance(x, (bool, int, float, str)):
            return x
        raise TypeError(f"cannot write a {type(x).__name__} into a result file")

    content = enc(obj)
    np.savez(str(path) + ".npz", **arrays)
    path.write_text(json.dumps(content), encoding="utf-8")
    return path


def load(path):
    """Read what ``dump`` wrote."""
    path = Path(path)
    content = json.loads(path.read_text(encoding="utf-8"))
    with np.load(str(path) + ".npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}

    def dec(x):
        if isinstance(x, list):
            return [dec(v) for v in x]
        if not isinstance(x, dict):
            return x
        if "__array__" in x:
            return arrays[x["__array__"]]
        if "__tuple__" in x:
            return tuple(dec(v) for v in x["__tuple__"])
        if "__dict__" in x:
            return {dec(k): dec(v) for k, v in x["__dict__"]}
        if "__dataclass__" in x:
            module_name, _, qualname = x["__dataclass__"].partition(":")
            if module_name.split(".")[0] not in PACKAGES:
                raise ValueError(f"refusing to build {x['__dataclass__']} from a result file")
            cls = importlib.import_module(module_name)
            for part in qualname.split("."):
                cls = getattr(cls, part)
            if not dataclasses.is_dataclass(cls):
                raise ValueError(f"{x['__dataclass__']} is not a result type")
            obj = object.__new__(cls)
            for name, value in x["fields"].items():
                object.__setattr__(obj, name, dec(value))
            return obj
        return {k: dec(v) for k, v in x.items()}

    return dec(content)
