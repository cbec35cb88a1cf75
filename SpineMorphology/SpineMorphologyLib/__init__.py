"""SpineMorphology working parts (GAMA-Net back depth, surface, spine curve and measures)."""
