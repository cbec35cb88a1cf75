"""``mskmorph knee``: KNEEL landmarks and minimum joint space width on knee radiographs, headless.

    mskmorph knee INPUT... --out DIR [--spacing MM] [--device auto|cpu|cuda|mps] [--weights DIR]

Each image runs through ``KneeLandmarksLib.pipeline`` (the pipeline the Slicer module runs) and is
written by ``KneeLandmarksLib.files`` from the review layer's nodes (see there for the files). For
the run: ``knee.csv`` (one row per knee: image, side, T1..F7 x/y in pixels and in mm, medial and
lateral JSW in mm, confidence) and ``knee_images.csv`` / ``knee_images.json`` (one row per image,
with the reason for each failed image). A film without pixel spacing (PNG, JPEG, most TIFFs) needs
``--spacing``; without it the image is refused. Exit status 1 when any image failed.
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

from MSKCommonLib import batch
from MSKCommonLib.modules import MODULES

from .measure import format_mm
from .files import COLUMNS, KNEE_COLUMNS, knee_rows


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="knee radiographs or folders of them")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder (created)")
    parser.add_argument("--spacing", type=float, metavar="MM",
                        help="pixel spacing in mm for films that do not state one (PNG/JPEG); a DICOM's own "
                             "PixelSpacing is always used when present")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    parser.add_argument("--backend", default="onnx", choices=("onnx", "torch"),
                        help="network runtime: onnx (default, ONNX Runtime; the GPU with onnxruntime-gpu) or torch "
                        "(needs the torch extra)")
    parser.add_argument("--weights", type=Path, metavar="DIR",
                        help="folder with knee_detector.pt and knee_landmarks.pt (default: the shipped ones)")
    parser.add_argument("--no-overlay", action="store_true")
    parser.add_argument("--scene", action="store_true", help="also write a Slicer scene (.mrb) per image")
    batch.add_on_existing_option(parser)
    batch.add_dicom_options(parser)


class _Runner(batch.Runner):
    def options_for(self, item: batch.Item, image):
        args = self.args
        return self.spec.options(spacing_mm=args.spacing, device=args.device, backend=args.backend,
                                 weights=None if args.weights is None else str(args.weights))


def run(args) -> int:
    items = batch.expand_inputs(args.inputs)
    args.out.mkdir(parents=True, exist_ok=True)
    runner = _Runner(args, MODULES["knee"], single=len(items) == 1)
    batch.run_batch(items, runner.process, "Knee landmarks")
    with open(args.out / "knee.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=KNEE_COLUMNS)
        writer.writeheader()
        for item in items:
            for row in knee_rows(item.record) if item.ok else []:
                writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    summary = batch.write_summary(args.out, "knee_images", items, COLUMNS,
                                  {"command": "mskmorph knee", "spacing_option_mm": args.spacing})
    for item in items:
        if item.ok:
            parts = [f"{s} knee JSW medial {format_mm(item.values[f'{s}_jsw_medial_mm'])}, lateral "
                     f"{format_mm(item.values[f'{s}_jsw_lateral_mm'])}" for s in item.values["knees"].split(",") if s]
            print(f"{item.path.name}: " + ("; ".join(parts) or "no knee found"))
        else:
            print(f"{item.path.name}: FAILED: {item.error}")
    print(f"{summary['succeeded']} of {summary['images']} images measured; results in {args.out / 'knee.csv'}")
    return 0 if summary["failed"] == 0 else 1
