"""`model.hidden=[]`: the tutorial's single neuron — one Dense layer with the task's fused loss
(logistic, softmax or linear regression) — trains, is tracked and is served like any model;
and the statistics every run logs now include each layer's weight norm and the output's
range (`weight_norm/<layer>`, `output/min|max|mean`, `output/class_<k>`), in MLflow."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import model_rows

from nnexp.nn import Dense, StepStats, mlp
from nnexp.nn.gradients import norm

# (dataset, task, features, outputs, what a linear model reaches on it)
CASES = [
    ("moons", "binary", 2, 1, ("val/acc", 0.8)),  # measured: 0.86 (the moons are not linear)
    pytest.param("iris", "multiclass", 4, 3, ("val/acc", 0.8), marks=pytest.mark.slow),  # 0.97
    # measured: 53 (the target's std: 77)
    pytest.param("diabetes", "regression", 10, 1, ("val/rmse", 65.0), marks=pytest.mark.slow),
]


def test_no_hidden_layer_is_one_dense_layer_from_inputs_to_outputs():
    model = mlp(5, [], 3, seed=0)
    (layer,) = model.modules
    assert isinstance(layer, Dense) and layer.W.value.shape == (5, 3)
    assert [p.name for p in model.parameters()] == ["dense_0/W", "dense_0/b"]
    x = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    np.testing.assert_array_equal(model.forward(x), x @ layer.W.value + layer.b.value)


def test_weight_norms_and_the_output_range_over_an_epochs_sampled_steps():
    """‖W‖ per weight matrix (not biases) as the mean over the sampled steps; the output's
    min and max as the epoch's extremes, its mean and the class fractions as means."""
    model = mlp(3, [4], 3, seed=0)
    params = list(model.parameters())
    stats = StepStats(params, [], ["weight_norm", "output"], classes=3)
    steps = [
        (np.array([[-1.0, 2.0, 0.0], [0.5, 0.5, 3.0]]), np.array([1, 2])),
        (np.array([[-4.0, 1.0, 1.0], [0.0, 0.0, 0.0]]), np.array([1, 1])),
    ]
    norms = []
    for logits, predicted in steps:
        norms.append([norm(p.value) for p in params])
        stats.sample([0.0] * len(params), 0.1, None, logits, predicted)
        params[0].value *= 2  # the weights change between the steps
    summary = stats.summary()
    assert set(summary) == {
        "weight_norm/dense_0",
        "weight_norm/dense_1",
        "output/min",
        "output/max",
        "output/mean",
        "output/class_0",
        "output/class_1",
        "output/class_2",
    }
    assert summary["weight_norm/dense_0"] == pytest.approx((norms[0][0] + norms[1][0]) / 2)
    assert summary["weight_norm/dense_1"] == pytest.approx(norms[0][2])
    assert summary["output/min"] == -4.0 and summary["output/max"] == 3.0
    assert summary["output/mean"] == pytest.approx((5.0 / 6 + -2.0 / 6) / 2)
    assert summary["output/class_0"] == 0.0
    assert summary["output/class_1"] == pytest.approx((0.5 + 1.0) / 2)
    assert summary["output/class_2"] == pytest.approx(0.25)


@pytest.mark.parametrize(("dataset", "task", "features", "outputs", "quality"), CASES)
def test_a_linear_model_trains_is_tracked_and_served(
    cli, monkeypatch, dataset, task, features, outputs, quality
):
    import mlflow

    cli.ok(
        "model.hidden=[]",
        f"dataset={dataset}",
        "optimizer=adam",
        "optimizer.lr=0.05",
        "trainer.epochs=30",
    )
    (run,) = cli.runs()
    metrics, tags = run.data.metrics, run.data.tags
    assert tags["task"] == task and run.info.status == "FINISHED"
    assert run.data.params["model.hidden"] == "[]"
    key, bound = quality
    assert (metrics[key] >= bound) if key.endswith("acc") else (metrics[key] <= bound), metrics
    # The statistics of a network with no hidden layer: one weight matrix, no activation.
    assert {"weight_norm/dense_0", "grad_norm/dense_0/W/mean", "update_ratio/dense_0"} <= set(
        metrics
    )
    assert not any(k.startswith("act/") or k.startswith("weight_norm/dense_1") for k in metrics)
    assert metrics["output/min"] <= metrics["output/mean"] <= metrics["output/max"]
    classes = {k for k in metrics if k.startswith("output/class_")}
    if task == "regression":
        assert not classes
    else:  # the predicted-class histogram: a fraction per class, summing to 1
        assert classes == {f"output/class_{k}" for k in range(max(outputs, 2))}
        assert sum(metrics[k] for k in classes) == pytest.approx(1.0)
    history = cli.client().get_metric_history(run.info.run_id, "weight_norm/dense_0")
    assert [m.step for m in history] == list(range(1, 31))  # every epoch, like the others
    monkeypatch.setenv("MLFLOW_TRACKING_URI", cli.uri)
    model = mlflow.pyfunc.load_model(tags["model_uri"])
    X = np.random.default_rng(0).standard_normal((7, features))
    predicted = np.asarray(model.predict(model_rows(model, X)))
    assert len(predicted) == 7
    # values; moons' labels 0 and 1; iris's target names
    assert predicted.dtype.kind == {"regression": "f", "binary": "i", "multiclass": "U"}[task]
