"""``bench knee --evaluate`` figures: signed errors in each knee's own frame and along the bone
outline, JSW error split into bias and spread, per KL grade, cut knees."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from KneeLandmarksTools import bench, phantom
from KneeLandmarksTools import shape_model as sm


def _from_knee_frame(p_mm, film, knee):
    p = np.asarray(p_mm, float) * (np.array([-1.0, 1.0]) if knee.side == "left" else 1.0)
    a = np.radians(knee.angle_deg)
    p = p @ np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]).T + np.asarray(knee.centre_mm)
    return p / film.spacing_mm


@pytest.mark.parametrize("seed", (1, 2))
def test_knee_record_splits_a_known_shift_into_its_parts(seed):
    film = phantom.sample_film(seed, n_knees=2, spacing_range=(0.2, 0.2))
    records = []
    for knee in film.knees:
        truth = film.landmarks_px(knee)
        t_knee = bench.knee_frame_mm(truth, film, knee)
        assert np.allclose(_from_knee_frame(t_knee, film, knee), truth)
        assert np.allclose(t_knee, knee.shape_mm * knee.scale)  # the knee's own shape, at its size
        assert t_knee[0, 0] < t_knee[8, 0]  # lateral at small x on both knees
        shifted = t_knee.copy()
        shifted[sm.TIBIA, 1] += 0.4  # tibia 0.4 mm too low, femur 0.3 mm too high: inside both bones
        shifted[sm.FEMUR, 1] -= 0.3
        pred = SimpleNamespace(landmarks_px=_from_knee_frame(shifted, film, knee),
                               centre_px=truth[sm.CENTRE_INDEX] + (1.0, 0.0))
        r = bench.knee_record(film, knee, pred)
        d = np.array(r["error_knee_mm"])
        assert np.allclose(d[sm.TIBIA], [0, 0.4], atol=1e-6) and np.allclose(d[sm.FEMUR], [0, -0.3], atol=1e-6)
        outward = np.array(r["error_outward_mm"])
        assert np.all(outward[1:8] < -0.2) and np.all(outward[10:15] < -0.15)  # inside the bone
        assert r["jsw_error_mm"][0] == pytest.approx(0.7, abs=0.1) and r["jsw_error_mm"][1] == pytest.approx(0.7, abs=0.1)
        assert np.linalg.norm(r["detector_centre_error_mm"]) == pytest.approx(0.2)
        records.append(r)
    records.append(bench.knee_record(film, film.knees[0], None))
    s = bench.summarise(records)
    assert s["signed_bias_mm"]["tibia_dy"] == pytest.approx(0.4) and s["signed_bias_mm"]["femur_dy"] == pytest.approx(-0.3)
    assert s["jsw_error_mm"]["medial"]["bias"] == pytest.approx(0.7, abs=0.1)
    assert s["jsw_error_mm"]["medial"]["n"] == 2 and s["jsw_error_mm"]["medial"]["fraction_over"] == 1.0
    assert s["per_landmark"]["T5"]["dy_mm"] == pytest.approx(0.4)
    assert s["knees_cut_by_film"] == 0 and set(s["per_kl"]) == {str(k.kl) for k in film.knees}
