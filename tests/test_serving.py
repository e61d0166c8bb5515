"""nnexp.serving, the code a logged model ships: its NumPy forward pass computes what the
training network computes at inference, bit for bit, for every layer kind `mlp()` can build
(each registered activation, batch norm, residual blocks with and without a projection,
dropout), both dtypes and every output head; it answers labels in the user's vocabulary and
probabilities a column per label; the pyfunc wrapper takes MLflow's ``output`` parameter.
In process, no MLflow store: tests/test_serve.py serves a trained model for real."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from nnexp.data.dataset import label_name, label_value
from nnexp.nn import ACTIVATIONS, mlp
from nnexp.serving import Bundle
from nnexp.serving.pyfunc_model import NnexpModel
from nnexp.train.export import Predictor, save_bundle


def _randomized(model, seed: int = 0):
    """Weights, biases, batch-norm scales and running statistics all far from their initial
    values, so a served layer that skipped one of them would show."""
    rng = np.random.default_rng(seed)
    for p in model.parameters():
        np.copyto(p.value, rng.normal(0.0, 0.7, p.value.shape))
    for name, buffer in model.buffers().items():
        shape = buffer.shape
        np.copyto(buffer, rng.uniform(0.5, 2.0, shape) if "var" in name else rng.normal(size=shape))
    return model


def _bundle(tmp_path, *, loss="softmax_cross_entropy", out=3, classes=("a", "b", "c"), **kwargs):
    kwargs = dict(in_features=4, hidden=[6, 5], out_features=out, activation="tanh") | kwargs
    model = _randomized(mlp(**kwargs))
    rng = np.random.default_rng(9)
    x_mean, x_scale = rng.normal(10.0, 5.0, 4), rng.uniform(1.0, 3.0, 4)
    task = {"mse": "regression", "sigmoid_bce": "binary"}.get(loss, "multiclass")
    path = save_bundle(
        tmp_path / "bundle", model, mlp_kwargs=kwargs, loss=loss, task=task,
        classes=None if classes is None else list(classes), x_mean=x_mean, x_scale=x_scale,
        y_mean=None if task != "regression" else 100.0,
        y_scale=None if task != "regression" else 20.0,
    )  # fmt: skip
    raw = rng.normal(10.0, 8.0, (25, 4))  # unstandardized, as a user sends them
    return path, raw


ARCHITECTURES = [
    *[{"activation": name} for name in sorted(set(ACTIVATIONS))],
    {"activation": "leaky_relu", "activation_kwargs": {"alpha": 0.2}},
    {"activation": "elu", "activation_kwargs": {"alpha": 0.5}},
    {"batch_norm": True},
    {"residual": True},  # a projection into the first block, none between equal widths
    {"residual": True, "batch_norm": True, "dropout": 0.3, "activation": "gelu"},
    {"hidden": []},  # one Dense layer
    {"dtype": "float64", "batch_norm": True, "residual": True},
]


@pytest.mark.parametrize("kwargs", ARCHITECTURES, ids=lambda k: json.dumps(k, sort_keys=True))
def test_the_served_forward_pass_is_the_training_networks_bit_for_bit(tmp_path, kwargs):
    if "hidden" not in kwargs:
        kwargs = {"hidden": [6, 6]} | kwargs  # equal widths: a block without a projection
    path, raw = _bundle(tmp_path, **kwargs)
    served = Bundle(path)
    expected = Predictor(path).logits(raw)  # nnexp.nn's own forward on the same bundle
    got = served.logits(raw)
    assert got.dtype == expected.dtype and np.array_equal(got, expected)
    assert np.array_equal(served.predict_proba(raw), Predictor(path).predict_proba(raw))


def test_every_registered_activation_and_layer_kind_is_served(tmp_path):
    """A new activation (or layer) in nnexp.nn fails here until nnexp.serving computes it."""
    from nnexp.serving.layers import ACTIVATIONS as SERVED
    from nnexp.serving.layers import Forward

    kinds = {cls.kind for cls in ACTIVATIONS.values()}
    assert kinds <= set(SERVED)
    model = mlp(3, [4, 5], 2, residual=True, batch_norm=True, dropout=0.2)
    path = save_bundle(tmp_path, model, mlp_kwargs={"in_features": 3}, loss="mse", task="r")
    layers = json.loads((path / "spec.json").read_text())["layers"]
    assert "dropout" not in {layer["kind"] for layer in layers}  # the identity at inference
    assert [layer["name"] for layer in layers] == [
        m.name for m in model.modules if m.kind != "dropout"
    ]
    with pytest.raises(ValueError, match=r"unknown layer kind\(s\) \['swish'\]"):
        Forward([{"kind": "swish", "name": "swish_0"}], {})


def test_labels_are_the_users_own_and_probabilities_sum_to_one(tmp_path):
    path, raw = _bundle(tmp_path, classes=("cat", "dog", "eel"))
    served = Bundle(path)
    indices = Predictor(path).predict(raw)
    labels = served.predict(raw)
    assert labels.tolist() == [["cat", "dog", "eel"][i] for i in indices]
    assert len(set(labels.tolist())) > 1
    proba = served.predict_proba(raw)
    assert proba.shape == (25, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    assert np.array_equal(proba.argmax(axis=1), indices)
    assert served.predict(raw[0]).tolist() == labels[:1].tolist()  # one row


def test_a_binary_model_gives_both_columns_and_integer_labels_stay_integers(tmp_path):
    path, raw = _bundle(tmp_path, loss="sigmoid_bce", out=1, classes=("3", "7"))
    served = Bundle(path)
    assert served.labels == [3, 7]
    p1 = Predictor(path).predict_proba(raw)[:, 0]  # P(class 1), one sigmoid output
    proba = served.predict_proba(raw)
    assert np.array_equal(proba[:, 1], p1) and np.array_equal(proba[:, 0], 1 - p1)
    labels = served.predict(raw)
    assert labels.dtype.kind == "i"
    assert labels.tolist() == [7 if p > 0.5 else 3 for p in p1]
    assert set(labels.tolist()) == {3, 7}


def test_a_bundle_without_class_names_answers_class_indices(tmp_path):
    path, raw = _bundle(tmp_path, loss="sigmoid_bce", out=1, classes=None)
    served, model = Bundle(path), _pyfunc(path)
    assert served.labels is None
    labels = served.predict(raw)
    assert np.array_equal(labels, Predictor(path).predict(raw)) and set(labels) == {0, 1}
    proba = model.predict(None, raw, params={"output": "proba"})
    assert list(proba.columns) == [0, 1]


def test_a_regression_answers_values_in_the_targets_units(tmp_path):
    path, raw = _bundle(tmp_path, loss="mse", out=1, classes=None, dtype="float64")
    served = Bundle(path)
    assert served.labels is None and not served.classification
    values = served.predict(raw)
    assert values.shape == (25,)
    np.testing.assert_array_equal(values, Predictor(path).predict(raw))
    assert abs(values.mean() - 100.0) < 100.0  # y_mean 100, y_scale 20: not standardized
    with pytest.raises(ValueError, match="regression model has no class probabilities"):
        served.predict_proba(raw)


def test_rows_of_the_wrong_width_name_the_features(tmp_path):
    path, _ = _bundle(tmp_path)
    with pytest.raises(ValueError, match=r"^expected rows of 4 features \(x0, x1, x2, x3\), "):
        Bundle(path).predict(np.zeros((2, 3)))


def test_the_bundle_names_its_columns_and_refuses_one_without_layers(tmp_path):
    model = mlp(2, [3], 2)
    path = save_bundle(tmp_path / "b", model, mlp_kwargs={"in_features": 2}, loss="mse",
                       task="regression", features=["height (cm)", "age"])  # fmt: skip
    assert Bundle(path).features == ["height (cm)", "age"]
    spec = json.loads((path / "spec.json").read_text())
    del spec["layers"]
    (path / "spec.json").write_text(json.dumps(spec))
    with pytest.raises(ValueError, match="without its layer list"):
        Bundle(path)


@pytest.mark.parametrize(
    ("name", "value"),
    [("3", 3), ("-2", -2), ("0", 0), ("cat", "cat"), ("03", "03"), ("+3", "+3"), (" 3", " 3"),
     ("1.5", "1.5"), ("3_000", "3_000")],
)  # fmt: skip
def test_label_value_undoes_label_name_for_integers_only(name, value):
    assert label_value(name) == value and type(label_value(name)) is type(value)


@pytest.mark.parametrize("label", [3, 3.0, np.int64(-7), np.float64(12.0), "cat", np.str_("x y")])
def test_label_value_gives_back_what_the_data_held(label):
    expected = int(label) if not isinstance(label, str) else str(label)
    assert label_value(label_name(label)) == expected


# --- the pyfunc wrapper ---------------------------------------------------------------------


def _pyfunc(path) -> NnexpModel:
    model = NnexpModel()
    model.load_context(SimpleNamespace(artifacts={"bundle": str(path)}))
    return model


def test_the_pyfunc_model_answers_labels_or_a_column_of_probabilities_per_label(tmp_path):
    path, raw = _bundle(tmp_path, classes=("cat", "dog", "eel"))
    model, served = _pyfunc(path), Bundle(path)
    frame = pd.DataFrame(raw, columns=served.features, index=range(100, 125))
    assert model.predict(None, frame).tolist() == served.predict(raw).tolist()
    assert (
        model.predict(None, frame, params={"output": "label"}).tolist()
        == served.predict(raw).tolist()
    )
    proba = model.predict(None, frame, params={"output": "proba"})
    assert list(proba.columns) == ["cat", "dog", "eel"] and list(proba.index) == list(frame.index)
    np.testing.assert_array_equal(proba.to_numpy(), served.predict_proba(raw))
    # columns by name, not position
    shuffled = frame[["x2", "x0", "x3", "x1"]]
    assert model.predict(None, shuffled).tolist() == served.predict(raw).tolist()


def test_the_pyfunc_model_refuses_an_unknown_output_and_probabilities_of_a_regression(tmp_path):
    from mlflow.exceptions import MlflowException

    path, raw = _bundle(tmp_path)
    with pytest.raises(MlflowException, match=r"output='probs': must be one of label, proba$"):
        _pyfunc(path).predict(None, raw, params={"output": "probs"})
    path, raw = _bundle(tmp_path / "r", loss="mse", out=1, classes=None)
    with pytest.raises(MlflowException, match="a regression model predicts values"):
        _pyfunc(path).predict(None, raw, params={"output": "proba"})


# --- what a run puts in its bundle ------------------------------------------------------------


def _built_bundle(tmp_path, dataset):
    from conftest import small_config

    from nnexp import build as b

    built = b.build(small_config(dataset=dataset))
    return Bundle(b.bundle_writer(built)(tmp_path / "model")), built


def test_a_csv_runs_bundle_carries_its_header_and_its_own_labels(tmp_path):
    from nnexp.data import FileSpec

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 2))
    rows = [f"{a:.3f},{c:.3f},{'dog' if a > 0 else 'cat'}" for a, c in X]
    (tmp_path / "pets.csv").write_text("weight,height,animal\n" + "\n".join(rows) + "\n")
    served, built = _built_bundle(
        tmp_path, FileSpec(path=str(tmp_path / "pets.csv"), target="animal")
    )
    assert served.features == ["weight", "height"] and served.labels == ["cat", "dog"]
    raw = built.splits.X_train[:5] * built.splits.scale + built.splits.mean
    indices = Predictor(tmp_path / "model").predict(raw)
    assert served.predict(raw).tolist() == [["cat", "dog"][i] for i in indices]


def test_a_bundled_sets_bundle_carries_sklearns_feature_and_target_names(tmp_path):
    from nnexp.data import IrisSpec

    served, _ = _built_bundle(tmp_path, IrisSpec())
    assert served.features[0] == "sepal length (cm)" and len(served.features) == 4
    assert served.labels == ["setosa", "versicolor", "virginica"]


def test_a_generated_sets_labels_are_its_class_indices(tmp_path):
    from nnexp.data import MoonsSpec

    served, _ = _built_bundle(tmp_path, MoonsSpec(n_samples=60))
    assert served.features == ["x0", "x1"] and served.labels == [0, 1]
