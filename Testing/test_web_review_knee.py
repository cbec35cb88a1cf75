"""The browser review of a knee film (``mskmorph review --module knee``) in headless Chromium: the
generated bilateral DICOM film measured in the worker process, landmarks, contours and JSW lines
drawn in the slice view, JSW per knee in the table; the user drags a tibial point with the mouse:
the point moves by the dragged amount, the JSW in the table is what ``KneeLandmarksLib.measure``
gives for the moved point, the point is marked edited and Accept writes it."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

playwright = pytest.importorskip("playwright.sync_api")
pytest.importorskip("trame_slicer")
from browser import (CHROMIUM, ViewGeometry, accept, browser_page, drag, measure, open_film, read_points,  # noqa: E402
                     review_server, status, table, table_shows, view_image, view_settles)

if not Path(CHROMIUM).exists():
    pytest.skip("Debian's chromium is not installed (.ci/setup installs it)", allow_module_level=True)

FILM = "knee_002_0000.dcm"
STEM = "knee_002_0000"


@pytest.fixture(scope="module")
def film(tmp_path_factory):
    from KneeLandmarksTools import phantom

    folder = tmp_path_factory.mktemp("knee")
    phantom.generate(folder, n=1, seed=2, single_knee_fraction=0.0, spacing_range=(0.3, 0.3))
    return folder / FILM


def test_dragging_a_tibial_point_moves_it_and_the_jsw_follows(film, tmp_path):
    from KneeLandmarksLib import measure as knee_measure
    from KneeLandmarksLib.landmarks import LANDMARK_LABELS

    out = tmp_path / "accepted"
    with review_server(film, "--module", "knee", "--out", out, "--reviewer", "Ann Lee") as (url, _), browser_page(playwright, url) as page:
        empty = view_image(page).astype(float)
        open_film(page, FILM)
        measure(page, key="m")  # the keyboard shortcuts M and A
        drawn = view_settles(page, lambda image: image.std() > 20 and np.abs(image - empty).mean() > 10)
        assert drawn.std() > 20 and np.abs(drawn - empty).mean() > 10
        rows = {r["Knee"]: r for r in table(page)}
        assert sorted(rows) == ["left", "right"]
        accept(page, key="a")  # the network's result, to read its points back
        computed = json.loads((out / f"{STEM}_knee.json").read_text())
        knee = next(k for k in computed["knees"] if k["side"] == "right")
        for side, row in rows.items():
            k = next(k for k in computed["knees"] if k["side"] == side)
            assert row["Medial JSW (mm)"] == f"{k['jsw_medial_mm']:.2f}"
            assert row["Lateral JSW (mm)"] == f"{k['jsw_lateral_mm']:.2f}"
        points = np.array([knee["landmarks_px"][label] for label in LANDMARK_LABELS])
        # the medial tibial landmark (T7..T9) nearest the medial JSW line's tibial end
        tibial_end = np.array(knee["jsw_medial_points_px"][1])
        index = 6 + int(np.argmin(np.linalg.norm(points[6:9] - tibial_end, axis=1)))
        view = ViewGeometry(page)
        dx, dy = 0, -4  # up, toward the femur: the joint space narrows
        drag(page, view.screen(points[index]), dx, dy, steps=4)
        page.wait_for_function("document.querySelector('#edited').innerText.length > 'Edited: '.length", timeout=20_000)
        assert status(page, FILM) == "edited"
        accept(page)
        written = {k["side"]: f"{k['jsw_medial_mm']:.2f}" for k in json.loads((out / f"{STEM}_knee.json").read_text())["knees"]}
        moved_rows = {r["Knee"]: r for r in table_shows(page, written, "Knee", "Medial JSW (mm)")}
        edited = page.inner_text("#edited")
        listed = " ".join(page.locator(".edited-point").all_inner_texts())
    spacing = computed["pixel_spacing_mm"]
    moved = np.array([view.pixels(p) for p in read_points(out / f"{STEM}_right_knee.mrk.json")])
    expected = points[index] + view.film_delta(dx, dy)
    assert np.linalg.norm(moved[index] - expected) <= max(1.0, view.film_px_per_screen_px) + 1e-3, (moved[index], expected)
    assert np.linalg.norm(moved[index] - points[index]) > 2  # it really moved
    others = np.delete(np.arange(16), index)
    assert np.abs(moved[others] - points[others]).max() < 0.01  # and only it
    assert LANDMARK_LABELS[index] in edited and LANDMARK_LABELS[index] in listed  # listed with jump-to and reset
    m = knee_measure.joint_space_width(moved, "right", spacing)
    assert abs(float(moved_rows["right"]["Medial JSW (mm)"]) - m.medial_mm) <= 0.006, (moved_rows["right"], m.medial_mm)
    assert abs(float(moved_rows["right"]["Lateral JSW (mm)"]) - m.lateral_mm) <= 0.006
    assert m.medial_mm < knee["jsw_medial_mm"] - 0.2  # narrower, as dragged
    assert moved_rows["left"] == rows["left"]  # the other knee untouched
    after = json.loads((out / f"{STEM}_knee.json").read_text())
    right = next(k for k in after["knees"] if k["side"] == "right")
    assert right["jsw_medial_mm"] == pytest.approx(m.medial_mm, abs=1e-3)
    assert after["review"]["edited_points"] == {"right.landmarks": [LANDMARK_LABELS[index]]}
    assert after["review"]["accepted_by"] == "Ann Lee" and after["review"]["accepted_at"].endswith("Z")  # signed
    assert "Ann Lee" in (out / "knee.csv").read_text().splitlines()[1]
    assert "knee_002_0000.dcm" in (out / "knee.csv").read_text()


def test_a_knee_png_without_spacing_is_measured_after_typing_its_spacing(film, tmp_path):
    """A PNG states no pixel spacing: Measure says so (refused, with the reason), the page has a
    field for it and a calibration line (two clicks over an object of known length); typed in, the
    film measures as ``mskmorph knee --spacing`` does."""
    import cv2
    import pydicom

    from MSKCommonLib.cli import main

    png = tmp_path / "knee.png"
    cv2.imwrite(str(png), pydicom.dcmread(film).pixel_array)
    cli = tmp_path / "cli"
    assert main(["knee", str(png), "--out", str(cli), "--spacing", "0.3", "--device", "cpu", "--no-overlay"]) == 0
    expected = {k["side"]: f"{k['jsw_medial_mm']:.2f}" for k in json.loads((cli / "knee_knee.json").read_text())["knees"]}
    with review_server(png, "--module", "knee", "--out", tmp_path / "out") as (url, _), browser_page(playwright, url) as page:
        open_film(page, png.name)
        assert page.locator("#spacing").count() == 1
        page.click("#measure")
        page.wait_for_function("document.querySelector('#message').innerText.includes('spacing')", timeout=300_000)
        assert status(page, png.name) == "refused"
        # the long reason wraps inside the bar: the header keeps its height, nothing leaves the window
        bar = page.evaluate("(() => { const m = document.querySelector('#message').getBoundingClientRect(); "
                            "const h = document.querySelector('header').getBoundingClientRect(); "
                            "return [m.right, window.innerWidth, h.height]; })()")
        assert bar[0] <= bar[1] and bar[2] <= 80, bar
        reason = page.locator("#worklist .worklist-item", has_text=png.name).locator(".reason").inner_text()
        assert "spacing" in reason
        # the calibration tool: a line over an object of known length (here 400 film pixels = 120 mm)
        view = ViewGeometry(page)
        page.click("#calibrate")
        page.wait_for_timeout(500)
        for px in ((150, 300), (550, 300)):
            page.mouse.move(*view.screen(px))
            page.wait_for_timeout(300)
            page.mouse.click(*view.screen(px))
            page.wait_for_timeout(700)
        page.wait_for_function("document.querySelector('#message').innerText.includes('pixels long')", timeout=20_000)
        page.fill("#calibration-mm", "120")
        page.click("#use-calibration")
        page.wait_for_function("document.querySelector('#message').innerText.startsWith('Pixel spacing')", timeout=20_000)
        calibrated = float(page.input_value("#spacing"))
        assert calibrated == pytest.approx(0.3, rel=0.01 + view.film_px_per_screen_px / 400)
        page.fill("#spacing", "0.3")  # typed: the same spacing as the command line's
        measure(page)
        assert status(page, png.name) == "measured"
        assert page.locator("#worklist .worklist-item", has_text=png.name).locator(".reason").count() == 0
        shown = {r["Knee"]: r["Medial JSW (mm)"] for r in table(page)}
    assert shown == expected
