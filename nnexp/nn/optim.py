"""Optimizers: update parameters in place from their `.grad`.

State is keyed by parameter name, and `state_dict()` is a flat ``{str: ndarray}`` so it saves to
an `.npz` checkpoint as is; `load_state_dict` restores it so a resumed run continues bit for bit.
Hyperparameters are cast to the parameters' dtype once (NumPy 2 promotes float32 arrays to
float64 when combined with a float64 *scalar*).

Every update rule here is elementwise, so when the parameters are packed into one vector
(`nnexp.nn.flat.pack`, as `mlp()` builds them) it runs on that vector (in a few cache-sized
chunks) instead of once per parameter: the same arithmetic on the same elements, bit for bit,
with a fraction of the Python overhead. The per-parameter state arrays are then views of flat
state vectors (`nnexp.nn.flat.slot_arrays` lays them out).

Each optimizer states its rule above its fast code (g: the gradient, θ: the parameter, t: the
steps taken, from 1) and names its plain reference: the per-parameter formula in
tests/test_optim.py (`sgd_ref`, `rmsprop_ref`, `adam_ref`), which
test_step_matches_textbook_formula compares with the fast code to 1e-13. That packed and
per-parameter updates agree bit for bit is
tests/test_fast_path.py::test_packed_training_is_bit_for_bit_the_per_parameter_one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import ClassVar

import numpy as np
from numpy.typing import NDArray

from nnexp.nn.flat import slot_arrays
from nnexp.nn.module import FloatArray, Parameter
from nnexp.nn.registry import Registry

OPTIMIZERS: Registry[type[Optimizer]] = Registry("optimizer")
# A flat state_dict: the slots (float arrays), the step count t (int64) and lr (float64).
StateDict = dict[str, NDArray[np.number]]
CastFloat = Callable[[float], np.floating]  # a Python float to the parameters' dtype
CHUNK = 1 << 16  # elements per update call: 5 arrays of 256 KiB (float32) for Adam
# A hyperparameter's limits, in the keywords of `nnexp.schema.bounded` (ge, gt, le, lt, finite).
Limits = Mapping[str, Mapping[str, float | bool]]


class Optimizer:
    slots: tuple[str, ...] = ()  # per-parameter state arrays, e.g. ("m", "v") for Adam
    # The hyperparameters a config may set (``optimizer.<key>``), each with its limits; a
    # subclass adds its own. Their defaults are those of ``__init__``: `nnexp.config` builds
    # each optimizer's config schema from the two, so a new optimizer needs no schema of its own.
    limits: ClassVar[Limits] = {"lr": {"gt": 0, "finite": True}}

    def __init__(self, params: Iterable[Parameter], lr: float) -> None:
        self.params = list(params)
        if not self.params:
            raise ValueError("optimizer got no parameters")
        if not lr > 0:
            raise ValueError(f"learning rate must be > 0, got {lr}")
        self.lr = lr
        self.t = 0  # steps taken
        # state[name][slot]: the arrays state_dict saves; _groups: what each update call gets
        # (the packed vector in chunks of CHUNK elements, or one parameter): flat.slot_arrays.
        self.state, self._groups = slot_arrays(self.params, self.slots, CHUNK)

    def step(self) -> None:
        self.t += 1
        for p, state, scratch in self._groups:
            self.update(p, state, scratch, p.value.dtype.type)

    def update(
        self, p: Parameter, state: dict[str, FloatArray], scratch: FloatArray, f: CastFloat
    ) -> None:
        """Update `p.value` in place; `f` casts Python floats to the parameter's dtype."""
        raise NotImplementedError

    def state_dict(self) -> StateDict:
        flat: StateDict = {"t": np.asarray(self.t, dtype=np.int64), "lr": np.asarray(self.lr)}
        for name, slots in self.state.items():
            for slot, value in slots.items():
                flat[f"{name}/{slot}"] = value
        return flat

    def load_state_dict(self, flat: Mapping[str, NDArray[np.generic]]) -> None:
        """Restore `state_dict`'s arrays, as a checkpoint gives them back (slots are checked)."""
        expected = {"t", "lr"} | {f"{n}/{s}" for n, slots in self.state.items() for s in slots}
        if set(flat) != expected:
            missing, extra = sorted(expected - set(flat)), sorted(set(flat) - expected)
            raise ValueError(f"optimizer state mismatch: missing {missing}, unexpected {extra}")
        for name, slots in self.state.items():
            for slot, value in slots.items():
                src = flat[f"{name}/{slot}"]
                if src.shape != value.shape or src.dtype != value.dtype:
                    raise ValueError(
                        f"optimizer state {name}/{slot}: expected {value.shape} {value.dtype}, "
                        f"got {src.shape} {src.dtype}"
                    )
                np.copyto(value, src)
        self.t = int(flat["t"])
        self.lr = float(flat["lr"])


@OPTIMIZERS.register("sgd")
class SGD(Optimizer):
    """Stochastic gradient descent, with optional momentum μ (PyTorch's formulation):

        θ ← θ - lr·g                  (μ = 0)
        v ← μ·v + g                   (μ > 0; v starts at 0)
        θ ← θ - lr·v                  (momentum)
        θ ← θ - lr·(g + μ·v)          (Nesterov)

    Reference: tests/test_optim.py::sgd_ref; by hand:
    tests/test_exact_nn.py::test_sgd_with_momentum_and_nesterov_step_by_step.
    """

    limits: ClassVar[Limits] = {"momentum": {"ge": 0, "lt": 1}, "nesterov": {}}

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 0.1,
        momentum: float = 0.0,
        nesterov: bool = False,
    ) -> None:
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if nesterov and momentum == 0.0:
            raise ValueError("nesterov needs momentum > 0")
        self.slots = ("velocity",) if momentum else ()
        super().__init__(params, lr)
        self.momentum, self.nesterov = momentum, nesterov

    def update(
        self, p: Parameter, state: dict[str, FloatArray], scratch: FloatArray, f: CastFloat
    ) -> None:
        g = p.grad
        if self.momentum:
            v = state["velocity"]
            v *= f(self.momentum)
            v += g  # v ← μ·v + g
            if self.nesterov:
                np.multiply(v, f(self.momentum), out=scratch)
                scratch += g
                g = scratch  # g + μ·v
            else:
                g = v
        np.multiply(g, f(self.lr), out=scratch)
        p.value -= scratch  # θ ← θ - lr·(g, v or g + μ·v)


