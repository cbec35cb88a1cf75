"""A contact sheet of predictions on real knee crops (no ground truth: a visual check).

    python -m KneeLandmarksTools.contact_sheet --crops ../shared/data/knee-kl224-val \
        --out KneeLandmarks/Resources/contact_sheet_real_crops.png [--spacing 0.4] [--n 40]

The crops (Chen 2018, OAI) are 224 x 224 pixels without pixel spacing; the joint's width suggests
about 0.35-0.45 mm/pixel, so ``--spacing`` (default 0.4) is an ASSUMPTION, printed on the sheet.
Each crop goes through the full two-stage predictor as a single-knee film. Tiles are chosen
deterministically (the same number per KL grade) and shown whatever the result, failures included.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from KneeLandmarksLib import measure

TILE = 224


def choose_crops(folder: Path, n: int, seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    grades = sorted(p for p in folder.iterdir() if p.is_dir())
    per = int(np.ceil(n / max(1, len(grades))))
    chosen = []
    for g in grades:
        files = sorted(g.glob("*.png"))
        chosen += [files[i] for i in sorted(rng.choice(len(files), min(per, len(files)), replace=False))]
    return chosen[:n]


def tile(gray: np.ndarray, knees, name: str, kl: str) -> np.ndarray:
    img = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    for k in knees:
        tib, fem = measure.contours(k.landmarks_px)
        cv2.polylines(img, [np.round(tib * 16).astype(np.int32)], False, (255, 200, 50), 1, cv2.LINE_AA, shift=4)
        cv2.polylines(img, [np.round(fem * 16).astype(np.int32)], False, (50, 115, 255), 1, cv2.LINE_AA, shift=4)
        for p in k.landmarks_px:
            cv2.circle(img, tuple(np.round(p).astype(int)), 2, (30, 215, 255), -1, cv2.LINE_AA)
    text = [f"{name} KL{kl}"]
    text += [f"{k.side[0].upper()} conf {k.confidence:.2f}" for k in knees] or ["no knee"]
    for i, t in enumerate(text):
        cv2.putText(img, t, (3, 13 + 13 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(img, t, (3, 13 + 13 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (255, 255, 255), 1, cv2.LINE_AA)
    return img


def main(argv=None) -> int:
    import torch

    from KneeLandmarksLib.predict import KneePredictor

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--crops", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--spacing", type=float, default=0.4, help="ASSUMED mm per pixel of the crops")
    p.add_argument("--n", type=int, default=40)
    p.add_argument("--columns", type=int, default=8)
    p.add_argument("--weights", type=Path)
    p.add_argument("--scale", type=float, default=0.75, help="scale of the written sheet (file size)")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    predictor = KneePredictor(weights=a.weights, device="cpu")
    tiles, records = [], []
    for path in choose_crops(a.crops, a.n):
        gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        knees = predictor.predict(gray.astype(np.float32), (a.spacing, a.spacing))
        tiles.append(tile(gray, knees, path.stem, path.parent.name))
        records.append({"crop": f"{path.parent.name}/{path.name}", "file_side": path.stem[-1],
                        "knees": [{"side": k.side, "confidence": round(k.confidence, 3),
                                   **{f"jsw_{c}_mm_if_{a.spacing}mm_px": round(getattr(
                                       measure.joint_space_width(k.landmarks_px, k.side, a.spacing), f"{c}_mm"), 2)
                                      for c in ("medial", "lateral")}} for k in knees]})
    while len(tiles) % a.columns:
        tiles.append(np.zeros((TILE, TILE, 3), np.uint8))
    rows = [np.hstack(tiles[i:i + a.columns]) for i in range(0, len(tiles), a.columns)]
    sheet = np.vstack(rows)
    header = np.zeros((46, sheet.shape[1], 3), np.uint8)
    lines = [f"KneeLandmarks on {len(records)} real OAI crops (Chen 2018, KL grades 0-4), no ground truth; "
             f"pixel spacing ASSUMED {a.spacing} mm (crops carry none).",
             "Network trained on synthetic films only. Blue: tibial contour, orange: femoral contour. "
             "Failures are shown as they are."]
    for i, t in enumerate(lines):
        cv2.putText(header, t, (8, 18 + 20 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1, cv2.LINE_AA)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    sheet = np.vstack([header, sheet])
    if a.scale != 1.0:
        sheet = cv2.resize(sheet, None, fx=a.scale, fy=a.scale, interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(a.out), sheet, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    a.out.with_suffix(".json").write_text(json.dumps({"assumed_spacing_mm": a.spacing, "crops": records}, indent=1))
    print(f"{len(records)} crops -> {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
