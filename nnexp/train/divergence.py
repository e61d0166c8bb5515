"""NaN/Inf: a cheap per-step test, and on failure a message naming where it first appeared
(epoch, step, layer) and what usually fixes it. `DivergenceGuard` holds every check the training
loop makes; each one that fails raises `NonFiniteError` (what then happens is the trainer's
``nan_policy``, decided in one place)."""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import NoReturn

import numpy as np

from nnexp.nn import Parameter, Schedule, Sequential, flat_view

# What a divergence is blamed on (`NonFiniteError.cause`). The learning rate is the default;
# the initialization or the input take the blame when they are out of range on their own.
CAUSE_LR, CAUSE_INIT, CAUSE_INPUT = "learning rate", "initialization", "input"
# Out of range: the initial weights amplify a signal more than this through the network (the
# product over layers of std(W)·√fan_in: He and Xavier keep each factor near 1, so a deep
# healthy net stays within ~10; N(0, 1) on a 6-layer, 32-unit net is ~8e3, std 1e30 is 1e30);
# or the failing batch holds values beyond this (standardized features stay within ~±10).
# How a message names its cause (the doctor reads a recorded run's cause back from it).
CAUSE_PHRASES = {
    CAUSE_INIT: "Likely cause: the initialization",
    CAUSE_INPUT: "Likely cause: the input",
}
INIT_GAIN_LIMIT = 1e3
INPUT_LIMIT = 1e3


class NonFiniteError(FloatingPointError):
    """Training produced NaN/Inf. A FloatingPointError, so trackers can tag the run diverged.
    `cause`: what the message blames (CAUSE_LR, CAUSE_INIT or CAUSE_INPUT)."""

    def __init__(self, message: str, cause: str = CAUSE_LR) -> None:
        super().__init__(message)
        self.cause = cause


def initial_gain(params: Sequence[Parameter]) -> tuple[float, str, float]:
    """How much the weight matrices amplify a signal, as log10 of the product over layers of
    std(W)·√fan_in, with the layer of the largest factor and that factor. Computed in float64:
    the squares of huge float32 weights overflow."""
    log_gain, worst, worst_gain = 0.0, "", 0.0
    for p in params:
        if not p.decay or p.value.ndim != 2 or not p.value.size:
            continue
        with np.errstate(all="ignore"):
            gain = float(np.std(p.value, dtype=np.float64)) * math.sqrt(p.value.shape[0])
        if not math.isfinite(gain):
            return math.inf, p.name, gain
        log_gain += math.log10(gain) if gain > 0 else -math.inf
        if gain > worst_gain:
            worst, worst_gain = p.name, gain
    return log_gain, worst, worst_gain


def likely_cause(log_gain: float, batch: np.ndarray | None) -> str:
    """The initialization if the starting weights were out of range, else the input if the
    failing batch was, else the learning rate."""
    if log_gain > math.log10(INIT_GAIN_LIMIT):
        return CAUSE_INIT
    if batch is not None and batch.size:
        with np.errstate(all="ignore"):
            if not float(np.nanmax(np.abs(batch))) <= INPUT_LIMIT:
                return CAUSE_INPUT
    return CAUSE_LR


def all_finite(arrays: Iterable[np.ndarray], norms: Sequence[float] | None = None) -> bool:
    """True if no array holds NaN or Inf. One BLAS dot per array and no temporaries: a sum of
    squares is NaN/Inf whenever an element is (and the dot is ~2.5x faster than NumPy's sum).
    It can also overflow with every element finite (huge weights), so a suspicious one is
    confirmed element-wise. `norms` of the same arrays, if at hand, answer it with no pass at
    all when their sum is finite. The trainer calls it every step under its own
    ``np.errstate``: call it under one too to silence overflow warnings."""
    if norms is not None and math.isfinite(sum(norms)):
        return True
    return all(math.isfinite(np.vdot(a, a)) or np.isfinite(a).all() for a in arrays)


def first_nonfinite_param(params: Sequence[Parameter], what: str) -> str | None:
    """The first parameter (forward order) whose ``grad`` or ``value`` is not finite."""
    for p in params:
        array = p.grad if what == "gradient" else p.value
        if not np.isfinite(array).all():
            return p.name
    return None


