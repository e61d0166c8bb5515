"""Where a run's wall time goes: named, nestable phases, each charged its *exclusive* time.

    with phase("model logging"):
        ...

Phases nest (time spent in an inner phase is not charged to the outer one), so the phases add
up to the time they cover. They cost two clock reads each and are always on. If the environment
variable ``NNEXP_TIMINGS`` names a file, the process writes ``{phase: seconds}`` there as JSON
when it exits — that is how ``python -m nnexp.bench`` reports the default run's breakdown.
"""

from __future__ import annotations

import atexit
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

ENV = "NNEXP_TIMINGS"

totals: dict[str, float] = {}
_stack: list[list[float]] = []  # per open phase: [start, time spent in nested phases]


@contextmanager
def phase(name: str) -> Iterator[None]:
    start = time.perf_counter()
    _stack.append([start, 0.0])
    try:
        yield
    finally:
        _, nested = _stack.pop()
        elapsed = time.perf_counter() - start
        totals[name] = totals.get(name, 0.0) + elapsed - nested
        if _stack:
            _stack[-1][1] += elapsed


def _write() -> None:
    path = os.environ.get(ENV)
    if path:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(totals, f)


atexit.register(_write)
