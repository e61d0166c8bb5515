"""Mixed precision: float16 forward and backward passes on float32 master weights, with loss
scaling (``trainer.precision=mixed``, ``trainer.loss_scale``).

What this models, and what it does not. NumPy has no float16 BLAS: a float16 matrix product
falls back to a slow loop. So every product here runs in float32 on float16 values and its
result is rounded to float16 — what a GPU does with float16 inputs and float32 accumulation.
The arrays keep their float32 dtype but hold only float16 values: each layer's output, each
gradient flowing back and each parameter gradient is rounded to float16 as it is produced, so
float16's 11-bit precision, its overflow beyond 65504 to Inf and its underflow below 2⁻²⁴
(≈ 6e-8) to zero are reproduced exactly. Its memory savings and its speed are not: the rounding
is an extra pass per layer, so a mixed step is *slower* than a float32 one here (the benchmark
says how much). The weights are rounded to float16 for the step's passes; the optimizer updates
the float32 master copy, with float32 state. Evaluation and the served model use the master
weights in float32.

Loss scaling. Gradients of a well-trained or deep network are small: below 6e-8 they become 0
in float16 and that part of the signal is lost (below 6e-5 they lose precision). Multiplying the
loss by S multiplies every gradient by S, lifting them into range; after the backward pass the
float32 master gradients are divided by S again. `LossScaler` does it three ways: ``none``
(S = 1), a number (static S), and ``dynamic`` — the usual policy: start high (2¹⁶), and when a
scaled gradient overflows to Inf/NaN, skip the step (no update) and halve S; after
`growth_interval` clean steps in a row, double it. Skipped steps are expected and counted; an
overflow with no room left to halve (S = 1, or a static or no scale) is a divergence, for the
trainer's NaN guard to report.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np

from nnexp.nn.flat import flat_view
from nnexp.nn.module import FloatArray, Parameter, Sequential

DYNAMIC, NONE = "dynamic", "none"
INITIAL_SCALE = 2.0**16  # dynamic scaling starts here (as PyTorch's GradScaler does)
GROWTH_INTERVAL = 2000  # clean steps before the dynamic scale doubles


def to_half(a: FloatArray) -> FloatArray:
    """Round `a` in place to the nearest float16 value (Inf beyond ±65504, 0 below 2⁻²⁵)."""
    with np.errstate(over="ignore"):
        np.copyto(a, a.astype(np.float16))
    return a


def parse_loss_scale(value: str) -> tuple[str, float]:
    """``dynamic``, ``none`` or a number > 0: (policy, starting scale). ValueError otherwise."""
    if value in (DYNAMIC, NONE):
        return value, INITIAL_SCALE if value == DYNAMIC else 1.0
    try:
        scale = float(value)
    except ValueError:
        raise ValueError(f"{value!r} is not dynamic, none or a number") from None
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"{value!r}: a static loss scale must be a finite number > 0")
    return "static", scale


class LossScaler:
    """The loss scale S and its policy (see the module's docstring); `state_dict` is what a
    checkpoint keeps, so a resumed run scales as the uninterrupted one would."""

    def __init__(self, setting: str = DYNAMIC, growth_interval: int = GROWTH_INTERVAL) -> None:
        self.policy, self.scale = parse_loss_scale(setting)
        self.growth_interval = growth_interval
        self.clean_steps = 0  # in a row, since the last change of scale
        self.skipped_steps = 0  # in the whole run

    def skip(self) -> bool:
        """The scaled gradients overflowed. Dynamic with room to halve: halve, count the step as
        skipped and return True; otherwise False (a divergence: not the scaler's to handle)."""
        if self.policy != DYNAMIC or self.scale <= 1.0:
            return False
        self.scale /= 2
        self.clean_steps = 0
        self.skipped_steps += 1
        return True

    def clean(self) -> None:
        """A step whose gradients were finite: dynamic scaling doubles S every
        `growth_interval` of them in a row."""
        if self.policy != DYNAMIC:
            return
        self.clean_steps += 1
        if self.clean_steps >= self.growth_interval:
            self.scale *= 2
            self.clean_steps = 0

    def state_dict(self) -> dict[str, FloatArray]:
        return {
            "scale": np.asarray(self.scale, dtype=np.float64),
            "clean_steps": np.asarray(self.clean_steps, dtype=np.float64),
            "skipped_steps": np.asarray(self.skipped_steps, dtype=np.float64),
        }

    def load_state_dict(self, state: dict[str, FloatArray]) -> None:
        self.scale = float(state["scale"])
        self.clean_steps = int(state["clean_steps"])
        self.skipped_steps = int(state["skipped_steps"])


class FullPrecision:
    """The model's own training passes (float32 or float64): what `HalfPrecision` emulates."""

    def __init__(self, model: Sequential) -> None:
        self.model = model

    @contextmanager
    def step(self) -> Iterator[None]:
        yield

    def forward(self, x: FloatArray) -> FloatArray:
        return self.model.forward(x, training=True)

    def backward(self, dlogits: FloatArray, sample: bool = False) -> bool:
        self.model.backward(dlogits, need_dx=False)
        return True


class HalfPrecision:
    """A packed model's (`nnexp.nn.pack`) training passes in emulated float16, with loss
    scaling: ``with step(): forward(x) … backward(dlogits)``. Inside `step` the weights hold
    their float16 values; on leaving it the float32 master weights are put back. `backward`
    leaves the unscaled float32 gradients in the parameters' ``grad`` and returns True, or
    returns False for a step the scaler skips (its gradients are then not to be used)."""

    def __init__(self, model: Sequential, scaler: LossScaler) -> None:
        self.model, self.scaler = model, scaler
        self.params = list(model.parameters())
        values = flat_view([p.value for p in self.params])
        grads = flat_view([p.grad for p in self.params])
        if values is None or grads is None:
            raise ValueError("mixed precision needs the model's parameters packed (mlp packs them)")
        self.values, self.grads = values, grads
        self.master = np.empty_like(values)
        self.layers = _layers(self.params)
        self._underflow = np.zeros(len(self.layers))  # sums over the epoch's sampled steps
        self._samples = 0

    @contextmanager
    def step(self) -> Iterator[None]:
        np.copyto(self.master, self.values)
        to_half(self.values)
        try:
            yield
        finally:
            np.copyto(self.values, self.master)

    def forward(self, x: FloatArray) -> FloatArray:
        x = to_half(x.copy())
        for m in self.model.modules:
            x = to_half(m.forward(x, training=True))
        return x

    def backward(self, dlogits: FloatArray, sample: bool = False) -> bool:
        scale = self.scaler.scale
        reference = self._reference(dlogits, scale) if sample else None
        self._backward(dlogits, scale, half=True)
        to_half(self.grads)
        if reference is not None:
            self._count_underflow(reference)
        if not math.isfinite(float(np.vdot(self.grads, self.grads))) and self.scaler.skip():
            return False
        self.grads *= self.grads.dtype.type(1.0 / scale)  # exact for a power of two
        self.scaler.clean()
        return True

    def _backward(self, dlogits: FloatArray, scale: float, half: bool) -> None:
        dy: FloatArray | None = dlogits * dlogits.dtype.type(scale)
        modules = self.model.modules
        for i in range(len(modules) - 1, -1, -1):
            assert dy is not None
            if half:
                to_half(dy)
            dy = modules[i].backward(dy, need_dx=i > 0)

    def _reference(self, dlogits: FloatArray, scale: float) -> FloatArray:
        """The same backward pass without float16 rounding (on a sampled step): the gradient
        entries that float16 then flushes to zero are the underflow."""
        self._backward(dlogits, scale, half=False)
        return self.grads.copy()

    def _count_underflow(self, reference: FloatArray) -> None:
        lost = (reference != 0) & (self.grads == 0)
        for i, (_, start, end) in enumerate(self.layers):
            self._underflow[i] += np.count_nonzero(lost[start:end]) / (end - start)
        self._samples += 1

    def underflow(self) -> dict[str, float]:
        """Per layer, the mean over the sampled steps since the last call of the fraction of its
        gradient entries that were nonzero in float32 arithmetic and zero in float16."""
        if not self._samples:
            return {}
        out = {
            layer: float(total / self._samples)
            for (layer, _, _), total in zip(self.layers, self._underflow, strict=True)
        }
        self._underflow[:] = 0
        self._samples = 0
        return out


def _layers(params: Sequence[Parameter]) -> list[tuple[str, int, int]]:
    """(layer, start, end) of each layer's parameters in the packed vector, in order."""
    spans: dict[str, list[int]] = {}
    offset = 0
    for p in params:
        layer = p.name.rsplit("/", 1)[0]
        span = spans.setdefault(layer, [offset, offset])
        span[1] = offset + p.value.size
        offset += p.value.size
    return [(layer, start, end) for layer, (start, end) in spans.items()]
