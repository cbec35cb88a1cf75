"""MRML helpers shared by the modules: the one boundary where pixel coordinates become RAS, and
the one converter between a Slicer volume node and the pipelines' input ``Image``.

Works in desktop Slicer and with the ``slicer-core`` wheel (no GUI). Below this layer nothing
imports Slicer; above it, the review layer (``MSKCommonLib.review``) and each module's presenter
build their nodes with these helpers.

Geometry of a 2D image: a volume with one slice, IJK = (x column, y row, 0), laid out as Slicer
lays out a PNG it loads (LPS axes along the image, origin at the first pixel) with the pixel
spacing when known. Points are converted through the volume's own IJK-to-RAS matrix, so a volume
that came from DICOM with another geometry works the same.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np
# VTK classes by module: `import vtk` would load every VTK module (about 1 s of each start)
from vtkmodules.vtkCommonCore import VTK_FLOAT, VTK_UNSIGNED_CHAR, vtkDoubleArray, vtkStringArray
from vtkmodules.vtkCommonDataModel import vtkImageData, vtkTable, vtkVector3d
from vtkmodules.vtkCommonMath import vtkMatrix4x4

import slicer

from .image import Image, ImageReadError, image_from_array

ATTR_SOURCE = "MSKMorphometry.Source"  # the file the image was read from
ATTR_NORMALISATION = "MSKMorphometry.Normalisation"  # set on volumes made by volume_from_image
ATTR_SPACING_SOURCE = "MSKMorphometry.SpacingSource"  # "" when the spacing is unknown
ATTR_BITS = "MSKMorphometry.Bits"
ATTR_COLOURFULNESS = "MSKMorphometry.Colourfulness"


# --------------------------------------------------------------------------------------------
# volumes <-> Image

def volume_from_image(scene, image: Image, name: str, colour: bool = False):
    """A volume node showing an ``Image``: its gray pixels as a scalar volume, or (``colour``, for
    a photo) its colour pixels as a vector volume, with the pixel spacing when known. The node
    remembers how the image was read, so ``image_from_volume`` gives the same ``Image`` back."""
    if colour and image.rgb is None:
        raise ImageReadError(f"'{image.source}' has no colour channels")
    if colour:
        node = scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", scene.GenerateUniqueName(name))
        node.SetAndObserveImageData(_image_data(np.ascontiguousarray(image.rgb, dtype=np.uint8), VTK_UNSIGNED_CHAR, 3))
    else:
        node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", scene.GenerateUniqueName(name))
        node.SetAndObserveImageData(_image_data(np.ascontiguousarray(image.pixels, dtype=np.float32), VTK_FLOAT, 1))
    row_mm, col_mm = image.spacing_mm or (1.0, 1.0)
    set_image_geometry(node, (row_mm, col_mm))
    if colour:
        node.CreateDefaultDisplayNodes()
    else:
        # the display node as CreateDefaultDisplayNodes makes it (gray colour table), with the window
        # set before it observes the pixels: Slicer's automatic window would scan them all first
        display = scene.AddNewNodeByClass("vtkMRMLScalarVolumeDisplayNode")
        display.AutoWindowLevelOff()
        low, high = np.percentile(image.pixels[:: max(1, image.height // 512), :: max(1, image.width // 512)], [0.5, 99.5])
        display.SetWindowLevelMinMax(float(low), float(high if high > low else low + 1))
        display.SetAndObserveColorNodeID("vtkMRMLColorTableNodeGrey")
        node.SetAndObserveDisplayNodeID(display.GetID())
    node.SetAttribute(ATTR_SOURCE, str(image.source))
    node.SetAttribute(ATTR_NORMALISATION, image.normalisation)
    node.SetAttribute(ATTR_SPACING_SOURCE, image.spacing_source if image.spacing_mm else "")
    node.SetAttribute(ATTR_BITS, str(image.bits))
    node.SetAttribute(ATTR_COLOURFULNESS, repr(float(image.colourfulness)) if image.was_colour else "")
    return node


def image_from_volume(volume_node) -> Image:
    """The pipelines' input from a volume node, by the rules of the file reader
    (``MSKCommonLib.image.read_image``), so that a film loaded in Slicer and the same file given to
    the command line give the same ``Image``:

    - a volume made by ``volume_from_image`` (the command line, the browser review) is taken as it
      is, with the spacing and provenance it remembers;
    - a volume Slicer read from a DICOM file (DICOM module or Add Data: ITK/GDCM, which applies the
      modality rescale and inverts MONOCHROME1 as the reader does) takes its spacing from the same
      DICOM attributes as the reader (PixelSpacing, else ImagerPixelSpacing, ...), or none;
    - a volume read from PNG, JPEG or TIFF has no known spacing (those files state none; Slicer
      shows 1 mm), from NRRD or NIfTI the spacing its header states;
    - a volume made in memory (no file) with spacing 1 x 1 has no known spacing;
    - colour (a vector volume, or RGB scalars) becomes gray by the reader's luminance weights, and
      its colour pixels are kept for the back module.
    Raises ``ImageReadError`` for a 3D volume, no image data, or pixels that are not an image."""
    if volume_node is None:
        raise ImageReadError("no image selected")
    name = volume_node.GetName()
    data = volume_node.GetImageData()
    if data is None:
        raise ImageReadError(f"'{name}' has no image data")
    require_single_slice(volume_node)
    from vtkmodules.util import numpy_support

    w, h, _ = data.GetDimensions()
    components = data.GetNumberOfScalarComponents()
    pixels = numpy_support.vtk_to_numpy(data.GetPointData().GetScalars()).reshape((h, w) + ((components,) if components > 1 else ()))
    if pixels.ndim == 3 and components not in (3, 4):
        pixels = pixels[..., 0]
    storage = volume_node.GetStorageNode()
    path = Path(storage.GetFileName()) if storage is not None and storage.GetFileName() else None
    spacing_xy = volume_node.GetSpacing()[:2]
    node_spacing = (float(spacing_xy[1]), float(spacing_xy[0]))  # (row, column)
    made_here = volume_node.GetAttribute(ATTR_NORMALISATION) is not None
    if made_here:
        spacing_source = volume_node.GetAttribute(ATTR_SPACING_SOURCE) or ""
        image = image_from_array(pixels, node_spacing if spacing_source else None,
                                 source=volume_node.GetAttribute(ATTR_SOURCE) or name, spacing_source=spacing_source)
        image.normalisation = volume_node.GetAttribute(ATTR_NORMALISATION)
        image.bits = int(volume_node.GetAttribute(ATTR_BITS) or image.bits)
        colourfulness = volume_node.GetAttribute(ATTR_COLOURFULNESS) or ""
        if colourfulness:  # the reader measured it on the file's own colour pixels
            image.was_colour, image.colourfulness = True, float(colourfulness)
        return image
    source = str(path) if path is not None else name
    kind = _file_kind(path)
    if kind == "DICOM":
        import pydicom

        from .image import dicom_spacing

        ds = pydicom.dcmread(str(path), stop_before_pixels=True, force=True)
        spacing, spacing_source = dicom_spacing(ds)
        bits = 8 if int(ds.get("BitsStored") or ds.get("BitsAllocated") or 16) <= 8 else 16
        photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
        note = f"{bits}-bit DICOM read by Slicer (modality values" + (", MONOCHROME1 inverted)" if photometric == "MONOCHROME1" else ")")
    elif kind in ("PNG", "JPEG", "TIFF"):
        spacing, spacing_source, bits, note = None, "", 8 if pixels.dtype.itemsize == 1 else 16, f"{kind} read by Slicer"
    elif kind in ("NRRD", "NIfTI"):
        stated = _itk_header_states_spacing(path, kind)
        spacing, spacing_source = (node_spacing, f"{kind} header") if stated else (None, "")
        bits, note = 8 if pixels.dtype.itemsize == 1 else 16, f"{kind} read by Slicer"
    else:
        unknown = all(abs(s - 1.0) < 1e-12 for s in node_spacing)
        spacing, spacing_source = (None, "") if unknown else (node_spacing, "volume node")
        bits, note = 8 if pixels.dtype.itemsize == 1 else 16, "volume node"
    image = image_from_array(pixels, spacing, source=source, spacing_source=spacing_source)
    image.bits = bits
    image.normalisation = note + (", colour converted to gray" if image.was_colour else "")
    return image


def _file_kind(path: Optional[Path]) -> str:
    if path is None or not path.is_file():
        return ""
    with open(path, "rb") as f:
        head = f.read(512)
    from .image import sniff_format

    return sniff_format(path, head)


def _itk_header_states_spacing(path: Path, kind: str) -> bool:
    import SimpleITK as sitk

    from .image import _ITK_IO, _itk_spacing_source

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.SetImageIO(_ITK_IO[kind])
    reader.ReadImageInformation()
    return bool(_itk_spacing_source(path, reader, kind))


def _image_data(array: np.ndarray, vtk_type, components: int = 1):
    h, w = array.shape[:2]
    data = vtkImageData()
    data.SetDimensions(w, h, 1)
    from vtkmodules.util import numpy_support

    # a deep copy made by numpy, whose buffer VTK then keeps: several times faster than filling
    # freshly allocated VTK memory (AllocateScalars) for a large film
    flat = array.reshape(h * w, components) if components > 1 else array.reshape(-1)
    scalars = numpy_support.numpy_to_vtk(flat, deep=True, array_type=vtk_type)
    scalars.SetName("ImageScalars")
    data.GetPointData().SetScalars(scalars)
    return data


def set_image_geometry(node, spacing_mm) -> None:
    """IJK-to-RAS of a 2D image as Slicer lays out a PNG it loads: LPS axes along the columns and
    rows (shown in RAS), origin at the first pixel; ``spacing_mm`` = (row, column)."""
    row_mm, col_mm = spacing_mm
    ijk_to_ras = vtkMatrix4x4()
    ijk_to_ras.SetElement(0, 0, -col_mm)
    ijk_to_ras.SetElement(1, 1, -row_mm)
    ijk_to_ras.SetElement(2, 2, 1.0)
    node.SetIJKToRASMatrix(ijk_to_ras)


def aligned_volume(scene, like_node, array: np.ndarray, name: str, class_name: str = "vtkMRMLScalarVolumeNode",
                   node=None):
    """A scalar (or label map) volume on exactly the grid of ``like_node`` (depth and mask maps on
    a photo); ``node``: update this one instead of making a new one."""
    array = np.asarray(array)
    vtk_type = {np.dtype(np.uint8): VTK_UNSIGNED_CHAR, np.dtype(np.float32): VTK_FLOAT}[array.dtype]
    if node is None:
        node = scene.AddNewNodeByClass(class_name, scene.GenerateUniqueName(name))
    node.SetAndObserveImageData(_image_data(np.ascontiguousarray(array), vtk_type, 1))
    m = vtkMatrix4x4()
    like_node.GetIJKToRASMatrix(m)
    node.SetIJKToRASMatrix(m)
    if node.GetDisplayNode() is None:
        node.CreateDefaultDisplayNodes()
    return node


def volume_array(node) -> np.ndarray:
    """The (single-slice) volume's scalars as an H x W (x C) array (a copy)."""
    from vtkmodules.util import numpy_support

    data = node.GetImageData()
    w, h, _ = data.GetDimensions()
    c = data.GetNumberOfScalarComponents()
    return numpy_support.vtk_to_numpy(data.GetPointData().GetScalars()).reshape((h, w) + ((c,) if c > 1 else ())).copy()


