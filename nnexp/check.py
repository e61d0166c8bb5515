"""``python -m nnexp.check <overrides>``: the tutorial's sanity checks, before a long training.

    python -m nnexp.check                                  # the default config
    python -m nnexp.check model.init=zeros                 # FAIL: symmetric units, cannot learn
    python -m nnexp.check optimizer.lr=10 model=deep       # FAIL: the lr range test, overfitting

The same overrides as a run, composed by Hydra from the same config, validated by the same
code (`nnexp.cli.validated`) and built by the same composition root (`nnexp.build`). Then, in
seconds, each PASS / WARN / FAIL with its evidence and the fix as overrides to paste:

1. data: features far from standardized, constant features, NaN, class imbalance, few rows;
2. the initial loss against chance (ln C softmax, ln 2 binary, the targets' variance for MSE)
   and each layer's activation scale before step 1 (vanishing, exploding);
3. a gradient check of this network in float64 on a small batch (dropout frozen);
4. overfitting a tiny batch (32 rows) to near-zero loss in a bounded number of steps;
5. a learning-rate range test: the loss as the lr grows exponentially, the lr of steepest
   descent and the lr where the loss blows up, a suggested ``optimizer.lr``, and its plot.

It records an MLflow run (tag ``nnexp.kind=check``, unless ``tracking.enabled=false``) with the
table and the plot, prints the table, and exits 1 if a check fails (2 on a bad config).
"""

from __future__ import annotations

import copy
import math
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

from nnexp.train.diagnosis import THRESHOLDS

PASS, WARN, FAIL = "PASS", "WARN", "FAIL"
VANISHING = THRESHOLDS["vanishing_ratio"]  # the doctor's: first layer's gradient / the output's


@dataclass(frozen=True)
class Limits:
    """Every threshold of the checks, with what it means."""

    feature_mean: float = 3.0  # a feature's |mean| beyond this (in its std): not standardized
    # a feature's std outside this: not standardized
    feature_std: tuple[float, float] = (0.1, 10.0)
    rows: int = 100  # fewer training rows: expect overfitting
    imbalance: float = 0.5  # the rarest class below this × its balanced share: imbalanced
    initial_loss: tuple[float, float] = (1.5, 3.0)  # initial loss above these × chance: WARN, FAIL
    activation_std: tuple[float, float] = (
        1e-3,
        1e3,
    )  # a layer's output std outside this before step 1
    gradcheck: tuple[float, float] = (
        1e-6,
        1e-4,
    )  # max relative error above: WARN, FAIL (the tutorial's 1e-4)
    overfit_rows: int = 32  # the tiny batch
    overfit_steps: int = 1000  # full-batch steps to overfit it (milliseconds each)
    overfit_loss: float = 0.1  # reached: loss below this × chance
    range_steps: int = 200  # steps of the lr range test
    range_lr: tuple[float, float] = (1e-6, 100.0)  # from, to
    above_steepest: float = 30.0  # optimizer.lr beyond this × the steepest descent's lr: WARN
    blowup: float = 4.0  # the loss above this × its minimum (or non-finite): blown up


LIMITS = Limits()


@dataclass
class CheckResult:
    name: str
    status: str  # PASS, WARN, FAIL
    evidence: str
    fix: tuple[str, ...] = ()

    def row(self) -> list[str]:
        return [self.name, self.status, self.evidence, " ".join(self.fix)]


@dataclass
class RangeTest:
    """The lr range test's curve and what it found."""

    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)  # smoothed
    steepest: float = math.nan
    blowup: float = math.nan  # NaN: never blew up within the range

    @property
    def suggested(self) -> float:
        return self.steepest


# --- the checks (each: the built run → a CheckResult) ---------------------------------------


