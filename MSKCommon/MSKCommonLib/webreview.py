"""``mskmorph review``: the browser review on trame-slicer, a thin adapter over ModuleLogic, the
review layer and each module's files (no measuring code of its own).

    mskmorph review INPUT... [--module cobb|knee|back] [--host 127.0.0.1] [--port N] --out DIR

The module is given by ``--module``, else chosen from the inputs: colour photos -> back, films
-> cobb (a knee film needs ``--module knee``). Bound beyond loopback it needs the access token
that it prints once in the URL (see "The access token" below); it serves only its page (no file of the inputs or
the disk) and writes only under ``--out``.
Each input (``batch.expand_inputs``) is read with ``read_image`` when opened; a film that cannot
be read is listed with its reason. Measure runs the pipeline in the worker process
(``ModuleLogic.start_job``) and the result is shown by the review layer in a real Slicer slice
view rendered offscreen (set VTK_DEFAULT_OPENGL_WINDOW=vtkEGLRenderWindow). Accept writes the
module's files (``files.write_outputs``) and the per-run CSV/JSON (``batch.write_summary``).
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
from pathlib import Path

LOOPBACK = ("127.0.0.1", "localhost", "::1")
ANY_ADDRESS = ("0.0.0.0", "::", "")
# the page's table fits beside the film in a 1280 x 720 window: what the page shows elsewhere
# (the convention in the note, the edited points below) or repeats is left out, long titles shortened
PAGE_HIDDEN_COLUMNS = ("Region", "Convention", "Edited points", "Vertebrae named")  # the last: in the names panel
PAGE_COLUMN_TITLES = {"Upper end vertebra": "Upper", "Lower end vertebra": "Lower"}
SIGN_OFF_COLUMNS = ("accepted_by", "accepted_at", "checks_acknowledged")  # the CSV's sign-off, after the module's
NOTE_COLUMNS = ("Note",)  # the presenters' notes: shown as CHECK warnings, not as table columns
HIDDEN_COLUMNS = NOTE_COLUMNS + ("Key",)
# window/level presets: the film's grey values between these percentiles (a left-drag adjusts further)
WINDOW_PRESETS = {"auto": (0.5, 99.5), "full range": (0.0, 100.0), "high contrast": (10.0, 90.0), "bright parts": (50.0, 99.9)}
HINT = ("Left-drag on the film: window/level (on a point: move it) · wheel: zoom at the cursor · middle-drag: pan · "
        "Fit: whole film · Ctrl+Z / Ctrl+Shift+Z: undo / redo · Up/Down: films · M: measure · A: accept")
KEYS = """
window.addEventListener('keydown', (e) => {
  const t = e.target && e.target.tagName;
  const typing = t === 'TEXTAREA' || (t === 'INPUT' && !['checkbox', 'radio', 'button'].includes(e.target.type));
  if (typing || e.altKey || !window.trame) return;
  if ((e.ctrlKey || e.metaKey) && (e.key === 'z' || e.key === 'Z')) {  // undo / redo, also after a selector or toggle
    window.trame.trigger(e.shiftKey ? 'redo' : 'undo', []); e.preventDefault(); return;
  }
  if (t === 'SELECT' || e.ctrlKey || e.metaKey) return;  // the arrows choose in a selector
  const current = window.trame.state.get('current');
  const go = {ArrowDown: 1, ArrowRight: 1, n: 1, ArrowUp: -1, ArrowLeft: -1, p: -1}[e.key];
  if (go) { window.trame.trigger('select', [current + go]); e.preventDefault(); }
  else if (e.key === 'm') window.trame.trigger('measure', []);
  else if (e.key === 'a') window.trame.trigger('accept', []);
});
"""


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="films or folders of them")
    parser.add_argument("--module", choices=("cobb", "knee", "back"), default=None,
                        help="default: back for colour photos, else cobb")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only; any other needs the access token it prints)")
    parser.add_argument("--port", type=int, default=0, help="port (0: a free one)")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="where Accept writes")
    parser.add_argument("--dicom", action="store_true",
                        help="Accept also writes NAME_sr.dcm (and Cobb NAME_seg.dcm) as mskmorph ... --dicom does, "
                             "with the points as the user left them")
    parser.add_argument("--reviewer", "--editor", dest="reviewer", metavar="NAME",
                        help="who reviews and signs (--editor is the older name; the page has a field for it too): "
                             "Accept writes the name and the time, and the SR is VERIFIED by them")
    parser.add_argument("--landmarks", type=Path, metavar="PATH",
                        help="Cobb: corners from an AASCE .mat file (one film) or a folder of <film name>.mat instead "
                             "of the network, as mskmorph cobb --landmarks")
    parser.add_argument("--spacing", type=float, metavar="MM",
                        help="knee: pixel spacing in mm for films that state none (PNG/JPEG); the page has a field for it")
    parser.add_argument("--organization", metavar="NAME", default="",
                        help="the reviewer's organisation, named in a verified SR (default: the film's institution)")


class ReviewApp:
    def __init__(self, inputs, module, out: Path, server=None, dicom: bool = False, reviewer: str = "",
                 organization: str = "", landmarks=None, spacing=None):
        os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
        from trame.app import get_server
        from trame_slicer import module as trame_slicer_module
        from trame_slicer.core import LayoutManager, SlicerApp
        from trame_slicer.rca_view import register_rca_factories
        from trame_slicer.views import Layout, LayoutDirection, ViewLayoutDefinition

        from . import batch
        from .logic import ModuleLogic

        self.server = server or get_server(None, client_type="vue3")
        self.server.enable_module(trame_slicer_module)
        self.state, self.ctrl = self.server.state, self.server.controller
        self.slicer = SlicerApp()
        # no slice slider under the film: a radiograph has one slice (the 3D view keeps its own controls)
        register_rca_factories(self.slicer.view_manager, self.server, slice_view_ui_f=lambda *_: None)
        self.layout_manager = LayoutManager(self.slicer.scene, self.slicer.view_manager, self.server)
        from .image import read_image

        self.out = Path(out).resolve()
        self.dicom, self.organization = dicom, organization or ""
        self.landmarks = None if landmarks is None else Path(landmarks)
        self.items = batch.expand_inputs(inputs)
        taken: set = set()
        self.stems = [batch.output_stem(i.path, taken) for i in self.items]
        self.images: dict = {}
        for n, item in enumerate(self.items):  # each film read once, so a bad one shows its reason at once
            if item.error is None:
                try:
                    self.images[n] = read_image(item.path)
                except (ValueError, OSError) as e:
                    item.error = str(e) or type(e).__name__
        module = module or choose_module(self.images.values())
        self.logic = ModuleLogic(module)
        self.files = self.logic.spec.files()
        views = [ViewLayoutDefinition.axial_view()]
        if self.logic.spec.colour:  # the back: the photo beside the surface in 3D
            views.append(ViewLayoutDefinition.threed_view())
        self.layout_manager.register_layout("film", Layout(LayoutDirection.Horizontal, views))
        self.layout_manager.set_layout("film")
        film_interaction(self._slice_view(), self.slicer.scene)
        self._picking = None  # (curve, [vertebra index picked so far]) while the reader clicks end vertebrae
        self._naming = None  # the level (T1..L5) the next click on the film names (Cobb)
        self._job_named = False  # the running job counts from the reader's names
        self._asked_named = False  # the keep / replace question was asked for a count from names
        self._pick_tag = self._slice_view().interactor().AddObserver("LeftButtonPressEvent", self._pick, 20.0)
        self.slicer.scene.GetNodeByID(self._slice_view().get_view_node_id()).AddObserver(
            "ModifiedEvent", lambda *_: self._push(view_geometry=self._geometry_json()))
        self.status = ["refused" if i.error else "new" for i in self.items]
        self.volumes: dict = {}
        self.lives: dict = {}  # film -> its latest result
        self.kept: dict = {}  # film -> older results kept beside it ("keep" on measuring again)
        self.job = None
        self.reports: dict = {}  # film -> the report line of its last Accept
        self._pending_ends: dict = {}  # curve -> the one end chosen so far (a missed curve needs both)
        self.current = -1
        self._watched: set = set()
        self.state.update(worklist=self._worklist(), current=-1, columns=[], rows=[], edited="", warnings=[],
                          busy=False, progress=0, message="", written="", question=False, view_geometry="",
                          has_segmentation=False, show_segmentation=True, module=self.logic.spec.key,
                          window_preset="auto", invert=False, presets=list(WINDOW_PRESETS), hint=HINT,
                          show_labels=True, show_angles=True, show_lines=True, has_labels=False, ends=[],
                          spacing="" if spacing is None else str(spacing), needs_spacing=False,
                          calibrating=False, calibration_px=0.0, calibration_mm="", picking="",
                          vertebrae=[], edited_points=[], levels=self._levels(), name_level="T1", naming=False,
                          named=[], counted_from="", can_undo=False, can_redo=False,
                          reviewer=reviewer or "", checks_question=False, open_checks=[], report="", signed="")
        self.state.change("show_segmentation")(self._show_segmentation)
        self.state.change("window_preset", "invert")(self._window)
        for name in ("select", "measure", "accept", "undo", "redo"):  # for the keyboard shortcuts
            self.server.trigger(name)(getattr(self, name))
        self.ctrl.select = self.select
        self.ctrl.measure = self.measure
        self.ctrl.cancel = self.cancel
        self.ctrl.reset_points = self.reset_points
        self.ctrl.accept = self.accept
        self.ctrl.accept_with_checks = self.accept_with_checks
        self.state.change("show_labels", "show_angles", "show_lines")(self._show_roles)
        self.ctrl.answer = self.answer
        self.ctrl.count_from_names = self.count_from_names
        self._build_ui()

    # --- state
    def _worklist(self):
        return [{"index": n, "name": i.path.name, "status": self.status[n], "reason": i.error or ""}
                for n, i in enumerate(self.items)]

    def _push(self, **values):
        with self.state:
            self.state.worklist = self._worklist()
            self.state.update(values)

    def _slice_view(self):
        return self.slicer.view_manager.get_slice_views()[0]

    def _geometry(self):
        view = self._slice_view()
        node = self.slicer.scene.GetNodeByID(view.get_view_node_id())
        m = node.GetXYToRAS()
        size = view.render_window().GetSize()
        out = {"xy_to_ras": [[m.GetElement(r, c) for c in range(4)] for r in range(4)], "size": list(size)}
        volume = self.volumes.get(self.current)
        if volume is not None:
            import vtk

            ijk = vtk.vtkMatrix4x4()
            volume.GetIJKToRASMatrix(ijk)
            out["ijk_to_ras"] = [[ijk.GetElement(r, c) for c in range(4)] for r in range(4)]
        return out

    def _live(self):
        return self.lives.get(self.current)

    def _refresh_table(self, *_, **extra):
        live = self._live()
        from .mrml import table_rows

        table = [] if live is None else table_rows(live.table)
        columns = [c for c in (table[0] if table else {}) if c not in HIDDEN_COLUMNS + PAGE_HIDDEN_COLUMNS]
        rows = [[_cell(r[c]) for c in columns] for r in table]
        columns = [PAGE_COLUMN_TITLES.get(c, c) for c in columns]
        warnings = list(dict.fromkeys(w for r in table for c in NOTE_COLUMNS for w in str(r.get(c) or "").split("\n")
                                      if w.strip() and w != "None"))
        edited = "" if live is None else ", ".join(sum((list(v) for v in live.edited_labels().values()), []))
        changed = bool(_)  # called by the table's observer: the points or the measurement changed
        if live is not None and (self.status[self.current] in ("measured", "edited") or changed):
            self.status[self.current] = "edited" if live.edited() else "measured"
        signed = {} if live is None else live.acceptance()  # withdrawn by an edit after Accept
        self._push(columns=columns, rows=rows, warnings=warnings, edited=edited, view_geometry=self._geometry_json(),
                   ends=self._ends(live), vertebrae=self._vertebrae(live), **self._names(live), edited_points=self._edited_points(live),
                   can_undo=live is not None and live.can_undo, can_redo=live is not None and live.can_redo,
                   has_labels=live is not None and live.node("labels") is not None,
                   has_segmentation=live is not None and live.node("segmentation") is not None,
                   signed=f"Accepted by {signed['accepted_by']}, {signed['accepted_at']}" if signed else "",
                   report=self.reports.get(self.current, "") if signed else "", **extra)
        self.state.flush()

    def _geometry_json(self):
        return json.dumps(self._geometry())

    def _show_only_current(self):
        """The nodes of the current film's results in the views, those of the other films hidden;
        with a 3D view (the back), points on the photo in the slice view only, the surface and the
        nodes on it (role ``...3d``) in the 3D view only."""
        slice_ids = [v.get_view_node_id() for v in self.slicer.view_manager.get_slice_views()]
        threed_ids = [v.get_view_node_id() for v in self.slicer.view_manager.get_threed_views()]
        shown = [(index, live) for index, live in self.lives.items()]
        kept = [(None, live) for lives in self.kept.values() for live in lives]  # older results kept: hidden
        for index, live in shown + kept:
            for role, node in live.nodes.items():
                on_surface = node.IsA("vtkMRMLModelNode") or role.endswith("3d")
                views = ["vtkMRMLViewNodeNone"] if index != self.current else (
                    (threed_ids if on_surface else slice_ids) if threed_ids else [])
                for i in range(node.GetNumberOfDisplayNodes() if hasattr(node, "GetNumberOfDisplayNodes") else 0):
                    display = node.GetNthDisplayNode(i)
                    if display is None:
                        continue
                    display.RemoveAllViewNodeIDs()  # none: in every view
                    for view_id in views:  # "vtkMRMLViewNodeNone": no such view, shown nowhere
                        display.AddViewNodeID(view_id)
        self._show_segmentation(self.state.show_segmentation)
        self._show_roles()

    def _show_roles(self, **_):
        """The toggles of what is drawn on the film: level labels, angle texts, the lines."""
        live = self._live()
        if live is None:
            return
        shown = {"labels": self.state.show_labels, "angle.": self.state.show_angles, "line.": self.state.show_lines}
        for role, node in live.nodes.items():
            for prefix, on in shown.items():
                if role.startswith(prefix) and node.GetDisplayNode() is not None:
                    node.GetDisplayNode().SetVisibility2D(bool(on))

    # --- end vertebrae (Cobb) and edits
    def _ends(self, live) -> list:
        if live is None or self.logic.spec.key != "cobb" or live.measurement is None:
            return []
        from CobbAngleLib.review import chosen_ends

        chosen = chosen_ends(live)
        from CobbAngleLib.geometry import VERTEBRA_NAMES

        return [{"curve": c.name, "upper": VERTEBRA_NAMES[chosen[c.name][0]] if c.name in chosen else "",
                 "lower": VERTEBRA_NAMES[chosen[c.name][1]] if c.name in chosen else "",
                 "auto": "" if c.name in chosen else (f"{c.upper_end_vertebra}-{c.lower_end_vertebra}"
                                                      if c.upper_end_vertebra else "no curve")}
                for c in live.measurement.curves]

    def _vertebrae(self, live) -> list:
        if live is None or self.logic.spec.key != "cobb":
            return []
        return list((live.saved_record().get("vertebrae_present")) or [])

    def _edited_points(self, live) -> list:
        if live is None:
            return []
        out = []
        for role in live.point_roles:
            labels = live.labels(role)
            for i in live.edited_points(role):
                out.append({"key": f"{role}:{i}", "role": role, "index": i,
                            "label": labels[i] if i < len(labels) and labels[i] else f"{role} {i + 1}"})
        return out

    # --- the reader names vertebrae; the network counts from them (Cobb; CobbAngleLib.review)
    def _levels(self) -> list:
        if self.logic.spec.key != "cobb":
            return []
        from CobbAngleLib.geometry import VERTEBRA_NAMES

        return list(VERTEBRA_NAMES)

    def _names(self, live) -> dict:
        volume = self.volumes.get(self.current)
        if self.logic.spec.key != "cobb" or volume is None:
            return {"named": [], "counted_from": ""}
        from CobbAngleLib.review import counted_from, names_given

        return {"named": [dict(n, x=round(n["x"]), y=round(n["y"])) for n in names_given(volume)],
                "counted_from": "" if live is None else counted_from(live.saved_record())}

    def pick_name(self):
        """The next click on the film names the vertebra there (its centre) with the level chosen."""
        if self.volumes.get(self.current) is None or not self._levels():
            return
        self._picking, self._naming = None, self.state.name_level
        self._push(naming=True, picking="", message=f"click the centre of {self._naming} on the film")

    def clear_names(self):
        volume = self.volumes.get(self.current)
        if volume is not None and self._levels():
            from CobbAngleLib.review import clear_names

            clear_names(volume)
            self._naming = None
            self._refresh_table(naming=False, message="names cleared")

    def count_from_names(self):
        self.measure(named=True)

    def _film_px(self, interactor, volume):
        """The film pixel (x, y) under the mouse of ``interactor``'s event."""
        from .mrml import ras_to_pixels

        m = self.slicer.scene.GetNodeByID(self._slice_view().get_view_node_id()).GetXYToRAS()
        x, y = interactor.GetEventPosition()
        return ras_to_pixels(volume, [[sum(m.GetElement(r, c) * v for c, v in enumerate((x, y, 0, 1))) for r in range(3)]])[0]

    def _name_at(self, interactor):
        from CobbAngleLib.review import name_vertebra

        interactor.GetCommand(self._pick_tag).SetAbortFlag(1)  # a name, not a window/level drag
        level, self._naming = self._naming, None
        x, y = self._film_px(interactor, self.volumes[self.current])
        try:
            name_vertebra(self.volumes[self.current], level, x, y)
        except ValueError as e:
            self._refresh_table(naming=False, message=f"Not named: {e}")
            return
        self._refresh_table(naming=False, message=f"{level} named at ({x:.0f}, {y:.0f})")

    def choose_end(self, curve, which, value):
        """A selector of the end vertebrae table: the reader's ``which`` ("upper"/"lower") end of
        ``curve``, or "" for the automatic choice."""
        live = self._live()
        if live is None or live.measurement is None:
            return
        from CobbAngleLib.review import choose_ends

        current = {c.name: c for c in live.measurement.curves}[curve]
        shown = {e["curve"]: e for e in self._ends(live)}[curve]
        pending = self._pending_ends.setdefault(curve, {})
        try:
            if not value:
                self._pending_ends.pop(curve, None)
                choose_ends(live, curve, None, None)
            else:
                pending[which] = value
                upper = pending.get("upper") or shown["upper"] or current.upper_end_vertebra
                lower = pending.get("lower") or shown["lower"] or current.lower_end_vertebra
                if not upper or not lower:
                    self._refresh_table(message=f"{curve}: choose the {'lower' if upper else 'upper'} end vertebra too")
                    return
                choose_ends(live, curve, upper, lower)
                self._pending_ends.pop(curve, None)
        except ValueError as e:
            self._pending_ends.pop(curve, None)
            self._refresh_table(message=f"{curve}: {e}")
            return
        self._refresh_table(message=f"{curve}: " + ("automatic end vertebrae" if not value else
                                                    f"end vertebrae {upper}-{lower} chosen"))

    def pick_ends(self, curve):
        """The next two clicks on the film pick the end vertebrae of ``curve`` (the vertebra under
        the mouse, or the nearest one), upper or lower whichever order."""
        if self._live() is None or self._live().measurement is None:
            return
        self._picking, self._naming = (curve, []), None
        self._push(picking=curve, naming=False, message=f"{curve}: click the upper and the lower end vertebra on the film")

    def _pick(self, interactor, _event):
        if self._naming is not None and self.volumes.get(self.current) is not None:
            self._name_at(interactor)
            return
        if self._picking is None:
            return
        live = self._live()
        from CobbAngleLib.geometry import N_VERTEBRAE, VERTEBRA_NAMES, shown_vertebrae
        from CobbAngleLib.review import landmarks_px

        corners = landmarks_px(live) if live is not None else None
        shown = shown_vertebrae(corners) if corners is not None and corners.shape == (N_VERTEBRAE, 4, 2) else []
        if not shown:  # the vertebrae on the film only
            self._picking = None
            return
        film_px = self._film_px(interactor, live.volume)
        vertebra = shown[int(((corners[shown].mean(axis=1) - film_px) ** 2).sum(axis=1).argmin())]
        interactor.GetCommand(self._pick_tag).SetAbortFlag(1)  # a pick, not a window/level drag
        curve, picked = self._picking
        picked.append(vertebra)
        if len(picked) < 2:
            self._push(message=f"{curve}: {VERTEBRA_NAMES[vertebra]} picked; now the other end vertebra")
            return
        self._picking = None
        self._push(picking="")
        upper, lower = sorted(picked)
        self._pending_ends.pop(curve, None)
        from CobbAngleLib.review import choose_ends

        try:
            choose_ends(live, curve, VERTEBRA_NAMES[upper], VERTEBRA_NAMES[lower])
        except ValueError as e:
            self._refresh_table(message=f"{curve}: {e}")
            return
        self._refresh_table(message=f"{curve}: end vertebrae {VERTEBRA_NAMES[upper]}-{VERTEBRA_NAMES[lower]} chosen")

    def undo(self):
        live = self._live()
        if live is not None and live.undo():
            self._refresh_table(message="Undone")

    def redo(self):
        live = self._live()
        if live is not None and live.redo():
            self._refresh_table(message="Redone")

    def reset_point(self, role, index):
        live = self._live()
        if live is not None:
            live.reset_point(role, int(index))
            self._refresh_table(message="Point reset")

    def jump_to(self, role, index):
        """Centre the view on a point (the list of moved points)."""
        live = self._live()
        if live is None:
            return
        node = live.node(role)
        ras = [0.0, 0.0, 0.0]
        node.GetNthControlPointPositionWorld(int(index), ras)
        slice_node = self.slicer.scene.GetNodeByID(self._slice_view().get_view_node_id())
        slice_node.JumpSliceByCentering(*ras)

    def _window(self, window_preset="auto", invert=False, **_):
        """The film's window/level preset and grey scale (inverted or not); a left-drag on the film
        adjusts the window further, as in Slicer."""
        volume = self.volumes.get(self.current)
        display = None if volume is None else volume.GetDisplayNode()
        if display is None or not display.IsA("vtkMRMLScalarVolumeDisplayNode"):
            return
        import numpy as np

        from .mrml import volume_array

        low, high = np.percentile(volume_array(volume), WINDOW_PRESETS.get(window_preset, WINDOW_PRESETS["auto"]))
        display.SetAutoWindowLevel(False)
        display.SetWindowLevelMinMax(float(low), float(max(high, low + 1e-3)))
        display.SetAndObserveColorNodeID("vtkMRMLColorTableNodeInvertedGrey" if invert else "vtkMRMLColorTableNodeGrey")

    # --- calibration: the pixel spacing of a film that states none, from a line over an object of known length
    def calibrate(self):
        """Draw a line (two clicks on the film) over an object whose length is known."""
        volume = self.volumes.get(self.current)
        if volume is None:
            return
        node = self._calibration_line(create=True)
        node.RemoveAllControlPoints()
        self.slicer.markups_logic.place_node(node, persistent=False)
        self._push(calibrating=True, calibration_px=0.0,
                   message="Click the two ends of an object of known length on the film")

    def _calibration_line(self, create=False):
        node = self.slicer.scene.GetFirstNodeByName("calibration line")
        if node is None and create:
            from .mrml import new_markups

            node = new_markups(self.slicer.scene, "vtkMRMLMarkupsLineNode", "calibration line", (1.0, 0.4, 1.0))
            node.SetName("calibration line")
            node.AddObserver(node.PointPositionDefinedEvent, self._calibration_placed)
            node.AddObserver(node.PointModifiedEvent, self._calibration_placed)
        return node

    def _calibration_placed(self, node, *_):
        from .mrml import control_points, ras_to_pixels

        volume = self.volumes.get(self.current)
        if volume is None or node.GetNumberOfDefinedControlPoints() < 2:
            return
        a, b = ras_to_pixels(volume, control_points(node)[:2])
        length = float(((a - b) ** 2).sum() ** 0.5)
        self._push(calibration_px=round(length, 2),
                   message=f"The line is {length:.1f} pixels long: type its length in mm and press Use")
        self.state.flush()

    def use_calibration(self):
        """The spacing from the calibration line: the known length (mm) over its length in pixels."""
        try:
            length_mm = float(str(self.state.calibration_mm).replace(",", "."))
        except ValueError:
            self._push(message=f"The known length {self.state.calibration_mm!r} is no number (mm)")
            return
        if not self.state.calibration_px or length_mm <= 0:
            self._push(message="Draw the calibration line first (Calibrate), then type its length in mm")
            return
        spacing = length_mm / float(self.state.calibration_px)
        node = self._calibration_line()
        if node is not None:
            self.slicer.scene.RemoveNode(node)
        self._push(spacing=f"{spacing:.4f}", calibrating=False,
                   message=f"Pixel spacing {spacing:.4f} mm from a line of {self.state.calibration_px:.1f} px = "
                           f"{length_mm:g} mm; Measure uses it")

    def fit(self):
        self.slicer.display_manager.reset_views()

    def _show_segmentation(self, show_segmentation=True, **_):
        live = self._live()
        node = None if live is None else live.node("segmentation")
        if node is not None and node.GetDisplayNode() is not None:
            node.GetDisplayNode().SetVisibility(bool(show_segmentation))

    # --- actions
    def select(self, index):
        from .mrml import volume_from_image

        index = int(index)
        if not 0 <= index < len(self.items):
            return
        self.current = index
        self._naming = None  # a name clicked on another film names nothing here
        item = self.items[index]
        if index not in self.volumes and item.error is None:
            try:
                self.volumes[index] = volume_from_image(self.slicer.scene, self.images[index], self.stems[index],
                                                        colour=self.logic.spec.colour)
            except (ValueError, OSError) as e:
                item.error = str(e)
                self.status[index] = "refused"
        calibration = self._calibration_line()
        if calibration is not None:  # a line drawn on another film measures nothing here
            self.slicer.scene.RemoveNode(calibration)
        volume = self.volumes.get(index)
        image = self.images.get(index)
        self.state.needs_spacing = self.logic.spec.key == "knee" and image is not None and image.spacing_mm is None
        self.slicer.display_manager.show_volume_in_slice_background(volume)
        self._show_only_current()
        self.slicer.display_manager.reset_views()
        self._window(self.state.window_preset, self.state.invert)
        self._watch_table()
        self._refresh_table(current=index, message=item.error or "", calibrating=False, calibration_px=0.0, naming=False)

    def _watch_table(self):
        live = self._live()
        if live is not None and live.table.GetID() not in self._watched:  # once per table
            self._watched.add(live.table.GetID())
            live.table.AddObserver("ModifiedEvent", self._refresh_table)

    def measure(self, on_existing="ask", named=False):
        """Measure the current film (the worker process); ``named``: the network counts from the
        reader's names (``CobbAngleLib.review.count_from_names``: names checked, then the re-run
        question, before any work)."""
        from .review import EditedResultExists

        volume = self.volumes.get(self.current)
        if volume is None or self.job is not None:
            return
        job = None
        try:
            options = self._options()
            if named:
                from CobbAngleLib.review import count_from_names

                job = count_from_names(self.logic, volume, options, on_existing, python=sys.executable)
            else:
                self.logic.check_rerun(volume, on_existing)
        except EditedResultExists:
            self._asked_named = named
            self._push(question=True)
            return
        except ValueError as e:
            self._push(message=f"Not {'counted' if named else 'measured'}: {e}")
            return
        self._on_existing = "replace" if on_existing == "ask" else on_existing
        self.job = job or self.logic.start_job(self.logic.read(volume), options, python=sys.executable)
        self._job_index, self._job_named = self.current, named
        self._push(busy=True, progress=0, message="Counting from the names" if named else "Measuring")
        from trame.app import asynchronous

        asynchronous.create_task(self._poll())

    def _options(self):
        """The pipeline's options for the current film: the CPU, the corners of ``--landmarks``
        (Cobb), the pixel spacing typed in the page or given by ``--spacing`` (knee)."""
        values = {"device": "cpu"}
        if self.landmarks is not None and self.logic.spec.key == "cobb":
            from CobbAngleLib.landmarks_io import landmarks_for_image

            values["landmarks_file"] = str(landmarks_for_image(self.landmarks, self.items[self.current].path,
                                                               len(self.items) == 1))
        if self.logic.spec.key == "knee" and str(self.state.spacing or "").strip():
            try:
                spacing = float(str(self.state.spacing).replace(",", "."))
            except ValueError:
                raise ValueError(f"the pixel spacing {self.state.spacing!r} is no number (mm per pixel, e.g. 0.15)") from None
            if not 0.01 <= spacing <= 5:
                raise ValueError(f"a pixel spacing of {spacing} mm is not that of a knee film (0.01-5 mm per pixel)")
            values["spacing_mm"] = spacing
        return self.logic.options(**values)

    async def _poll(self):
        import asyncio

        while True:
            await asyncio.sleep(0.2)
            state = self.job.poll()
            if state.running:
                self._push(progress=round(100 * (state.fraction or 0)), message=state.message or "")
                continue
            job, self.job = self.job, None
            if state.error or state.cancelled:
                if state.error and self._job_named:  # a count from names refused: the shown result stays
                    self._push(busy=False, message=f"Not counted: {state.error}")
                    return
                if state.error:  # refused by the module (no spine, no knee...): the worklist says so and why
                    self.items[self._job_index].error = state.error
                    self.status[self._job_index] = "refused"
                self._push(busy=False, message=state.error or "Cancelled")
                return
            index = self._job_index
            if self._on_existing == "keep" and index in self.lives:
                self.kept.setdefault(index, []).append(self.lives[index])
            live = self.logic.present(self.volumes[index], job.result(), self._on_existing)
            self.lives[index] = live
            self.status[index] = "measured"
            self.items[index].error = None  # a film refused before (no spacing typed yet) measures now
            self._show_only_current()
            if index == self.current:
                self._watch_table()
                for view in self.slicer.view_manager.get_threed_views():
                    view.reset_camera()  # the back's surface in the 3D view
            self._refresh_table(busy=False, message="Counted from the names" if self._job_named else "Measured")
            return

    def answer(self, choice):
        self._push(question=False)
        if choice in ("keep", "replace"):
            self.measure(choice, named=self._asked_named)

    def cancel(self):
        if self.job is not None:
            self.job.cancel()

    def reset_points(self):
        live = self._live()
        if live is not None:
            live.reset_edited_points()
            self.status[self.current] = "measured"
            self._refresh_table()

    def accept(self, confirmed=False):
        """Sign the current film's result as the reviewer (the name field) and write its files; with
        CHECK warnings open, first ask for the confirmation that is then recorded."""
        from . import batch
        from .review import ChecksOpen

        live = self._live()
        if live is None:
            return
        item = self.items[self.current]
        stem = self.stems[self.current]
        if Path(stem).name != stem or stem.startswith("."):  # a name that would leave --out
            self._push(message=f"Not accepted: {stem!r} is no file name")
            return
        checks = live.open_checks()
        try:
            signed = live.accept(self.state.reviewer, checks if confirmed else None)
        except ChecksOpen as e:
            self._push(checks_question=True, open_checks=e.checks)
            return
        except ValueError as e:
            self._push(message=f"Not accepted: {e}; type your name in the Reviewer field")
            return
        options = {}
        if self.dicom:
            from .dicom_export import DicomOptions, DicomRequest

            options["dicom"] = DicomRequest(item.path, self.images[self.current],
                                            DicomOptions(editor=signed["accepted_by"], organization=self.organization))
        try:
            item.outputs = self.files.write_outputs(live, self.out, stem, **options)
            item.record = live.record()
            report = f"{item.path.name}: {report_line(self.files, item.record, live)}. Accepted by " \
                     f"{signed['accepted_by']}, {signed['accepted_at']}."
            item.outputs["report"] = self.out / f"{stem}_report.txt"
            item.outputs["report"].write_text(report + "\n", encoding="utf-8")
            self.reports[self.current] = report
        except (ValueError, OSError) as e:
            live.withdraw_acceptance()
            self._push(message=f"Not accepted: {e}")
            return
        item.values = dict(self.files.csv_values(item.record), **signed)
        item.values["checks_acknowledged"] = "; ".join(signed["checks_acknowledged"]) or None
        self.status[self.current] = "accepted"
        accepted = [i for n, i in enumerate(self.items) if self.status[n] == "accepted"]
        batch.write_summary(self.out, self.logic.spec.key, accepted, tuple(self.files.COLUMNS) + SIGN_OFF_COLUMNS,
                            {"command": "mskmorph review"})
        self._push(message=f"Accepted by {signed['accepted_by']} at {signed['accepted_at']}: "
                           f"{len(item.outputs)} files in {self.out.name}/",
                   written=", ".join(Path(p).name for p in item.outputs.values()), report=report,
                   signed=f"Accepted by {signed['accepted_by']}, {signed['accepted_at']}", checks_question=False)

    def accept_with_checks(self):
        """The reviewer confirmed the open CHECK warnings: accept, recording them."""
        self._push(checks_question=False)
        self.accept(confirmed=True)

    # --- page
    def _build_ui(self):
        from trame.ui.vuetify3 import SinglePageWithDrawerLayout
        from trame.widgets import client, html
        from trame.widgets import vuetify3 as v

        with SinglePageWithDrawerLayout(self.server) as layout:
            layout.title.set_text(f"MSKMorphometry review: {self.logic.spec.title}")
            layout.drawer.width = 470
            with layout.toolbar:
                client.Script(KEYS)
                client.Style("#ends select, #window-preset { border: 1px solid #999; border-radius: 3px; padding: 0 2px; }")
                small = dict(size="small", density="compact", style="min-width: 0; padding: 0 8px")
                v.VBtn("Previous", id="previous", click=(self.select, "[current - 1]"), title="previous film (Up, P)", **small)
                v.VBtn("Next", id="next", click=(self.select, "[current + 1]"), title="next film (Down, N)", **small)
                v.VBtn("Measure", id="measure", click=self.measure, disabled=("busy",), title="M", **small)
                v.VBtn("Cancel", id="cancel", click=self.cancel, disabled=("!busy",), **small)
                v.VBtn("Undo", id="undo", click=self.undo, disabled=("!can_undo",), title="Ctrl+Z", **small)
                v.VBtn("Redo", id="redo", click=self.redo, disabled=("!can_redo",), title="Ctrl+Shift+Z", **small)
                v.VBtn("Reset all", id="reset", click=self.reset_points, title="every moved point back", **small)
                v.VBtn("Fit", id="fit", click=self.fit, title="the whole film in the view", **small)
                v.VBtn("Accept", id="accept", click=self.accept, title="sign and write the files (A)", color="primary",
                       **small)
                v.VProgressLinear(v_if=("busy",), model_value=("progress",), style="width: 120px")
                html.Span("{{ message }}", id="message", title=("written",),  # a long message wraps, in the bar
                          style="margin-left: 1em; white-space: normal; overflow-wrap: anywhere; line-height: 1.15; "
                                "font-size: 13px; max-height: 3.5em; overflow-y: auto; flex: 1 1 0; min-width: 0")
            with layout.drawer:
                html.Div("{{ hint }}", id="hint", style="font-size: 11px; color: #555; margin: 2px 4px")
                v.VTextField(v_model=("reviewer",), id="reviewer", label="Reviewer (signs on Accept)",
                             density="compact", hide_details=True, style="margin: 4px")
                with html.Div(v_if=("needs_spacing",), style="display: flex; gap: 4px; align-items: center; margin: 4px"):
                    v.VTextField(v_model=("spacing",), id="spacing", label="Pixel spacing (mm): this film states none",
                                 density="compact", hide_details=True)
                    v.VBtn("Calibrate", id="calibrate", click=self.calibrate, size="small",
                           title="draw a line over an object of known length")
                with html.Div(v_if=("needs_spacing && calibrating",),
                              style="display: flex; gap: 4px; align-items: center; margin: 4px; font-size: 12px"):
                    html.Span("Line: {{ calibration_px }} px =")
                    v.VTextField(v_model=("calibration_mm",), id="calibration-mm", label="known length (mm)",
                                 density="compact", hide_details=True)
                    v.VBtn("Use", id="use-calibration", click=self.use_calibration, size="small")
                with html.Div(style="display: flex; flex-wrap: wrap; gap: 6px; align-items: center; margin: 2px 4px; "
                                    "font-size: 12px"):
                    html.Span("Window")
                    with html.Select(id="window-preset", v_model=("window_preset",)):
                        html.Option("{{ p }}", v_for="p in presets", key="p", value=("p",))
                    for key, element, text, shown in (("invert", "invert", " invert", None),
                                                       ("show_labels", "show-labels", " levels", "has_labels"),
                                                       ("show_angles", "show-angles", " angles", "has_labels"),
                                                       ("show_lines", "show-lines", " lines", "has_labels")):
                        with html.Label(**({"v_if": (shown,)} if shown else {})):
                            html.Input(type="checkbox", id=element, checked=(key,),
                                       change=f"{key} = $event.target.checked")
                            html.Span(text)
                with html.Div(id="worklist"):
                    with html.Div(v_for="w in worklist", key="w.index",
                                  classes=("w.index === current ? 'worklist-item current' : 'worklist-item'",),
                                  click=(self.select, "[w.index]"),
                                  style=("{cursor: 'pointer', padding: '4px', fontWeight: w.index === current ? 'bold' : 'normal'}",)):
                        html.Span("{{ w.name }}: ")
                        html.Span("{{ w.status }}", classes="status")
                        html.Div("{{ w.reason }}", v_if="w.reason", classes="reason", style="color: #c00")
                with html.Div(style="overflow-x: auto"):
                    state_table("measurements")
                with html.Table(id="ends", v_if=("ends.length",), style="font-size: 12px; margin: 4px 0"):
                    with html.Tr():
                        html.Th("End vertebrae", colspan=4, style="text-align: left")
                    with html.Tr(v_for="e in ends", key="e.curve"):
                        html.Td("{{ e.curve }}")
                        for which in ("upper", "lower"):
                            with html.Td():
                                with html.Select(id=(f"'{which}-' + e.curve",), value=(f"e.{which}",),
                                                 change=(self.choose_end, f"[e.curve, '{which}', $event.target.value]")):
                                    html.Option("auto", value="")
                                    html.Option("{{ n }}", v_for="n in vertebrae", key="n", value=("n",))
                        html.Td("{{ e.auto ? 'auto: ' + e.auto : 'chosen' }}", style="color: #555")
                        with html.Td():
                            html.Span("{{ picking === e.curve ? 'click 2 vertebrae' : 'pick' }}",
                                      id=("'pick-' + e.curve",), click=(self.pick_ends, "[e.curve]"),
                                      style="cursor: pointer; text-decoration: underline; color: #06c",
                                      title="click the upper and the lower end vertebra on the film")
                with html.Div(id="names", v_if=("levels.length && current >= 0",),
                              style="display: flex; flex-wrap: wrap; gap: 6px; align-items: center; margin: 4px 0; "
                                    "font-size: 12px"):
                    link = "cursor: pointer; text-decoration: underline; color: #06c"
                    html.Span("Name a vertebra", style="font-weight: bold")
                    with html.Select(id="name-level", v_model=("name_level",)):
                        html.Option("{{ n }}", v_for="n in levels", key="n", value=("n",))
                    html.Span("{{ naming ? 'click its centre' : 'click on the film' }}", id="name-pick",
                              click=self.pick_name, style=link, title="the next click on the film names the vertebra there")
                    html.Span("{{ n.vertebra }} ({{ n.x }}, {{ n.y }})", v_for="n in named", key="n.vertebra",
                              classes="named", style="color: #606")
                    html.Span("clear", id="clear-names", v_if=("named.length",), click=self.clear_names, style=link)
                    v.VBtn("Count from these names", id="count-from-names", click=self.count_from_names, size="small",
                           disabled=("busy || !named.length",), title="run the network again, counting from these names")
                    html.Div("{{ counted_from }}", id="counted-from", v_if=("counted_from",), style="width: 100%; color: #606")
                html.Div("Edited: {{ edited }}", id="edited")
                with html.Div(id="edited-points", style="font-size: 12px"):
                    with html.Div(v_for="p in edited_points", key="p.key", classes="edited-point"):
                        html.Span("{{ p.label }} ", style="color: #088")
                        link = "cursor: pointer; text-decoration: underline; color: #06c"
                        html.Span("jump", click=(self.jump_to, "[p.role, p.index]"), classes="jump", style=link)
                        html.Span(" · ")
                        html.Span("reset", click=(self.reset_point, "[p.role, p.index]"), classes="reset-point",
                                  style=link)
                html.Div("{{ signed }}", id="signed", v_if=("signed",), style="color: #060")
                html.Div("{{ report }}", id="report", v_if=("report",),
                         style="font-family: monospace; font-size: 12px; white-space: pre-wrap; user-select: all; "
                               "border: 1px solid #ccc; padding: 4px; margin: 4px 0")
                with html.Div(id="warnings", style="color: #b00; font-weight: bold"):
                    html.Div("CHECK: {{ w }}", v_for="w in warnings", key="w", classes="warning")
                v.VCheckbox(v_if=("has_segmentation",), v_model=("show_segmentation",), id="segmentation",
                            label="Vertebra segmentation", density="compact", hide_details=True)
                with v.VDialog(v_model=("checks_question",), max_width=560):
                    with v.VCard():
                        v.VCardTitle("Accept with CHECK warnings?")
                        v.VCardText("This result has CHECK warnings. Accepting records that you have looked at "
                                    "each of them:")
                        with html.Ul(style="margin: 0 2em"):
                            html.Li("{{ c }}", v_for="c in open_checks", key="c", classes="open-check")
                        v.VBtn("I have checked them: accept", id="confirm-checks", click=self.accept_with_checks)
                        v.VBtn("Cancel", id="cancel-checks", click="checks_question = false")
                with v.VDialog(v_model=("question",)):
                    with v.VCard():
                        v.VCardText("This film's result has points moved by hand. Measure again?")
                        v.VBtn("Keep it (new result beside it)", id="keep", click=(self.answer, "['keep']"))
                        v.VBtn("Replace it", id="replace", click=(self.answer, "['replace']"))
                        v.VBtn("Cancel", id="no", click=(self.answer, "['cancel']"))
                html.Pre("{{ view_geometry }}", id="view-geometry", style="display: none")
            with layout.content:
                with html.Div(id="view", style="width: 100%; height: 100%; position: relative"):
                    self.layout_manager.initialize_layout_grid(layout)
        self.ui = layout


