"""The same input through the command line and through each module's Slicer logic (real slicer-core
scene and volume nodes, loaded as Slicer loads the file) gives the same result, and the same
refusal; a re-run over moved points asks in both and creates nothing before the answer."""
from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest

from MSKCommonLib.cli import main
from MSKCommonLib.logic import ModuleLogic
from MSKCommonLib.review import EditedResultExists
from conftest import SAMPLE_DATA, load_like_slicer, write_dicom

SAMPLE = SAMPLE_DATA / "SpinePhantom_AP.png"


def comparable(record: dict) -> dict:
    """A record without what names the run rather than the result (none of it is measured)."""
    return {k: v for k, v in record.items() if k not in ("review",)} | {
        "review": {k: v for k, v in record.get("review", {}).items() if k != "point_nodes"}}


def cli_record(tmp_path, module, path, *options, record_suffix):
    out = tmp_path / f"cli-{module}-{path.stem}"
    assert main([module, str(path), "--out", str(out), "--no-overlay", *options]) == 0
    return json.loads((out / f"{path.stem}_{record_suffix}.json").read_text())


def logic_record(slicer_app, module, path, **options):
    logic = ModuleLogic(module)
    volume = load_like_slicer(slicer_app, path)
    try:
        return logic.process(volume, logic.options(**options)).record()
    finally:
        logic.cleanup()


@pytest.fixture(scope="module")
def spine_films(tmp_path_factory):
    """The bundled phantom as a JPEG and as a 12-bit MONOCHROME1 DICOM film whose only spacing is
    ImagerPixelSpacing (a CR/DX film as a PACS sends it)."""
    folder = tmp_path_factory.mktemp("spine")
    gray = cv2.imread(str(SAMPLE), cv2.IMREAD_GRAYSCALE)
    jpeg = folder / "spine film.jpg"
    cv2.imwrite(str(jpeg), gray, [cv2.IMWRITE_JPEG_QUALITY, 92])
    stored = (4095 - gray.astype(np.uint16) * 16).astype(np.uint16)  # MONOCHROME1: bone is dark in the file
    dicom = write_dicom(folder / "spine film.dcm", stored, photometric="MONOCHROME1", spacing_kw="ImagerPixelSpacing",
                        spacing=(0.175, 0.175), bits_stored=12)
    return {"jpeg": jpeg, "dicom": dicom}


@pytest.mark.parametrize("kind", ["jpeg", "dicom"])
def test_a_spine_film_gives_the_same_result_in_the_cli_and_in_slicer(slicer_app, tmp_path, spine_films, kind):
    path = spine_films[kind]
    cli = cli_record(tmp_path, "cobb", path, "--device", "cpu", record_suffix="cobb")
    slicer_side = logic_record(slicer_app, "cobb", path, device="cpu")
    assert comparable(slicer_side) == comparable(cli)
    assert cli["convention"] == "clinical"  # one default everywhere
    if kind == "dicom":
        assert cli["pixel_spacing_mm"] == [0.175, 0.175] and cli["pixel_spacing_from"] == "ImagerPixelSpacing"
    else:
        assert cli["pixel_spacing_mm"] is None


def test_the_dicom_film_is_read_alike_from_the_file_and_from_slicers_volume(slicer_app, spine_films):
    """MONOCHROME1 inverted and ImagerPixelSpacing found, by the reader and by the node converter."""
    from MSKCommonLib.image import read_image
    from MSKCommonLib.mrml import image_from_volume

    path = spine_films["dicom"]
    from_file = read_image(path)
    from_node = image_from_volume(load_like_slicer(slicer_app, path))
    assert np.array_equal(from_node.pixels, from_file.pixels)
    assert from_node.spacing_mm == from_file.spacing_mm == (0.175, 0.175)
    # bone (bright in the sample) is bright again after the inversion
    sample = cv2.imread(str(SAMPLE), cv2.IMREAD_GRAYSCALE).astype(np.float32)
    assert np.corrcoef(from_file.pixels.ravel(), sample.ravel())[0, 1] > 0.99


@pytest.fixture(scope="module")
def knee_films(tmp_path_factory):
    from KneeLandmarksTools import phantom

    folder = tmp_path_factory.mktemp("knee")
    phantom.generate(folder, 1, seed=5)
    dicom = sorted(folder.glob("*.dcm"))[0]
    png = folder / "knee film.png"
    shutil.copy(sorted((folder / "preview").glob("*.png"))[0], png)
    return {"dicom": dicom, "png": png}


