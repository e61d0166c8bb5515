"""nnexp.data: every dataset loads with the right task and shape; splits are disjoint, sized,
stratified and seeded; standardization sees the training split only; dtypes are honoured; the
CSV/NPZ loader remaps labels; and every bad input fails with a DatasetError that names the key
and the offending value."""

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nnexp.data import (
    DATASETS,
    BlobsSpec,
    CirclesSpec,
    ClassificationSpec,
    Dataset,
    DatasetError,
    DigitsSpec,
    FileSpec,
    Friedman1Spec,
    MoonsSpec,
    RegressionSpec,
    SpiralsSpec,
    Splits,
    load_dataset,
    prepare,
    split_indices,
    validate_spec,
)
from nnexp.data.split import allocate, make_splits

# name -> (task, n_rows, n_features, n_classes) for the default spec
EXPECTED = {
    "moons": ("binary", 1000, 2, 2),
    "circles": ("binary", 1000, 2, 2),
    "blobs": ("multiclass", 1000, 2, 3),
    "classification": ("binary", 1000, 20, 2),
    "regression": ("regression", 1000, 10, None),
    "friedman1": ("regression", 1000, 10, None),
    "spirals": ("multiclass", 1000, 2, 3),
    "digits": ("multiclass", 1797, 64, 10),
    "iris": ("multiclass", 150, 4, 3),
    "wine": ("multiclass", 178, 13, 3),
    "breast_cancer": ("binary", 569, 30, 2),
    "diabetes": ("regression", 442, 10, None),
}


def _fails(spec, *fragments: str) -> str:
    """Assert validate/load/prepare raises DatasetError whose message contains every fragment."""
    with pytest.raises(DatasetError) as info:
        prepare(spec)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


def _write_csv(tmp_path: Path, text: str, name: str = "data.csv") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _imbalanced(seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(4), [500, 37, 13, 7])
    return Dataset("toy", rng.standard_normal((len(y), 3)), y, "multiclass", ["a", "b", "c"],
                   ["w", "x", "y", "z"])  # fmt: skip


# --- import cost, registry, schemas ----------------------------------------------------------


def test_import_is_light():
    code = (
        "import sys, nnexp.data; "
        "heavy = [m for m in ('sklearn', 'pandas', 'hydra', 'omegaconf', 'mlflow') "
        "if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_file_spirals_and_moons_never_import_sklearn(tmp_path):
    path = _write_csv(tmp_path, "a,target\n" + "".join(f"{i},{i % 2}\n" for i in range(20)))
    code = (
        "import sys; from nnexp.data import prepare, FileSpec, SpiralsSpec, MoonsSpec; "
        f"prepare(FileSpec(path={path!r})); prepare(SpiralsSpec()); prepare(MoonsSpec()); "
        "print('sklearn' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(("n", "noise", "seed"), [(1000, 0.2, 0), (7, 0.0, 3), (1, 0.5, 42)])
def test_moons_are_sklearns_draw_for_draw(n, noise, seed):
    from sklearn.datasets import make_moons as sklearn_moons

    from nnexp.data.moons import make_moons

    X, y = make_moons(n, noise, seed)
    X_ref, y_ref = sklearn_moons(n_samples=n, noise=noise, random_state=seed)
    np.testing.assert_array_equal(X, X_ref)
    np.testing.assert_array_equal(y, y_ref)


def test_registry_covers_every_dataset_and_names_match():
    assert set(DATASETS) == {*EXPECTED, "file"}
    for name, spec_cls in DATASETS.items():
        assert spec_cls().name == name


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_specs_are_structured_configs(name):
    omegaconf = pytest.importorskip("omegaconf")
    cfg = omegaconf.OmegaConf.structured(DATASETS[name])
    assert omegaconf.OmegaConf.to_object(cfg) == DATASETS[name]()
    if name != "file":
        validate_spec(cfg)  # an OmegaConf node works as well as the dataclass


# --- every dataset ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_dataset_loads(name):
    task, n, d, n_classes = EXPECTED[name]
    ds = load_dataset(DATASETS[name]())
    assert ds.task == task
    assert ds.X.shape == (n, d) and ds.X.dtype == np.float64
    assert len(ds.feature_names) == d and all(isinstance(f, str) for f in ds.feature_names)
    assert ds.n_classes == n_classes
    if n_classes is None:
        assert ds.classes is None and ds.y.dtype == np.float64 and ds.y.shape == (n,)
    else:
        assert ds.y.dtype == np.int64 and set(np.unique(ds.y)) == set(range(n_classes))
        assert len(ds.classes) == n_classes and all(isinstance(c, str) for c in ds.classes)


def test_bundled_class_names_and_variants():
    assert load_dataset(DATASETS["iris"]()).classes == ["setosa", "versicolor", "virginica"]
    assert load_dataset(DigitsSpec(n_class=2)).task == "binary"
    assert load_dataset(SpiralsSpec(n_classes=2)).task == "binary"
    assert load_dataset(BlobsSpec(centers=2, n_features=5)).X.shape == (1000, 5)
    assert load_dataset(ClassificationSpec(n_classes=4)).task == "multiclass"
    multi = load_dataset(RegressionSpec(n_targets=3))
    assert multi.y.shape == (1000, 3)
    assert prepare(RegressionSpec(n_targets=3)).y_val.shape == (200, 3)


def test_spirals_shape_and_seed():
    a, b = load_dataset(SpiralsSpec(n_samples=301, seed=1)), load_dataset(SpiralsSpec(seed=1))
    assert np.bincount(a.y).tolist() == [101, 100, 100]
    assert np.abs(a.X).max() <= 1.0 + 1e-12  # radius never exceeds 1
    np.testing.assert_array_equal(b.X, load_dataset(SpiralsSpec(seed=1)).X)
    assert not np.array_equal(b.X, load_dataset(SpiralsSpec(seed=2)).X)


# --- splitting ------------------------------------------------------------------------------


def _split(ds, val_fraction, test_fraction, seed):
    """`prepare`'s split of a dataset in memory: stratified row indices, then those rows."""
    labels = ds.y if ds.is_classification else None
    parts = split_indices(
        labels, val_fraction, test_fraction, seed, n=len(ds.y), classes=ds.classes
    )
    return make_splits(ds, ds.X, ds.y, parts)


def test_split_sizes_disjoint_and_complete():
    ds = load_dataset(MoonsSpec())
    s = _split(ds, 0.2, 0.2, seed=0)
    assert (len(s.X_train), len(s.X_val), len(s.X_test)) == (600, 200, 200)
    rows = {tuple(r) for part in (s.X_train, s.X_val, s.X_test) for r in part}
    assert len(rows) == 1000  # disjoint and, together, every row
    assert s.mean is None and s.scale is None and s.n_features == 2 and s.n_classes == 2


def test_split_is_stratified_within_one_sample():
    ds = _imbalanced()
    s = _split(ds, 0.25, 0.15, seed=3)
    counts = np.bincount(ds.y)
    for part, frac in ((s.y_train, 0.6), (s.y_val, 0.25), (s.y_test, 0.15)):
        share = counts * len(part) / len(ds.y)
        assert np.all(np.abs(np.bincount(part, minlength=4) - share) < 1)
        assert abs(len(part) - frac * len(ds.y)) <= 0.5


def test_allocate_is_an_exact_controlled_rounding():
    rng = np.random.default_rng(0)
    for _ in range(300):
        counts = rng.integers(1, rng.choice([4, 60, 400]), rng.integers(1, 9))
        n = int(counts.sum())
        if n < 2:
            continue
        n_val = int(rng.integers(1, n))
        n_test = int(rng.integers(0, n - n_val + 1))
        sizes = np.array([n - n_val - n_test, n_val, n_test])
        table = allocate(counts, sizes)
        assert (table.sum(axis=1) == counts).all() and (table.sum(axis=0) == sizes).all()
        assert (np.abs(table - np.outer(counts, sizes) / n) < 1).all()


def test_split_is_deterministic_per_seed():
    ds = load_dataset(MoonsSpec())
    a, b, c = (_split(ds, 0.2, 0.2, seed) for seed in (5, 5, 6))
    np.testing.assert_array_equal(a.X_train, b.X_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.X_train, c.X_train)
    assert not np.array_equal(prepare(MoonsSpec(seed=1)).X_val, prepare(MoonsSpec(seed=2)).X_val)


def test_split_interleaves_classes():
    s = _split(_imbalanced(), 0.2, 0.2, seed=0)
    assert not np.all(np.diff(s.y_train) >= 0)  # not sorted by class


def test_zero_test_fraction_gives_empty_test_arrays():
    s = prepare(RegressionSpec(test_fraction=0.0, n_targets=2))
    assert s.X_test.shape == (0, 10) and s.y_test.shape == (0, 2)
    assert len(s.X_train) == 800 and len(s.X_val) == 200
    c = prepare(MoonsSpec(test_fraction=0.0))
    assert c.X_test.shape == (0, 2) and c.y_test.shape == (0,) and c.y_test.dtype == np.int64


# --- standardization and dtype ------------------------------------------------------------------


def test_standardization_uses_training_statistics_only():
    raw = prepare(DATASETS["wine"](standardize=False), dtype=np.float64)
    std = prepare(DATASETS["wine"](), dtype=np.float64)
    np.testing.assert_allclose(std.X_train.mean(axis=0), 0, atol=1e-10)
    np.testing.assert_allclose(std.X_train.std(axis=0), 1, atol=1e-10)
    np.testing.assert_allclose(std.mean, raw.X_train.mean(axis=0))
    np.testing.assert_allclose(std.scale, raw.X_train.std(axis=0))
    np.testing.assert_allclose(std.X_val, (raw.X_val - std.mean) / std.scale)
    for part in (std.X_val, std.X_test):  # not refitted on held-out data
        assert np.abs(part.mean(axis=0)).max() > 1e-3
        assert np.abs(part.std(axis=0) - 1).max() > 1e-3


def test_standardize_false_keeps_raw_features():
    ds = load_dataset(DATASETS["diabetes"](scaled=False))
    s = prepare(DATASETS["diabetes"](scaled=False, standardize=False), dtype=np.float64)
    assert s.mean is None and s.scale is None
    raw_rows = {tuple(r) for r in ds.X}
    assert all(tuple(r) in raw_rows for r in s.X_train)
    assert s.X_train[:, 0].max() > 10  # ages, not z-scores


def test_constant_feature_gets_scale_one(tmp_path):
    rows = "".join(f"{i},5.0,{i % 2}\n" for i in range(40))
    s = prepare(FileSpec(path=_write_csv(tmp_path, "a,const,target\n" + rows)))
    assert s.scale[1] == 1 and s.mean[1] == 5
    assert np.all(s.X_train[:, 1] == 0) and np.isfinite(s.X_val).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["moons", "friedman1"])
def test_dtype_is_honoured_without_float64_copies(dtype, name):
    s = prepare(DATASETS[name](), dtype=dtype)
    regression = s.task == "regression"
    for field in dataclasses.fields(Splits):
        value = getattr(s, field.name)
        if not isinstance(value, np.ndarray):
            continue
        assert value.flags.c_contiguous, field.name
        if field.name.startswith("y_") and not regression:
            assert value.dtype == np.int64, field.name
        else:
            assert value.dtype == dtype, field.name
        assert value.base is None or value.base.dtype == value.dtype  # not a view of float64


def test_float32_overflow_is_reported(tmp_path):
    path = _write_csv(tmp_path, "a,target\n" + "".join(f"{i}e300,{i}.5\n" for i in range(20)))
    _fails(FileSpec(path=path, standardize=False), "dtype=float32", "overflow")
    assert prepare(FileSpec(path=path, standardize=False), dtype=np.float64).X_train.max() > 1e300


# --- files ------------------------------------------------------------------------------------


def test_csv_labels_are_remapped(tmp_path):
    rows = "".join(f"{i},{i * 0.5},{7 if i % 3 else 3}\n" for i in range(30))
    path = _write_csv(tmp_path, "a, b ,label\n" + rows)
    ds = load_dataset(FileSpec(path=path, target="label"))
    assert ds.task == "binary" and ds.classes == ["3", "7"]
    assert ds.feature_names == ["a", "b"] and ds.X.shape == (30, 2)
    np.testing.assert_array_equal(ds.y, [0 if i % 3 == 0 else 1 for i in range(30)])
    np.testing.assert_array_equal(ds.X[:, 1], np.arange(30) * 0.5)


def test_csv_text_labels_options_and_quirks(tmp_path):
    # BOM, ';' delimiter, quoted numbers, a blank line, an ignored text column, text labels
    rows = "".join(f'{i};"{i * 2}";id{i};{["cat", "dog", "bird"][i % 3]}\n' for i in range(30))
    path = _write_csv(tmp_path, "\ufeffa;b;name;kind\n\n" + rows)
    spec = FileSpec(path=path, target="kind", delimiter=";", ignore=["name"])
    ds = load_dataset(spec)
    assert ds.task == "multiclass" and ds.classes == ["bird", "cat", "dog"]
    assert ds.feature_names == ["a", "b"] and ds.X[3].tolist() == [3.0, 6.0]
    s = prepare(spec)
    assert s.n_classes == 3 and len(s.y_train) + len(s.y_val) + len(s.y_test) == 30


def test_csv_tab_delimiter(tmp_path):
    path = _write_csv(
        tmp_path, "a\tb\ttarget\n" + "".join(f"{i}\t{i}\t{i % 2}\n" for i in range(20))
    )
    for delimiter in ("\t", "\\t"):  # a real tab, or backslash-t as typed on a command line
        assert load_dataset(FileSpec(path=path, delimiter=delimiter)).X.shape == (20, 2)


def test_csv_task_resolution(tmp_path):
    def task_of(values, task="auto"):
        rows = "".join(f"{i},{v}\n" for i, v in enumerate(values))
        path = _write_csv(tmp_path, "a,target\n" + rows, name=f"t{len(values)}{task}.csv")
        return load_dataset(FileSpec(path=path, task=task))

    assert task_of([0, 1, 2] * 10).task == "multiclass"
    assert task_of([0.0, 1.0] * 10).task == "binary"
    assert task_of(list(range(30))).task == "regression"  # > 20 distinct integers
    assert task_of([0.5, 1.5] * 10).task == "regression"  # not integer-valued
    assert task_of([0, 1] * 12, task="multiclass").task == "multiclass"
    reg = task_of([0, 1] * 13, task="regression")
    assert reg.task == "regression" and reg.y.dtype == np.float64 and reg.classes is None


def test_npz_loader(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    X = rng.integers(0, 9, (40, 3))
    names = np.array(["p", "q", "r"])
    np.savez(path, data=X, labels=np.where(np.arange(40) % 2, 7, 3), feature_names=names)
    ds = load_dataset(FileSpec(path=str(path), features="data", target="labels"))
    assert ds.task == "binary" and ds.classes == ["3", "7"] and ds.feature_names == ["p", "q", "r"]
    assert ds.X.dtype == np.float64 and set(ds.y.tolist()) == {0, 1}
    np.savez(path, X=rng.standard_normal((40, 2)), y=rng.standard_normal((40, 2)))
    s = prepare(FileSpec(path=str(path)))
    assert s.task == "regression" and s.y_train.shape == (24, 2) and s.feature_names == ["x0", "x1"]


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "fragments"),
    [
        (MoonsSpec(name="mooons"), ["dataset.name='mooons'", "moons", "spirals", "file"]),
        (MoonsSpec(name="circles"), ["dataset.name='circles'", "CirclesSpec"]),
        (MoonsSpec(val_fraction=0.0), ["dataset.val_fraction=0.0", "> 0"]),
        (MoonsSpec(test_fraction=1.0), ["dataset.test_fraction=1.0", "< 1"]),
        (MoonsSpec(val_fraction=0.6, test_fraction=0.5), ["dataset.val_fraction=0.6", "0.5"]),
        (MoonsSpec(n_samples=5), ["dataset.n_samples=5", ">= 10"]),
        (MoonsSpec(n_samples=2.5), ["dataset.n_samples=2.5", "integer"]),
        (MoonsSpec(noise=-0.1), ["dataset.noise=-0.1", ">= 0"]),
        (MoonsSpec(seed=-1), ["dataset.seed=-1", ">= 0"]),
        (MoonsSpec(standardize="yes"), ["dataset.standardize='yes'", "true or false"]),
        (CirclesSpec(factor=1.0), ["dataset.factor=1.0", "< 1"]),
        (BlobsSpec(n_features=0), ["dataset.n_features=0", ">= 1"]),
        (BlobsSpec(centers=1), ["dataset.centers=1", ">= 2"]),
        (SpiralsSpec(n_classes=1), ["dataset.n_classes=1", ">= 2"]),
        (SpiralsSpec(turns=0.0), ["dataset.turns=0.0", "> 0"]),
        (RegressionSpec(n_informative=11), ["dataset.n_informative=11", "n_features=10"]),
        (Friedman1Spec(n_features=4), ["dataset.n_features=4", ">= 5"]),
        (ClassificationSpec(n_features=6), ["dataset.n_features=6", "n_informative"]),
        (ClassificationSpec(n_informative=2, n_classes=3), ["dataset.n_informative=2", "6"]),
        (ClassificationSpec(weights=[0.5, 0.3, 0.2]), ["dataset.weights=[0.5, 0.3, 0.2]"]),
        (ClassificationSpec(weights=[0.7, 0.7]), ["dataset.weights=[0.7, 0.7]", "sum to 1"]),
        (DigitsSpec(n_class=11), ["dataset.n_class=11", "<= 10"]),
    ],
    ids=lambda v: v.name if hasattr(v, "name") else "",
)
def test_bad_spec_raises_with_key_and_value(spec, fragments):
    with pytest.raises(DatasetError) as info:
        validate_spec(spec)  # all of these are caught without loading anything
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))


