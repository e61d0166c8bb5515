"""Drawing a run's plots in a separate process, so they cost the run (almost) no wall time.

A `PlotWorker` is started when a single run starts (``python -m nnexp.tracking.plot_worker``):
it imports matplotlib (~1 s) at once, on the other core, while the run trains; at the end it
receives the history as JSON on stdin and draws `nnexp.tracking.plots` while the run logs its
model. If it fails, `result` says so and the caller draws in-process: plots are never lost.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from nnexp.tracking.plots import History, make_plots


class PlotWorker:
    """A process that imports matplotlib at once, then waits for a history to draw."""

    def __init__(self) -> None:
        env = os.environ | {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "nnexp.tracking.plot_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        self.directory: Path | None = None

    def send(self, history: History, directory: str | Path) -> None:
        """Hand over the history (once); the worker starts drawing into `directory`."""
        if self.directory is not None:
            return
        self.directory = Path(directory)
        payload = {"directory": str(self.directory), "history": [dict(row) for row in history]}
        stdin, self.proc.stdin = self.proc.stdin, None  # communicate() must not touch it again
        assert stdin is not None  # started with stdin=PIPE, handed over once
        try:
            stdin.write(json.dumps(payload).encode())
        except (OSError, ValueError):  # the worker died or was stopped: `result` says so
            pass
        finally:
            stdin.close()

    def result(self, timeout_s: float = 60.0) -> list[Path] | None:
        """The plots written, or None if the worker failed (the caller then draws itself)."""
        try:
            out, err = self.proc.communicate(timeout=timeout_s)
        except (subprocess.TimeoutExpired, ValueError):
            self.stop()
            return None
        if self.proc.returncode != 0 or self.directory is None:
            lines = (err or b"").decode(errors="replace").strip().splitlines()
            last = lines[-1] if lines else f"exit code {self.proc.returncode}"
            logging.getLogger(__name__).warning(
                f"WARNING nnexp.tracking: the plot worker failed ({last})"
            )
            return None
        return [Path(path) for path in json.loads(out)]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()  # reaps it and closes the pipes


def _worker_main() -> None:
    from matplotlib.figure import Figure  # noqa: F401  (the slow part, done while waiting)

    payload = json.load(sys.stdin)
    paths = make_plots(payload["history"], payload["directory"])
    print(json.dumps([str(path) for path in paths]))


if __name__ == "__main__":
    _worker_main()
