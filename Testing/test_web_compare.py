"""``mskmorph compare ... --review`` in headless Chromium: the phantom spine at two times side by side
in two Slicer slice views; dragging a corner of the current film's upper end vertebra changes the
follow-up table at once (the change, and the interval: a reader moved a point), and Accept writes
the files ``mskmorph compare`` writes, with the moved point."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from browser import CHROMIUM, drag, mskmorph_server
from dicom_checks import require_tool

URL = re.compile(r"mskmorph compare: (http://\S+)")


def compare_server(*args):
    return mskmorph_server(["compare", *args, "--review"], URL)


def rows(page) -> dict:
    return page.evaluate("""() => Object.fromEntries(Array.from(document.querySelectorAll('#follow-up tbody tr')).map(
        tr => [tr.cells[0].innerText.trim(), Array.from(tr.cells).map(c => c.innerText.trim())]))""")


def screen_of(page, label, px):
    """Screen position of film pixel ``px`` in the view ``label`` (Red: prior, Yellow: current)."""
    geo = json.loads(page.evaluate("document.querySelector('#view-geometry').textContent"))[label]
    xy_to_ras, ijk_to_ras = np.array(geo["xy_to_ras"]), np.array(geo["ijk_to_ras"])
    images = page.locator("#view img")
    boxes = [images.nth(i).bounding_box() for i in range(images.count())]
    box = sorted(boxes, key=lambda b: b["x"])[0 if label == "Red" else 1]
    scale = geo["size"][0] / box["width"]
    xy = np.linalg.solve(xy_to_ras, ijk_to_ras @ [px[0], px[1], 0, 1])
    return box["x"] + xy[0] / scale, box["y"] + box["height"] - xy[1] / scale


def test_the_pair_side_by_side_and_a_dragged_corner_changes_the_follow_up(tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    require_tool("chromium")
    from CobbAngleTools.phantom import render_follow_up, write_follow_up

    pair = write_follow_up(render_follow_up(0, 8.0), tmp_path / "phantom", "spine")
    truth = json.loads(pair["truth"].read_text())["curves"]["MT"]
    current_lm = np.array(json.loads(pair["current"]["truth"].read_text())["landmarks_px"]).reshape(17, 4, 2)
    out = tmp_path / "out"
    with compare_server(pair["prior"]["image"], pair["current"]["image"], "--out", out,
                        "--prior-landmarks", pair["prior"]["landmarks"],
                        "--current-landmarks", pair["current"]["landmarks"]) as (url, _), \
            playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1500, "height": 950})
        page.goto(url)
        page.wait_for_function("document.querySelectorAll('#follow-up tbody tr').length === 3", timeout=60_000)
        page.wait_for_function("document.querySelectorAll('#view img').length === 2", timeout=60_000)
        # the views' geometry once the browser has sized them (published when a view changes)
        page.wait_for_function("() => { const g = JSON.parse(document.querySelector('#view-geometry').textContent "
                               "|| '{}'); const i = document.querySelector('#view img'); return g.Yellow && i && "
                               "Math.abs(g.Yellow.size[0] - i.getBoundingClientRect().width) < 2; }", timeout=30_000)
        page.wait_for_timeout(1000)
        before = rows(page)["MT"]
        assert before[1] == "-".join(truth["end_vertebrae"]) and before[6] == "progressed"
        assert float(before[4]) == pytest.approx(8.0, abs=0.05)
        # drag the current film's upper end vertebra's superior-left corner down by 30 film pixels
        upper = ["T1", "T2", "T3", "T4", "T5", "T6", "T7", "T8", "T9", "T10", "T11", "T12"].index(truth["end_vertebrae"][0])
        corner = current_lm[upper, 1]
        start = screen_of(page, "Yellow", corner)
        below = screen_of(page, "Yellow", corner + [0, 30])
        drag(page, start, below[0] - start[0], below[1] - start[1])
        page.wait_for_function(f"() => {{ const r = Array.from(document.querySelectorAll('#follow-up tbody tr'))"
                               f".find(t => t.cells[0].innerText.trim() === 'MT'); "
                               f"return r && r.cells[4].innerText.trim() !== {before[4]!r}; }}", timeout=30_000)
        after = rows(page)["MT"]
        assert abs(float(after[4]) - float(before[4])) > 1.0  # the endplate tilted: the change moved
        page.click("#accept")
        page.wait_for_function("document.querySelector('#message').innerText.startsWith('Accepted')", timeout=30_000)
        browser.close()
    result = json.loads((out / "follow_up.json").read_text())
    mt = next(c for c in result["curves"] if c["name"] == "MT")
    assert f"{mt['change_deg']:+.1f}" == (after[4] if after[4].startswith("-") else "+" + after[4].lstrip("+"))
    record = json.loads((out / "current_cobb.json").read_text())
    assert any(label.startswith(truth["end_vertebrae"][0]) for label in record["review"]["edited_points"]["landmarks"])
    assert (out / "follow_up.png").is_file() and (out / "follow_up_sr.dcm").is_file()
