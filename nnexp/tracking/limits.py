"""MLflow's size limits (the values of ``mlflow.utils.validation`` since MLflow 2; a test checks
them against the installed version) and how values are made to fit them."""

from __future__ import annotations

import json

PARAMS_PER_BATCH = 100  # params (and tags) per log_batch request
METRICS_PER_BATCH = 1000  # metrics per log_batch request
PARAM_VALUE_LENGTH = 6000
TAG_VALUE_LENGTH = 8000


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
