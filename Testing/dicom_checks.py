"""What the DICOM tests share: the validator (dicom3tools' ``dciodvfy``), reading an SR back
through highdicom into plain values, and the tool check (skip where a developer lacks the Debian
package, fail in CI, where ``.ci/setup`` installs it)."""
from __future__ import annotations

import os
import shutil
import subprocess

import numpy as np
import pytest


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        message = (f"{name} is not installed (Debian: dicom3tools gives dciodvfy; orthanc and orthanc-dicomweb give "
                   "Orthanc); .ci/setup installs them when run as root")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def dciodvfy_errors(path) -> list[str]:
    """The lines dciodvfy reports as errors for one file (warnings are not errors)."""
    tool = require_tool("dciodvfy")
    done = subprocess.run([tool, str(path)], capture_output=True, text=True, timeout=120)
    lines = (done.stdout + done.stderr).splitlines()
    return [line for line in lines if line.startswith("Error")]


def read_sr(path_or_dataset) -> list[dict]:
    """Each measurement group of a TID 1500 SR: tracking identifier, measurements (concept meaning ->
    value, unit, lines as pixel arrays), qualitative evaluations (meaning -> value meaning) and text
    items (meaning -> text), read through highdicom."""
    import highdicom as hd
    import pydicom

    ds = path_or_dataset if isinstance(path_or_dataset, pydicom.Dataset) else pydicom.dcmread(str(path_or_dataset))
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.33", ds.SOPClassUID  # Comprehensive SR
    sr = hd.sr.ComprehensiveSR.from_dataset(ds)
    groups = []
    for group in sr.content.get_image_measurement_groups():
        measurements = {}
        for m in group.get_measurements():
            lines = [np.asarray(item.GraphicData, float).reshape(-1, 2) - 0.5
                     for item in m[0].ContentSequence if item.ValueType == "SCOORD"] \
                if "ContentSequence" in m[0] else []
            measurements[m.name.meaning] = {"value": float(m.value), "unit": m.unit.value, "lines": lines,
                                            "code": (m.name.value, m.name.scheme_designator)}
        texts = {item.ConceptNameCodeSequence[0].CodeMeaning: item.TextValue
                 for item in group[0].ContentSequence if item.ValueType == "TEXT"}
        groups.append({
            "tracking": str(group.tracking_identifier),
            "measurements": measurements,
            "evaluations": {q.name.meaning: q.value.meaning for q in group.get_qualitative_evaluations()},
            "texts": texts,
            "source": [ref.ReferencedSOPSequence[0].ReferencedSOPInstanceUID for ref in group.source_images]
            if hasattr(group, "source_images") else [],
        })
    return groups


def person_observers(path) -> list[str]:
    """Names of the person observers in an SR's observation context."""
    import pydicom

    ds = pydicom.dcmread(str(path))
    return [str(item.PersonName) for item in ds.ContentSequence if item.ValueType == "PNAME"]


def vertebra_name(meaning: str) -> str:
    """'T7 vertebra' -> 'T7'."""
    return meaning.split()[0]
