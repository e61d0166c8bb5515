"""`python -m nnexp.bench`: how fast nnexp trains an MLP, against the bound and the neighbours.

In one process and on the same data it times median seconds per epoch of
  nnexp           the real Trainer (statistics off / all statistics on every step)
  gemm            the bare matrix products of one epoch's forward and backward passes: the bound
  sklearn         scikit-learn's MLPClassifier, same architecture, solver, lr, batch and dtype
  torch           PyTorch CPU, if it happens to be installed
and reports each one's final training accuracy (equal speed must mean equal work), the ratios,
and the BLAS library, kernel and threads it ran with. `--quick` shrinks everything (for CI).
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass
class Problem:
    name: str
    X: np.ndarray
    y: np.ndarray
    hidden: list[int]
    n_classes: int
    batch: int
    epochs: int


def blas_info() -> str:
    from threadpoolctl import threadpool_info

    parts = []
    for pool in threadpool_info():
        if pool.get("user_api") == "blas":
            parts.append(
                f"{pool.get('internal_api')} {pool.get('version')} "
                f"kernel={pool.get('architecture')} threads={pool.get('num_threads')}"
            )
    return "; ".join(parts) or "no BLAS found by threadpoolctl"


def large_problem(quick: bool, dtype) -> Problem:
    from sklearn.datasets import make_classification

    n, d = (2000, 64) if quick else (60000, 784)
    X, y = make_classification(
        n_samples=n, n_features=d, n_informative=min(d, 50), n_classes=10, random_state=0
    )
    X = ((X - X.mean(0)) / X.std(0)).astype(dtype)
    hidden = [32, 16] if quick else [256, 128]
    return Problem("large", X, y, hidden, 10, 128, 2 if quick else 3)


def small_problem(quick: bool, dtype) -> Problem:
    from sklearn.datasets import make_moons

    X, y = make_moons(n_samples=1000, noise=0.2, random_state=0)
    X = ((X - X.mean(0)) / X.std(0)).astype(dtype)
    return Problem("small", X, y, [16], 2, 32, 5 if quick else 100)


def median_epoch(run_epoch: Callable[[], None], epochs: int) -> float:
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        run_epoch()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# --- the contenders ------------------------------------------------------------------------------


def time_nnexp(p: Problem, optimizer: str, lr: float, stats: bool, callbacks=()) -> tuple:
    from nnexp.nn import OPTIMIZERS, SCHEDULES, SoftmaxCrossEntropy, mlp
    from nnexp.train import Data, Trainer, TrainSettings

    model = mlp(p.X.shape[1], p.hidden, p.n_classes, activation="relu", dtype=p.X.dtype)
    empty = p.X[:0]
    data = Data(p.X, p.y, p.X[:256], p.y[:256], empty, p.y[:0], classification=True)
    settings = TrainSettings(
        epochs=p.epochs, batch_size=p.batch, stats=("grad_norm", "update_ratio", "activations")
    )
    if not stats:
        settings.stats = ()
    opt = OPTIMIZERS.lookup(optimizer)(list(model.parameters()), lr=lr)
    trainer = Trainer(
        model,
        SoftmaxCrossEntropy(),
        opt,
        SCHEDULES.lookup("constant")(lr),
        data,
        settings,
        list(callbacks),
    )
    trainer.fit()
    seconds = statistics.median(h["time/epoch_s"] for h in trainer.history)
    acc = float(np.mean(trainer.loss.predict(trainer.predict_logits(p.X)) == p.y))
    return seconds, acc


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


# --- the report ----------------------------------------------------------------------------------


def table(rows: list[tuple[str, float, float]], base: float, base_name: str) -> str:
    lines = [f"{'':24s} {'s/epoch':>10s} {'vs ' + base_name:>12s} {'train acc':>10s}"]
    for name, seconds, acc in rows:
        lines.append(f"{name:24s} {seconds:10.4f} {seconds / base:11.2f}x {acc:10.4f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m nnexp.bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (CI smoke run)")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    args = parser.parse_args(argv)
    dtype = np.dtype(args.dtype)
    print(f"BLAS: {blas_info()}")
    print(f"dtype: {dtype}, numpy {np.__version__}\n")

    for make, settings in (
        (large_problem, (("sgd", 0.1), ("adam", 1e-3))),
        (small_problem, (("sgd", 0.1),)),
    ):
        p = make(args.quick, dtype)
        arch = "-".join(map(str, [p.X.shape[1], *p.hidden, p.n_classes]))
        print(f"== {p.name}: {p.X.shape[0]} x {p.X.shape[1]}, MLP {arch}, batch {p.batch}")
        gemm = time_gemm(p)[0]
        for optimizer, lr in settings:
            rows = [("gemm bound", gemm, float("nan"))]
            rows.append(("nnexp", *time_nnexp(p, optimizer, lr, stats=False)))
            rows.append(("nnexp + all stats", *time_nnexp(p, optimizer, lr, stats=True)))
            rows.append((f"sklearn MLP ({optimizer})", *time_sklearn(p, optimizer, lr)))
            torch_result = time_torch(p, optimizer, lr)
            if torch_result is not None:
                rows.append((f"torch ({optimizer})", *torch_result))
            print(f"-- {optimizer} lr={lr}")
            print(table(rows, rows[1][1], "nnexp"))
            sk = rows[3][1]
            print(
                f"nnexp/gemm = {rows[1][1] / gemm:.2f}x   nnexp/sklearn = {rows[1][1] / sk:.2f}x\n"
            )


if __name__ == "__main__":
    main()
