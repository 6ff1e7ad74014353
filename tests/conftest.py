"""Shared fixtures: paths, and running Snakemake on this repository's workflow."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def snakemake(workdir: Path, *args: str, configfile: Path | None = None, check: bool = True):
    """Run this repo's Snakefile in ``workdir``; returns the CompletedProcess."""
    cmd = [str(BIN / "snakemake"), "-s", str(REPO / "Snakefile"), "-d", str(workdir)]
    if configfile is not None:
        cmd += ["--configfile", str(configfile)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([*cmd, *args], capture_output=True, text=True, env=env, cwd=workdir)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def load_yaml(path: Path) -> dict:
    with open(path) as f:
        return yaml.safe_load(f)


def write_yaml(path: Path, data: dict) -> Path:
    with open(path, "w") as f:
        yaml.safe_dump(data, f, sort_keys=False)
    return path


@pytest.fixture
def test_config() -> dict:
    return load_yaml(REPO / "config" / "test.yaml")


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for modules of tiny tensors (``pytestmark = usefixtures``): a second
    OpenMP thread only adds spin-waiting, which on a shared, busy 2-core machine made such
    files many times slower (a SIREN training step ~100x)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
