"""The reader names vertebrae in the review and the network counts from them
(``CobbAngleLib.review.count_from_names``, the one re-run with names the Slicer module and the
browser review call), headless on the review layer with the real network in its worker process,
on the bundled phantom film: the re-run's named vertebrae lie where the reader clicked and the
record, table and report line say the count came from the reader's names; a result with moved
points is not replaced without asking; bad names are refused with the pipeline's reason and
change nothing."""
from __future__ import annotations

import json
import sys
import time

import numpy as np
import pytest

from conftest import SAMPLE_DATA

FILM = SAMPLE_DATA / "SpinePhantom_AP.png"


def truth() -> np.ndarray:
    return np.array(json.loads(FILM.with_suffix(".json").read_text())["landmarks_px"], float).reshape(17, 4, 2)


@pytest.fixture
def shown(slicer_app):
    """The phantom film with its true corners shown as a result (no network), and the logic."""
    from CobbAngleLib.pipeline import result_from_landmarks
    from MSKCommonLib import mrml as common
    from MSKCommonLib.image import read_image
    from MSKCommonLib.logic import ModuleLogic

    image = read_image(FILM)
    volume = common.volume_from_image(slicer_app.scene, image, "SpinePhantom_AP")
    logic = ModuleLogic("cobb")
    live = logic.present(volume, result_from_landmarks(image, truth(), source="the phantom's true corners"))
    yield logic, volume, live
    logic.cleanup()


def finished(job, seconds=300):
    start = time.monotonic()
    while job.poll().running:
        assert time.monotonic() - start < seconds, "the network did not finish"
        time.sleep(0.1)
    state = job.poll()
    assert not state.error, state.error
    return job.result()


def corner(live, label):
    return live.points_px("landmarks")[live.labels("landmarks").index(label)].copy()


def test_names_are_listed_moved_and_cleared(shown):
    from CobbAngleLib.review import clear_names, name_vertebra, names_given

    _, volume, _ = shown
    name_vertebra(volume, "t12", 300, 900)
    name_vertebra(volume, "T1", 310, 100)
    name_vertebra(volume, "T12", 305, 910)  # naming a level again moves its name
    assert names_given(volume) == [{"vertebra": "T1", "x": 310.0, "y": 100.0}, {"vertebra": "T12", "x": 305.0, "y": 910.0}]
    with pytest.raises(ValueError, match="not one of the vertebrae measured"):
        name_vertebra(volume, "C7", 300, 50)
    assert len(names_given(volume)) == 2
    clear_names(volume)
    assert names_given(volume) == []


def refused(job, seconds=120) -> str:
    start = time.monotonic()
    while job.poll().running:
        assert time.monotonic() - start < seconds, "the worker did not finish"
        time.sleep(0.1)
    return job.poll().error


def test_bad_names_are_refused_with_their_reason_and_change_nothing(shown):
    from CobbAngleLib.review import count_from_names, name_vertebra

    logic, volume, live = shown
    record, points = live.record(), live.points_px("landmarks").copy()
    with pytest.raises(ValueError, match="name a vertebra first"):
        count_from_names(logic, volume, logic.options(device="cpu"))
    t = truth()
    name_vertebra(volume, "T1", *t[11].mean(axis=0))  # T1 named low on the film, T12 high: the pipeline refuses
    name_vertebra(volume, "T12", *t[0].mean(axis=0))
    job = count_from_names(logic, volume, logic.options(device="cpu"), python=sys.executable)
    assert "T12 is named above T1" in refused(job)
    name_vertebra(volume, "T12", 5000, 300)
    assert "lies off the film" in refused(count_from_names(logic, volume, logic.options(device="cpu"), python=sys.executable))
    with pytest.raises(ValueError, match="landmark file"):
        count_from_names(logic, volume, logic.options(landmarks_file=str(FILM) + ".mat"))
    assert logic.find(volume) is live and live.record() == record
    np.testing.assert_array_equal(live.points_px("landmarks"), points)


def test_counting_from_names_asks_before_an_edited_result_and_puts_the_named_vertebrae_at_the_clicks(shown):
    from CobbAngleLib.files import report_line
    from CobbAngleLib.review import count_from_names, name_vertebra
    from MSKCommonLib.mrml import table_rows
    from MSKCommonLib.review import EditedResultExists

    logic, volume, live = shown
    t = truth()
    # the reader counts a level lower than the phantom's truth (and the network by itself, within 3 px
    # of the true T1 on this film): T1 named at the true T2, T12 at the true L1; the names rule the count
    clicks = {"T1": t[1].mean(axis=0), "T12": t[12].mean(axis=0)}
    for name, xy in clicks.items():
        name_vertebra(volume, name, *xy)
    # a corner moved by hand: the re-run asks first (keep / replace) and nothing changes
    node = live.node("landmarks")
    node.SetNthControlPointPosition(5, *np.add(node.GetNthControlPointPositionVector(5), (0, 4.0, 0)))
    assert live.edited()
    moved = live.points_px("landmarks").copy()
    with pytest.raises(EditedResultExists, match="moved by hand"):
        count_from_names(logic, volume, logic.options(device="cpu"))
    assert logic.find(volume) is live and live.edited()
    np.testing.assert_array_equal(live.points_px("landmarks"), moved)
    # the reader chooses to replace it: the network runs (worker process, as Apply) counting from the names
    job = count_from_names(logic, volume, logic.options(device="cpu"), on_existing="replace", python=sys.executable)
    now = logic.present(volume, finished(job), "replace")
    assert logic.find(volume) is now and not now.edited()
    assert len(logic.review.all(volume.GetScene(), volume)) == 1  # replaced, not beside it
    width = np.linalg.norm(t[:, 1] - t[:, 0], axis=1).mean()
    for name, xy in clicks.items():
        centre = np.mean([corner(now, f"{name} {c}") for c in ("sup-L", "sup-R", "inf-L", "inf-R")], axis=0)
        assert np.linalg.norm(centre - xy) < 0.25 * width, (name, centre, xy)
    t5 = np.mean([corner(now, f"T5 {c}") for c in ("sup-L", "sup-R", "inf-L", "inf-R")], axis=0)
    assert np.linalg.norm(t5 - t[5].mean(axis=0)) < 0.25 * width  # counted from the names: T5 on the true T6
    record = now.record()
    assert [n["vertebra"] for n in record["named_by_reader"]] == ["T1", "T12"]
    assert record["named_by_reader"][0]["x"] == pytest.approx(clicks["T1"][0], abs=1e-3)
    assert "counted from T1, T12 as named by the reader" in record["landmarks_from"]
    assert {r["Vertebrae named"] for r in table_rows(now.table)} == {"T1, T12 (by the reader)"}
    assert report_line(record).endswith("; vertebrae counted from T1, T12 (named by the reader)")
