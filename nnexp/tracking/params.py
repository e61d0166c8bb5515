"""A run's params: the resolved config as dotted keys, sent within MLflow's limits."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from nnexp.tracking import limits

if TYPE_CHECKING:
    from mlflow import MlflowClient


def log_params(client: MlflowClient, run_id: str, params: Mapping[str, object]) -> None:
    from mlflow.entities import Param

    items = [Param(key, limits.param_value(value)) for key, value in params.items()]
    for chunk in _chunks(items, limits.PARAMS_PER_BATCH):
        client.log_batch(run_id, params=chunk, synchronous=True)


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
