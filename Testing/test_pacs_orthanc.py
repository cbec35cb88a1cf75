"""``mskmorph pacs`` against a real PACS: Debian's Orthanc with its DICOMweb plugin, started as a
plain process on free loopback ports with a storage folder and a registered user of the test's
own. A DICOM spine film is stored in it, the command measures it and stores the SR and SEG back,
and they are found under the film's study, downloaded and checked against the JSON record. A
wrong password and an unreachable server give one line and a non-zero exit."""
from __future__ import annotations

import json
import socket
import subprocess
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pydicom
import pytest

from MSKCommonLib.cli import main
from conftest import SAMPLE_DATA, write_dicom
from dicom_checks import dciodvfy_errors, read_sr, require_tool, vertebra_name

from MSKCommonTools.orthanc import PASSWORD, PLUGIN, USER, free_port, store  # noqa: F401 (the other tests' names)
from MSKCommonTools.orthanc import running_orthanc as _running_orthanc


@contextmanager
def running_orthanc(certificate: Path | None = None):
    """A running Orthanc (``MSKCommonTools.orthanc``); skips, or fails in CI, without the packages."""
    require_tool("Orthanc")
    if not PLUGIN.is_file():
        require_tool("orthanc-dicomweb-plugin")  # skips or fails (CI) with the package's name
    with _running_orthanc(certificate) as server:
        yield server


@pytest.fixture(scope="module")
def orthanc():
    with running_orthanc() as server:
        yield server


def spine_film(folder: Path) -> Path:
    """The sample spine film as a DX DICOM (pixel spacing 0.2 mm)."""
    import cv2

    pixels = cv2.imread(str(SAMPLE_DATA / "SpinePhantom_AP.png"), cv2.IMREAD_UNCHANGED)
    return write_dicom(folder / "spine.dcm", pixels, spacing=(0.2, 0.2))


@pytest.fixture(scope="module")
def film_in_pacs(orthanc, tmp_path_factory):
    """The sample spine film as a DX DICOM, stored in Orthanc (REST upload)."""
    path = spine_film(tmp_path_factory.mktemp("pacs-film"))
    store(orthanc, path)
    return pydicom.dcmread(path)


def series_of(orthanc, study_uid):
    import requests

    reply = requests.get(f"{orthanc['dicomweb']}/studies/{study_uid}/series", auth=orthanc["auth"], timeout=30)
    reply.raise_for_status()
    return {item["0020000E"]["Value"][0]: item["00080060"]["Value"][0] for item in reply.json()}


def download(orthanc, study, series):
    from dicomweb_client.api import DICOMwebClient
    import requests

    session = requests.Session()
    session.auth = orthanc["auth"]
    return DICOMwebClient(orthanc["dicomweb"], session=session).retrieve_series(study, series)


def test_pacs_command_stores_sr_and_seg_under_the_films_study(orthanc, film_in_pacs, tmp_path, monkeypatch, capsys):
    require_tool("dciodvfy")
    monkeypatch.setenv("MSKMORPH_PACS_USERNAME", USER)
    monkeypatch.setenv("MSKMORPH_PACS_PASSWORD", PASSWORD)
    study = film_in_pacs.StudyInstanceUID
    assert list(series_of(orthanc, study).values()) == ["DX"]
    out = tmp_path / "work"
    code = main(["pacs", "cobb", "--url", orthanc["dicomweb"], "--study", study, "--device", "cpu", "--out", str(out)])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert PASSWORD not in printed.out + printed.err
    assert "2 DICOM objects stored, 0 failed" in printed.out
    record = json.loads((out / "results" / f"{film_in_pacs.SOPInstanceUID}_cobb.json").read_text())

    found = series_of(orthanc, study)
    assert sorted(found.values()) == ["DX", "SEG", "SR"]
    by_modality = {m: uid for uid, m in found.items()}
    (sr,) = download(orthanc, study, by_modality["SR"])
    (seg,) = download(orthanc, study, by_modality["SEG"])
    for obj in (sr, seg):
        assert obj.StudyInstanceUID == study and obj.PatientID == film_in_pacs.PatientID
        path = tmp_path / f"{obj.Modality}.dcm"
        obj.save_as(path, enforce_file_format=True)
        assert dciodvfy_errors(path) == []
    groups = {g["tracking"].split()[0]: g for g in read_sr(sr)}
    measured = [c for c in record["curves"] if c["angle_deg"] is not None]
    assert sorted(groups) == sorted(c["name"] for c in record["curves"]) and measured
    for curve in measured:
        group = groups[curve["name"]]
        assert group["measurements"]["Cobb angle"]["value"] == pytest.approx(curve["angle_deg"], abs=0.01)
        assert vertebra_name(group["evaluations"]["Upper end vertebra"]) == curve["upper_end_vertebra"]
        assert vertebra_name(group["evaluations"]["Lower end vertebra"]) == curve["lower_end_vertebra"]
        assert group["source"] == [film_in_pacs.SOPInstanceUID]
    import highdicom as hd

    segmentation = hd.seg.Segmentation.from_dataset(seg)
    labels = [segmentation.get_segment_description(n).SegmentLabel for n in segmentation.segment_numbers]
    assert len(labels) >= 8 and set(labels) <= set(record["vertebrae_present"])
    masks = segmentation.get_pixels_by_source_instance([film_in_pacs.SOPInstanceUID],
                                                      segment_numbers=list(segmentation.segment_numbers))[0]
    assert masks.shape[:2] == film_in_pacs.pixel_array.shape and np.all(masks.reshape(-1, len(labels)).sum(0) > 100)


