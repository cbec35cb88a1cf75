"""MSKCommon: the library the MSKMorphometry modules share, as a hidden Slicer module.

Slicer puts the folder of every module it loads on Python's path; the three modules name
"MSKCommon" in their ``dependencies``, so Slicer loads this one first and ``import MSKCommonLib``
works in them, from a build tree, an installed extension or a source tree added in the module
paths (as SlicerHeart's modules reach HeartValveLib). Nothing here is shown to the user.
"""
from slicer.i18n import tr as _
from slicer.ScriptedLoadableModule import ScriptedLoadableModule


class MSKCommon(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("MSKMorphometry common library")
        self.parent.categories = ["MSKMorphometry"]
        self.parent.dependencies = []
        self.parent.hidden = True
        self.parent.contributors = ["MSKMorphometry developers"]
        self.parent.helpText = _("The library the MSKMorphometry modules share (no user interface).")
        self.parent.acknowledgementText = ""