def check_data(built, cfg) -> CheckResult:
    """The training split as the network sees it (after standardization, if on)."""
    X = np.asarray(built.data.X_train, dtype=np.float64)
    problems: list[str] = []
    fix: list[str] = []
    status = PASS
    if not np.isfinite(X).all():
        return CheckResult("data", FAIL, "the training inputs hold NaN/Inf", ())
    mean, std = X.mean(axis=0), X.std(axis=0)
    lo, hi = LIMITS.feature_std
    live = std > 0
    far = np.flatnonzero(
        live & ((np.abs(mean) > LIMITS.feature_mean * np.maximum(std, 1)) | (std < lo) | (std > hi))
    )
    if far.size:
        i = int(far[np.argmax(np.abs(mean[far]) + std[far])])
        problems.append(
            f"{far.size} of {X.shape[1]} features far from standardized "
            f"(feature {i}: mean {mean[i]:.3g}, std {std[i]:.3g})"
        )
        fix.append("dataset.standardize=true")
        status = FAIL
    if (~live).any():
        problems.append(
            f"{int((~live).sum())} constant feature(s): {np.flatnonzero(~live)[:5].tolist()}"
        )
        status = status if status == FAIL else WARN
    n = X.shape[0]
    if n < LIMITS.rows:
        problems.append(f"only {n} training rows: expect overfitting")
        fix += ["regularization=l2", "trainer.early_stopping.patience=10"]
        status = status if status == FAIL else WARN
    if built.data.classification:
        y = np.asarray(built.data.y_train).reshape(n, -1)
        labels = y.argmax(axis=1) if y.shape[1] > 1 else y[:, 0].astype(int)
        counts = np.bincount(labels)
        share = counts.min() / n * len(counts)
        if share < LIMITS.imbalance:
            problems.append(
                f"class imbalance: the rarest class has {counts.min()} of {n} rows "
                f"({share:.2f}x its balanced share); accuracy will flatter the model"
            )
            status = status if status == FAIL else WARN
    evidence = "; ".join(problems) or f"{n} rows x {X.shape[1]} features, all near mean 0, std 1"
    return CheckResult("data", status, evidence, tuple(dict.fromkeys(fix)))


def chance_loss(built) -> float:
    """The loss of a model that knows only the class frequencies' uniform guess: ln C for
    softmax, ln 2 for binary, the targets' variance for MSE (the targets are standardized)."""
    if built.loss_name == "softmax_cross_entropy":
        return math.log(built.splits.n_classes)
    if built.loss_name == "sigmoid_bce":
        return math.log(2)
    return float(np.mean(np.var(built.data.y_train, axis=0))) or 1.0


def check_initial(built, cfg) -> CheckResult:
    """The loss before step 1 against chance, and each activation's scale on a batch."""
    x, y = built.data.X_train[:256], built.data.y_train[:256]
    model = built.model
    stds: list[tuple[str, float]] = []
    with np.errstate(all="ignore"):
        out = x
        for m in model.modules:
            out = m.forward(out, training=False)
            if m.kind not in ("dense", "dropout", "batchnorm") or m is model.modules[-1]:
                stds.append((m.name, float(np.std(out.astype(np.float64)))))
        loss = float(built.loss.value(out, y))
    chance = chance_loss(built)
    init = "xavier" if cfg.model.activation in ("sigmoid", "tanh") else "he"
    # Huge inputs explode the first layer whatever the init: then the input is the fix.
    raw = float(np.max(np.abs(x))) > 100 if x.size else False
    fix = ("dataset.standardize=true",) if raw else (f"model.init={init}",)
    warn, fail = LIMITS.initial_loss
    lo, hi = LIMITS.activation_std
    hidden = stds[:-1]
    bad = [(name, s) for name, s in hidden if not lo <= s <= hi]
    parts = [f"initial loss {loss:.4g} (chance {chance:.4g})"]
    if hidden:
        parts.append("activation std " + ", ".join(f"{n} {s:.2g}" for n, s in hidden))
    evidence = "; ".join(parts)
    if (
        not math.isfinite(loss)
        or loss > fail * chance
        or any(s > hi or not math.isfinite(s) for _, s in bad)
    ):
        return CheckResult(
            "initial loss and activations", FAIL, evidence + " — exploding before step 1", fix
        )
    if bad:
        name, s = bad[0]
        return CheckResult(
            "initial loss and activations",
            FAIL,
            evidence + f" — {name} is {'constant' if s == 0 else 'vanishing'} before step 1",
            (f"model.init={init}",),
        )
    ratio = _initial_gradient_ratio(model, built.loss, x, y)
    if ratio is not None:
        evidence += f"; gradient dense_0/W vs output layer {ratio:.2g}"
        if ratio < VANISHING:
            return CheckResult(
                "initial loss and activations",
                FAIL,
                evidence + " — gradients vanish toward the input before step 1",
                ("model.activation=relu", "model.init=he", "regularization.batch_norm=true"),
            )
    if loss > warn * chance:
        return CheckResult("initial loss and activations", WARN, evidence, fix)
    return CheckResult("initial loss and activations", PASS, evidence)


