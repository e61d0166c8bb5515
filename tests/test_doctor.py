"""The doctor and the pre-flight check (issue 15): each diagnosis on a run that has it and on
one that does not (the rules called directly on per-epoch histories shaped as runs record
them), and the real CLIs in subprocesses on a sqlite store: a run's verdict and its
``doctor.findings`` tag, ``python -m nnexp.doctor`` naming the cause of a failure mode,
``python -m nnexp.check`` passing the default config and failing broken ones with the right
check and its fix."""

from __future__ import annotations

import resource
import subprocess
import sys

import pytest
from conftest import cli_env

from nnexp.names import (
    TAG_DOCTOR_FINDINGS,
    TAG_KIND,
    activation_key,
    grad_norm_key,
    underflow_key,
    update_ratio_key,
)
from nnexp.report.doctor import sweep_patterns
from nnexp.train.diagnosis import RunFacts, diagnose, findings_tag

EPOCHS = 20


def _history(
    first_grad: float = 0.1,
    last_grad: float = 0.1,
    ratio: float = 1e-3,
    dead: float = 0.0,
    sat: float | None = None,
    std: float = 0.5,
    train: list[float] | None = None,
    val: list[float] | None = None,
    acc: float = 0.95,
    global_max: float = 1.0,
    underflow: float | None = None,
) -> list[dict[str, float]]:
    train = train or [0.7 * 0.9**e for e in range(EPOCHS)]
    val = val or [v + 0.02 for v in train]
    rows = []
    for e in range(len(train)):
        row = {
            "train/loss": train[e],
            "val/loss": val[e],
            "train/acc": acc,
            grad_norm_key("dense_0/W", "mean"): first_grad,
            grad_norm_key("dense_2/W", "mean"): last_grad,
            "grad_norm/global/max": global_max,
            update_ratio_key("dense_0"): ratio,
            update_ratio_key("dense_2"): ratio,
            activation_key("relu_0", "std"): std,
            activation_key("relu_0", "dead_frac"): dead,
        }
        if sat is not None:
            row[activation_key("sigmoid_1", "sat_frac")] = sat
        if underflow is not None:  # trainer.precision=mixed
            row[underflow_key("dense_0")] = underflow
            row[underflow_key("dense_2")] = 0.0
        rows.append(row)
    return rows


def _codes(history=None, params=None, **facts) -> set[str]:
    params = {"optimizer.name": "sgd", "optimizer.lr": "0.1", "model.init": "he"} | (params or {})
    run = RunFacts(history if history is not None else _history(), params, task="binary", **facts)
    return {f.code for f in diagnose(run)}


def test_a_healthy_run_has_no_findings():
    assert _codes() == set()
    assert findings_tag([]) == "none"


