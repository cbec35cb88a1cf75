"""The browser review (``mskmorph review``) of Cobb films in headless Chromium: the worklist with
a corrupt file's reason and a shared AASCE film, the film in the Slicer slice view, Measure in the
worker process and the same angles as ``mskmorph cobb``, the vertebra segmentation toggle, the
CHECK warnings, dragging a corner with the mouse, measuring again after an edit (keep / replace /
cancel), the keyboard shortcuts, Accept writing the module's files, a second session."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import AASCE, REPO, SAMPLE_DATA

playwright = pytest.importorskip("playwright.sync_api")
pytest.importorskip("trame_slicer")
from browser import (CHROMIUM, ViewGeometry, accept, browser_page, drag, measure, open_film, read_points,  # noqa: E402
                     review_server, status, steady, table, table_shows, view_image, view_settles, warnings)

if not Path(CHROMIUM).exists():
    pytest.skip("Debian's chromium is not installed (.ci/setup installs it)", allow_module_level=True)

SAMPLE = SAMPLE_DATA / "SpinePhantom_AP.png"
AASCE_FILM = AASCE / "images" / "sunhl-1th-02-Jan-2017-162 A AP.jpg"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("films")
    shutil.copy(SAMPLE, folder / SAMPLE.name)
    if AASCE_FILM.is_file():
        shutil.copy(AASCE_FILM, folder / "aasce.jpg")
    (folder / "broken.png").write_bytes(b"not an image at all")
    out = tmp_path_factory.mktemp("accepted")
    with review_server(folder, "--out", out, "--dicom", "--editor", "Jane Doe") as (url, _):
        yield {"url": url, "out": out, "folder": folder}


@pytest.fixture(scope="module")
def cli_record(tmp_path_factory):
    from MSKCommonLib.cli import main

    out = tmp_path_factory.mktemp("cli")
    assert main(["cobb", str(SAMPLE), "--out", str(out), "--no-overlay", "--device", "cpu"]) == 0
    return json.loads((out / "SpinePhantom_AP_cobb.json").read_text())


def shown_angles(page) -> dict:
    return {row["Curve"]: row["Angle (deg)"] for row in table(page)}


def test_the_page_measures_the_sample_like_the_cli_and_shows_the_corrupt_files_reason(server, cli_record):
    with browser_page(playwright, server["url"]) as page:
        assert status(page, "broken.png") == "refused"
        reason = page.locator("#worklist .worklist-item", has_text="broken.png").locator(".reason").inner_text()
        assert "broken.png" in reason and len(reason) > 20
        empty = view_image(page).astype(float)
        open_film(page, SAMPLE.name)
        film = view_settles(page, lambda image: image.std() > 20 and np.abs(image - empty).mean() > 10)
        # the film is drawn: not blank, and not the empty view
        assert film.std() > 20, film.std()
        assert np.abs(film - empty).mean() > 10
        measure(page)
        assert status(page, SAMPLE.name) == "measured"
        shown = shown_angles(page)
        for curve in cli_record["curves"]:
            angle = curve.get("angle_deg")
            assert shown[curve["name"]] == ("" if angle is None else f"{angle:.2f}"), (curve, shown)
        # the CHECK warnings are the result's own
        assert warnings(page) == ([f"CHECK: {cli_record['warning']}"] if cli_record.get("warning") else [])
        # the vertebra segmentation: shown, and hidden with its toggle
        checkbox = page.locator("#segmentation")
        with_segmentation = view_settles(page, steady())
        checkbox.click()
        without = view_settles(page, lambda image: np.abs(image - with_segmentation).mean() > 2)
        hidden = np.abs(with_segmentation - without).mean()
        assert hidden > 2, "the toggle changed nothing in the view"
        checkbox.click()
        again = view_settles(page, lambda image: np.abs(image - with_segmentation).mean() < hidden / 4)
        shown_again = np.abs(again - with_segmentation).mean()
        assert shown_again < hidden / 4, (shown_again, hidden)
        accept(page)
        assert status(page, SAMPLE.name) == "accepted"
        shot = REPO / "Resources" / "Screenshots" / "web_review.png"
        shot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shot))
    accepted = json.loads((server["out"] / "SpinePhantom_AP_cobb.json").read_text())
    assert [c.get("angle_deg") for c in accepted["curves"]] == [c.get("angle_deg") for c in cli_record["curves"]]
    assert (server["out"] / "SpinePhantom_AP_landmarks.mrk.json").is_file()
    assert (server["out"] / "SpinePhantom_AP_vertebrae.seg.nrrd").is_file()
    assert "SpinePhantom_AP.png" in (server["out"] / "cobb.csv").read_text()
    # --dicom: Accept wrote the SR (on a Secondary Capture of the PNG) and the vertebra SEG too
    from dicom_checks import read_sr

    for suffix in ("_sr.dcm", "_seg.dcm", "_sc.dcm"):
        assert (server["out"] / f"SpinePhantom_AP{suffix}").is_file(), suffix
    groups = {g["tracking"].split()[0]: g["measurements"]["Cobb angle"]["value"]
              for g in read_sr(server["out"] / "SpinePhantom_AP_sr.dcm")}
    assert groups == pytest.approx({c["name"]: c["angle_deg"] for c in accepted["curves"] if c["angle_deg"] is not None},
                                   abs=0.01)
    assert sorted(p.name for p in server["folder"].iterdir()) == sorted(
        [SAMPLE.name, "broken.png"] + (["aasce.jpg"] if AASCE_FILM.is_file() else []))  # nothing written beside the inputs


def test_dragging_a_corner_in_the_view_moves_it_and_the_angle_follows(server):
    """Runs after the test above (same server: the sample is measured). The user drags one corner
    with the mouse; the point ends where the mouse did, the table shows the angle the geometry
    gives for the moved corners, the point is listed as edited, and Accept writes it."""
    from CobbAngleLib import geometry
    from CobbAngleLib.review import CORNER_LABELS

    before = json.loads((server["out"] / "SpinePhantom_AP_cobb.json").read_text())
    corners = np.asarray([before["landmarks_px"][label] for label in CORNER_LABELS], dtype=float)
    # T4 sup-L: on the upper endplate of the sample's MT curve; this drag steepens it, so T4 stays
    # the end vertebra (a drag of another corner can hand the curve to T5 on the way)
    index = 3 * 4 + 1
    dx, dy = 25, 10
    with browser_page(playwright, server["url"]) as page:
        open_film(page, SAMPLE.name)
        page.wait_for_function("document.querySelectorAll('#measurements tbody tr').length > 0", timeout=30_000)
        page.wait_for_timeout(1000)
        view = ViewGeometry(page)
        drag(page, view.screen(corners[index]), dx, dy)
        page.wait_for_function("document.querySelector('#edited').innerText.length > 'Edited: '.length", timeout=20_000)
        assert status(page, SAMPLE.name) == "edited"
        accept(page)
        written = {c["name"]: "" if c.get("angle_deg") is None else f"{c['angle_deg']:.2f}"
                   for c in json.loads((server["out"] / "SpinePhantom_AP_cobb.json").read_text())["curves"]}
        shown = {r["Curve"]: r["Angle (deg)"] for r in table_shows(page, written, "Curve", "Angle (deg)")}
        edited = page.inner_text("#edited")
    expected = corners[index] + view.film_delta(dx, dy)  # Slicer's widget moves a grabbed point by the mouse's displacement
    moved = view.pixels(read_points(server["out"] / "SpinePhantom_AP_landmarks.mrk.json")[index])
    assert np.linalg.norm(moved - expected) <= max(1.0, view.film_px_per_screen_px) + 1e-6, (moved, expected)
    assert np.linalg.norm(moved - corners[index]) > 5  # it really moved
    assert geometry.corner_label(3, 1) in edited
    points = corners.copy()
    points[index] = moved
    after = json.loads((server["out"] / "SpinePhantom_AP_cobb.json").read_text())
    m = geometry.cobb_angles(points.reshape(17, 4, 2), after["convention"], image_height=after["image_size_px"][1],
                             spacing_mm=after.get("pixel_spacing_mm"))
    for curve in m.to_dict()["curves"]:  # the corners in the file are rounded to 0.001 px: 0.02 deg
        if curve.get("angle_deg") is not None:
            assert abs(float(shown[curve["name"]]) - curve["angle_deg"]) <= 0.02, (curve, shown)
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
    assert after["review"]["edited_points"]["landmarks"] == [geometry.corner_label(3, 1)]


def test_measuring_again_after_an_edit_asks_keep_replace_or_cancel(server, cli_record):
    """Runs after the drag: the sample's result has a moved corner."""
    with browser_page(playwright, server["url"]) as page:
        open_film(page, SAMPLE.name)
        page.wait_for_function("document.querySelector('#edited').innerText.length > 'Edited: '.length", timeout=20_000)
        edited_angles = shown_angles(page)
        page.click("#measure")
        page.wait_for_selector("#keep", state="visible")
        assert page.locator("#replace").is_visible() and page.locator("#no").is_visible()
        page.click("#no")  # cancel: nothing runs, nothing changes
        page.wait_for_selector("#keep", state="hidden")
        page.wait_for_timeout(1000)
        assert page.inner_text("#message") != "Measuring"
        assert shown_angles(page) == edited_angles and "T4 sup-L" in page.inner_text("#edited")
        page.click("#measure")
        page.click("#replace")  # measured again, the moved corner replaced by the network's
        page.wait_for_function("document.querySelector('#message').innerText === 'Measured'", timeout=300_000)
        page.wait_for_function("document.querySelector('#edited').innerText.trim() === 'Edited:'", timeout=20_000)
        assert status(page, SAMPLE.name) == "measured"
        shown = shown_angles(page)
    for curve in cli_record["curves"]:
        if curve.get("angle_deg") is not None:
            assert shown[curve["name"]] == f"{curve['angle_deg']:.2f}"