def test_missing_field_is_reported():
    class Partial:
        name = "moons"
        val_fraction, test_fraction, standardize, seed = 0.2, 0.2, True, 0

    with pytest.raises(DatasetError, match=r"dataset\.n_samples is missing"):
        validate_spec(Partial())


GOOD = "a,b,target\n" + "".join(f"{i},{i % 5},{i % 2}\n" for i in range(20))


@pytest.mark.parametrize(
    ("text", "options", "fragments"),
    [
        ("", {}, ["dataset.path=", "empty"]),
        ("\n\n", {}, ["dataset.path=", "no header"]),
        ("a,b,target\n", {}, ["dataset.path=", "no data rows"]),
        (GOOD, {"target": "label"}, ["dataset.target='label'", "'a', 'b', 'target'"]),
        (GOOD, {"ignore": ["zzz"]}, ["dataset.ignore=['zzz']", "'zzz'"]),
        (GOOD, {"task": "classify"}, ["dataset.task='classify'", "auto, binary"]),
        (GOOD, {"delimiter": ";;"}, ["dataset.delimiter=';;'", "one character"]),
        ("a,target\n1,0\n2,1\n", {"ignore": ["a"]}, ["dataset.path=", "no feature columns"]),
        ("a,,target\n1,2,0\n", {}, ["dataset.path=", "column 2 has no name"]),
        ("a,a,target\n1,2,0\n", {}, ["dataset.path=", "'a' twice"]),
        ("a,b,target\n1,2,0\n3,abc,1\n", {}, ["dataset.path=", "line 3", "'b'", "'abc'"]),
        ("a,b,target\n1,2,0\n3,,1\n", {}, ["line 3", "'b'", "empty cell"]),
        ("a,b,target\n1,2,0\n3,4\n", {}, ["line 3 has 2 fields", "header has 3"]),
        ("a,b,target\n1,nan,0\n3,inf,1\n4,5,0\n", {}, ["dataset.path=", "'b' (2", "NaN/inf"]),
        ("a,target\n1,0\n2,nan\n", {"task": "regression"}, ["dataset.target='target'", "NaN"]),
        ("a,target\n1,0\n2,\n", {}, ["dataset.target='target'", "line 3", "empty target"]),
        ("a,target\n1,0\n2,1.5\n", {"task": "binary"}, ["dataset.target=", "1.5", "integer"]),
        ("a,target\n1,0\n2,1\n3,2\n", {"task": "binary"}, ["dataset.task='binary'", "3 classes"]),
        ("a,target\n1,4\n2,4\n", {}, ["dataset.target='target'", "single class"]),
        ("a,target\n1,x\n2,y\n", {"task": "regression"}, ["dataset.target=", "'x'", "number"]),
    ],
)
def test_bad_csv_raises_with_key_and_value(tmp_path, text, options, fragments):
    _fails(FileSpec(path=_write_csv(tmp_path, text), **options), *fragments)


