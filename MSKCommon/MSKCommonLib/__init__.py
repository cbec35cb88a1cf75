"""The runtime the MSKMorphometry modules share: the one file reader (``image``), the one volume
node converter and the pixel <-> RAS boundary (``mrml``), the review layer (``review``), results
between processes (``result``), the module catalogue (``modules``), the Slicer-side logic
(``logic``), the worker process (``job``, ``worker``), the Slicer widget toolkit (``widgets``, in
Slicer only), requirement checks, device choice, the network runtime (``runtime``: ONNX Runtime by
default, torch when asked), safe weight loading, and the ``mskmorph`` command line (``cli``,
``batch``, ``headless``). Only ``mrml``, ``review``, ``headless`` and ``widgets`` import Slicer;
only ``weights``, ``device``'s torch functions and ``runtime``'s torch backend import torch (when
called, never on import)."""
