"""Code shared by the MSKMorphometry modules: reading radiographs, device choice, safe weight
loading, common MRML helpers and the ``mskmorph`` command line. Only ``MSKCommon.mrml`` imports
Slicer; only ``MSKCommon.device`` and ``MSKCommon.weights`` import torch."""
