"""The effects of the options of the tutorial's last lessons (issue 16), in the style of
test_option_effects.py (composed configs through the CLI's own `run` and `build`):
`model.residual`, `model.hidden=[]`, `trainer.precision`, `trainer.loss_scale`."""

from __future__ import annotations

import numpy as np
import pytest
from test_option_effects import built, run_cli  # noqa: F401 (run_cli: a fixture)

from nnexp.nn import Dense, Residual, Skip
from nnexp.train.export import Predictor

# --- model.residual --------------------------------------------------------------------------


def test_residual_wraps_every_hidden_block_and_projects_where_the_width_changes():
    plain = built("model.hidden=[8,8,4]").model
    res = built("model.hidden=[8,8,4]", "model.residual=true").model
    assert not any(isinstance(m, Skip | Residual) for m in plain.modules)
    blocks = [m for m in res.modules if isinstance(m, Residual)]
    assert [m.name for m in res.modules if isinstance(m, Skip)] == ["skip_0", "skip_1", "skip_2"]
    assert [b.name for b in blocks] == ["residual_0", "residual_1", "residual_2"]
    # 2 → 8: a projection; 8 → 8: the identity; 8 → 4: a projection.
    assert [None if b.P is None else b.P.value.shape for b in blocks] == [(2, 8), None, (8, 4)]
    assert isinstance(res.modules[-1], Dense)  # the output layer has no shortcut
    # The same Dense layers otherwise.
    widths = [m.W.value.shape for m in res.modules if isinstance(m, Dense)]
    assert widths == [m.W.value.shape for m in plain.modules if isinstance(m, Dense)]


def test_residual_training_checkpoints_and_serves(run_cli, tmp_path):  # noqa: F811
    trainer = run_cli(
        "model.residual=true",
        "model.hidden=[6,6]",
        "trainer.epochs=3",
        "trainer.stats=[update_ratio,weight_norm]",
    )
    names = [p.name for p in trainer.params]
    assert "residual_0/W" in names and "residual_1/W" not in names  # 2→6 projected, 6→6 not
    keys = trainer.history[-1].keys()
    assert {"update_ratio/residual_0", "weight_norm/residual_0"} <= keys
    i = names.index("residual_0/W")
    assert (trainer.initial[i] != trainer.params[i].value).any()  # the projection learns
    predictor = Predictor(trainer.run_dir / "model")  # the bundle rebuilds the architecture
    served = list(predictor.model.parameters())
    assert [p.name for p in served] == names
    for p, q in zip(served, trainer.params, strict=True):
        np.copyto(p.value, q.value)
    X = trainer.data.X_val
    np.testing.assert_array_equal(
        predictor.model.forward(X), trainer.model.forward(X, training=False)
    )
    assert predictor.spec["mlp"]["residual"] is True


@pytest.mark.parametrize("hidden", ["[]", "[4]"])
def test_no_hidden_layer_builds_a_linear_model(hidden):
    model = built(f"model.hidden={hidden}").model
    dense = [m for m in model.modules if isinstance(m, Dense)]
    assert len(dense) == (1 if hidden == "[]" else 2)
    assert dense[0].W.value.shape[0] == 2  # two moons' two features


# --- trainer.precision, trainer.loss_scale ---------------------------------------------------

# The mixed_precision page's network: ten sigmoid layers whose first layers' gradients fall
# below float16's smallest number (2^-24) — measured: 30 epochs on two moons reach val/acc 0.87
# in float32, 0.50 in mixed without scaling, 0.815 with dynamic scaling.
DEEP_SIGMOID = (
    "model.activation=sigmoid",
    "model.hidden=[32,32,32,32,32,32,32,32,32,32]",
    "model.init=xavier",
    "optimizer=adam",
    "optimizer.lr=0.01",
    "trainer.batch_size=128",
    "dataset.n_samples=1000",
)


def test_loss_scaler_dynamic_halves_and_skips_on_overflow_and_doubles_after_clean_steps():
    from nnexp.nn.amp import LossScaler

    s = LossScaler("dynamic", growth_interval=3)
    assert s.scale == 2.0**16
    assert s.skip() and s.scale == 2.0**15 and s.skipped_steps == 1
    s.clean(), s.clean()
    assert s.scale == 2.0**15
    s.clean()
    assert s.scale == 2.0**16 and s.clean_steps == 0
    s.scale = 1.0  # no room to halve: an overflow at scale 1 is a divergence
    assert not s.skip() and s.skipped_steps == 1
    for setting, scale in (("none", 1.0), ("1024", 1024.0)):
        fixed = LossScaler(setting, growth_interval=1)
        assert fixed.scale == scale and not fixed.skip()
        fixed.clean()
        assert fixed.scale == scale and fixed.skipped_steps == 0


