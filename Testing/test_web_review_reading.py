"""The browser review as a radiologist reads and signs a film (issue 26), in headless Chromium on
real trame-slicer views, at 1280 x 720: a film whose corners are given (``--landmarks``, a spine
with one main thoracic curve, so PT and TL/L are "no curve"), and the same spine cut above T6 (a
partial film: only T6-L5 shown, offered as end vertebrae and written on Accept); window/level on a left-drag away from
the points, the wheel zooming at the cursor, the level labels and angle texts in the view (and
gone when toggled off), the table with every column visible, end vertebrae chosen and kept while a
corner is dragged, undo to the exact previous position, Accept that needs a confirmation of the
open CHECK and writes the reviewer and the time, and an SR VERIFIED by that reviewer."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest

from conftest import synthetic_spine

playwright = pytest.importorskip("playwright.sync_api")
pytest.importorskip("trame_slicer")
from browser import (CHROMIUM, ViewGeometry, accept, browser_page, drag, measure, open_film, read_points,  # noqa: E402
                     review_server, status, steady, table, table_shows, view_image, view_settles, warnings)

if not Path(CHROMIUM).exists():
    pytest.skip("Debian's chromium is not installed (.ci/setup installs it)", allow_module_level=True)

C_CURVE = [10] * 5 + [5, 0, -5] + [-10] * 9  # one main thoracic curve T1-T9: PT and TL/L are straight
VIEWPORT = (1280, 720)


def constructed_film(folder: Path):
    """A film of the spine C_CURVE (vertebrae drawn on a darker, noisy background) and its corners
    as ``<film>.mat`` in a landmarks folder."""
    import cv2
    import scipy.io

    corners = synthetic_spine(C_CURVE)
    pixels = np.random.default_rng(7).normal(60, 12, (2300, 900)).clip(0, 255).astype(np.uint8)
    for q in corners:
        cv2.fillPoly(pixels, [q[[0, 1, 3, 2]].round().astype(np.int32)], 185)
    films, marks = folder / "films", folder / "landmarks"
    films.mkdir()
    marks.mkdir()
    cv2.imwrite(str(films / "single.png"), pixels)
    scipy.io.savemat(marks / "single.png.mat", {"p2": corners.reshape(68, 2)})
    # a partial film: the same spine cut above T6 (T1-T5 are NaN in its corners, as the predictor gives them)
    partial = corners.copy()
    partial[:5] = np.nan
    cut = pixels.copy()
    cut[:int(np.ceil(np.nanmax(corners[4, :, 1]))) + 5] = 60
    cv2.imwrite(str(films / "partial.png"), cut)
    scipy.io.savemat(marks / "partial.png.mat", {"p2": partial.reshape(68, 2)})
    return films / "single.png", marks, corners


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("reading")
    film, marks, corners = constructed_film(folder)
    out = folder / "accepted"
    with review_server(film.parent, "--landmarks", marks, "--out", out, "--dicom", "--reviewer", "Jane Doe") as (url, _):
        yield {"url": url, "out": out, "corners": corners}


def rows(page) -> dict:
    return {r["Curve"]: r for r in table(page)}


def opened(page):
    open_film(page, "single.png")
    measure(page)
    return view_settles(page, steady())


def test_reading_a_film_labels_no_curve_window_level_zoom_and_a_table_that_fits(server):
    with browser_page(playwright, server["url"], viewport=VIEWPORT) as page:
        film = opened(page)
        # "no curve": an empty angle and the status, never 0.0; the main thoracic curve measured
        shown = rows(page)
        assert (shown["PT"]["Angle (deg)"], shown["PT"]["Role"]) == ("", "no curve")
        assert (shown["TL_L"]["Angle (deg)"], shown["TL_L"]["Role"]) == ("", "no curve")
        assert shown["MT"]["Angle (deg)"] == "20.00" and (shown["MT"]["Upper"], shown["MT"]["Lower"]) == ("T1", "T9")
        # every column visible beside the film at 1280 x 720: no horizontal scrolling
        widths = page.evaluate("(() => { const t = document.querySelector('#measurements'); "
                               "const d = t.parentElement; return [d.scrollWidth, d.clientWidth, "
                               "t.getBoundingClientRect().right, window.innerWidth]; })()")
        assert widths[0] <= widths[1] and widths[2] <= widths[3], widths
        # the level labels and the angle text are in the view: toggled off, the view changes there
        for toggle in ("#show-labels", "#show-angles"):
            page.click(toggle)
            without = view_settles(page, lambda image: np.abs(image - film).mean() > 0.3)
            changed = np.abs(without - film).mean(axis=2) > 40
            assert changed.sum() > 300, (toggle, changed.sum())
            page.click(toggle)
            film = view_settles(page, lambda image: np.abs(image - without).mean() > 0.3)
        # the hint line is on the page, the slice slider is not
        assert "wheel: zoom" in page.inner_text("#hint")
        assert page.locator("#view .v-slider, #view input[type=range]").count() == 0
        # window/level: a left-drag on the film away from any point changes the view, moves no point
        view = ViewGeometry(page)
        start = view.screen(server["corners"][12].mean(axis=0) + [250, 0])  # beside L1, on the background
        drag(page, start, 60, 80)
        leveled = view_settles(page, lambda image: np.abs(image - film).mean() > 3)
        assert np.abs(leveled - film).mean() > 3
        assert page.inner_text("#edited").strip() == "Edited:" and status(page, "single.png") == "measured"
        # presets and invert
        page.select_option("#window-preset", "full range")
        view_settles(page, lambda image: np.abs(image - leveled).mean() > 1)
        page.click("#invert")
        inverted = view_settles(page, lambda image: np.abs(image - leveled).mean() > 20)
        assert np.abs(inverted - leveled).mean() > 20
        page.click("#invert")
        # the wheel zooms, keeping the film pixel under the cursor where it is
        before = ViewGeometry(page)
        cursor = before.screen(server["corners"][8, 0])
        page.mouse.move(*cursor)
        page.mouse.wheel(0, -120)
        page.wait_for_function("g => document.querySelector('#view-geometry').textContent !== g",
                               arg=page.evaluate("document.querySelector('#view-geometry').textContent"), timeout=20_000)
        page.wait_for_timeout(500)
        after = ViewGeometry(page)
        assert after.film_px_per_screen_px < 0.9 * before.film_px_per_screen_px  # zoomed in
        assert np.linalg.norm(np.subtract(after.screen(server["corners"][8, 0]), cursor)) < 3
        page.click("#fit")
        page.wait_for_timeout(1000)
        assert ViewGeometry(page).film_px_per_screen_px == pytest.approx(before.film_px_per_screen_px, rel=0.02)
        # a curve the automatic search missed, added by clicking its end vertebrae on the film
        from CobbAngleLib import geometry

        page.click("#pick-TL_L")
        fitted = ViewGeometry(page)
        for vertebra in (15, 11):  # L4, then T12: either order
            page.mouse.click(*fitted.screen(server["corners"][vertebra].mean(axis=0)))
            page.wait_for_timeout(800)
        page.wait_for_function("document.querySelector('#message').innerText.includes('T12-L4 chosen')", timeout=20_000)
        added = geometry.curve_between(server["corners"], "TL_L", 11, 15).angle_deg
        table_shows(page, {"TL_L": f"{added:.2f}"}, "Curve", "Angle (deg)")
        tl = rows(page)["TL_L"]
        assert (tl["Angle (deg)"], tl["Upper"], tl["Lower"]) == (f"{added:.2f}", "T12", "L4")
        assert tl["Role"].endswith("ends chosen by the reader")
        assert status(page, "single.png") == "measured"  # the clicks picked, they moved no point
        page.select_option("#upper-TL_L", "")  # back to the automatic choice: no curve
        page.wait_for_function("document.querySelector('#message').innerText.includes('automatic')", timeout=20_000)
        assert rows(page)["TL_L"]["Role"] == "no curve"


def test_chosen_end_vertebrae_hold_during_a_drag_undo_restores_and_accept_signs(server):
    """Runs after the test above (same server, the film measured)."""
    from CobbAngleLib import geometry
    from CobbAngleLib.review import CORNER_LABELS
    from dicom_checks import dciodvfy_errors, person_observers

    out = server["out"]
    with browser_page(playwright, server["url"], viewport=VIEWPORT) as page:
        open_film(page, "single.png")
        if status(page, "single.png") == "new":  # run alone
            measure(page)
        page.wait_for_function("document.querySelectorAll('#measurements tbody tr').length > 0", timeout=30_000)
        # the reader chooses T2-T10 for the main thoracic curve
        page.select_option("#upper-MT", "T2")
        page.wait_for_function("document.querySelector('#message').innerText.includes('T2-T9')", timeout=20_000)
        page.select_option("#lower-MT", "T10")
        page.wait_for_function("document.querySelector('#message').innerText.includes('T2-T10 chosen')", timeout=20_000)
        chosen = geometry.curve_between(server["corners"], "MT", 1, 9).angle_deg
        table_shows(page, {"MT": f"{chosen:.2f}"}, "Curve", "Angle (deg)")
        assert rows(page)["MT"]["Angle (deg)"] == f"{chosen:.2f}" and rows(page)["MT"]["Upper"] == "T2"
        # a drag of T5's sup-L corner down: the automatic choice would take T5, the chosen ends stay
        index = CORNER_LABELS.index("T5 sup-L")
        view = ViewGeometry(page)
        down = round(40 / view.film_px_per_screen_px)  # about 40 film pixels: T5's endplate tilts, T5 stays below T4
        drag(page, view.screen(server["corners"][4, 1]), 0, down)
        page.wait_for_function("document.querySelector('#edited').innerText.includes('T5 sup-L')", timeout=20_000)
        assert page.locator(".edited-point").all_inner_texts()[0].startswith("T5 sup-L")
        moved = server["corners"].reshape(68, 2).copy()
        moved[index] += view.film_delta(0, down)
        assert geometry.cobb_angles(moved.reshape(17, 4, 2)).curve("MT").upper_end_vertebra != "T2"
        dragged_shown = rows(page)["MT"]
        assert (dragged_shown["Upper"], dragged_shown["Lower"]) == ("T2", "T10")
        # undo (Ctrl+Z): the corner back exactly, the angle as before the drag; redo brings it again
        page.focus("#lower-MT")  # the last control used: the keys still undo there
        page.keyboard.press("Control+z")
        page.wait_for_function("document.querySelector('#edited').innerText.trim() === 'Edited:'", timeout=20_000)
        table_shows(page, {"MT": f"{chosen:.2f}"}, "Curve", "Angle (deg)")
        assert rows(page)["MT"]["Angle (deg)"] == f"{chosen:.2f}"
        page.keyboard.press("Control+Shift+z")
        page.wait_for_function("document.querySelector('#edited').innerText.includes('T5 sup-L')", timeout=20_000)
        # back to the automatic choice for MT: the drag hands the curve to T5, which the page says (a CHECK)
        page.select_option("#upper-MT", "")
        page.wait_for_function("document.querySelector('#message').innerText.includes('automatic')", timeout=20_000)
        assert any("MT: the automatic choice changed it from T1-T9" in w for w in warnings(page)), warnings(page)
        # Accept asks to confirm that CHECK, then signs
        page.fill("#reviewer", "Jane Doe")
        asked = accept(page)
        assert any("MT: the automatic choice changed it" in a for a in asked), asked
        assert status(page, "single.png") == "accepted"
        report = page.inner_text("#report")
        assert report.startswith("single.png: Cobb angles (clinical convention): PT no curve; MT ")
        assert "TL/L no curve" in report and "Accepted by Jane Doe, 20" in report
        signed = page.inner_text("#signed")
    record = json.loads((out / "single_cobb.json").read_text())
    review = record["review"]
    assert review["accepted_by"] == "Jane Doe" and review["accepted_at"] in signed and review["accepted_at"].endswith("Z")
    assert any("MT: the automatic choice changed it" in c for c in review["checks_acknowledged"])
    assert review["edited_points"] == {"landmarks": ["T5 sup-L"]}
    points = view.pixels(read_points(out / "single_landmarks.mrk.json")[index])
    assert np.linalg.norm(points - moved[index]) <= max(1.0, view.film_px_per_screen_px) + 1e-6
    with open(out / "cobb.csv", newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert row["accepted_by"] == "Jane Doe" and row["accepted_at"] == review["accepted_at"]
    assert row["PT"] == "" and row["PT_status"] == "no curve"
    assert (out / "single_report.txt").read_text().strip() == report.strip()
    sr = out / "single_sr.dcm"
    assert dciodvfy_errors(sr) == []
    ds = pydicom.dcmread(sr)
    assert ds.VerificationFlag == "VERIFIED" and str(ds.VerifyingObserverSequence[0].VerifyingObserverName) == "Doe^Jane"
    assert str(ds.VerifyingObserverSequence[0].VerificationDateTime).startswith(
        review["accepted_at"].replace("-", "").replace(":", "").replace("T", "")[:14])
    assert person_observers(sr) == ["Doe^Jane"]


def test_a_partial_film_shows_and_offers_only_the_vertebrae_on_it(server):
    """The spine cut above T6 (its corners NaN for T1-T5): PT is "not on film", MT is measured
    from what the film shows, and the end vertebra selectors offer T6-L5 only."""
    from CobbAngleLib import geometry

    partial = server["corners"].copy()
    partial[:5] = np.nan
    expected = geometry.cobb_angles(partial)
    with browser_page(playwright, server["url"], viewport=VIEWPORT) as page:
        open_film(page, "partial.png")
        measure(page)
        page.wait_for_function("document.querySelectorAll('#measurements tbody tr').length > 0", timeout=30_000)
        shown = rows(page)
        assert (shown["PT"]["Angle (deg)"], shown["PT"]["Role"]) == ("", "not on film")
        mt = expected.curve("MT")
        assert (shown["MT"]["Angle (deg)"], shown["MT"]["Upper"], shown["MT"]["Lower"]) == (
            f"{mt.angle_deg:.2f}", mt.upper_end_vertebra, mt.lower_end_vertebra)
        for which in ("upper", "lower"):
            options = [o.strip() for o in page.locator(f"#{which}-MT option").all_inner_texts()]
            assert options == ["auto"] + list(geometry.VERTEBRA_NAMES[5:]), options
        assert status(page, "partial.png") == "measured"
        page.fill("#reviewer", "Jane Doe")
        accept(page)
        assert status(page, "partial.png") == "accepted"
    # Accept wrote the shown vertebrae only (no "NaN" in the JSON) and an SR that names them
    from dicom_checks import dciodvfy_errors, read_sr

    text = (server["out"] / "partial_cobb.json").read_text()
    assert "NaN" not in text and list(json.loads(text)["landmarks_px"])[0] == "T6 sup-R"
    assert len(read_points(server["out"] / "partial_landmarks.mrk.json")) == 48
    sr = server["out"] / "partial_sr.dcm"
    assert dciodvfy_errors(sr) == []
    assert {g["texts"]["Vertebrae on the film"] for g in read_sr(sr)} == {"T6-L5"}
