"""Learning-rate schedules: objects mapping an epoch (or step) index to a learning rate.

`observe(metric)` feeds a validation metric after each epoch; only ReduceOnPlateau uses it.
`state_dict()` / `load_state_dict()` carry the state a resumed run needs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import ClassVar

from nnexp.nn.registry import Registry

SCHEDULES: Registry[type[Schedule]] = Registry("schedule")
# A hyperparameter's limits, in the keywords of `nnexp.schema.bounded` (ge, gt, le, lt, finite).
Limits = Mapping[str, Mapping[str, float | bool]]


class Schedule:
    # The hyperparameters a config may set (``schedule.<key>``; lr is the optimizer's), each
    # with its limits; their defaults are those of ``__init__``, and None for a required one
    # that the runner fills in (a cosine's total: trainer.epochs). `nnexp.config` builds each
    # schedule's config schema from the two.
    limits: ClassVar[Limits] = {}

    def __init__(self, lr: float) -> None:
        if not lr > 0:
            raise ValueError(f"learning rate must be > 0, got {lr}")
        self.base_lr = lr

    def __call__(self, epoch: int) -> float:
        raise NotImplementedError

    def observe(self, metric: float) -> None:
        """Called with the monitored validation metric at the end of each epoch."""

    def state_dict(self) -> dict[str, float]:
        return {}

    def load_state_dict(self, state: dict[str, float]) -> None:
        pass


@SCHEDULES.register("constant")
class Constant(Schedule):
    def __call__(self, epoch: int) -> float:
        return self.base_lr


@SCHEDULES.register("step")
class StepDecay(Schedule):
    """lr * gamma^(epoch // step_size), e.g. x0.95 every 10 epochs."""

    limits: ClassVar[Limits] = {"gamma": {"gt": 0, "le": 1}, "step_size": {"ge": 1}}

    def __init__(self, lr: float, gamma: float = 0.95, step_size: int = 10) -> None:
        super().__init__(lr)
        if step_size < 1:
            raise ValueError(f"step_size must be >= 1, got {step_size}")
        self.gamma, self.step_size = gamma, step_size

    def __call__(self, epoch: int) -> float:
        return self.base_lr * self.gamma ** (epoch // self.step_size)


@SCHEDULES.register("exponential")
class Exponential(Schedule):
    """lr * gamma^epoch."""

    limits: ClassVar[Limits] = {"gamma": {"gt": 0, "le": 1}}

    def __init__(self, lr: float, gamma: float = 0.97) -> None:
        super().__init__(lr)
        self.gamma = gamma

    def __call__(self, epoch: int) -> float:
        return self.base_lr * self.gamma**epoch


@SCHEDULES.register("cosine")
class Cosine(Schedule):
    """Half a cosine from lr down to min_lr over `total` epochs, then min_lr."""

    limits: ClassVar[Limits] = {"min_lr": {"ge": 0, "finite": True}, "total": {"ge": 1}}

    def __init__(self, lr: float, total: int, min_lr: float = 0.0) -> None:
        super().__init__(lr)
        if total < 1:
            raise ValueError(f"cosine schedule needs total >= 1 epochs, got {total}")
        self.total, self.min_lr = total, min_lr

    def __call__(self, epoch: int) -> float:
        progress = min(epoch / self.total, 1.0)
        return self.min_lr + (self.base_lr - self.min_lr) * 0.5 * (1 + math.cos(math.pi * progress))


@SCHEDULES.register("warmup_cosine")
class WarmupCosine(Cosine):
    """Linear warmup from lr/warmup to lr over `warmup` epochs, then cosine to min_lr."""

    limits: ClassVar[Limits] = {"warmup": {"ge": 1}}

    def __init__(self, lr: float, total: int, warmup: int = 5, min_lr: float = 0.0) -> None:
        super().__init__(lr, max(total - warmup, 1), min_lr)
        self.warmup = warmup

    def __call__(self, epoch: int) -> float:
        if epoch < self.warmup:
            return self.base_lr * (epoch + 1) / self.warmup
        return super().__call__(epoch - self.warmup)


@SCHEDULES.register("plateau")
class ReduceOnPlateau(Schedule):
    """Multiply lr by `factor` when the monitored metric has not improved by more than
    `min_delta` for `patience` epochs; never below `min_lr`. `mode`: ``min`` when lower is
    better (a loss), ``max`` when higher is (an accuracy): the runner sets it from the
    objective, so it is no config key."""

    limits: ClassVar[Limits] = {
        "factor": {"gt": 0, "lt": 1},
        "patience": {"ge": 0},
        "min_delta": {"finite": True},
        "min_lr": {"ge": 0, "finite": True},
    }

    def __init__(
        self,
        lr: float,
        factor: float = 0.5,
        patience: int = 5,
        min_delta: float = 1e-4,
        min_lr: float = 1e-6,
        mode: str = "min",
    ) -> None:
        super().__init__(lr)
        if not 0.0 < factor < 1.0:
            raise ValueError(f"plateau factor must be in (0, 1), got {factor}")
        if mode not in ("min", "max"):
            raise ValueError(f"plateau mode must be min or max, got {mode!r}")
        self.sign = 1.0 if mode == "min" else -1.0  # compare sign * metric: lower is better
        self.factor, self.patience, self.min_delta, self.min_lr = (
            factor,
            patience,
            min_delta,
            min_lr,
        )
        self.lr, self.best, self.bad_epochs = lr, math.inf, 0

    def __call__(self, epoch: int) -> float:
        return self.lr

    def observe(self, metric: float) -> None:
        metric = self.sign * metric
        if metric < self.best - self.min_delta:
            self.best, self.bad_epochs = metric, 0
            return
        self.bad_epochs += 1
        if self.bad_epochs > self.patience:
            self.lr = max(self.lr * self.factor, self.min_lr)
            self.bad_epochs = 0

    def state_dict(self) -> dict[str, float]:
        return {"lr": self.lr, "best": self.best, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.lr, self.best = float(state["lr"]), float(state["best"])
        self.bad_epochs = int(state["bad_epochs"])
