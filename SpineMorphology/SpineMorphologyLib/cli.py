"""``mskmorph back``: back depth, surface, spine midline and surface measures from RGB photos.

Per photo (NAME = the file name without extension) in ``--out``:
  NAME_depth.png          16-bit depth: mm along the optical axis when the scale is known (measured
                          depth, or --focal-mm with --distance-mm); otherwise relative depth in
                          1/100 photo pixels, offset so that the nearest back point is 1 (0 = no back)
  NAME_depth.nrrd         the same as a Slicer scalar volume (float, mm or relative px)
  NAME_surface.vtk|.ply   the back surface mesh in RAS (photo colours)
  NAME_keypoints.mrk.json the nine spine keypoints (sacrum ... C1), Slicer markups (LPS)
  NAME_dimples.mrk.json   the lumbar dimples DL, DR
  NAME_midline.mrk.json   the spine midline on the photo;  NAME_midline3d.mrk.json on the surface
  NAME_overlay.png        the photo with back mask, keypoints, midline, dimples and measures
  NAME_back.json          everything above in numbers, with units
and DIR/back.csv + DIR/back.json with the measures of every photo.

--depth DEPTH_PNG: the user's own measured depth (16-bit PNG, mm, registered to the photo); then
depth is measured, not estimated, and --focal-mm (35 mm equivalent) or --focal-px is required
to turn pixels into millimetres. Photos that are not colour photos of a bare back (a radiograph,
a landscape) are refused with the reason.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from MSKCommonLib import batch

from . import morphology

MEASURE_KEYS = tuple(morphology.MEASURE_TITLES)
COLUMNS = ("units", *MEASURE_KEYS, "depth_from", "warnings")


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
    parser.add_argument("--framing", default="auto", choices=("auto", "off"),
                        help="auto: find the person with BlazePose (when mediapipe is installed) and give the networks "
                             "the trunk framed as in training; off: the whole photo")
    parser.add_argument("--weights", type=Path, help="network weights (default: the shipped ones)")
    parser.add_argument("--scene", action="store_true", help="also write a Slicer scene (.mrb) per photo")
    parser.add_argument("--no-overlay", action="store_true", help="skip the overlay PNGs")


def read_photo(path: Path) -> np.ndarray:
    """RGB uint8 from a PNG/JPEG/TIFF (8 or 16 bit, gray or colour)."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError(f"{path.name} could not be read as a picture (PNG, JPEG or TIFF expected)")
    if image.dtype == np.uint16:
        image = (image / 257.0 + 0.5).astype(np.uint8)
    if image.ndim == 2:
        return np.repeat(image[..., None], 3, axis=2)
    if image.shape[2] == 4:
        image = image[..., :3]
    return np.ascontiguousarray(image[..., ::-1])


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


def focal_px_for(args, width: int, height: int):
    from .predict import focal_px_from_35mm

    if args.focal_px:
        return float(args.focal_px)
    if args.focal_mm:
        return focal_px_from_35mm(args.focal_mm, width, height)
    return None


def encode_depth_png(depth: np.ndarray, mask: np.ndarray, units: str) -> np.ndarray:
    if units == "mm":
        return np.where(mask, np.clip(np.round(depth), 0, 65535), 0).astype(np.uint16)
    rel = depth - (depth[mask].min() if mask.any() else 0.0)
    return np.where(mask, np.clip(np.round(rel * 100) + 1, 1, 65535), 0).astype(np.uint16)


