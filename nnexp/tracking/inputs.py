"""A run's dataset as MLflow inputs (`MlflowClient.log_inputs`, what `mlflow.log_input` sends):
one `mlflow.data` NumPy dataset per split the run used — training, validation, test — under the
dataset's name, with MLflow's digest of the arrays, their shapes (the profile and schema), the
source (a file's path, or the generator: a code source naming it) and the task as a tag. The
runs table's Dataset column shows them; runs trained on the same rows share a digest.

Runs of one experiment share each dataset row, so parallel jobs of a sweep race to create it:
MLflow's SQL store looks the dataset up, then inserts it, and the loser of the race gets a
unique-constraint error. Its whole transaction is rolled back, so the call is simply sent again;
the second time the lookup finds the winner's row."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from nnexp.names import DATASET_CONTEXT_TAG, DATASET_TASK_TAG, TAG_SOURCE_NAME

if TYPE_CHECKING:
    from mlflow import MlflowClient


@dataclass(frozen=True)
class DatasetRecord:
    """What a run trained on: `splits` maps a context (training, validation, test) to its
    (features, targets) arrays as the network sees them."""

    name: str
    source: str  # a file's path, or the function that makes the rows
    task: str
    splits: Mapping[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


def log_dataset(client: MlflowClient, run_id: str, record: DatasetRecord) -> None:
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.numpy_dataset import from_numpy
    from mlflow.entities import Dataset, DatasetInput, InputTag

    source = (
        record.source
        if Path(record.source).is_file()
        else CodeDatasetSource(tags={TAG_SOURCE_NAME: record.source})
    )
    inputs = []
    for context, (features, targets) in record.splits.items():
        described = from_numpy(features, source=source, targets=targets, name=record.name)
        fields = described.to_dict()  # name, digest, source, source_type, schema, profile
        dataset = Dataset(
            name=fields["name"],
            digest=fields["digest"],
            source_type=fields["source_type"],
            source=fields["source"],
            schema=fields.get("schema"),
            profile=fields.get("profile"),
        )
        tags = [InputTag(DATASET_CONTEXT_TAG, context), InputTag(DATASET_TASK_TAG, record.task)]
        inputs.append(DatasetInput(dataset=dataset, tags=tags))
    _send(client, run_id, inputs)


RACE_ATTEMPTS = 5  # each lost race means another job's row is now committed: few are needed


def lost_a_race(exc: BaseException) -> bool:
    """Did the store refuse because a parallel job inserted the same row first? (sqlite and
    MySQL drivers name it IntegrityError; PostgreSQL's, UniqueViolation.)"""
    text = str(exc)
    return "IntegrityError" in text or "UniqueViolation" in text


def _send(client: MlflowClient, run_id: str, inputs: list) -> None:
    from mlflow.exceptions import MlflowException

    for attempt in range(1, RACE_ATTEMPTS + 1):
        try:
            client.log_inputs(run_id, datasets=inputs)
            return
        except MlflowException as exc:  # the store answered: only a lost race is worth a retry
            if attempt == RACE_ATTEMPTS or not lost_a_race(exc):
                raise