@OPTIMIZERS.register("rmsprop")
class RMSprop(Optimizer):
    """RMSprop:

        s ← ρ·s + (1-ρ)·g²            (s starts at 0)
        θ ← θ - lr·g / (√s + ε)

    Reference: tests/test_optim.py::rmsprop_ref.
    """

    slots = ("square_avg",)
    limits: ClassVar[Limits] = {"rho": {"ge": 0, "lt": 1}, "eps": {"gt": 0, "finite": True}}

    def __init__(
        self, params: Iterable[Parameter], lr: float = 0.001, rho: float = 0.9, eps: float = 1e-8
    ) -> None:
        super().__init__(params, lr)
        self.rho, self.eps = rho, eps

    def update(
        self, p: Parameter, state: dict[str, FloatArray], scratch: FloatArray, f: CastFloat
    ) -> None:
        g, s = p.grad, state["square_avg"]
        s *= f(self.rho)
        np.multiply(g, g, out=scratch)
        scratch *= f(1.0 - self.rho)
        s += scratch  # s ← ρ·s + (1-ρ)·g²
        np.sqrt(s, out=scratch)
        scratch += f(self.eps)
        np.divide(g, scratch, out=scratch)
        scratch *= f(self.lr)
        p.value -= scratch  # θ ← θ - lr·g/(√s + ε)


@OPTIMIZERS.register("adam")
class Adam(Optimizer):
    """Adam: moving averages of g and g², bias-corrected with the step count t:

        m ← β1·m + (1-β1)·g           (m, v start at 0)
        v ← β2·v + (1-β2)·g²
        m̂ = m / (1-β1^t);  v̂ = v / (1-β2^t)
        θ ← θ - lr·m̂ / (√v̂ + ε)

    The code folds both bias corrections into one step size (c1 = 1-β1^t, c2 = 1-β2^t), which
    is the same formula with fewer passes over the arrays:

        lr·m̂ / (√v̂ + ε) = (lr·√c2 / c1) · m / (√v + ε·√c2)

    Reference: tests/test_optim.py::adam_ref; two steps by hand:
    tests/test_exact_nn.py::test_optimizer_defaults_are_the_documented_ones.
    """

    slots = ("m", "v")
    limits: ClassVar[Limits] = {
        "beta1": {"ge": 0, "lt": 1},
        "beta2": {"ge": 0, "lt": 1},
        "eps": {"gt": 0, "finite": True},
    }

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 0.001,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
    ) -> None:
        for key, beta in (("beta1", beta1), ("beta2", beta2)):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"{key} must be in [0, 1), got {beta}")
        super().__init__(params, lr)
        self.beta1, self.beta2, self.eps = beta1, beta2, eps

    def update(
        self, p: Parameter, state: dict[str, FloatArray], scratch: FloatArray, f: CastFloat
    ) -> None:
        g, m, v = p.grad, state["m"], state["v"]
        b1, b2 = self.beta1, self.beta2
        m *= f(b1)
        np.multiply(g, f(1.0 - b1), out=scratch)
        m += scratch  # m ← β1·m + (1-β1)·g
        v *= f(b2)
        np.multiply(g, g, out=scratch)
        scratch *= f(1.0 - b2)
        v += scratch  # v ← β2·v + (1-β2)·g²
        # Fold both bias corrections into one step size (same formula, fewer array passes).
        c1, c2 = 1.0 - b1**self.t, 1.0 - b2**self.t
        np.sqrt(v, out=scratch)
        scratch += f(self.eps * math.sqrt(c2))
        np.divide(m, scratch, out=scratch)  # m / (√v + ε·√c2)
        scratch *= f(self.lr * math.sqrt(c2) / c1)
        p.value -= scratch  # θ ← θ - lr·m̂/(√v̂ + ε)


@OPTIMIZERS.register("adamw")
class AdamW(Adam):
    """Adam with decoupled weight decay λ (Loshchilov & Hutter), on weight matrices only
    (`Parameter.decay`); unlike L2 it does not pass through the adaptive scaling:

        θ ← θ - lr·λ·θ                (weights only)
        then the Adam step above.

    Reference: tests/test_optim.py::adam_ref with wd (the "adamw" case);
    tests/test_exact_nn.py::test_adamw_decays_weights_only_and_not_without_weight_decay.
    """

    limits: ClassVar[Limits] = {"weight_decay": {"ge": 0, "finite": True}}

    def __init__(
        self, params: Iterable[Parameter], *, weight_decay: float = 0.01, **adam: float
    ) -> None:
        super().__init__(params, **adam)  # lr, beta1, beta2, eps: Adam's, with its defaults
        self.weight_decay = weight_decay

    def step(self) -> None:
        # Decay first, then the Adam step: per element the same order as decaying each
        # parameter just before its own update.
        if self.weight_decay:
            for p in self.params:
                if p.decay:
                    p.value *= p.value.dtype.type(1.0 - self.lr * self.weight_decay)  # θ -= lr·λ·θ
        super().step()