def test_wrong_password_is_one_line_and_a_non_zero_exit(orthanc, film_in_pacs, monkeypatch, capsys):
    monkeypatch.setenv("MSKMORPH_PACS_USERNAME", USER)
    monkeypatch.setenv("MSKMORPH_PACS_PASSWORD", "not-the-password")
    before = series_of(orthanc, film_in_pacs.StudyInstanceUID)
    code = main(["pacs", "cobb", "--url", orthanc["dicomweb"], "--study", film_in_pacs.StudyInstanceUID])
    printed = capsys.readouterr()
    assert code == 2
    lines = printed.err.strip().splitlines()
    assert len(lines) == 1 and "401" in lines[0] and "credentials" in lines[0], printed.err
    assert "not-the-password" not in printed.out + printed.err
    assert series_of(orthanc, film_in_pacs.StudyInstanceUID) == before  # nothing stored


def test_unreachable_server_is_one_line_and_a_non_zero_exit(monkeypatch, capsys, tmp_path):
    port = free_port()  # nothing listens there
    config = tmp_path / "pacs.ini"
    config.write_text(f"[pacs]\nurl = http://127.0.0.1:{port}/dicom-web\nusername = someone\npassword = hunter2\n")
    for name in ("MSKMORPH_PACS_USERNAME", "MSKMORPH_PACS_PASSWORD", "MSKMORPH_PACS_URL"):
        monkeypatch.delenv(name, raising=False)
    code = main(["pacs", "cobb", "--config", str(config), "--study", "1.2.3.4", "--timeout", "5"])
    printed = capsys.readouterr()
    assert code == 2
    lines = printed.err.strip().splitlines()
    assert len(lines) == 1 and "cannot reach the PACS" in lines[0] and f"127.0.0.1:{port}" in lines[0]
    assert "hunter2" not in printed.out + printed.err


def test_https_with_a_missing_ca_bundle_is_refused_before_any_request(monkeypatch, capsys, tmp_path):
    code = main(["pacs", "knee", "--url", "https://pacs.invalid/dicom-web", "--study", "1.2.3",
                 "--ca-bundle", str(tmp_path / "missing.pem")])
    printed = capsys.readouterr()
    assert code == 2 and printed.err.strip() == f"mskmorph pacs: CA bundle not found: {tmp_path / 'missing.pem'}"