def require_single_slice(volume_node) -> None:
    dims = volume_node.GetImageData().GetDimensions() if volume_node.GetImageData() else (0, 0, 0)
    if dims[2] != 1:
        raise ImageReadError(
            f"'{volume_node.GetName()}' is a 3D volume with {dims[2]} slices; this module needs a single 2D image"
        )


def _matrix(volume_node, which: str) -> np.ndarray:
    m = vtkMatrix4x4()
    getattr(volume_node, which)(m)
    return np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])


def pixels_to_ras(volume_node, xy: np.ndarray) -> np.ndarray:
    """Pixel (x, y) -> RAS (N, 3), through the volume's IJK-to-RAS matrix (slice 0)."""
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    ijk = np.column_stack([xy, np.zeros(len(xy)), np.ones(len(xy))])
    return (ijk @ _matrix(volume_node, "GetIJKToRASMatrix").T)[:, :3]


def ras_to_pixels(volume_node, ras: np.ndarray) -> np.ndarray:
    ras = np.asarray(ras, dtype=np.float64).reshape(-1, 3)
    h = np.column_stack([ras, np.ones(len(ras))])
    return (h @ _matrix(volume_node, "GetRASToIJKMatrix").T)[:, :2]


# --------------------------------------------------------------------------------------------
# markups