def first_nonfinite_output(model: Sequential, x: np.ndarray) -> str | None:
    """Replay a forward pass layer by layer; name the first layer whose output is not finite."""
    if not np.isfinite(x).all():
        return "the input batch itself (the data holds NaN/Inf)"
    with np.errstate(all="ignore"):
        for m in model.modules:
            x = m.forward(x, training=True)
            if not np.isfinite(x).all():
                return f"the output of {m.name}"
    return f"the loss computation (outputs finite but up to {np.abs(x).max():.3g})"


def largest_gradient(params: Sequence[Parameter]) -> str:
    """The parameter with the largest gradient element (when finite gradients overflow a norm)."""
    with np.errstate(all="ignore"):
        p = max(params, key=lambda p: float(np.abs(p.grad).max()) if p.grad.size else 0.0)
        return f"{p.name} (|gradient| up to {np.abs(p.grad).max():.3g})"


def describe(
    what: str,
    *,
    epoch: int,
    step: int,
    batch: str,
    lr: float,
    base_lr: float,
    layer: str | None = None,
    cause: str = CAUSE_LR,
    evidence: str = "",
) -> str:
    """The one-line message: where, what, and the fixes for its `cause` (`base_lr`:
    optimizer.lr, of which `lr` is the scheduled value at this epoch; `evidence`: why the
    initialization or the input is blamed)."""
    where = f" at {layer}" if layer else ""
    head = f"training diverged at epoch {epoch}, step {step} ({batch}): {what}{where} (lr={lr:g})."
    if cause == CAUSE_INIT:
        return (
            f"{head} {CAUSE_PHRASES[CAUSE_INIT]}, not the learning rate — {evidence}. "
            "Use model.init=he (ReLU family) or model.init=xavier (tanh, sigmoid), or a "
            "smaller model.init_scale"
        )
    if cause == CAUSE_INPUT:
        return (
            f"{head} {CAUSE_PHRASES[CAUSE_INPUT]} is not standardized — {evidence}. Set "
            "dataset.standardize=true (and trainer.grad_clip.norm=1.0 as a safety net)"
        )
    lower = f"{base_lr / 10:g}" if math.isfinite(base_lr) else "a smaller value"
    return (
        f"{head} Try a lower learning rate (optimizer.lr={lower}), gradient clipping "
        "(trainer.grad_clip.norm=1.0), or standardized inputs (dataset.standardize=true)"
    )


