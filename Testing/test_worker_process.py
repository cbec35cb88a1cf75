"""The worker process the Slicer widgets (and the browser review) run the networks in, started
exactly as they start it (here with this Python instead of Slicer's PythonSlicer), on a volume
node saved as they save it: it gives the command line's result; Cancel ends it at once and leaves
nothing behind."""
from __future__ import annotations

import json
import sys
import time

import pytest

from MSKCommonLib.cli import main
from MSKCommonLib.logic import ModuleLogic
from conftest import SAMPLE_DATA, load_like_slicer

SAMPLE = SAMPLE_DATA / "SpinePhantom_AP.png"


def wait(job, seconds=120):
    start = time.monotonic()
    while job.poll().running:
        assert time.monotonic() - start < seconds, "the worker did not finish"
        time.sleep(0.05)
    return job.poll()


def test_the_worker_gives_the_command_lines_result(slicer_app, tmp_path):
    out = tmp_path / "cli"
    assert main(["cobb", str(SAMPLE), "--out", str(out), "--no-overlay", "--device", "cpu"]) == 0
    cli = json.loads((out / "SpinePhantom_AP_cobb.json").read_text())

    logic = ModuleLogic("cobb")
    volume = load_like_slicer(slicer_app, SAMPLE)
    job = logic.start_job(logic.read(volume), logic.options(device="cpu"), python=sys.executable)
    seen = []
    while (state := job.poll()).running:
        seen.append(state.message)
        time.sleep(0.02)
    state = wait(job)
    assert state.error is None and not state.cancelled
    assert not job.folder.exists()  # its folder is removed when it ends
    live = logic.present(volume, job.result())
    record = live.record()
    logic.cleanup()
    for key in ("curves", "landmarks_px", "warning", "network_angles_deg", "pixel_spacing_mm", "convention"):
        assert record[key] == cli[key], key
    assert any(m for m in seen), "the worker reports its progress"


def test_a_refusal_in_the_worker_comes_back_as_its_reason(slicer_app, tmp_path):
    import numpy as np

    from MSKCommonLib.image import image_from_array

    logic = ModuleLogic("knee")
    job = logic.start_job(image_from_array(np.eye(200, dtype=np.float32), None, "film.png"), python=sys.executable)
    state = wait(job)
    assert state.error and "does not state its pixel spacing" in state.error


def test_cancel_ends_the_process_within_a_second_and_leaves_nothing(slicer_app):
    logic = ModuleLogic("cobb")
    volume = load_like_slicer(slicer_app, SAMPLE)
    n_nodes = slicer_app.scene.GetNumberOfNodes()
    job = logic.start_job(logic.read(volume), logic.options(device="cpu"), python=sys.executable)
    # the worker needs about 2 s to import its libraries and the network and measure the sample
    # (ONNX Runtime): cancel it well inside that
    time.sleep(0.3)
    assert job.poll().running
    start = time.monotonic()
    job.cancel()
    assert time.monotonic() - start < 1.0
    assert job.process.poll() is not None  # the process is gone
    assert job.poll().cancelled and not job.folder.exists()
    assert slicer_app.scene.GetNumberOfNodes() == n_nodes
    with pytest.raises(RuntimeError):
        job.result()  # a cancelled job has no result to show
