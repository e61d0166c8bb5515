"""The training loop: mini-batches by shuffled index, the schedule, L2, clipping, statistics,
validation every epoch, test metrics at the end. Everything else happens in callbacks.

NaN/Inf is caught at the step where it first appears: the loss of every step, its gradients
and the weights after its update (one check covers both), and the epoch's metrics; the message
tells a non-finite gradient from an update that overflowed. Policy ``raise`` raises
`NonFiniteError`; ``stop`` rolls the weights, the optimizer's state and the loss scaler's back
to the end of the last good epoch, ends training and records the message in `Trainer.diverged`
(the tracker then marks the run failed). The checks and their diagnosis are `DivergenceGuard`'s;
they raise, and `Trainer._nan_policy` applies the policy."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from nnexp.names import AMP_LOSS_SCALE, AMP_SKIPPED_STEPS, STATISTICS, underflow_key
from nnexp.nn import (
    Activation,
    BatchNorm1d,
    Loss,
    Optimizer,
    Parameter,
    Schedule,
    Sequential,
    StepStats,
    add_l2_grad,
    clip_by_global_norm,
    clip_by_value,
    grad_norms,
    param_norms,
)
from nnexp.nn.amp import FullPrecision, HalfPrecision, LossScaler
from nnexp.nn.module import FloatArray, Targets
from nnexp.nn.workspace import Workspace
from nnexp.train.callbacks import Callback, State
from nnexp.train.divergence import DivergenceGuard, NonFiniteError

if TYPE_CHECKING:
    from nnexp.data import Splits  # the arrays it trains on, and the task

STATS = STATISTICS  # nnexp.names
RESULTS = ("train", "val", "test")  # the metric families that describe the model's quality
T = TypeVar("T")
S = TypeVar("S", bound=np.generic)
EVAL_CHUNK = 8192  # rows per forward pass at evaluation: bounds memory on large sets


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
    precision: str = "float32"  # or float64, or mixed: float16 passes (nnexp.nn.amp)
    loss_scale: str = "dynamic"  # under mixed: dynamic, none, or a number (static)
    limit_batches: int | None = None  # train on the epoch's first N batches only (None: all)


class Trainer:
    def __init__(
        self,
        model: Sequential,
        loss: Loss,
        optimizer: Optimizer,
        schedule: Schedule,
        data: Splits,
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
        self.statistics = Statistics(self.params, self.activations, _classes(model, data))
        self.history: list[dict[str, float]] = []
        self.should_stop = False
        self.stop_reason = ""
        self.diverged: str | None = None  # the divergence message under nan_policy=stop
        # (epoch, its RESULTS metrics) when a callback put an earlier epoch's weights back
        # (early stopping's restore_best): the run then reports that epoch, not the last one.
        self.restored: tuple[int, dict[str, float]] | None = None
        # Under nan_policy=stop: the state as the epoch began, the optimizer's step count and
        # the loss scaler's state (mixed precision).
        self._good: list[FloatArray] | None = None
        self._good_t = 0
        self._good_scaler: dict[str, FloatArray] = {}
        # A batch of one cannot be batch-normalized: fold such a remainder into the last batch.
        self._min_batch = 2 if any(isinstance(m, BatchNorm1d) for m in model.modules) else 1
        self.guard = DivergenceGuard(model, self.params, schedule, RESULTS)
        # The passes of a step: the model's own, or float16 ones with loss scaling (mixed).
        self.scaler: LossScaler | None = None
        self.compute: FullPrecision | HalfPrecision = FullPrecision(model)
        if settings.precision == "mixed":
            self.scaler = LossScaler(settings.loss_scale)
            self.compute = HalfPrecision(model, self.scaler)
            self.callbacks.append(ScalerState(self.scaler))  # checkpointed, restored on resume
        # The current batch.
        self._xb: Workspace[np.floating] = Workspace()
        self._yb: Workspace[np.integer | np.floating] = Workspace()

    @property
    def stats_seconds(self) -> float:
        """Seconds spent computing statistics: what watching costs the loop."""
        return self.statistics.seconds

    # --- the loop ---------------------------------------------------------------------------

    def fit(self) -> dict[str, float]:
        try:
            self._emit("on_fit_start")
            with self._nan_policy():
                while self.epoch < self.settings.epochs and not self.should_stop:
                    self._run_epoch()
            self._good = None  # the weights now are the last good epoch's: nothing to undo
            final = self._final_metrics()
            self._emit("on_fit_end", final)
            return final
        except BaseException as exc:
            self._tell_callbacks(exc)
            raise

    def _run_epoch(self) -> None:
        """Train an epoch, validate, and record it (unless the guard finds NaN/Inf)."""
        started = time.perf_counter()
        self._keep_good_state()
        metrics = self._train_epoch()
        metrics |= self.evaluate("val")
        self.guard.check_metrics(
            metrics, epoch=self.epoch + 1, step=self.global_step, lr=self.optimizer.lr
        )
        self.epoch += 1
        metrics["time/epoch_s"] = time.perf_counter() - started
        self.schedule.observe(metrics[self.settings.objective])
        self.history.append(metrics)
        self._emit("on_epoch_end", self.epoch, metrics)

    def _final_metrics(self) -> dict[str, float]:
        """The last epoch's metrics (or the restored one's), the test metrics, epochs run."""
        final = dict(self.history[-1]) if self.history else {}
        if self.restored is not None:  # what the run reports describes the model it returns
            epoch, metrics = self.restored
            final |= metrics
            final["best/epoch"] = float(epoch)
        if len(self.data.X_test):
            with self._nan_policy():
                test = self.evaluate("test")
                epoch = max(self.epoch, 1)  # epoch 1 if none was completed, as it always read
                self.guard.check_metrics(
                    test, epoch=epoch, step=self.global_step, lr=self.optimizer.lr
                )
                final |= test
        final["epochs_run"] = float(self.epoch)
        return final

    def _train_epoch(self) -> dict[str, float]:
        lr = self.optimizer.lr = self.schedule(self.epoch)
        batches = self._batches()
        stats, guard = self.statistics, self.guard
        guard.begin_epoch(self.epoch + 1, lr, len(batches), self.global_step + 1)
        stats.begin_epoch(self.settings.stats, self.settings.stats_every)
        totals = _Totals(self.loss, self.data.classification)
        listeners = [cb for cb in self.callbacks if _overrides(cb, "on_batch_end")]
        X, y = self.data.X_train, self.data.y_train
        # Overflow is expected when training diverges: the guard catches it, with context.
        with np.errstate(over="ignore", invalid="ignore"):
            for idx in batches:
                # Gathered by index into reused buffers: no per-step allocation, and never a
                # shuffled copy of the whole set.
                xb, yb = _gather(X, idx, self._xb), _gather(y, idx, self._yb)
                step, sample = self.global_step + 1, stats.due(self.global_step)
                loss, logits, norms = self._step(xb, yb, step, sample)
                weight_norms = stats.weight_norms() if sample else None  # spare the guard a pass
                guard.check_weights(step, weight_norms)  # covers the gradients too
                self.global_step = step
                if sample and norms is not None:  # None: a step the loss scaler skipped
                    predicted = self.loss.predict(logits) if stats.classes else None
                    stats.sample(norms, lr, weight_norms, logits, predicted)
                totals.add(loss, logits, yb)
                for cb in listeners:
                    cb.on_batch_end(self, step, loss)
        return totals.metrics(lr) | stats.summary() | self._amp_metrics()

    def _step(
        self, xb: FloatArray, yb: Targets, step: int, sample: bool
    ) -> tuple[float, FloatArray, list[float] | None]:
        """One step of gradient descent — forward, loss, backward, L2, clipping, update — with
        the checks that must come before the update. Returns the loss, the logits and the
        gradient norms before clipping (if computed: sampled steps and clipping by norm; None
        for a step the loss scaler skips under trainer.precision=mixed: no update)."""
        compute = self.compute  # the model's passes, or their float16 emulation (nnexp.nn.amp)
        with compute.step():
            logits = compute.forward(xb)
            if sample:
                self.statistics.activations_now()
            loss, dlogits = self.loss.value_and_grad(logits, yb)
            self.guard.check_loss(loss, xb, step)
            if not compute.backward(dlogits, sample):  # the scaled gradients overflowed
                return loss, logits, None
        if self.settings.l2:
            add_l2_grad(self.params, self.settings.l2)
        norms = self._clip(step, sample)
        self.optimizer.step()
        return loss, logits, norms

    def _amp_metrics(self) -> dict[str, float]:
        """Under mixed precision: the loss scale, the steps skipped so far, and per layer the
        fraction of gradient entries float16 flushed to zero (on the epoch's sampled steps)."""
        if self.scaler is None or not isinstance(self.compute, HalfPrecision):
            return {}
        out = {AMP_LOSS_SCALE: self.scaler.scale, AMP_SKIPPED_STEPS: self.scaler.skipped_steps}
        return out | {underflow_key(k): v for k, v in self.compute.underflow().items()}

    def _clip(self, step: int, sample: bool) -> list[float] | None:
        """``trainer.grad_clip``: by value, by global norm. The guard looks at the gradients
        first (clipping would turn an Inf into the limit). Returns their norms before clipping
        if computed: they are statistics, and clipping by norm reuses them."""
        s, params = self.settings, self.params
        if s.clip_value:
            self.guard.check_gradients(step)
            clip_by_value(params, s.clip_value)
        if not (sample or s.clip_norm):
            return None
        norms = self.statistics.grad_norms(counted=sample)
        self.guard.check_gradients(step, norms)
        if s.clip_norm:
            clip_by_global_norm(params, s.clip_norm, norms)
        return norms

    def _batches(self) -> list[NDArray[np.intp]]:
        """The epoch's batches: row indices, shuffled, in slices of ``batch_size`` (the first
        ``limit_batches`` of them, if set). A batch of one cannot be batch-normalized: such a
        remainder is folded into the last batch."""
        n, size = len(self.data.X_train), self.settings.batch_size
        order = self.rng.permutation(n)
        starts = list(range(0, n, size))
        if len(starts) > 1 and n - starts[-1] < self._min_batch:
            starts.pop()
        ends = [*starts[1:], n]
        batches = [order[start:end] for start, end in zip(starts, ends, strict=True)]
        # After the whole permutation is drawn: the shuffling stream does not depend on it.
        return batches[: self.settings.limit_batches]

    # --- NaN/Inf: the guard raises NonFiniteError, trainer.nan_policy decides here ------------

    @contextmanager
    def _nan_policy(self) -> Iterator[None]:
        """Where a divergence ends. Policy raise lets the `NonFiniteError` through; policy stop
        puts back the state the last good epoch ended with, ends training and keeps the
        message in `diverged` (the rest of the block is skipped either way)."""
        try:
            yield
        except NonFiniteError as error:
            if self.settings.nan_policy != "stop":
                raise
            self._roll_back()
            self.should_stop, self.diverged = True, str(error)
            self.stop_reason = "diverged (trainer.nan_policy=stop): kept the last good epoch"

    def _keep_good_state(self) -> None:
        """Under nan_policy=stop: copy the state as the epoch begins (the last good one)."""
        if self.settings.nan_policy == "stop":
            self._good = [a.copy() for a in self._state_arrays()]
            self._good_t = self.optimizer.t
            if self.scaler is not None:  # its scale and counters change on every step
                self._good_scaler = self.scaler.state_dict()

    def _roll_back(self) -> None:
        if self._good is not None:
            for target, good in zip(self._state_arrays(), self._good, strict=True):
                np.copyto(target, good)
            self.optimizer.t = self._good_t
            if self.scaler is not None and self._good_scaler:
                self.scaler.load_state_dict(self._good_scaler)

    def _state_arrays(self) -> list[FloatArray]:
        """Everything a step changes: weights, buffers and the optimizer's state arrays."""
        slots = [a for state in self.optimizer.state.values() for a in state.values()]
        return [p.value for p in self.params] + list(self.model.buffers().values()) + slots

    # --- evaluation -------------------------------------------------------------------------

    def predict_logits(self, X: FloatArray) -> FloatArray:
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

    def _emit(self, event: str, *args: object) -> None:
        for cb in self.callbacks:
            getattr(cb, event)(self, *args)

    def _tell_callbacks(self, exc: BaseException) -> None:
        for cb in self.callbacks:
            try:
                cb.on_exception(self, exc)
            except Exception as inner:  # never mask the original error
                print(f"warning: {type(cb).__name__}.on_exception failed: {inner!r}")


class ScalerState(Callback):
    """The loss scaler's state in checkpoints (``callback/loss_scaler/*``): a resumed mixed
    run scales, skips and grows exactly as the uninterrupted one."""

    state_key = "loss_scaler"

    def __init__(self, scaler: LossScaler) -> None:
        self.scaler = scaler

    def state_dict(self) -> State:
        return dict(self.scaler.state_dict())

    def load_state_dict(self, state: State) -> None:
        self.scaler.load_state_dict({k: np.asarray(v, dtype=np.float64) for k, v in state.items()})


class _Totals:
    """The epoch's training loss (mean over rows) and accuracy, added up step by step."""

    def __init__(self, loss: Loss, classification: bool) -> None:
        self.loss, self.classification = loss, classification
        self.rows, self.loss_sum, self.correct = 0, 0.0, 0

    def add(self, loss: float, logits: FloatArray, y: Targets) -> None:
        self.rows += len(y)
        self.loss_sum += loss * len(y)
        if self.classification:
            self.correct += int(np.count_nonzero(self.loss.predict(logits) == y))

    def metrics(self, lr: float) -> dict[str, float]:
        out = {"train/loss": self.loss_sum / self.rows, "lr": lr}
        if self.classification:
            out["train/acc"] = self.correct / self.rows
        return out


class Statistics:
    """The statistics of each epoch's sampled steps (a `StepStats` per epoch), and `seconds`:
    what computing them has cost the loop, clocked here around each call."""

    def __init__(
        self, params: Sequence[Parameter], activations: Sequence[Activation], classes: int = 0
    ) -> None:
        self.params, self.activations = params, activations
        self.classes = classes  # a classifier's class count (the output statistics), else 0
        self.seconds = 0.0
        self.current: StepStats | None = None
        self._every = 0  # steps between samples; 0: no statistics wanted

    def begin_epoch(self, want: Collection[str], every: int) -> None:
        """Statistics `want` (``trainer.stats``) every `every` steps, counted across epochs."""
        self.current = StepStats(self.params, self.activations, want, self.classes)
        self._every = every if self.current else 0

    def due(self, steps_taken: int) -> bool:
        """Whether the next step is sampled."""
        return self._every != 0 and steps_taken % self._every == 0

    def activations_now(self) -> None:
        """The activations' statistics: right after the forward pass, while they are cached."""
        assert self.current is not None  # begin_epoch comes first
        self._timed(self.current.sample_activations)

    def grad_norms(self, counted: bool = True) -> list[float]:
        """The gradients' norms; `counted=False` when only clipping by norm wants them."""
        return self._timed(grad_norms, self.params, counted=counted)

    def weight_norms(self) -> list[float]:
        return self._timed(param_norms, self.params)

    def sample(
        self,
        norms: Sequence[float],
        lr: float,
        weight_norms: Sequence[float] | None,
        logits: FloatArray,
        predicted: Targets | None,
    ) -> None:
        assert self.current is not None  # begin_epoch comes first
        self._timed(self.current.sample, norms, lr, weight_norms, logits, predicted)

    def summary(self) -> dict[str, float]:
        return self.current.summary() if self.current is not None else {}

    def _timed(self, fn: Callable[..., T], *args: Any, counted: bool = True) -> T:
        started = time.perf_counter()
        result = fn(*args)
        if counted:
            self.seconds += time.perf_counter() - started
        return result


def _classes(model: Sequential, data: Splits) -> int:
    """A classifier's class count (one output: a sigmoid's two classes); 0 for regression."""
    if not data.classification:
        return 0
    outputs = int(list(model.parameters())[-1].value.shape[0])  # the output layer's bias
    return max(outputs, 2)


def _overrides(callback: Callback, event: str) -> bool:
    return getattr(type(callback), event) is not getattr(Callback, event)


def _gather(array: NDArray[S], idx: NDArray[np.intp], workspace: Workspace[S]) -> NDArray[S]:
    """Rows `idx` of `array`, into a buffer reused from step to step."""
    out = workspace.get(idx.shape + array.shape[1:], array.dtype)
    # mode="clip": the indices come from a permutation, so none is out of range; the default
    # mode ("raise") makes `take` write into a temporary and copy it to `out`: 2x slower.
    return array.take(idx, axis=0, out=out, mode="clip")
