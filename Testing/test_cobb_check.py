"""The Cobb CHECK (CobbAngleLib.check, CobbAngleTools.check_fit): a confidence per angle, reported
per angle in the JSON, the CSV, the command line and the review table; its threshold rule, the
fitting's pieces, the shipped model's provenance and the fallback to the old rule when the model
was fitted for other weights."""
from __future__ import annotations

import json

import numpy as np
import pytest

from CobbAngleLib import geometry
from CobbAngleLib.check import CHECK_FILE, FEATURES, FORMAT, OLD_RULE_DEG, CheckModel, check_label, edited_curves
from CobbAngleTools.check_fit import choose_threshold, film_figures, fit_logistic, folds_by_patient, predict_logistic


# ------------------------------------------------------------------------------------------
# the threshold rule and the model (constructed features, no network)

def test_the_threshold_is_the_largest_catch_with_at_most_a_quarter_flagged():
    """12 films, one angle; films 0-3 are off. By confidence: 0.1 (film 0, off), 0.2 (film 1, off),
    0.3 (film 4), 0.35 (film 2, off). At most 3 of 12 (25 %) flagged: flagging 2 or 3 catches 2 of
    4, so the rule takes 2 (the fewest flagged for the same catch), a threshold just above 0.2.
    At most 4 of 12: flagging 4 catches 3, a threshold just above 0.35."""
    conf = np.array([0.1, 0.2, 0.35, 0.9, 0.3, 0.5, 0.6, 0.7, 0.8, 0.85, 0.95, 0.97])[:, None]
    off = np.zeros((12, 1), bool)
    off[:4] = True
    t, fig = choose_threshold(conf, off, max_flagged=0.25)
    assert 0.2 < t <= 0.3 and fig["flagged"] == 2 and fig["films_off_flagged"] == 2
    assert fig["catch_rate"] == pytest.approx(0.5)
    t, fig = choose_threshold(conf, off, max_flagged=1 / 3)
    assert 0.35 < t <= 0.5 and fig["flagged"] == 4 and fig["films_off_flagged"] == 3


def test_a_film_is_flagged_when_any_angle_is_and_ties_take_the_fewest_flagged():
    # film 0: only its second angle is low and off; films 1..3 fine; film 2 has a low angle but is
    # not off: flagging it too catches nothing more, so the rule stops below it
    conf = np.array([[0.9, 0.2], [0.9, 0.9], [0.4, 0.9], [0.95, 0.8]])
    off = np.array([[False, True], [False, False], [False, False], [False, False]])
    t, fig = choose_threshold(conf, off, max_flagged=0.5)
    assert fig["flagged"] == 1 and fig["films_off_flagged"] == 1 and 0.2 < t <= 0.4
    assert film_figures(conf, off, 0.5)["flagged"] == 2  # 0.5 would flag film 2 as well


def test_the_logistic_regression_learns_the_direction_and_scale_of_a_constructed_feature():
    rng = np.random.default_rng(0)
    gap = rng.uniform(0, 30, 2000)
    p_true = 1 / (1 + np.exp(-(3.0 - 0.3 * gap)))  # within 10 deg: likely when the gap is small
    y = rng.uniform(size=gap.size) < p_true
    model = fit_logistic(gap[:, None], y, l2=1e-3)
    got = predict_logistic(model, np.array([[0.0], [10.0], [30.0]]))
    # 2000 films: the fitted probabilities within 0.06 of the true ones (the sampling error of a
    # logistic fit of this size is about 0.02 at these points)
    assert got == pytest.approx(1 / (1 + np.exp(-(3.0 - 0.3 * np.array([0.0, 10.0, 30.0])))), abs=0.06)


def test_the_folds_keep_a_patients_films_together():
    names = [f"sunhl-1th-03-Jan-2017-{p} {v} AP.jpg" for p in range(160, 200) for v in "AB"]
    folds = folds_by_patient(names, 5)
    assert set(folds) == set(range(5))
    assert all(folds[2 * i] == folds[2 * i + 1] for i in range(40))


# ------------------------------------------------------------------------------------------
# the shipped model and the fallback

