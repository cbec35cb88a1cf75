"""The full-spine naming figures (``mskmorph bench cobb --full-spine``) on predictions of known
error, without the network: the exact corners are named right, a chain moved up one level puts
"T1" on C7 (a vertebra the AASCE labels do not have) and misnames every vertebra."""
import numpy as np

from CobbAngleTools.full_spine import naming_row, names_under, summarise, true_vertebrae
from CobbAngleTools.phantom import NAMES, render_spine_phantom


def test_true_vertebrae_are_c1_to_s1():
    ph = render_spine_phantom(2, height=800, width=300, field="full", landmarks_only=True)
    names, centres = true_vertebrae(ph)
    assert names == ["C1", "C2", "C3", "C4", "C5", "C6", "C7", *NAMES, "S1"] and centres.shape == (25, 2)
    assert np.all(np.diff(centres[:, 1]) > 0)
    assert names_under(ph.landmarks, names, centres) == list(NAMES)


def test_figures_of_exact_and_shifted_predictions():
    films = [render_spine_phantom(seed, height=800, width=300, field="full", landmarks_only=True) for seed in (1, 2)]
    right = summarise([naming_row(ph, ph.landmarks) for ph in films])
    assert right["t1_right_share"] == right["l5_right_share"] == 1.0 and right["misnamed_share"] == 0.0
    # the chain one level up: "T1" on C7 .. "L5" on L4
    up = summarise([naming_row(ph, np.concatenate([ph.other_landmarks["C7"][None], ph.landmarks[:16]])) for ph in films])
    assert up["t1_right_share"] == up["l5_right_share"] == 0.0 and up["misnamed_share"] == 1.0
    assert up["under_t1"] == {"C7": 2} and up["under_l5"] == {"L4": 2}
    # one level down, and only L5 on the sacrum: one film with 17 misnamed, one with 1
    down = naming_row(films[0], np.concatenate([films[0].landmarks[1:], films[0].other_landmarks["S1"][None]]))
    last = naming_row(films[1], np.concatenate([films[1].landmarks[:16], films[1].other_landmarks["S1"][None]]))
    both = summarise([down, last])
    assert both["under_t1"] == {"T2": 1, "T1": 1} and both["under_l5"] == {"S1": 2}
    assert both["t1_right_share"] == 0.5 and both["l5_right_share"] == 0.0
    assert both["misnamed_share"] == (17 + 1) / 34