def set_control_points(node, ras: np.ndarray, labels: Optional[Sequence[str]] = None) -> None:
    """Set all control points of a markups node in one modification (one event for observers)."""
    was = node.StartModify()
    try:
        if node.GetNumberOfControlPoints() != len(ras):
            node.RemoveAllControlPoints()
            for p in ras:
                node.AddControlPoint(vtkVector3d(*p))
        else:
            for i, p in enumerate(ras):
                node.SetNthControlPointPosition(i, *p)
        if labels is not None:
            for i, label in enumerate(labels):
                node.SetNthControlPointLabel(i, label)
    finally:
        node.EndModify(was)


def control_points(node) -> np.ndarray:
    n = node.GetNumberOfControlPoints()
    out = np.zeros((n, 3))
    for i in range(n):
        node.GetNthControlPointPosition(i, out[i])
    return out


def new_markups(scene, class_name: str, name: str, color=(1.0, 0.5, 0.0), locked: bool = False):
    node = scene.AddNewNodeByClass(class_name, scene.GenerateUniqueName(name))
    node.CreateDefaultDisplayNodes()
    display = node.GetDisplayNode()
    if display is not None:
        display.SetSelectedColor(*color)
        display.SetColor(*color)
    node.SetLocked(locked)
    return node


# --------------------------------------------------------------------------------------------
# tables and segmentations

