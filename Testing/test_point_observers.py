"""MSKCommonLib.mrml.PointObservers: the live-update bookkeeping the three modules share, on real
markups nodes from slicer-core."""
from __future__ import annotations

import numpy as np


def _fiducial(app, n=3):
    from MSKCommonLib import mrml as common

    node = common.new_markups(app.scene, "vtkMRMLMarkupsFiducialNode", "points")
    common.set_control_points(node, np.arange(3 * n, dtype=float).reshape(n, 3))
    return node


def test_callback_gets_the_kept_result_on_move_add_remove(slicer_app):
    from MSKCommonLib.review import PointObservers

    node = _fiducial(slicer_app)
    observers = PointObservers()
    seen = []
    result = {"name": "first"}
    assert observers.observe(node, result, seen.append) is result
    # a second observe keeps the first result object and adds no second observer
    assert observers.observe(node, {"name": "second"}, seen.append) is result
    node.SetNthControlPointPosition(0, 5.0, 5.0, 5.0)
    assert len(seen) == 1 and seen[0] is result
    node.AddControlPoint(1.0, 2.0, 3.0)
    after_add = len(seen)
    assert after_add > 1
    node.RemoveNthControlPoint(0)
    assert len(seen) > after_add and all(r is result for r in seen)
    observers.forget_all()


def test_paused_silences_then_restores(slicer_app):
    from MSKCommonLib.review import PointObservers

    node = _fiducial(slicer_app)
    observers = PointObservers()
    seen = []
    observers.observe(node, "r", seen.append)
    with observers.paused(node):
        node.SetNthControlPointPosition(1, 9.0, 9.0, 9.0)
    assert seen == [] and node in observers and observers.result_of(node) == "r"
    node.SetNthControlPointPosition(1, 8.0, 8.0, 8.0)
    assert seen == ["r"]
    with observers.paused(_fiducial(slicer_app)):  # a node never observed: nothing to pause
        pass
    observers.forget_all()


def test_forget_removes_the_observers(slicer_app):
    from MSKCommonLib.review import PointObservers

    node = _fiducial(slicer_app)
    observers = PointObservers()
    seen = []
    observers.observe(node, "r", seen.append)
    observers.forget(node)
    node.SetNthControlPointPosition(0, 1.0, 1.0, 1.0)
    assert seen == [] and node not in observers and len(observers) == 0
    observers.forget(node)  # twice is harmless
