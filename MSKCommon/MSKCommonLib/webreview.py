"""``mskmorph review``: the browser review on trame-slicer, a thin adapter over ModuleLogic, the
review layer and each module's files (no measuring code of its own).

    mskmorph review INPUT... [--module cobb|knee|back] [--host 127.0.0.1] [--port N] --out DIR

Each input (``batch.expand_inputs``) is read with ``read_image`` when opened; a film that cannot
be read is listed with its reason. Measure runs the pipeline in the worker process
(``ModuleLogic.start_job``) and the result is shown by the review layer in a real Slicer slice
view rendered offscreen (set VTK_DEFAULT_OPENGL_WINDOW=vtkEGLRenderWindow). Accept writes the
module's files (``files.write_outputs``) and the per-run CSV/JSON (``batch.write_summary``).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="films or folders of them")
    parser.add_argument("--module", choices=("cobb", "knee", "back"), default="cobb")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback only)")
    parser.add_argument("--port", type=int, default=0, help="port (0: a free one)")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="where Accept writes")
    parser.add_argument("--dicom", action="store_true",
                        help="Accept also writes NAME_sr.dcm (and Cobb NAME_seg.dcm) as mskmorph ... --dicom does, "
                             "with the points as the user left them")
    parser.add_argument("--editor", metavar="NAME", help="who reviews: named in the SR when points were moved")


class ReviewApp:
    def __init__(self, inputs, module: str, out: Path, server=None, dicom: bool = False, editor: str = ""):
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
        register_rca_factories(self.slicer.view_manager, self.server)
        self.layout_manager = LayoutManager(self.slicer.scene, self.slicer.view_manager, self.server)
        axial = ViewLayoutDefinition.axial_view()
        self.layout_manager.register_layout("film", Layout(LayoutDirection.Vertical, [axial]))
        self.layout_manager.set_layout("film")
        self.logic = ModuleLogic(module)
        self.files = self.logic.spec.files()
        self.out = Path(out)
        self.dicom, self.editor = dicom, editor or ""
        self.items = batch.expand_inputs(inputs)
        taken: set = set()
        self.stems = [batch.output_stem(i.path, taken) for i in self.items]
        from .image import read_image

        self.images: dict = {}
        for n, item in enumerate(self.items):  # each film read once, so a bad one shows its reason at once
            if item.error is None:
                try:
                    self.images[n] = read_image(item.path)
                except (ValueError, OSError) as e:
                    item.error = str(e) or type(e).__name__
        self.status = ["refused" if i.error else "new" for i in self.items]
        self.volumes: dict = {}
        self.lives: dict = {}
        self.job = None
        self.current = -1
        self._table_tag = None
        self.state.update(worklist=self._worklist(), current=-1, rows=[], edited="", busy=False, progress=0,
                          message="", question=False, view_geometry="")
        self.ctrl.select = self.select
        self.ctrl.measure = self.measure
        self.ctrl.cancel = self.cancel
        self.ctrl.reset_points = self.reset_points
        self.ctrl.accept = self.accept
        self.ctrl.answer = self.answer
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

    def _refresh_table(self, *_):
        live = self._live()
        from .mrml import table_rows

        rows = [] if live is None else [{k: (f"{v:.2f}" if isinstance(v, float) else str(v)) for k, v in r.items()}
                                        for r in table_rows(live.table)]
        edited = "" if live is None else ", ".join(sum((list(v) for v in live.edited_labels().values()), []))
        if live is not None and live.edited() and self.status[self.current] in ("measured",):
            self.status[self.current] = "edited"
        self._push(rows=rows, edited=edited, view_geometry=self._geometry_json())
        self.state.flush()

    def _geometry_json(self):
        import json

        return json.dumps(self._geometry())

    # --- actions
    def select(self, index):
        from .mrml import volume_from_image

        index = int(index)
        if not 0 <= index < len(self.items):
            return
        self.current = index
        item = self.items[index]
        if index not in self.volumes and item.error is None:
            try:
                self.volumes[index] = volume_from_image(self.slicer.scene, self.images[index], self.stems[index],
                                                        colour=self.logic.spec.colour)
            except (ValueError, OSError) as e:
                item.error = str(e)
                self.status[index] = "refused"
        volume = self.volumes.get(index)
        self.slicer.display_manager.show_volume_in_slice_background(volume)
        self.slicer.display_manager.reset_views()
        self._watch_table()
        self._push(current=index, message=item.error or "")
        self._refresh_table()

    def _watch_table(self):
        live = self._live()
        if live is not None:
            live.table.AddObserver("ModifiedEvent", self._refresh_table)

    def measure(self, on_existing="ask"):
        from .review import EditedResultExists

        volume = self.volumes.get(self.current)
        if volume is None or self.job is not None:
            return
        try:
            self.logic.check_rerun(volume, on_existing)
        except EditedResultExists:
            self._push(question=True)
            return
        self._on_existing = "replace" if on_existing == "ask" else on_existing
        self.job = self.logic.start_job(self.logic.read(volume), self.logic.options(device="cpu"), python=sys.executable)
        self._job_index = self.current
        self._push(busy=True, progress=0, message="Measuring")
        from trame.app import asynchronous

        asynchronous.create_task(self._poll())

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
                self._push(busy=False, message=state.error or "Cancelled")
                return
            index = self._job_index
            live = self.logic.present(self.volumes[index], job.result(), self._on_existing)
            self.lives[index] = live
            self.status[index] = "measured"
            if index == self.current:
                self._watch_table()
            self._push(busy=False, message="Measured")
            self._refresh_table()
            return

    def answer(self, choice):
        self._push(question=False)
        if choice in ("keep", "replace"):
            self.measure(choice)

    def cancel(self):
        if self.job is not None:
            self.job.cancel()

    def reset_points(self):
        live = self._live()
        if live is not None:
            live.reset_edited_points()
            self.status[self.current] = "measured"
            self._refresh_table()

    def accept(self):
        from . import batch

        live = self._live()
        if live is None:
            return
        item = self.items[self.current]
        options = {}
        if self.dicom:
            from .dicom_export import DicomOptions, DicomRequest

            options["dicom"] = DicomRequest(item.path, self.images[self.current], DicomOptions(editor=self.editor))
        try:
            item.outputs = self.files.write_outputs(live, self.out, self.stems[self.current], **options)
        except (ValueError, OSError) as e:
            self._push(message=f"Not accepted: {e}")
            return
        item.record = live.record()
        item.values = self.files.csv_values(item.record)
        self.status[self.current] = "accepted"
        accepted = [i for n, i in enumerate(self.items) if self.status[n] == "accepted"]
        batch.write_summary(self.out, self.logic.spec.key, accepted, self.files.COLUMNS,
                            {"command": "mskmorph review"})
        self._push(message=f"Accepted: {', '.join(Path(p).name for p in item.outputs.values())}")

    # --- page
    def _build_ui(self):
        from trame.ui.vuetify3 import SinglePageWithDrawerLayout
        from trame.widgets import html
        from trame.widgets import vuetify3 as v

        with SinglePageWithDrawerLayout(self.server) as layout:
            layout.title.set_text(f"MSKMorphometry review: {self.logic.spec.title}")
            with layout.toolbar:
                v.VBtn("Previous", id="previous", click=(self.select, "[current - 1]"))
                v.VBtn("Next", id="next", click=(self.select, "[current + 1]"))
                v.VBtn("Measure", id="measure", click=self.measure, disabled=("busy",))
                v.VBtn("Cancel", id="cancel", click=self.cancel, disabled=("!busy",))
                v.VBtn("Reset edited points", id="reset", click=self.reset_points)
                v.VBtn("Accept", id="accept", click=self.accept)
                v.VProgressLinear(v_if=("busy",), model_value=("progress",), style="width: 120px")
                html.Span("{{ message }}", id="message", style="margin-left: 1em")
            with layout.drawer:
                with html.Div(id="worklist"):
                    with html.Div(v_for="w in worklist", key="w.index", classes="worklist-item",
                                  click=(self.select, "[w.index]"),
                                  style=("{cursor: 'pointer', padding: '4px', fontWeight: w.index === current ? 'bold' : 'normal'}",)):
                        html.Span("{{ w.name }}: ")
                        html.Span("{{ w.status }}", classes="status")
                        html.Div("{{ w.reason }}", v_if="w.reason", classes="reason", style="color: #c00")
                with html.Table(id="measurements", style="font-size: 12px"):
                    with html.Tr(v_for="(r, i) in rows", key="i"):
                        html.Td("{{ Object.values(r).join(' | ') }}")
                html.Div("Edited: {{ edited }}", id="edited")
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


def run(args) -> int:
    if args.host not in LOOPBACK:
        raise SystemExit("mskmorph review: binding beyond loopback needs the access token, not implemented yet; "
                         "use 127.0.0.1 behind a reverse proxy")
    args.out.mkdir(parents=True, exist_ok=True)
    app = ReviewApp(args.inputs, args.module, args.out, dicom=args.dicom, editor=args.editor or "")

    @app.ctrl.add("on_server_ready")
    def _ready(**_):
        print(f"mskmorph review: http://{args.host}:{app.server.port}/", flush=True)

    app.server.start(host=args.host, port=args.port, open_browser=False, show_connection_info=False)
    return 0
