"""A regular (non-editable) install works from any directory: conf/ ships inside the wheel as
nnexp.conf, and `--config-dir` adds the user's own config groups."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import cli_env

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_carries_the_configs_and_runs_from_elsewhere(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(tmp_path / "dist"), str(ROOT)],
        check=True, capture_output=True, env=cli_env(),
    )  # fmt: skip
    (wheel,) = (tmp_path / "dist").glob("nnexp-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "nnexp/conf/config.yaml" in names
    assert "nnexp/conf/model/deep.yaml" in names
    assert "nnexp/conf/experiment/init_sweep/he.yaml" in names  # an experiment's arm
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    env = cli_env() | {"PYTHONPATH": str(site)}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = subprocess.run(
        [sys.executable, "-c", "import nnexp; print(nnexp.__file__)"],
        cwd=elsewhere, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert proc.stdout.strip().startswith(str(site))  # the wheel's copy, not the source tree
    proc = subprocess.run(
        [sys.executable, "-m", "nnexp", "--cfg", "job", "model=deep", "optimizer=adam"],
        cwd=elsewhere, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "hidden:\n  - 32" in proc.stdout and "beta2: 0.999" in proc.stdout


def test_user_config_dir_adds_a_group_option(tmp_path):
    (tmp_path / "my_conf/model").mkdir(parents=True)
    (tmp_path / "my_conf/model/tiny_tanh.yaml").write_text(
        "defaults: [/schema/model/model@_here_, _self_]\nhidden: [3]\nactivation: tanh\n"
    )
    args = ["--config-dir", "my_conf", "model=tiny_tanh", "--cfg", "job"]
    proc = subprocess.run(
        [sys.executable, "-m", "nnexp", *args],
        cwd=tmp_path, env=cli_env(), capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "hidden:\n  - 3\n  activation: tanh" in proc.stdout
