"""Where a project's runs go: its root, and the store, outputs and reports under it.

The root is ``$NNEXP_ROOT`` if set; else the nearest directory, from the working directory up,
that holds ``mlflow.db`` (the store of the project's first run) or ``.git`` (the project) —
never the home directory or the filesystem root, which hold neither projects nor their stores
(a home under git is a dotfiles repository); else the working directory itself. So a run, a
sweep or a report started from any sub-directory of a project lands in the project's store,
``outputs/``, ``multirun/`` and ``report-<id>/``, not beside the user. Read by the config
(``paths.root``, through the resolver ``nnexp.project_root``) and by the commands that have no
Hydra config (``nnexp.compare``, ``nnexp.doctor``).
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT_ENV = "NNEXP_ROOT"
MARKERS = ("mlflow.db", ".git")
STORE_FILE = "mlflow.db"


def project_root(start: Path | None = None) -> Path:
    """The project's root as the module says, searched from `start` (the working directory)."""
    if os.environ.get(ROOT_ENV):
        return Path(os.environ[ROOT_ENV]).expanduser().resolve()
    here = (start or Path.cwd()).resolve()
    never = {Path.home().resolve(), Path(here.anchor)}
    for directory in (here, *here.parents):
        if directory in never:
            break
        if any((directory / marker).exists() for marker in MARKERS):
            return directory
    return here


def default_store_uri(start: Path | None = None) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else the project's ``sqlite:///<root>/mlflow.db``."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_root(start) / STORE_FILE}"


class NoStore(Exception):
    """A command that reads runs was pointed at a sqlite store that does not exist."""


def existing_store_uri(given: str | None = None) -> str:
    """`given`, else the default store (`default_store_uri`); NoStore if it is a sqlite file
    that does not exist: opening it would create an empty store, and a reader finds nothing."""
    uri = given or default_store_uri()
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///") :]).is_file():
        raise NoStore(f"no MLflow store at {uri}")
    return uri