def fill_table(table_node, columns: Sequence[tuple[str, Sequence]]) -> None:
    """Replace a table node's content. A column is (name, values); numbers make a double column
    (None as NaN), anything else a string column."""
    table = vtkTable()
    for name, values in columns:
        numeric = all(v is None or isinstance(v, (int, float, np.floating, np.integer)) for v in values)
        numeric = numeric and any(v is not None for v in values)
        arr = vtkDoubleArray() if numeric else vtkStringArray()
        arr.SetName(name)
        for v in values:
            if numeric:
                arr.InsertNextValue(float("nan") if v is None else float(v))
            else:
                arr.InsertNextValue("" if v is None else str(v))
        table.AddColumn(arr)
    was = table_node.StartModify()
    table_node.SetAndObserveTable(table)
    table_node.EndModify(was)


def table_rows(table_node) -> list[dict]:
    table = table_node.GetTable()
    names = [table.GetColumnName(c) for c in range(table.GetNumberOfColumns())]
    rows = []
    for r in range(table.GetNumberOfRows()):
        row = {}
        for c, name in enumerate(names):
            v = table.GetValue(r, c)
            row[name] = v.ToDouble() if v.IsNumeric() else v.ToString()
        rows.append(row)
    return rows


def segmentation_from_labelmap(
    scene, labelmap: np.ndarray, volume_node, names: Sequence[str], colors: np.ndarray, name: str, node=None
):
    """A segmentation node (one segment per label 1..N, named and coloured) on the volume's grid.
    Reuses ``node`` if given (its segments are replaced)."""
    labelmap = np.ascontiguousarray(labelmap, dtype=np.uint8)
    label_node = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "__tmp_labels")
    color_node = scene.AddNewNodeByClass("vtkMRMLColorTableNode", "__tmp_colors")
    try:
        color_node.SetTypeToUser()
        color_node.SetNumberOfColors(len(names) + 1)
        color_node.SetColor(0, "Background", 0, 0, 0, 0)
        for i, (n, c) in enumerate(zip(names, colors), start=1):
            color_node.SetColor(i, n, float(c[0]), float(c[1]), float(c[2]), 1.0)
        image = vtkImageData()
        image.SetDimensions(labelmap.shape[1], labelmap.shape[0], 1)
        image.AllocateScalars(VTK_UNSIGNED_CHAR, 1)
        from vtkmodules.util import numpy_support

        numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())[:] = labelmap.reshape(-1)
        label_node.SetAndObserveImageData(image)
        m = vtkMatrix4x4()
        volume_node.GetIJKToRASMatrix(m)
        label_node.SetIJKToRASMatrix(m)
        label_node.CreateDefaultDisplayNodes()
        label_node.GetDisplayNode().SetAndObserveColorNodeID(color_node.GetID())
        if node is None:
            node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", scene.GenerateUniqueName(name))
            node.CreateDefaultDisplayNodes()
        else:
            node.GetSegmentation().RemoveAllSegments()
        node.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
        ok = slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(label_node, node)
        if not ok:
            raise RuntimeError("could not import the vertebra label map into a segmentation")
        # name segments by label value (segments absent from the label map are simply missing)
        seg = node.GetSegmentation()
        for i in range(seg.GetNumberOfSegments()):
            segment = seg.GetNthSegment(i)
            value = segment.GetLabelValue()
            if 1 <= value <= len(names):
                segment.SetName(names[value - 1])
                c = colors[value - 1]
                segment.SetColor(float(c[0]), float(c[1]), float(c[2]))
        return node
    finally:
        scene.RemoveNode(label_node)
        scene.RemoveNode(color_node)