def test_the_shipped_check_was_fitted_out_of_sample_for_the_shipped_networks():
    """Fitted on predictions of films no network was trained on (the validation films), for the
    networks that run by default (stage 1, and stage 2 when shipped): it fails when the CHECK is
    fitted on a training film, or left behind by new weights."""
    from CobbAngleLib.predict import CobbPredictor
    from CobbAngleTools.data import read_split

    data = json.loads(CHECK_FILE.read_text())
    assert data["format"] == FORMAT
    assert data["weights_sha256"] == CobbPredictor(device="cpu", threads=1).networks_fingerprint()
    assert set(data["features"]) <= set(FEATURES) and set(data["models"]) == set(geometry.CURVE_NAMES)
    split = read_split()
    assert data["fitted_on"] == "validation" and data["films"]
    assert set(data["films"]) <= set(split["validation"]) and not set(data["films"]) & set(split["train"])
    cv = data["cross_validation"]
    assert cv["films"] == len(data["films"])
    chosen = cv[cv["chosen"]]
    assert chosen["flagged_share"] <= 0.25 and chosen["threshold"] == data["threshold"]


def test_the_check_fit_refuses_films_a_network_was_trained_on():
    from CobbAngleTools.check_fit import out_of_sample
    from CobbAngleTools.data import read_split

    split = read_split()
    assert out_of_sample(split["validation"][:3], split) == split["validation"][:3]
    with pytest.raises(ValueError, match="out-of-sample predictions only; 1 of these films trained the networks"):
        out_of_sample(split["validation"][:2] + split["train"][:1], split)


def test_a_check_fitted_for_other_weights_falls_back_to_the_old_rule_with_a_note(tmp_path):
    data = json.loads(CHECK_FILE.read_text())
    other = tmp_path / "cobb_check.json"
    other.write_text(json.dumps(dict(data, weights_sha256="0" * 64, source_sha256="1" * 64)))
    model = CheckModel.from_json(other, weights_sha256=data["weights_sha256"])
    assert not model.fitted and "other network weights" in model.note and "cobb-fit" in model.note
    same = CheckModel.from_json(other, weights_sha256="1" * 64)  # the .pt it came from (torch backend)
    assert same.fitted and not same.note
    features = {"PT": {"regression_gap": OLD_RULE_DEG + 0.5}, "MT": {"regression_gap": OLD_RULE_DEG - 0.5}, "TL_L": None}
    confidence, check = model.assess(features)
    assert confidence == {"PT": None, "MT": None, "TL_L": None}
    assert check == {"PT": True, "MT": False, "TL_L": True}  # the old rule; not measured: CHECK
    missing = CheckModel.from_json(tmp_path / "absent.json")
    assert not missing.fitted and "missing" in missing.note


def test_the_predictor_with_a_check_for_other_weights_uses_the_old_rule(tmp_path):
    from CobbAngleLib.predict import CobbPredictor
    from CobbAngleTools.phantom import render_spine_phantom

    data = json.loads(CHECK_FILE.read_text())
    other = tmp_path / "cobb_check.json"
    other.write_text(json.dumps(dict(data, weights_sha256="0" * 64, source_sha256="1" * 64)))
    predictor = CobbPredictor(device="cpu", threads=1, check_file=other)
    pred = predictor.predict(render_spine_phantom(0).pixels.astype(np.float32))
    assert "other network weights" in pred.check_note
    assert all(v is None for v in pred.angle_confidence.values())
    for c in geometry.CURVE_NAMES:  # the old rule, per angle
        assert pred.check[c] == (abs(pred.regressed_angles[c] - pred.landmark_angles[c]) > OLD_RULE_DEG)


# ------------------------------------------------------------------------------------------
# reported per angle

def test_the_confidence_is_reported_per_angle_in_the_prediction_json_csv_and_command_line(tmp_path, capsys):
    import cv2

    from CobbAngleTools.phantom import render_spine_phantom
    from MSKCommonLib.cli import main

    film = tmp_path / "Flagged_AP.png"  # the phantom the old rule flags (test_cobb_inference)
    cv2.imwrite(str(film), render_spine_phantom(0).pixels)
    out = tmp_path / "out"
    assert main(["cobb", str(film), "--out", str(out), "--no-overlay", "--device", "cpu", "--convention", "aasce"]) == 0
    printed = capsys.readouterr().out
    record = json.loads((out / "Flagged_AP_cobb.json").read_text())
    model = CheckModel.from_json(CHECK_FILE)
    assert set(record["angle_confidence"]) == set(record["check"]) == set(geometry.CURVE_NAMES)
    assert record["check_note"] is None and record["check_edited"] == []
    line = next(ln for ln in printed.splitlines() if ln.startswith("Flagged_AP.png:"))
    import csv

    with open(out / "cobb.csv", newline="") as f:
        row = next(csv.DictReader(f))
    for c in geometry.CURVE_NAMES:
        confidence = record["angle_confidence"][c]
        assert 0.0 <= confidence <= 1.0
        assert record["check"][c] == (confidence < model.threshold)
        label = ("CHECK, " if record["check"][c] else "") + f"confidence {confidence:.2f}"
        assert f"{c} {record['curves'][geometry.CURVE_NAMES.index(c)]['angle_deg']:.1f} deg ({label})" in line
        assert row[f"{c}_check"] == label
        assert float(row[f"{c}_confidence"]) == pytest.approx(confidence, abs=1e-4)
    flagged = [c for c in geometry.CURVE_NAMES if record["check"][c]]
    assert flagged, "phantom 0 is flagged by the CHECK today; if it no longer is, pick another"
    assert all(f"{c} (confidence" in record["warning"] for c in flagged)


