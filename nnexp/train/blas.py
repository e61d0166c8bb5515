"""The BLAS a run computes with, and pinning it to one thread.

A matrix product's rounding depends on how BLAS splits it across threads (and on the kernel
it picked for the CPU), so the same seeds give results that differ in the last digits from one
thread count to another — and a chaotic training run amplifies them. Every run records its BLAS
library, kernel and thread count; ``trainer.deterministic=true`` runs with one BLAS thread, so
that a result depends only on the seeds and the BLAS library and kernel.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


def blas_pools() -> list[dict[str, Any]]:
    """threadpoolctl's description of each BLAS library loaded in this process."""
    from threadpoolctl import threadpool_info

    pools = [pool for pool in threadpool_info() if pool.get("user_api") == "blas"]
    # threadpoolctl lists them in load order, which varies between processes (NumPy's and
    # SciPy's OpenBLAS): sorted, the same libraries give the same tags.
    return sorted(pools, key=lambda p: (str(p.get("internal_api")), str(p.get("version"))))


def blas_tags() -> dict[str, str]:
    """``blas.library``, ``blas.kernel``, ``blas.threads`` (several libraries: joined by ``; ``)."""
    pools = blas_pools()
    if not pools:
        return {"blas.library": "none found by threadpoolctl"}
    return {
        "blas.library": "; ".join(f"{p.get('internal_api')} {p.get('version')}" for p in pools),
        "blas.kernel": "; ".join(str(p.get("architecture")) for p in pools),
        "blas.threads": "; ".join(str(p.get("num_threads")) for p in pools),
    }


def describe_blas() -> str:
    """One line: ``openblas 0.3.31 kernel=SkylakeX threads=2``."""
    parts = [
        f"{p.get('internal_api')} {p.get('version')} "
        f"kernel={p.get('architecture')} threads={p.get('num_threads')}"
        for p in blas_pools()
    ]
    return "; ".join(parts) or "no BLAS found by threadpoolctl"


@contextlib.contextmanager
def deterministic_blas(enabled: bool = True) -> Iterator[None]:
    """One BLAS thread inside the block (when `enabled`); the previous limits after it."""
    if not enabled:
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield
