"""Back surface as a triangle mesh (vtkPolyData) from a depth map, coloured by the photo or by depth.

Mesh coordinates are patient RAS (mm when the surface is metric, else photo pixels):
R = x (the patient's right, image right), A = -z (z is posterior), S = -y (y is down), so the
model shows the back as seen from behind in Slicer's 3D view. ``to_ras``/``from_ras`` convert
between the measurement frame of ``morphology`` and this RAS frame.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
# VTK classes by module: `import vtk` would load every VTK module (about 1 s of each start)
from vtkmodules.vtkCommonCore import VTK_UNSIGNED_CHAR, vtkPoints
from vtkmodules.vtkCommonDataModel import vtkCellArray, vtkPolyData
from vtkmodules.vtkFiltersCore import vtkPolyDataNormals
from vtkmodules.vtkIOLegacy import vtkPolyDataReader, vtkPolyDataWriter
from vtkmodules.vtkIOPLY import vtkPLYReader, vtkPLYWriter
from vtkmodules.vtkIOXML import vtkXMLPolyDataReader, vtkXMLPolyDataWriter
from vtkmodules.util import numpy_support

from .morphology import Surface


def to_ras(xyz: np.ndarray) -> np.ndarray:
    xyz = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
    return np.column_stack([xyz[:, 0], -xyz[:, 2], -xyz[:, 1]])


def from_ras(ras: np.ndarray) -> np.ndarray:
    ras = np.asarray(ras, dtype=np.float64).reshape(-1, 3)
    return np.column_stack([ras[:, 0], -ras[:, 2], -ras[:, 1]])


def depth_colours(z: np.ndarray) -> np.ndarray:
    """uint8 RGB for heights (a blue-white-red ramp over the 2-98 percentiles)."""
    lo, hi = np.percentile(z, [2, 98]) if len(z) else (0.0, 1.0)
    t = np.clip((z - lo) / max(hi - lo, 1e-9), 0, 1)
    blue, white, red = np.array([40, 80, 200.0]), np.array([245, 245, 245.0]), np.array([200, 40, 40.0])
    c = np.where(t[:, None] < 0.5, blue + (white - blue) * (2 * t)[:, None], white + (red - white) * (2 * t - 1)[:, None])
    return c.astype(np.uint8)


def triangle_polydata(points: np.ndarray, triangles: np.ndarray) -> vtkPolyData:
    """A vtkPolyData of triangles from numpy: points (N, 3), triangles (M, 3) point indices."""
    pts = vtkPoints()
    pts.SetData(numpy_support.numpy_to_vtk(np.ascontiguousarray(points, dtype=np.float64), deep=True))
    conn = np.ascontiguousarray(triangles, dtype=np.int64).ravel()
    offsets = np.arange(0, len(conn) + 1, 3, dtype=np.int64)
    cells = vtkCellArray()
    cells.SetData(numpy_support.numpy_to_vtkIdTypeArray(offsets, deep=True),
                  numpy_support.numpy_to_vtkIdTypeArray(conn, deep=True))
    poly = vtkPolyData()
    poly.SetPoints(pts)
    poly.SetPolys(cells)
    return poly


def mesh_from_surface(surface: Surface, rgb: Optional[np.ndarray] = None, step: int = 2,
                      colour_by: str = "photo") -> vtkPolyData:
    """Triangles over the masked pixel grid (every ``step`` pixels), with a ``Colors`` point array
    (photo colours, or depth colours when ``colour_by='depth'`` or no photo) and a ``Height``
    array (z, posterior)."""
    mask = surface.mask[::step, ::step]
    xyz = surface.xyz[::step, ::step]
    h, w = mask.shape
    index = -np.ones((h, w), dtype=np.int64)
    index[mask] = np.arange(int(mask.sum()))
    pts = xyz[mask]
    a, b, c, d = index[:-1, :-1], index[:-1, 1:], index[1:, :-1], index[1:, 1:]
    quads = (a >= 0) & (b >= 0) & (c >= 0) & (d >= 0)
    tri1 = np.stack([a[quads], c[quads], b[quads]], 1)
    tri2 = np.stack([b[quads], c[quads], d[quads]], 1)
    tris = np.concatenate([tri1, tri2])
    poly = triangle_polydata(to_ras(pts), tris)
    if colour_by == "photo" and rgb is not None:
        colours = np.asarray(rgb)[::step, ::step][mask][:, :3].astype(np.uint8)
    else:
        colours = depth_colours(pts[:, 2])
    arr = numpy_support.numpy_to_vtk(np.ascontiguousarray(colours), deep=True, array_type=VTK_UNSIGNED_CHAR)
    arr.SetName("Colors")
    poly.GetPointData().AddArray(arr)
    poly.GetPointData().SetActiveScalars("Colors")
    height = numpy_support.numpy_to_vtk(np.ascontiguousarray(pts[:, 2]), deep=True)
    height.SetName("Height")
    poly.GetPointData().AddArray(height)
    normals = vtkPolyDataNormals()
    normals.SetInputData(poly)
    normals.SplittingOff()
    normals.ConsistencyOn()
    normals.Update()
    return normals.GetOutput()


def write_mesh(poly: vtkPolyData, path: Path) -> Path:
    """.vtk (legacy), .vtp or .ply (binary, with colours)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".ply":
        writer = vtkPLYWriter()
        writer.SetArrayName("Colors")
        writer.SetColorModeToDefault()
        writer.SetFileTypeToBinary()
    elif suffix == ".vtp":
        writer = vtkXMLPolyDataWriter()
    elif suffix == ".vtk":
        writer = vtkPolyDataWriter()
        writer.SetFileVersion(42) if hasattr(writer, "SetFileVersion") else None
    else:
        raise ValueError(f"unknown surface format {suffix!r}: use .vtk, .vtp or .ply")
    writer.SetFileName(str(path))
    writer.SetInputData(poly)
    if not writer.Write():
        raise OSError(f"could not write {path}")
    return path


def read_mesh(path: Path) -> vtkPolyData:
    path = Path(path)
    reader = {".ply": vtkPLYReader, ".vtp": vtkXMLPolyDataReader, ".vtk": vtkPolyDataReader}[path.suffix.lower()]()
    reader.SetFileName(str(path))
    reader.Update()
    return reader.GetOutput()
