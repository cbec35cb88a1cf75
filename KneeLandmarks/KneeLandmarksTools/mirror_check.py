"""A label-free stability check of the knee networks on real crops: each crop and its mirror image.

    python -m KneeLandmarksTools.mirror_check --crops DIR [--weights DIR] [--spacing 0.4] [--every 1]
        [--out FILE.json]

The crops (``<KL grade>/<subject><L|R>.png``, e.g. shared/data/knee-kl224-val) carry no landmarks
and no pixel spacing; ``--spacing`` (default 0.4 mm/pixel) is an ASSUMPTION. Each crop goes
through the full predictor (``KneePredictor.predict``, the pipeline's networks) as a single-knee
film, and so does the crop mirrored left-right. The mirror's landmarks are mirrored back
(x -> W - 1 - x). A mirrored right knee is a left knee, and both predictions are in ANATOMICAL
order (T1/F1 lateral), so landmark i of the crop is compared with landmark i of the mirror:
a network that reads the anatomy, not the image side, gives the same points.

Reported: the median disagreement (mm, at the assumed spacing) per landmark and per KL grade,
the medial / lateral JSW difference between the two readings, and the share of crops where
- the side is implausible: the mirror is not given the opposite side;
- the landmark order is implausible: the tibial or femoral points do not run lateral -> medial
  for the predicted side, or the femur is not above the tibia;
- the JSW is implausible: zero or below (contours touching or crossing), or medial and lateral
  swapped between the crop and its mirror (each compartment closer to the other's width);
- the pipeline would refuse the crop (``KneeLandmarksLib.pipeline.no_knee_reason``).
One torch thread.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from KneeLandmarksLib import landmarks as lm
from KneeLandmarksLib import measure


def crops_in(folder: Path, every: int = 1) -> list[Path]:
    return sorted(folder.glob("*/*.png"))[::max(1, every)]


def best_knee(predictions):
    return max(predictions, key=lambda p: p.presence) if predictions else None


def order_ok(landmarks_px: np.ndarray, side: str) -> bool:
    sign = 1.0 if side == "right" else -1.0  # lateral on the viewer's left for a right knee (PA film)
    t, f = landmarks_px[lm.TIBIA], landmarks_px[lm.FEMUR]
    runs = bool((np.diff(t[:, 0]) * sign > 0).all() and (np.diff(f[:, 0]) * sign > 0).all())
    return runs and float(f[:, 1].mean()) < float(t[:, 1].mean())


def check_crop(predictor, gray: np.ndarray, spacing: float) -> dict:
    from KneeLandmarksLib.pipeline import no_knee_reason

    pixels = gray.astype(np.float32)
    width = pixels.shape[1]
    a = best_knee(predictor.predict(pixels, (spacing, spacing)))
    b = best_knee(predictor.predict(np.ascontiguousarray(pixels[:, ::-1]), (spacing, spacing)))
    pb = b.landmarks_px.copy()
    pb[:, 0] = width - 1 - pb[:, 0]
    side_b = "left" if b.side == "right" else "right"  # the mirror's side, seen on the crop
    ma = measure.joint_space_width(a.landmarks_px, a.side, spacing)
    mb = measure.joint_space_width(pb, side_b, spacing)
    straight = abs(ma.medial_mm - mb.medial_mm) + abs(ma.lateral_mm - mb.lateral_mm)
    crossed = abs(ma.medial_mm - mb.lateral_mm) + abs(ma.lateral_mm - mb.medial_mm)
    return {
        "side": a.side, "mirror_side": b.side,
        "disagreement_mm": np.round(np.linalg.norm(a.landmarks_px - pb, axis=1) * spacing, 3).tolist(),
        "jsw_mm": [round(ma.medial_mm, 3), round(ma.lateral_mm, 3)],
        "mirror_jsw_mm": [round(mb.medial_mm, 3), round(mb.lateral_mm, 3)],
        "mean_point_confidence": round(float(a.point_confidence.mean()), 4),
        "presence": round(float(a.presence), 4),
        "side_implausible": a.side == b.side,
        "order_implausible": not (order_ok(a.landmarks_px, a.side) and order_ok(b.landmarks_px, b.side)),
        "jsw_implausible": bool(min(ma.medial_mm, ma.lateral_mm) <= 0 or crossed < straight),
        "refused": no_knee_reason(a, spacing) is not None,
    }


def summarise(rows: list[dict]) -> dict:
    def block(rs):
        d = np.array([r["disagreement_mm"] for r in rs])
        jsw = np.array([np.abs(np.subtract(r["jsw_mm"], r["mirror_jsw_mm"])) for r in rs])
        share = lambda key: round(100.0 * float(np.mean([r[key] for r in rs])), 1)  # noqa: E731
        return {"n": len(rs), "median_disagreement_mm": round(float(np.median(d)), 3),
                "median_jsw_difference_mm": {"medial": round(float(np.median(jsw[:, 0])), 3),
                                             "lateral": round(float(np.median(jsw[:, 1])), 3)},
                "side_implausible_pct": share("side_implausible"), "order_implausible_pct": share("order_implausible"),
                "jsw_implausible_pct": share("jsw_implausible"), "refused_pct": share("refused"),
                "side_matches_file_name_pct": round(100.0 * float(np.mean([r["side"][0].upper() == r["crop"][-5]
                                                                            for r in rs])), 1),
                "mean_point_confidence_median": round(float(np.median([r["mean_point_confidence"] for r in rs])), 3)}

    d = np.array([r["disagreement_mm"] for r in rows])
    out = {"all": block(rows),
           "per_landmark_median_mm": {lab: round(float(v), 3) for lab, v in zip(lm.LANDMARK_LABELS, np.median(d, 0))},
           "per_kl": {}}
    for g in sorted({r["kl"] for r in rows}):
        out["per_kl"][g] = block([r for r in rows if r["kl"] == g])
    return out


def run(crops: Path, weights=None, spacing: float = 0.4, every: int = 1) -> dict:
    import cv2
    import torch

    from KneeLandmarksLib.predict import KneePredictor

    torch.set_num_threads(1)
    predictor = KneePredictor(weights=weights, device="cpu", threads=1)
    rows = []
    for path in crops_in(Path(crops), every):
        gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        rows.append({"crop": f"{path.parent.name}/{path.name}", "kl": path.parent.name,
                     **check_crop(predictor, gray, spacing)})
    return {"weights": str(weights or "shipped"), "assumed_spacing_mm": spacing, "crops": str(crops),
            "summary": summarise(rows), "rows": rows}


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--crops", required=True, type=Path, help="folder of <KL grade>/<name>.png crops")
    parser.add_argument("--weights", type=Path, help="folder with knee_detector.pt and knee_landmarks.pt")
    parser.add_argument("--spacing", type=float, default=0.4, help="ASSUMED mm per pixel of the crops")
    parser.add_argument("--every", type=int, default=1, help="use every n-th crop (sorted by grade and name)")
    parser.add_argument("--out", type=Path, help="JSON with the summary and every crop's row")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    configure_parser(parser)
    a = parser.parse_args(argv)
    report = run(a.crops, a.weights, a.spacing, a.every)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(report, indent=1))
    print(json.dumps(report["summary"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
