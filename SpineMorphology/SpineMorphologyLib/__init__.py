"""SpineMorphology runtime (GAMA-Net back depth, surface, spine curve and measures): pipeline, morphology, surface, photo, person, network, predict, review, files, overlay, cli."""
