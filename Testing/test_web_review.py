"""The browser review (``mskmorph review``) in headless Chromium: the worklist with a corrupt
file's reason, the film in the Slicer slice view, Measure in the worker process and the same
angles as ``mskmorph cobb``, Accept writing the module's files."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, SAMPLE_DATA

playwright = pytest.importorskip("playwright.sync_api")
pytest.importorskip("trame_slicer")
CHROMIUM = "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip("Debian's chromium is not installed (.ci/setup installs it)", allow_module_level=True)

SAMPLE = SAMPLE_DATA / "SpinePhantom_AP.png"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("films")
    shutil.copy(SAMPLE, folder / SAMPLE.name)
    (folder / "broken.png").write_bytes(b"not an image at all")
    out = tmp_path_factory.mktemp("accepted")
    env = dict(os.environ, VTK_DEFAULT_OPENGL_WINDOW="vtkEGLRenderWindow", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(str(REPO / p) for p in ("MSKCommon", "CobbAngle", "KneeLandmarks", "SpineMorphology")))
    proc = subprocess.Popen([sys.executable, "-m", "MSKCommonLib.cli", "review", str(folder), "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    url = None
    for line in proc.stdout:
        m = re.search(r"mskmorph review: (http://\S+)", line)
        if m:
            url = m.group(1)
            break
    assert url, "the command printed no URL"
    yield {"url": url, "out": out, "folder": folder}
    proc.terminate()
    proc.wait(10)


def test_the_page_measures_the_sample_like_the_cli_and_shows_the_corrupt_files_reason(server, tmp_path):
    from MSKCommonLib.cli import main

    assert main(["cobb", str(SAMPLE), "--out", str(tmp_path / "cli"), "--no-overlay", "--device", "cpu"]) == 0
    cli = json.loads((tmp_path / "cli" / "SpinePhantom_AP_cobb.json").read_text())
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(server["url"])
        page.wait_for_selector("#worklist .worklist-item")
        worklist = page.inner_text("#worklist")
        assert "broken.png: refused" in worklist
        assert "broken.png" in worklist and len(page.locator("#worklist .reason").all_inner_texts()[0]) > 0
        empty = page.locator("#view").screenshot()
        page.locator("#worklist .worklist-item", has_text="SpinePhantom_AP.png").click()
        time.sleep(2)
        film = page.locator("#view").screenshot()
        assert film != empty
        page.click("#measure")
        page.wait_for_function("document.querySelector('#worklist').innerText.includes('measured')", timeout=300_000)
        page.wait_for_function("document.querySelector('#measurements').innerText.length > 0", timeout=30_000)
        table = page.inner_text("#measurements")
        for curve in cli["curves"]:
            if curve.get("angle_deg") is not None:
                assert f"{curve['angle_deg']:.2f}" in table, (curve, table)
        page.click("#accept")
        page.wait_for_function("document.querySelector('#message').innerText.startsWith('Accepted')")
        shot = REPO / "Resources" / "Screenshots" / "web_review.png"
        shot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shot))
        browser.close()
    accepted = json.loads((server["out"] / "SpinePhantom_AP_cobb.json").read_text())
    assert [c.get("angle_deg") for c in accepted["curves"]] == [c.get("angle_deg") for c in cli["curves"]]
    assert (server["out"] / "SpinePhantom_AP_landmarks.mrk.json").is_file()
    assert "SpinePhantom_AP.png" in (server["out"] / "cobb.csv").read_text()
