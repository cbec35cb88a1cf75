"""``mskmorph cobb``: Cobb angles on spine AP radiographs, headless.

Each image runs through ``CobbAngleLib.pipeline`` (the pipeline the Slicer module runs) and is
written by ``CobbAngleLib.files`` from the review layer's nodes (see there for the files). For the
run: ``cobb.csv`` (image, PT, MT, TL_L, ...) and ``cobb.json`` (everything, with the reason for each
failed image). Exit status 1 when any image failed.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from MSKCommonLib import batch
from MSKCommonLib.modules import MODULES

from . import geometry
from .files import COLUMNS
from .landmarks_io import landmarks_for_image
from .pipeline import NAMED_WITH_LANDMARKS


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="radiograph files or folders of them")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder (created)")
    parser.add_argument(
        "--landmarks",
        type=Path,
        metavar="PATH",
        help="use these corner landmarks instead of the network: an AASCE .mat file (p2, 68x2 pixels) "
        "for one image, or a folder holding <image file name>.mat for each image",
    )
    parser.add_argument(
        "--convention",
        choices=geometry.CONVENTIONS,
        default="clinical",
        help="clinical (default, as in Slicer): superior endplate of the upper to inferior endplate of the lower end "
        "vertebra, curves named by their apex; aasce: the AASCE 2019 challenge's computation (comparable with "
        "published results; its PT column holds the largest curve)",
    )
    parser.add_argument(
        "--named", action="append", default=[], type=named_vertebra, metavar="NAME:X,Y",
        help="the reader's name for the vertebra at film pixel X,Y (e.g. T1:412,380); the network counts the "
        "vertebrae from it instead of from where it finds T1. Repeat for more (T1 and T12 name them best); one image only",
    )
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"), help="network device")
    parser.add_argument("--backend", default="onnx", choices=("onnx", "torch"),
                        help="network runtime: onnx (default, ONNX Runtime; the GPU with onnxruntime-gpu) or torch "
                        "(needs the torch extra)")
    parser.add_argument("--weights", type=Path, help="network weights (default: the shipped ones)")
    parser.add_argument("--scene", action="store_true", help="also write a Slicer scene (.mrb) per image")
    parser.add_argument("--no-overlay", action="store_true", help="skip the overlay PNGs")
    batch.add_on_existing_option(parser)
    batch.add_dicom_options(parser)


def named_vertebra(text: str) -> tuple:
    """'T1:412,380' -> ('T1', 412.0, 380.0)."""
    try:
        name, xy = text.split(":")
        x, y = (float(v) for v in xy.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected NAME:X,Y (e.g. T1:412,380), got {text!r}") from None
    return name.strip().upper(), x, y


class _Runner(batch.Runner):
    def options_for(self, item: batch.Item, image):
        args = self.args
        landmark_file = landmarks_for_image(args.landmarks, item.path, self.single)
        return self.spec.options(convention=args.convention, device=args.device, backend=args.backend,
                                 weights=None if args.weights is None else str(args.weights),
                                 landmarks_file=None if landmark_file is None else str(landmark_file),
                                 named_vertebrae=tuple(args.named))


def run(args) -> int:
    items = batch.expand_inputs(args.inputs)
    if args.named and len(items) != 1:
        raise SystemExit(f"mskmorph cobb: --named points at one film; got {len(items)} images")
    if args.named and args.landmarks:
        raise SystemExit(f"mskmorph cobb: --named with --landmarks: {NAMED_WITH_LANDMARKS}")
    args.out.mkdir(parents=True, exist_ok=True)
    runner = _Runner(args, MODULES["cobb"], single=len(items) == 1)
    batch.run_batch(items, runner.process, "Cobb angles")
    summary = batch.write_summary(
        args.out, "cobb", items, COLUMNS,
        {"command": "mskmorph cobb", "convention": args.convention,
         "landmarks": str(args.landmarks) if args.landmarks else "network"},
    )
    for item in items:
        if item.ok:
            angles = ", ".join(
                (f"{k} {item.values[k]:.1f} deg" if item.values[k] is not None else f"{k} {item.values[k + '_status']}")
                + (f" ({item.values[k + '_check']})" if item.values.get(k + "_check") else "")
                for k in geometry.CURVE_NAMES
            )
            print(f"{item.path.name}: {angles} ({args.convention})" + (f"  CHECK: {item.values['warning']}" if item.values.get("warning") else ""))
        else:
            print(f"{item.path.name}: FAILED: {item.error}")
    notes = {item.record.get("check_note") for item in items if item.ok and getattr(item, "record", None)} - {None, ""}
    for note in sorted(notes):
        print(f"note: {note}")
    print(f"{summary['succeeded']} of {summary['images']} images measured; results in {args.out / 'cobb.csv'}")
    return 0 if summary["failed"] == 0 else 1
