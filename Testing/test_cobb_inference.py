"""Cobb networks: inference on real spine radiographs, device choice, safe weight loading.

Real films come from ../shared/data/aasce2019-train (never copied into the repository); the
tests that need them skip, saying so, when that folder is absent."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from CobbAngleLib import geometry
from CobbAngleLib.predict import DEFAULT_WEIGHTS, Cancelled, CobbPredictor
from MSKCommonLib.device import choose_device
from MSKCommonLib.weights import WeightsError, load_state

from MSKCommonTools import shared_data

AASCE = shared_data() / "aasce2019-train"
needs_aasce = pytest.mark.skipif(not AASCE.is_dir(), reason=f"shared AASCE data not found at {AASCE}")


# ------------------------------------------------------------------------------------------
# device choice and safe loading (no data needed)

def test_auto_device_is_available():
    dev = choose_device("auto")
    assert dev.type in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        assert dev.type != "cuda"


def test_forced_unavailable_device_is_refused():
    if torch.cuda.is_available():
        pytest.skip("CUDA is present on this machine")
    with pytest.raises(ValueError, match="cuda"):
        choose_device("cuda")
    with pytest.raises(ValueError, match="unknown device"):
        choose_device("tpu")
    assert choose_device("CPU").type == "cpu"


class _RunsCode:
    """A pickle payload that would create a file if it were ever executed."""

    def __init__(self, target: str):
        self.target = target

    def __reduce__(self):
        return (Path.touch, (Path(self.target),))


def test_weights_with_code_are_refused(tmp_path):
    marker = tmp_path / "executed"
    bad = tmp_path / "evil.pt"
    with open(bad, "wb") as f:
        pickle.dump({"state_dict": {}, "payload": _RunsCode(str(marker))}, f, protocol=2)
    with pytest.raises(WeightsError, match="refused"):
        load_state(bad)
    assert not marker.exists(), "the pickled code ran"


def test_missing_and_corrupt_weights(tmp_path):
    with pytest.raises(FileNotFoundError, match="weights file not found"):
        load_state(tmp_path / "nothing.pt")
    with pytest.raises(FileNotFoundError):
        CobbPredictor(tmp_path / "nothing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torch file at all")
    with pytest.raises(WeightsError):
        load_state(junk)
    good = tmp_path / "good.pt"
    torch.save({"state_dict": {"w": torch.ones(2)}, "config": {"format": "x"}}, good)
    assert load_state(good)["config"]["format"] == "x"


# ------------------------------------------------------------------------------------------
# the trained networks on real films

@pytest.fixture(scope="module")
def predictor():
    if not DEFAULT_WEIGHTS.is_file():
        pytest.fail(f"packaged Cobb weights missing: {DEFAULT_WEIGHTS}")
    torch.set_num_threads(2)
    return CobbPredictor(device="cpu")


def _validation_film(i: int = 0):
    import cv2
    from scipy.io import loadmat

    from CobbAngleTools.data import read_split

    name = read_split()["validation"][i]
    pixels = cv2.imread(str(AASCE / "images" / name), cv2.IMREAD_GRAYSCALE).astype(np.float32)
    landmarks = loadmat(str(AASCE / "labels" / (name + ".mat")))["p2"].reshape(17, 4, 2)
    return name, pixels, landmarks


@needs_aasce
def test_small_radiograph_outputs(predictor):
    import cv2

    _, pixels, _ = _validation_film(1)
    small = cv2.resize(pixels, (pixels.shape[1] * 400 // pixels.shape[0], 400), interpolation=cv2.INTER_AREA)
    calls = []
    pred = predictor.predict(small, progress=lambda f, m: calls.append((f, m)))
    assert pred.landmarks.shape == (17, 4, 2) and pred.landmarks.dtype == np.float64
    assert np.all(np.isfinite(pred.landmarks))
    centres = pred.landmarks.mean(axis=1)
    assert np.all(np.diff(centres[:, 1]) > 0), "vertebrae T1..L5 must run from top to bottom"
    # corners: top-left left of top-right, top corners above bottom corners
    assert np.all(pred.landmarks[:, 0, 0] < pred.landmarks[:, 1, 0])
    assert np.all(pred.landmarks[:, [0, 1], 1].mean(1) < pred.landmarks[:, [2, 3], 1].mean(1))
    assert pred.vertebra_labelmap.shape == small.shape and pred.vertebra_labelmap.dtype == np.uint8
    values = set(np.unique(pred.vertebra_labelmap).tolist())
    # the segmentation head still misses some small upper-thoracic vertebrae on a 400 px film
    assert values <= set(range(18)) and 0 in values and len(values - {0}) >= 10
    assert pred.vertebra_confidence.shape == (17,)
    assert np.all((pred.vertebra_confidence >= 0) & (pred.vertebra_confidence <= 1))
    assert set(pred.regressed_angles) == set(pred.landmark_angles) == set(geometry.CURVE_NAMES)
    assert pred.landmark_angles == geometry.cobb_angles(pred.landmarks, "aasce", small.shape[0]).angles
    assert pred.device == "cpu" and pred.seconds > 0  # speed is measured by `mskmorph bench cobb`, not here
    assert calls and calls[-1][0] == 1.0
    # the same film in a 16-bit intensity range gives the same corners
    pred16 = predictor.predict(small * 257.0 + 1000.0)
    assert np.abs(pred16.landmarks - pred.landmarks).max() < 1.0


@needs_aasce
def test_cancel_raises(predictor):
    _, pixels, _ = _validation_film(1)
    with pytest.raises(Cancelled):
        predictor.predict(pixels, should_cancel=lambda: True)


@needs_aasce
def test_angles_close_to_ground_truth(predictor):
    name, pixels, truth_landmarks = _validation_film(0)
    pred = predictor.predict(pixels)
    truth = geometry.cobb_angles(truth_landmarks, "aasce", pixels.shape[0], check_order=False).angles  # file as stored
    t = np.array([truth[c] for c in geometry.CURVE_NAMES])
    p = np.array([pred.landmark_angles[c] for c in geometry.CURVE_NAMES])
    r = np.array([pred.regressed_angles[c] for c in geometry.CURVE_NAMES])
    assert np.abs(p - t).max() < 12.0, (name, t, p)
    assert np.abs(r - t).max() < 15.0, (name, t, r)
    assert geometry.smape(t, p) < 25.0
    # corners within a few vertebra heights of the truth (original pixels)
    err = np.linalg.norm(pred.landmarks - truth_landmarks, axis=-1)
    assert np.median(err) < 0.02 * pixels.shape[0], np.median(err)
    if pred.consistency_warning is not None:
        assert "deg" in pred.consistency_warning


def test_chain_decoding_resolves_two_heatmaps_on_one_vertebra():
    """Two neighbouring vertebrae whose heatmaps both peak on one vertebra: the plain peaks
    collapse them, the joint choice along the spine gives each its own."""
    import torch

    from CobbAngleLib.network import chain_peaks

    h, w = 96, 48
    rows = 6 + 5 * np.arange(17)
    yy, xx = np.mgrid[0:h, 0:w]

    def blob(r, c=24, s=1.0):
        return np.exp(-((yy - r) ** 2 + (xx - c) ** 2) / (2 * s**2))

    prob = np.stack([blob(r) for r in rows])
    prob[9] = 0.6 * blob(rows[8]) + 0.4 * blob(rows[9])  # T10's map peaks on T9
    prob = prob / prob.reshape(17, -1).sum(1)[:, None, None]
    t = torch.from_numpy(prob)[None].float()
    plain = (t.flatten(2).argmax(-1)[0] // w).numpy()
    chained = (chain_peaks(t)[0] // w).numpy()
    assert plain[9] == plain[8] == rows[8]
    assert np.array_equal(chained, rows)


def test_the_check_fires_when_the_two_networks_disagree_and_names_the_angle(predictor):
    agree = {"PT": 20.0, "MT": 35.0, "TL_L": 12.0}
    assert predictor._consistency(agree, dict(agree)) is None
    disagree = dict(agree, MT=35.0 + predictor.consistency_threshold_deg + 1.0)
    warning = predictor._consistency(agree, disagree)
    assert warning is not None and "MT" in warning and "46.0" in warning and "35.0" in warning
    # just under the threshold: no warning
    assert predictor._consistency(agree, dict(agree, MT=35.0 + predictor.consistency_threshold_deg - 0.1)) is None


def test_the_prediction_reports_the_check_it_computes_on_a_flagged_phantom(predictor):
    """On the generator's phantom of seed 23 (one of the 9 of seeds 0..40 the old rule flags) the
    regression head and the corners disagree: the warning of the result is the check of its own
    angles."""
    from CobbAngleTools.phantom import render_spine_phantom

    pixels = render_spine_phantom(23).pixels.astype(np.float32)
    pred = predictor.predict(pixels)
    expected = predictor._consistency(pred.regressed_angles, pred.landmark_angles)
    assert pred.consistency_warning == expected
    assert expected is not None, "this phantom is a film the check flags today; if it no longer is, pick another"


def test_the_table_shows_the_network_angles_the_check_per_angle_and_the_warning(slicer_app, tmp_path):
    from MSKCommonLib import mrml as common
    from MSKCommonLib.cli import main

    import cv2

    from CobbAngleTools.phantom import render_spine_phantom

    film = tmp_path / "Flagged_AP.png"  # a phantom the check flags (see the test above)
    cv2.imwrite(str(film), render_spine_phantom(0).pixels)
    out = tmp_path / "out"
    assert main(["cobb", str(film), "--out", str(out), "--scene", "--no-overlay", "--device", "cpu"]) == 0
    import json

    record = json.loads((out / "Flagged_AP_cobb.json").read_text())
    assert slicer_app.scene.ReadFromMRB(str(out / "Flagged_AP.mrb"))
    table = slicer_app.scene.GetFirstNodeByName("Flagged_AP Cobb angles")
    rows = {r["Curve"]: r for r in common.table_rows(table)}
    # the regression head's angles are the organisers' columns (PT = the largest curve): beside clinical
    # curves they would read as disagreements that are not there, so the clinical table leaves them out
    assert record["convention"] == "clinical" and record["network_angles_deg"]
    assert all("Network angle (deg)" not in r for r in rows.values())
    from CobbAngleLib.review import CobbPresenter, set_convention
    from MSKCommonLib.review import Review

    live = Review(CobbPresenter()).find(slicer_app.scene, slicer_app.scene.GetFirstNodeByName("Flagged_AP"))
    set_convention(live, "aasce")  # measured again in the AASCE convention: the same names, beside each curve
    aasce = {r["Curve"]: r for r in common.table_rows(live.table)}
    for name, value in record["network_angles_deg"].items():
        assert aasce[name]["Network angle (deg)"] == pytest.approx(value, abs=1e-3)  # the scene file keeps 4 decimals
    set_convention(live, "clinical")
    assert record["warning"] and all(r["Note"] == record["warning"] for r in rows.values())
    # the CHECK per angle (of the curves in the measured convention): a "Check" column
    from CobbAngleLib.check import check_label

    assert set(record["check"]) == set(rows)
    for name, row in rows.items():
        assert row["Check"] == check_label(record, name)
        assert ("CHECK" in row["Check"]) == bool(record["check"][name])
        if record["angle_confidence"][name] is not None:
            assert f"confidence {record['angle_confidence'][name]:.2f}" in row["Check"]
    assert any(record["check"].values()), "this phantom is flagged today; if it no longer is, pick another"
    csv_row = (out / "cobb.csv").read_text().splitlines()[1]
    assert "the angle may be off by more than 10 deg" in csv_row


def _blob_maps(rows, h=96, w=48, c=24, s=1.0):
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([np.exp(-((yy - r) ** 2 + (xx - c) ** 2) / (2 * s**2)) for r in rows])


def test_ordered_decoding_counts_the_vertebrae_down_from_t1_across_a_skip():
    """The failure seen on the AASCE films: from T9 down every heatmap fires one vertebra low
    (T9's on T10, ..., L4's on L5) and L5's on the sacrum below. The chain keeps the heatmaps'
    peaks (T9 is lost, L5 named on the sacrum); the ordered decoding finds the 17 vertebrae
    without their names (every vertebra, and the sacrum, carries some heatmap) and names them
    down from T1, so T9..L5 land on their own vertebrae."""
    from CobbAngleLib import decode

    rows = 6 + 5 * np.arange(18)  # 17 vertebrae and the sacrum below L5
    shown = np.concatenate([rows[:8], rows[9:18]])  # T1..T8 right, then T9 -> T10, ..., L5 -> sacrum
    prob = _blob_maps(shown)
    prob[7] = 0.7 * prob[7] + 0.3 * _blob_maps([rows[8]])[0]  # T8's map also covers T9 a little
    prob = prob / prob.reshape(17, -1).sum(1)[:, None, None]
    h, w = prob.shape[1:]
    chained = decode.chain_peaks(prob[None])[0] // w
    ordered, vertebrae = decode.ordered_peaks(prob)
    assert chained[8] == rows[9] and chained[16] == rows[17]  # the chain names T10 as T9, the sacrum as L5
    assert np.array_equal(ordered // w, rows[:17])
    assert vertebrae.shape == (h, w) and vertebrae.sum() == pytest.approx(17.0, rel=1e-5)


def test_ordered_landmarks_are_centres_plus_offsets_in_input_pixels():
    """Corners = the name-free centre (soft-argmax near the chosen peak) + the offsets there."""
    from CobbAngleLib import decode

    rows = 6 + 5 * np.arange(17)
    prob = _blob_maps(rows)
    logits = np.log(prob / prob.reshape(17, -1).sum(1)[:, None, None] + 1e-30).astype(np.float32)[None]
    offsets = np.zeros((1, 8, 96, 48), np.float32)
    offsets[0, 0::2] = np.array([-5, 5, -5, 5], np.float32)[:, None, None]  # x of TL, TR, BL, BR
    offsets[0, 1::2] = np.array([-3, -3, 3, 3], np.float32)[:, None, None]  # y
    corners, _ = decode.ordered_landmarks(logits, offsets)
    centre_y = rows * 4 + 1.5  # cell centres in input pixels (stride 4)
    assert np.allclose(corners[0].mean(1)[:, 1], centre_y, atol=0.05)
    assert np.allclose(corners[0].mean(1)[:, 0], 24 * 4 + 1.5, atol=0.05)
    assert np.allclose(corners[0, :, 1, 0] - corners[0, :, 0, 0], 10.0, atol=1e-4)
    assert np.allclose(corners[0, :, 2, 1] - corners[0, :, 0, 1], 6.0, atol=1e-4)


def test_the_decoding_is_chosen_by_name():
    from CobbAngleLib.predict import CobbPredictor

    with pytest.raises(ValueError, match="ordered, chain, plain"):
        CobbPredictor(decoding="nearest")


def test_a_film_the_ordered_decoding_puts_out_of_order_is_read_by_the_chain(monkeypatch):
    """Where the ordered pass would return vertebrae out of order (the geometry then refuses the
    film), the prediction falls back to the chain decoding of the same network outputs."""
    from CobbAngleLib import predict

    rows = 6 + 5 * np.arange(17)
    prob = _blob_maps(rows)
    logits = np.log(prob / prob.reshape(17, -1).sum(1)[:, None, None] + 1e-30).astype(np.float32)[None]
    offsets = np.zeros((1, 8, 96, 48), np.float32)
    offsets[0, 0::2] = np.array([-5, 5, -5, 5], np.float32)[:, None, None]
    offsets[0, 1::2] = np.array([-3, -3, 3, 3], np.float32)[:, None, None]
    out = {"heatmap": logits, "offsets": offsets}
    ordered, _ = predict.read_corners(out, "ordered")
    chained, _ = predict.read_corners(out, "chain")
    assert not geometry.vertebrae_out_of_order(ordered[0])

    real = predict.ordered_landmarks

    def swapped(heatmap, offsets_):  # T5 and T6 exchanged, as a faulty pass might
        corners, p = real(heatmap, offsets_)
        corners[:, [4, 5]] = corners[:, [5, 4]]
        return corners, p

    monkeypatch.setattr(predict, "ordered_landmarks", swapped)
    fallen_back, _ = predict.read_corners(out, "ordered")
    assert geometry.vertebrae_out_of_order(swapped(logits, offsets)[0][0])
    assert np.array_equal(fallen_back, chained)
