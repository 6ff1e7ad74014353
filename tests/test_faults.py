"""Distributed execution and faults, on real software: a `dask scheduler` with two
`dask worker` processes on loopback, a worker killed mid-run, Snakemake killed mid-stage."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from larchain.core.config import load_config
from larchain.lut.build import build_lut

from .conftest import BIN, REPO, load_yaml, snakemake, write_yaml

pytestmark = pytest.mark.slow


def slower_test_config(photons: int = 3000) -> dict:
    """config/test.yaml with enough photons that blocks take a few seconds each."""
    cfg = load_config(REPO / "config" / "test.yaml")
    cfg["lut"]["photons_per_voxel"] = photons
    cfg["lut"]["device"] = "cpu"
    return cfg


def start(cmd: list[str], log: Path) -> subprocess.Popen:
    f = open(log, "w")  # noqa: SIM115  closed when the process is reaped
    return subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)


@pytest.fixture
def dask_cluster(tmp_path):
    """A real scheduler and two single-threaded worker processes on 127.0.0.1."""
    sched_file = tmp_path / "scheduler.json"
    procs = [
        start(
            [
                str(BIN / "dask"),
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--no-dashboard",
                "--scheduler-file",
                str(sched_file),
            ],
            tmp_path / "sched.log",
        )
    ]
    deadline = time.time() + 60
    while not sched_file.exists() and time.time() < deadline:
        time.sleep(0.2)
    assert sched_file.exists(), (tmp_path / "sched.log").read_text()
    workers = [
        start(
            [
                str(BIN / "dask"),
                "worker",
                "--scheduler-file",
                str(sched_file),
                "--nthreads",
                "1",
                "--no-nanny",
                "--no-dashboard",
                "--host",
                "127.0.0.1",
                "--name",
                f"w{i}",
            ],
            tmp_path / f"worker{i}.log",
        )
        for i in range(2)
    ]
    procs += workers
    from distributed import Client

    with Client(scheduler_file=str(sched_file), timeout=60, set_as_default=False) as c:
        c.wait_for_workers(2, timeout=60)
    try:
        yield sched_file, workers
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


def test_existing_scheduler_gives_the_local_result(dask_cluster):
    sched_file, _ = dask_cluster
    cfg = slower_test_config(photons=300)
    local = build_lut(cfg, threads=1)
    remote = build_lut(cfg, threads=1, dask_cfg={"scheduler_file": str(sched_file)})
    assert np.array_equal(local["visibility"].values, remote["visibility"].values)
    assert np.array_equal(local["visibility_error"].values, remote["visibility_error"].values)


def test_worker_killed_mid_run_changes_nothing(dask_cluster):
    """Kill one of two workers while blocks are running: Dask re-runs its blocks on the
    other worker, and since every block has its own seed the table is identical."""
    sched_file, workers = dask_cluster
    cfg = slower_test_config()
    reference = build_lut(cfg, threads=2)

    import threading

    from distributed import Client

    killed = threading.Event()

    def kill_when_busy():
        """Kill worker 0 as soon as the scheduler shows it processing a block."""
        with Client(scheduler_file=str(sched_file), timeout=60, set_as_default=False) as c:
            info = c.scheduler_info()["workers"]
            addr = next(a for a, w in info.items() if w.get("name") == "w0")
            deadline = time.time() + 120
            while time.time() < deadline:
                if c.processing().get(addr):
                    os.killpg(workers[0].pid, signal.SIGKILL)
                    killed.set()
                    return
                time.sleep(0.05)

    killer = threading.Thread(target=kill_when_busy)
    killer.start()
    result = build_lut(cfg, threads=1, dask_cfg={"scheduler_file": str(sched_file)})
    killer.join()
    assert killed.is_set(), "worker 0 was never seen processing a block"
    assert workers[0].wait(timeout=30) is not None  # it really died
    assert np.array_equal(reference["visibility"].values, result["visibility"].values)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_snakemake_killed_mid_stage_then_rerun(tmp_path):
    """SIGKILL Snakemake (and its job) while lut_build runs: no complete-looking artifact
    is left, and a re-run completes with the same bytes as an uninterrupted run."""
    cfg = copy.deepcopy(load_yaml(REPO / "config" / "test.yaml"))
    cfg["lut"]["photons_per_voxel"] = 3000
    cfgfile = write_yaml(tmp_path / "cfg.yaml", cfg)
    wd = tmp_path / "killed"
    wd.mkdir()
    cmd = [
        str(BIN / "snakemake"),
        "-s",
        str(REPO / "Snakefile"),
        "-d",
        str(wd),
        "--configfile",
        str(cfgfile),
        "--cores",
        "2",
        "--until",
        "lut_build",
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.time() + 120
    logs = wd / "logs" / "lut"
    # wait until the LUT job is computing blocks
    while time.time() < deadline:
        hits = list(logs.glob("*/lut_build.log")) if logs.exists() else []
        if hits and "lut blocks" in hits[0].read_text(errors="replace"):
            break
        time.sleep(0.2)
    else:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("lut_build never started")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    (art,) = list((wd / "results" / "lut").iterdir())
    assert not (art / "manifest.json").exists()  # nothing that looks complete
    from larchain.core.artifacts import verify

    assert verify(art)  # and it is refused as an artifact
    # what a user does after a killed run: release Snakemake's lock, re-run (the profiles
    # set --rerun-incomplete); the incomplete job is redone and the artifact completed
    snakemake(wd, "--unlock", configfile=cfgfile)
    snakemake(wd, "--cores", "2", "--rerun-incomplete", "--until", "lut_build", configfile=cfgfile)
    assert verify(art) == []
    assert not list(art.glob(".*.tmp"))
    clean = tmp_path / "clean"
    clean.mkdir()
    snakemake(clean, "--cores", "2", "--until", "lut_build", configfile=cfgfile)
    assert sha256(clean / "results" / "lut" / art.name / "lut.nc") == sha256(art / "lut.nc")
    manifest = json.loads((art / "manifest.json").read_text())
    assert manifest["id"] == art.name
