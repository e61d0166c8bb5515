"""The contenders, each timed on the same problem: nnexp, the bare GEMMs, scikit-learn, PyTorch."""

from __future__ import annotations

import itertools
import statistics
import time
import warnings

import numpy as np

from nnexp.bench.problems import Problem, median_epoch
from nnexp.names import STATISTICS
from nnexp.train.callbacks import Callback


class EpochClock(Callback):
    """Notes when each epoch ends. Put last: an epoch's time is then everything the loop does
    for it, validation and the other callbacks (tracking) included."""

    def __init__(self) -> None:
        self.stamps: list[float] = []

    def on_fit_start(self, trainer) -> None:
        self.stamps = [time.perf_counter()]

    def on_epoch_end(self, trainer, epoch, metrics) -> None:
        self.stamps.append(time.perf_counter())

    def median(self) -> float:
        return statistics.median(b - a for a, b in itertools.pairwise(self.stamps))


def make_trainer(p: Problem, optimizer: str, lr: float, stats: bool, callbacks=()):
    from nnexp.data import Splits
    from nnexp.nn import OPTIMIZERS, SCHEDULES, SoftmaxCrossEntropy, mlp
    from nnexp.train import Trainer, TrainSettings

    model = mlp(p.X.shape[1], p.hidden, p.n_classes, activation="relu", dtype=p.X.dtype)
    empty = p.X[:0]
    data = Splits(p.X, p.y, p.X[:256], p.y[:256], empty, p.y[:0], task="multiclass")
    settings = TrainSettings(
        epochs=p.epochs,
        batch_size=p.batch,
        stats=STATISTICS if stats else (),
    )
    opt = OPTIMIZERS.lookup(optimizer)(list(model.parameters()), lr=lr)
    schedule = SCHEDULES.lookup("constant")(lr)
    loss = SoftmaxCrossEntropy()
    return Trainer(model, loss, opt, schedule, data, settings, list(callbacks))


def time_nnexp(p: Problem, optimizer: str, lr: float, stats: bool, callbacks=()) -> tuple:
    """Median seconds per epoch, final training accuracy, and the seconds per epoch that the
    statistics took (measured inside the loop)."""
    clock = EpochClock()
    trainer = make_trainer(p, optimizer, lr, stats, [*callbacks, clock])
    trainer.fit()
    acc = float(np.mean(trainer.loss.predict(trainer.predict_logits(p.X)) == p.y))
    return clock.median(), acc, trainer.stats_seconds / trainer.epoch


def time_gemm(p: Problem) -> tuple:
    """The products one epoch cannot avoid: forward x@W per layer, backward h.T@d per layer and
    d@W.T for all but the first layer — with the trainer's shapes and dtype, nothing else."""
    rng = np.random.default_rng(0)
    widths = [p.X.shape[1], *p.hidden, p.n_classes]
    W = [rng.standard_normal((a, b)).astype(p.X.dtype) for a, b in itertools.pairwise(widths)]
    n = len(p.X)

    def epoch():
        for start in range(0, n, p.batch):
            h = [p.X[start : start + p.batch]]
            for w in W:
                h.append(h[-1] @ w)
            d = h[-1]
            for i in range(len(W) - 1, -1, -1):
                h[i].T @ d
                if i:
                    d = d @ W[i].T

    return median_epoch(epoch, max(2, p.epochs)), float("nan")


def time_sklearn(p: Problem, optimizer: str, lr: float) -> tuple:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    clf = MLPClassifier(
        hidden_layer_sizes=p.hidden,
        solver=optimizer,
        learning_rate_init=lr,
        batch_size=p.batch,
        max_iter=p.epochs,
        alpha=0.0,
        momentum=0.0,
        nesterovs_momentum=False,
        tol=0.0,
        n_iter_no_change=p.epochs + 1,
        random_state=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        start = time.perf_counter()
        clf.fit(p.X, p.y)
        seconds = (time.perf_counter() - start) / p.epochs
    return seconds, float(clf.score(p.X, p.y))


def time_torch(p: Problem, optimizer: str, lr: float) -> tuple | None:
    try:
        import torch
    except ImportError:
        return None
    torch.manual_seed(0)
    dtype = torch.float32 if p.X.dtype == np.float32 else torch.float64
    widths = [p.X.shape[1], *p.hidden, p.n_classes]
    layers = []
    for a, b in itertools.pairwise(widths):
        layers += [torch.nn.Linear(a, b, dtype=dtype), torch.nn.ReLU()]
    net = torch.nn.Sequential(*layers[:-1])
    opt = (torch.optim.SGD if optimizer == "sgd" else torch.optim.Adam)(net.parameters(), lr=lr)
    X, y = torch.from_numpy(p.X), torch.from_numpy(p.y.astype(np.int64))
    loss_fn = torch.nn.CrossEntropyLoss()

    def epoch():
        order = torch.randperm(len(X))
        for start in range(0, len(X), p.batch):
            idx = order[start : start + p.batch]
            opt.zero_grad()
            loss_fn(net(X[idx]), y[idx]).backward()
            opt.step()

    seconds = median_epoch(epoch, p.epochs)
    with torch.no_grad():
        acc = float((net(X).argmax(1) == y).double().mean())
    return seconds, acc


def contenders(p: Problem, optimizer: str, lr: float, rounds: int) -> list[tuple]:
    """(name, seconds per epoch, train accuracy) of each contender: the median over `rounds`
    rounds that run every contender once, so a slow spell of a shared machine hits them all."""
    runs: dict[str, list[tuple[float, float]]] = {}
    for _ in range(rounds):
        measured = {
            "gemm bound": time_gemm(p),
            "nnexp": time_nnexp(p, optimizer, lr, stats=False),
            "nnexp + all stats": time_nnexp(p, optimizer, lr, stats=True),
            f"sklearn MLP ({optimizer})": time_sklearn(p, optimizer, lr),
            f"torch ({optimizer})": time_torch(p, optimizer, lr),
        }
        for name, result in measured.items():
            if result is not None:
                runs.setdefault(name, []).append(result[:2])
    return [
        (name, statistics.median(s for s, _ in results), results[-1][1])
        for name, results in runs.items()
    ]