@contextmanager
def tls_proxy(target_port: int, cert: Path, key: Path):
    """HTTPS on a free loopback port in front of ``target_port`` (plain HTTP), as a hospital's
    reverse proxy terminates TLS in front of its PACS (Debian's Orthanc 1.10 crashes on its own
    HTTPS with this OpenSSL). Yields the port; stopped at the end."""
    import select
    import ssl
    import threading

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.2)
    stop = threading.Event()

    def pump(client):
        try:
            with context.wrap_socket(client, server_side=True) as tls, \
                    socket.create_connection(("127.0.0.1", target_port)) as upstream:
                while not stop.is_set():
                    ready, _, _ = select.select([tls, upstream], [], [], 0.2)
                    for sock in ready:
                        data = sock.recv(65536)
                        if not data:
                            return
                        (upstream if sock is tls else tls).sendall(data)
        except (OSError, ssl.SSLError):
            return  # a client that refuses the certificate ends its connection here

    def serve():
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=pump, args=(client,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def test_https_pacs_is_verified_against_the_ca_bundle(orthanc, tmp_path, monkeypatch, capsys):
    """The PACS behind HTTPS with a certificate of the test's own: trusted through --ca-bundle,
    the film is measured (corners from the sample's landmark file) and its SR stored; without the
    bundle the certificate is refused in one line and nothing is stored."""
    import requests

    openssl = require_tool("openssl")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    monkeypatch.setenv("MSKMORPH_PACS_USERNAME", USER)
    monkeypatch.setenv("MSKMORPH_PACS_PASSWORD", PASSWORD)
    path = spine_film(tmp_path)
    store(orthanc, path)
    study = pydicom.dcmread(path).StudyInstanceUID
    with tls_proxy(int(orthanc["base"].rsplit(":", 1)[1]), cert, key) as port:
        url = f"https://127.0.0.1:{port}/dicom-web"
        args = ["pacs", "cobb", "--url", url, "--study", study, "--landmarks",
                str(SAMPLE_DATA / "SpinePhantom_AP.png.mat"), "--timeout", "10"]
        assert main(args) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and "TLS certificate" in lines[0] and "--ca-bundle" in lines[0], lines
        assert sorted(series_of(orthanc, study).values()) == ["DX"]
        assert main([*args, "--ca-bundle", str(cert)]) == 0
        printed = capsys.readouterr()
        assert "1 DICOM objects stored, 0 failed" in printed.out, printed.out + printed.err
        reply = requests.get(f"{url}/studies/{study}/series", auth=orthanc["auth"], verify=str(cert), timeout=30)
        assert sorted(item["00080060"]["Value"][0] for item in reply.json()) == ["DX", "SR"]


def test_a_film_the_module_refuses_is_counted_failed_and_nothing_is_stored(orthanc, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MSKMORPH_PACS_USERNAME", USER)
    monkeypatch.setenv("MSKMORPH_PACS_PASSWORD", PASSWORD)
    noise = np.random.default_rng(3).integers(0, 255, (700, 600), dtype=np.uint8)
    path = write_dicom(tmp_path / "noise.dcm", noise, spacing=(0.2, 0.2))
    store(orthanc, path)
    study = pydicom.dcmread(path).StudyInstanceUID
    code = main(["pacs", "cobb", "--url", orthanc["dicomweb"], "--study", study, "--device", "cpu"])
    printed = capsys.readouterr()
    assert code == 1
    assert "no spine found" in printed.out  # the module's own reason, per film
    assert printed.out.strip().splitlines()[-1].endswith("0 measured, 0 DICOM objects stored, 1 failed")
    assert sorted(series_of(orthanc, study).values()) == ["DX"]


def test_pacs_stores_the_sr_of_a_film_with_an_absent_curve(orthanc, tmp_path, monkeypatch, capsys):
    """Issue 26: a film on which a curve is absent ended in "internal error (TypeError ...)" with
    --dicom, so in mskmorph pacs; now its SR is stored, valid, with the curve reported absent."""
    from test_dicom_export import absent_curve_film

    require_tool("dciodvfy")
    monkeypatch.setenv("MSKMORPH_PACS_USERNAME", USER)
    monkeypatch.setenv("MSKMORPH_PACS_PASSWORD", PASSWORD)
    film, marks = absent_curve_film(tmp_path)
    store(orthanc, film)
    study = pydicom.dcmread(film).StudyInstanceUID
    code = main(["pacs", "cobb", "--url", orthanc["dicomweb"], "--study", study, "--landmarks", str(marks),
                 "--out", str(tmp_path / "work")])
    printed = capsys.readouterr()
    assert code == 0 and "internal error" not in printed.out + printed.err, printed.out + printed.err
    assert "1 DICOM objects stored, 0 failed" in printed.out
    found = {m: uid for uid, m in series_of(orthanc, study).items()}
    (sr,) = download(orthanc, study, found["SR"])
    path = tmp_path / "SR.dcm"
    sr.save_as(path, enforce_file_format=True)
    assert dciodvfy_errors(path) == []
    groups = {g["tracking"].split()[0]: g for g in read_sr(sr)}
    assert groups["TL_L"]["evaluations"]["Curve status"] == "no curve" and groups["TL_L"]["measurements"] == {}
    assert groups["MT"]["measurements"]["Cobb angle"]["value"] == pytest.approx(20.0, abs=0.01)