@pytest.mark.parametrize(
    ("code", "sick", "healthy"),
    [
        ("vanishing_gradients", {"history": _history(first_grad=1e-6)}, {}),
        ("exploding_gradients", {"history": _history(first_grad=1e3)}, {}),
        ("exploding_gradients", {"history": _history(global_max=1e6)}, {}),
        # Regularized runs that train well keep 0.70-0.76 of a layer's units silent in a batch
        # (experiments/regularization.md): that is sparsity, not dead units.
        ("dead_relu", {"history": _history(dead=0.85)}, {"history": _history(dead=0.76)}),
        (
            "gradient_underflow",
            {"history": _history(underflow=1.0, first_grad=0.0, acc=0.5)},
            {"history": _history(underflow=0.01)},
        ),
        ("saturated", {"history": _history(sat=0.8)}, {"history": _history(sat=0.1)}),
        ("symmetry", {"params": {"model.init": "zeros"}}, {}),
        ("constant_activations", {"history": _history(std=0.0)}, {}),
        ("lr_too_high", {"history": _history(ratio=0.5)}, {"history": _history(ratio=3e-3)}),
        (
            "lr_too_high",
            {"history": _history(train=[0.3, 0.5] * 10)},
            {"history": _history(train=[0.5 - 0.01 * e for e in range(20)])},
        ),
        (  # any optimizer: an epoch's loss far above the chance loss ln 2 (Adam at lr 1)
            "lr_too_high",
            {
                "history": _history(train=[4800.0] + [0.69] * 19, acc=0.5),
                "params": {"optimizer.name": "adam", "optimizer.lr": "1"},
            },
            {
                "history": _history(train=[10.0] + [0.6 - 0.01 * e for e in range(19)]),
                "params": {"optimizer.name": "adam", "optimizer.lr": "0.1"},
            },
        ),
        (
            "lr_too_low",
            {"history": _history(ratio=1e-7, train=[0.70 - 0.001 * e for e in range(20)])},
            {"history": _history(ratio=1e-7)},  # the loss falls: not stuck
        ),
        (
            "overfitting",
            {
                "history": _history(
                    train=[0.6 - 0.02 * e for e in range(20)],
                    val=[0.6 - 0.03 * e if e < 6 else 0.42 + 0.04 * (e - 6) for e in range(20)],
                )
            },
            {},
        ),
        ("underfitting", {"history": _history(acc=0.51)}, {"history": _history(acc=0.8)}),
        (
            "input_not_standardized",
            {"history": _history(ratio=0.5), "params": {"dataset.standardize": "False"}},
            {"history": _history(), "params": {"dataset.standardize": "False"}},
        ),
    ],
)
def test_each_diagnosis_fires_on_a_run_that_has_it_and_not_on_one_that_does_not(
    code, sick, healthy
):
    assert code in _codes(**sick)
    assert code not in _codes(**healthy)


def test_gradient_underflow_explains_the_vanished_gradient_and_the_chance_accuracy():
    """Mixed precision without loss scaling: the first layer's gradient is all zeros, which
    also reads as vanishing gradients and leaves training at chance; the doctor names the cause
    alone, with the fix."""
    lost = _history(underflow=1.0, first_grad=0.0, acc=0.5)
    params = {"trainer.precision": "mixed", "trainer.loss_scale": "none"}
    run = RunFacts(lost, {"optimizer.name": "adam", **params}, task="binary")
    (finding,) = diagnose(run)
    assert finding.code == "gradient_underflow" and finding.severity == "FAIL"
    assert "amp/underflow/dense_0 = 1" in finding.evidence
    assert "trainer.loss_scale=none" in finding.evidence
    assert finding.fix == ("trainer.loss_scale=dynamic",)
    # The same run without the underflow metrics: the symptoms are findings of their own.
    bare = [{k: v for k, v in row.items() if not k.startswith("amp/")} for row in lost]
    codes = {f.code for f in diagnose(RunFacts(bare, run.params, task="binary"))}
    assert {"vanishing_gradients", "underfitting"} <= codes


@pytest.mark.parametrize("first", [True, False])
def test_the_gradient_ratio_compares_dense_layers_never_a_residual_projection(first):
    """``residual_0``'s projection has a W beside ``dense_0``'s, at the same index: the ratio
    is the first Dense layer's, whichever order the keys come in (a set's order of the two
    changed from one process to the next, and the findings of a page with it)."""

    def history(dense_0: float, projection: float) -> list[dict[str, float]]:
        rows = _history(first_grad=dense_0)
        extra = grad_norm_key("residual_0/W", "mean")
        return [
            ({extra: projection} | row) if first else (row | {extra: projection}) for row in rows
        ]

    assert "vanishing_gradients" in _codes(history(dense_0=1e-6, projection=0.1))
    assert "vanishing_gradients" not in _codes(history(dense_0=0.1, projection=1e-6))


def test_divergence_names_its_cause_from_the_message_or_the_config():
    lr = _codes(
        [], error="NonFiniteError: training diverged at epoch 1 ... Try a lower", diverged=True
    )
    assert lr == {"diverged_lr"}
    init = "training diverged ... (lr=0.1). Likely cause: the initialization, not the lr"
    assert _codes([], error=init, diverged=True) == {"diverged_init"}
    # A run recorded without the cause in its message: the config's evidence decides.
    huge = {"model.init": "normal", "model.init_scale": "1e+30"}
    assert _codes([], params=huge, error="diverged", diverged=True) == {"diverged_init"}
    raw = {"dataset.standardize": "False"}
    assert _codes([], params=raw, error="diverged", diverged=True) == {"diverged_input"}
    assert "diverged_lr" not in _codes()


