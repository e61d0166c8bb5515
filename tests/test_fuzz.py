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
        or max(conf.model.hidden, default=0) > 4096
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


# --- every key, every bad value: the exit-code contract (issue 17) -----------------------------
#
# Generated from the schemas themselves (`nnexp.config.SCHEMAS` and the trainer's and tracking's
# schemas): for every key of every group option, values its type or its rules refuse — out of
# bounds, NaN and infinities where a finite number is required, a number for a boolean, an
# unknown name, text for a number — plus what Hydra refuses on its own (an unknown group option,
# an override it cannot parse, a key no schema has, one forced in with + or ++) and data files
# that cannot be used. Each is known to be bad: it must be refused with exit 2 and one line
# naming the key. In-process (Hydra's compose API, then what `nnexp.__main__` and `nnexp.cli`
# do with the exception); a sample through the real CLI.

IN_PROCESS_SAMPLE = 100  # of the generated cases, in-process in the fast suite (all: slow)
CLI_SAMPLE, CLI_SLOW_SAMPLE = 6, 60  # ... through the real CLI in the fast suite, the slow run

# Keys whose every value is allowed (names, free text; regularization.name is a label nothing
# reads) or that belong to the store (exit 4).
FREE = {"tracking.run_name", "tracking.uri", "dataset.features", "dataset.delimiter"}
FREE |= {"regularization.name"}
OTHER_OPTION = {"model": "deep", "optimizer": "adam", "schedule": "step", "dataset": "iris"}
OTHER_OPTION |= {"regularization": "l2"}
EXTRA = {"trainer.objective": ["loss", "test/acc", "val/nosuch"]}  # bad by their meaning
BAD_FILES = {  # name -> what must be named: each is refused as data (exit 2)
    "empty.csv": "dataset.path",
    "header_only.csv": "dataset.path",
    "nan.csv": "dataset.path",
    "inf.csv": "dataset.path",
    "text_col.csv": "dataset.path",
    "three_rows.csv": "dataset.path",
    "ragged.csv": "dataset.path",
    "garbage.npz": "dataset.path",
    "not_utf8.csv": "dataset.path",
    "mismatched.npz": "dataset.",
    "objects.npz": "dataset.path",
    "empty_zip.npz": "dataset.",
    "missing.csv": "dataset.path",
}


def _bad_numbers(kind: type, rules: dict) -> list[str]:
    """Numbers a field of type `kind` with `rules` (its metadata) must refuse."""
    out = ["abc", "[1]"]
    if kind is int:
        out.append("1.5")
    for op, edge in [("ge", -1), ("gt", 0), ("le", 1), ("lt", 0)]:
        if op in rules:
            limit = rules[op]
            out.append(str(limit + edge if kind is int or op in "gele" else limit))
    if kind is float:
        if rules.get("finite") or any(op in rules for op in ("ge", "gt")):
            out += ["nan", "-inf"]
        if rules.get("finite") or any(op in rules for op in ("le", "lt")):
            out += ["nan", "inf"]
        if not rules:  # a spec's float (its type check wants it finite) or a bare float
            out += ["nan", "inf"]
    return list(dict.fromkeys(out))


def _bad_values(kind: object, rules: dict) -> list[str]:
    """What a field of annotation `kind` with metadata `rules` must refuse ([]: anything goes)."""
    text = str(kind)
    optional = "None" in text
    base = text.replace(" | None", "").replace("<class '", "").replace("'>", "")
    if "choices" in rules:
        return ["[bogus]", "bogus"] if base.startswith("list") else ["bogus", "[1]"]
    if "test" in rules:
        if base == "list[int]":
            return ["[0]", "[-1]", "[abc]", "abc", "[1.5]"]
        return ["' '", "[1]"] if optional else ["''", "[1]"]
    if base in ("int", "float"):
        return _bad_numbers(int if base == "int" else float, rules)
    if base == "bool":
        return ["2", "yes", "abc", "0.5"] + ([] if optional else ["null"])
    if base.startswith("list"):
        return ["abc", "[[1]]"] if base == "list[str]" else ["abc", "[abc]"]
    return []


def _schemas() -> list[tuple[list[str], str, type]]:
    """(the group options that select it, key prefix, schema) for every schema of the config."""
    from nnexp.config import SCHEMAS, GradClipConfig, TrackingConfig, TrainerConfig

    out = [([], "trainer.", TrainerConfig), ([], "trainer.grad_clip.", GradClipConfig)]
    out.append(([], "tracking.", TrackingConfig))
    for group, options in SCHEMAS.items():
        for option, schema in options.items():
            select = [] if group in ("model", "regularization") else [f"{group}={option}"]
            if group == "dataset" and option == "file":
                select += ["dataset.path=good.csv", "dataset.target=label"]
            out.append((select, f"{group}.", schema))
    return out


