"""A seeded fuzz of hostile overrides and data files. Every case ends in a clear error (Hydra's
composition error, or one of nnexp's errors naming the key or the file) or in a correct run
(finite metrics) — never an exception from deep inside NumPy, never a run with NaN metrics.

Most cases run in-process through the CLI's own `nnexp.cli.run` (composed with Hydra's compose
API; tracking off); a smaller sample runs through the real CLI into a sqlite MLflow store,
where a FINISHED run must have finite metrics."""

from __future__ import annotations

import math
import random
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_module
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from omegaconf import open_dict
from omegaconf.errors import OmegaConfBaseException

from nnexp import cli as nnexp_cli

IN_PROCESS_CASES = 300
CLI_CASES = 24

HOSTILE = {
    "optimizer.lr": ["0", "-1", "nan", "inf", "1e308", "abc", "1e-300", "1e6", "[1]", "null"],
    "trainer.epochs": ["0", "-3", "1.5", "abc", "null", "2"],
    "trainer.batch_size": ["0", "-1", "1", "100000000", "x"],
    "trainer.dtype": ["float16", "int32", "float64", "complex128", ""],
    "trainer.seed": ["-1", "1099511627776", "abc", "7"],
    "trainer.nan_policy": ["ignore", "stop", "RAISE"],
    "trainer.stats_every": ["0", "-1", "3"],
    "trainer.log_every": ["0", "5"],
    "trainer.objective": ["loss", "test/acc", "val/acc"],
    "trainer.grad_clip.norm": ["0", "-1", "inf", "1e-30", "nan"],
    "trainer.grad_clip.value": ["0", "1e-30", "-2"],
    "trainer.resume": ["''", "/nonexistent/last.npz", "runs:/", "bad.npz"],
    "model.hidden": ["[]", "[0]", "[-1]", "[16,abc]", "[1000000000000]", "[3,3,3,3,3,3,3,3]"],
    "model.dropout": ["1", "1.5", "-0.1", "nan", "0.9"],
    "model.activation": ["swish", "", "sigmoid", "identity"],
    "model.init": ["bogus", "zeros", "normal"],
    "model.init_scale": ["0", "-1", "1e30", "nan"],
    "model.alpha": ["-1", "1e30"],
    "model.output": ["mse", "sigmoid_bce", "softmax", "auto"],
    "regularization.l2": ["-1", "1e30", "nan", "inf"],
    "regularization.dropout": ["2", "-1"],
    "regularization": ["early_stopping", "nothing", "batchnorm"],
    "optimizer": ["adam", "nope", "rmsprop"],
    "schedule": ["cosine", "plateau", "bogus"],
    "schedule.gamma": ["0", "2", "-1"],
    "dataset": ["iris", "diabetes", "none", "digits"],
    "dataset.n_samples": ["-5", "0", "1", "abc", "1000000000000", "12"],
    "dataset.noise": ["-1", "nan", "1e308"],
    "dataset.val_fraction": ["0", "1", "-0.5", "nan", "0.99", "0.001"],
    "dataset.test_fraction": ["0", "0.999", "2"],
    "dataset.standardize": ["maybe", "false"],
    "dataset.seed": ["-1", "abc"],
    "tracking.experiment": ["''"],
    "nonexistent.key": ["1"],
}

# Data files: name → content (bytes), written once per test directory.
FILES: dict[str, bytes] = {
    "empty.csv": b"",
    "header_only.csv": b"a,b,label\n",
    "nan.csv": b"a,b,label\n" + b"".join(b"%d,nan,%d\n" % (i, i % 2) for i in range(40)),
    "inf.csv": b"a,b,label\n" + b"".join(b"%d,inf,%d\n" % (i, i % 2) for i in range(40)),
    "text_col.csv": b"a,b,label\n" + b"".join(b"%d,x%d,%d\n" % (i, i, i % 2) for i in range(40)),
    "float_labels.csv": b"a,b,label\n" + b"".join(b"%d,%d,%d.5\n" % (i, i, i) for i in range(40)),
    "text_labels.csv": b"a,b,label\n"
    + b"".join(b"%d,%d,c%d\n" % (i, -i, i % 3) for i in range(60)),
    "three_rows.csv": b"a,b,label\n1,2,0\n3,4,1\n5,6,0\n",
    "huge.csv": b"a,b,label\n" + b"".join(b"1e300,%d,%d\n" % (i, i % 2) for i in range(40)),
    "ragged.csv": b"a,b,label\n1,2,0\n3,4\n5,6,1,7\n" * 10,
    "good.csv": b"a,b,label\n"
    + b"".join(
        b"%.3f,%.3f,%d\n" % (x, y, int(x + y > 0))
        for x, y in np.random.default_rng(0).normal(size=(80, 2))
    ),
    "garbage.npz": b"PK\x03\x04 not really a zip",
    "not_utf8.csv": b"a,b,label\n\xff\xfe,1,0\n" * 20,
}


def _write_files(directory: Path) -> None:
    for name, content in FILES.items():
        (directory / name).write_bytes(content)
    np.savez(directory / "mismatched.npz", X=np.zeros((10, 2)), y=np.zeros(7))
    objects = np.empty(10, dtype=object)
    np.savez(directory / "objects.npz", X=np.zeros((10, 2)), y=objects)
    with zipfile.ZipFile(directory / "empty_zip.npz", "w"):
        pass


