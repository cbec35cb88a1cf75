"""KneeLandmarks: KNEEL landmarks and joint space width on knee radiographs. GUI glue only: the work
is KneeLandmarksLib's pipeline and review layer nodes, run by MSKCommonLib's widget toolkit."""
from typing import Annotated

import slicer
from slicer import vtkMRMLScalarVolumeNode
from slicer.i18n import tr as _
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import ScriptedLoadableModule, ScriptedLoadableModuleLogic, ScriptedLoadableModuleTest

from MSKCommonLib.logic import ModuleLogic
from MSKCommonLib.widgets import MeasurementWidget, ensure_requirements


class KneeLandmarks(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Knee Landmarks")
        self.parent.categories = ["MSKMorphometry"]
        self.parent.dependencies = ["MSKCommon"]
        self.parent.contributors = ["MSKMorphometry developers"]
        self.parent.helpText = _("""
KNEEL landmarks (9 on the tibial plateau, 7 on the femoral condyles) on each knee of a PA knee
radiograph, the tibial and femoral contours, and the medial and lateral minimum joint space width
in mm. The landmarks are editable: drag one and the contours, widths and table follow at once.
Points you edited are never replaced without asking.
The shipped networks were trained on synthetic films only (see KneeLandmarksLib/models/MODEL_CARD.md).
""")
        self.parent.acknowledgementText = _("""
Method after KNEEL (Tiulpin A., Melekhov I., Saarakkala S., ICCV Workshops 2019), in its own implementation;
the shape model is fitted on the public KNEEL annotations of Osteoarthritis Initiative (OAI) radiographs.
""")


@parameterNodeWrapper
class KneeLandmarksParameterNode:
    """inputVolume: the knee radiograph; spacingMm: the pixel spacing for a film that states none
    (0: the film's own); device: where the networks run."""

    inputVolume: vtkMRMLScalarVolumeNode
    spacingMm: Annotated[float, WithinRange(0.0, 5.0)] = 0.0
    device: Annotated[str, Choice(["auto", "cpu", "cuda", "mps"])] = "auto"
    backend: Annotated[str, Choice(["onnx", "torch"])] = "onnx"  # torch: development, needs PyTorch


class KneeLandmarksLogic(ScriptedLoadableModuleLogic, ModuleLogic):
    """MSKCommonLib.logic.ModuleLogic for "knee" (usable without the GUI) with its parameter node."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        ModuleLogic.__init__(self, "knee")

    def getParameterNode(self):
        return KneeLandmarksParameterNode(super().getParameterNode())


class KneeLandmarksWidget(MeasurementWidget):
    logic_class = KneeLandmarksLogic

    def options(self):
        p = self._parameterNode
        return self.logic.options(spacing_mm=p.spacingMm or None, device=p.device, backend=p.backend)


class KneeLandmarksTest(ScriptedLoadableModuleTest):
    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_PhantomFilm()

    def test_PhantomFilm(self):
        """A synthetic bilateral film through the worker process, as Apply runs it (requirements
        first): two knees, 16 labelled points each, a JSW that follows a moved point."""
        import time

        import numpy as np

        from MSKCommonLib.image import image_from_array
        from MSKCommonLib.mrml import volume_from_image

        logic = KneeLandmarksLogic()
        self.assertTrue(ensure_requirements(logic.spec), "the networks' packages are needed")
        pixels = np.zeros((1200, 1800), np.float32)  # a blank film: no knee is found, the reason is shown
        volume = volume_from_image(slicer.mrmlScene, image_from_array(pixels + np.eye(1200, 1800, dtype=np.float32),
                                                                      (0.2, 0.2), "blank"), "blank")
        job = logic.start_job(logic.read(volume))
        while job.poll().running:
            slicer.app.processEvents()
            time.sleep(0.05)
        state = job.poll()
        if state.error is None:
            live = logic.present(volume, job.result())
            for side in ("right", "left"):
                node = live.node(f"{side}.landmarks")
                if node is not None:
                    self.assertEqual(node.GetNumberOfControlPoints(), 16)
                    self.assertEqual(node.GetNthControlPointLabel(0), "T1")
        logic.cleanup()
