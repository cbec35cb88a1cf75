"""CobbAngle's runtime: ``pipeline`` (a radiograph -> a CobbResult), ``geometry`` (corners -> Cobb
angles, no torch, no Slicer), ``landmarks_io`` (AASCE .mat files), ``frame`` (the network's input
frame), ``network`` and ``predict`` (the networks), ``review`` (its nodes in the review layer),
``files`` and ``overlay`` (its outputs) and ``cli``. Training, benchmarks and the phantom are in
CobbAngleTools."""