def every_key_cases() -> list[tuple[list[str], str]]:
    """(command line, the key its error must name) for every bad value of every key."""
    import dataclasses
    import typing

    cases = []
    for select, prefix, schema in _schemas():
        hints = typing.get_type_hints(schema)
        for f in dataclasses.fields(schema):
            key = prefix + f.name
            if key in FREE or dataclasses.is_dataclass(hints[f.name]):
                continue
            if f.name == "name":  # the option's own name: only the group selects it
                cases.append(([*select, f"{key}=bogus"], key))
                continue
            for value in _bad_values(hints[f.name], dict(f.metadata)) + EXTRA.get(key, []):
                cases.append(([*select, f"{key}={value}"], key))
            cases.append(([*select, f"{key}="], key))  # nothing after the =
        cases.append(([*select, f"+{prefix}nosuch=1"], f"{prefix}nosuch"))
        cases.append(([*select, f"++{prefix}nosuch=1"], f"{prefix}nosuch"))
    for group in ("model", "optimizer", "schedule", "dataset", "regularization"):
        cases.append(([f"{group}=bogus"], group))
        cases.append(([f"+{group}={OTHER_OPTION[group]}"], group))  # a second option
    for raw in ["optimizer.lr=[", "trainer.epochs=]", "model.hidden=[1,", "trainer.seed=1)",
                "optimizer.lr='1", "trainer.objective=${x", "model.init=a b", "=3"]:  # fmt: skip
        cases.append(([raw], raw.split("=")[0] + "="))
    cases += [([k], k.lstrip("+").split("=")[0]) for k in ("+foo=1", "++bar=2", "nosuch.key=1")]
    for name, names in BAD_FILES.items():
        target = ["dataset.target=label"] if name.endswith(".csv") else []  # .npz: its y
        cases.append((["dataset=file", f"dataset.path={name}", *target], names))
    cases.append((["trainer.resume=/nonexistent/last.npz"], "/nonexistent/last.npz"))
    cases.append((["trainer.resume=garbage.npz"], "garbage.npz"))
    return cases


SMALL = {"trainer.epochs": "1", "dataset.n_samples": "60", "tracking.enabled": "false"}


def _small(overrides: list[str]) -> list[str]:
    """The case, with a tiny run for whatever it does not set (if one were wrongly accepted)."""
    keys = {o.split("=")[0].lstrip("+") for o in overrides}
    moons = not any(o.startswith("dataset=") and o != "dataset=moons" for o in overrides)
    extra = [f"{k}={v}" for k, v in SMALL.items() if k not in keys]
    return overrides + [e for e in extra if moons or not e.startswith("dataset.")]


def _outcome_in_process(overrides: list[str], workdir: Path) -> tuple[int, str, str]:
    """(exit code, the error line, its kind) as the program would give them, in-process."""
    from nnexp.composition import is_composition_error, one_line

    args = _small(overrides)
    try:
        with initialize_config_module("nnexp.conf", version_base="1.3"):
            cfg = compose("config", overrides=args, return_hydra_config=True)
    except Exception as exc:
        assert is_composition_error(exc), (overrides, exc)  # else: a bug, with a traceback
        return 2, one_line(exc, args), "Hydra: composition"
    cfg.hydra.runtime.output_dir = str(workdir)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    try:
        nnexp_cli.run(cfg)
    except tuple(nnexp_cli.EXIT_CODES) as exc:
        code = next(c for kind, c in nnexp_cli.EXIT_CODES.items() if isinstance(exc, kind))
        return code, str(exc), f"nnexp: {type(exc).__name__}"
    return 0, "", "accepted"


def _check(overrides: list[str], key: str, code: int, line: str) -> None:
    assert code == 2, (overrides, code, line)
    assert line and "\n" not in line.strip(), (overrides, line)
    assert key in line, (overrides, key, line)


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch) -> Path:
    _write_files(tmp_path)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _in_process(data_dir: Path, sample: int | None) -> None:
    cases = every_key_cases()
    assert len(cases) >= 400, len(cases)
    if sample is not None:
        cases = random.Random(len(cases)).sample(cases, sample)
    kinds: dict[str, int] = {}
    wrong = []
    for i, (overrides, key) in enumerate(cases):
        code, line, kind = _outcome_in_process(overrides, data_dir / f"case{i}")
        try:
            _check(overrides, key, code, line)
        except AssertionError as exc:
            wrong.append(str(exc))
        kinds[kind] = kinds.get(kind, 0) + 1
    assert not wrong, "\n".join(wrong)
    print(f"{len(cases)} bad command lines, all exit 2 naming the key: {kinds}")


def test_every_key_a_sample_of_bad_values_is_exit_2_naming_the_key(data_dir):
    _in_process(data_dir, IN_PROCESS_SAMPLE)


@pytest.mark.slow
def test_every_key_every_bad_value_is_exit_2_naming_the_key(data_dir):
    _in_process(data_dir, None)


def _through_the_cli(data_dir: Path, n: int) -> None:
    import subprocess
    import sys

    from conftest import cli_env

    cases = random.Random(17).sample(every_key_cases(), n)
    for overrides, key in cases:
        proc = subprocess.run(
            [sys.executable, "-m", "nnexp", *_small(overrides), "hydra.run.dir=out"],
            cwd=data_dir, env=cli_env(), capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert "Traceback" not in proc.stderr, (overrides, proc.stderr)
        errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("nnexp: error:")]
        assert len(errors) == 1, (overrides, proc.stderr)
        _check(overrides, key, proc.returncode, errors[0])


def test_a_sample_of_them_through_the_cli(data_dir):
    _through_the_cli(data_dir, CLI_SAMPLE)


@pytest.mark.slow
def test_a_larger_sample_of_them_through_the_cli(data_dir):
    _through_the_cli(data_dir, CLI_SLOW_SAMPLE)
