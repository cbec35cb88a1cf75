"""A throw-away Orthanc with its DICOMweb plugin (Debian's ``orthanc`` and ``orthanc-dicomweb``),
started as a plain process on free loopback ports with its own storage folder and one registered
user: what the PACS tests and the archive benchmark run against."""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
USER, PASSWORD = "radiologist", "s3cret-Passw0rd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_orthanc(certificate: Path | None = None):
    """A running Orthanc: yields its URLs and credentials; stopped and its folder removed at the
    end, also when the test fails. (``certificate``: Orthanc's own HTTPS, a PEM with key and
    certificate; Debian's 1.10.1 crashes on the first HTTPS request, so the tests use a TLS proxy.)"""
    import requests

    exe = shutil.which("Orthanc")
    if exe is None or not PLUGIN.is_file():
        raise RuntimeError("Orthanc with its DICOMweb plugin is not installed (Debian: orthanc, orthanc-dicomweb)")
    folder = Path(tempfile.mkdtemp(prefix="orthanc-test-"))
    http, dicom = free_port(), free_port()
    config = {
        "Name": "MSKMORPH-TEST", "HttpPort": http, "DicomPort": dicom, "DicomServerEnabled": False,
        "StorageDirectory": str(folder / "storage"), "IndexDirectory": str(folder / "index"),
        "RemoteAccessAllowed": False, "AuthenticationEnabled": True, "RegisteredUsers": {USER: PASSWORD},
        "Plugins": [str(PLUGIN)], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        "HttpCompressionEnabled": False,
    }
    if certificate is not None:
        config.update({"SslEnabled": True, "SslCertificate": str(certificate)})
    (folder / "orthanc.json").write_text(json.dumps(config))
    log = open(folder / "orthanc.log", "wb")
    process = subprocess.Popen([exe, str(folder / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT,
                               cwd=folder)
    try:
        base = f"{'https' if certificate else 'http'}://127.0.0.1:{http}"
        verify = str(certificate) if certificate else True
        for _ in range(300):
            if process.poll() is not None:
                raise RuntimeError(f"Orthanc exited: {(folder / 'orthanc.log').read_text()[-2000:]}")
            try:
                if requests.get(f"{base}/system", auth=(USER, PASSWORD), timeout=1, verify=verify).ok:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        else:
            raise RuntimeError("Orthanc did not start in 30 s")
        yield {"base": base, "dicomweb": f"{base}/dicom-web", "auth": (USER, PASSWORD), "verify": verify,
               "process": process}
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        shutil.rmtree(folder, ignore_errors=True)




def store(server, path: Path) -> None:
    """Store one DICOM file in it (Orthanc's REST upload)."""
    import requests

    reply = requests.post(f"{server['base']}/instances", data=Path(path).read_bytes(), auth=server["auth"],
                          timeout=30, verify=server["verify"])
    reply.raise_for_status()