def _initial_gradient_ratio(model, loss, x, y) -> float | None:
    """The first weight matrix's gradient norm over the output layer's, before step 1."""
    weights = [p for p in model.parameters() if p.decay]
    if len(weights) < 2:
        return None
    with np.errstate(all="ignore"):
        _, dlogits = loss.value_and_grad(model.forward(x, training=True), y)
        model.backward(dlogits, need_dx=False)
        first, last = (
            float(np.linalg.norm(p.grad.astype(np.float64))) for p in (weights[0], weights[-1])
        )
    return first / last if last > 0 and math.isfinite(first / last) else None


def _float64_copy(built):
    """The network in float64 with the same weights (gradient checks need the precision)."""
    from nnexp.nn import Dropout, mlp

    model = mlp(**(built.mlp_kwargs | {"dtype": np.float64}))
    for mine, theirs in zip(model.parameters(), built.model.parameters(), strict=True):
        mine.value[...] = theirs.value
    for m in model.modules:
        if isinstance(m, Dropout):
            m.frozen = True  # the same mask in every finite-difference evaluation
    return model


def check_gradients(built, cfg) -> CheckResult:
    from nnexp.nn import gradcheck

    model = _float64_copy(built)
    notes = []
    rows = min(8, len(built.data.X_train))
    x = built.data.X_train[:rows].astype(np.float64)
    if x.size and float(np.max(np.abs(x))) > 10:
        # Finite differences on inputs of 1e5 drown in rounding: backprop is checked on the
        # same batch standardized, which does not change the code being checked.
        x = (x - x.mean(axis=0)) / np.where(x.std(axis=0) > 0, x.std(axis=0), 1.0)
        notes.append("batch standardized")
    with np.errstate(all="ignore"):
        start = float(built.loss.value(model.forward(x, training=True), _targets(built, rows)))
    if not start <= 100 * chance_loss(built):
        # Weights that overflow the forward pass leave nothing to compare: check the same
        # architecture at Xavier-initialized weights (the initial-loss check reports the init).
        from nnexp.nn import Dropout, mlp

        model = mlp(
            **(built.mlp_kwargs | {"dtype": np.float64, "init": "xavier_normal", "init_kwargs": {}})
        )
        for m in model.modules:
            if isinstance(m, Dropout):
                m.frozen = True
        notes.append("at Xavier weights: these overflow")
    rng = np.random.default_rng(0)
    for p in model.parameters():
        if not p.decay:
            # Off ReLU's kink at exactly 0 (zero init puts every unit there): no derivative
            # exists to check at the kink, and backprop is what is checked, not the init.
            p.value += rng.normal(0.0, 0.1, p.value.shape)
    y = _targets(built, rows)
    with np.errstate(all="ignore"):
        errors = gradcheck(model, built.loss, x, y, l2=cfg.regularization.l2)
    worst = max(errors, key=lambda k: errors[k] if math.isfinite(errors[k]) else math.inf)
    error = errors[worst]
    setting = ", ".join(["float64", f"{rows} rows", f"{len(errors) - 1} parameters", *notes])
    evidence = f"max relative error {error:.2g} at {worst} ({setting})"
    warn, fail = LIMITS.gradcheck
    if not math.isfinite(error):
        return CheckResult(
            "gradient check", WARN, evidence + ": the forward pass overflows, nothing to compare"
        )
    if error > fail:
        return CheckResult(
            "gradient check", FAIL, evidence + ": backprop is not the derivative of forward"
        )
    return CheckResult("gradient check", WARN if error > warn else PASS, evidence)


