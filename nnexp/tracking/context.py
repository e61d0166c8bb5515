"""MLflow's context tags of a run, as `mlflow.start_run` sets them — nnexp creates its runs with
an explicit `MlflowClient`, which sets none: ``mlflow.user``, ``mlflow.source.name`` and
``mlflow.source.type`` (and whatever an installed context plugin or ``MLFLOW_RUN_CONTEXT`` adds)
come from MLflow's own registry of context providers; the ``mlflow.source.git.*`` tags describe
the repository of the directory the run was started from (`git_state`).

Two differences from `mlflow.start_run`, both so that every job of a sweep records the same
thing whatever process runs it (a joblib worker's ``sys.argv[0]`` is joblib's): the source name
is nnexp's program file, and git is asked about the project directory rather than the directory
of ``sys.argv[0]`` (for a clone of nnexp, the same repository).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from nnexp.names import (
    TAG_GIT_BRANCH,
    TAG_GIT_COMMIT,
    TAG_GIT_DIRTY,
    TAG_GIT_REPO_URL,
    TAG_SOURCE_NAME,
)

GIT_TIMEOUT_S = 5.0
# The program every nnexp run is (python -m nnexp, the nnexp script): its __main__ module.
PROGRAM = str(Path(__file__).resolve().parents[1] / "__main__.py")


def context_tags(project_dir: Path) -> dict[str, str]:
    """The context tags of a run started from `project_dir` (imports MLflow)."""
    from mlflow.tracking.context.git_context import GitRunContext
    from mlflow.tracking.context.registry import resolve_tags

    # (MLflow annotates `ignore` as instances; its code tests them as classes, with isinstance)
    ignore = [GitRunContext]
    tags = {k: str(v) for k, v in resolve_tags(ignore=ignore).items()}  # type: ignore[arg-type]
    tags[TAG_SOURCE_NAME] = PROGRAM
    return tags | git_state(project_dir)


def git_state(directory: Path) -> dict[str, str]:
    """The commit, branch, remote URL (credentials stripped, as MLflow does) and dirty state
    (uncommitted changes to tracked files) of the git repository around `directory`; {} when
    there is none, no commit yet, or no git."""
    status = _git(directory, "status", "--porcelain=v2", "--branch", "--untracked-files=no")
    if status is None:
        return {}
    headers = dict(line[2:].split(" ", 1) for line in status.splitlines() if line.startswith("# "))
    commit = headers.get("branch.oid", "(initial)")
    if commit == "(initial)":
        return {}
    tags = {
        TAG_GIT_COMMIT: commit,
        TAG_GIT_DIRTY: str(any(not line.startswith("#") for line in status.splitlines())).lower(),
    }
    branch = headers.get("branch.head", "(detached)")
    if branch != "(detached)":
        tags[TAG_GIT_BRANCH] = branch
    remotes = _git(directory, "config", "--get-regexp", r"^remote\..*\.url$") or ""
    urls = [line.split(" ", 1)[1] for line in remotes.splitlines() if " " in line]
    if urls:
        tags[TAG_GIT_REPO_URL] = _without_credentials(urls[0])
    return tags


def _git(directory: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
        )
    except (OSError, subprocess.TimeoutExpired):  # no git, no such directory, a hung file system
        return None
    return out.stdout if out.returncode == 0 else None


def _without_credentials(url: str) -> str:
    """``https://user:token@host/repo`` → ``https://host/repo`` (a tag is readable by all)."""
    parts = urlsplit(url)
    if not parts.scheme or "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
