"""``mskmorph cobb``: Cobb angles on spine AP radiographs, headless.

Per image (NAME = the file name without extension) in ``--out``:
  NAME_landmarks.mrk.json   the 68 corners (Slicer markups, LPS), labelled T1 sup-R ... L5 inf-L
  NAME_cobb.json            angles, end vertebrae, apices, convention, landmarks in pixels
  NAME_overlay.png          the radiograph with the vertebrae, the angle lines and the angles
  NAME_vertebrae.seg.nrrd   the network's vertebra segmentation (network path only)
  NAME.mrb                  with --scene: the whole Slicer scene (volume, points, lines, table)
and for the run ``cobb.csv`` (image, PT, MT, TL_L, ...) and ``cobb.json`` (everything, with the
reason for each failed image). Exit status 1 when any image failed.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from MSKCommonLib import batch

from . import geometry
from .landmarks_io import check_landmarks_fit_image, landmarks_for_image, read_aasce_mat

# a colour photo is not a radiograph: mean saturation above this is refused
MAX_COLOURFULNESS = 0.12


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
        default="aasce",
        help="aasce: the AASCE 2019 challenge's computation (default, comparable with published results); "
        "clinical: superior endplate of the upper to inferior endplate of the lower end vertebra",
    )
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"), help="network device")
    parser.add_argument("--weights", type=Path, help="network weights (default: the shipped ones)")
    parser.add_argument("--scene", action="store_true", help="also write a Slicer scene (.mrb) per image")
    parser.add_argument("--no-overlay", action="store_true", help="skip the overlay PNGs")


class _Runner(batch.Runner):
    def make_predictor(self):
        from .predict import CobbPredictor

        return CobbPredictor(weights=self.args.weights, device=self.args.device)

    def process(self, item: batch.Item) -> None:
        from MSKCommonLib import mrml as common
        from MSKCommonLib.image import read_radiograph

        from . import review as mrml
        from .overlay import draw_overlay, write_overlay

        args = self.args
        radiograph = read_radiograph(item.path)
        if getattr(radiograph, "colourfulness", 0.0) > MAX_COLOURFULNESS:
            raise ValueError(
                f"{item.path.name} is a colour picture (mean saturation {radiograph.colourfulness:.2f}), "
                "not a radiograph; Cobb angles need a spine AP radiograph"
            )
        labelmap = regressed = warning = None
        landmark_file = landmarks_for_image(args.landmarks, item.path, self.single)
        if landmark_file is not None:
            landmarks = read_aasce_mat(landmark_file)
            source = f"file {landmark_file.name}"
            check_landmarks_fit_image(landmarks, radiograph.pixels.shape, item.path.name)
        else:
            prediction = self.predictor_for().predict(radiograph.pixels)
            landmarks, labelmap = prediction.landmarks, prediction.vertebra_labelmap
            regressed, warning = prediction.regressed_angles, prediction.consistency_warning
            source = f"network ({prediction.device})"
        result = geometry.cobb_angles(landmarks, args.convention, image_height=radiograph.height)

        stem = batch.output_stem(item.path, self.stems)
        out = args.out
        scene = self.app.scene
        try:
            volume = common.volume_from_radiograph(scene, radiograph, stem)
            nodes = mrml.present(
                scene, volume, landmarks, convention=args.convention, labelmap=labelmap,
                regressed_angles=regressed, warning=warning,
            )
            item.outputs["landmarks"] = common.save_node(nodes.landmarks, out / f"{stem}_landmarks.mrk.json")
            if nodes.segmentation is not None:
                item.outputs["segmentation"] = common.save_node(nodes.segmentation, out / f"{stem}_vertebrae.seg.nrrd")
            if args.scene:
                path = out / f"{stem}.mrb"
                if not scene.WriteToMRB(str(path)):
                    raise OSError(f"could not write {path}")
                item.outputs["scene"] = path
        finally:
            mrml.detach_all()
            scene.Clear(0)

        record = {
            "image": item.path.name,
            "image_size_px": [radiograph.width, radiograph.height],
            "pixel_spacing_mm": radiograph.spacing_mm,
            "landmarks_from": source,
            **result.to_dict(),
            "network_angles_deg": regressed,
            "warning": warning,
            "landmarks_px": {
                geometry.corner_label(v, c): [round(float(x), 3) for x in landmarks[v, c]]
                for v in range(geometry.N_VERTEBRAE)
                for c in range(4)
            },
        }
        path = out / f"{stem}_cobb.json"
        path.write_text(json.dumps(record, indent=2), encoding="utf-8")
        item.outputs["angles"] = path
        if not args.no_overlay:
            rgb = draw_overlay(radiograph.windowed_uint8(), landmarks, result, labelmap=labelmap, warning=warning)
            item.outputs["overlay"] = write_overlay(out / f"{stem}_overlay.png", rgb)

        for c in result.curves:
            item.values[c.name] = c.angle_deg
        item.values["convention"] = result.convention
        for c in result.curves:
            item.values[f"{c.name}_upper"] = c.upper_end_vertebra
            item.values[f"{c.name}_lower"] = c.lower_end_vertebra
            item.values[f"{c.name}_apex"] = c.apex
        item.values["landmarks_from"] = source
        item.values["warning"] = warning


COLUMNS = (
    "PT", "MT", "TL_L", "convention",
    "PT_upper", "PT_lower", "PT_apex", "MT_upper", "MT_lower", "MT_apex", "TL_L_upper", "TL_L_lower", "TL_L_apex",
    "landmarks_from", "warning",
)


def run(args) -> int:
    items = batch.expand_inputs(args.inputs)
    args.out.mkdir(parents=True, exist_ok=True)
    runner = _Runner(args, single=len(items) == 1)
    batch.run_batch(items, runner.process, "Cobb angles")
    summary = batch.write_summary(
        args.out, "cobb", items, COLUMNS,
        {"command": "mskmorph cobb", "convention": args.convention,
         "landmarks": str(args.landmarks) if args.landmarks else "network"},
    )
    for item in items:
        if item.ok:
            angles = ", ".join(
                f"{k} {item.values[k]:.1f}" if item.values[k] is not None else f"{k} -" for k in geometry.CURVE_NAMES
            )
            print(f"{item.path.name}: {angles} deg ({args.convention})" + (f"  CHECK: {item.values['warning']}" if item.values.get("warning") else ""))
        else:
            print(f"{item.path.name}: FAILED: {item.error}")
    print(f"{summary['succeeded']} of {summary['images']} images measured; results in {args.out / 'cobb.csv'}")
    return 0 if summary["failed"] == 0 else 1