def test_a_curve_with_a_moved_corner_shows_edited_instead_of_a_confidence():
    v = np.zeros((17, 4, 2))
    v[:, :, 1] = np.arange(17)[:, None] * 40 + np.array([0, 0, 30, 30])
    v[:, :, 0] = np.array([0, 60, 0, 60])
    tilt = np.radians(np.r_[np.linspace(0, 15, 6), np.linspace(15, -15, 11)])
    centre = v.mean(1, keepdims=True)
    rot = np.stack([np.stack([np.cos(tilt), -np.sin(tilt)], -1), np.stack([np.sin(tilt), np.cos(tilt)], -1)], -2)
    v = np.einsum("kij,kcj->kci", rot, v - centre) + centre
    m = geometry.cobb_angles(v, "aasce", 800)
    spans = {c.name: sorted((c.upper_line[0], c.lower_line[0])) for c in m.curves}
    inside = spans["PT"][0]  # the upper end vertebra of PT
    edited = edited_curves(m, [f"{geometry.VERTEBRA_NAMES[inside]} sup-R"])
    assert "PT" in edited
    assert all(lo <= inside <= hi for c, (lo, hi) in spans.items() if c in edited)
    assert all(not (lo <= inside <= hi) for c, (lo, hi) in spans.items() if c not in edited)
    record = {"angle_confidence": {"PT": 0.41, "MT": 0.93, "TL_L": None}, "check": {"PT": True, "MT": False, "TL_L": True},
              "check_edited": edited}
    assert check_label(record, "PT") == "edited"
    assert check_label(dict(record, check_edited=[]), "PT") == "CHECK, confidence 0.41"
    assert check_label(record, "MT") == ("edited" if "MT" in edited else "confidence 0.93")
    assert check_label({}, "PT") == ""  # corners from a file: no CHECK
    # a corner of a vertebra outside PT's span now, but inside it as the network's corners measured
    # it (the saved record's curves), still counts
    lo, hi = spans["PT"]
    outside = hi + 1 if hi < 16 else lo - 1
    computed = [{"name": "PT", "upper_end_vertebra": geometry.VERTEBRA_NAMES[min(lo, outside)],
                 "lower_end_vertebra": geometry.VERTEBRA_NAMES[max(hi, outside)]}]
    label = [f"{geometry.VERTEBRA_NAMES[outside]} inf-L"]
    assert "PT" not in edited_curves(m, label) and "PT" in edited_curves(m, label, computed)


def test_the_overlay_writes_the_check_beside_each_angle_in_red_when_flagged():
    from conftest import DOUBLE_CURVE_TILTS, synthetic_spine

    from CobbAngleLib.overlay import draw_overlay

    spine = synthetic_spine(DOUBLE_CURVE_TILTS)
    gray = np.full((2200, 900), 90, np.uint8)
    m = geometry.cobb_angles(spine, "clinical")

    def red_pixels(rgb):  # the warning colour, exactly (255, 60, 60) in RGB, in the legend panel beside the film
        panel = rgb[:, int(round(900 * rgb.shape[0] / 2200)):].astype(int)
        return int(np.count_nonzero(np.abs(panel - [255, 60, 60]).max(-1) <= 2))

    plain = draw_overlay(gray, spine, m)
    calm = draw_overlay(gray, spine, m, checks={"PT": "confidence 0.93", "MT": "confidence 0.90", "TL_L": ""})
    flagged = draw_overlay(gray, spine, m, checks={"PT": "confidence 0.93", "MT": "CHECK, confidence 0.41", "TL_L": ""})
    assert red_pixels(plain) == red_pixels(calm) == 0  # a confidence alone is written in the curve's colour
    assert red_pixels(flagged) > 100  # "CHECK, confidence 0.41" in red
    assert not np.array_equal(plain, calm)  # the confidences are written