# --- The access token: when ``mskmorph review`` binds beyond loopback, every HTTP request and the
# websocket must carry the token the command printed once in its URL. The first request carries it
# in the query (``?token=...``, the printed URL); the answer sets it as an HTTP-only, same-site
# cookie, which the browser then sends with every further request of the page, the websocket's
# handshake included. A request with neither is refused (403) before it reaches trame.
COOKIE = "mskmorph_review_token"
REFUSED = "mskmorph review: this server needs its access token (open the URL the command printed)"


def new_token() -> str:
    return secrets.token_urlsafe(24)


def _same(given: str, token: str) -> bool:
    return secrets.compare_digest(given.encode("utf-8", "replace"), token.encode("utf-8"))


def token_middleware(token: str):
    """An aiohttp middleware refusing any request that carries neither ``token`` (query) nor its
    cookie."""
    from aiohttp import web

    @web.middleware
    async def check_token(request, handler):
        in_query = _same(request.query.get("token", ""), token)
        in_cookie = _same(request.cookies.get(COOKIE, ""), token)
        if not (in_query or in_cookie):
            raise web.HTTPForbidden(text=REFUSED)
        response = await handler(request)
        if in_query and not in_cookie and not getattr(response, "prepared", False):
            response.set_cookie(COOKIE, token, httponly=True, samesite="Strict")
        return response

    return check_token


