"""Name → dataset tables, and the two entry points that use them: validate_spec, load_dataset.

Each entry pairs a spec class (the config schema) with its loader and, where fields constrain
each other, a cross-field check. Per-field types and bounds come from the spec class itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, is_dataclass
from typing import Any

from nnexp.data import sklearn_sets as sk
from nnexp.data import specs
from nnexp.data.checks import check_fields
from nnexp.data.dataset import Dataset
from nnexp.data.errors import DatasetError, bad
from nnexp.data.files import check_file, load_file
from nnexp.data.spirals import load_spirals
from nnexp.data.split import check_fractions


@dataclass(frozen=True)
class Entry:
    spec: type[specs.DatasetSpec]
    load: Callable[[Any], Dataset]
    check: Callable[[Any], None] | None = None  # cross-field / filesystem checks, no loading
    # Where the rows come from, as a run records it (its MLflow dataset input's source); a
    # file's own path instead when empty.
    source: str = ""


SK = "sklearn.datasets."


_ENTRIES: dict[str, Entry] = {
    # two moons: scikit-learn's generator, draw for draw, without its import (nnexp.data.moons)
    "moons": Entry(specs.MoonsSpec, sk.load_moons, source=f"{SK}make_moons"),
    "circles": Entry(specs.CirclesSpec, sk.load_circles, source=f"{SK}make_circles"),
    "blobs": Entry(specs.BlobsSpec, sk.load_blobs, source=f"{SK}make_blobs"),
    "classification": Entry(
        specs.ClassificationSpec,
        sk.load_classification,
        sk.check_classification,
        source=f"{SK}make_classification",
    ),
    "regression": Entry(
        specs.RegressionSpec, sk.load_regression, sk.check_regression, f"{SK}make_regression"
    ),
    "friedman1": Entry(specs.Friedman1Spec, sk.load_friedman1, source=f"{SK}make_friedman1"),
    "spirals": Entry(specs.SpiralsSpec, load_spirals, source="nnexp.data.spirals.make_spirals"),
    "digits": Entry(specs.DigitsSpec, sk.load_digits, source=f"{SK}load_digits"),
    "iris": Entry(specs.IrisSpec, sk.load_iris, source=f"{SK}load_iris"),
    "wine": Entry(specs.WineSpec, sk.load_wine, source=f"{SK}load_wine"),
    "breast_cancer": Entry(
        specs.BreastCancerSpec, sk.load_breast_cancer, source=f"{SK}load_breast_cancer"
    ),
    "diabetes": Entry(specs.DiabetesSpec, sk.load_diabetes, source=f"{SK}load_diabetes"),
    "file": Entry(specs.FileSpec, load_file, check_file),
}

DATASETS: dict[str, type[specs.DatasetSpec]] = {name: e.spec for name, e in _ENTRIES.items()}


def validate_spec(spec: Any) -> None:
    """Every check that needs no data loaded: name, field types and bounds, fractions, cross-field
    rules and, for files, the path and the CSV header / NPZ keys. Raises DatasetError.

    ``spec`` is a spec dataclass or anything with the same attributes (e.g. an OmegaConf node).
    """
    entry, name = _entry(spec), spec.name
    if is_dataclass(spec) and not isinstance(spec, entry.spec):
        raise bad("name", name, f"needs a {entry.spec.__name__}, got {type(spec).__name__}")
    check_fields(spec, entry.spec)
    check_fractions(spec.val_fraction, spec.test_fraction)
    if entry.check is not None:
        entry.check(spec)


def load_dataset(spec: Any) -> Dataset:
    """Validate ``spec`` and load (or generate) the full, unsplit dataset."""
    validate_spec(spec)
    return _entry(spec).load(spec)


def dataset_source(spec: Any) -> str:
    """Where `spec`'s rows come from: a file's path (as configured), else the function that
    makes or loads them (``sklearn.datasets.make_moons``)."""
    return _entry(spec).source or str(spec.path)


def _entry(spec: Any) -> Entry:
    name = getattr(spec, "name", None)
    if not isinstance(name, str) or name not in _ENTRIES:
        raise DatasetError(
            f"dataset.name={name!r}: unknown dataset; allowed: {', '.join(sorted(_ENTRIES))}"
        )
    return _ENTRIES[name]