DATA_FILES = [*FILES, "mismatched.npz", "objects.npz", "empty_zip.npz", "missing.csv"]


def case(rng: random.Random) -> list[str]:
    """1-3 hostile overrides, sometimes a hostile data file; small runs otherwise."""
    overrides = {}
    for key in rng.sample(sorted(HOSTILE), rng.randint(1, 3)):
        overrides[key] = rng.choice(HOSTILE[key])
    if rng.random() < 0.35:
        overrides["dataset"] = "file"
        overrides["dataset.path"] = rng.choice(DATA_FILES)
        overrides["dataset.target"] = "label"
        overrides.pop("dataset.n_samples", None)
        overrides.pop("dataset.noise", None)
        if rng.random() < 0.5:
            overrides["dataset.task"] = rng.choice(["binary", "multiclass", "regression", "x"])
    base = {"trainer.epochs": "2", "trainer.batch_size": "32", "dataset.n_samples": "120"}
    if overrides.get("dataset", "moons") not in ("moons",):
        base.pop("dataset.n_samples")
    out = [f"{k}={v}" for k, v in overrides.items()]
    # the base only where the case did not set the key (and no group is swapped under it)
    out += [f"{k}={v}" for k, v in base.items() if k not in overrides]
    return out


ALLOWED = (*nnexp_cli.USER_ERRORS, *nnexp_cli.EXIT_CODES, MemoryError)


def _run_in_process(overrides: list[str], workdir: Path) -> str:
    """What the CLI does for these overrides, in this process: 'error' (clear), 'ok'
    (finite metrics) or 'skipped' (valid but too expensive to train here)."""
    try:
        with initialize_config_module("nnexp.conf", version_base="1.3"):
            cfg = compose(
                "config", overrides=[*overrides, "tracking.enabled=false"], return_hydra_config=True
            )
    except (HydraException, OmegaConfBaseException):
        return "error"  # Hydra's own composition error
    cfg.hydra.runtime.output_dir = str(workdir / "out")
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    try:
        conf = nnexp_cli.validated(cfg)
    except ALLOWED as exc:
        _assert_clear(exc)
        return "error"
    t, d = conf.trainer, conf.dataset
    if (
        t.epochs * max(getattr(d, "n_samples", 1000), 1000) > 10_000 * 20
        or max(conf.model.hidden) > 4096
    ):
        return "skipped"  # a valid config that would take long: validation is what we test
    try:
        objective = nnexp_cli.run(cfg)
    except ALLOWED as exc:
        _assert_clear(exc)
        return "error"
    # a run that returns: its objective and its history are finite (or it diverged under
    # policy stop, which returns a finite FAILED objective)
    assert math.isfinite(objective), overrides
    return "ok"


def _assert_clear(exc: BaseException) -> None:
    message = str(exc)
    assert (message and "\n" not in message.strip()) or isinstance(exc, OmegaConfBaseException)
    if not isinstance(exc, MemoryError | OmegaConfBaseException):
        # names a key (key=value), a file, or says where training diverged
        assert "=" in message or "/" in message or "diverged" in message, message


def test_fuzz_in_process(tmp_path, monkeypatch):
    _write_files(tmp_path)
    monkeypatch.chdir(tmp_path)
    rng = random.Random(20240505)
    outcomes: dict[str, int] = {}
    for i in range(IN_PROCESS_CASES):
        overrides = case(rng)
        try:
            outcome = _run_in_process(overrides, tmp_path / f"case{i}")
        except AssertionError:
            raise
        except BaseException as exc:
            pytest.fail(f"case {i} {overrides}: {type(exc).__name__}: {exc}")
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    # the fuzz exercised both ends: rejected inputs and real runs
    print(f"fuzz outcomes: {outcomes}")
    assert outcomes.get("error", 0) > 100 and outcomes.get("ok", 0) > 20, outcomes


@pytest.mark.slow
def test_fuzz_through_the_cli(cli, tmp_path):
    _write_files(tmp_path)
    rng = random.Random(7)
    codes = []
    # Hostile but valid inputs first (the random cases are mostly invalid): they must run.
    valid = [
        ["dataset=file", "dataset.path=good.csv", "dataset.target=label", "trainer.epochs=2"],
        ["optimizer.lr=1e6", "dataset.standardize=false", "trainer.nan_policy=stop"],
        ["dataset=iris", "model.dropout=0.9", "trainer.epochs=2", "trainer.batch_size=1"],
    ]
    for overrides in valid + [case(rng) for _ in range(CLI_CASES - len(valid))]:
        proc = cli(*overrides, timeout=300)
        codes.append(proc.returncode)
        assert "Traceback" not in proc.stderr, (overrides, proc.stderr)
        if proc.returncode != 0:
            errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("nnexp: error:")]
            hydra_error = "Set the environment variable HYDRA_FULL_ERROR=1" in proc.stderr
            assert len(errors) == 1 or hydra_error, (overrides, proc.stderr)
    assert codes[: len(valid)] == [0] * len(valid) and any(codes), codes
    for run in cli.runs():
        if run.info.status == "FINISHED":
            assert all(math.isfinite(v) for v in run.data.metrics.values()), run.data.metrics
