"""``mskmorph back``: back depth, surface, spine midline and surface measures from RGB photos.

Each photo runs through ``SpineMorphologyLib.pipeline`` (the pipeline the Slicer module runs) and
is written by ``SpineMorphologyLib.files`` from the review layer's nodes (see there for the files);
DIR/back.csv + DIR/back.json hold the measures of every photo.

--depth DEPTH_PNG: the user's own measured depth (16-bit PNG, mm, registered to the photo); then
depth is measured, not estimated, and --focal-mm (35 mm equivalent) or --focal-px is required
to turn pixels into millimetres. Photos that are not colour photos of a bare back (a radiograph,
a landscape) are refused with the reason.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from MSKCommonLib import batch
from MSKCommonLib.modules import MODULES

from .files import COLUMNS


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="back photos (PNG/JPEG) or folders of them")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--depth", type=Path, metavar="DEPTH_PNG",
                        help="measured depth for the photo (16-bit PNG, mm), or a folder with NAME_depth.png per photo")
    parser.add_argument("--focal-mm", type=float, help="35 mm equivalent focal length of the camera")
    parser.add_argument("--focal-px", type=float, help="focal length in pixels (instead of --focal-mm)")
    parser.add_argument("--distance-mm", type=float,
                        help="camera to back distance: with the focal length, estimated depth comes out in mm")
    parser.add_argument("--keypoints", type=Path, metavar="PATH",
                        help="use these 9 spine keypoints instead of the network: a JSON with 'keypoints_px' "
                        "(e.g. a NAME_back.json or a phantom NAME_truth.json) or a .mrk.json of 9 points; with "
                        "--depth no network is needed (the back is the measured surface near the keypoints)")
    parser.add_argument("--surface-format", choices=("vtk", "ply"), default="vtk", help="surface file type")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"), help="network device")
    parser.add_argument("--backend", default="onnx", choices=("onnx", "torch"),
                        help="network runtime: onnx (default, ONNX Runtime; the GPU with onnxruntime-gpu) or torch "
                        "(needs the torch extra)")
    parser.add_argument("--framing", default="auto", choices=("auto", "off"),
                        help="auto: find the person with BlazePose (when mediapipe is installed) and give the networks "
                             "the trunk framed as in training; off: the whole photo")
    parser.add_argument("--weights", type=Path, help="network weights (default: the shipped ones)")
    parser.add_argument("--scene", action="store_true", help="also write a Slicer scene (.mrb) per photo")
    parser.add_argument("--no-overlay", action="store_true", help="skip the overlay PNGs")
    batch.add_on_existing_option(parser)
    batch.add_dicom_options(parser)


class _Runner(batch.Runner):
    def options_for(self, item: batch.Item, image):
        args = self.args
        depth_file = depth_for(args.depth, item.path, self.single)
        keypoints = keypoints_for(args.keypoints, item.path, self.single) if args.keypoints else None
        return self.spec.options(
            depth_file=None if depth_file is None else str(depth_file),
            keypoints_file=None if keypoints is None else str(keypoints),
            focal_mm=args.focal_mm, focal_px=args.focal_px, distance_mm=args.distance_mm, framing=args.framing,
            device=args.device, backend=args.backend, weights=None if args.weights is None else str(args.weights))

    def write_options(self) -> dict:
        return {**super().write_options(), "surface_format": self.args.surface_format}


def depth_for(depth_arg, photo_path: Path, single: bool):
    if depth_arg is None:
        return None
    if depth_arg.is_dir():
        candidate = depth_arg / f"{photo_path.stem}_depth.png"
        if not candidate.is_file():
            raise ValueError(f"no depth image {candidate.name} in {depth_arg}")
        return candidate
    if not single:
        raise ValueError("--depth with one file needs exactly one photo; give a folder for several")
    return depth_arg


def keypoints_for(arg: Path, photo_path: Path, single: bool) -> Path:
    """The keypoint file of a photo: ``--keypoints`` itself, or in a folder NAME_truth.json,
    NAME_back.json or NAME_keypoints.mrk.json."""
    if arg.is_dir():
        for name in (f"{photo_path.stem}_truth.json", f"{photo_path.stem}_back.json",
                     f"{photo_path.stem}_keypoints.mrk.json"):
            if (arg / name).is_file():
                return arg / name
        raise ValueError(f"no keypoint file for {photo_path.name} in {arg}")
    if not single:
        raise ValueError("--keypoints with one file needs exactly one photo; give a folder for several")
    return arg


COMPANION_SUFFIXES = ("_depth.png", "_mask.png")  # NAME_depth.png / NAME_mask.png beside NAME.png


def is_companion(path: Path) -> bool:
    """NAME_depth.png / NAME_mask.png beside a photo NAME.png (the RGB-D layout of --depth and of
    ``mskmorph phantom back``): not a photo to measure."""
    name = path.name
    suffix = next((s for s in COMPANION_SUFFIXES if name.lower().endswith(s)), None)
    return suffix is not None and any(
        (path.parent / (name[: -len(suffix)] + ext)).is_file() for ext in (".png", ".jpg", ".jpeg"))


def run(args) -> int:
    folders = {Path(p) for p in args.inputs if Path(p).is_dir()}
    # a folder's companion images are skipped; a file named on the command line is always tried
    items = [i for i in batch.expand_inputs(args.inputs) if not (i.path.parent in folders and is_companion(i.path))]
    args.out.mkdir(parents=True, exist_ok=True)
    runner = _Runner(args, MODULES["back"], single=len(items) == 1)
    batch.run_batch(items, runner.process, "Back photos")
    summary = batch.write_summary(
        args.out, "back", items, COLUMNS,
        {"command": "mskmorph back", "depth": str(args.depth) if args.depth else "network",
         "definitions": "see SpineMorphologyLib/morphology.py; lengths in 'units', angles in degrees"},
    )
    for item in items:
        if item.ok:
            v = item.values
            print(f"{item.path.name}: lateral deviation max {v['lateral_deviation_max']:+.1f} {v['units']}, "
                  f"surface rotation max {v['surface_rotation_max_deg']:+.1f} deg, "
                  f"kyphosis {v['kyphotic_angle_deg']:.0f} deg, lordosis {v['lordotic_angle_deg']:.0f} deg")
        else:
            print(f"{item.path.name}: FAILED: {item.error}")
    print(f"{summary['succeeded']} of {summary['images']} photos measured; results in {args.out / 'back.csv'}")
    return 0 if summary["failed"] == 0 else 1
