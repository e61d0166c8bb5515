"""DatasetError and the one message format every data problem uses.

A message always names the config key, the offending value and what is allowed, e.g.
``dataset.n_samples=5: must be >= 10`` — so a user can fix the override without reading code.
"""

from __future__ import annotations

from typing import Any


class DatasetError(ValueError):
    """Any problem with a dataset spec or with the data it points at."""


def bad(key: str, value: Any, allowed: str) -> DatasetError:
    """``dataset.<key>=<value>: <allowed>`` as an exception (the caller raises it)."""
    return DatasetError(f"dataset.{key}={value!r}: {allowed}")


def preview(items: list[str], limit: int = 20) -> str:
    """Comma-joined names, truncated so a 700-column file does not flood the message."""
    shown = ", ".join(repr(item) for item in items[:limit])
    more = len(items) - limit
    return f"{shown}, ... ({more} more)" if more > 0 else shown
