"""The KNEEL shape model (statistics of the real annotations) and the knee radiograph generator:
determinism, exact ground truth (the rendered bone edges lie on the landmarks), DICOM spacing."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import SHARED_DATA
from KneeLandmarksLib import measure
from KneeLandmarksTools import phantom
from KneeLandmarksTools import shape_model as sm

KNEEL_CSV = SHARED_DATA / "kneel-annotations" / "bf_landmarks_1_0.3.csv"


def test_committed_shape_model_is_small_statistics_with_attribution():
    model = sm.load()
    assert model.mean_mm.shape == (16, 2)
    assert 5 <= model.n_components <= 32
    assert np.allclose(model.components @ model.components.T, np.eye(model.n_components), atol=1e-5)
    assert np.all(np.diff(model.variances) <= 0)
    assert set(model.kl_coefficient_mean) == {0, 1, 2, 3, 4}
    text = sm.MODEL_PATH.read_text()
    assert "KNEEL" in text and "Osteoarthritis Initiative" in text and len(text) < 50_000
    # right-knee frame: T5 at the origin, lateral margin at negative x, femur above the tibia
    assert np.allclose(model.mean_mm[sm.CENTRE_INDEX], 0, atol=0.5)
    assert model.mean_mm[0, 0] < -30 and model.mean_mm[8, 0] > 30
    assert model.mean_mm[sm.FEMUR][:, 1].mean() < model.mean_mm[sm.TIBIA][:, 1].mean()


def test_sampling_is_deterministic_and_kl_grades_narrow_the_joint():
    model = sm.load()
    a = model.sample(np.random.default_rng(5), n=3)
    b = model.sample(np.random.default_rng(5), n=3)
    assert a.shape == (3, 16, 2) and np.array_equal(a, b)
    rng = np.random.default_rng(0)
    mean_jsw = {}
    for kl in (0, 4):
        shapes = model.sample(rng, n=100, kl=kl)
        mean_jsw[kl] = np.mean([measure.joint_space_width(s, "right", 1.0).medial_mm for s in shapes])
    assert mean_jsw[4] < mean_jsw[0] - 0.5  # joint space narrowing, learnt from the real annotations


def test_model_refits_from_the_real_annotations_with_subjects_held_out():
    if not KNEEL_CSV.is_file():
        pytest.skip(f"KNEEL annotations not found at {KNEEL_CSV} (the shared data folder beside the repository)")
    annotations = sm.read_kneel_csv(KNEEL_CSV)
    assert len(annotations) == 598
    fit_set, held = sm.split_subjects(annotations)
    assert not ({a.subject_id for a in fit_set} & {a.subject_id for a in held})
    refit = sm.fit_from_csv(KNEEL_CSV)
    committed = sm.load()
    assert refit.n_fit == committed.n_fit == len(fit_set)
    assert set(committed.held_out_subjects) == {a.subject_id for a in held}
    assert np.allclose(refit.mean_mm, committed.mean_mm, atol=1e-5)


def test_kneel_csv_round_trip(tmp_path):
    model = sm.load()
    shapes = model.sample(np.random.default_rng(1), n=2)
    rows = [sm.KneeAnnotation(f"S{i}", "R", 2, sm.mm_to_roi_px(s)) for i, s in enumerate(shapes)]
    back = sm.read_kneel_csv(sm.write_kneel_csv(tmp_path / "shapes.csv", rows))
    assert np.allclose([b.landmarks_mm for b in back], shapes, atol=1e-3)
    (tmp_path / "bad.csv").write_text("subject_id,side,kl,tibia,femur\n1,R,0,\"1,2,3\",\"1,2\"\n")
    with pytest.raises(ValueError, match="line 2"):
        sm.read_kneel_csv(tmp_path / "bad.csv")


def test_rendering_is_deterministic():
    film = phantom.sample_film(11, spacing_range=(0.4, 0.4))
    again = phantom.sample_film(11, spacing_range=(0.4, 0.4))
    assert np.array_equal(film.landmarks_px(film.knees[0]), again.landmarks_px(again.knees[0]))
    assert np.array_equal(phantom.render(film), phantom.render(again))
    assert not np.array_equal(phantom.render(film), phantom.render(phantom.sample_film(12, spacing_range=(0.4, 0.4))))


def test_bone_edges_lie_on_the_ground_truth_landmarks():
    film = phantom.sample_film(3, n_knees=2, spacing_range=(0.2, 0.2))
    for k in film.knees:
        k.osteophytes_mm = (0.0, 0.0, 0.0, 0.0)
    clean = {"noise": 0.0, "texture": 0.0, "blur_mm": 0.0, "heel": 0.0, "marker": False, "collimation": False}
    assert [k.side for k in film.knees] == ["right", "left"]
    right, left = (film.landmarks_px(k) for k in film.knees)
    assert right[sm.CENTRE_INDEX, 0] < left[sm.CENTRE_INDEX, 0]  # patient's right on the viewer's left
    assert right[0, 0] < right[8, 0] and left[0, 0] > left[8, 0]  # T1 lateral on both
    for k in film.knees:  # a 120 x 80 mm window around each joint, at the film's own pixel size
        origin = np.round(k.landmarks_film_mm[sm.CENTRE_INDEX] / 0.2) * 0.2 - np.array([60.0, 40.0])
        image = phantom.render(film, origin, 0.2, (400, 600), appearance=clean)
        pts = (k.landmarks_film_mm - origin) / 0.2
        for i in (1, 2, 6, 7):  # plateau points: going down the column, bone starts at the landmark
            x, y = int(round(pts[i, 0])), pts[i, 1]
            profile = image[int(y) - 10: int(y) + 11, x]
            step = np.argmax(np.diff(profile)) + int(y) - 10 + 0.5
            assert abs(step - y) <= 1.5, (i, step, y)
        for i in (9 + 1, 9 + 5):  # condyle points: going up, bone starts at the landmark
            x, y = int(round(pts[i, 0])), pts[i, 1]
            profile = image[int(y) - 10: int(y) + 11, x]
            step = np.argmin(np.diff(profile)) + int(y) - 10 + 0.5
            assert abs(step - y) <= 1.5, (i, step, y)


def test_generated_files_and_ground_truth(tmp_path):
    from MSKCommonLib.image import read_image

    truths = phantom.generate(tmp_path, n=2, seed=4, single_knee_fraction=0.0, spacing_range=(0.5, 0.5))
    assert len(truths) == 2 and all(len(t["knees"]) == 2 for t in truths)
    t = truths[0]
    r = read_image(tmp_path / t["files"]["dicom"])
    assert r.spacing_mm == pytest.approx((0.5, 0.5))
    assert (r.height, r.width) == (t["height_px"], t["width_px"])
    saved = json.loads((tmp_path / "knee_004_0000.json").read_text())
    k = saved["knees"][0]
    px = np.array([k["landmarks_px"][lab] for lab in sm.LANDMARK_LABELS])
    mm = np.array([k["landmarks_mm"][lab] for lab in sm.LANDMARK_LABELS])
    assert np.allclose(px * 0.5, mm, atol=1e-3)
    jsw = measure.joint_space_width(px, k["side"], 0.5)
    assert k["jsw_medial_mm"] == pytest.approx(jsw.medial_mm, abs=1e-3)
    lines = (tmp_path / "ground_truth.csv").read_text().splitlines()
    assert len(lines) == 1 + 4 and lines[0].startswith("image,side,kl,pixel_spacing_mm,T1_x_px")
    again = phantom.generate(tmp_path / "again", n=1, seed=4, single_knee_fraction=0.0, spacing_range=(0.5, 0.5))
    assert again[0]["knees"] == truths[0]["knees"]


def test_given_shapes_are_rendered(tmp_path):
    model = sm.load()
    shapes = model.sample(np.random.default_rng(2), n=2)
    rows = [sm.KneeAnnotation(f"S{i}", "R", i, sm.mm_to_roi_px(s)) for i, s in enumerate(shapes)]
    csv_path = sm.write_kneel_csv(tmp_path / "given.csv", rows)
    truths = phantom.generate(tmp_path / "out", n=1, seed=0, shapes_csv=csv_path, single_knee_fraction=0.0,
                              png=False, spacing_range=(0.4, 0.4))
    knees = truths[0]["knees"]
    assert [k["subject_id"] for k in knees] == ["S0R", "S1R"] and [k["kl"] for k in knees] == [0, 1]
    # the knee frame shape (up to the knee's own scale and rotation) is the given one
    film = phantom.sample_film(0 * 100_003, shapes=[(s, i, "") for i, s in enumerate(shapes)],
                               single_knee_fraction=0.0, spacing_range=(0.4, 0.4))
    assert np.allclose(film.knees[0].shape_mm, shapes[0])


def test_every_landmark_of_every_knee_lies_on_the_film():
    shapes = [(s, 2, f"S{i}") for i, s in enumerate(sm.load().sample(np.random.default_rng(3), n=2))]
    cut = 0
    for seed in range(400):
        for given in (None, shapes):
            film = phantom.sample_film(seed, shapes=given)
            h, w = film.shape_px
            for k in film.knees:
                p = film.landmarks_px(k) * film.spacing_mm
                margin = min(p[:, 0].min(), p[:, 1].min(), w * film.spacing_mm - p[:, 0].max(),
                             h * film.spacing_mm - p[:, 1].max())
                assert margin >= phantom.FILM_MARGIN_MM - film.spacing_mm, (seed, margin)
                assert phantom.points_outside(film, k) == 0
            loose = phantom.sample_film(seed, shapes=given, keep_on_film=False)
            cut += sum(phantom.points_outside(loose, k) > 0 for k in loose.knees)
            # only the framing changes: the same knees, poses and pixel size
            assert loose.spacing_mm == film.spacing_mm and [k.side for k in loose.knees] == [k.side for k in film.knees]
            assert np.allclose(loose.knees[0].shape_mm, film.knees[0].shape_mm)
    assert cut > 0  # without it some knees are cut, as before


def test_ground_truth_marks_knees_cut_by_the_film(tmp_path):
    film = phantom.sample_film(2, n_knees=1, spacing_range=(0.5, 0.5), keep_on_film=False)
    film.knees[0].centre_mm = (10.0, film.height_mm / 2)  # lateral half off the film
    truth = phantom.ground_truth(film, "cut")
    assert truth["knees"][0]["cut"] and truth["knees"][0]["points_outside_film"] >= 3
