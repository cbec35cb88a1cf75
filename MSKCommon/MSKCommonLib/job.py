"""A module's pipeline run in a worker process, with progress and cancel; no Qt, no threads.

    job = WorkerJob("cobb", image, options, python="PythonSlicer")
    job.start()
    while (state := job.poll()).running:   # a Qt timer calls poll() in Slicer; the page in the browser
        show(state.fraction, state.message)
    result = job.result()                  # the pipeline's result, as if run in this process

``cancel()`` ends the process (and its children) at once and removes its folder; nothing is left
behind and nothing is shown. The input is saved as the front ends read it (an ``Image``, written
by ``MSKCommonLib.result.dump``), so the worker computes exactly what the command line computes.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional


@dataclass
class JobState:
    running: bool
    fraction: Optional[float] = None  # None: busy, no measure of progress
    message: str = ""
    error: Optional[str] = None  # why it failed (for the user)
    cancelled: bool = False


def slicer_python() -> str:
    """Slicer's own Python (``PythonSlicer``, beside the running interpreter inside Slicer), else this
    interpreter."""
    here = Path(sys.executable).parent
    for name in ("PythonSlicer", "PythonSlicer.exe"):
        if (here / name).is_file():
            return str(here / name)
    return shutil.which("PythonSlicer") or sys.executable


def package_paths(*packages: str) -> list[str]:
    """The folders that hold these packages (put on the worker's PYTHONPATH: inside Slicer they
    are the scripted-module folders, which PythonSlicer does not search by itself)."""
    import importlib

    out = []
    for name in packages:
        folder = str(Path(importlib.import_module(name).__file__).resolve().parent.parent)
        if folder not in out:
            out.append(folder)
    return out


class WorkerJob:
    def __init__(self, module: str, image, options, python: Optional[str] = None):
        from .modules import spec

        self.module = spec(module)
        self.image = image
        self.options = options
        self.python = python or slicer_python()
        self.folder: Optional[Path] = None
        self.process: Optional[subprocess.Popen] = None
        self._state = JobState(running=False)
        self._result = None
        self._log = None

    @property
    def command(self) -> list[str]:
        return [self.python, "-m", "MSKCommonLib.worker", self.module.key, str(self.folder)]

    def start(self) -> "WorkerJob":
        from .result import dump

        self.folder = Path(tempfile.mkdtemp(prefix=f"mskmorph-{self.module.key}-"))
        dump(self.image, self.folder / "input.json")
        options = dataclasses.asdict(self.options) if dataclasses.is_dataclass(self.options) else dict(self.options or {})
        (self.folder / "options.json").write_text(json.dumps(options), encoding="utf-8")
        env = dict(os.environ)
        paths = package_paths("MSKCommonLib", self.module.package)
        env["PYTHONPATH"] = os.pathsep.join(paths + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        env.setdefault("PYTHONUNBUFFERED", "1")
        self._log = open(self.folder / "output.log", "wb")
        self.process = subprocess.Popen(self.command, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                        start_new_session=(os.name != "nt"))
        self._state = JobState(running=True, message="Starting")
        return self

    def poll(self) -> JobState:
        """The job's state now (never blocks)."""
        if self.process is None or not self._state.running:
            return self._state
        fraction, message = self._progress()
        code = self.process.poll()
        if code is None:
            self._state = JobState(True, fraction, message)
            return self._state
        if code == 0 and (self.folder / "result.json").is_file():
            from .result import load

            self._result = load(self.folder / "result.json")
            self._state = JobState(False, 1.0, "Done")
        else:
            self._state = JobState(False, fraction, message, error=self._error(code))
        self._cleanup()
        return self._state

    def wait(self, timeout: Optional[float] = None) -> JobState:
        """Block until the job ends (tests, the browser review's own thread)."""
        if self.process is not None:
            self.process.wait(timeout)
        return self.poll()

    def result(self):
        """The pipeline's result once ``poll()`` says it ended without error."""
        if self._state.error:
            raise RuntimeError(self._state.error)
        if self._state.cancelled or self._result is None:
            raise RuntimeError("the measurement was cancelled or has not finished")
        return self._result

    def cancel(self) -> None:
        """End the process now (its children too) and forget everything it did."""
        if self.process is not None and self.process.poll() is None:
            try:
                if os.name != "nt":
                    os.killpg(self.process.pid, signal.SIGKILL)
                else:
                    self.process.kill()
            except ProcessLookupError:
                pass
            try:
                self.process.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                pass
        self._state = JobState(False, None, "Cancelled", cancelled=True)
        self._cleanup()

    # --- internals

    def _progress(self):
        path = self.folder / "progress.jsonl"
        fraction, message = None, self._state.message
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue  # a line being written
                if entry.get("fraction") is not None:
                    fraction = entry["fraction"]
                message = entry.get("message") or message
        return fraction, message

    def _error(self, code: int) -> str:
        path = self.folder / "error.json"
        if path.is_file():
            try:
                return json.loads(path.read_text(encoding="utf-8"))["message"]
            except (ValueError, KeyError):
                pass
        log = (self.folder / "output.log").read_text(encoding="utf-8", errors="replace").strip().splitlines()
        return f"the {self.module.name} worker process stopped (exit status {code})" + (f": {log[-1]}" if log else "")

    def _cleanup(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
