"""`python -m nnexp [overrides]`: see `python -m nnexp --help`."""

import atexit
import gc
import os
import sys
import threading

# Start-up (Hydra, MLflow, SQLAlchemy) allocates some 300k objects that live as long as the
# process, and the cyclic collector rescans all of them each time it runs in full: 0.4-0.5 s of
# a 3 s default run. It stays off until the run has started (store open); a callback of
# `nnexp.cli.run` then sets those objects aside (`gc.freeze`, single runs) and turns it on.
gc.disable()

from nnexp.timing import phase  # noqa: E402

with phase("imports"):
    from nnexp.cli import main


def _exit_now(code: object) -> None:
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
    sys.argv[1:] = _experiment_alias(sys.argv[1:])
    try:
        with phase("config (Hydra, validation)"):  # what the phases inside do not cover
            main()
    except SystemExit as exc:
        _exit_now(exc.code)
    _exit_now(0)