class DivergenceGuard:
    """Every NaN/Inf check of training, and the diagnosis when one fails: a `NonFiniteError`
    whose message names the epoch, the step, the batch and the layer where the value first
    appeared, and the usual fixes.

    A step meets the checks in this order: `check_loss` before the backward pass (a replay of
    the forward pass names the layer), `check_gradients` where clipping or the statistics look
    at the gradients (before clipping, which would turn an Inf into the limit), `check_weights`
    after the update (which covers the gradients too). After validation and at the end,
    `check_metrics`. Steps are named by their global number, counted from 1; `begin_epoch` says
    which epoch they belong to."""

    def __init__(
        self,
        model: Sequential,
        params: Sequence[Parameter],
        schedule: Schedule,
        metrics: Collection[str],
    ) -> None:
        self.model, self.params, self.schedule = model, list(params), schedule
        self.metrics = metrics  # the metric families that must be finite ("val" for val/loss)
        # What the per-step checks reduce: one packed vector when the model has one
        # (`nnexp.nn.pack`), else each parameter's array.
        values, grads = [p.value for p in self.params], [p.grad for p in self.params]
        self._values = [v] if (v := flat_view(values)) is not None else values
        self._grads = [g] if (g := flat_view(grads)) is not None else grads
        self._epoch, self._lr, self._batches, self._first_step = 0, 0.0, 0, 1
        # The weights' scale as training starts: a divergence is blamed on the initialization
        # when it was out of range (once per run, not per step).
        self._gain = initial_gain(self.params)
        self._batch: np.ndarray | None = None  # the step's input (a reference, never a copy)

    def begin_epoch(self, epoch: int, lr: float, batches: int, first_step: int) -> None:
        """Epoch `epoch` (from 1) trains at `lr` in `batches` steps, the first numbered
        `first_step`: its n-th step is its n-th batch."""
        self._epoch, self._lr, self._batches, self._first_step = epoch, lr, batches, first_step

    def check_loss(self, loss: float, batch: np.ndarray, step: int) -> None:
        """The step's loss, on input `batch`, before the backward pass."""
        self._batch = batch
        if not math.isfinite(loss):
            layer = first_nonfinite_param(self.params, "weights")
            layer = layer or first_nonfinite_output(self.model, batch)
            self._fail(f"the loss is {loss}", step, layer)

    def check_gradients(self, step: int, norms: Sequence[float] | None = None) -> None:
        """The gradients before clipping: their `norms` if at hand, else the arrays."""
        finite = all_finite(self._grads) if norms is None else math.isfinite(sum(norms))
        if not finite:
            what, layer = nonfinite_gradient(self.params)
            self._fail(what, step, layer)

    def check_weights(self, step: int, norms: Sequence[float] | None = None) -> None:
        """The weights after the update (their `norms`, if at hand, spare a pass over them)."""
        # One check after the update covers the gradients too: NaN and Inf survive every
        # update rule (even at lr 0, 0 * Inf is NaN), so the weights are finite only if
        # the gradients were and the update did not overflow — one pass over the
        # parameters per step instead of two. The spoiled weights are never kept: an
        # error ends the run (checkpoints hold finished epochs) and nan_policy=stop
        # restores the epoch's start. Sampled steps need the weights' norms anyway
        # (update ratios), and a finite sum of squares means finite elements.
        if not all_finite(self._values, norms):
            what = "the gradient is not finite"
            layer = first_nonfinite_param(self.params, "gradient")
            if layer is None:
                what = "the update made the weights non-finite"
                layer = first_nonfinite_param(self.params, "weights")
            self._fail(what, step, layer)

    def check_metrics(
        self, metrics: Mapping[str, float], *, epoch: int, step: int, lr: float
    ) -> None:
        """Losses and quality metrics must be finite: the weights can be finite and still
        overflow on other data (validation, test). Named by the epoch and the last step taken
        before the evaluation, trained at `lr`."""
        families = self.metrics
        bad = [
            k for k, v in metrics.items() if k.split("/")[0] in families and not math.isfinite(v)
        ]
        if bad:
            layer = first_nonfinite_param(self.params, "weights")
            what = f"{bad[0]} is {metrics[bad[0]]}"
            self._raise(what, epoch, step, "evaluation", lr, layer, None)

    def _fail(self, what: str, step: int, layer: str | None) -> NoReturn:
        batch = f"batch {step - self._first_step + 1} of {self._batches}"
        self._raise(what, self._epoch, step, batch, self._lr, layer, self._batch)

    def _raise(
        self,
        what: str,
        epoch: int,
        step: int,
        batch: str,
        lr: float,
        layer: str | None,
        inputs: np.ndarray | None,
    ) -> NoReturn:
        base_lr = getattr(self.schedule, "base_lr", lr)
        log_gain, worst, worst_gain = self._gain
        cause = likely_cause(log_gain, inputs)
        evidence = ""
        if cause == CAUSE_INIT:
            factor = f"~1e{log_gain:.0f}x" if math.isfinite(log_gain) else "beyond float range"
            evidence = (
                f"the starting weights amplify a signal {factor} through the network "
                f"({worst}: std·√fan_in = {worst_gain:.3g}; He and Xavier keep it near 1)"
            )
        elif cause == CAUSE_INPUT and inputs is not None:  # (likely_cause needs a batch)
            with np.errstate(all="ignore"):
                top = float(np.nanmax(np.abs(inputs)))
            evidence = f"the batch holds values up to {top:.3g} (standardized ones stay within ~10)"
        message = describe(
            what,
            epoch=epoch,
            step=step,
            batch=batch,
            lr=lr,
            base_lr=base_lr,
            layer=layer,
            cause=cause,
            evidence=evidence,
        )
        raise NonFiniteError(message, cause)


def nonfinite_gradient(params: Sequence[Parameter]) -> tuple[str, str]:
    """What is wrong with gradients whose norm is not finite, and where: a NaN/Inf element, or
    finite elements so large that their squares overflow."""
    layer = first_nonfinite_param(params, "gradient")
    if layer is not None:
        return "the gradient is not finite", layer
    return "the gradient norm overflows", largest_gradient(params)
