"""How nnexp talks on the terminal: its messages go through `logging` (loggers ``nnexp.*``), so
that Hydra's job log keeps them, and are already worded for a person (``nnexp: ...``). The job
logging config (``conf/hydra/job_logging/nnexp.yaml``) shows them as they are — INFO on
stdout, warnings and errors on stderr — with `below_warning` keeping stdout to INFO."""

from __future__ import annotations

import logging
from collections.abc import Callable


def below_warning() -> Callable[[logging.LogRecord], bool]:
    """A handler filter (a factory, as `logging.config.dictConfig` wants it): records below
    WARNING only."""
    return lambda record: record.levelno < logging.WARNING