def test_a_knee_dicom_gives_the_same_result_in_the_cli_and_in_slicer(slicer_app, tmp_path, knee_films):
    cli = cli_record(tmp_path, "knee", knee_films["dicom"], "--device", "cpu", record_suffix="knee")
    slicer_side = logic_record(slicer_app, "knee", knee_films["dicom"], device="cpu")
    assert comparable(slicer_side) == comparable(cli)
    assert len(cli["knees"]) >= 1


def test_a_knee_png_without_spacing_is_refused_alike(slicer_app, tmp_path, knee_films):
    out = tmp_path / "cli"
    assert main(["knee", str(knee_films["png"]), "--out", str(out), "--no-overlay"]) == 1
    cli_reason = json.loads((out / "knee_images.json").read_text())["results"][0]["error"]
    logic = ModuleLogic("knee")
    volume = load_like_slicer(slicer_app, knee_films["png"])
    n_nodes = slicer_app.scene.GetNumberOfNodes()
    with pytest.raises(ValueError) as refused:
        logic.process(volume, logic.options())
    assert str(refused.value) == cli_reason
    assert "does not state its pixel spacing" in cli_reason
    assert slicer_app.scene.GetNumberOfNodes() == n_nodes  # nothing was made
    # with the spacing given, both measure it, and alike
    cli = cli_record(tmp_path, "knee", knee_films["png"], "--spacing", "0.3", "--device", "cpu", record_suffix="knee")
    slicer_side = logic.process(volume, logic.options(spacing_mm=0.3, device="cpu")).record()
    logic.cleanup()
    assert comparable(slicer_side) == comparable(cli)
    assert cli["pixel_spacing_mm"] == [0.3, 0.3]


def test_a_back_photo_gives_the_same_result_in_the_cli_and_in_slicer(slicer_app, tmp_path):
    from SpineMorphologyTools import phantom

    photo = phantom.make_back_photo(phantom.photo_seed(3, 1))
    path = tmp_path / "back photo.png"
    cv2.imwrite(str(path), photo.rgb[..., ::-1])
    cli = cli_record(tmp_path, "back", path, "--device", "cpu", "--focal-mm", "30", "--distance-mm", "1600",
                     record_suffix="back")
    slicer_side = logic_record(slicer_app, "back", path, device="cpu", focal_mm=30.0, distance_mm=1600.0)
    assert comparable(slicer_side) == comparable(cli)
    assert cli["depth_units"] == "mm"


def test_a_rerun_over_moved_points_asks_in_both_and_makes_nothing_first(slicer_app, tmp_path):
    from MSKCommonLib import mrml as common
    from MSKCommonLib.headless import make_app

    landmarks = str(SAMPLE_DATA / "SpinePhantom_AP.png.mat")
    # the command line: a corner moved in the written .mrk.json (in Slicer, say) is not overwritten
    out = tmp_path / "out"
    assert main(["cobb", str(SAMPLE), "--landmarks", landmarks, "--out", str(out), "--no-overlay"]) == 0
    marks = out / "SpinePhantom_AP_landmarks.mrk.json"
    other = make_app()
    node = common.read_node(other.scene, "vtkMRMLMarkupsFiducialNode", marks)
    p = common.control_points(node)[17]
    node.SetNthControlPointPosition(17, p[0] + 4.0, p[1], p[2])
    common.save_node(node, marks)
    edited = {f.name: f.read_bytes() for f in out.iterdir()}
    assert main(["cobb", str(SAMPLE), "--landmarks", landmarks, "--out", str(out), "--no-overlay"]) == 1
    reason = json.loads((out / "cobb.json").read_text())["results"][0]["error"]
    assert "moved by hand" in reason and "--on-existing" in reason
    assert all((out / name).read_bytes() == data for name, data in edited.items() if not name.startswith("cobb."))
    assert main(["cobb", str(SAMPLE), "--landmarks", landmarks, "--out", str(out), "--no-overlay",
                 "--on-existing", "keep"]) == 0
    assert (out / "SpinePhantom_AP_2_cobb.json").is_file()  # the new result beside the edited one
    assert marks.read_bytes() == edited[marks.name]

    # the Slicer logic: the same question, before anything runs or is made
    logic = ModuleLogic("cobb")
    volume = load_like_slicer(slicer_app, SAMPLE)
    live = logic.process(volume, logic.options(landmarks_file=landmarks))
    node = live.node("landmarks")
    p = common.control_points(node)[17]
    node.SetNthControlPointPosition(17, p[0] + 4.0, p[1], p[2])
    n_nodes = slicer_app.scene.GetNumberOfNodes()
    with pytest.raises(EditedResultExists):
        logic.process(volume, logic.options(landmarks_file=landmarks))
    assert slicer_app.scene.GetNumberOfNodes() == n_nodes
    assert live.edited()
    logic.cleanup()
