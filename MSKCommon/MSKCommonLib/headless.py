"""A real MRML scene without the Slicer GUI (the ``slicer-core`` wheel), for the command line and
the tests: scene, application logic and the module logics that markups, segmentations, models,
tables and scene files (.mrb) need. Inside desktop Slicer, use ``slicer.mrmlScene`` instead."""
from __future__ import annotations

import tempfile
import types


def _register(app_logic, scene, logic, name):
    logic.SetMRMLScene(scene)
    logic.SetMRMLApplicationLogic(app_logic)
    app_logic.SetModuleLogic(name, logic)
    return logic


def make_app(set_slicer_globals: bool = True) -> types.SimpleNamespace:
    """Build a scene with the logics registered (about a second). Returns a namespace with
    ``scene`` and the logics; keep it alive as long as the scene is used."""
    import slicer
    from slicer import (
        vtkDataIOManagerLogic,
        vtkMRMLColorLogic,
        vtkMRMLCrosshairNode,
        vtkMRMLRemoteIOLogic,
        vtkMRMLScene,
        vtkMRMLSliceNode,
        vtkSlicerApplicationLogic,
        vtkSlicerMarkupsLogic,
        vtkSlicerModelsLogic,
        vtkSlicerSegmentationsModuleLogic,
        vtkSlicerSubjectHierarchyModuleLogic,
        vtkSlicerTablesLogic,
        vtkSlicerVolumesLogic,
    )
    from vtkmodules.vtkCommonCore import vtkCollection, vtkOutputWindow

    out = vtkOutputWindow()
    out.SetDisplayModeToAlwaysStdErr()
    vtkOutputWindow.SetInstance(out)

    scene = vtkMRMLScene()
    crosshair = vtkMRMLCrosshairNode()
    crosshair.SetCrosshairName("default")
    scene.AddNode(crosshair)

    app_logic = vtkSlicerApplicationLogic()
    app_logic.SetMRMLScene(scene)
    app_logic.GetColorLogic().SetMRMLScene(scene)
    app_logic.GetColorLogic().AddDefaultColorNodes()
    app_logic.SetSliceLogics(vtkCollection())
    app_logic.SetViewLogics(vtkCollection())
    vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(scene, True)

    app = types.SimpleNamespace(scene=scene, app_logic=app_logic)
    app.colors = _register(app_logic, scene, vtkMRMLColorLogic(), "Colors")
    app.subject_hierarchy = _register(app_logic, scene, vtkSlicerSubjectHierarchyModuleLogic(), "SubjectHierarchy")
    app.volumes = _register(app_logic, scene, vtkSlicerVolumesLogic(), "Volumes")
    app.markups = _register(app_logic, scene, vtkSlicerMarkupsLogic(), "Markups")
    app.segmentations = _register(app_logic, scene, vtkSlicerSegmentationsModuleLogic(), "Segmentations")
    app.models = _register(app_logic, scene, vtkSlicerModelsLogic(), "Models")
    app.tables = _register(app_logic, scene, vtkSlicerTablesLogic(), "Tables")

    # Scene files (.mrb) need the data-IO manager and a remote cache directory.
    app.cache_dir = tempfile.TemporaryDirectory(prefix="mskmorph-cache-")
    app.remote_io = vtkMRMLRemoteIOLogic()
    app.remote_io.SetMRMLScene(scene)
    app.remote_io.SetMRMLApplicationLogic(app_logic)
    app.remote_io.GetCacheManager().SetRemoteCacheDirectory(app.cache_dir.name)
    app.data_io = vtkDataIOManagerLogic()
    app.data_io.SetMRMLScene(scene)
    app.data_io.SetMRMLApplicationLogic(app_logic)
    app.data_io.SetAndObserveDataIOManager(app.remote_io.GetDataIOManager())
    app.remote_io.AddDataIOToScene()

    if set_slicer_globals:
        # slicer.util helpers look up slicer.mrmlScene and slicer.modules.<name>.logic()
        slicer.mrmlScene = scene

        def module(logic):
            return types.SimpleNamespace(logic=lambda: logic)

        slicer.modules = types.SimpleNamespace(
            volumes=module(app.volumes),
            markups=module(app.markups),
            segmentations=module(app.segmentations),
            models=module(app.models),
            tables=module(app.tables),
            subjecthierarchy=module(app.subject_hierarchy),
        )
    return app