def test_a_sweep_pattern_is_a_finding_shared_by_exactly_one_swept_value():
    params = {
        "a": {"model.activation": "sigmoid", "depth": "2"},
        "b": {"model.activation": "sigmoid", "depth": "8"},
        "c": {"model.activation": "relu", "depth": "2"},
    }
    codes = {"a": {"vanishing_gradients"}, "b": {"vanishing_gradients"}, "c": set()}
    assert sweep_patterns(["model.activation", "depth"], params, codes) == [
        "all 2 runs with model.activation=sigmoid: vanishing_gradients"
    ]
    codes["c"] = {"vanishing_gradients"}
    assert sweep_patterns(["model.activation"], params, codes) == ["every run: vanishing_gradients"]


def test_a_sweep_pattern_of_two_values_where_neither_alone_splits_the_sweep():
    """The deep sigmoid nets: sigmoid alone is not it (the shallow sigmoid net trains), nor is
    depth alone (the deep ReLU net trains); the pair is."""
    act, depth = "model.activation", "model.hidden"
    grid = [(a, d, lr) for a in ("sigmoid", "relu") for d in ("[8]", "[8,8,8,8]") for lr in "12"]
    params = {f"{a}{d}{lr}": {act: a, depth: d, "optimizer.lr": lr} for a, d, lr in grid}
    codes = {run: set() for run in params}
    for run, p in params.items():
        if p[act] == "sigmoid" and p[depth] == "[8,8,8,8]":
            codes[run] = {"vanishing_gradients"}
    swept = [act, depth, "optimizer.lr"]
    assert sweep_patterns(swept, params, codes) == [
        "all 2 runs with model.activation=sigmoid, model.hidden=[8,8,8,8]: vanishing_gradients"
    ]
    # One more sigmoid net vanishes at lr 1, shallow: no value, nor pair of values, has it alone.
    codes["sigmoid[8]1"] = {"vanishing_gradients"}
    assert sweep_patterns(swept, params, codes) == []
    # A value that splits the sweep is said alone, not again in a pair (here with `arm`, a
    # key that always goes with the activation).
    for p in params.values():
        p["arm"] = p[act]
    codes = {run: {"dead_relu"} if p[act] == "relu" else set() for run, p in params.items()}
    assert sweep_patterns([act, "arm", depth], params, codes) == [
        "all 4 runs with model.activation=relu: dead_relu",
        "all 4 runs with arm=relu: dead_relu",
    ]


# --- the real CLIs -----------------------------------------------------------------------------

TINY = ("dataset.n_samples=200", "trainer.epochs=4", "trainer.deterministic=true")