# --------------------------------------------------------------------------------------------
# files

def save_node(node, path: Path) -> Path:
    """Write one node with its default storage node (.mrk.json, .seg.nrrd, .nrrd, .tsv/.csv, .vtk)."""
    path = Path(path)
    storage = node.GetStorageNode()
    if storage is None:
        storage = node.CreateDefaultStorageNode()
        node.GetScene().AddNode(storage)
        node.SetAndObserveStorageNodeID(storage.GetID())
    storage.SetFileName(str(path))
    if not storage.WriteData(node):
        raise OSError(f"could not write {path}")
    return path


def save_scene(scene, path: Path) -> Path:
    """The whole scene as a Slicer scene file (.mrb)."""
    path = Path(path)
    if not scene.WriteToMRB(str(path)):
        raise OSError(f"could not write {path}")
    return path


def read_node(scene, class_name: str, path: Path):
    """Read one node from a file with the storage node of its class (inverse of save_node)."""
    node = scene.AddNewNodeByClass(class_name)
    storage = node.CreateDefaultStorageNode()
    scene.AddNode(storage)
    node.SetAndObserveStorageNodeID(storage.GetID())
    storage.SetFileName(str(path))
    if not storage.ReadData(node):
        raise OSError(f"could not read {path}")
    return node


def json_attribute(node, key: str, value=None):
    """Store (value given) or read a JSON-serialisable attribute on a node."""
    if value is not None:
        node.SetAttribute(key, json.dumps(value))
        return value
    raw = node.GetAttribute(key)
    return None if raw is None else json.loads(raw)


def nodes_referencing(scene, class_name: str, role: str, target) -> Iterable:
    """Nodes of a class whose reference ``role`` points at ``target``."""
    for i in range(scene.GetNumberOfNodesByClass(class_name)):
        node = scene.GetNthNodeByClass(i, class_name)
        if node.GetNodeReferenceID(role) == target.GetID():
            yield node