def _targets(built, rows: int) -> np.ndarray:
    y = built.data.y_train[:rows]
    return y.astype(np.float64) if y.dtype.kind == "f" else y


def _fresh(built, cfg):
    """A fresh copy of the network (same initial weights) and its optimizer."""
    from nnexp.build import build_optimizer

    model = copy.deepcopy(built.model)
    return model, build_optimizer(cfg, model)


def _train_steps(
    model, optimizer, loss, batches, l2: float, lr_at: Callable[[int], float], clip: float | None
):
    """Yield the loss of each step (NaN once it diverges, then stop)."""
    from nnexp.nn import add_l2_grad, clip_by_global_norm

    params = list(model.parameters())
    for step, (x, y) in enumerate(batches):
        optimizer.lr = lr_at(step)
        with np.errstate(all="ignore"):
            value, dlogits = loss.value_and_grad(model.forward(x, training=True), y)
            if not math.isfinite(value):
                yield math.nan
                return
            model.backward(dlogits, need_dx=False)
            if l2:
                add_l2_grad(params, l2)
            if clip:
                clip_by_global_norm(params, clip)
            optimizer.step()
        yield float(value)


def check_overfit(built, cfg) -> CheckResult:
    """Can it drive the loss on a tiny batch to near zero? If not, the model or the optimizer
    settings cannot learn."""
    rows = min(LIMITS.overfit_rows, len(built.data.X_train))
    x, y = built.data.X_train[:rows], built.data.y_train[:rows]
    model, optimizer = _fresh(built, cfg)
    steps = LIMITS.overfit_steps
    lr = cfg.optimizer.lr
    clip = cfg.trainer.grad_clip.norm
    losses = list(
        _train_steps(
            model,
            optimizer,
            built.loss,
            ((x, y) for _ in range(steps)),
            cfg.regularization.l2,
            lambda _: lr,
            clip,
        )
    )
    chance = chance_loss(built)
    target = LIMITS.overfit_loss * chance
    init = "xavier" if cfg.model.activation in ("sigmoid", "tanh") else "he"
    if not losses or not math.isfinite(losses[-1]):
        return CheckResult(
            "overfit a tiny batch",
            FAIL,
            f"{rows} rows: the loss diverged at step {len(losses)} (lr={lr:g})",
            (f"optimizer.lr={lr / 10:g}", "trainer.grad_clip.norm=1.0"),
        )
    hit = next((i + 1 for i, v in enumerate(losses) if v < target), None)
    evidence = (
        f"{rows} rows: loss {losses[0]:.3g} → {min(losses):.3g} in {len(losses)} steps "
        f"(target {target:.3g})"
    )
    if hit is None and built.data.classification and losses[-1] < 0.5 * losses[0]:
        with np.errstate(all="ignore"):
            logits = model.forward(x, training=False)
        accuracy = float(np.mean(built.loss.predict(logits) == _labels(y)))
        if accuracy == 1.0:  # every row right, the loss still falling: it has overfit them
            return CheckResult("overfit a tiny batch", PASS, evidence + ", training accuracy 100 %")
    if hit is not None:
        return CheckResult(
            "overfit a tiny batch",
            PASS,
            evidence.replace(f"in {len(losses)} steps", f"reached at step {hit}"),
        )
    fell = (losses[0] - min(losses)) / losses[0] if losses[0] > 0 else 0.0
    if fell < 0.5:
        return CheckResult(
            "overfit a tiny batch",
            FAIL,
            evidence + ": it cannot learn",
            (f"model.init={init}", "model.activation=relu", f"optimizer.lr={lr * 10:g}"),
        )
    return CheckResult(
        "overfit a tiny batch", WARN, evidence + ": slow", ("optimizer=adam", "optimizer.lr=0.01")
    )


