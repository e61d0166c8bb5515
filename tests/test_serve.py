"""The logged pyfunc model serves: `mlflow models serve --env-manager local` answers
{"inputs": [[...]]} on /invocations with the same predictions as the loaded model."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from conftest import cli_env, free_port


def post(url: str, payload: dict) -> dict:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


@pytest.mark.slow
def test_mlflow_models_serve_answers_invocations(cli, tmp_path: Path):
    import mlflow

    cli.ok("dataset=iris", "optimizer=adam", "optimizer.lr=0.01", "trainer.epochs=30")
    (run,) = cli.runs()
    model_uri = run.data.tags["model_uri"]
    mlflow.set_tracking_uri(cli.uri)
    rows = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]
    expected = mlflow.pyfunc.load_model(model_uri).predict(np.array(rows))

    port = free_port()
    env = cli_env() | {"MLFLOW_TRACKING_URI": cli.uri}
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri,
         "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                answer = post(f"http://127.0.0.1:{port}/invocations", {"inputs": rows})
                break
            except OSError:
                assert server.poll() is None, server.stderr.read().decode()[-2000:]
                assert time.monotonic() < deadline, "mlflow models serve did not come up"
                time.sleep(0.5)
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert answer["predictions"] == np.asarray(expected).tolist()
    assert answer["predictions"] == [0, 2, 1]  # setosa, virginica, versicolor
