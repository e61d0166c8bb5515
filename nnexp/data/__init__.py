"""nnexp.data — datasets as arrays: scikit-learn generators and bundled sets, our own spirals,
the user's CSV/NPZ files; stratified train/val/test splits; train-only standardization.

``prepare(spec, dtype)`` is the one call a runner needs. Imports NumPy only: scikit-learn is
imported lazily by the loaders that use it; Hydra, OmegaConf and MLflow never are.

specs (config schemas) · checks (field validation) · errors · dataset (Dataset, labels) ·
sklearn_sets · spirals · files (CSV/NPZ) · registry (DATASETS, validate_spec, load_dataset) ·
split (Splits, stratified split) · scaling (standardization) · prepare
"""

from nnexp.data.dataset import TASKS, Dataset, encode_labels
from nnexp.data.errors import DatasetError
from nnexp.data.prepare import prepare
from nnexp.data.registry import DATASETS, dataset_source, load_dataset, validate_spec
from nnexp.data.scaling import apply_standardization, fit_standardization
from nnexp.data.specs import (
    AUTO_MAX_CLASSES,
    BlobsSpec,
    BreastCancerSpec,
    CirclesSpec,
    ClassificationSpec,
    DatasetSpec,
    DiabetesSpec,
    DigitsSpec,
    FileSpec,
    Friedman1Spec,
    IrisSpec,
    MoonsSpec,
    RegressionSpec,
    SpiralsSpec,
    WineSpec,
)
from nnexp.data.spirals import make_spirals
from nnexp.data.split import Splits, split_indices

__all__ = [
    "AUTO_MAX_CLASSES",
    "DATASETS",
    "TASKS",
    "BlobsSpec",
    "BreastCancerSpec",
    "CirclesSpec",
    "ClassificationSpec",
    "Dataset",
    "DatasetError",
    "DatasetSpec",
    "DiabetesSpec",
    "DigitsSpec",
    "FileSpec",
    "Friedman1Spec",
    "IrisSpec",
    "MoonsSpec",
    "RegressionSpec",
    "SpiralsSpec",
    "Splits",
    "WineSpec",
    "apply_standardization",
    "dataset_source",
    "encode_labels",
    "fit_standardization",
    "load_dataset",
    "make_spirals",
    "prepare",
    "split_indices",
    "validate_spec",
]