def test_mixed_runs_float16_passes_on_float32_master_weights(run_cli):  # noqa: F811
    """Every activation of a step holds float16 values; the weights, their gradients' dtype,
    the optimizer's state and the data stay float32; the metrics name the scale."""
    from nnexp.nn import Activation

    trainer = run_cli("trainer.precision=mixed", "trainer.stats=[activations]", "trainer.epochs=1")
    assert all(p.value.dtype == np.float32 for p in trainer.params)
    assert trainer.data.X_train.dtype == np.float32
    relu = next(m for m in trainer.model.modules if isinstance(m, Activation))
    out = relu.output
    np.testing.assert_array_equal(out, out.astype(np.float16).astype(np.float32))
    assert not all(  # the master weights are not rounded
        np.array_equal(p.value, p.value.astype(np.float16).astype(np.float32))
        for p in trainer.params
    )
    last = trainer.history[-1]
    assert last["amp/loss_scale"] in {2.0**k for k in range(17)}
    plain = run_cli("trainer.epochs=1")
    assert not any(k.startswith("amp/") for k in plain.history[-1])


def test_without_loss_scaling_the_pages_network_loses_its_gradients_to_underflow(run_cli):  # noqa: F811
    common = (*DEEP_SIGMOID, "trainer.epochs=2", "trainer.stats=[grad_norm]")
    unscaled = run_cli(*common, "trainer.precision=mixed", "trainer.loss_scale=none")
    scaled = run_cli(*common, "trainer.precision=mixed")
    first = "amp/underflow/dense_0"
    lost, kept = unscaled.history[-1][first], scaled.history[-1][first]
    assert lost > 0.9, unscaled.history[-1]  # measured: all of the first layer's gradient
    assert kept < 0.1, scaled.history[-1]
    # Lost gradients: the first layer's weights never move (Adam's update of a 0 is 0).
    i = [p.name for p in unscaled.params].index("dense_0/W")
    assert np.array_equal(unscaled.initial[i], unscaled.params[i].value)
    assert not np.array_equal(scaled.initial[i], scaled.params[i].value)


@pytest.mark.parametrize(
    "dataset",
    ["dataset=moons", pytest.param("dataset=digits", marks=pytest.mark.slow)],
)
def test_mixed_with_dynamic_scaling_reaches_float32_accuracy_within_one_point(
    run_cli,  # noqa: F811
    monkeypatch,
    dataset,
):
    import test_option_effects

    small = tuple(o for o in test_option_effects.BASE if not o.startswith("dataset.n_samples"))
    monkeypatch.setattr(test_option_effects, "BASE", small)  # digits has no n_samples
    common = (dataset, "optimizer=adam", "optimizer.lr=0.01", "model.hidden=[32,32]")
    common += ("trainer.epochs=20",)
    full = run_cli(*common)
    mixed = run_cli(*common, "trainer.precision=mixed")
    a, b = full.history[-1]["val/acc"], mixed.history[-1]["val/acc"]
    assert a > 0.9 and abs(a - b) <= 0.01, (a, b)


def test_resume_under_mixed_is_bit_for_bit_the_uninterrupted_run(run_cli):  # noqa: F811
    common = ("trainer.precision=mixed", "trainer.checkpoint_every=2", "trainer.batch_size=8")
    common += ("dataset=regression",)  # its first gradients overflow at 2^16: steps are skipped
    straight = run_cli(*common, "trainer.epochs=4")
    skipped = straight.scaler.skipped_steps
    assert skipped == 3 and straight.scaler.scale == 2.0**13  # measured
    checkpoint = straight.run_dir / "checkpoints" / "epoch_0002.npz"
    resumed = run_cli(*common, "trainer.epochs=4", f"trainer.resume={checkpoint}")
    assert resumed.scaler.skipped_steps == skipped and resumed.scaler.scale == straight.scaler.scale
    for p, q in zip(straight.params, resumed.params, strict=True):
        np.testing.assert_array_equal(p.value, q.value)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ("trainer.precision=mixed", "trainer.dtype=float64"),
            "trainer.dtype='float64': an alias of trainer.precision, which is 'mixed'",
        ),
        (("trainer.loss_scale=1024",), "trainer.precision (with trainer.loss_scale)='float32'"),
        (
            ("trainer.precision=mixed", "trainer.loss_scale=-2"),
            "trainer.loss_scale='-2': must be dynamic, none or a number > 0",
        ),
    ],
)
def test_conflicting_precision_settings_are_refused(overrides, message):
    from nnexp.config import ConfigError

    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        built(*overrides)


def test_dtype_is_an_alias_of_precision():
    assert built("trainer.dtype=float64").model[0].W.value.dtype == np.float64
    assert built("trainer.precision=float64").model[0].W.value.dtype == np.float64
    assert built("trainer.precision=mixed").model[0].W.value.dtype == np.float32
