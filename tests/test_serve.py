"""The logged pyfunc model as a user serves it: `mlflow models serve --env-manager local` on a
model trained from a CSV with text labels answers CSV and JSON requests (dataframe_split,
dataframe_records, ``inputs`` records; integers accepted, columns matched by name) with the
CSV's own labels, and probabilities with ``params={"output": "proba"}``; it loads where nnexp
cannot be imported; ``tracking.register_as`` registers a version per run; the default network's
model is a few KB of code and weights, not a copy of nnexp."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import Cli, cli_env, free_port, model_rows

LABELS = ["cat", "dog"]
# A dog is heavier than it is tall (in these made-up units): a line a small net learns.
CLEAR = [[3, 0], [0, 3], [2, -1], [-2, 1]]  # integers, far from the boundary: weight, height
CLEAR_LABELS = ["dog", "cat", "dog", "cat"]


def _pets_csv(path: Path, n: int = 300) -> Path:
    rng = np.random.default_rng(0)
    X = rng.normal(0.0, 1.5, (n, 2))
    lines = [f"{w:.3f},{h:.3f},{'dog' if w > h else 'cat'}" for w, h in X]
    path.write_text("weight,height,animal\n" + "\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def pets(tmp_path_factory):
    """One run on pets.csv (text labels), registered as ``pets``."""
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    cli = Cli(tmp_path_factory.mktemp("pets"))
    _pets_csv(cli.workdir / "pets.csv")
    train = ("dataset=file", "dataset.path=pets.csv", "dataset.target=animal", "optimizer=adam")
    cli.ok(*train, "optimizer.lr=0.05", "trainer.epochs=40", "tracking.register_as=pets")
    (run,) = cli.runs()
    return cli, run, train


# --- mlflow models serve ----------------------------------------------------------------------


def _request(url: str, body: bytes, content_type: str) -> tuple[int, object]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def post_json(url: str, payload: dict) -> tuple[int, object]:
    return _request(url, json.dumps(payload).encode(), "application/json")


def post_csv(url: str, text: str) -> tuple[int, object]:
    return _request(url, text.encode(), "text/csv")


@contextlib.contextmanager
def served(model_uri: str, tracking_uri: str, cwd: Path) -> Iterator[str]:
    """`mlflow models serve -m MODEL --env-manager local` on a free port of 127.0.0.1: yields
    its /invocations URL once it answers /ping."""
    port = free_port()
    env = cli_env() | {"MLFLOW_TRACKING_URI": tracking_uri}
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri,
         "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)],
        cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=5):
                    break
            except OSError:
                assert server.poll() is None, server.stderr.read().decode()[-3000:]
                assert time.monotonic() < deadline, "mlflow models serve did not come up"
                time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/invocations"
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.slow  # a training run, then a server that imports mlflow and the model: ~30 s
def test_mlflow_models_serve_answers_csv_and_json_with_the_csvs_labels(pets):
    import mlflow

    cli, run, _ = pets
    model_uri = f"runs:/{run.info.run_id}/model"  # what the README serves
    mlflow.set_tracking_uri(cli.uri)
    model = mlflow.pyfunc.load_model(model_uri)
    expected = model.predict(model_rows(model, CLEAR)).tolist()
    assert expected == CLEAR_LABELS  # the CSV's own labels, learned
    columns = ["weight", "height"]
    split = {"columns": columns, "data": CLEAR}
    records = [dict(zip(columns, row, strict=True)) for row in CLEAR]
    with served(model_uri, cli.uri, cli.workdir) as url:
        # CSV, its columns in another order than the training file's: matched by name
        csv = "height,weight\n" + "".join(f"{h},{w}\n" for w, h in CLEAR)
        answers = {
            "csv": post_csv(url, csv),
            "dataframe_split": post_json(url, {"dataframe_split": split}),
            "dataframe_records": post_json(url, {"dataframe_records": records}),
            "inputs": post_json(url, {"inputs": records}),
        }
        proba = post_json(url, {"dataframe_split": split, "params": {"output": "proba"}})
        bad_param = post_json(url, {"dataframe_split": split, "params": {"output": "probs"}})
        unnamed = post_json(url, {"inputs": CLEAR})
    for form, answer in answers.items():
        assert answer == (200, {"predictions": CLEAR_LABELS}), form
    status, body = proba
    assert status == 200
    rows = body["predictions"]  # a record per row: a probability per label
    assert [sorted(row) for row in rows] == [LABELS] * len(CLEAR)
    assert all(abs(sum(row.values()) - 1) < 1e-6 for row in rows)
    assert [max(row, key=row.get) for row in rows] == CLEAR_LABELS
    in_process = model.predict(model_rows(model, CLEAR), params={"output": "proba"})
    np.testing.assert_allclose([[r["cat"], r["dog"]] for r in rows], in_process[LABELS], rtol=1e-6)
    assert bad_param[0] == 400 and "output='probs': must be one of label, proba" in str(bad_param)
    # a bare list has no column names: MLflow's check of the signature says which it needs
    assert unnamed[0] == 400 and "missing inputs ['weight', 'height']" in str(unnamed)


@pytest.mark.slow
def test_mlflow_models_serve_answers_the_target_names_of_a_bundled_set(cli, tmp_path):
    """iris: scikit-learn's target names, and its feature names as the columns."""
    import mlflow

    cli.ok("dataset=iris", "optimizer=adam", "optimizer.lr=0.01", "trainer.epochs=30")
    (run,) = cli.runs()
    model_uri = run.data.tags["model_uri"]
    mlflow.set_tracking_uri(cli.uri)
    model = mlflow.pyfunc.load_model(model_uri)
    columns = model.metadata.get_input_schema().input_names()
    assert columns == [
        "sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)",
    ]  # fmt: skip
    rows = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]
    expected = model.predict(model_rows(model, rows)).tolist()
    with served(model_uri, cli.uri, tmp_path) as url:
        answer = post_json(url, {"dataframe_split": {"columns": columns, "data": rows}})
    assert answer == (200, {"predictions": expected})
    assert expected == ["setosa", "virginica", "versicolor"]