def _labels(y: np.ndarray) -> np.ndarray:
    return y.argmax(axis=1) if y.ndim > 1 and y.shape[1] > 1 else y.reshape(len(y)).astype(int)


def range_test(built, cfg) -> RangeTest:
    """Train a fresh copy with the lr growing exponentially per step; the smoothed loss."""
    lo, hi = LIMITS.range_lr
    steps = LIMITS.range_steps
    model, optimizer = _fresh(built, cfg)
    X, y = built.data.X_train, built.data.y_train
    size = min(cfg.trainer.batch_size, len(X))
    order = np.random.default_rng(cfg.trainer.seed).permutation(len(X))

    def batches():
        for step in range(steps):
            start = (step * size) % max(len(X) - size + 1, 1)
            idx = order[start : start + size]
            yield X[idx], y[idx]

    def lr_at(step: int) -> float:
        return lo * (hi / lo) ** (step / (steps - 1))

    test = RangeTest()
    smooth, best = None, math.inf
    for step, value in enumerate(
        _train_steps(model, optimizer, built.loss, batches(), cfg.regularization.l2, lr_at, None)
    ):
        if not math.isfinite(value):
            test.blowup = lr_at(step)
            break
        smooth = value if smooth is None else 0.9 * smooth + 0.1 * value
        debiased = smooth
        test.lrs.append(lr_at(step))
        test.losses.append(debiased)
        best = min(best, debiased)
        if step > 10 and debiased > LIMITS.blowup * best:
            test.blowup = lr_at(step)
            break
    if len(test.losses) > 5:
        logs = np.log10(test.lrs)
        slope = np.gradient(np.asarray(test.losses), logs)
        test.steepest = float(test.lrs[int(np.argmin(slope[2:-1])) + 2])
    return test


def check_lr(built, cfg, test: RangeTest) -> CheckResult:
    lr = cfg.optimizer.lr
    blow = (
        f"{test.blowup:.2g}"
        if math.isfinite(test.blowup)
        else f"never (up to {LIMITS.range_lr[1]:g})"
    )
    evidence = (
        f"steepest descent at lr {test.steepest:.2g}, blows up at lr {blow}; optimizer.lr={lr:g}"
    )
    if not math.isfinite(test.steepest):
        return CheckResult("learning-rate range test", WARN, evidence + ": no curve to read")
    fix = (f"optimizer.lr={test.suggested:.2g}",)
    if math.isfinite(test.blowup) and lr >= test.blowup / 3:
        return CheckResult(
            "learning-rate range test", FAIL, evidence + ": the lr is at the blow-up", fix
        )
    if lr > LIMITS.above_steepest * test.steepest:
        return CheckResult(
            "learning-rate range test",
            WARN,
            evidence + ": the lr is far above the steepest descent",
            fix,
        )
    if lr < test.steepest / 100:
        return CheckResult(
            "learning-rate range test",
            WARN,
            evidence + ": the lr is far below the steepest descent",
            fix,
        )
    return CheckResult("learning-rate range test", PASS, evidence, fix)


