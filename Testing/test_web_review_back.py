"""The browser review of a back photo (``mskmorph review`` on a colour photo: the back module) in
headless Chromium: the generated photo measured in the worker process, shown with its keypoints
and midline in the slice view and as a surface model in the 3D view, the back measures and the
CHECK warnings in the page; the user drags a midline point with the mouse: it moves by the
dragged amount, the measures are what ``SpineMorphologyLib.morphology`` gives along the moved
midline, the point is marked edited and Accept writes it."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO

playwright = pytest.importorskip("playwright.sync_api")
pytest.importorskip("trame_slicer")
from browser import (CHROMIUM, ViewGeometry, accept, browser_page, drag, measure, open_film, read_points,  # noqa: E402
                     review_server, status, steady, table, table_shows, view_settles, warnings)

if not Path(CHROMIUM).exists():
    pytest.skip("Debian's chromium is not installed (.ci/setup installs it)", allow_module_level=True)


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    from SpineMorphologyTools import phantom

    folder = tmp_path_factory.mktemp("back")
    return phantom.write_photo(phantom.make_back_photo(phantom.photo_seed(7, 2)), folder, "patient")["photo"]


def values(page) -> dict:
    return {r["Measure"]: r["Value"] for r in table(page)}


def test_dragging_a_midline_point_moves_it_and_the_measures_follow(photo, tmp_path):
    from MSKCommonLib.image import read_image
    from MSKCommonLib.modules import spec
    from SpineMorphologyLib import morphology

    out = tmp_path / "accepted"
    with review_server(photo, "--out", out, "--reviewer", "Ann Lee") as (url, _), browser_page(playwright, url) as page:
        assert "back" in page.title().lower() or "back" in page.inner_text("header").lower()  # chosen from the photo
        assert page.locator("#view img").count() == 2  # the photo's slice view and the 3D view
        open_film(page, photo.name)
        before = [view_settles(page, steady(), selector=f"#view img >> nth={i}") for i in range(2)]
        measure(page)
        after = [view_settles(page, steady(), selector="#view img >> nth=0"),
                 view_settles(page, lambda image: np.abs(image - before[1]).mean() > 3, selector="#view img >> nth=1")]
        assert before[0].std() > 20  # the photo
        assert np.abs(after[1] - before[1]).mean() > 3 and after[1].std() > 10  # the surface drawn in 3D
        shown = values(page)
        page.screenshot(path=str(REPO / "Resources" / "Screenshots" / "web_review_back.png"))  # the README's
        accept(page)
        record = json.loads((out / "patient_back.json").read_text())
        assert warnings(page) == [f"CHECK: {w}" for w in record["warnings"]] and record["warnings"]
        for key, title in morphology.MEASURE_TITLES.items():
            v = record["measures"][key]
            assert shown[title] == ("" if v is None else f"{v:.2f}"), (title, shown[title], v)
        midline = np.array(record["review"]["points_px"]["midline"])
        keypoints = np.array(record["keypoints_px"])
        # a midline point away from the keypoints (they lie on the midline too)
        inner = np.arange(3, len(midline) - 3)
        gap = [np.linalg.norm(keypoints - midline[i], axis=1).min() for i in inner]
        index = int(inner[int(np.argmax(gap))])
        view = ViewGeometry(page)
        dx, dy = 12, 0  # sideways: the midline deviates more
        drag(page, view.screen(midline[index]), dx, dy, steps=6)
        page.wait_for_function("document.querySelector('#edited').innerText.length > 'Edited: '.length", timeout=20_000)
        assert status(page, photo.name) == "edited"
        after_edit = page.inner_text("#edited")
        accept(page)
        written = json.loads((out / "patient_back.json").read_text())["measures"]
        title = morphology.MEASURE_TITLES["lateral_deviation_max"]
        rows = table_shows(page, {title: f"{written['lateral_deviation_max']:.2f}"}, "Measure", "Value")
        moved_values = {r["Measure"]: r["Value"] for r in rows}
    moved = np.array([view.pixels(p) for p in read_points(out / "patient_midline.mrk.json", "vtkMRMLMarkupsCurveNode")])
    expected = midline[index] + view.film_delta(dx, dy)
    assert np.linalg.norm(moved[index] - expected) <= max(1.0, view.film_px_per_screen_px) + 1e-3, (
        index, moved[index], expected, np.flatnonzero(np.abs(moved - midline).max(axis=1) > 0.01), after_edit)
    assert np.linalg.norm(moved[index] - midline[index]) > 3
    assert np.abs(np.delete(moved - midline, index, axis=0)).max() < 0.01
    # the measures along the moved midline, on the surface the pipeline gives for this photo, in the
    # back's own frame (as the pipeline and the review layer measure)
    result = spec("back").pipeline().run(read_image(photo), spec("back").options(device="cpu"))
    m = morphology.measure_back_in_its_frame(result.surface(), keypoints, result.measurement.dimples_px,
                                             line_px=moved).measures.to_dict()
    for key, title in morphology.MEASURE_TITLES.items():
        if m[key] is None or not np.isfinite(m[key]):
            continue
        assert abs(float(moved_values[title]) - m[key]) <= 0.02 + 0.002 * abs(m[key]), (title, moved_values[title], m[key])
    assert moved_values["Lateral deviation max"] != shown["Lateral deviation max"]
    after = json.loads((out / "patient_back.json").read_text())
    edited = after["review"]["edited_points"]
    assert list(edited) == ["midline"] and len(edited["midline"]) == 1 and edited["midline"][0].endswith(f"-{index + 1}")
    assert after["review"]["accepted_by"] == "Ann Lee" and after["review"]["accepted_at"].endswith("Z")  # signed
