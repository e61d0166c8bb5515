"""Every documented option has a test of its effect: the README's `dataset` row (the other
rows: test_option_effects.py).

Each option of the group goes through Hydra's compose and `nnexp.build.build` (the data the
network is built on); each key is checked on the data it produces: a generator's noise and
shape parameters against the generator's own geometry or formula, fractions against split
sizes, seeds against reproducibility. In process only.

Pinned exactly elsewhere (not repeated here):
- standardization fitted on the training split only: tests/test_data.py::
  test_standardization_uses_training_statistics_only (here: through the config)
- `dataset.scale_feature`/`feature_scale` on the loader: tests/test_data.py::
  test_one_moons_feature_scaled_up_left_raw_or_standardized (here: through the config)
- the split seed and stratification: tests/test_data.py::test_split_is_deterministic_per_seed,
  test_split_is_stratified_within_one_sample; `diabetes.scaled`: test_standardize_false_...
- the file loader's CSV/NPZ details (delimiter, ignore, features, label remapping):
  tests/test_data.py
"""

from __future__ import annotations

import copy
import functools
import math

import numpy as np
import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf, open_dict
from test_data import EXPECTED

from nnexp import cli as nnexp_cli
from nnexp.build import build
from nnexp.data import (
    DATASETS,
    BlobsSpec,
    CirclesSpec,
    ClassificationSpec,
    DigitsSpec,
    Friedman1Spec,
    MoonsSpec,
    RegressionSpec,
    SpiralsSpec,
    load_dataset,
    prepare,
)
from nnexp.nn import MSE, Dense, SigmoidBCE, SoftmaxCrossEntropy


@functools.cache
def _composed(groups: tuple[str, ...]):
    with initialize_config_module("nnexp.conf", version_base="1.3"):
        cfg = compose("config", overrides=[*groups, "tracking.enabled=false"])
    return cfg


def built(*overrides: str):
    """`build` of the validated config for `overrides` (group choices through Hydra's compose,
    cached; `key=value` ones merged on top, typed and checked against the schema)."""
    groups = tuple(o for o in overrides if "." not in o.split("=", 1)[0])
    cfg = copy.deepcopy(_composed(groups))
    keys = [o for o in overrides if "." in o.split("=", 1)[0]]
    if keys:
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(keys))
    with open_dict(cfg):
        cfg.pop("hydra", None)
    return build(nnexp_cli.validated(cfg))


# === the group's options =======================================================================

# option: (task, rows, features, classes)
OPTIONS = EXPECTED  # tests/test_data.py: each option's default task and shape
LOSS_OF_TASK = {"binary": SigmoidBCE, "multiclass": SoftmaxCrossEntropy, "regression": MSE}


@pytest.mark.parametrize("option", OPTIONS)
def test_dataset_option_is_the_data_the_network_is_built_on(option):
    """`dataset=<option>`: its rows, split 60/20/20, its features as the input width, its task
    choosing the loss and the output width."""
    task, rows, features, classes = OPTIONS[option]
    b = built(f"dataset={option}", "model.hidden=[4]")
    s = b.splits
    assert s.task == task and s.n_classes == classes
    sizes = [len(s.X_train), len(s.X_val), len(s.X_test)]
    assert sum(sizes) == rows
    assert sizes[1] == sizes[2] == math.floor(0.2 * rows + 0.5)
    dense = [m for m in b.model.modules if isinstance(m, Dense)]
    assert dense[0].W.value.shape[0] == features
    assert type(b.loss) is LOSS_OF_TASK[task]
    assert dense[-1].W.value.shape[1] == (classes if task == "multiclass" else 1)
    # the same rows as the loader's own, once the standardization is undone
    raw = load_dataset(DATASETS[option]()).X
    restored = s.X_train[:20].astype(np.float64) * s.scale + s.mean
    scale = np.abs(raw).max(axis=0) + 1
    nearest = np.abs((restored[:, None, :] - raw[None]) / scale).max(axis=2).min(axis=1)
    assert nearest.max() < 1e-5


# === keys shared by every dataset ==============================================================

GENERATORS = [MoonsSpec, CirclesSpec, BlobsSpec, ClassificationSpec, RegressionSpec]
GENERATORS += [Friedman1Spec, SpiralsSpec]


@pytest.mark.parametrize("spec", GENERATORS, ids=lambda s: s().name)
def test_n_samples_is_the_number_of_rows(spec):
    s = prepare(spec(n_samples=137))
    assert len(s.X_train) + len(s.X_val) + len(s.X_test) == 137