def protect(wslink_server, token: str) -> None:
    """Put the token check in front of every route of trame's aiohttp server (called from
    trame's ``on_server_bind``, before the server starts)."""
    wslink_server.app.middlewares.insert(0, token_middleware(token))


def state_table(table_id: str) -> None:
    """A table of the page state's ``columns`` (titles) and ``rows`` (lists of cells)."""
    from trame.widgets import html

    with html.Table(id=table_id, style="font-size: 12px; border-collapse: collapse"):
        with html.Thead():
            with html.Tr():
                html.Th("{{ c }}", v_for="c in columns", key="c", style="text-align: left; padding: 2px 4px")
        with html.Tbody():
            with html.Tr(v_for="(r, i) in rows", key="i"):
                html.Td("{{ cell }}", v_for="(cell, j) in r", key="j", style="padding: 2px 4px")


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and value != value):  # None, NaN: not measured
        return ""
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def film_interaction(view, scene) -> None:
    """The mouse on a film as a radiologist expects it: a left-drag away from any point changes
    window/level (Slicer's own "adjust window/level" mouse mode; a point under the mouse is still
    grabbed and moved by its markups widget), the plain wheel zooms keeping the film point under the
    cursor where it is (Slicer's wheel would step through slices, of which a film has one)."""
    import vtk

    interaction = scene.GetNodeByID("vtkMRMLInteractionNodeSingleton")
    if interaction is not None:
        interaction.SetCurrentInteractionMode(interaction.AdjustWindowLevel)

        def rest(node, _event):  # after placing a line (calibration), back to window/level, not to nothing
            if node.GetCurrentInteractionMode() == node.ViewTransform:
                node.SetCurrentInteractionMode(node.AdjustWindowLevel)

        interaction.AddObserver(interaction.InteractionModeChangedEvent, rest)
    slice_node = scene.GetNodeByID(view.get_view_node_id())
    interactor = view.interactor()
    tags = {}

    def ras_at(x, y):
        m = slice_node.GetXYToRAS()
        return [sum(m.GetElement(r, c) * v for c, v in enumerate((x, y, 0, 1))) for r in range(3)]

    def zoom(caller, event):
        x, y = caller.GetEventPosition()
        before = ras_at(x, y)
        factor = 0.8 if event == "MouseWheelForwardEvent" else 1.25
        fov = slice_node.GetFieldOfView()
        slice_node.SetFieldOfView(fov[0] * factor, fov[1] * factor, fov[2])
        slice_node.UpdateMatrices()
        now = ras_at(x, y)
        slice_to_ras = vtk.vtkMatrix4x4()
        slice_to_ras.DeepCopy(slice_node.GetSliceToRAS())
        for r in range(3):
            slice_to_ras.SetElement(r, 3, slice_to_ras.GetElement(r, 3) + before[r] - now[r])
        slice_node.GetSliceToRAS().DeepCopy(slice_to_ras)
        slice_node.UpdateMatrices()
        caller.GetCommand(tags[event]).SetAbortFlag(1)  # not also a slice step

    for event in ("MouseWheelForwardEvent", "MouseWheelBackwardEvent"):
        tags[event] = interactor.AddObserver(event, zoom, 10.0)