def test_bad_paths(tmp_path):
    _fails(FileSpec(), "dataset.path=''", "required")
    _fails(FileSpec(path="nope.csv"), "dataset.path='nope.csv'", "no such file")
    _fails(FileSpec(path=str(tmp_path)), f"dataset.path={str(tmp_path)!r}", "directory")
    txt = _write_csv(tmp_path, GOOD, name="data.txt")
    _fails(FileSpec(path=txt), f"dataset.path={txt!r}", "allowed: .csv, .npz")


def test_validate_reads_the_header_but_not_the_data(tmp_path):
    path = _write_csv(tmp_path, GOOD + "1,oops,0\n")
    validate_spec(FileSpec(path=path))  # a bad cell is load_dataset's business
    with pytest.raises(DatasetError, match="oops"):
        load_dataset(FileSpec(path=path))
    with pytest.raises(DatasetError, match=r"dataset\.target='y'"):
        validate_spec(FileSpec(path=path, target="y"))


def test_bad_npz(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, data=np.zeros((10, 2)), y=np.zeros(10))
    _fails(FileSpec(path=str(path)), "dataset.features='X'", "'data', 'y'")
    np.savez(path, X=np.zeros(10), y=np.arange(10) % 2)
    _fails(FileSpec(path=str(path)), "dataset.features='X'", "2-D")
    np.savez(path, X=np.zeros((10, 2)), y=np.arange(9) % 2)
    _fails(FileSpec(path=str(path)), "dataset.target='y'", "(9,)", "(10, 2)")
    np.savez(path, X=np.full((10, 2), np.nan), y=np.arange(10) % 2)
    _fails(FileSpec(path=str(path)), "dataset.path=", "20 NaN/inf", "row 0")
    np.savez(path, X=np.zeros((10, 2)), y=np.array([{}] * 10, dtype=object))
    _fails(FileSpec(path=str(path)), "dataset.path=", "pickle")
    path.write_text("not a zip")
    _fails(FileSpec(path=str(path)), "dataset.path=", "not a readable .npz")


