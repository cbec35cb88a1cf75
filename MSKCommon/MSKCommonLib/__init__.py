"""Code shared by the MSKMorphometry modules: reading radiographs, device choice, safe weight
loading, common MRML helpers and the ``mskmorph`` command line. Only ``MSKCommonLib.mrml`` imports
Slicer; only ``MSKCommonLib.device`` and ``MSKCommonLib.weights`` import torch."""
