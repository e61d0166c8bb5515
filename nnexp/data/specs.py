"""Dataset specs: plain dataclasses that double as Hydra structured-config schemas.

Only types OmegaConf accepts are used (int, float, bool, str, ``X | None``, lists via
``default_factory``). Numeric bounds live next to the field, in its metadata (`nnexp.schema`'s
``bounded``), so one generic checker (``nnexp.data.checks`` → ``nnexp.schema``) validates every
spec and each message states the limit.
No ``from __future__ import annotations`` here: the checker and OmegaConf read real types.
"""

from dataclasses import dataclass, field

from nnexp.schema import bounded

MIN_SAMPLES = 10  # below this no train/val/test split is meaningful


@dataclass
class DatasetSpec:
    """Settings shared by every dataset: split fractions, standardization and the data seed."""

    name: str = "?"  # each subclass sets its own default, e.g. "moons"
    val_fraction: float = bounded(0.2, gt=0.0, lt=1.0)  # > 0: we validate every epoch
    test_fraction: float = bounded(0.2, ge=0.0, lt=1.0)  # 0 allowed: no test split
    standardize: bool = True  # fit on the training split only; false keeps raw features
    seed: int = bounded(0, ge=0, le=2**32 - 1)  # generator + split seed (not the trainer's)


# --- scikit-learn generators -------------------------------------------------------------------


@dataclass
class MoonsSpec(DatasetSpec):
    name: str = "moons"
    n_samples: int = bounded(1000, ge=MIN_SAMPLES)
    noise: float = bounded(0.2, ge=0.0)
    # Multiply feature `scale_feature` (0 or 1; None: neither) by `feature_scale`: an
    # unnormalized column, e.g. counts up to 1e6 (experiments/silent_nan.md).
    scale_feature: int | None = bounded(None, ge=0, le=1)
    feature_scale: float = bounded(1.0, gt=0.0)


@dataclass
class CirclesSpec(DatasetSpec):
    name: str = "circles"
    n_samples: int = bounded(1000, ge=MIN_SAMPLES)
    noise: float = bounded(0.1, ge=0.0)
    factor: float = bounded(0.5, ge=0.0, lt=1.0)  # inner radius / outer radius


@dataclass
class BlobsSpec(DatasetSpec):
    name: str = "blobs"
    n_samples: int = bounded(1000, ge=MIN_SAMPLES)
    n_features: int = bounded(2, ge=1)
    centers: int = bounded(3, ge=2)  # = number of classes
    cluster_std: float = bounded(1.0, ge=0.0)


@dataclass
class ClassificationSpec(DatasetSpec):
    name: str = "classification"
    n_samples: int = bounded(1000, ge=MIN_SAMPLES)
    n_features: int = bounded(20, ge=1)
    n_informative: int = bounded(5, ge=1)
    n_redundant: int = bounded(2, ge=0)
    n_classes: int = bounded(2, ge=2)
    n_clusters_per_class: int = bounded(2, ge=1)
    class_sep: float = bounded(1.0, gt=0.0)
    flip_y: float = bounded(0.01, ge=0.0, le=1.0)  # fraction of labels assigned at random
    weights: list[float] | None = None  # class proportions (n_classes or n_classes-1 values)


@dataclass
class RegressionSpec(DatasetSpec):
    name: str = "regression"
    n_samples: int = bounded(1000, ge=MIN_SAMPLES)
    n_features: int = bounded(10, ge=1)
    n_informative: int = bounded(5, ge=1)  # <= n_features
    n_targets: int = bounded(1, ge=1)  # > 1 gives y of shape (n, n_targets)
    noise: float = bounded(10.0, ge=0.0)
    bias: float = 0.0


@dataclass
class Friedman1Spec(DatasetSpec):
    name: str = "friedman1"
    n_samples: int = bounded(1000, ge=MIN_SAMPLES)
    n_features: int = bounded(10, ge=5)  # the formula uses the first 5; the rest are noise
    noise: float = bounded(1.0, ge=0.0)


# --- our own generator ---------------------------------------------------------------------------


@dataclass
class SpiralsSpec(DatasetSpec):
    name: str = "spirals"
    n_samples: int = bounded(1000, ge=MIN_SAMPLES)  # total, shared as evenly as possible
    n_classes: int = bounded(3, ge=2)  # one arm per class
    noise: float = bounded(0.2, ge=0.0)  # std of the angle noise, in radians
    turns: float = bounded(1.0, gt=0.0)  # revolutions each arm makes from centre to rim


# --- scikit-learn bundled sets (shipped with the package: no download) ---------------------------


@dataclass
class DigitsSpec(DatasetSpec):
    name: str = "digits"
    n_class: int = bounded(10, ge=2, le=10)  # keep digits 0..n_class-1 (2 gives a binary task)


@dataclass
class IrisSpec(DatasetSpec):
    name: str = "iris"


@dataclass
class WineSpec(DatasetSpec):
    name: str = "wine"


@dataclass
class BreastCancerSpec(DatasetSpec):
    name: str = "breast_cancer"


@dataclass
class DiabetesSpec(DatasetSpec):
    name: str = "diabetes"
    scaled: bool = True  # scikit-learn's pre-scaled features; false gives the raw measurements


# --- the user's own file ----------------------------------------------------------------------


@dataclass
class FileSpec(DatasetSpec):
    """A CSV (header row required) or NPZ file; ``path`` is relative to the working directory.

    ``task="auto"``: a numeric target whose values are all integers with at most
    ``AUTO_MAX_CLASSES`` (20) distinct values is a classification target (binary for 2 values,
    multiclass for more); any other numeric target is regression; a non-numeric (text) CSV
    target is classification.
    """

    name: str = "file"
    path: str = ""  # required
    target: str | None = None  # CSV: target column (None: "target"); NPZ: array key (None: "y")
    features: str = "X"  # NPZ: key of the feature array (CSV: every non-target column)
    task: str = "auto"  # auto | binary | multiclass | regression
    delimiter: str = ","  # CSV field separator, one character
    ignore: list[str] = field(default_factory=list)  # CSV columns to leave out (ids, free text)


AUTO_MAX_CLASSES = 20
FILE_TASKS = ("auto", "binary", "multiclass", "regression")
FILE_SUFFIXES = (".csv", ".npz")
DEFAULT_TARGET = {".csv": "target", ".npz": "y"}  # FileSpec.target when left as None
