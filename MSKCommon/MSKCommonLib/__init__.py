"""The runtime the MSKMorphometry modules share: the one file reader (``image``), the one volume
node converter and the pixel <-> RAS boundary (``mrml``), the review layer (``review``), results
between processes (``result``), the module catalogue (``modules``), the Slicer-side logic
(``logic``), the worker process (``job``, ``worker``), the Slicer widget toolkit (``widgets``, in
Slicer only), requirement checks, device choice, safe weight loading, and the ``mskmorph``
command line (``cli``, ``batch``, ``headless``). Only ``mrml``, ``review``, ``headless`` and
``widgets`` import Slicer; only ``device`` and ``weights`` import torch."""
