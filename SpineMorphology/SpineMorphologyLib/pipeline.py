"""SpineMorphology's pipeline: a colour photo of the bare back in, a ``BackResult`` out; the one
path every front end runs (``mskmorph back``, the Slicer module through its worker process, the
browser review).

    result = BackPipeline().run(image, BackOptions(focal_mm=26, distance_mm=1500))

The network (GAMA-Net) estimates the back's relief and mask and the nine spine keypoints; with
the camera scale (focal length and distance) the relief becomes depth in mm, otherwise the depth
is relative (photo pixels) and lengths come out in pixels. A measured depth (``depth_file``, an
RGB-D camera's 16-bit PNG in mm) replaces the estimate; with given keypoints as well
(``keypoints_file``) no network runs. The surface measures are made here, once, by
``morphology``. No Slicer, no files written.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from MSKCommonLib.result import ImageInfo

from . import morphology

MIN_BACK_PIXELS = 100


@dataclass
class BackOptions:
    depth_file: Optional[str] = None  # measured depth registered to the photo (16-bit PNG, mm)
    keypoints_file: Optional[str] = None  # 9 keypoints instead of the network (JSON or .mrk.json)
    focal_mm: Optional[float] = None  # 35 mm equivalent focal length
    focal_px: Optional[float] = None  # focal length in pixels (instead of focal_mm)
    distance_mm: Optional[float] = None  # camera to back: with the focal length, depth in mm
    framing: str = "auto"  # auto: frame the trunk with BlazePose when installed; off: the whole photo
    device: str = "auto"
    backend: str = "onnx"  # or "torch" (development; needs the torch extra)
    weights: Optional[str] = None


@dataclass
class BackResult:
    image: ImageInfo
    depth: np.ndarray  # H x W float32: mm along the optical axis, or relative depth in photo pixels
    depth_units: str  # "mm" or "px"
    depth_from: str
    depth_estimated: bool  # the network's estimate (True) or a measured depth
    mask: np.ndarray  # H x W bool, the back
    focal_px: Optional[float]
    keypoints_px: np.ndarray  # (9, 2), morphology.KEYPOINT_NAMES order
    keypoint_confidences: Optional[np.ndarray]
    keypoints_from: str
    measurement: morphology.BackMorphology
    network_seconds: float = 0.0
    framing: Optional[str] = None
    crop_px: Optional[list] = None
    principal_point_px: Optional[tuple] = None  # (cx, cy); None: the photo's centre

    @property
    def camera(self) -> dict:
        cx, cy = self.principal_point_px or ((self.image.width - 1) / 2, (self.image.height - 1) / 2)
        return {"focal_px": self.focal_px, "cx": float(cx), "cy": float(cy)}

    def surface(self) -> morphology.Surface:
        cam = self.camera
        return morphology.surface_for(self.depth, self.mask, self.depth_units, cam["focal_px"], cam["cx"], cam["cy"],
                                      self.depth_estimated)

    def to_record(self) -> dict:
        """The JSON record (``NAME_back.json``)."""
        return {
            **self.image.to_record(),
            "depth_from": self.depth_from,
            "depth_units": self.depth_units,
            "focal_px": self.focal_px,
            "keypoint_names": list(morphology.KEYPOINT_NAMES),
            "keypoints_from": self.keypoints_from,
            "keypoints_px": np.round(np.asarray(self.keypoints_px), 3).tolist(),
            "keypoint_confidences": None if self.keypoint_confidences is None else np.round(
                self.keypoint_confidences, 3).tolist(),
            "network_input": self.framing,
            "network_crop_px": self.crop_px,
            **self.measurement.to_dict(),
        }


def read_depth_png(path: Path) -> np.ndarray:
    """A 16-bit depth PNG in millimetres (0 = no measurement) -> float32 mm (read by SimpleITK,
    which Slicer bundles, so this runs in Slicer's own process too)."""
    import SimpleITK as sitk

    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError:
        raise OSError(f"could not read the depth image {path}") from None
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError(f"{Path(path).name} has {image.GetNumberOfComponentsPerPixel()} channels; a depth image is "
                         "one 16-bit channel in mm")
    if image.GetPixelID() != sitk.sitkUInt16:
        raise ValueError(f"{Path(path).name} is {image.GetPixelIDTypeAsString()}; a depth image is a 16-bit PNG in "
                         "millimetres")
    return sitk.GetArrayFromImage(image).astype(np.float32)


def focal_px_from_35mm(focal_35mm: float, width: int, height: int) -> float:
    """Focal length in pixels from the 35 mm equivalent focal length (36 mm along the long side)."""
    return float(focal_35mm) * max(width, height) / 36.0


def photo_rgb(image) -> np.ndarray:
    """The photo's colour pixels; a grayscale picture is refused (a radiograph is not a back photo)."""
    from .photo import require_colour_photo

    rgb = image.rgb if image.rgb is not None else np.repeat(
        np.clip(image.pixels / max(float(image.pixels.max()), 1e-6) * 255, 0, 255).astype(np.uint8)[..., None], 3, axis=2)
    require_colour_photo(rgb, image.name)
    return rgb


def read_keypoints(path: Path) -> np.ndarray:
    """9 keypoints in photo pixels from a JSON with ``keypoints_px`` (a NAME_back.json, a phantom
    NAME_truth.json) or a Slicer ``.mrk.json`` of 9 points on the photo as Slicer and mskmorph lay
    it out (1 mm per pixel: LPS x, y = pixel x, y)."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if "markups" in data:
        markup = data["markups"][0]
        ras = markup.get("coordinateSystem", "LPS") == "RAS"
        points = np.array([p["position"][:2] for p in markup.get("controlPoints", [])], float)
        points = -points if ras and len(points) else points
    elif "keypoints_px" in data:
        points = np.asarray(data["keypoints_px"], float)
    else:
        raise ValueError(f"{Path(path).name} has no 'keypoints_px' and is not a Slicer markups file")
    if points.shape != (9, 2):
        raise ValueError(f"{Path(path).name}: 9 keypoints are needed (sacrum ... C1), found {len(points)}")
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


def measure(surface: morphology.Surface, keypoints_px, dimples_px=None, repair: bool = False):
    """The measurement of a surface from its keypoints, in the back's own frame (a turned camera
    is not a turned trunk, ``morphology.measure_back_in_its_frame``): ``(measurement, keypoints)``. With
    ``repair`` (the network's keypoints) keypoints out of order are put back in order
    (``morphology.repair_keypoints``) with a warning instead of refusing the photo."""
    warnings = []
    if repair:
        keypoints_px, warnings = morphology.repair_keypoints(keypoints_px, surface.mask)
    measurement = morphology.measure_back_in_its_frame(surface, keypoints_px, dimples_px)
    measurement.warnings = warnings + list(measurement.warnings)
    return measurement, np.asarray(keypoints_px, float)


def result_from_surface(image, depth, units: str, mask, keypoints_px, focal_px: Optional[float] = None,
                        principal_point_px=None, estimated: bool = False, depth_from: str = "given",
                        keypoints_from: str = "given", dimples_px=None, repair: bool = False) -> BackResult:
    """A result measured here from a given depth (mm with the focal length, or relative "px"),
    back mask and keypoints, e.g. a phantom's exact surface or an RGB-D capture. ``repair``: the
    keypoints are a network's, put back in order when they do not run down the back."""
    h, w = np.asarray(depth).shape
    cx, cy = principal_point_px or ((w - 1) / 2, (h - 1) / 2)
    depth = np.asarray(depth, np.float32)
    surface = morphology.surface_for(depth, mask, units, focal_px, cx, cy, estimated)
    measurement, keypoints_px = measure(surface, keypoints_px, dimples_px, repair)
    return BackResult(ImageInfo.of(image), depth, units, depth_from, estimated, np.asarray(mask, bool), focal_px,
                      keypoints_px, None, keypoints_from, measurement,
                      principal_point_px=None if principal_point_px is None else tuple(principal_point_px))


class BackPipeline:
    def __init__(self):
        self._predictors: dict = {}

    def predictor(self, device: str = "auto", weights=None, framing: str = "auto", backend: str = "onnx"):
        key = (device, str(weights or ""), framing, backend)
        if key not in self._predictors:
            from .predict import BackPredictor

            self._predictors[key] = BackPredictor(weights=weights, device=device, framing=framing, backend=backend)
        return self._predictors[key]

    def run(self, image, options: Optional[BackOptions] = None, progress: Optional[Callable] = None,
            should_cancel: Optional[Callable[[], bool]] = None) -> BackResult:
        options = options or BackOptions()
        for name in ("focal_mm", "focal_px", "distance_mm"):
            value = getattr(options, name)
            if value is not None and not (np.isfinite(value) and value > 0):
                raise ValueError(f"{name.replace('_', ' ')} must be a positive number, not {value}")
        rgb = photo_rgb(image)
        h, w = rgb.shape[:2]
        focal = float(options.focal_px) if options.focal_px else (
            focal_px_from_35mm(options.focal_mm, w, h) if options.focal_mm else None)
        depth_file = Path(options.depth_file) if options.depth_file else None
        if depth_file is not None and focal is None:
            raise ValueError("measured depth needs the camera's focal length (35 mm equivalent, or in pixels)")
        given = read_keypoints(Path(options.keypoints_file)) if options.keypoints_file else None
        if progress is not None:
            progress(0.1, "Reading the back")
        prediction = None
        if depth_file is None or given is None:  # measured surface with given points needs no network
            prediction = self.predictor(options.device, options.weights, options.framing, options.backend).predict(
                rgb, focal_px=focal, distance_mm=options.distance_mm if depth_file is None else None)
        keypoints = given if given is not None else prediction.keypoints_px
        # the depth and the back mask: measured, the network's in mm, or the network's relative depth
        if depth_file is not None:
            depth = read_depth_png(depth_file)
            if depth.shape != (h, w):
                raise ValueError(f"the depth image {depth_file.name} is {depth.shape[1]} x {depth.shape[0]} px, "
                                 f"the photo {w} x {h}: they must be registered pixel to pixel")
            mask = near_the_back(depth, keypoints) if prediction is None else (prediction.mask & (depth > 0))
            units, depth_from, estimated = "mm", f"measured ({depth_file.name})", False
        elif prediction.depth_mm is not None:
            depth, mask, units, estimated = prediction.depth_mm, prediction.mask, "mm", True
            depth_from = f"network ({prediction.device}), scale from the camera"
        else:
            depth, mask, units, estimated = -prediction.relief_px, prediction.mask, "px", True
            depth_from = f"network ({prediction.device}), relative"
        if mask.sum() < MIN_BACK_PIXELS:
            raise ValueError(f"{image.name}: too little of the back has depth to measure")
        if progress is not None:
            progress(0.8, "Measuring the back surface")
        depth = np.asarray(depth, np.float32)
        surface = morphology.surface_for(depth, mask, units, focal, (w - 1) / 2, (h - 1) / 2, estimated)
        measurement, keypoints = measure(surface, keypoints, repair=given is None)
        crop = None if prediction is None or prediction.crop is None else [
            round(v, 1) for v in (prediction.crop.x0, prediction.crop.y0, prediction.crop.width, prediction.crop.height)]
        return BackResult(
            ImageInfo.of(image), depth, units, depth_from, estimated, np.asarray(mask, bool), focal,
            np.asarray(keypoints, float), None if prediction is None or given is not None else prediction.confidences,
            "network" if given is None else f"file {Path(options.keypoints_file).name}", measurement,
            0.0 if prediction is None else round(prediction.seconds, 3), None if prediction is None else prediction.framing,
            crop)
