"""SpineMorphology development tools: training, benchmarks and phantoms (not installed into Slicer, never imported by inference)."""
