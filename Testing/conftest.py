"""Shared fixtures: a real headless Slicer scene (slicer-core), the shared data folder, and
synthetic spines with known angles."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MSKMORPH_SHARED_DATA", REPO.parent / "shared" / "data"))
AASCE = SHARED_DATA / "aasce2019-train"
SAMPLE_DATA = REPO / "Resources" / "SampleData"


def require_aasce():
    if not (AASCE / "labels" / "angles.csv").is_file():
        pytest.skip(f"AASCE data not found at {AASCE} (the shared data folder beside the repository)")
    return AASCE


@pytest.fixture
def aasce():
    return require_aasce()


@pytest.fixture
def slicer_app():
    """A fresh real MRML scene with the module logics, torn down after the test."""
    from MSKCommonLib.headless import make_app

    app = make_app()
    yield app
    app.scene.Clear(1)


def synthetic_spine(tilts_deg, spacing=110.0, width=90.0, height=70.0, x0=400.0, y0=150.0):
    """17 vertebrae as rectangles whose tilt is given (degrees, positive: right end lower), laid
    along a curve that follows the tilts, as a scoliotic spine does. Returns (17, 4, 2)."""
    tilts = np.radians(np.asarray(tilts_deg, dtype=float))
    out = np.zeros((17, 4, 2))
    x, y = x0, y0
    for i, t in enumerate(tilts):
        u = np.array([np.cos(t), np.sin(t)])  # along the endplate
        n = np.array([-np.sin(t), np.cos(t)])  # down the spine
        c = np.array([x, y])
        out[i] = [c - u * width / 2 - n * height / 2, c + u * width / 2 - n * height / 2,
                  c - u * width / 2 + n * height / 2, c + u * width / 2 + n * height / 2]
        x, y = x - spacing * np.sin(t), y + spacing * np.cos(t)
    return out


# T1..L5: a right thoracic curve T1-T5-T11 and a lumbar one T11-L2 bending back
DOUBLE_CURVE_TILTS = [-3, 0, 5, 12, 20, 12, 5, 0, -5, -12, -15, -8, 0, 5, 8, 4, 0]


def load_like_slicer(app, path, name="film"):
    """A volume node as desktop Slicer's Add Data (or its DICOM module) makes it from a file:
    DICOM and NRRD through Slicer's own volume reader (ITK/GDCM, here from slicer-core); PNG, JPEG
    and TIFF, which slicer-core's readers cannot decode, read by SimpleITK (the ITK that Slicer
    uses) into a volume laid out as Slicer lays it out (LPS along the image, ITK's spacing), with
    the archetype storage node pointing at the file, as after loadVolume."""
    from pathlib import Path

    import SimpleITK as sitk
    import vtk
    from vtk.util import numpy_support

    path = Path(path)
    if path.suffix.lower() in (".dcm", ".nrrd", ".nhdr", ".nii") or path.name.lower().endswith(".nii.gz"):
        node = app.volumes.AddArchetypeVolume(str(path), name, 0)
        assert node is not None, f"Slicer's reader could not load {path}"
        return node
    image = sitk.ReadImage(str(path))
    arr = sitk.GetArrayFromImage(image)
    colour = image.GetNumberOfComponentsPerPixel() > 1
    node = app.scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode" if colour else "vtkMRMLScalarVolumeNode", name)
    data = vtk.vtkImageData()
    h, w = arr.shape[:2]
    data.SetDimensions(w, h, 1)
    vtk_type = numpy_support.get_vtk_array_type(arr.dtype)
    data.AllocateScalars(vtk_type, arr.shape[2] if colour else 1)
    numpy_support.vtk_to_numpy(data.GetPointData().GetScalars())[:] = arr.reshape(h * w, -1) if colour else arr.reshape(-1)
    node.SetAndObserveImageData(data)
    sx, sy = image.GetSpacing()[:2]
    m = vtk.vtkMatrix4x4()
    m.SetElement(0, 0, -sx)
    m.SetElement(1, 1, -sy)
    node.SetIJKToRASMatrix(m)
    storage = app.scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storage.SetFileName(str(path))
    node.SetAndObserveStorageNodeID(storage.GetID())
    node.CreateDefaultDisplayNodes()
    return node


def write_dicom(path, arr, photometric="MONOCHROME2", spacing_kw="PixelSpacing", spacing=(0.2, 0.15),
                bits_stored=None, slope=None, intercept=None, frames=1, preamble=True, modality="DX"):
    """A DICOM film of ``arr`` (one frame, or ``frames``) with the given photometric
    interpretation, spacing attribute, bits stored and rescale."""
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"  # DX for presentation
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientName, ds.PatientID = modality, "Phantom^Test", "TEST1"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Rows, ds.Columns = arr.shape[-2:]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated = arr.dtype.itemsize * 8
    ds.BitsStored = bits_stored or ds.BitsAllocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if arr.dtype.kind == "i" else 0
    if frames > 1:
        ds.NumberOfFrames = frames
    if slope is not None:
        ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = slope, intercept, "US"
    if spacing_kw:
        setattr(ds, spacing_kw, list(spacing))
    ds.PixelData = arr.tobytes()
    if preamble:
        ds.save_as(path, enforce_file_format=True)
    else:  # a bare dataset: no 128-byte preamble, no 'DICM', no file meta
        ds.file_meta = FileMetaDataset()
        pydicom.dcmwrite(path, ds, enforce_file_format=False, implicit_vr=True, little_endian=True)
    return path
