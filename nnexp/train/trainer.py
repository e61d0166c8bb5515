"""The training loop: mini-batches by shuffled index, the schedule, L2, clipping, statistics,
validation every epoch, test metrics at the end. Everything else happens in callbacks.

NaN/Inf is caught at the step where it first appears: the loss of every step, its gradients
and the weights after its update (one check covers both), and the epoch's metrics; the message
tells a non-finite gradient from an update that overflowed. Policy ``raise`` raises
`NonFiniteError`; ``stop`` rolls the weights (and optimizer state) back to the end of the last
good epoch, ends training and records the message in `Trainer.diverged` (the tracker then marks
the run failed)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from nnexp.nn import (
    Activation,
    BatchNorm1d,
    Loss,
    Optimizer,
    Schedule,
    Sequential,
    StepStats,
    add_l2_grad,
    clip_by_global_norm,
    clip_by_value,
    flat_view,
    grad_norms,
    param_norms,
)
from nnexp.nn.workspace import Workspace
from nnexp.train.callbacks import Callback
from nnexp.train.divergence import (
    NonFiniteError,
    all_finite,
    describe,
    first_nonfinite_output,
    first_nonfinite_param,
    largest_gradient,
)

STATS = ("grad_norm", "update_ratio", "activations")
RESULTS = ("train", "val", "test")  # the metric families that describe the model's quality
T = TypeVar("T")
EVAL_CHUNK = 8192  # rows per forward pass at evaluation: bounds memory on large sets


@dataclass
class Data:
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    classification: bool
    # Regression targets are trained standardized; RMSE is reported in the original units.
    y_scale: float | np.ndarray = 1.0


@dataclass
class TrainSettings:
    epochs: int
    batch_size: int
    seed: int = 0
    l2: float = 0.0
    clip_norm: float | None = None
    clip_value: float | None = None
    stats: Sequence[str] = STATS
    stats_every: int = 1  # steps between statistics samples
    nan_policy: str = "raise"  # or "stop": end training, keep the last good state
    objective: str = "val/loss"
    extra: dict = field(default_factory=dict)


class Trainer:
    def __init__(
        self,
        model: Sequential,
        loss: Loss,
        optimizer: Optimizer,
        schedule: Schedule,
        data: Data,
        settings: TrainSettings,
        callbacks: Sequence[Callback] = (),
    ) -> None:
        self.model, self.loss, self.optimizer, self.schedule = model, loss, optimizer, schedule
        self.data, self.settings, self.callbacks = data, settings, list(callbacks)
        self.params = list(model.parameters())
        self.activations = [m for m in model.modules if isinstance(m, Activation)]
        self.rng = np.random.default_rng([settings.seed, 2])  # shuffling stream
        self.epoch = 0  # epochs completed
        self.global_step = 0
        self.stats_seconds = 0.0  # spent computing statistics: what watching costs the loop
        self.history: list[dict[str, float]] = []
        self.should_stop = False
        self.stop_reason = ""
        self.diverged: str | None = None  # the divergence message under nan_policy=stop
        # (epoch, its RESULTS metrics) when a callback put an earlier epoch's weights back
        # (early stopping's restore_best): the run then reports that epoch, not the last one.
        self.restored: tuple[int, dict[str, float]] | None = None
        # Under nan_policy=stop: the state as the epoch began, and the optimizer's step count.
        self._good: list[np.ndarray] | None = None
        self._good_t = 0
        # A batch of one cannot be batch-normalized: fold such a remainder into the last batch.
        self._min_batch = 2 if any(isinstance(m, BatchNorm1d) for m in model.modules) else 1
        # What the per-step NaN/Inf checks reduce: one packed vector when the model has one
        # (`nnexp.nn.pack`), else each parameter's array.
        values, grads = [p.value for p in self.params], [p.grad for p in self.params]
        self._values = [v] if (v := flat_view(values)) is not None else values
        self._grads = [g] if (g := flat_view(grads)) is not None else grads
        self._xb, self._yb = Workspace(), Workspace()  # the current batch

    # --- the loop ---------------------------------------------------------------------------

    def fit(self) -> dict[str, float]:
        try:
            self._emit("on_fit_start")
            while self.epoch < self.settings.epochs and not self.should_stop:
                started = time.perf_counter()
                if self.settings.nan_policy == "stop":
                    self._good = [a.copy() for a in self._state_arrays()]
                    self._good_t = self.optimizer.t
                metrics = self._train_epoch()
                if metrics is None:  # diverged under nan_policy=stop: the epoch is void
                    break
                metrics |= self.evaluate("val")
                if not self._metrics_finite(metrics, self.epoch + 1):
                    break
                self.epoch += 1
                metrics["time/epoch_s"] = time.perf_counter() - started
                self.schedule.observe(metrics[self.settings.objective])
                self.history.append(metrics)
                self._emit("on_epoch_end", self.epoch, metrics)
            self._good = None  # the weights now are the last good epoch's: nothing to undo
            final = dict(self.history[-1]) if self.history else {}
            if self.restored is not None:  # what the run reports describes the model it returns
                epoch, metrics = self.restored
                final |= metrics
                final["best/epoch"] = float(epoch)
            if len(self.data.X_test):
                test = self.evaluate("test")
                if self._metrics_finite(test, self.epoch):
                    final |= test
            final["epochs_run"] = float(self.epoch)
            self._emit("on_fit_end", final)
            return final
        except BaseException as exc:
            for cb in self.callbacks:
                try:
                    cb.on_exception(self, exc)
                except Exception as inner:  # never mask the original error
                    print(f"warning: {type(cb).__name__}.on_exception failed: {inner!r}")
            raise

    def _train_epoch(self) -> dict[str, float] | None:
        s, d = self.settings, self.data
        lr = self.schedule(self.epoch)
        self.optimizer.lr = lr
        n = len(d.X_train)
        order = self.rng.permutation(n)
        starts = list(range(0, n, s.batch_size))
        if len(starts) > 1 and n - starts[-1] < self._min_batch:
            starts.pop()
        ends = [*starts[1:], n]
        stats = StepStats(self.params, self.activations, s.stats)
        batch_listeners = [
            cb for cb in self.callbacks if type(cb).on_batch_end is not Callback.on_batch_end
        ]
        model, loss_fn, params = self.model, self.loss, self.params
        loss_sum, correct = 0.0, 0
        # Overflow is expected when training diverges: it is caught below, with context.
        with np.errstate(over="ignore", invalid="ignore"):
            for i, (start, end) in enumerate(zip(starts, ends, strict=True)):
                idx = order[start:end]
                # Batches are gathered by index into reused buffers: no per-step allocation and
                # never a shuffled copy of the whole set.
                xb = _gather(d.X_train, idx, self._xb)
                yb = _gather(d.y_train, idx, self._yb)
                logits = model.forward(xb, training=True)
                sample = stats and self.global_step % s.stats_every == 0
                if sample:
                    self._timed(stats.sample_activations)
                loss, dlogits = loss_fn.value_and_grad(logits, yb)
                if not math.isfinite(loss):
                    layer = first_nonfinite_param(params, "weights") or first_nonfinite_output(
                        model, xb
                    )
                    return self._diverged(f"the loss is {loss}", lr, _batch(i, starts), layer)
                loss_sum += loss * len(idx)
                if d.classification:
                    correct += int(np.count_nonzero(loss_fn.predict(logits) == yb))
                model.backward(dlogits, need_dx=False)
                if s.l2:
                    add_l2_grad(params, s.l2)
                if s.clip_value:  # clipping would turn an Inf into the limit: look first
                    if not all_finite(self._grads):
                        what, layer = _nonfinite_gradient(params)
                        return self._diverged(what, lr, _batch(i, starts), layer)
                    clip_by_value(params, s.clip_value)
                # The gradient norms are statistics, and clipping by norm reuses them.
                norms = None
                if sample or s.clip_norm:
                    norms = self._timed(grad_norms, params, count=sample)
                    if not math.isfinite(sum(norms)):
                        what, layer = _nonfinite_gradient(params)
                        return self._diverged(what, lr, _batch(i, starts), layer)
                if s.clip_norm:
                    clip_by_global_norm(params, s.clip_norm, norms)
                self.optimizer.step()
                # One check after the update covers the gradients too: NaN and Inf survive every
                # update rule (even at lr 0, 0 * Inf is NaN), so the weights are finite only if
                # the gradients were and the update did not overflow — one pass over the
                # parameters per step instead of two. The spoiled weights are never kept: an
                # error ends the run (checkpoints hold finished epochs) and nan_policy=stop
                # restores the epoch's start. Sampled steps need the weights' norms anyway
                # (update ratios), and a finite sum of squares means finite elements.
                value_norms = self._timed(param_norms, params) if sample else None
                if not all_finite(self._values, value_norms):
                    what = "the gradient is not finite"
                    layer = first_nonfinite_param(params, "gradient")
                    if layer is None:
                        what = "the update made the weights non-finite"
                        layer = first_nonfinite_param(params, "weights")
                    return self._diverged(what, lr, _batch(i, starts), layer)
                self.global_step += 1
                if sample:
                    self._timed(stats.sample, norms, lr, value_norms)
                for cb in batch_listeners:
                    cb.on_batch_end(self, self.global_step, loss)
        metrics = {"train/loss": loss_sum / n, "lr": lr}
        if d.classification:
            metrics["train/acc"] = correct / n
        return metrics | stats.summary()

    def _timed(self, fn: Callable[..., T], *args: Any, count: bool = True) -> T:
        """`fn(*args)`, its time added to `stats_seconds` (what watching costs the loop)."""
        started = time.perf_counter()
        result = fn(*args)
        if count:
            self.stats_seconds += time.perf_counter() - started
        return result

    def _diverged(
        self, what: str, lr: float, where: str, layer: str | None = None, *, epoch: int = 0
    ) -> None:
        """Raise (policy raise), or roll back to the last good epoch and end training (stop).
        Called before `global_step` counts the failing step (so step + 1 names it)."""
        message = describe(
            what,
            epoch=epoch or self.epoch + 1,
            step=self.global_step + 1,
            batch=where,
            lr=lr,
            base_lr=getattr(self.schedule, "base_lr", lr),
            layer=layer,
        )
        if self.settings.nan_policy != "stop":
            raise NonFiniteError(message)
        if self._good is not None:
            for target, good in zip(self._state_arrays(), self._good, strict=True):
                np.copyto(target, good)
            self.optimizer.t = self._good_t
        self.should_stop, self.diverged = True, message
        self.stop_reason = "diverged (trainer.nan_policy=stop): kept the last good epoch"

    def _metrics_finite(self, metrics: dict[str, float], epoch: int) -> bool:
        """Losses and quality metrics must be finite: the weights can be finite and still
        overflow on other data (validation, test)."""
        bad = [k for k, v in metrics.items() if k.split("/")[0] in RESULTS and not math.isfinite(v)]
        if bad:
            layer = first_nonfinite_param(self.params, "weights")
            what = f"{bad[0]} is {metrics[bad[0]]}"
            self.global_step -= 1  # no step failed: name the last one taken
            try:
                self._diverged(what, self.optimizer.lr, "evaluation", layer, epoch=epoch)
            finally:
                self.global_step += 1
        return not bad

    def _state_arrays(self) -> list[np.ndarray]:
        """Everything a step changes: weights, buffers and the optimizer's state arrays."""
        slots = [a for state in self.optimizer.state.values() for a in state.values()]
        return [p.value for p in self.params] + list(self.model.buffers().values()) + slots

    # --- evaluation -------------------------------------------------------------------------

    def predict_logits(self, X: np.ndarray) -> np.ndarray:
        parts = [
            self.model.forward(X[i : i + EVAL_CHUNK], training=False)
            for i in range(0, len(X), EVAL_CHUNK)
        ]
        return np.concatenate(parts) if len(parts) != 1 else parts[0]

    def evaluate(self, split: str) -> dict[str, float]:
        with np.errstate(over="ignore", invalid="ignore"):  # non-finite: checked by fit()
            return self._evaluate(split)

    def _evaluate(self, split: str) -> dict[str, float]:
        X, y = getattr(self.data, f"X_{split}"), getattr(self.data, f"y_{split}")
        logits = self.predict_logits(X)
        out = {f"{split}/loss": self.loss.value(logits, y)}
        if self.data.classification:
            out[f"{split}/acc"] = float(np.mean(self.loss.predict(logits) == y))
        else:
            residual = (logits - y.reshape(logits.shape)) * self.data.y_scale
            out[f"{split}/rmse"] = float(np.sqrt(np.mean(residual * residual)))
        return out

    def _emit(self, event: str, *args) -> None:
        for cb in self.callbacks:
            getattr(cb, event)(self, *args)


def _gather(array: np.ndarray, idx: np.ndarray, workspace: Workspace) -> np.ndarray:
    """Rows `idx` of `array`, into a buffer reused from step to step."""
    out = workspace.get(idx.shape + array.shape[1:], array.dtype)
    # mode="clip": the indices come from a permutation, so none is out of range; the default
    # mode ("raise") makes `take` write into a temporary and copy it to `out`: 2x slower.
    return array.take(idx, axis=0, out=out, mode="clip")


def _nonfinite_gradient(params: Sequence) -> tuple[str, str]:
    """What is wrong with gradients whose norm is not finite, and where: a NaN/Inf element, or
    finite elements so large that their squares overflow."""
    layer = first_nonfinite_param(params, "gradient")
    if layer is not None:
        return "the gradient is not finite", layer
    return "the gradient norm overflows", largest_gradient(params)


def _batch(i: int, starts: list[int]) -> str:
    return f"batch {i + 1} of {len(starts)}"
