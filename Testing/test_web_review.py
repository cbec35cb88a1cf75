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
    proc = subprocess.Popen([sys.executable, "-m", "MSKCommonLib.cli", "review", str(folder), "--out", str(out),
                             "--dicom", "--editor", "Jane Doe"],
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
    # --dicom: Accept wrote the SR (on a Secondary Capture of the PNG) and the vertebra SEG too
    from dicom_checks import read_sr

    for suffix in ("_sr.dcm", "_seg.dcm", "_sc.dcm"):
        assert (server["out"] / f"SpinePhantom_AP{suffix}").is_file(), suffix
    groups = {g["tracking"].split()[0]: g["measurements"]["Cobb angle"]["value"]
              for g in read_sr(server["out"] / "SpinePhantom_AP_sr.dcm")}
    assert groups == pytest.approx({c["name"]: c["angle_deg"] for c in accepted["curves"] if c["angle_deg"] is not None},
                                   abs=0.01)


def test_dragging_a_corner_in_the_view_moves_it_and_the_angle_follows(server):
    """Runs after the test above (same server: the sample is measured). The user drags one corner
    with the mouse; the point ends where the mouse did, the table shows the angle the geometry
    gives for the moved corners, the point is listed as edited, and Accept writes it."""
    import numpy as np

    from CobbAngleLib import geometry
    from MSKCommonLib.headless import make_app
    from MSKCommonLib.mrml import read_node

    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(server["url"])
        page.wait_for_selector("#worklist .worklist-item")
        page.locator("#worklist .worklist-item", has_text="SpinePhantom_AP.png").click()
        page.wait_for_function("document.querySelector('#measurements').innerText.length > 0", timeout=30_000)
        time.sleep(2)
        geo = json.loads(page.inner_text("#view-geometry", timeout=5000) or page.evaluate(
            "document.querySelector('#view-geometry').textContent"))
        before = json.loads((server["out"] / "SpinePhantom_AP_cobb.json").read_text())
        from CobbAngleLib.review import CORNER_LABELS

        corners = np.asarray([before["landmarks_px"][label] for label in CORNER_LABELS], dtype=float)
        assert len(corners) == 68
        # T4 sup-L: on the upper endplate of the sample's MT curve; this drag steepens it, so T4
        # stays the end vertebra (the other corner's drag hands the curve to T5 on the way)
        index = 3 * 4 + 1
        xy_to_ras = np.array(geo["xy_to_ras"])
        ijk_to_ras = np.array(geo["ijk_to_ras"])
        ras = ijk_to_ras @ [corners[index, 0], corners[index, 1], 0, 1]
        xy = np.linalg.solve(xy_to_ras, ras)
        img = page.locator("#view img").first
        box = img.bounding_box()
        scale = geo["size"][0] / box["width"]
        sx, sy = box["x"] + xy[0] / scale, box["y"] + box["height"] - xy[1] / scale
        dx, dy = 25, 10
        page.mouse.move(sx, sy)
        page.mouse.down()
        for step in range(1, 11):  # as a user drags: the server takes each move before the next
            page.mouse.move(sx + dx * step / 10, sy + dy * step / 10)
            time.sleep(0.15)
        time.sleep(0.5)
        page.mouse.up()
        page.wait_for_function("document.querySelector('#edited').innerText.length > 'Edited: '.length", timeout=20_000)
        edited = page.inner_text("#edited")
        table = page.inner_text("#measurements")
        for _ in range(20):  # the server measures each move in turn: read the table once it has settled
            time.sleep(0.5)
            settled = page.inner_text("#measurements")
            if settled == table:
                break
            table = settled
        page.click("#accept")
        page.wait_for_function("document.querySelector('#message').innerText.startsWith('Accepted')")
        browser.close()
    # Slicer's markups widget moves a grabbed point by the mouse's displacement: in film pixels
    delta = np.linalg.solve(ijk_to_ras, xy_to_ras @ [dx * scale, -dy * scale, 0, 0])[:2]
    expected = corners[index] + delta
    film_px_per_screen_px = np.linalg.norm(np.linalg.solve(ijk_to_ras, xy_to_ras @ [scale, 0, 0, 0])[:2])
    app = make_app()
    node = read_node(app.scene, "vtkMRMLMarkupsFiducialNode", server["out"] / "SpinePhantom_AP_landmarks.mrk.json")
    p_ras = np.array(node.GetNthControlPointPositionWorld(index))
    moved = np.linalg.solve(ijk_to_ras, [*p_ras, 1])[:2]
    assert np.linalg.norm(moved - expected) <= max(1.0, film_px_per_screen_px) + 1e-6, (moved, expected, corners[index], delta)
    assert np.linalg.norm(moved - corners[index]) > 5  # it really moved
    assert geometry.corner_label(3, 1) in edited
    points = corners.copy()
    points[index] = moved
    after = json.loads((server["out"] / "SpinePhantom_AP_cobb.json").read_text())
    m = geometry.cobb_angles(points.reshape(17, 4, 2), after["convention"], image_height=after["image_size_px"][1],
                             spacing_mm=after.get("pixel_spacing_mm"))
    shown = {line.split(" | ")[0]: float(line.split(" | ")[2]) for line in table.splitlines() if line.count(" | ") > 3}
    for curve in m.to_dict()["curves"]:  # the corners in the record are rounded to 0.001 px: 0.02 deg
        if curve.get("angle_deg") is not None:
            assert abs(shown[curve["name"]] - curve["angle_deg"]) <= 0.02, (curve, shown)
    assert [c["angle_deg"] for c in after["curves"]] != [c["angle_deg"] for c in before["curves"]]
    # the SR Accept wrote holds the moved corner's angles, the moved point and the reviewer
    from dicom_checks import person_observers, read_sr

    groups = {g["tracking"].split()[0]: g for g in read_sr(server["out"] / "SpinePhantom_AP_sr.dcm")}
    for curve in after["curves"]:
        if curve.get("angle_deg") is not None:
            assert groups[curve["name"]]["measurements"]["Cobb angle"]["value"] == pytest.approx(curve["angle_deg"],
                                                                                                 abs=0.01)
            assert geometry.corner_label(3, 1) in groups[curve["name"]]["texts"]["Points edited by hand"]
    assert person_observers(server["out"] / "SpinePhantom_AP_sr.dcm") == ["Doe^Jane"]


def test_a_second_browser_session_sees_the_same_worklist(server):
    """Runs after the tests above: the sample was accepted in another session."""
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        first, second = browser.new_page(), browser.new_page()
        for page in (first, second):
            page.goto(server["url"])
            page.wait_for_selector("#worklist .worklist-item")
        assert "SpinePhantom_AP.png: accepted" in second.inner_text("#worklist")
        assert first.inner_text("#worklist") == second.inner_text("#worklist")
        browser.close()
