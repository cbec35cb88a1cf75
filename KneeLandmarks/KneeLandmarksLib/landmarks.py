"""The 16 KNEEL knee landmarks: names, order and the region-of-interest grid they are given in.

KNEEL order (Tiulpin et al., "KNEEL: Knee Anatomical Landmark Localization Using Hourglass
Networks", ICCV Workshops 2019):

    T1..T9  tibial plateau, from the lateral margin (T1) over the lateral plateau, the lateral
            tibial spine (T4), the centre between the spines (T5), the medial spine (T6) and the
            medial plateau to the medial margin (T9)
    F1..F7  femoral condyles, from the lateral margin (F1) over the lateral condyle, the top of
            the intercondylar notch (F4) and the medial condyle to the medial margin (F7)

KNEEL's region of interest: 140 mm around T5 sampled at 0.3 mm/pixel, left knees mirrored so
every knee looks like a right knee on a PA film. No torch, no Slicer.
"""
from __future__ import annotations

N_TIBIA, N_FEMUR = 9, 7
N_LANDMARKS = N_TIBIA + N_FEMUR
LANDMARK_LABELS = tuple([f"T{i}" for i in range(1, N_TIBIA + 1)] + [f"F{i}" for i in range(1, N_FEMUR + 1)])
LANDMARK_DESCRIPTIONS = (
    "tibia lateral margin", "tibia lateral plateau", "tibia lateral plateau, inner", "lateral tibial spine",
    "tibial centre between the spines", "medial tibial spine", "tibia medial plateau, inner",
    "tibia medial plateau", "tibia medial margin",
    "femur lateral margin", "lateral condyle", "lateral condyle, inner", "top of the intercondylar notch",
    "medial condyle, inner", "medial condyle", "femur medial margin",
)
TIBIA = slice(0, N_TIBIA)
FEMUR = slice(N_TIBIA, N_LANDMARKS)
CENTRE_INDEX = 4  # T5: the ROI centre in KNEEL

KNEEL_ROI_SPACING_MM = 0.3
KNEEL_ROI_SIZE_PX = 466  # 140 mm at 0.3 mm/pixel, as in the KNEEL CSV (bbox side)
KNEEL_ROI_CENTRE_PX = 233.0
ROI_SIZE_MM = 140.0
