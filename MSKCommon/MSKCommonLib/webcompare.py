"""``mskmorph compare PRIOR CURRENT --out DIR --review``: the follow-up in the browser. The two films
side by side, each in a real Slicer slice view (trame-slicer, offscreen through EGL) with its
corners and the curves' endplate lines, both editable; the change per curve (``CobbAngleLib.
followup``) recomputed whenever a point moves, and Accept writing what ``mskmorph compare`` writes
with the points as the user left them. A thin adapter: the films are measured by the pipeline
(``CobbAngleLib.compare_cli.load_side``), shown and kept measured by the review layer
(``ModuleLogic.present``), compared by ``followup.compare``, written by ``compare_cli.write_outputs``.
Loopback only (it has no access token, unlike ``mskmorph review``).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

LOOPBACK = ("127.0.0.1", "localhost", "::1")
VIEWS = ("Red", "Yellow")  # the prior film on the left, the current one on the right
COLUMNS = ("curve", "end vertebrae", "prior deg", "current deg", "change deg", "95 % interval", "verdict", "why")


class CompareApp:
    def __init__(self, prior: Path, current: Path, out: Path, args, server=None):
        os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
        from trame.app import get_server
        from trame_slicer import module as trame_slicer_module
        from trame_slicer.core import LayoutManager, SlicerApp
        from trame_slicer.rca_view import register_rca_factories
        from trame_slicer.views import Layout, LayoutDirection, ViewLayoutDefinition

        from CobbAngleLib import compare_cli
        from CobbAngleLib.pipeline import CobbPipeline, result_from_landmarks

        from .logic import ModuleLogic
        from .mrml import volume_from_image

        self.server = server or get_server(None, client_type="vue3")
        self.server.enable_module(trame_slicer_module)
        self.state, self.ctrl = self.server.state, self.server.controller
        self.slicer = SlicerApp()
        register_rca_factories(self.slicer.view_manager, self.server)
        self.layout_manager = LayoutManager(self.slicer.scene, self.slicer.view_manager, self.server)
        self.layout_manager.register_layout("pair", Layout(LayoutDirection.Horizontal, [
            ViewLayoutDefinition.axial_view(label=label) for label in VIEWS]))
        self.layout_manager.set_layout("pair")
        self.out, self.args = Path(out).resolve(), args
        pipeline = CobbPipeline()
        self.sides = [compare_cli.load_side("prior", Path(prior), args.prior_film, args.prior_landmarks, args, pipeline),
                      compare_cli.load_side("current", Path(current), args.current_film, args.current_landmarks, args,
                                            pipeline)]
        self.logic = ModuleLogic("cobb")
        self.lives = []
        for side, label in zip(self.sides, VIEWS):
            if side.image is None:
                raise ValueError(f"the {side.label} film is needed to show it (give --{side.label}-film)")
            volume = volume_from_image(self.slicer.scene, side.image, side.label)
            from CobbAngleLib.followup import landmarks_of

            result = result_from_landmarks(side.image, landmarks_of(side.record), "clinical",
                                           side.record.get("landmarks_from") or "record")
            live = self.logic.present(volume, result, "replace")
            self.lives.append(live)
            view = self._view(label)
            view.set_background_volume_id(volume.GetID())
            for node in live.nodes.values():  # each film's nodes in its own view only
                for i in range(node.GetNumberOfDisplayNodes() if hasattr(node, "GetNumberOfDisplayNodes") else 0):
                    display = node.GetNthDisplayNode(i)
                    if display is not None:
                        display.RemoveAllViewNodeIDs()
                        display.AddViewNodeID(view.get_view_node_id())
            live.table.AddObserver("ModifiedEvent", self._refresh)
        self.slicer.display_manager.reset_views()
        for label in VIEWS:  # a view resized or fitted in the browser: its geometry published again
            self.slicer.scene.GetNodeByID(self._view(label).get_view_node_id()).AddObserver(
                "ModifiedEvent", self._publish_geometry)
        self.state.update(columns=list(COLUMNS), rows=[], report="", message="", geometry="{}")
        self.ctrl.accept = self.accept
        self._build_ui()
        self._refresh()

    def _view(self, label):
        return next(v for v in self.slicer.view_manager.get_slice_views()
                    if self.slicer.scene.GetNodeByID(v.get_view_node_id()).GetLayoutName() == label)

    def follow_up(self):
        from CobbAngleLib import followup

        for side, live in zip(self.sides, self.lives):
            record = live.record()
            side.record = {**side.record, **{k: record[k] for k in ("landmarks_px", "review", "check_edited") if k in record}}
        readings = [followup.reading_from_record(s.record) for s in self.sides]
        return followup.compare(*readings, repeatability=None if self.args.repeatability is None else
                                followup.load_repeatability(self.args.repeatability), same_reader=self.args.same_reader)

    def _refresh(self, *_):
        from CobbAngleLib import followup

        try:
            result = self.follow_up()
        except followup.FollowUpError as e:
            with self.state:
                self.state.update(rows=[], report="", message=str(e))
            self.state.flush()
            return
        rows = []
        for c in result.curves:
            rows.append([c.name, "-".join(c.end_vertebrae or []), followup._deg(c.prior_deg), followup._deg(c.current_deg),
                         "" if c.change_deg is None else followup.signed(c.change_deg),
                         "" if c.interval_deg is None else f"+-{c.interval_deg:.1f}", c.verdict,
                         "; ".join(filter(None, [c.reason, c.levels_note]))])
        with self.state:
            self.state.update(rows=rows, report=result.report_line(), geometry=json.dumps(self._geometry()))
        self.state.flush()

    def _publish_geometry(self, *_):
        geometry = json.dumps(self._geometry())
        if geometry != self.state.geometry:
            with self.state:
                self.state.geometry = geometry
            self.state.flush()

    def _geometry(self) -> dict:
        """Per view: film pixel <-> view pixel (for the browser test's drag, as ``mskmorph review``)."""
        import vtk

        out = {}
        for label, live in zip(VIEWS, self.lives):
            view = self._view(label)
            m = self.slicer.scene.GetNodeByID(view.get_view_node_id()).GetXYToRAS()
            ijk = vtk.vtkMatrix4x4()
            live.volume.GetIJKToRASMatrix(ijk)
            out[label] = {"xy_to_ras": [[m.GetElement(r, c) for c in range(4)] for r in range(4)],
                          "ijk_to_ras": [[ijk.GetElement(r, c) for c in range(4)] for r in range(4)],
                          "size": list(view.render_window().GetSize())}
        return out

    def accept(self):
        from CobbAngleLib import compare_cli

        result = self.follow_up()
        written = compare_cli.write_outputs(result, self.sides, self.out, self.args)
        for side in self.sides:  # the readings as the user left them, for a later comparison
            path = self.out / f"{side.label}_cobb.json"
            path.write_text(json.dumps(side.record, indent=2), encoding="utf-8")
        with self.state:
            self.state.update(message=f"Accepted: {len(written)} files in {self.out.name}/")
        self.state.flush()

    def _build_ui(self):
        from trame.ui.vuetify3 import SinglePageWithDrawerLayout
        from trame.widgets import html
        from trame.widgets import vuetify3 as v

        from .webreview import state_table

        with SinglePageWithDrawerLayout(self.server) as layout:
            layout.title.set_text("MSKMorphometry follow-up: prior (left) and current (right)")
            layout.drawer.width = 520
            with layout.toolbar:
                v.VBtn("Accept", id="accept", click=self.accept)
                html.Span("{{ message }}", id="message", style="margin-left: 1em")
            with layout.drawer:
                state_table("follow-up")
                html.Div("{{ report }}", id="report", style="font-size: 12px; margin-top: 1em")
                html.Pre("{{ geometry }}", id="view-geometry", style="display: none")
            with layout.content:
                with html.Div(id="view", style="width: 100%; height: 100%; position: relative"):
                    self.layout_manager.initialize_layout_grid(layout)
        self.ui = layout


def serve(prior: Path, current: Path, out: Path, args) -> int:
    if args.host not in LOOPBACK:
        raise ValueError("the follow-up review serves on loopback only (--host 127.0.0.1)")
    out.mkdir(parents=True, exist_ok=True)
    app = CompareApp(prior, current, out, args)

    @app.ctrl.add("on_server_ready")
    def _ready(**_):
        print(f"mskmorph compare: http://{args.host}:{app.server.port}/", flush=True)

    app.server.start(host=args.host, port=args.port, open_browser=False, show_connection_info=False)
    return 0
