"""Find the person in a back photo and frame the trunk the way the networks were trained.

The depth and keypoint networks were trained on photos framed like ``phantom.sample_camera``
frames them: portrait (width/height 0.67..0.92), the trunk (C7 to the lumbar dimples) 40..60 % of the image height, the
camera aimed at the middle of the trunk. Real photos come at any distance, aspect ratio and
off-centre. When a pose model finds the person's shoulders and hips, ``trunk_crop`` returns the
region of the photo that has the training framing; ``BackPredictor`` runs the networks inside it
and maps the results back to the whole photo.

The pose model is Google's BlazePose (mediapipe ``solutions.pose``, full model, weights inside the
wheel, no download). It is optional: without mediapipe, or when it finds no plausible person, the
whole photo goes to the networks as before. Install it beside the project with
``pip install --no-deps mediapipe==0.10.21 && pip install absl-py attrs flatbuffers "protobuf>=4.25.3,<5"``
(what ``.ci/setup`` does; ``--no-deps`` because its metadata asks for numpy < 2, which it does
not need for the pose solution).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

# BlazePose landmark indices (the 33-point topology)
LEFT_SHOULDER, RIGHT_SHOULDER, LEFT_HIP, RIGHT_HIP = 11, 12, 23, 24

# framing of the training photos (phantom.sample_camera)
TRUNK_FRACTION = 0.5  # trunk length / image height, middle of the 0.4..0.6 range
CENTRE_BELOW_C7 = 0.53  # image centre below C7, in trunk lengths (0.45..0.62)
# BlazePose's shoulder and hip joints against C7 and the dimples, in trunk lengths (C7 to the
# dimple midpoint). Calibrated on 30 rendered anny bodies (anny_phantom, seed 777; BlazePose found
# 25): shoulders median 0.146 below C7 (quartiles 0.131..0.156), hips 0.103 below the dimples
# (0.076..0.143). The dimples' level on anny's skeleton is itself an estimate (anny_phantom).
SHOULDER_BELOW_C7 = 0.15
HIP_BELOW_DIMPLES = 0.10
MIN_VISIBILITY = 0.5
MIN_SHOULDER_WIDTH_RATIO = 0.4  # shoulder width / shoulder-to-hip height below this: not a plausible back
# photos already framed within the training range (with a small margin) are used whole
TRUNK_FRACTION_RANGE = (0.36, 0.64)
CENTRE_BELOW_C7_RANGE = (0.40, 0.67)
ASPECT_RANGE = (128 / 192, 176 / 192)  # width / height of the training photos (data.make_sample)


@dataclass
class Trunk:
    """Shoulder and hip joint centres in photo pixels (x right, y down)."""

    left_shoulder: np.ndarray
    right_shoulder: np.ndarray
    left_hip: np.ndarray
    right_hip: np.ndarray
    visibility: float = 1.0
    source: str = "given"

    @property
    def shoulder_mid(self) -> np.ndarray:
        return (np.asarray(self.left_shoulder, float) + np.asarray(self.right_shoulder, float)) / 2

    @property
    def hip_mid(self) -> np.ndarray:
        return (np.asarray(self.left_hip, float) + np.asarray(self.right_hip, float)) / 2

    def plausible(self) -> bool:
        """Upright back: hips below the shoulders, shoulders wide for the trunk height."""
        height = float(self.hip_mid[1] - self.shoulder_mid[1])
        width = float(np.linalg.norm(np.asarray(self.left_shoulder, float) - np.asarray(self.right_shoulder, float)))
        return (self.visibility >= MIN_VISIBILITY and height > 0
                and width >= MIN_SHOULDER_WIDTH_RATIO * height)


@dataclass
class Crop:
    """An axis-aligned region of the photo in pixels (may reach outside it), aspect of the network."""

    x0: float
    y0: float
    width: float
    height: float

    def to_network(self, points: np.ndarray, net_w: int, net_h: int) -> np.ndarray:
        p = np.asarray(points, float)
        return np.column_stack([(p[:, 0] - self.x0) * net_w / self.width, (p[:, 1] - self.y0) * net_h / self.height])

    def to_photo(self, points: np.ndarray, net_w: int, net_h: int) -> np.ndarray:
        p = np.asarray(points, float)
        return np.column_stack([self.x0 + p[:, 0] * self.width / net_w, self.y0 + p[:, 1] * self.height / net_h])


def trunk_crop(trunk: Trunk, photo_hw: tuple[int, int], net_hw: tuple[int, int]) -> Optional[Crop]:
    """The photo region framed like the training photos, or None when the whole photo already is
    (portrait, width/height 0.67..0.92, trunk 36..64 % of the height, centred on the trunk as in
    training). The crop has the network's aspect ratio (the middle of the training range)."""
    h, w = photo_hw
    net_h, net_w = net_hw
    top, bottom = trunk.shoulder_mid, trunk.hip_mid
    # shoulder joints -> hips spans (1 - SHOULDER_BELOW_C7 + HIP_BELOW_DIMPLES) trunk lengths
    trunk_len = float(bottom[1] - top[1]) / (1.0 - SHOULDER_BELOW_C7 + HIP_BELOW_DIMPLES)
    c7_y = float(top[1]) - SHOULDER_BELOW_C7 * trunk_len
    crop_h = trunk_len / TRUNK_FRACTION
    crop_w = crop_h * net_w / net_h
    cx = float(top[0] + bottom[0]) / 2
    cy = c7_y + CENTRE_BELOW_C7 * trunk_len
    crop = Crop(cx - crop_w / 2, cy - crop_h / 2, crop_w, crop_h)
    framed = (ASPECT_RANGE[0] <= w / h <= ASPECT_RANGE[1]
              and TRUNK_FRACTION_RANGE[0] <= trunk_len / h <= TRUNK_FRACTION_RANGE[1]
              and CENTRE_BELOW_C7_RANGE[0] <= (h / 2 - c7_y) / trunk_len <= CENTRE_BELOW_C7_RANGE[1]
              and abs(cx - w / 2) <= 0.1 * trunk_len + 0.05 * w)
    return None if framed else crop


