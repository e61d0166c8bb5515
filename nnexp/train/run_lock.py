"""One process per run: a lock file in the checkpoint directory names the process writing it,
so that a run still alive is never resumed twice, and a killed one can be."""

from __future__ import annotations

import contextlib
import json
import os
import socket
from pathlib import Path

from nnexp.train.checkpoint import CheckpointError

LOCK = ".lock"


def lock(directory: Path) -> None:
    """Mark `directory` as written by this process (removed at the end; a killed process
    leaves it, and `check_unlocked` sees that its pid is gone)."""
    check_unlocked(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / LOCK).write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid()}))


def unlock(directory: Path) -> None:
    with contextlib.suppress(OSError, ValueError):
        owner = json.loads((directory / LOCK).read_text())
        if owner.get("pid") == os.getpid() and owner.get("host") == socket.gethostname():
            (directory / LOCK).unlink()


def check_unlocked(directory: Path) -> None:
    """Raise `CheckpointError` if a live process on this host still writes `directory`."""
    try:
        owner = json.loads((Path(directory) / LOCK).read_text())
        host, pid = owner["host"], int(owner["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return  # no lock, or an unreadable one: nobody to protect
    if host != socket.gethostname() or pid == os.getpid():
        return
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return  # the writer is gone (killed): the run can be resumed
    except PermissionError:
        pass  # alive, another user's
    raise CheckpointError(
        f"checkpoints {directory}: still being written by process {pid} on {host}; "
        f"stop it first (or, if that pid is not an nnexp run, delete {Path(directory) / LOCK})"
    )
