"""``mskmorph knee``: KNEEL landmarks and minimum joint space width on knee radiographs, headless.

    mskmorph knee INPUT... --out DIR [--spacing MM] [--device auto|cpu|cuda|mps] [--weights DIR]

Per image (NAME = the file name without extension) in ``--out``:
  NAME_right_knee.mrk.json / NAME_left_knee.mrk.json
                      the 16 landmarks of each knee found (Slicer markups, LPS), labelled T1..T9, F1..F7
  NAME_knee.json      per knee: side, landmarks in pixels and mm, medial/lateral minimum JSW (mm) with
                      the closest points, confidence, notes
  NAME_overlay.png    the film with landmarks, contours, JSW lines and values
and for the run ``knee.csv`` (one row per knee: image, side, T1..F7 x/y in pixels and in mm, medial and
lateral JSW in mm, confidence) and ``knee_images.csv`` / ``knee_images.json`` (one row per image,
with the reason for each failed image). A film without pixel spacing (PNG, JPEG, most TIFFs) needs
``--spacing``; without it the image is refused. Exit status 1 when any image failed.
"""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from MSKCommonLib import batch

from . import measure
from . import landmarks as sm

MAX_COLOURFULNESS = 0.12


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="knee radiographs or folders of them")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder (created)")
    parser.add_argument("--spacing", type=float, metavar="MM",
                        help="pixel spacing in mm for films that do not state one (PNG/JPEG); a DICOM's own "
                             "PixelSpacing is always used when present")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    parser.add_argument("--weights", type=Path, metavar="DIR",
                        help="folder with knee_detector.pt and knee_landmarks.pt (default: the shipped ones)")
    parser.add_argument("--no-overlay", action="store_true")


class _Runner(batch.Runner):
    def __init__(self, args):
        super().__init__(args)
        self.rows: list = []

    def make_predictor(self):
        from .predict import KneePredictor

        return KneePredictor(weights=self.args.weights, device=self.args.device)

    def process(self, item: batch.Item) -> None:
        from MSKCommonLib import mrml as common
        from MSKCommonLib.image import read_radiograph

        from . import review as mrml
        from .overlay import draw_overlay, write_overlay

        args = self.args
        radiograph = read_radiograph(item.path)
        if radiograph.colourfulness > MAX_COLOURFULNESS:
            raise ValueError(f"{item.path.name} is a colour picture (mean saturation {radiograph.colourfulness:.2f}), "
                             "not a radiograph")
        spacing, spacing_from = radiograph.spacing_mm, radiograph.spacing_source or "file"
        if spacing is None:
            if args.spacing is None:
                raise ValueError(
                    f"{item.path.name} does not state its pixel spacing (PNG/JPEG files do not carry it); "
                    "joint space width needs millimetres: give --spacing MM (e.g. --spacing 0.2), or use the DICOM")
            if not args.spacing > 0:
                raise ValueError(f"--spacing must be a positive number of mm, not {args.spacing}")
            spacing, spacing_from = (args.spacing, args.spacing), "--spacing"
            radiograph.spacing_mm = spacing
        predictions = self.predictor_for().predict(radiograph.pixels, spacing)
        measurements = [measure.joint_space_width(p.landmarks_px, p.side, spacing, confidence=p.confidence)
                        for p in predictions]

        stem = batch.output_stem(item.path, self.stems)
        out = args.out
        scene = self.app.scene
        try:
            volume = common.volume_from_radiograph(scene, radiograph, stem)
            nodes = mrml.present(scene, volume, predictions, source=f"network ({self.predictor_for().device})")
            for n in nodes:
                item.outputs[f"{n.side}_landmarks"] = common.save_node(n.landmarks, out / f"{stem}_{n.side}_knee.mrk.json")
        finally:
            mrml.detach_all()
            scene.Clear(0)

        record = {"image": item.path.name, "image_size_px": [radiograph.width, radiograph.height],
                  "pixel_spacing_mm": list(spacing), "pixel_spacing_from": spacing_from,
                  "jsw_definition": "minimum distance between the femoral and tibial contours: lateral T1-T3 vs "
                                    "F1-F3, medial T7-T9 vs F5-F7 (see KneeLandmarksLib.measure)",
                  "knees": [m.to_dict() for m in measurements]}
        path = out / f"{stem}_knee.json"
        path.write_text(json.dumps(record, indent=2), encoding="utf-8")
        item.outputs["measurements"] = path
        if not args.no_overlay:
            rgb = draw_overlay(radiograph.windowed_uint8(), measurements, title=item.path.name)
            item.outputs["overlay"] = write_overlay(out / f"{stem}_overlay.png", rgb)
        item.values["knees"] = ",".join(m.side for m in measurements)
        for m in measurements:
            item.values[f"{m.side}_jsw_medial_mm"] = m.medial_mm
            item.values[f"{m.side}_jsw_lateral_mm"] = m.lateral_mm
            row = {"image": item.path.name, "side": m.side}
            for lab, p in zip(sm.LANDMARK_LABELS, m.landmarks_px):
                row[f"{lab}_x_px"], row[f"{lab}_y_px"] = round(float(p[0]), 3), round(float(p[1]), 3)
            for lab, p in zip(sm.LANDMARK_LABELS, m.landmarks_px):
                row[f"{lab}_x_mm"] = round(float(p[0] * spacing[1]), 3)
                row[f"{lab}_y_mm"] = round(float(p[1] * spacing[0]), 3)
            row["jsw_medial_mm"], row["jsw_lateral_mm"] = round(m.medial_mm, 4), round(m.lateral_mm, 4)
            row["confidence"] = None if m.confidence is None else round(m.confidence, 4)
            row["pixel_spacing_mm"] = spacing[1]
            row["notes"] = "; ".join(m.notes)
            self.rows.append(row)


CSV_COLUMNS = (["image", "side"] + [f"{lab}_{a}_px" for lab in sm.LANDMARK_LABELS for a in "xy"]
               + [f"{lab}_{a}_mm" for lab in sm.LANDMARK_LABELS for a in "xy"]
               + ["jsw_medial_mm", "jsw_lateral_mm", "confidence", "pixel_spacing_mm", "notes"])
IMAGE_COLUMNS = ("knees", "right_jsw_medial_mm", "right_jsw_lateral_mm", "left_jsw_medial_mm", "left_jsw_lateral_mm")


def run(args) -> int:
    items = batch.expand_inputs(args.inputs)
    args.out.mkdir(parents=True, exist_ok=True)
    runner = _Runner(args)
    batch.run_batch(items, runner.process, "Knee landmarks")
    with open(args.out / "knee.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for row in runner.rows:
            writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    summary = batch.write_summary(args.out, "knee_images", items, IMAGE_COLUMNS,
                                  {"command": "mskmorph knee", "spacing_option_mm": args.spacing})
    for item in items:
        if item.ok:
            parts = [f"{s} knee JSW medial {item.values[f'{s}_jsw_medial_mm']:.2f} mm, lateral "
                     f"{item.values[f'{s}_jsw_lateral_mm']:.2f} mm" for s in item.values["knees"].split(",") if s]
            print(f"{item.path.name}: " + ("; ".join(parts) or "no knee found"))
        else:
            print(f"{item.path.name}: FAILED: {item.error}")
    print(f"{summary['succeeded']} of {summary['images']} images measured; results in {args.out / 'knee.csv'}")
    return 0 if summary["failed"] == 0 else 1
