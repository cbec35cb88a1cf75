"""CobbAngle's working parts: ``geometry`` (landmarks -> Cobb angles, no torch, no Slicer),
``landmarks_io`` (AASCE .mat files), ``phantom`` (synthetic spine radiographs), ``predict``
(the networks), ``overlay`` (PNG drawing), ``mrml`` (the only Slicer layer) and ``cli``."""
