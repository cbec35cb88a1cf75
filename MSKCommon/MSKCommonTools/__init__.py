"""Development tools the modules share (training, benchmarks, phantoms, tests): never installed
into Slicer and never imported by inference."""
from __future__ import annotations

import os
from pathlib import Path

SHARED_DATA_VARIABLE = "MSKMORPH_SHARED_DATA"


def shared_data() -> Path:
    """The shared data folder (AASCE films, KNEEL annotations, real knee crops): the folder named
    by ``$MSKMORPH_SHARED_DATA``, else ``shared/data`` beside the repository. The one rule used by
    the benchmarks, the training commands and the tests."""
    given = os.environ.get(SHARED_DATA_VARIABLE)
    if given:
        return Path(given)
    return Path(__file__).resolve().parents[2].parent / "shared" / "data"
