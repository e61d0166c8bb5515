"""Exact behaviour of nnexp.data: every error message in full (they are the user interface of a
bad override), the limits at their boundaries, the generators against scikit-learn's own calls,
the spirals against their formula, split sizes and stratification at the rounding edges, and
the standardization's constant-feature rule.

Written for the mutation run (`make mutate`, tests/mutants.md): the broader tests in
test_data.py match fragments of messages and check shapes; these pin the values down."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

from nnexp.data import (
    BlobsSpec,
    BreastCancerSpec,
    CirclesSpec,
    ClassificationSpec,
    Dataset,
    DatasetError,
    DiabetesSpec,
    DigitsSpec,
    FileSpec,
    Friedman1Spec,
    IrisSpec,
    MoonsSpec,
    RegressionSpec,
    SpiralsSpec,
    WineSpec,
    apply_standardization,
    encode_labels,
    fit_standardization,
    load_dataset,
    make_spirals,
    prepare,
    split_indices,
    validate_spec,
)
from nnexp.data.dataset import feature_names, label_name, task_for
from nnexp.data.errors import bad, preview
from nnexp.data.scaling import scale_column
from nnexp.data.split import check_fractions, split_sizes

sk = pytest.importorskip("sklearn.datasets")


def _raises(call, message: str):
    """`call()` raises DatasetError with exactly `message`."""
    with pytest.raises(DatasetError) as info:
        call()
    assert str(info.value) == message
    return info.value


def _csv(tmp_path: Path, text: str, name: str = "data.csv") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# --- errors.py, dataset.py ------------------------------------------------------------------


def test_bad_and_preview_format():
    error = bad("noise", -1, "must be >= 0")
    assert isinstance(error, DatasetError) and isinstance(error, ValueError)
    assert str(error) == "dataset.noise=-1: must be >= 0"
    names = [f"c{i}" for i in range(22)]
    assert preview(names[:20]) == ", ".join(repr(n) for n in names[:20])
    assert preview(names[:21]) == ", ".join(repr(n) for n in names[:20]) + ", ... (1 more)"
    assert preview(names, 3) == "'c0', 'c1', 'c2', ... (19 more)"
    assert preview([]) == ""


def test_dataset_helpers():
    assert task_for(2) == "binary" and task_for(3) == "multiclass"
    assert feature_names(3) == ["x0", "x1", "x2"]
    assert [label_name(v) for v in (3.0, np.float32(2.0), 2.5, 7, np.str_("cat"))] == [
        "3",
        "2",
        "2.5",
        "7",
        "cat",
    ]
    codes, classes = encode_labels(np.array([7.0, 3.0, 7.0, 3.0, 5.0]))
    assert codes.dtype == np.int64 and codes.tolist() == [2, 0, 2, 0, 1]
    assert classes == ["3", "5", "7"]
    ds = Dataset("d", np.zeros((2, 1)), np.array([0, 1]), "binary", ["a"], ["n", "y"])
    assert ds.is_classification and ds.n_classes == 2
    reg = Dataset("r", np.zeros((2, 1)), np.zeros(2), "regression", ["a"], None)
    assert not reg.is_classification and reg.n_classes is None


def test_dataset_refuses_inconsistent_arrays_with_exact_messages():
    X, y = np.zeros((3, 2)), np.array([0, 1, 0])
    _raises(
        lambda: Dataset("d", X, y, "clustering", ["a", "b"], ["0", "1"]),
        "dataset 'd': task 'clustering' is not one of ('binary', 'multiclass', 'regression')",
    )
    _raises(
        lambda: Dataset("d", X[:2], y, "binary", ["a", "b"], ["0", "1"]),
        "dataset 'd': X must be 2-D with one row per target; got X (2, 2), y (3,)",
    )
    _raises(
        lambda: Dataset("d", np.zeros(3), y, "binary", ["a"], ["0", "1"]),
        "dataset 'd': X must be 2-D with one row per target; got X (3,), y (3,)",
    )
    _raises(
        lambda: Dataset("d", X, y, "binary", ["a"], ["0", "1"]),
        "dataset 'd': 1 feature names for 2 features",
    )
    _raises(
        lambda: Dataset("d", X, y, "binary", ["a", "b"], None),
        "dataset 'd': classification needs 1-D y and classes",
    )
    _raises(
        lambda: Dataset("d", X, np.zeros((3, 2)), "multiclass", ["a", "b"], ["0", "1"]),
        "dataset 'd': classification needs 1-D y and classes",
    )
    Dataset("d", X, np.zeros((3, 2)), "regression", ["a", "b"], None)  # 2-D y is regression's


# --- checks.py: types and limits ------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (MoonsSpec(val_fraction=0.0), "dataset.val_fraction=0.0: must be > 0.0 and < 1.0"),
        (MoonsSpec(val_fraction=1.0), "dataset.val_fraction=1.0: must be > 0.0 and < 1.0"),
        (MoonsSpec(test_fraction=-0.1), "dataset.test_fraction=-0.1: must be >= 0.0 and < 1.0"),
        (MoonsSpec(test_fraction=1.0), "dataset.test_fraction=1.0: must be >= 0.0 and < 1.0"),
        (MoonsSpec(seed=2**32), "dataset.seed=4294967296: must be >= 0 and <= 4294967295"),
        (MoonsSpec(seed=-1), "dataset.seed=-1: must be >= 0 and <= 4294967295"),
        (MoonsSpec(n_samples=9), "dataset.n_samples=9: must be >= 10"),
        (MoonsSpec(n_samples=True), "dataset.n_samples=True: must be an integer"),
        (MoonsSpec(n_samples=10.0), "dataset.n_samples=10.0: must be an integer"),
        (MoonsSpec(noise=True), "dataset.noise=True: must be a finite number"),
        (MoonsSpec(noise=math.nan), "dataset.noise=nan: must be a finite number"),
        (MoonsSpec(noise=math.inf), "dataset.noise=inf: must be a finite number"),
        (MoonsSpec(noise="0.1"), "dataset.noise='0.1': must be a finite number"),
        (MoonsSpec(standardize=1), "dataset.standardize=1: must be true or false"),
        (
            MoonsSpec(name="moons", scale_feature=2),
            "dataset.scale_feature=2: must be >= 0 and <= 1",
        ),
        (MoonsSpec(scale_feature=-1), "dataset.scale_feature=-1: must be >= 0 and <= 1"),
        (MoonsSpec(feature_scale=0.0), "dataset.feature_scale=0.0: must be > 0.0"),
        (CirclesSpec(factor=1.0), "dataset.factor=1.0: must be >= 0.0 and < 1.0"),
        (DigitsSpec(n_class=11), "dataset.n_class=11: must be >= 2 and <= 10"),
        (DigitsSpec(n_class=1), "dataset.n_class=1: must be >= 2 and <= 10"),
        (FileSpec(path=3), "dataset.path=3: must be a string"),
        (FileSpec(path="x.csv", ignore="id"), "dataset.ignore='id': must be a list"),
        (FileSpec(path="x.csv", ignore=b"id"), "dataset.ignore=b'id': must be a list"),
        (FileSpec(path="x.csv", ignore=7), "dataset.ignore=7: must be a list"),
        (FileSpec(path="x.csv", ignore=["a", 2]), "dataset.ignore[1]=2: must be a string"),
        (FileSpec(path="x.csv", target=5), "dataset.target=5: must be a string"),
        (ClassificationSpec(weights=[0.5, "a"]), "dataset.weights[1]='a': must be a finite number"),
    ],
)
def test_field_checks_name_key_value_and_rule(spec, message):
    _raises(lambda: validate_spec(spec), message)


def test_field_limits_accept_their_boundaries_and_numeric_types():
    for spec in (
        MoonsSpec(n_samples=10, noise=0.0, seed=0, scale_feature=1, test_fraction=0.0),
        MoonsSpec(seed=2**32 - 1, scale_feature=0, feature_scale=1e-9),
        MoonsSpec(n_samples=np.int64(20), noise=1, val_fraction=0.5),  # numpy ints, int as float
        CirclesSpec(factor=0.0),
        DigitsSpec(n_class=2),
        DigitsSpec(n_class=10),
        ClassificationSpec(weights=None),
        ClassificationSpec(weights=(0.5, 0.5)),
    ):
        validate_spec(spec)


def test_a_missing_field_names_the_spec_and_its_default():
    class Partial:
        name = "moons"
        val_fraction, test_fraction, standardize, seed = 0.2, 0.2, True, 0

    _raises(
        lambda: validate_spec(Partial()),
        "dataset.n_samples is missing: dataset MoonsSpec needs it (default 1000)",
    )


def test_dataset_name_errors():
    names = (
        "blobs, breast_cancer, circles, classification, diabetes, digits, file, friedman1, "
        "iris, moons, regression, spirals, wine"
    )
    _raises(
        lambda: validate_spec(MoonsSpec(name="mooons")),
        f"dataset.name='mooons': unknown dataset; allowed: {names}",
    )

    class Nameless:
        pass

    _raises(
        lambda: load_dataset(Nameless()),
        f"dataset.name=None: unknown dataset; allowed: {names}",
    )
    _raises(
        lambda: validate_spec(MoonsSpec(name="circles")),
        "dataset.name='circles': needs a CirclesSpec, got MoonsSpec",
    )


# --- split.py -------------------------------------------------------------------------------


def test_fraction_messages_and_boundaries():
    _raises(
        lambda: check_fractions(0.0, 0.2),
        "dataset.val_fraction=0.0: must be > 0 and < 1 (we validate every epoch)",
    )
    _raises(
        lambda: check_fractions(1.0, 0.0),
        "dataset.val_fraction=1.0: must be > 0 and < 1 (we validate every epoch)",
    )
    _raises(lambda: check_fractions(0.5, -0.1), "dataset.test_fraction=-0.1: must be >= 0 and < 1")
    _raises(lambda: check_fractions(0.5, 1.0), "dataset.test_fraction=1.0: must be >= 0 and < 1")
    _raises(
        lambda: check_fractions(0.5, 0.5),
        "dataset.val_fraction=0.5: val_fraction + test_fraction (dataset.test_fraction=0.5) must "
        "be < 1 to leave rows for training",
    )
    check_fractions(0.5, 0.0)
    check_fractions(0.5, 0.49)


def test_split_sizes_round_half_up_and_name_empty_splits():
    assert split_sizes(10, 0.25, 0.15).tolist() == [5, 3, 2]  # 2.5 -> 3, 1.5 -> 2
    assert split_sizes(10, 0.35, 0.05).tolist() == [5, 4, 1]  # 3.5 -> 4, 0.5 -> 1
    assert split_sizes(10, 0.2, 0.0).tolist() == [8, 2, 0]
    assert split_sizes(3, 0.34, 0.33).tolist() == [1, 1, 1]
    assert split_sizes(10, 0.2, 0.2).dtype == np.int64
    too_small = "of 4 rows leaves an empty split; use a larger dataset or fraction"
    _raises(lambda: split_sizes(4, 0.1, 0.3), f"dataset.val_fraction=0.1: {too_small}")
    _raises(
        lambda: split_sizes(4, 0.3, 0.1),
        f"dataset.test_fraction=0.1: {too_small} (or test_fraction=0)",
    )
    _raises(
        lambda: split_sizes(4, 0.5, 0.4),
        f"dataset.val_fraction=0.5: with test_fraction=0.4 {too_small}",
    )


def test_split_sizes_round_exactly_half_upwards():
    assert split_sizes(10, 0.25, 0.25).tolist() == [4, 3, 3]  # 2.5 rounds up, not to even
    assert split_sizes(2, 0.25, 0.0).tolist() == [1, 1, 0]  # 0.5 rounds up


def test_stratified_split_counts_exactly_and_the_rare_class_message():
    y = np.repeat([0, 1, 2], [10, 6, 4])
    train, val, test = split_indices(y, 0.25, 0.25, seed=0)
    assert (len(train), len(val), len(test)) == (10, 5, 5)
    assert np.bincount(y[train]).tolist() == [5, 3, 2]
    assert np.bincount(y[val], minlength=3).sum() == 5 and np.bincount(y[test]).sum() == 5
    assert sorted(np.concatenate([train, val, test]).tolist()) == list(range(20))
    for part in (val, test):
        assert np.all(np.abs(np.bincount(y[part], minlength=3) - [2.5, 1.5, 1.0]) < 1)
    same = split_indices(y, 0.25, 0.25, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(same, (train, val, test), strict=True))
    rng_order = np.random.default_rng(0).permutation(20)
    assert [i for i in rng_order if i in set(train.tolist())] == train.tolist()  # perm order
    # a class of need = ceil(20 / 10) = 2 rows reaches training; 1 row does not
    ok = np.repeat([0, 1], [18, 2])
    assert 1 in ok[split_indices(ok, 0.25, 0.25, seed=1)[0]]
    rare = np.repeat([0, 1, 2], [18, 1, 1])
    _raises(
        lambda: split_indices(rare, 0.25, 0.25, seed=0, classes=["a", "b", "c"]),
        "dataset: class 'b' has 1 row(s), too few to stratify with dataset.val_fraction=0.25 "
        "and dataset.test_fraction=0.25: each class needs at least 2 so it reaches the "
        "training split (2 class(es) too small); drop or merge rare classes, or lower the "
        "fractions",
    )
    error = _raises(
        lambda: split_indices(rare, 0.25, 0.25, seed=0),
        "dataset: class '1' has 1 row(s), too few to stratify with dataset.val_fraction=0.25 "
        "and dataset.test_fraction=0.25: each class needs at least 2 so it reaches the "
        "training split (2 class(es) too small); drop or merge rare classes, or lower the "
        "fractions",
    )
    assert error is not None


def test_regression_split_is_one_stratum_of_n_rows():
    train, val, test = split_indices(None, 0.2, 0.1, seed=4, n=50)
    assert (len(train), len(val), len(test)) == (35, 10, 5)
    perm = np.random.default_rng(4).permutation(50)
    assert np.concatenate([train, val, test]).size == 50
    assert train.tolist() == [i for i in perm if i in set(train.tolist())]


# --- scaling.py, prepare.py -----------------------------------------------------------------


def test_standardization_exactly_and_the_constant_feature_rules():
    X = np.array([[1.0, 5.0, 1e6], [3.0, 5.0, 1e6 + 2e-10], [5.0, 5.0, 1e6]])
    mean, scale = fit_standardization(X)
    np.testing.assert_array_equal(mean, X.mean(axis=0))
    # feature 2 varies by ~2e-10 around 1e6: below 10 eps |mean|, rounding rather than signal
    assert 0 < X[:, 2].std() < 10 * np.finfo(float).eps * 1e6
    np.testing.assert_allclose(scale, [math.sqrt(8 / 3), 1.0, 1.0], rtol=1e-15)
    out = apply_standardization(X, mean, scale)
    np.testing.assert_allclose(out[:, 0], [-2, 0, 2] / np.sqrt(8 / 3), rtol=1e-15)
    assert out is not X and X[0, 0] == 1.0
    inplace = X.copy()
    assert apply_standardization(inplace, mean, scale, out=inplace) is inplace
    np.testing.assert_array_equal(inplace, out)
    small = np.array([[0.0], [3e-9]])  # tiny but real: kept (its mean is tiny too)
    np.testing.assert_allclose(fit_standardization(small)[1], [1.5e-9], rtol=1e-12)
    m32, s32 = fit_standardization(X.astype(np.float32))
    assert m32.dtype == s32.dtype == np.float32


def test_scale_column_copies_and_checks_the_index():
    X = np.ones((2, 3))
    scaled = scale_column(X, 2, 10.0)
    assert scaled[:, 2].tolist() == [10.0, 10.0] and X[0, 2] == 1.0
    assert scale_column(X, 0, 3.0)[:, 0].tolist() == [3.0, 3.0]
    for index in (3, -1):
        _raises(
            lambda index=index: scale_column(X, index, 2.0),
            f"dataset.scale_feature={index}: must be a feature index in [0, 2]",
        )


def test_prepare_standardizes_every_split_with_the_training_statistics():
    spec = MoonsSpec(n_samples=50, seed=3)
    raw = prepare(MoonsSpec(n_samples=50, seed=3, standardize=False), dtype=np.float64)
    std = prepare(spec, dtype=np.float64)
    mean, scale = raw.X_train.mean(axis=0), raw.X_train.std(axis=0)
    np.testing.assert_allclose(std.mean, mean, rtol=1e-14)
    np.testing.assert_allclose(std.scale, scale, rtol=1e-14)
    for name in ("X_train", "X_val", "X_test"):
        np.testing.assert_allclose(getattr(std, name), (getattr(raw, name) - mean) / scale)
    assert raw.mean is None and raw.scale is None
    assert std.feature_names == ["x0", "x1"] and std.classes == ["0", "1"]
    assert std.task == "binary" and std.n_features == 2 and std.n_classes == 2
    f32 = prepare(spec)  # float32 by default
    assert f32.X_train.dtype == np.float32 and f32.y_train.dtype == np.int64


def test_prepare_refuses_integer_dtypes_and_overflow_with_exact_messages(tmp_path):
    _raises(
        lambda: prepare(MoonsSpec(), dtype=np.int32),
        "dtype=int32: must be a floating type (float32 or float64)",
    )
    path = _csv(tmp_path, "a,target\n" + "".join(f"{i}e300,{i % 2}\n" for i in range(20)))
    _raises(
        lambda: prepare(FileSpec(path=path)),
        "dtype=float32: the features overflow it (largest magnitude inf); use float64 or "
        "rescale the data",
    )
    path = _csv(tmp_path, "a,target\n" + "".join(f"{i},{i}e300\n" for i in range(30)), "r.csv")
    _raises(
        lambda: prepare(FileSpec(path=path, task="regression")),
        "dtype=float32: the targets overflow it (largest magnitude inf); use float64 or "
        "rescale the data",
    )
    assert prepare(FileSpec(path=path, task="regression"), dtype=np.float64).task == "regression"


def test_prepare_casts_regression_targets_to_the_dtype():
    s = prepare(RegressionSpec(n_samples=20, n_features=3, n_informative=2))
    assert s.y_train.dtype == np.float32 and s.n_classes is None and s.classes is None


# --- generators against scikit-learn -----------------------------------------------------------


def test_generators_pass_every_setting_to_scikit_learn():
    def same(spec, X, y):
        ds = load_dataset(spec)
        np.testing.assert_array_equal(ds.X, X)
        np.testing.assert_array_equal(ds.y, y)
        return ds

    ds = same(
        CirclesSpec(n_samples=40, noise=0.05, factor=0.3, seed=2),
        *sk.make_circles(n_samples=40, noise=0.05, factor=0.3, random_state=2),
    )
    assert (ds.name, ds.classes, ds.feature_names) == ("circles", ["0", "1"], ["x0", "x1"])
    ds = same(
        BlobsSpec(n_samples=30, n_features=3, centers=4, cluster_std=0.5, seed=1),
        *sk.make_blobs(n_samples=30, n_features=3, centers=4, cluster_std=0.5, random_state=1),
    )
    assert ds.classes == ["0", "1", "2", "3"] and ds.feature_names == ["x0", "x1", "x2"]
    kwargs = dict(
        n_samples=40,
        n_features=6,
        n_informative=3,
        n_redundant=1,
        n_classes=3,
        n_clusters_per_class=1,
        weights=[0.5, 0.3],
        flip_y=0.0,
        class_sep=2.0,
    )
    ds = same(
        ClassificationSpec(**kwargs, seed=5),
        *sk.make_classification(**kwargs, random_state=5),
    )
    assert ds.classes == ["0", "1", "2"] and len(ds.feature_names) == 6
    kwargs = dict(n_samples=30, n_features=4, n_informative=2, n_targets=2, bias=3.0, noise=0.5)
    ds = same(RegressionSpec(**kwargs, seed=7), *sk.make_regression(**kwargs, random_state=7))
    assert ds.task == "regression" and ds.classes is None
    ds = same(
        Friedman1Spec(n_samples=25, n_features=6, noise=0.3, seed=8),
        *sk.make_friedman1(n_samples=25, n_features=6, noise=0.3, random_state=8),
    )
    assert ds.feature_names == [f"x{i}" for i in range(6)] and ds.name == "friedman1"


def test_bundled_sets_keep_their_names_and_variants():
    digits = load_dataset(DigitsSpec(n_class=3))
    ref = sk.load_digits(n_class=3)
    np.testing.assert_array_equal(digits.X, ref.data)
    assert digits.classes == ["0", "1", "2"] and digits.name == "digits"
    assert digits.feature_names == [str(f) for f in ref.feature_names]
    wine, cancer = load_dataset(WineSpec()), load_dataset(BreastCancerSpec())
    assert wine.classes == ["class_0", "class_1", "class_2"]
    assert cancer.classes == ["malignant", "benign"] and cancer.task == "binary"
    assert load_dataset(IrisSpec()).feature_names[0] == "sepal length (cm)"
    raw = load_dataset(DiabetesSpec(scaled=False))
    np.testing.assert_array_equal(raw.X, sk.load_diabetes(scaled=False).data)
    scaled = load_dataset(DiabetesSpec())
    np.testing.assert_array_equal(scaled.X, sk.load_diabetes(scaled=True).data)
    assert scaled.feature_names == ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            ClassificationSpec(n_features=6, n_informative=5, n_redundant=2),
            "dataset.n_features=6: must be >= n_informative + n_redundant = 5 + 2",
        ),
        (
            ClassificationSpec(n_informative=2, n_classes=3, n_clusters_per_class=2),
            "dataset.n_informative=2: 2**n_informative must be >= n_classes * "
            "n_clusters_per_class = 6",
        ),
        (
            ClassificationSpec(n_classes=3, weights=[0.5, 0.25, 0.25, 0.0]),
            "dataset.weights=[0.5, 0.25, 0.25, 0.0]: must be 3 (or 2) class proportions, "
            "each > 0 and < 1",
        ),
        (
            ClassificationSpec(weights=[1.0]),
            "dataset.weights=[1.0]: must be 2 (or 1) class proportions, each > 0 and < 1",
        ),
        (
            ClassificationSpec(weights=[0.0, 1.0]),
            "dataset.weights=[0.0, 1.0]: must be 2 (or 1) class proportions, each > 0 and < 1",
        ),
        (
            ClassificationSpec(weights=[0.5, 0.49]),
            "dataset.weights=[0.5, 0.49]: must sum to 1 (or to < 1 with 1 values)",
        ),
        (
            ClassificationSpec(n_classes=3, weights=[0.6, 0.4]),
            "dataset.weights=[0.6, 0.4]: must sum to 1 (or to < 1 with 2 values)",
        ),
        (
            RegressionSpec(n_features=3, n_informative=4),
            "dataset.n_informative=4: must be <= n_features=3",
        ),
    ],
)
def test_cross_field_checks_exact_messages(spec, message):
    _raises(lambda: validate_spec(spec), message)


def test_cross_field_checks_accept_their_boundaries():
    for spec in (
        ClassificationSpec(n_features=7, n_informative=5, n_redundant=2),
        ClassificationSpec(n_informative=2, n_classes=2, n_clusters_per_class=2),  # 4 <= 2**2
        ClassificationSpec(weights=[0.3]),  # n - 1 values summing to < 1
        ClassificationSpec(weights=[0.5, 0.5 + 1e-7]),  # sums to 1 within 1e-6
        ClassificationSpec(n_classes=3, weights=[0.5, 0.49]),
        RegressionSpec(n_features=3, n_informative=3),
    ):
        validate_spec(spec)


# --- spirals, moons ---------------------------------------------------------------------------


def test_spirals_follow_their_formula():
    X, y = make_spirals(7, 3, 0.1, 1.5, seed=4)
    assert y.tolist() == [0, 0, 0, 1, 1, 2, 2] and y.dtype == np.int64
    r = np.concatenate([np.linspace(0, 1, 3), np.linspace(0, 1, 2), np.linspace(0, 1, 2)])
    noise = np.random.default_rng(4).standard_normal(7)
    angle = 2 * np.pi * (1.5 * r + y / 3) + 0.1 * noise
    np.testing.assert_allclose(X, np.column_stack([r * np.sin(angle), r * np.cos(angle)]))
    ds = load_dataset(SpiralsSpec(n_samples=12, n_classes=4, noise=0.0, turns=0.5, seed=1))
    assert ds.classes == ["0", "1", "2", "3"] and ds.feature_names == ["x0", "x1"]
    assert ds.task == "multiclass" and ds.name == "spirals"
    X0, _ = make_spirals(12, 4, 0.0, 0.5, seed=1)
    np.testing.assert_array_equal(ds.X, X0)


def test_moons_loader_scales_the_chosen_feature_only():
    plain = load_dataset(MoonsSpec(n_samples=20, noise=0.1, seed=2))
    ref = sk.make_moons(n_samples=20, noise=0.1, random_state=2)
    np.testing.assert_array_equal(plain.X, ref[0])
    assert plain.name == "moons" and plain.classes == ["0", "1"]
    scaled = load_dataset(MoonsSpec(n_samples=20, noise=0.1, seed=2, scale_feature=1))
    np.testing.assert_array_equal(scaled.X, plain.X)  # feature_scale 1.0 by default
    big = load_dataset(MoonsSpec(n_samples=20, noise=0.1, seed=2, scale_feature=1, feature_scale=4))
    np.testing.assert_array_equal(big.X[:, 1], plain.X[:, 1] * 4)
    np.testing.assert_array_equal(big.X[:, 0], plain.X[:, 0])


# --- files.py ---------------------------------------------------------------------------------


GOOD = "a,b,target\n" + "".join(f"{i},{i % 5},{i % 2}\n" for i in range(20))


def test_path_errors_exactly(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _raises(
        lambda: validate_spec(FileSpec()),
        "dataset.path='': is required: the CSV or NPZ file to load (dataset.path=...)",
    )
    _raises(
        lambda: validate_spec(FileSpec(path="nope.csv")),
        f"dataset.path='nope.csv': no such file (relative paths start at {tmp_path})",
    )
    (tmp_path / "dir.csv").mkdir()
    _raises(
        lambda: validate_spec(FileSpec(path="dir.csv")),
        "dataset.path='dir.csv': is a directory, not a file",
    )
    Path("data.txt").write_text(GOOD)
    _raises(
        lambda: validate_spec(FileSpec(path="data.txt")),
        "dataset.path='data.txt': unsupported file type; allowed: .csv, .npz",
    )
    Path("empty.csv").write_text("")
    _raises(
        lambda: validate_spec(FileSpec(path="empty.csv")),
        "dataset.path='empty.csv': the file is empty",
    )
    Path("UPPER.CSV").write_text(GOOD)
    assert load_dataset(FileSpec(path="UPPER.CSV")).X.shape == (20, 2)  # suffix in any case
    monkeypatch.setenv("HOME", str(tmp_path))
    assert load_dataset(FileSpec(path="~/UPPER.CSV")).X.shape == (20, 2)


@pytest.mark.parametrize(
    ("text", "options", "message"),
    [
        ("\n \n", {}, "dataset.path={path!r}: has no header row (the file is blank)"),
        ("a,b,target\n", {}, "dataset.path={path!r}: has a header but no data rows"),
        (
            "a, ,target\n1,2,0\n",
            {},
            "dataset.path={path!r}: header column 2 has no name (a pandas index? write it "
            "with index=False)",
        ),
        ("a,b,a\n1,2,0\n", {"target": "b"}, "dataset.path={path!r}: header names column 'a' twice"),
        (
            GOOD,
            {"target": "label"},
            "dataset.target='label': no such column; the header has: 'a', 'b', 'target'",
        ),
        (
            GOOD,
            {"ignore": ["a", "zzz"]},
            "dataset.ignore=['a', 'zzz']: no column 'zzz'; the header has: 'a', 'b', 'target'",
        ),
        (
            "a,target\n1,0\n2,1\n",
            {"ignore": ["a"]},
            "dataset.path={path!r}: has no feature columns besides target 'target'",
        ),
        (
            GOOD,
            {"delimiter": ";;"},
            r"dataset.delimiter=';;': must be one character, e.g. ',' or ';' (or '\t')",
        ),
        (
            GOOD,
            {"delimiter": ""},
            r"dataset.delimiter='': must be one character, e.g. ',' or ';' (or '\t')",
        ),
        (
            GOOD,
            {"task": "classify"},
            "dataset.task='classify': must be one of auto, binary, multiclass, regression",
        ),
        (
            "a,b,target\n1,2,0\n3,4\n",
            {},
            "dataset.path={path!r}: line 3 has 2 fields but the header has 3 (delimiter ',')",
        ),
        (
            "a,b,target\n1,2,0\n3,x y,1\n",
            {},
            "dataset.path={path!r}: line 3, column 'b': 'x y' is not a number; feature columns "
            "must be numeric (list text columns in dataset.ignore)",
        ),
        (
            "a,b,target\n1,2,0\n\n3, ,1\n",
            {},
            "dataset.path={path!r}: line 4, column 'b': an empty cell; feature columns must be "
            "numeric (list text columns in dataset.ignore)",
        ),
        ("a,target\n1,0\n2, \n", {}, "dataset.target='target': line 3: empty target cell"),
        (
            "a,target\n1,0\n2,x\n",
            {"task": "regression"},
            "dataset.target='target': line 3: 'x' is not a number; task=regression needs "
            "numeric targets",
        ),
        (
            "a,b,target\n1,nan,0\n2,inf,1\n3,4,0\n4,5,1\n",
            {},
            "dataset.path={path!r}: 2 NaN/inf feature values in column(s) \"'b' (2, first at "
            'line 2)"; clean or impute the data first',
        ),
        (
            "a,target\n1,0\n2,1\n3,nan\n",
            {"task": "regression"},
            "dataset.target='target': 1 NaN/inf target values, first at line 4",
        ),
        (
            "a,target\n1,4\n2,4\n",
            {},
            "dataset.target='target': has a single class ('4'); classification needs 2+",
        ),
        (
            "a,target\n1,0\n2,1\n3,2\n",
            {"task": "binary"},
            "dataset.task='binary': needs exactly 2 classes; 'target' has 3 classes ('0', '1', "
            "'2'); use task=multiclass or task=auto",
        ),
    ],
)
def test_csv_errors_exactly(tmp_path, text, options, message):
    path = _csv(tmp_path, text)
    _raises(lambda: load_dataset(FileSpec(path=path, **options)), message.format(path=path))


def test_a_fractional_label_is_named_by_its_value(tmp_path):
    path = _csv(tmp_path, "a,target\n1,0\n2,1.5\n")
    error = _raises_containing(FileSpec(path=path, task="multiclass"))
    assert error.startswith("dataset.target='target': line 3 has label ")
    assert error.endswith(
        ", not an integer; task=multiclass needs integer class labels (or use task=regression)"
    )
    assert "1.5" in error


def test_a_fractional_label_is_printed_as_the_number_in_the_file(tmp_path):
    path = _csv(tmp_path, "a,target\n1,0\n2,1.5\n")
    error = _raises_containing(FileSpec(path=path, task="binary"))
    assert "has label 1.5, not an integer" in error


def _raises_containing(spec) -> str:
    with pytest.raises(DatasetError) as info:
        load_dataset(spec)
    return str(info.value)


def test_csv_reading_details(tmp_path):
    # spaces around names and labels, quoted fields, a tab given as backslash-t
    path = _csv(tmp_path, " a \t target \n1\t yes \n2\tno\n3\t yes\n")
    ds = load_dataset(FileSpec(path=path, delimiter="\\t"))
    assert ds.feature_names == ["a"] and ds.classes == ["no", "yes"] and ds.y.tolist() == [1, 0, 1]
    # NumPy's cast parses what float() does: underscores, Unicode digits, padding
    path = _csv(tmp_path, "a,target\n1_000,0\n2,1\n", "u.csv")
    np.testing.assert_array_equal(load_dataset(FileSpec(path=path)).X[:, 0], [1000.0, 2.0])
    path = _csv(tmp_path, "a,b,target\n1,2,0\n3,4,1\n", "t.csv")
    ds = load_dataset(FileSpec(path=path, target="a"))
    assert ds.feature_names == ["b", "target"] and ds.task == "binary"
    huge = _csv(tmp_path, "a,target\n1,0\n2," + "9" * 200_000 + "\n", "q.csv")
    _raises(
        lambda: load_dataset(FileSpec(path=huge)),
        f"dataset.path={huge!r}: line 3 is not valid CSV: field larger than field limit (131072)",
    )
    latin = tmp_path / "latin.csv"
    latin.write_bytes("a,target\n1,caf\xe9\n".encode("latin-1"))
    _raises(
        lambda: load_dataset(FileSpec(path=str(latin))),
        f"dataset.path={str(latin)!r}: is not a UTF-8 text file",
    )


def test_csv_task_rules_at_their_edges(tmp_path):
    def load(values, task="auto", name="t.csv"):
        rows = "".join(f"{i},{v}\n" for i, v in enumerate(values))
        return load_dataset(FileSpec(path=_csv(tmp_path, "a,target\n" + rows, name), task=task))

    assert load(list(range(20)) * 2).task == "multiclass"  # exactly 20 distinct integers
    assert load(list(range(21)) * 2, name="u.csv").task == "regression"  # 21
    assert load(["b", "a"] * 15, name="v.csv").task == "binary"  # text: always classes
    text = load([f"c{i}" for i in range(25)] * 2, name="w.csv")
    assert text.task == "multiclass" and text.n_classes == 25  # text is never regression
    assert load([0, 1] * 5, task="binary", name="x.csv").task == "binary"
    assert load([0, 1, 2] * 5, task="multiclass", name="y.csv").classes == ["0", "1", "2"]
    reg = load([1, 2] * 5, task="regression", name="z.csv")
    assert reg.y.dtype == np.float64 and reg.y.tolist()[:2] == [1.0, 2.0]
    ok = load(["a", "b"] * 5, task="binary", name="ok.csv")
    assert ok.classes == ["a", "b"]


def test_npz_errors_exactly(tmp_path):
    path = tmp_path / "d.npz"
    p = str(path)
    spec = FileSpec(path=p)

    def fails(message, **arrays):
        np.savez(path, **arrays)
        _raises(lambda: load_dataset(spec), message.format(path=p))

    fails(
        "dataset.features='X': no such array in the .npz; it holds: 'data', 'y'",
        data=np.zeros((4, 2)),
        y=np.zeros(4),
    )
    fails(
        "dataset.target='y': no such array in the .npz; it holds: 'X'",
        X=np.zeros((4, 2)),
    )
    fails(
        "dataset.features='X': has shape (4,); must be 2-D (samples, features)",
        X=np.zeros(4),
        y=np.zeros(4),
    )
    fails(
        "dataset.features='X': has dtype <U1; must be numeric",
        X=np.full((4, 2), "a"),
        y=np.zeros(4),
    )
    fails(
        "dataset.target='y': has shape (3,) but 'X' has shape (4, 2); need one target (row) "
        "per sample",
        X=np.zeros((4, 2)),
        y=np.zeros(3),
    )
    fails(
        "dataset.target='y': has shape (4, 1, 1) but 'X' has shape (4, 2); need one target "
        "(row) per sample",
        X=np.zeros((4, 2)),
        y=np.zeros((4, 1, 1)),
    )
    fails(
        "dataset.target='y': has dtype complex128; must be numeric or text labels",
        X=np.zeros((4, 2)),
        y=np.zeros(4, dtype=complex),
    )
    fails(
        "dataset.features='X': has shape (4, 0); needs rows and columns",
        X=np.zeros((4, 0)),
        y=np.zeros(4),
    )
    fails(
        "dataset.features='X': has shape (0, 2); needs rows and columns",
        X=np.zeros((0, 2)),
        y=np.zeros(0),
    )
    np.savez(path, X=np.zeros((4, 2)), y=np.zeros((4, 2)))
    for task in ("binary", "multiclass"):
        _raises(
            lambda task=task: load_dataset(FileSpec(path=p, task=task)),
            f"dataset.task={task!r}: needs a single target column; 'y' has 2",
        )
    np.save(tmp_path / "single.npy", np.zeros(3))
    (tmp_path / "single.npy").rename(tmp_path / "single.npz")
    _raises(
        lambda: load_dataset(FileSpec(path=str(tmp_path / "single.npz"))),
        f"dataset.path={str(tmp_path / 'single.npz')!r}: holds a single .npy array, not an .npz "
        "archive (np.savez)",
    )
    np.savez(path, X=np.zeros((4, 2)), y=np.array([{}] * 4, dtype=object))
    with pytest.raises(DatasetError, match=rf"^dataset\.path={re.escape(repr(p))}: cannot be read"):
        load_dataset(spec)
    path.write_text("not a zip")
    with pytest.raises(DatasetError, match=rf"^dataset\.path={re.escape(repr(p))}: is not a read"):
        load_dataset(spec)


def test_npz_reading_details(tmp_path):
    path = tmp_path / "d.npz"
    X = np.arange(12).reshape(6, 2)
    np.savez(path, X=X, y=np.array([[1.5], [2.5], [0.5], [1.0], [2.0], [3.5]]))
    ds = load_dataset(FileSpec(path=str(path)))
    assert ds.task == "regression" and ds.y.shape == (6,)  # one target column becomes 1-D
    assert ds.X.dtype == np.float64 and ds.feature_names == ["x0", "x1"]
    np.savez(path, X=X, y=np.array(["b", "a"] * 3), feature_names=np.array(["p", "q", "r"]))
    ds = load_dataset(FileSpec(path=str(path)))
    assert ds.classes == ["a", "b"] and ds.feature_names == ["x0", "x1"]  # names of wrong size
    np.savez(path, X=X, y=np.array([1, 0] * 3, dtype=np.uint8), feature_names=np.array([1, 2]))
    ds = load_dataset(FileSpec(path=str(path)))
    assert ds.task == "binary" and ds.feature_names == ["1", "2"]
    np.savez(path, X=X.astype(bool), y=np.array([0, 1] * 3))
    assert load_dataset(FileSpec(path=str(path))).X.dtype == np.float64
    np.savez(path, X=np.full((6, 2), np.inf), y=np.zeros(6))
    _raises(
        lambda: load_dataset(FileSpec(path=str(path))),
        f"dataset.path={str(path)!r}: 12 NaN/inf feature values in column(s) \"'x0' (6, first "
        'at row 0)", "\'x1\' (6, first at row 0)"; clean or impute the data first',
    )
    y = np.zeros((6, 2))
    y[4, 1] = np.nan
    np.savez(path, X=X, y=y)
    _raises(
        lambda: load_dataset(FileSpec(path=str(path))),
        "dataset.target='y': 1 NaN/inf target values, first at row 4",
    )


def test_generated_sets_are_named_after_their_spec():
    specs = (
        BlobsSpec(n_samples=20),
        ClassificationSpec(n_samples=20),
        RegressionSpec(n_samples=20),
        DiabetesSpec(),
        Friedman1Spec(n_samples=20),
    )
    assert [load_dataset(spec).name for spec in specs] == [
        "blobs", "classification", "regression", "diabetes", "friedman1",
    ]  # fmt: skip


def test_classification_cluster_count_is_bounded_by_two_to_the_informative_features():
    validate_spec(ClassificationSpec(n_informative=3, n_classes=8, n_clusters_per_class=1))  # 8
    _raises(
        lambda: validate_spec(ClassificationSpec(n_informative=3, n_classes=9)),
        "dataset.n_informative=3: 2**n_informative must be >= n_classes * n_clusters_per_class "
        "= 18",
    )
    _raises(
        lambda: validate_spec(ClassificationSpec(n_classes=3, weights=[0.0, 0.5])),
        "dataset.weights=[0.0, 0.5]: must be 3 (or 2) class proportions, each > 0 and < 1",
    )


def test_a_binary_task_on_many_classes_lists_ten_of_them(tmp_path):
    rows = "".join(f"{i},{i % 12}\n" for i in range(36))
    path = _csv(tmp_path, "a,target\n" + rows)
    names = ", ".join(repr(str(k)) for k in range(10))
    _raises(
        lambda: load_dataset(FileSpec(path=path, task="binary")),
        f"dataset.task='binary': needs exactly 2 classes; 'target' has 12 classes ({names}, ... "
        "(2 more)); use task=multiclass or task=auto",
    )


def test_nan_columns_are_previewed_five_at_most(tmp_path):
    header = ",".join(f"c{j}" for j in range(7)) + ",target\n"
    rows = "".join(",".join(["nan"] * 7) + f",{i % 2}\n" for i in range(4))
    path = _csv(tmp_path, header + rows)
    parts = ", ".join(repr(f"'c{j}' (4, first at line 2)") for j in range(5))
    _raises(
        lambda: load_dataset(FileSpec(path=path)),
        f"dataset.path={path!r}: 28 NaN/inf feature values in column(s) {parts}, ... (2 more); "
        "clean or impute the data first",
    )


def test_a_quoted_line_break_in_a_crlf_file_is_read_as_written(tmp_path):
    path = tmp_path / "crlf.csv"
    path.write_bytes(b'a,target\r\n1,"x\r\ny"\r\n2,z\r\n3,"x\r\ny"\r\n4,z\r\n')
    ds = load_dataset(FileSpec(path=str(path)))
    assert ds.classes == ["x\r\ny", "z"] and ds.y.tolist() == [0, 1, 0, 1]


def test_standardization_accumulates_in_float64_and_keeps_float32():
    rng = np.random.default_rng(0)
    X = (rng.standard_normal((10_000, 6)) * 1000 + 12345.678).astype(np.float32)
    mean, scale = fit_standardization(X)
    expected_mean = X.mean(axis=0, dtype=np.float64)
    np.testing.assert_array_equal(mean, expected_mean.astype(np.float32))
    centred = X - expected_mean.astype(np.float32)
    expected_scale = np.sqrt(np.mean(np.square(centred), axis=0, dtype=np.float64))
    np.testing.assert_array_equal(scale, expected_scale.astype(np.float32))
    out = apply_standardization(X, mean, scale)  # no `out`: still float32, not upcast
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, (X - mean) / scale)


def test_the_constant_feature_threshold_is_ten_epsilons_of_the_mean_in_the_data_dtype():
    eps = np.finfo(np.float64).eps
    u = eps / 2
    # centred exactly ±11 eps around a mean of exactly 1: a scale of 11 eps is kept...
    eleven = np.array([[1 - 22 * u], [1 + 22 * u]])
    assert fit_standardization(eleven)[1][0] == 11 * eps
    # ...10 eps is noise: scale 1
    ten = np.array([[1 - 20 * u], [1 + 20 * u]])
    assert fit_standardization(ten)[1][0] == 1.0
    # float32: the threshold uses float32's epsilon (1e-7 relative), not float64's
    X32 = np.array([[10000.0], [np.nextafter(np.float32(10000.0), np.float32(2e4))], [10000.0]])
    assert fit_standardization(X32.astype(np.float32))[1][0] == 1.0
    assert fit_standardization(X32.astype(np.float64))[1][0] < 1e-3  # float64 keeps it
    # a feature ranging over exactly 1 is a real feature
    np.testing.assert_array_equal(fit_standardization(np.array([[0.0], [1.0]]))[1], [0.5])


def test_stratified_split_takes_each_class_in_permutation_order():
    y = np.repeat([0, 1, 2], [10, 6, 4])
    seed = 5
    train, val, test = split_indices(y, 0.25, 0.25, seed=seed)
    perm = np.random.default_rng(seed).permutation(20)
    table = {0: (5, 3, 2), 1: (3, 1, 2), 2: (2, 1, 1)}  # the controlled rounding of this case
    expected = {"train": set(), "val": set(), "test": set()}
    for c, (n_train, n_val, _) in table.items():
        rows = [i for i in perm if y[i] == c]  # the class's rows in permutation order
        expected["train"] |= set(rows[:n_train])
        expected["val"] |= set(rows[n_train : n_train + n_val])
        expected["test"] |= set(rows[n_train + n_val :])
    assert np.bincount(y[train]).tolist() == [5, 3, 2]
    assert np.bincount(y[val], minlength=3).tolist() == [3, 1, 1]
    assert (set(train), set(val), set(test)) == (
        expected["train"], expected["val"], expected["test"],
    )  # fmt: skip


def test_moons_labels_are_integers_like_scikit_learns_and_files_are_named_file(tmp_path):
    from nnexp.data.moons import make_moons

    _, y = make_moons(11, 0.1, 0)
    assert y.dtype == sk.make_moons(n_samples=11, noise=0.1, random_state=0)[1].dtype
    assert y.dtype.kind == "i"
    for name, value in (("c.csv", lambda i: i % 2), ("r.csv", lambda i: i * 0.5)):
        rows = "".join(f"{i},{value(i)}\n" for i in range(30))  # classification, regression
        ds = load_dataset(FileSpec(path=_csv(tmp_path, "a,target\n" + rows, name)))
        assert ds.name == "file"


def test_prepare_stratifies_classification_and_names_the_rare_class(tmp_path):
    labels = ["cat"] * 12 + ["dog"] * 6 + ["emu"] * 2
    rows = "".join(f"{i},{label}\n" for i, label in enumerate(labels))
    path = _csv(tmp_path, "a,target\n" + rows)
    s = prepare(FileSpec(path=path, val_fraction=0.25, test_fraction=0.25, standardize=False))
    y = np.array([0] * 12 + [1] * 6 + [2] * 2)
    train, val, test = split_indices(y, 0.25, 0.25, seed=0)
    np.testing.assert_array_equal(s.y_train, y[train])
    np.testing.assert_array_equal(s.X_val[:, 0], val.astype(np.float32))
    np.testing.assert_array_equal(s.y_test, y[test])
    rare = _csv(tmp_path, "a,target\n" + rows + "20,fox\n", "rare.csv")
    error = _raises_containing_prepare(FileSpec(path=rare, val_fraction=0.25, test_fraction=0.25))
    assert error.startswith("dataset: class 'fox' has 1 row(s), too few to stratify")


def _raises_containing_prepare(spec) -> str:
    with pytest.raises(DatasetError) as info:
        prepare(spec)
    return str(info.value)


def test_overflow_on_the_cast_is_an_error_not_a_warning(tmp_path):
    import warnings

    path = _csv(tmp_path, "a,target\n" + "".join(f"{i}e300,{i % 2}\n" for i in range(20)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # NumPy's overflow warning would surface as an error
        with pytest.raises(DatasetError, match=r"^dtype=float32: the features overflow it"):
            prepare(FileSpec(path=path))


def test_a_datasets_source_is_its_maker_or_the_configured_path():
    from nnexp.data import FileSpec, MoonsSpec
    from nnexp.data.registry import dataset_source

    assert dataset_source(MoonsSpec()) == "sklearn.datasets.make_moons"
    assert dataset_source(FileSpec(path="data/rows.csv")) == "data/rows.csv"  # as configured


def test_a_fifo_or_an_unreadable_file_as_the_path_is_refused_naming_it(tmp_path, monkeypatch):
    import errno
    import os

    from nnexp.data.files import resolve_path

    fifo = tmp_path / "rows.csv"
    os.mkfifo(fifo)
    _raises(
        lambda: resolve_path(str(fifo)),
        f"dataset.path={str(fifo)!r}: is not a regular file (a FIFO, socket or device)",
    )
    locked = _csv(tmp_path, "a,b\n1,2\n", "locked.csv")

    def refuse(self, *args, **kwargs):
        raise OSError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(Path, "open", refuse)
    _raises(
        lambda: resolve_path(locked), f"dataset.path={locked!r}: cannot be read (Permission denied)"
    )


def test_a_file_of_fewer_than_ten_rows_is_too_few_to_split(tmp_path):
    def rows(n: int) -> str:
        return _csv(
            tmp_path, "a,target\n" + "".join(f"{i},{i % 2}\n" for i in range(n)), f"{n}.csv"
        )

    few = rows(9)
    _raises(
        lambda: prepare(FileSpec(path=few)),
        f"dataset.path={few!r}: 9 rows, too few to split into training, validation and test "
        "sets: at least 10 are needed",
    )
    assert len(prepare(FileSpec(path=rows(10))).y_train) > 0  # ten is enough


@pytest.mark.parametrize(
    ("error", "reason"),
    [(OSError(5, "Input/output error"), "Input/output error"), (OSError("NFS gone"), "NFS gone")],
)
def test_a_file_failing_mid_read_names_the_path_and_the_systems_reason(
    tmp_path, monkeypatch, error, reason
):
    from nnexp.data import files

    path = _csv(tmp_path, GOOD)

    def fail(*args):
        raise error

    monkeypatch.setitem(files._READERS, ".csv", fail)
    _raises(
        lambda: files.load_file(FileSpec(path=path)),
        f"dataset.path={path!r}: cannot be read ({reason})",
    )


def test_too_few_rows_from_a_spec_without_a_path_name_the_dataset(monkeypatch):
    import importlib
    from types import SimpleNamespace

    preparing = importlib.import_module("nnexp.data.prepare")  # the module, not the function
    tiny = Dataset("tiny", np.zeros((5, 2)), np.arange(5) % 2, "binary", ["a", "b"], ["0", "1"])
    monkeypatch.setattr(preparing, "load_dataset", lambda spec: tiny)
    _raises(
        lambda: prepare(SimpleNamespace(name="tiny")),  # a generator's spec has no path
        "dataset: 5 rows, too few to split into training, validation and test sets: "
        "at least 10 are needed",
    )


def test_split_indices_without_labels_needs_the_row_count():
    with pytest.raises(ValueError) as info:
        split_indices(None, 0.2, 0.1, seed=0)
    assert str(info.value) == "split_indices: pass the row count n when y is None"
