"""`python -m nnexp [overrides]` (and the `nnexp` command): see `python -m nnexp --help`.

What the process does around a run lives here: the garbage collector's start-up policy and the
fast exit. `nnexp.cli` is the Hydra task; this module is the program.
"""

from __future__ import annotations

import atexit
import gc
import os
import sys
import threading
import traceback

if __name__ == "__main__":  # the program (not an import): see `entry` for why, before imports
    gc.disable()

from nnexp.timing import phase
from nnexp.train.callbacks import Callback


def entry() -> None:
    """The program: the collector off for the start-up, the run, the fast exit."""
    # Start-up (Hydra, MLflow, SQLAlchemy) allocates some 300k objects that live as long as
    # the process, and the cyclic collector rescans all of them each time it runs in full:
    # 0.4-0.5 s of a 3 s default run. It stays off until the run has started (store open);
    # `SetAsideStartupObjects` then sets those objects aside and turns it back on.
    gc.disable()
    with phase("imports"):
        from nnexp import cli

    cli.PROCESS_CALLBACKS.append(SetAsideStartupObjects)
    sys.argv[1:] = _experiment_alias(sys.argv[1:])
    # Hydra prints its own errors in several lines and exits 1, like a crash; told to raise
    # them, it leaves the report to `_failed` (unless the user asked for its full traces).
    full_traces = os.environ.get("HYDRA_FULL_ERROR") == "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        with phase("config (Hydra, validation)"):  # what the phases inside do not cover
            cli.main()
    except SystemExit as exc:
        _exit_now(exc.code)
    except Exception as exc:
        if full_traces:
            raise
        _exit_now(_failed(exc, sys.argv[1:]))
    _exit_now(0)


def _failed(exc: Exception, args: list[str]) -> int:
    """The exit code of an error that escaped the task (the task maps its own: `nnexp.cli`):
    a composition error (bad command line) 2, an error of the contract (a sweep's store) its
    code, each as one line; anything else is a bug, and keeps its traceback (exit 1)."""
    from nnexp import cli
    from nnexp.composition import is_composition_error, one_line

    if is_composition_error(exc):
        code, line = 2, one_line(exc, args)
    else:
        kinds = [c for kind, c in cli.EXIT_CODES.items() if isinstance(exc, kind)]
        if not kinds:
            traceback.print_exception(exc)
            return 1
        code, line = kinds[0], str(exc)
    print(f"nnexp: error: {line}", file=sys.stderr)
    return code


class SetAsideStartupObjects(Callback):
    """Last of a run's callbacks, so it runs once the tracker has imported MLflow and opened
    the store, and only where `entry` turned the cyclic collector off for the start-up: turns
    it back on, and in a single run first exempts what exists by then (modules, configs, ORM
    mappings, the run's own objects: all of it lives until the process exits) from its full
    passes. The start-up's own garbage (~20k objects, a few MB) is set aside with it rather
    than paying a full collection of everything (0.2 s). A multirun only turns it back on: a
    job's objects die with the job, and frozen ones would never be collected."""

    def __init__(self, single_run: bool | None = None) -> None:
        self.single_run = single_run  # None: ask Hydra when the run starts

    def on_fit_start(self, trainer) -> None:
        if gc.isenabled():  # a library call, a joblib worker, a later job of a sweep
            return
        single_run = self.single_run
        if single_run is None:
            from nnexp.tracking.sweep import in_multirun

            single_run = not in_multirun()
        if single_run:
            gc.freeze()
        gc.enable()


def _exit_now(code: str | int | None) -> None:
    """End the process without tearing the interpreter down.

    After MLflow, SQLAlchemy and matplotlib are loaded, CPython's finalization (freeing every
    module and object one by one) takes 1-2 s: a fifth of a small run. Everything that matters
    at exit still happens — the atexit handlers (MLflow's, logging's, ours), flushed output —
    and only the freeing is skipped. Python's normal exit is kept when a non-daemon thread is
    still running (it waits for it) and under a profiler or tracer (they report at exit)."""
    _stop_idle_workers()
    others = [t for t in threading.enumerate() if t is not threading.main_thread()]
    watched = sys.getprofile() is not None or sys.gettrace() is not None  # profilers, coverage
    if watched or any(t.is_alive() and not t.daemon for t in others):
        sys.exit(code)
    if isinstance(code, str):
        print(code, file=sys.stderr)
        code = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code or 0)


def _stop_idle_workers() -> None:
    """Stop joblib's worker processes (``hydra/launcher=joblib``) now that every job has
    returned. joblib keeps them for reuse, and the (non-daemon) thread that manages them would
    hold this process in Python's slow exit, shutting them down one by one: 3-4 s at the end of
    a sweep. Looked up, never imported: a run that did not use joblib has nothing to stop."""
    module = sys.modules.get("joblib.externals.loky.reusable_executor")
    executor = getattr(module, "_executor", None)  # loky's reusable executor, if one was made
    if executor is not None:
        executor.shutdown(wait=True, kill_workers=True)


def _experiment_alias(args: list[str]) -> list[str]:
    """``+experiment=NAME`` as ``experiment=NAME``. The defaults list names the group
    (``experiment: null``) so that ``experiment=NAME`` works, and Hydra 1.3 refuses to append
    a group it already lists; both spellings are common in Hydra projects, so both work."""
    prefix = "+experiment="
    return [f"experiment={a[len(prefix) :]}" if a.startswith(prefix) else a for a in args]


if __name__ == "__main__":
    entry()