def draw_overlay(rgb, result: morphology.BackMorphology, keypoints, mask) -> np.ndarray:
    img = rgb[..., ::-1].copy()
    tint = img.copy()
    tint[mask] = (0.6 * tint[mask] + 0.4 * np.array([255, 160, 60])).astype(np.uint8)
    img = cv2.addWeighted(img, 0.5, tint, 0.5, 0)
    scale = max(1, int(round(max(img.shape[:2]) / 500)))
    line = np.round(result.line_px).astype(np.int32)
    cv2.polylines(img, [line.reshape(-1, 1, 2)], False, (40, 40, 255), 2 * scale, cv2.LINE_AA)
    cv2.line(img, tuple(np.round(result.vp_px).astype(int)), tuple(np.round(result.dm_px).astype(int)),
             (255, 255, 255), scale, cv2.LINE_AA)
    for (x, y), name in zip(np.asarray(keypoints), morphology.KEYPOINT_NAMES):
        cv2.circle(img, (int(round(x)), int(round(y))), 4 * scale, (30, 220, 250), 2, cv2.LINE_AA)
        cv2.putText(img, name, (int(x) + 6 * scale, int(y) + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.35 * scale,
                    (30, 220, 250), 1, cv2.LINE_AA)
    if result.dimples_px is not None:
        for x, y in result.dimples_px:
            cv2.drawMarker(img, (int(round(x)), int(round(y))), (250, 230, 40), cv2.MARKER_CROSS, 10 * scale, 2)
    m = result.measures
    u = m.units
    text = [
        f"trunk length {m.trunk_length:.0f} {u}",
        f"lat. deviation max {m.lateral_deviation_max:+.1f} {u}, rms {m.lateral_deviation_rms:.1f}",
        f"surface rotation max {m.surface_rotation_max_deg:+.1f} deg, rms {m.surface_rotation_rms_deg:.1f}",
        f"kyphosis {m.kyphotic_angle_deg:.0f} deg, lordosis {m.lordotic_angle_deg:.0f} deg",
        "pelvic obliquity " + ("-" if m.pelvic_obliquity_deg is None else f"{m.pelvic_obliquity_deg:+.1f} deg"),
    ]
    for i, t in enumerate(text):
        y = 16 * scale * (i + 1)
        cv2.putText(img, t, (6, y), cv2.FONT_HERSHEY_SIMPLEX, 0.4 * scale, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(img, t, (6, y), cv2.FONT_HERSHEY_SIMPLEX, 0.4 * scale, (255, 255, 255), 1, cv2.LINE_AA)
    return img


def read_keypoints(arg: Path, photo_path: Path, single: bool, rgb) -> np.ndarray:
    """9 keypoints (pixels) from a JSON with 'keypoints_px' or a .mrk.json (folder: per photo)."""
    path = arg
    if arg.is_dir():
        for name in (f"{photo_path.stem}_truth.json", f"{photo_path.stem}_back.json", f"{photo_path.stem}_keypoints.mrk.json"):
            if (arg / name).is_file():
                path = arg / name
                break
        else:
            raise ValueError(f"no keypoint file for {photo_path.name} in {arg}")
    elif not single:
        raise ValueError("--keypoints with one file needs exactly one photo; give a folder for several")
    if path.name.lower().endswith(".mrk.json"):
        from MSKCommonLib import mrml as common
        from MSKCommonLib.headless import make_app

        from . import review as mrml

        app = make_app(set_slicer_globals=False)
        photo = mrml.photo_volume(app.scene, rgb, "photo")
        node = common.read_node(app.scene, "vtkMRMLMarkupsFiducialNode", path)
        points = common.ras_to_pixels(photo, common.control_points(node))
        app.scene.Clear(1)
    else:
        data = json.loads(path.read_text(encoding="utf-8"))
        if "keypoints_px" not in data:
            raise ValueError(f"{path.name} has no 'keypoints_px'")
        points = np.asarray(data["keypoints_px"], float)
    if points.shape != (9, 2):
        raise ValueError(f"{path.name}: 9 keypoints are needed (sacrum ... C1), found {len(points)}")
    return points


def near_the_back(depth: np.ndarray, keypoints) -> np.ndarray:
    """Measured pixels within 250 mm of the depth along the spine (drops the wall behind)."""
    h, w = depth.shape
    kp = np.clip(np.round(np.asarray(keypoints)[[0, 1, 2, 3, 4, 5, 6]]).astype(int), 0, [w - 1, h - 1])
    along = depth[kp[:, 1], kp[:, 0]]
    along = along[along > 0]
    if len(along) == 0:
        raise ValueError("the measured depth has no values along the spine keypoints")
    ref = float(np.median(along))
    return (depth > 0) & (np.abs(depth - ref) < 250.0)


class _Runner(batch.Runner):
    def make_predictor(self):
        from .predict import BackPredictor

        return BackPredictor(weights=self.args.weights, device=self.args.device, framing=self.args.framing)

    def process(self, item: batch.Item) -> None:
        from MSKCommonLib import mrml as common

        from . import review as mrml
        from .predict import read_depth_png, require_colour_photo

        args = self.args
        rgb = read_photo(item.path)
        require_colour_photo(rgb, item.path.name)
        h, w = rgb.shape[:2]
        focal = focal_px_for(args, w, h)
        depth_file = depth_for(args.depth, item.path, self.single)
        if depth_file is not None and focal is None:
            raise ValueError("measured depth (--depth) needs the camera's focal length: --focal-mm or --focal-px")
        given = read_keypoints(args.keypoints, item.path, self.single, rgb) if args.keypoints else None
        if depth_file is not None and given is not None:
            prediction = None  # measured surface, given points: no network
            keypoints, confidences, seconds = given, None, 0.0
        else:
            prediction = self.predictor_for().predict(
                rgb, focal_px=focal, distance_mm=args.distance_mm if depth_file is None else None)
            keypoints = prediction.keypoints_px if given is None else given
            confidences, seconds = prediction.confidences, prediction.seconds
        if depth_file is not None:
            depth = read_depth_png(depth_file)
            if depth.shape != (h, w):
                raise ValueError(f"the depth image {depth_file.name} is {depth.shape[1]} x {depth.shape[0]} px, "
                                 f"the photo {w} x {h}: they must be registered pixel to pixel")
            mask = (depth > 0) if prediction is None else (prediction.mask & (depth > 0))
            if prediction is None:
                mask = near_the_back(depth, keypoints)
            units, depth_from = "mm", f"measured ({depth_file.name})"
        elif prediction.depth_mm is not None:
            depth, units, depth_from = prediction.depth_mm, "mm", f"network ({prediction.device}), scale from the camera"
        else:
            depth, units, depth_from = -prediction.relief_px, "px", f"network ({prediction.device}), relative"
        if prediction is not None:
            mask = mask if depth_file is not None else prediction.mask
        if mask.sum() < 100:
            raise ValueError(f"{item.path.name}: too little of the back has depth to measure")

        stem = batch.output_stem(item.path, self.stems)
        out = args.out
        scene = self.app.scene
        try:
            photo = mrml.photo_volume(scene, rgb, stem, source=str(item.path))
            depth_node = mrml.depth_volume(scene, photo, depth, units, focal, name=f"{stem} depth",
                                           estimated=depth_file is None)
            mask_node = mrml.mask_volume(scene, photo, mask)
            nodes = mrml.present(scene, photo, depth_node, mask_node, keypoints)
            result = nodes.result
            png = out / f"{stem}_depth.png"
            cv2.imwrite(str(png), encode_depth_png(depth, mask, units))
            item.outputs["depth_png"] = png
            item.outputs["depth"] = common.save_node(depth_node, out / f"{stem}_depth.nrrd")
            item.outputs["surface"] = common.save_node(nodes.model, out / f"{stem}_surface.{args.surface_format}")
            item.outputs["keypoints"] = common.save_node(nodes.keypoints, out / f"{stem}_keypoints.mrk.json")
            item.outputs["dimples"] = common.save_node(nodes.dimples, out / f"{stem}_dimples.mrk.json")
            item.outputs["midline"] = common.save_node(nodes.midline, out / f"{stem}_midline.mrk.json")
            item.outputs["midline3d"] = common.save_node(nodes.midline3d, out / f"{stem}_midline3d.mrk.json")
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
            "image_size_px": [w, h],
            "depth_from": depth_from,
            "depth_units": units,
            "focal_px": focal,
            "keypoint_names": list(morphology.KEYPOINT_NAMES),
            "keypoints_from": "network" if given is None else f"file {args.keypoints.name}",
            "keypoints_px": np.round(np.asarray(keypoints), 3).tolist(),
            "keypoint_confidences": None if confidences is None else np.round(confidences, 3).tolist(),
            "network_seconds": round(seconds, 3),
            "network_input": None if prediction is None else prediction.framing,
            "network_crop_px": None if prediction is None or prediction.crop is None else [
                round(v, 1) for v in (prediction.crop.x0, prediction.crop.y0, prediction.crop.width, prediction.crop.height)],
            **result.to_dict(),
        }
        path = out / f"{stem}_back.json"
        path.write_text(json.dumps(record, indent=1), encoding="utf-8")
        item.outputs["json"] = path
        if not args.no_overlay:
            path = out / f"{stem}_overlay.png"
            cv2.imwrite(str(path), draw_overlay(rgb, result, keypoints, mask))
            item.outputs["overlay"] = path
        item.values.update(result.measures.to_dict())
        item.values["depth_from"] = depth_from
        item.values["warnings"] = "; ".join(result.warnings)


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
    runner = _Runner(args, single=len(items) == 1)
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