def _py(workdir, module: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=workdir,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_a_run_ends_with_the_verdict_and_the_doctor_reads_its_cause(cli):
    healthy = cli.ok(*TINY, "optimizer=adam", "optimizer.lr=0.01")
    assert "nnexp: doctor: no findings" in healthy.stdout  # INFO; a finding is a warning
    zeros = cli.ok(*TINY, "model.init=zeros")
    assert "nnexp: doctor: FAIL symmetry" in zeros.stderr
    huge = cli(*TINY, "model.init=normal", "model.init_scale=1e30")
    assert huge.returncode == 3
    assert "Likely cause: the initialization, not the learning rate" in huge.stderr
    assert "optimizer.lr=0.01" not in huge.stderr  # the lr is not blamed
    runs = sorted(cli.runs(), key=lambda r: r.info.start_time)
    tags = [r.data.tags.get(TAG_DOCTOR_FINDINGS) for r in runs]
    assert tags[0] == "none" and "symmetry" in tags[1] and tags[2] == "diverged_init"

    doctor = _py(cli.workdir, "nnexp.doctor", runs[1].info.run_id, "--uri", cli.uri)
    assert doctor.returncode == 1, doctor.stderr  # a FAIL finding
    assert "FAIL symmetry: identical units (zero initialization)" in doctor.stdout
    assert "fix: model.init=he" in doctor.stdout
    latest = _py(cli.workdir, "nnexp.doctor", "--uri", cli.uri)  # the latest run: diverged
    assert "FAIL diverged: the initialization is out of range" in latest.stdout
    assert "fix: model.init=he" in latest.stdout
    fine = _py(cli.workdir, "nnexp.doctor", runs[0].info.run_id, "--uri", cli.uri)
    assert fine.returncode == 0 and "no findings" in fine.stdout
    missing = _py(cli.workdir, "nnexp.doctor", "--uri", f"sqlite:///{cli.workdir}/none.db")
    assert missing.returncode == 2 and "nnexp.doctor: error: no MLflow store" in missing.stderr


def test_the_doctor_of_a_sweep_prints_one_line_per_run_and_the_pattern(cli):
    cli.ok("-m", *TINY, "model.init=zeros,he", "optimizer=adam", "optimizer.lr=0.01")
    proc = _py(cli.workdir, "nnexp.doctor", "--sweep", "latest", "--uri", cli.uri)
    lines = proc.stdout.splitlines()
    assert proc.returncode == 1, proc.stderr
    assert any("init=zeros" in line and "FAIL symmetry" in line for line in lines)
    assert any("init=he" in line and "healthy" in line for line in lines)


def _check(workdir, *overrides: str) -> subprocess.CompletedProcess:
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    return _py(workdir, "nnexp.check", *overrides, f"tracking.uri={uri}")


def _status(proc: subprocess.CompletedProcess, check: str) -> str:
    line = next(line for line in proc.stdout.splitlines() if line.startswith(check))
    return next(word for word in line.split() if word in ("PASS", "WARN", "FAIL"))


def test_check_passes_the_default_config_in_seconds_and_records_a_run(cli):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = _check(cli.workdir)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # CPU seconds, not wall time: the suite shares 2 cores (wall time reached 35 s under -n 2).
    took = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for check in ("data", "initial loss", "gradient check", "overfit", "learning-rate"):
        assert _status(proc, check) == "PASS", proc.stdout
    assert took < 10, f"{took:.1f} s of CPU"  # the bound (alone: ~2-4 s wall)
    (run,) = cli.runs()
    assert run.data.tags[TAG_KIND] == "check" and run.info.status == "FINISHED"
    files = {a.path for a in cli.client().list_artifacts(run.info.run_id)}
    assert {"check.txt", "lr_range.png"} <= files


@pytest.mark.parametrize(
    ("overrides", "check", "fix"),
    [
        (("model.init=zeros",), "initial loss", "model.init=he"),
        (("model.init=zeros",), "overfit", "model.init=he"),
        (("model=deep", "optimizer.lr=10"), "learning-rate", "optimizer.lr="),
        (("model=deep", "optimizer.lr=10"), "overfit", "optimizer.lr=1 "),
        (("model.init=normal", "model.init_scale=1e30"), "initial loss", "model.init=he"),
        (("model=sigmoid_deep",), "initial loss", "model.activation=relu"),
        (
            (
                "dataset.scale_feature=0",
                "dataset.feature_scale=500000",
                "dataset.standardize=false",
            ),
            "data",
            "dataset.standardize=true",
        ),
    ],
)
def test_check_fails_a_broken_config_with_the_right_check_and_fix(tmp_path, overrides, check, fix):
    proc = _check(tmp_path, *overrides, "tracking.enabled=false")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert _status(proc, check) == "FAIL", proc.stdout
    line = next(line for line in proc.stdout.splitlines() if line.startswith(check))
    assert fix in line + " ", line
    assert "nnexp.check: FAIL:" in proc.stderr


def test_check_refuses_a_bad_override_in_one_line(tmp_path):
    proc = _check(tmp_path, "model.init=bogus")
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("nnexp: error: model.init='bogus'")
    assert not (tmp_path / "mlflow.db").exists()  # nothing recorded