@pytest.mark.parametrize(
    ("val", "test", "sizes"), [(0.3, 0.15, (110, 60, 30)), (0.1, 0.0, (180, 20, 0))]
)
def test_val_and_test_fraction_size_the_splits(val, test, sizes):
    b = built(
        "dataset.n_samples=200", f"dataset.val_fraction={val}", f"dataset.test_fraction={test}"
    )
    s = b.splits
    assert (len(s.X_train), len(s.X_val), len(s.X_test)) == sizes
    assert len(b.data.X_train) == sizes[0] and len(b.data.X_test) == sizes[2]


def test_seed_makes_other_data_and_the_same_seed_the_same():
    """`dataset.seed` seeds the generator (not only the split): other points, not just others
    in each split; the same seed, the same arrays."""
    a, again, other = (load_dataset(MoonsSpec(seed=s)) for s in (1, 1, 2))
    np.testing.assert_array_equal(a.X, again.X)
    assert not {tuple(r) for r in a.X} & {tuple(r) for r in other.X}
    b1, b2 = built("dataset.seed=1"), built("dataset.seed=1")
    np.testing.assert_array_equal(b1.data.X_train, b2.data.X_train)
    assert not np.array_equal(b1.data.X_train, built("dataset.seed=2").data.X_train)


def test_standardize_fits_the_training_split_and_false_keeps_raw_features():
    std = built("dataset.standardize=true", "trainer.dtype=float64").splits
    raw = built("dataset.standardize=false", "trainer.dtype=float64").splits
    np.testing.assert_allclose(std.X_train.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(std.X_train.std(axis=0), 1, rtol=1e-12)
    np.testing.assert_allclose(std.mean, raw.X_train.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(std.X_val, (raw.X_val - std.mean) / std.scale, rtol=1e-12)
    assert raw.mean is None and np.abs(raw.X_val.mean(axis=0) - std.mean).max() > 1e-3
    direct = load_dataset(MoonsSpec())
    rows = {tuple(r) for r in direct.X}
    assert all(tuple(r) in rows for r in raw.X_train)  # the generator's points, untouched


def test_scale_feature_multiplies_one_raw_column():
    plain = built("dataset.standardize=false", "trainer.dtype=float64").splits
    scaled = built(
        "dataset.standardize=false",
        "trainer.dtype=float64",
        "dataset.scale_feature=1",
        "dataset.feature_scale=1000",
    ).splits
    np.testing.assert_allclose(scaled.X_train[:, 1], 1000 * plain.X_train[:, 1], rtol=1e-12)
    np.testing.assert_array_equal(scaled.X_train[:, 0], plain.X_train[:, 0])


# === each generator's own keys =================================================================


def _radial_rms(X, y):
    """Moons: class 0 lies on the unit circle about (0, 0), class 1 on the one about (1, 0.5)."""
    centre = np.where(y[:, None] == 0, [0.0, 0.0], [1.0, 0.5])
    r = np.linalg.norm(X - centre, axis=1)
    return float(np.sqrt(np.mean((r - 1) ** 2)))


def test_moons_noise_is_the_std_of_the_points_off_their_arcs():
    exact = load_dataset(MoonsSpec(n_samples=500, noise=0.0))
    assert _radial_rms(exact.X, exact.y) < 1e-12
    n = 4000
    noisy = load_dataset(MoonsSpec(n_samples=n, noise=0.05))
    # radial part of isotropic noise of std 0.05 (curvature adds ~1 %); SE of an RMS: 1/sqrt(2n)
    assert _radial_rms(noisy.X, noisy.y) == pytest.approx(0.05, rel=0.02 + 6 / math.sqrt(2 * n))


def test_circles_factor_is_the_inner_radius_and_noise_spreads_it():
    ds = load_dataset(CirclesSpec(n_samples=300, noise=0.0, factor=0.3))
    r = np.linalg.norm(ds.X, axis=1)
    np.testing.assert_allclose(r[ds.y == 0], 1.0, atol=1e-12)
    np.testing.assert_allclose(r[ds.y == 1], 0.3, atol=1e-12)
    noisy = load_dataset(CirclesSpec(n_samples=4000, noise=0.05, factor=0.3))
    r = np.linalg.norm(noisy.X, axis=1)
    spread = np.sqrt(np.mean((r[noisy.y == 0] - 1) ** 2))
    assert spread == pytest.approx(0.05, rel=0.1)


def test_blobs_n_features_centers_and_cluster_std():
    n = 3000
    for std in (0.5, 2.0):
        ds = load_dataset(BlobsSpec(n_samples=n, n_features=5, centers=4, cluster_std=std))
        assert ds.X.shape == (n, 5) and ds.n_classes == 4
        within = np.concatenate([ds.X[ds.y == k] - ds.X[ds.y == k].mean(axis=0) for k in range(4)])
        # n·5 draws of N(0, std²): SE of the std ~ 1/sqrt(2·n·5)
        assert within.std() == pytest.approx(std, rel=6 / math.sqrt(2 * n * 5) + 0.01)


def test_classification_keys_shape_the_data():
    ds = load_dataset(
        ClassificationSpec(n_samples=600, n_features=10, n_informative=3, n_redundant=2)
    )
    assert ds.X.shape == (600, 10)
    assert np.linalg.matrix_rank(ds.X) == 10 - 2  # redundant columns: combinations of others
    multi = load_dataset(ClassificationSpec(n_classes=4, n_informative=4, flip_y=0.0))
    assert multi.n_classes == 4 and np.bincount(multi.y).min() > 200
    # weights: the class proportions; flip_y: that fraction relabelled at random
    n = 4000
    for flip, share in ((0.0, 0.8), (0.6, 0.4 * 0.8 + 0.6 * 0.5)):
        ds = load_dataset(ClassificationSpec(n_samples=n, weights=[0.8, 0.2], flip_y=flip))
        se = math.sqrt(share * (1 - share) / n)
        assert np.mean(ds.y == 0) == pytest.approx(share, abs=6 * se + 0.01)
    # class_sep: how far apart the classes lie
    gaps = []
    for sep in (0.5, 3.0):
        ds = load_dataset(ClassificationSpec(class_sep=sep, flip_y=0.0, n_redundant=0))
        gaps.append(np.linalg.norm(ds.X[ds.y == 0].mean(0) - ds.X[ds.y == 1].mean(0)))
    assert gaps[1] > 3 * gaps[0]


def test_regression_keys_are_the_linear_model():
    """noise=0: y is exactly X·coef + bias, with n_informative non-zero coefficients per
    target; noise: the std of the residual."""
    n = 2000
    ds = load_dataset(
        RegressionSpec(n_samples=n, n_features=8, n_informative=3, noise=0.0, bias=5.0)
    )
    A = np.column_stack([ds.X, np.ones(n)])
    coef, *_ = np.linalg.lstsq(A, ds.y, rcond=None)
    np.testing.assert_allclose(A @ coef, ds.y, atol=1e-8)
    assert coef[-1] == pytest.approx(5.0, abs=1e-8)
    assert np.count_nonzero(np.abs(coef[:-1]) > 1e-8) == 3
    multi = load_dataset(RegressionSpec(n_samples=50, n_targets=3))
    assert multi.y.shape == (50, 3)
    noisy = load_dataset(RegressionSpec(n_samples=n, n_features=8, noise=4.0))
    A = np.column_stack([noisy.X, np.ones(n)])
    coef, *_ = np.linalg.lstsq(A, noisy.y, rcond=None)
    residual = noisy.y - A @ coef
    assert residual.std() == pytest.approx(4.0, rel=6 / math.sqrt(2 * n) + 0.01)


def _friedman(X):
    return (
        10 * np.sin(np.pi * X[:, 0] * X[:, 1])
        + 20 * (X[:, 2] - 0.5) ** 2
        + 10 * X[:, 3]
        + 5 * X[:, 4]
    )


def test_friedman1_is_its_formula_plus_noise():
    ds = load_dataset(Friedman1Spec(n_samples=300, n_features=7, noise=0.0))
    assert ds.X.shape == (300, 7)
    np.testing.assert_allclose(ds.y, _friedman(ds.X), atol=1e-12)
    n = 4000
    noisy = load_dataset(Friedman1Spec(n_samples=n, noise=2.0))
    residual = noisy.y - _friedman(noisy.X)
    assert residual.std() == pytest.approx(2.0, rel=6 / math.sqrt(2 * n))


def test_spirals_turns_classes_and_noise():
    """An arm per class at angle 2π(turns·r + k/C) (+ noise of that std, in radians)."""
    ds = load_dataset(SpiralsSpec(n_samples=301, n_classes=4, turns=1.5, noise=0.0))
    assert ds.n_classes == 4 and np.bincount(ds.y).tolist() == [76, 75, 75, 75]
    r = np.linalg.norm(ds.X, axis=1)
    keep = r > 1e-9
    angle = np.arctan2(ds.X[:, 0], ds.X[:, 1])
    expected = 2 * np.pi * (1.5 * r + ds.y / 4)
    off = np.angle(np.exp(1j * (angle - expected)))[keep]  # wrapped to (-π, π]
    np.testing.assert_allclose(off, 0, atol=1e-9)
    n = 4000
    noisy = load_dataset(SpiralsSpec(n_samples=n, n_classes=2, turns=1.0, noise=0.1))
    r = np.linalg.norm(noisy.X, axis=1)
    keep = r > 1e-9
    angle = np.arctan2(noisy.X[:, 0], noisy.X[:, 1])
    off = np.angle(np.exp(1j * (angle - 2 * np.pi * (r + noisy.y / 2))))[keep]
    assert off.std() == pytest.approx(0.1, rel=6 / math.sqrt(2 * n))


def test_digits_n_class_keeps_the_first_digits():
    ds = load_dataset(DigitsSpec(n_class=3))
    assert ds.classes == ["0", "1", "2"] and ds.task == "multiclass"
    full = load_dataset(DigitsSpec())
    assert len(ds.y) == np.count_nonzero(full.y < 3)


# === your own file =============================================================================


@pytest.fixture
def two_files(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 2))
    rows = ["a,b,label,score,grade"]
    for i, (a, b) in enumerate(X):
        rows.append(f"{a},{b},{int(a + b > 0)},{2.5 * a - b + 0.25},{i % 4}")
    first = tmp_path / "first.csv"
    first.write_text("\n".join(rows) + "\n")
    second = tmp_path / "second.npz"
    np.savez(second, X=X[:40] * 10, y=np.arange(40) % 2)
    return first, second, X


@pytest.mark.parametrize(
    ("target", "task", "loss", "outputs"),
    [
        ("label", "auto", SigmoidBCE, 1),
        ("score", "auto", MSE, 1),  # fractional: regression
        ("grade", "auto", SoftmaxCrossEntropy, 4),  # 4 integers: classes
        ("grade", "regression", MSE, 1),  # the same column, told to regress
        ("grade", "multiclass", SoftmaxCrossEntropy, 4),
        ("label", "multiclass", SoftmaxCrossEntropy, 2),
    ],
)
def test_file_target_and_task(two_files, target, task, loss, outputs):
    """`dataset=file`: `target` picks the column learned (the rest are features), `task`
    decides the loss (auto: integers up to 20 values are classes)."""
    first, _, X = two_files
    b = built(
        "dataset=file",
        f"dataset.path={first}",
        f"dataset.target={target}",
        f"dataset.task={task}",
        "dataset.standardize=false",
        "trainer.dtype=float64",
    )
    assert type(b.loss) is loss
    dense = [m for m in b.model.modules if isinstance(m, Dense)]
    assert dense[0].W.value.shape[0] == 4 and dense[-1].W.value.shape[1] == outputs
    s = b.splits
    assert s.feature_names == [c for c in ("a", "b", "label", "score", "grade") if c != target]
    # each training row: its target is the column's value in the row with those features
    columns = {
        "label": (X.sum(axis=1) > 0).astype(float),
        "score": 2.5 * X[:, 0] - X[:, 1] + 0.25,
        "grade": np.arange(60) % 4.0,
    }
    row_of = {round(float(a), 9): i for i, a in enumerate(X[:, 0])}
    rows = [row_of[round(float(a), 9)] for a in s.X_train[:, 0]]
    if task == "regression" or loss is MSE:
        np.testing.assert_allclose(s.y_train, columns[target][rows], rtol=1e-9)
    else:
        assert np.array_equal(s.y_train, columns[target][rows].astype(int))


def test_file_path_picks_the_file(two_files):
    first, second, _ = two_files
    a = built("dataset=file", f"dataset.path={first}", "dataset.target=label")
    b = built("dataset=file", f"dataset.path={second}", "dataset.standardize=false")
    assert sum(len(x) for x in (a.splits.X_train, a.splits.X_val, a.splits.X_test)) == 60
    assert a.splits.n_features == 4
    assert sum(len(x) for x in (b.splits.X_train, b.splits.X_val, b.splits.X_test)) == 40
    assert b.splits.n_features == 2 and np.abs(b.splits.X_train).max() > 10
