"""MLflow's size limits (the values of ``mlflow.utils.validation`` since MLflow 2; a test checks
them against the installed version) and how values are made to fit them."""

from __future__ import annotations

import json
import posixpath
import re

PARAMS_PER_BATCH = 100  # params (and tags) per log_batch request
METRICS_PER_BATCH = 1000  # metrics per log_batch request
PARAM_VALUE_LENGTH = 6000
TAG_VALUE_LENGTH = 8000
KEY_LENGTH = 250  # a tag's (or param's, metric's) name
# The characters MLflow allows in a name (mlflow.utils.validation, outside Windows)
NAME_CHARACTERS = re.compile(r"^[/\w.\- :]+$")


def param_value(value: object) -> str:
    """A param as MLflow stores it: a string, lists as JSON (``[64, 32]``), cut to fit."""
    if isinstance(value, list | tuple):
        try:
            value = json.dumps(list(value))
        except TypeError:  # items JSON cannot encode: fall back to Python's repr
            value = str(list(value))
    return str(value)[:PARAM_VALUE_LENGTH]


def tag_value(value: object) -> str:
    return str(value)[:TAG_VALUE_LENGTH]


def name_problem(name: str) -> str | None:
    """Why MLflow would refuse `name` as a tag (param, metric) name, or None if it would not."""
    if not NAME_CHARACTERS.match(name):
        return (
            "names may only contain letters, digits, underscores, dashes, periods, spaces, "
            "colons and slashes"
        )
    if len(name) > KEY_LENGTH:
        return f"names may have at most {KEY_LENGTH} characters"
    if posixpath.normpath(name) != name or name.startswith(("/", "..")) or name == ".":
        return "names may not read as other paths (no leading /, no ./, ../ or //)"
    return None