def cut(rgb: np.ndarray, crop: Crop, net_hw: tuple[int, int]) -> np.ndarray:
    """The crop resampled to the network size (area filtering; outside the photo: edge pixels)."""
    import cv2

    from MSKCommonLib.resample import warp_affine_area

    net_h, net_w = net_hw
    sx, sy = net_w / crop.width, net_h / crop.height
    m = np.array([[sx, 0, -crop.x0 * sx], [0, sy, -crop.y0 * sy]], dtype=np.float64)  # photo -> network
    return warp_affine_area(rgb, m, (net_w, net_h), shrink_below=0.7, border_mode=cv2.BORDER_REPLICATE)


def paste(values: np.ndarray, crop: Crop, photo_hw: tuple[int, int], fill: float = 0.0) -> np.ndarray:
    """A network-frame map (net_h x net_w) back on the photo grid; ``fill`` outside the crop."""
    import cv2

    net_h, net_w = values.shape[:2]
    sx, sy = net_w / crop.width, net_h / crop.height
    m = np.array([[sx, 0, -crop.x0 * sx], [0, sy, -crop.y0 * sy]], dtype=np.float64)  # photo -> network
    return cv2.warpAffine(values.astype(np.float32), m, (photo_hw[1], photo_hw[0]),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=float(fill))


def pose_model_available() -> bool:
    try:
        import mediapipe  # noqa: F401
    except Exception:  # not installed, or its native parts fail to load
        return False
    return True


class PersonFinder:
    """BlazePose (mediapipe) on a photo -> ``Trunk`` or None. Needs mediapipe (optional)."""

    def __init__(self, min_detection_confidence: float = 0.5):
        import mediapipe as mp

        self._pose = mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1,
                                            min_detection_confidence=min_detection_confidence)

    def find(self, rgb: np.ndarray) -> Optional[Trunk]:
        h, w = rgb.shape[:2]
        result = self._pose.process(np.ascontiguousarray(rgb[..., :3]).astype(np.uint8))
        if result.pose_landmarks is None:
            return None
        lm = result.pose_landmarks.landmark

        def px(i):
            return np.array([lm[i].x * w, lm[i].y * h])

        ids = (LEFT_SHOULDER, RIGHT_SHOULDER, LEFT_HIP, RIGHT_HIP)
        trunk = Trunk(px(LEFT_SHOULDER), px(RIGHT_SHOULDER), px(LEFT_HIP), px(RIGHT_HIP),
                      visibility=float(min(lm[i].visibility for i in ids)), source="BlazePose")
        return trunk if trunk.plausible() else None

    def close(self) -> None:
        self._pose.close()
