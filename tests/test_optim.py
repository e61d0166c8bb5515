"""Each optimizer against its textbook formula, and state_dict round trips that continue
bit for bit."""

import numpy as np
import pytest

from nnexp.nn import OPTIMIZERS, SGD, Adam, AdamW, Parameter, RMSprop
from nnexp.nn.gradients import add_l2_grad, clip_by_global_norm, clip_by_value, l2_penalty

STEPS = 4


def _params(rng, dtype=np.float64):
    w = Parameter("dense_0/W", rng.standard_normal((3, 2)).astype(dtype), decay=True)
    b = Parameter("dense_0/b", rng.standard_normal(2).astype(dtype))
    return [w, b]


def _grads(rng, params, steps=STEPS):
    return [[rng.standard_normal(p.value.shape) for p in params] for _ in range(steps)]


def _run(opt, params, grads):
    for step_grads in grads:
        for p, g in zip(params, step_grads, strict=True):
            p.grad[...] = g
        opt.step()
    return [p.value.copy() for p in params]


def _reference(update, params, grads):
    """Apply `update(w, g, state, t, decay)` per parameter: the formula written plainly."""
    values = [p.value.copy() for p in params]
    states = [{} for _ in params]
    for t, step_grads in enumerate(grads, start=1):
        for i, g in enumerate(step_grads):
            values[i] = update(values[i], g, states[i], t, params[i].decay)
    return values


def sgd_ref(lr, mu=0.0, nesterov=False):
    def update(w, g, s, t, decay):
        if not mu:
            return w - lr * g
        s["v"] = mu * s.get("v", 0) + g
        return w - lr * (g + mu * s["v"] if nesterov else s["v"])

    return update


def rmsprop_ref(lr, rho=0.9, eps=1e-8):
    def update(w, g, s, t, decay):
        s["sq"] = rho * s.get("sq", 0) + (1 - rho) * g**2
        return w - lr * g / (np.sqrt(s["sq"]) + eps)

    return update


def adam_ref(lr, b1=0.9, b2=0.999, eps=1e-8, wd=0.0):
    def update(w, g, s, t, decay):
        if wd and decay:
            w = w - lr * wd * w
        s["m"] = b1 * s.get("m", 0) + (1 - b1) * g
        s["v"] = b2 * s.get("v", 0) + (1 - b2) * g**2
        m_hat, v_hat = s["m"] / (1 - b1**t), s["v"] / (1 - b2**t)
        return w - lr * m_hat / (np.sqrt(v_hat) + eps)

    return update


CASES = {
    "sgd": (lambda p: SGD(p, lr=0.1), sgd_ref(0.1)),
    "momentum": (lambda p: SGD(p, lr=0.1, momentum=0.9), sgd_ref(0.1, 0.9)),
    "nesterov": (lambda p: SGD(p, lr=0.1, momentum=0.9, nesterov=True), sgd_ref(0.1, 0.9, True)),
    "rmsprop": (lambda p: RMSprop(p, lr=0.01, rho=0.9), rmsprop_ref(0.01, 0.9)),
    "adam": (lambda p: Adam(p, lr=0.01), adam_ref(0.01)),
    "adamw": (lambda p: AdamW(p, lr=0.01, weight_decay=0.1), adam_ref(0.01, wd=0.1)),
}


@pytest.mark.parametrize("name", CASES)
def test_step_matches_textbook_formula(name):
    make, reference = CASES[name]
    rng = np.random.default_rng(0)
    params = _params(rng)
    grads = _grads(rng, params)
    expected = _reference(reference, params, grads)
    got = _run(make(params), params, grads)
    for e, g in zip(expected, got, strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-13, atol=1e-15)


def test_adam_bias_correction_uses_step_count():
    """First Adam step moves each weight by ~lr whatever the gradient's scale."""
    p = Parameter("w", np.zeros(3), decay=True)
    p.grad[...] = [1e-3, 1.0, 1e3]
    Adam([p], lr=0.01).step()
    np.testing.assert_allclose(p.value, -0.01, rtol=1e-4)


@pytest.mark.parametrize("name", CASES)
def test_state_dict_round_trip_continues_bit_identically(name):
    make, _ = CASES[name]
    rng = np.random.default_rng(1)
    params = _params(rng)
    grads = _grads(rng, params, steps=6)
    opt = make(params)
    _run(opt, params, grads[:3])
    saved_values = [p.value.copy() for p in params]
    saved_state = {k: v.copy() for k, v in opt.state_dict().items()}
    final = _run(opt, params, grads[3:])

    clones = _params(np.random.default_rng(99))
    for c, v in zip(clones, saved_values, strict=True):
        c.value[...] = v
    resumed = make(clones)
    resumed.load_state_dict(saved_state)
    again = _run(resumed, clones, grads[3:])
    for a, b in zip(final, again, strict=True):
        assert np.array_equal(a, b)


def test_load_state_dict_refuses_mismatch():
    rng = np.random.default_rng(2)
    state = Adam(_params(rng), lr=0.1).state_dict()
    with pytest.raises(ValueError, match="optimizer state mismatch"):
        SGD(_params(rng), lr=0.1, momentum=0.9).load_state_dict(state)
    bad = dict(state)
    bad["dense_0/W/m"] = np.zeros((2, 3))
    with pytest.raises(ValueError, match=r"dense_0/W/m: expected \(3, 2\)"):
        Adam(_params(rng), lr=0.1).load_state_dict(bad)


@pytest.mark.parametrize("name", CASES)
def test_float32_stays_float32(name):
    make, _ = CASES[name]
    rng = np.random.default_rng(3)
    params = _params(rng, np.float32)
    _run(make(params), params, [[g.astype(np.float32) for g in s] for s in _grads(rng, params)])
    assert all(p.value.dtype == np.float32 for p in params)


def test_invalid_hyperparameters_are_named():
    p = _params(np.random.default_rng(0))
    with pytest.raises(ValueError, match="learning rate must be > 0, got 0"):
        SGD(p, lr=0)
    with pytest.raises(ValueError, match="momentum must be in"):
        SGD(p, lr=0.1, momentum=1.5)
    with pytest.raises(ValueError, match="nesterov needs momentum"):
        SGD(p, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="unknown optimizer 'adamax'; allowed: adam, adamw"):
        OPTIMIZERS.lookup("adamax")


def test_l2_penalty_and_its_gradient_touch_weights_only():
    w, b = _params(np.random.default_rng(4))
    w.grad[...] = 0
    b.grad[...] = 0
    add_l2_grad([w, b], 0.5)
    np.testing.assert_allclose(w.grad, 0.5 * w.value)
    assert not b.grad.any()
    assert l2_penalty([w, b], 0.5) == pytest.approx(0.25 * np.sum(w.value**2))


def test_clipping_by_global_norm_and_by_value():
    w, b = _params(np.random.default_rng(5))
    w.grad[...] = 3.0
    b.grad[...] = 4.0
    total = np.sqrt(6 * 9 + 2 * 16)
    assert clip_by_global_norm([w, b], 1.0) == pytest.approx(total)
    new_total = np.sqrt(np.sum(w.grad**2) + np.sum(b.grad**2))
    assert new_total == pytest.approx(1.0)
    np.testing.assert_allclose(w.grad / b.grad, 0.75)  # direction kept
    assert clip_by_global_norm([w, b], 10.0) == pytest.approx(1.0)  # under the limit: untouched
    w.grad[...] = [[-5, 0.5]] * 3
    clip_by_value([w], 1.0)
    np.testing.assert_array_equal(w.grad, [[-1, 0.5]] * 3)
