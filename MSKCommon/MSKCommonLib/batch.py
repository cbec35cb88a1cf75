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
    record: dict = field(default_factory=dict)
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
    """One run of a module's command over its inputs: read each file (``read_image``), run the
    module's pipeline, show the result in a headless Slicer scene through the review layer (the
    same nodes as in Slicer) and write the files from those nodes and the result's record.

    A module's command gives its ``ModuleSpec`` and ``options_for(item, image)``. ``on_existing``
    (``--on-existing``): what to do when the output folder holds an earlier result of the same
    image whose points were moved by hand (in Slicer, or by Accept in the browser review): "ask"
    refuses that image with the reason and writes nothing, "keep" writes the new result beside it
    (NAME_2...), "replace" overwrites it."""

    def __init__(self, args, spec, single: bool = False):
        from MSKCommonLib.headless import make_app
        from MSKCommonLib.review import Review

        self.args = args
        self.spec = spec
        self.app = make_app()
        self.stems: set = set()
        self.single = single  # one input: a file given for "each image" may be for just this one
        self.pipeline = spec.pipeline()
        self.review = Review(spec.presenter())
        self.files = spec.files()
        self.on_existing = getattr(args, "on_existing", "ask")

    def options_for(self, item: Item, image):
        raise NotImplementedError

    def write_options(self) -> dict:
        return {"overlay": not getattr(self.args, "no_overlay", False), "scene": getattr(self.args, "scene", False)}

    def dicom_request(self, item: Item, image):
        """With ``--dicom``: what the module's ``write_outputs`` needs to write the DICOM SR (and
        SEG) of this image (``MSKCommonLib.dicom_export``); else None."""
        if not getattr(self.args, "dicom", False):
            return None
        from MSKCommonLib.dicom_export import DicomOptions, DicomRequest, check_source

        check_source(item.path)
        options = DicomOptions(patient_name=self.args.patient_name or "", patient_id=self.args.patient_id or "",
                               study_instance_uid=self.args.study_uid or "", editor=self.args.editor or "")
        return DicomRequest(item.path, image, options)

    def process(self, item: Item) -> None:
        from MSKCommonLib.image import read_image
        from MSKCommonLib.mrml import volume_from_image

        image = read_image(item.path)
        options = self.options_for(item, image)
        request = self.dicom_request(item, image)  # checked before anything is written
        scene = self.app.scene
        try:
            stem = self._stem(item, image)
            result = self.pipeline.run(image, options)
            volume = volume_from_image(scene, image, stem, colour=self.spec.colour)
            live = self.review.show(scene, volume, result, on_existing="replace")
            options = self.write_options()
            if request is not None:
                options["dicom"] = request
            item.outputs.update(self.files.write_outputs(live, self.args.out, stem, **options))
            record = live.record()
            item.values.update(self.files.csv_values(record))
            item.record = record
        finally:
            self.review.detach_all()
            scene.Clear(0)

    def _stem(self, item: Item, image) -> str:
        """The output name for an image, after checking the output folder for an edited result."""
        import json

        from MSKCommonLib.mrml import volume_from_image
        from MSKCommonLib.review import edited_files

        base = output_stem(item.path, self.stems)
        out = Path(self.args.out)
        for n in range(1, 10_000):
            stem = base if n == 1 else f"{base}_{n}"
            if n > 1 and stem in self.stems:
                continue
            record_file = out / self.files.RECORD_FILE.format(stem=stem)
            if not record_file.is_file() or self.on_existing == "replace" or not self._edited(item, image, stem, out):
                self.stems.add(stem)
                return stem
            if self.on_existing == "ask":
                names = ", ".join(p.name for p in self._edited(item, image, stem, out))
                raise ValueError(
                    f"{out} holds an earlier result of {item.path.name} with points moved by hand ({names}); "
                    "nothing was written. Run again with --on-existing keep (the new result is written beside it) "
                    "or --on-existing replace")
        raise ValueError(f"no free output name for {item.path.name} in {out}")

    def _edited(self, item: Item, image, stem: str, out: Path) -> list:
        import json

        from MSKCommonLib.mrml import volume_from_image
        from MSKCommonLib.review import edited_files

        record = json.loads((out / self.files.RECORD_FILE.format(stem=stem)).read_text(encoding="utf-8"))
        volume = volume_from_image(self.app.scene, image, "previous", colour=self.spec.colour)
        try:
            paths = {role: out / name.format(stem=stem) for role, name in self.files.POINT_FILES.items()}
            return edited_files(self.app.scene, volume, record, paths)
        finally:
            self.app.scene.RemoveNode(volume)


def add_on_existing_option(parser) -> None:
    parser.add_argument("--on-existing", choices=("ask", "keep", "replace"), default="ask",
                        help="when --out already holds this image's result with points moved by hand: ask (default: "
                             "refuse that image, write nothing), keep (write the new result beside it) or replace")


def add_dicom_options(parser) -> None:
    """``--dicom`` and what it needs for a film that is not DICOM (see ``MSKCommonLib.dicom_export``)."""
    group = parser.add_argument_group("DICOM output")
    group.add_argument("--dicom", action="store_true",
                       help="also write NAME_sr.dcm (DICOM SR, TID 1500) and, where the module segments, NAME_seg.dcm, "
                            "referring to the input film; a film that is not DICOM is first written as a DICOM "
                            "Secondary Capture NAME_sc.dcm (new UIDs) that they refer to")
    group.add_argument("--patient-name", metavar="NAME", help="patient name of that Secondary Capture (default empty)")
    group.add_argument("--patient-id", metavar="ID", help="patient ID of that Secondary Capture (default empty)")
    group.add_argument("--study-uid", metavar="UID", help="Study Instance UID of that Secondary Capture (default new)")
    group.add_argument("--reviewer", "--editor", dest="editor", metavar="NAME",
                       help="who reviews (--editor is the older name): named in the SR when the result has points "
                            "moved by hand")
