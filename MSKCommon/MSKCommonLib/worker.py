"""The worker process: one module's pipeline on one saved input, in a process of its own.

In desktop Slicer the main thread holds Python's lock while Qt's event loop runs, so a Python
thread barely advances; the Slicer modules (and the browser review) therefore run the networks
in a separate process, started by ``MSKCommonLib.job.WorkerJob`` with Slicer's own Python
(``PythonSlicer``), and cancel it by ending the process.

    python -m MSKCommonLib.worker MODULE FOLDER

FOLDER holds ``input.json`` (+ ``.npz``: the ``Image``, written by ``MSKCommonLib.result.dump``)
and ``options.json`` (the module's options). The worker appends progress lines
``{"fraction": f, "message": m}`` to ``progress.jsonl`` and ends with ``result.json`` (+ ``.npz``)
and exit status 0, or ``error.json`` (``{"message": ...}``, the reason for the user) and status 2;
an unexpected error also prints its traceback and exits with 1.
"""
from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path

EXPECTED_ERRORS = (ValueError, OSError, RuntimeError)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 64
    key, folder = argv[0], Path(argv[1])
    progress_file = folder / "progress.jsonl"

    def progress(fraction=None, message=None, *args, **kwargs):
        with open(progress_file, "a", encoding="utf-8") as f:
            f.write(json.dumps({"fraction": None if fraction is None else float(fraction),
                                "message": "" if message is None else str(message)}) + "\n")

    try:
        from .modules import spec
        from .result import dump, load

        module = spec(key)
        progress(0.0, "Starting")
        image = load(folder / "input.json")
        options = module.options(**json.loads((folder / "options.json").read_text(encoding="utf-8")))
        result = module.pipeline().run(image, options, progress=progress)
        dump(result, folder / "result.json.tmp")
        Path(str(folder / "result.json.tmp") + ".npz").replace(str(folder / "result.json") + ".npz")
        (folder / "result.json.tmp").replace(folder / "result.json")
        return 0
    except EXPECTED_ERRORS as e:
        (folder / "error.json").write_text(json.dumps({"message": str(e) or type(e).__name__}), encoding="utf-8")
        return 2
    except Exception as e:  # a bug: say what it was
        traceback.print_exc()
        (folder / "error.json").write_text(json.dumps({"message": f"internal error ({type(e).__name__}: {e})"}),
                                           encoding="utf-8")
        return 1


if __name__ == "__main__":
    sys.exit(main())
