"""Exact behaviour, in-process, of emulated mixed precision (`nnexp.nn.amp`): the loss-scale
setting and its refusals, when the dynamic scaler may still halve, the checkpointed state, the
float16 passes (every gradient flowing back is rounded, the master gradients are unscaled) and
the underflow statistic, checked against an independent float32 backward pass.

Written for the mutation run (`make mutate`, tests/mutants.md): mixed precision was reached
in process only through whole training runs, which check the lesson (scaling lifts the
underflow) but not each number."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from nnexp.nn import mlp
from nnexp.nn.amp import (
    INITIAL_SCALE,
    FullPrecision,
    HalfPrecision,
    LossScaler,
    _layers,
    parse_loss_scale,
    to_half,
)


def test_to_half_rounds_in_place_and_overflows_to_inf_without_a_warning():
    a = np.array([1.0 + 2.0**-12, 7e4, -7e4, 2.0**-26, 0.1], dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the overflow to Inf is float16's, not a mistake
        out = to_half(a)
    assert out is a
    np.testing.assert_array_equal(a, [1.0, np.inf, -np.inf, 0.0, np.float16(0.1)])


def test_the_loss_scale_setting_and_its_refusals():
    assert parse_loss_scale("dynamic") == ("dynamic", INITIAL_SCALE) == ("dynamic", 65536.0)
    assert parse_loss_scale("none") == ("none", 1.0)
    assert parse_loss_scale("8") == ("static", 8.0)
    assert parse_loss_scale("0.5") == ("static", 0.5)  # below 1 is allowed: any S > 0
    with pytest.raises(ValueError) as info:
        parse_loss_scale("auto")
    assert str(info.value) == "'auto' is not dynamic, none or a number"
    for bad in ("0", "-2", "inf", "nan"):
        with pytest.raises(ValueError) as info:
            parse_loss_scale(bad)
        assert str(info.value) == f"'{bad}': a static loss scale must be a finite number > 0"


def test_the_dynamic_scaler_halves_down_to_one_and_no_further():
    scaler = LossScaler("dynamic")
    scaler.scale = 2.0
    assert scaler.skip() is True and scaler.scale == 1.0 and scaler.skipped_steps == 1
    assert scaler.skip() is False and scaler.scale == 1.0  # no room left: a divergence
    assert scaler.skipped_steps == 1


def test_the_scalers_state_is_float64_arrays():
    scaler = LossScaler("dynamic", growth_interval=5)
    scaler.skip(), scaler.clean(), scaler.clean()
    state = scaler.state_dict()
    assert {k: (v.dtype, float(v)) for k, v in state.items()} == {
        "scale": (np.float64, INITIAL_SCALE / 2),
        "clean_steps": (np.float64, 2.0),
        "skipped_steps": (np.float64, 1.0),
    }


def test_layers_are_the_spans_of_each_layers_parameters_in_the_packed_vector():
    model = mlp(3, [4], 2, seed=0)
    assert _layers(list(model.parameters())) == [("dense_0", 0, 16), ("dense_1", 16, 26)]
    bn = mlp(3, [4], 2, batch_norm=True, seed=0)
    assert _layers(list(bn.parameters())) == [
        ("dense_0", 0, 16), ("batchnorm_0", 16, 24), ("dense_1", 24, 34),
    ]  # fmt: skip


def test_half_precision_needs_packed_values_and_gradients():
    message = "mixed precision needs the model's parameters packed (mlp packs them)"
    model = mlp(2, [3], 1, seed=0)
    for p in model.parameters():
        p.value = p.value.copy()  # neither packed
        p.grad = p.grad.copy()
    with pytest.raises(ValueError) as info:
        HalfPrecision(model, LossScaler())
    assert str(info.value) == message
    model = mlp(2, [3], 1, seed=0)
    first = next(iter(model.parameters()))
    first.grad = first.grad.copy()  # the values packed, one gradient not
    with pytest.raises(ValueError) as info:
        HalfPrecision(model, LossScaler())
    assert str(info.value) == message


def _model(batch_norm: bool = False):
    model = mlp(3, [4], 2, activation="tanh", batch_norm=batch_norm, seed=1)
    return model, list(model.parameters())


def _reference_grads(model, params, x, dlogits, scale: float) -> np.ndarray:
    """The float32 gradients of the scaled loss, with no float16 rounding (the model's own
    passes on the float16-rounded weights, as in a mixed step)."""
    saved = [p.value.copy() for p in params]
    for p in params:
        to_half(p.value)
    full = FullPrecision(model)
    full.forward(to_half(x.copy()))
    full.backward(dlogits * np.float32(scale))
    for p, v in zip(params, saved, strict=True):
        p.value[...] = v
    return np.concatenate([p.grad.ravel() for p in params])


def _half_step(half: HalfPrecision, x, dlogits, sample: bool) -> bool:
    with half.step():
        half.forward(x)
        return half.backward(dlogits, sample=sample)


def _batch(rng, tiny: float) -> tuple[np.ndarray, np.ndarray]:
    x = rng.standard_normal((8, 3)).astype(np.float32)
    x[:, 2] = 0.0  # a dead input: its weights' gradients are 0 in both arithmetics
    dlogits = (rng.standard_normal((8, 2)) * tiny).astype(np.float32)
    return x, dlogits


def _sampled_step(half: HalfPrecision, rng, tiny: float) -> list[float]:
    """One sampled step of an unscaled model; per layer, the fraction of its gradient entries
    nonzero in the independent float32 pass and zero after the float16 one."""
    x, dlogits = _batch(rng, tiny)
    reference = _reference_grads(half.model, half.params, x, dlogits, 1.0)
    assert _half_step(half, x, dlogits, sample=True) is True
    lost = (reference != 0) & (half.grads == 0)
    return [lost[a:b].mean() for _, a, b in half.layers]


def test_underflow_is_the_fraction_per_layer_of_gradients_float16_flushed_to_zero():
    model, _ = _model()
    half = HalfPrecision(model, LossScaler("none"))
    assert half.underflow() == {}  # nothing sampled yet
    rng = np.random.default_rng(0)
    expected = [_sampled_step(half, rng, tiny) for tiny in (3e-7, 1e-6)]
    mean = np.mean(expected, axis=0)
    assert mean.min() > 0 and mean.max() < 1 and len(set(mean)) == 2  # a real test
    assert expected[0] != expected[1]
    assert half.underflow() == {"dense_0": mean[0], "dense_1": mean[1]}
    assert half.underflow() == {}  # reset: a new period starts
    again = _sampled_step(half, rng, 3e-7)
    assert half.underflow() == {"dense_0": again[0], "dense_1": again[1]}


def test_an_unsampled_step_is_not_counted():
    model, _ = _model()
    half = HalfPrecision(model, LossScaler("none"))
    x, dlogits = _batch(np.random.default_rng(0), 3e-7)
    with half.step():
        half.forward(x)
        half.backward(dlogits)  # sample=False by default: no reference pass, no count
    assert half.underflow() == {}


def test_every_gradient_flowing_back_is_rounded_to_float16():
    # dlogits below float16's smallest subnormal: rounded, the whole backward pass is zero
    # (in float32 arithmetic the output layer's weight gradients would reach ~1e-7).
    model, params = _model()
    half = HalfPrecision(model, LossScaler("none"))
    x = np.full((8, 3), 50.0, dtype=np.float32)
    dlogits = np.full((8, 2), 2.0**-26, dtype=np.float32)
    assert _reference_grads(model, params, x, dlogits, 1.0).any()
    _half_step(half, x, dlogits, sample=False)
    assert not half.grads.any()


def test_the_master_gradients_are_unscaled_and_the_weights_restored():
    model, params = _model(batch_norm=True)  # batch norm: a layer whose dx is needed in between
    half = HalfPrecision(model, LossScaler("8"))
    rng = np.random.default_rng(2)
    x = rng.standard_normal((8, 3)).astype(np.float32)
    dlogits = rng.standard_normal((8, 2)).astype(np.float32) / 8
    master = half.values.copy()
    reference = _reference_grads(model, params, x, dlogits, 1.0)
    assert _half_step(half, x, dlogits, sample=True) is True
    np.testing.assert_allclose(half.grads, reference, rtol=2e-3, atol=1e-4)
    np.testing.assert_array_equal(half.values, master)  # float32 weights back after the step