def test_keyboard_shortcuts_go_through_the_worklist(server):
    with browser_page(playwright, server["url"]) as page:
        names = [t.split(":")[0] for t in page.locator("#worklist .worklist-item").all_inner_texts()]
        open_film(page, names[0])
        current = lambda: page.locator("#worklist .current").inner_text().split(":")[0]  # noqa: E731
        page.keyboard.press("ArrowDown")
        page.wait_for_function(f"document.querySelector('#worklist .current').innerText.startsWith({names[1]!r})")
        page.keyboard.press("n")
        page.wait_for_function(f"document.querySelector('#worklist .current').innerText.startsWith({names[2]!r})")
        page.keyboard.press("n")  # past the last film: it stays
        page.wait_for_timeout(500)
        assert current() == names[2]
        page.keyboard.press("p")
        page.wait_for_function(f"document.querySelector('#worklist .current').innerText.startsWith({names[1]!r})")
        page.keyboard.press("ArrowUp")
        page.wait_for_function(f"document.querySelector('#worklist .current').innerText.startsWith({names[0]!r})")


def test_a_shared_aasce_film_is_listed_and_shown(server):
    if not AASCE_FILM.is_file():
        pytest.skip(f"AASCE data not found at {AASCE} (the shared data folder beside the repository)")
    with browser_page(playwright, server["url"]) as page:
        assert status(page, "aasce.jpg") == "new"
        open_film(page, SAMPLE.name)
        sample = view_settles(page, lambda image: image.std() > 20)
        open_film(page, "aasce.jpg")
        film = view_settles(page, lambda image: image.std() > 20 and np.abs(image - sample).mean() > 5)
        assert film.std() > 20 and np.abs(film - sample).mean() > 5
        assert table(page) == []  # not measured yet: no result, and none of the sample's points


def test_a_second_browser_session_sees_the_same_worklist(server):
    """Runs after the tests above: the sample was accepted in another session."""
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        first, second = browser.new_page(), browser.new_page()
        for page in (first, second):
            page.goto(server["url"])
            page.wait_for_selector("#worklist .worklist-item")
        assert "SpinePhantom_AP.png: measured" in second.inner_text("#worklist") or \
            "SpinePhantom_AP.png: accepted" in second.inner_text("#worklist")
        assert first.inner_text("#worklist") == second.inner_text("#worklist")
        browser.close()