# --- loading without nnexp ----------------------------------------------------------------------

_WITHOUT_NNEXP = """
import importlib.abc, importlib.util, json, sys
# -I: no cwd, no PYTHONPATH on sys.path; the editable install's finder removed; any import of
# nnexp refused. Only the model's own copy of nnexp.serving (nnexp_serving) can serve it.
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in getattr(f, "__module__", "")]
assert importlib.util.find_spec("nnexp") is None

class NoNnexp(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "nnexp" or name.startswith("nnexp."):
            raise ModuleNotFoundError(f"nnexp is not importable here: {name}")

sys.meta_path.insert(0, NoNnexp())
import mlflow, pandas as pd
model = mlflow.pyfunc.load_model(sys.argv[1])
# (float: MLflow refuses an int64 column for a double input in Python; a server casts JSON)
rows = pd.DataFrame(json.loads(sys.argv[2]), columns=["weight", "height"], dtype="float64")
print(json.dumps({
    "labels": model.predict(rows).tolist(),
    "proba": model.predict(rows, params={"output": "proba"}).to_dict("list"),
    "served_by": sys.modules["nnexp_serving"].__file__,
    "nnexp": sorted(m for m in sys.modules if m == "nnexp" or m.startswith("nnexp.")),
}))
"""


@pytest.mark.slow  # a fresh interpreter imports mlflow: ~8 s
def test_the_model_loads_and_predicts_where_nnexp_cannot_be_imported(pets, tmp_path):
    cli, run, _ = pets
    proc = subprocess.run(
        [sys.executable, "-I", "-c", textwrap.dedent(_WITHOUT_NNEXP),
         f"runs:/{run.info.run_id}/model", json.dumps(CLEAR)],
        cwd=tmp_path, env=cli_env() | {"MLFLOW_TRACKING_URI": cli.uri},
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["labels"] == CLEAR_LABELS
    assert sorted(out["proba"]) == LABELS
    assert "/code/nnexp_serving/" in out["served_by"]  # the copy logged with the model
    assert out["nnexp"] == []


# --- the model registry -------------------------------------------------------------------------


@pytest.mark.slow  # a second training run
def test_register_as_registers_a_new_version_per_run(pets):
    import mlflow

    cli, first, train = pets
    cli.ok(*train, "trainer.epochs=3", "tracking.register_as=pets")
    second = next(r for r in cli.runs() if r.info.run_id != first.info.run_id)
    client = cli.client()
    versions = sorted(client.search_model_versions("name='pets'"), key=lambda v: int(v.version))
    assert [(int(v.version), v.run_id) for v in versions] == [
        (1, first.info.run_id),
        (2, second.info.run_id),
    ]
    assert versions[1].source == second.data.tags["model_uri"]  # the run's logged model
    mlflow.set_tracking_uri(cli.uri)
    model = mlflow.pyfunc.load_model("models:/pets/2")
    assert set(model.predict(model_rows(model, CLEAR)).tolist()) <= set(LABELS)


def test_a_run_registers_nothing_unless_asked_and_its_model_is_small(cli, tmp_path):
    """The default network's logged model: its code (nnexp.serving) and its bundle, < 100 KB."""
    import mlflow

    cli.ok("trainer.epochs=2")
    (run,) = cli.runs()
    assert cli.client().search_registered_models() == []
    mlflow.set_tracking_uri(cli.uri)
    (tmp_path / "model").mkdir()  # (tmp_path is also the run's working directory)
    uri = run.data.tags["model_uri"]
    local = Path(mlflow.artifacts.download_artifacts(uri, dst_path=str(tmp_path / "model")))
    files = {str(p.relative_to(local)): p.stat().st_size for p in local.rglob("*") if p.is_file()}
    code = {f for f in files if f.startswith("code/")}
    assert code == {
        f"code/nnexp_serving/{name}.py" for name in ("__init__", "bundle", "layers", "pyfunc_model")
    }
    assert {"artifacts/bundle/spec.json", "artifacts/bundle/weights.npz", "MLmodel"} <= set(files)
    assert sum(files.values()) < 100_000, files


@pytest.mark.parametrize("name", ["a/b", "team:model", "50%", "back\\slash", ".", "..", "..hidden"])
def test_a_name_the_registry_would_refuse_is_refused_before_training(cli, name):
    proc = cli(f"tracking.register_as={name}", "trainer.epochs=1")
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"nnexp: error: tracking.register_as={name!r}: must be null ")
    assert "without '/', ':', '%' or a backslash" in line
    assert cli.runs() == [] and not list(cli.workdir.rglob("*.npz"))  # nothing trained


def test_register_as_needs_tracking(cli):
    proc = cli("tracking.register_as=pets", "tracking.enabled=false")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "nnexp: error: tracking.register_as='pets': needs tracking.enabled=true (an untracked "
        "run logs no model to register)"
    )