def test_splits_that_cannot_be_made():
    tiny = Dataset("tiny", np.zeros((2, 1)), np.zeros(2), "regression", ["a"], None)
    with pytest.raises(DatasetError, match=r"dataset\.val_fraction=0\.2.*empty split"):
        _split(tiny, 0.2, 0.2, seed=0)
    with pytest.raises(DatasetError, match=r"class 'z' has 7 row\(s\).*val_fraction=0\.45"):
        _split(_imbalanced(), 0.45, 0.45, seed=0)
    with pytest.raises(DatasetError, match="dtype=int64"):
        prepare(MoonsSpec(), dtype=np.int64)


def test_one_moons_feature_scaled_up_left_raw_or_standardized():
    """dataset.scale_feature / feature_scale: an unnormalized column (experiments/silent_nan)."""
    plain = load_dataset(MoonsSpec())
    scaled = load_dataset(MoonsSpec(scale_feature=0, feature_scale=5e5))
    np.testing.assert_allclose(scaled.X[:, 0], plain.X[:, 0] * 5e5)
    np.testing.assert_array_equal(scaled.X[:, 1], plain.X[:, 1])
    assert np.abs(scaled.X[:, 0]).max() > 1e6
    raw = prepare(MoonsSpec(scale_feature=0, feature_scale=5e5, standardize=False))
    assert np.abs(raw.X_train[:, 0]).max() > 5e5
    standardized = prepare(MoonsSpec(scale_feature=0, feature_scale=5e5))
    assert np.abs(standardized.X_train).max() < 10
    _fails(MoonsSpec(scale_feature=2), "dataset.scale_feature=2", "<= 1")
    _fails(MoonsSpec(scale_feature=0, feature_scale=0.0), "dataset.feature_scale=0.0", "> 0")