def plot_range(test: RangeTest, lr: float, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(test.lrs, test.losses, label="training loss (smoothed)")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss")
    if math.isfinite(test.steepest):
        ax.axvline(test.steepest, color="green", ls="--", label=f"steepest {test.steepest:.2g}")
    if math.isfinite(test.blowup):
        ax.axvline(test.blowup, color="red", ls="--", label=f"blow-up {test.blowup:.2g}")
    ax.axvline(lr, color="black", ls=":", label=f"optimizer.lr {lr:g}")
    ax.set_xlim(*LIMITS.range_lr)
    ax.set_title("learning-rate range test")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# --- running ---------------------------------------------------------------------------------


def run_checks(cfg, built) -> tuple[list[CheckResult], RangeTest]:
    results = [
        check(built, cfg) for check in (check_data, check_initial, check_gradients, check_overfit)
    ]
    test = range_test(built, cfg)
    results.append(check_lr(built, cfg, test))
    return results, test


def format_table(results: Sequence[CheckResult]) -> str:
    rows = [["check", "status", "evidence", "fix"], *(r.row() for r in results)]
    widths = [max(len(r[i]) for r in rows[:]) for i in range(2)]
    lines = []
    for r in rows:
        fix = f"  → {r[3]}" if r[3] and r is not rows[0] else ""
        lines.append(f"{r[0].ljust(widths[0])}  {r[1].ljust(widths[1])}  {r[2]}{fix}")
    return "\n".join(lines)


def compose(overrides: list[str]):
    """The config a run with these overrides gets (Hydra's compose, the run's config module)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    with initialize_config_module(config_module="nnexp.conf", version_base="1.3"):
        return hydra_compose(config_name="config", overrides=overrides)


def record(cfg, resolved, results: Sequence[CheckResult], table: str, plot: Path) -> str:
    """The check's MLflow run: its table, the plot, a tag per check; returns the run id."""
    from mlflow import MlflowClient

    from nnexp.build import hyperparameters
    from nnexp.names import TAG_KIND
    from nnexp.tracking.context import context_tags
    from nnexp.tracking.store import prepare_store

    client, experiment_id = prepare_store(cfg.tracking.uri or None, cfg.tracking.experiment)
    tags = context_tags(Path.cwd()) | {TAG_KIND: "check"}
    tags |= {f"check.{r.name}": r.status for r in results}
    run = client.create_run(experiment_id, run_name="check", tags=tags)
    run_id = run.info.run_id
    from mlflow.entities import Param

    params = [Param(k, str(v)[:6000]) for k, v in hyperparameters(resolved).items()]
    for start in range(0, len(params), 100):
        client.log_batch(run_id, params=params[start : start + 100])
    with tempfile.TemporaryDirectory() as tmp:
        text = Path(tmp) / "check.txt"
        text.write_text(table + "\n", encoding="utf-8")
        client.log_artifact(run_id, str(text))
    client.log_artifact(run_id, str(plot))
    failed = any(r.status == FAIL for r in results)
    MlflowClient(client.tracking_uri).set_terminated(run_id, "FAILED" if failed else "FINISHED")
    return run_id


def main(argv: list[str] | None = None) -> int:
    from omegaconf import OmegaConf

    from nnexp.build import build
    from nnexp.cli import USER_ERRORS, validated
    from nnexp.tracking.env import configure_mlflow_env

    overrides = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in overrides):
        print(__doc__)
        return 0
    try:
        cfg = compose(overrides)
        conf = validated(cfg)
        built = build(conf)
    except USER_ERRORS as exc:
        print(f"nnexp: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # Hydra's own: an unknown group option, a malformed override
        if type(exc).__module__.startswith(("hydra", "omegaconf")):
            print(f"nnexp: error: {exc}".splitlines()[0], file=sys.stderr)
            return 2
        raise
    results, test = run_checks(conf, built)
    table = format_table(results)
    print(table)
    with tempfile.TemporaryDirectory() as tmp:
        plot = plot_range(test, conf.optimizer.lr, Path(tmp) / "lr_range.png")
        if conf.tracking.enabled:
            configure_mlflow_env()
            run_id = record(conf, OmegaConf.to_container(cfg, resolve=True), results, table, plot)
            print(f"recorded: MLflow run {run_id} (tag nnexp.kind=check): check.txt, lr_range.png")
    failed = [r.name for r in results if r.status == FAIL]
    if failed:
        print(f"nnexp.check: FAIL: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
