"""MRML helpers shared by the modules: the one boundary where pixel coordinates become RAS.

Works in desktop Slicer and with the ``slicer-core`` wheel (no GUI). Below this layer nothing
imports Slicer; above it, a module's own ``mrml`` layer builds its nodes with these helpers.

Geometry of a 2D radiograph: a scalar volume with one slice, IJK = (x column, y row, 0), laid out
as Slicer lays out a PNG it loads (LPS axes along the image, origin at the first pixel) with the
pixel spacing when known. Landmarks are converted through the volume's own IJK-to-RAS matrix, so
a volume that came from DICOM with another geometry works the same.
"""
from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np
import vtk

import slicer


# --------------------------------------------------------------------------------------------
# volumes and coordinates

def volume_from_radiograph(scene, radiograph, name: str):
    """A scalar volume node showing a ``MSKCommonLib.image.Radiograph`` with its spacing."""
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", scene.GenerateUniqueName(name))
    pixels = np.ascontiguousarray(radiograph.pixels, dtype=np.float32)
    row_mm, col_mm = radiograph.spacing_mm or (1.0, 1.0)
    image = vtk.vtkImageData()
    image.SetDimensions(pixels.shape[1], pixels.shape[0], 1)
    image.AllocateScalars(vtk.VTK_FLOAT, 1)
    from vtk.util import numpy_support

    flat = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
    flat[:] = pixels.reshape(-1)
    node.SetAndObserveImageData(image)
    ijk_to_ras = vtk.vtkMatrix4x4()
    ijk_to_ras.SetElement(0, 0, -col_mm)  # LPS x along the columns, shown in RAS
    ijk_to_ras.SetElement(1, 1, -row_mm)
    ijk_to_ras.SetElement(2, 2, 1.0)
    node.SetIJKToRASMatrix(ijk_to_ras)
    node.CreateDefaultDisplayNodes()
    display = node.GetDisplayNode()
    low, high = np.percentile(pixels, [0.5, 99.5])
    display.AutoWindowLevelOff()
    display.SetWindowLevelMinMax(float(low), float(high if high > low else low + 1))
    node.SetAttribute("MSKMorphometry.Source", str(radiograph.source))
    return node


def require_single_slice(volume_node) -> None:
    dims = volume_node.GetImageData().GetDimensions() if volume_node.GetImageData() else (0, 0, 0)
    if dims[2] != 1:
        raise ValueError(
            f"'{volume_node.GetName()}' is a 3D volume with {dims[2]} slices; this module needs a single 2D radiograph"
        )


def pixel_array(volume_node) -> np.ndarray:
    """The radiograph's pixels as a float32 H x W array (a copy)."""
    require_single_slice(volume_node)
    from vtk.util import numpy_support

    image = volume_node.GetImageData()
    nx, ny, _ = image.GetDimensions()
    scalars = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
    if scalars.ndim > 1:  # an RGB volume: luminance
        scalars = scalars[:, :3] @ np.array([0.299, 0.587, 0.114])
    return scalars.reshape(ny, nx).astype(np.float32)


def _matrix(volume_node, which: str) -> np.ndarray:
    m = vtk.vtkMatrix4x4()
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
                node.AddControlPoint(vtk.vtkVector3d(*p))
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
    table = vtk.vtkTable()
    for name, values in columns:
        numeric = all(v is None or isinstance(v, (int, float, np.floating, np.integer)) for v in values)
        numeric = numeric and any(v is not None for v in values)
        arr = vtk.vtkDoubleArray() if numeric else vtk.vtkStringArray()
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
        image = vtk.vtkImageData()
        image.SetDimensions(labelmap.shape[1], labelmap.shape[0], 1)
        image.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
        from vtk.util import numpy_support

        numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())[:] = labelmap.reshape(-1)
        label_node.SetAndObserveImageData(image)
        m = vtk.vtkMatrix4x4()
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


# --------------------------------------------------------------------------------------------
# live updates

class PointObservers:
    """Observers on markup nodes' control points, each with the result (any object: a module's
    node set) that its callback keeps current when a point is moved, added or removed.

    One instance per module's MRML layer. ``observe`` is idempotent: a node already observed
    keeps its first result object, which is returned, so every caller shares one object.
    ``paused(node)`` silences a node while the layer itself writes its points."""

    EVENTS = ("PointModifiedEvent", "PointAddedEvent", "PointRemovedEvent")

    def __init__(self):
        self._entries: dict = {}  # node -> (observer tags, result object, callback)

    def __contains__(self, node) -> bool:
        return node in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def result_of(self, node):
        """The result object kept for an observed node."""
        return self._entries[node][1]

    def observe(self, node, result, callback):
        """Call ``callback(result)`` whenever a control point of ``node`` changes."""
        if node is None:
            return result
        if node in self._entries:
            return self._entries[node][1]

        def changed(caller, event):
            entry = self._entries.get(caller)
            if entry is not None:
                entry[2](entry[1])

        tags = [node.AddObserver(getattr(node, event), changed) for event in self.EVENTS]
        self._entries[node] = (tags, result, callback)
        return result

    def forget(self, node) -> None:
        entry = self._entries.pop(node, None)
        if entry is not None:
            for tag in entry[0]:
                node.RemoveObserver(tag)

    def forget_all(self) -> None:
        for node in list(self._entries):
            self.forget(node)

    @contextmanager
    def paused(self, node):
        """No callbacks from ``node`` inside the block (when it is observed at all)."""
        entry = self._entries.get(node)
        if entry is None:
            yield
            return
        self.forget(node)
        try:
            yield
        finally:
            self.observe(node, entry[1], entry[2])