def report_line(files, record: dict, live) -> str:
    """The module's report line (``files.report_line``), else the table's rows in one line."""
    if hasattr(files, "report_line"):
        return files.report_line(record)
    from .mrml import table_rows

    rows = table_rows(live.table)
    return "; ".join(", ".join(f"{k} {_cell(v)}" for k, v in row.items() if k not in HIDDEN_COLUMNS and _cell(v))
                     for row in rows)


def url_host(host: str) -> str:
    """The host a browser elsewhere reaches: the machine's name (its full name when it has one) for
    an any-address bind, else the address given."""
    import socket

    if host not in ANY_ADDRESS:
        return host
    full = socket.getfqdn()
    return full if "." in full and not full.startswith("localhost") else socket.gethostname()


def choose_module(images) -> str:
    """back when the readable inputs are colour photos, else cobb (knee films look like spine
    films to a reader: ``--module knee``)."""
    images = list(images)
    return "back" if images and all(i.rgb is not None and i.colourfulness > 0.05 for i in images) else "cobb"


def run(args) -> int:
    token = None if args.host in LOOPBACK else new_token()
    args.out.mkdir(parents=True, exist_ok=True)
    app = ReviewApp(args.inputs, args.module, args.out, dicom=args.dicom, reviewer=args.reviewer or "",
                    organization=args.organization, landmarks=args.landmarks, spacing=args.spacing)
    if token is not None:
        app.ctrl.on_server_bind.add(lambda wslink_server: protect(wslink_server, token))

    @app.ctrl.add("on_server_ready")
    def _ready(**_):
        query = "" if token is None else f"?token={token}"
        print(f"mskmorph review: http://{url_host(args.host)}:{app.server.port}/{query}", flush=True)

    app.server.start(host=args.host, port=args.port, open_browser=False, show_connection_info=False)
    return 0
