"""The workflow on a real single-node SLURM, and the sbatch options the profile renders.

A session fixture brings up SLURM on this machine (munged, slurmctld and slurmd as root, one
node, one partition, no accounting; configuration from tests/slurm/slurm.conf.in), installing
Debian's slurm-wlm and munge with apt-get when they are missing and we are root. The workflow
then runs on the tiny test config with ``--profile profiles/slurm``: every rule job must go
through sbatch and the artifacts must equal those of a local run.

The GPU test needs no cluster: it replaces sbatch by a stub that records its arguments, and
checks the ``--gpus``/``--gres`` options the plugin builds from the profile.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import socket
import string
import subprocess
import sys
import tempfile
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from larchain.cli import main as cli

from .conftest import BIN, REPO

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

PROFILE = REPO / "profiles" / "slurm"
TEST_CONFIG = REPO / "config" / "test.yaml"
CONF_TEMPLATE = Path(__file__).parent / "slurm" / "slurm.conf.in"

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("munge", "unmunge", "sbatch", "srun", "squeue", "sinfo", "scontrol", "scancel")
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"])
APT_PACKAGES = ("slurm-wlm", "munge")

# The rule jobs of the tiny workflow (`all` is a local rule: it only gathers inputs).
JOB_RULES = {
    "lut_build",
    "lut_figure",
    "siren_train",
    "siren_eval",
    "simulate",
    "simulate_control",
    "simulation_figures",
    "reco_train",
    "reco_infer",
    "reco_eval",
    "particle_train",
    "particle_infer",
    "particle_eval",
    "calibrate",
    "calibration_coverage",
    "calibration_figures",
}

# Fast status polling for seconds-long jobs. The profile keeps the plugin's defaults, sensible
# on a real cluster: first check 40 s after a submission, then 10 s longer each round in
# which no job finished (up to 180 s); a job of 15 s would cost about a minute of polling.
# With 1 s the checks come 1, 11, 21... s after a submission: the SLURM run takes ~1.5 min.
FAST_POLLING = (
    "--seconds-between-status-checks",
    "1",
    "--slurm-init-seconds-before-status-checks",
    "1",
)
# A failing job fails the test at once instead of after the profile's 2 retries.
NO_RETRIES = ("--retries", "0")


def _which(name: str) -> str | None:
    return shutil.which(name, path=SEARCH_PATH)


def _missing() -> list[str]:
    return [name for name in DAEMONS + CLIENTS if _which(name) is None]


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


@contextmanager
def _no_service_start():
    """Keep apt from starting munge/slurm services while it installs them (the usual
    policy-rc.d of containers); the fixture runs its own daemons."""
    policy = Path("/usr/sbin/policy-rc.d")
    if policy.exists():
        yield
        return
    policy.write_text("#!/bin/sh\n# temporary, written by larchain tests/test_slurm.py\nexit 101\n")
    policy.chmod(0o755)
    try:
        yield
    finally:
        policy.unlink(missing_ok=True)


def _ensure_slurm_installed() -> None:
    missing = _missing()
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip(
            f"SLURM is not installed ({', '.join(missing)} not found) and cannot be installed "
            f"here (needs root and apt-get): apt-get install {' '.join(APT_PACKAGES)}"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    lock = ("-o", "DPkg::Lock::Timeout=300")
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *lock]

    def apt(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*args], env=env, capture_output=True, text=True, timeout=900, check=False
        )

    with _no_service_start():
        proc = apt(*install, *APT_PACKAGES)
        if proc.returncode != 0:  # e.g. no package lists yet
            apt("apt-get", "update", "-qq", *lock)
            proc = apt(*install, *APT_PACKAGES)
    if proc.returncode != 0 or _missing():
        pytest.skip(
            f"apt-get install {' '.join(APT_PACKAGES)} failed (missing: {_missing()}):\n"
            + _tail(proc.stdout + proc.stderr, 15)
        )


def _free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports free right now on localhost."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _real_memory_mb() -> int:
    """What the node declares: 90 % of this machine's memory, but at least 8 GB so that two
    jobs of the workflow (4 GB each) fit on a small CI machine. Nothing enforces it: there
    are no cgroups, and the tiny jobs use far less."""
    with open("/proc/meminfo") as f:
        kb = next(int(line.split()[1]) for line in f if line.startswith("MemTotal:"))
    return max(int(kb / 1024 * 0.9), 8192)


@dataclass
class Slurm:
    """A running single-node cluster: run its commands with ``env``."""

    conf: Path
    env: dict[str, str]
    logdir: Path
    host: str

    def cmd(self, *args: str, check: bool = True) -> str:
        proc = subprocess.run(
            [_which(args[0]) or args[0], *args[1:]],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
        return proc.stdout

    @property
    def ctld_log(self) -> Path:
        return self.logdir / "slurmctld.log"

    def logs(self) -> str:
        """The daemons' log tails, for failure messages."""
        out = []
        for name in ("munged.log", "slurmctld.log", "slurmd.log"):
            path = self.logdir / name
            text = path.read_text(errors="replace") if path.exists() else "(none)"
            out.append(f"--- {path}\n{_tail(text, 25)}")
        return "\n".join(out)


def _start(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )


def _wait_for(predicate, timeout: float, what: str, cluster: Slurm, procs) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in procs:
            if p.poll() is not None:
                pytest.fail(f"{p.args[0]} exited ({p.returncode}) while {what}\n{cluster.logs()}")
        if predicate():
            return
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout:.0f} s {what}\n{cluster.logs()}")


def _ours(markers: list[str], jobs_only: bool = False) -> list[int]:
    """Processes started by this cluster: their command line or environment names one of
    its paths (its slurm.conf via SLURM_CONF, its munge socket). ``jobs_only``: only the
    jobs' processes (they have SLURM_JOB_ID), not the daemons."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            blob = (entry / "cmdline").read_bytes() + (entry / "environ").read_bytes()
        except OSError:
            continue
        if any(m.encode() in blob for m in markers):
            if not jobs_only or b"\0SLURM_JOB_ID=" in blob:
                pids.append(int(entry.name))
    return pids


def _stop(cluster: Slurm, procs: list[subprocess.Popen], markers: list[str]) -> None:
    """Cancel leftover jobs, shut the daemons down, and make sure nothing of ours is left."""
    graceful = False
    if len(procs) > 1 and procs[1].poll() is None:  # slurmctld is up
        cluster.cmd("scancel", "--user", "root", check=False)
        active = ("squeue", "--noheader", "--states=PENDING,RUNNING,COMPLETING")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (
            cluster.cmd(*active, check=False).strip() or _ours(markers, jobs_only=True)
        ):
            time.sleep(0.5)
        shutdown = [_which("scontrol"), "shutdown"]
        proc = subprocess.run(shutdown, env=cluster.env, capture_output=True, timeout=60)
        graceful = proc.returncode == 0
    for i, p in reversed(list(enumerate(procs))):  # slurmd, slurmctld, then munged
        if i == 0 or not graceful:
            p.terminate()
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)
    leftovers = _ours(markers)
    for pid in leftovers:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if leftovers:
        warnings.warn(f"killed leftover SLURM processes {leftovers}", stacklevel=1)


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    """A single-node SLURM on this machine, for the session."""
    if os.geteuid() != 0:
        pytest.skip("a local SLURM needs root (slurmd starts jobs as the submitting user)")
    _ensure_slurm_installed()

    host = socket.gethostname().split(".")[0]
    base = tmp_path_factory.mktemp("slurm")  # configuration, state, logs (kept by pytest)
    logdir, keydir = base / "log", base / "munge"
    for d in (logdir, keydir, base / "state", base / "spool", base / "bin"):
        d.mkdir()
    keydir.chmod(0o700)
    # munged wants its socket's directory and all of its parents searchable by everyone;
    # pytest's base temporary directory is private (0700), hence a directory of its own.
    rundir = Path(tempfile.mkdtemp(prefix="larchain-slurm-"))
    procs: list[subprocess.Popen] = []
    cluster = markers = None
    try:
        rundir.chmod(0o755)
        munge_socket = rundir / "munge.socket"
        key = keydir / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)

        conf = base / "slurm.conf"
        ctld_port, slurmd_port = _free_ports(2)
        conf.write_text(
            string.Template(CONF_TEMPLATE.read_text()).substitute(
                host=host,
                ctld_port=ctld_port,
                slurmd_port=slurmd_port,
                munge_socket=munge_socket,
                root=base,
                rundir=rundir,
                logdir=logdir,
                cpus=2,
                real_memory=_real_memory_mb(),
            )
        )
        # The jobstep executor drops every SLURM_* variable, SLURM_CONF included, from the
        # environment of the `srun` it runs inside the job. A real cluster keeps slurm.conf at
        # its default path (or runs configless); this one lives here, so the jobs find an `srun`
        # that knows where.
        srun = base / "bin" / "srun"
        srun.write_text(f'#!/bin/sh\nSLURM_CONF={conf} exec {_which("srun")} "$@"\n')
        srun.chmod(0o755)
        env = {
            **os.environ,
            "SLURM_CONF": str(conf),
            "PATH": os.pathsep.join([str(base / "bin"), str(BIN), os.environ.get("PATH", "")]),
        }
        cluster = Slurm(conf=conf, env=env, logdir=logdir, host=host)
        markers = [f"SLURM_CONF={conf}\0", str(munge_socket)]

        procs.append(
            _start(
                [
                    _which("munged"),
                    "--foreground",
                    f"--socket={munge_socket}",
                    f"--key-file={key}",
                    f"--pid-file={rundir / 'munged.pid'}",
                    f"--log-file={logdir / 'munged.log'}",
                    f"--seed-file={keydir / 'munged.seed'}",
                ],
                logdir / "munged.out",
                env,
            )
        )

        def munge_ok() -> bool:
            enc = subprocess.run(
                [_which("munge"), "-S", str(munge_socket), "-n"], capture_output=True
            )
            dec = subprocess.run(
                [_which("unmunge"), "-S", str(munge_socket)], input=enc.stdout, capture_output=True
            )
            return enc.returncode == 0 and dec.returncode == 0

        _wait_for(munge_ok, 20, "waiting for munged", cluster, procs)
        procs.append(
            _start([_which("slurmctld"), "-D", "-f", str(conf)], logdir / "slurmctld.out", env)
        )
        procs.append(
            _start(
                [_which("slurmd"), "-D", "-f", str(conf), "-N", host], logdir / "slurmd.out", env
            )
        )

        def node_idle() -> bool:
            out = cluster.cmd("sinfo", "--noheader", "--Node", "--format=%N %T", check=False)
            return out.split() == [host, "idle"]

        _wait_for(node_idle, 60, "waiting for the node to be idle in sinfo", cluster, procs)
        yield cluster
    finally:
        if procs:
            _stop(cluster, procs, markers)
        shutil.rmtree(rundir, ignore_errors=True)


# --- the workflow on SLURM ----------------------------------------------------------------


def _run_on_slurm(cluster: Slurm, workdir: Path) -> subprocess.CompletedProcess:
    cmd = [
        str(BIN / "snakemake"),
        "-s",
        str(REPO / "Snakefile"),
        "-d",
        str(workdir),
        "--configfile",
        str(TEST_CONFIG),
        "--profile",
        str(PROFILE),
        *FAST_POLLING,
        *NO_RETRIES,
        "--slurm-keep-successful-logs",  # one log per sbatch job, checked below
    ]
    env = {**cluster.env, "PYTHONUNBUFFERED": "1"}
    try:
        return subprocess.run(
            cmd, capture_output=True, text=True, env=env, cwd=workdir, timeout=900, check=False
        )
    except subprocess.TimeoutExpired as e:  # the fixture cancels what is left
        out = "".join(
            x.decode(errors="replace") if isinstance(x, bytes) else (x or "")
            for x in (e.stdout, e.stderr)
        )
        pytest.fail(f"snakemake on SLURM timed out:\n{_tail(out, 60)}\n{cluster.logs()}")


def _job_fields(cluster: Slurm, jobid: str) -> dict[str, str]:
    """`scontrol show job` as a dict (jobs stay known for MinJobAge after they end)."""
    out = cluster.cmd("scontrol", "--oneliner", "show", "job", jobid)
    return dict(tok.split("=", 1) for tok in out.split() if "=" in tok)


def _files(results: Path) -> dict[str, Path]:
    return {str(p.relative_to(results)): p for p in sorted(results.rglob("*")) if p.is_file()}


# Files with measured times in them: siren's training curve and siren_eval's metrics.
TIMED_FILES = ("metrics.csv", "metrics.json")


def _is_timing(key: str) -> bool:
    """Measured speeds in siren_eval's metrics.json: they vary from run to run."""
    return key.endswith("_per_s") or key.startswith("speed_ratio")


def _stable(rel: str, path: Path):
    """A file's content without what legitimately differs between two runs (creation
    times, wall times, measured speeds, temporary script paths); other files as bytes."""
    name = Path(rel).name
    if name == "manifest.json":
        m = json.loads(path.read_text())
        for key in ("created", "wall_time_s", "argv"):
            m.pop(key, None)
        for timed in TIMED_FILES:  # compared below, without their timings
            m["files"].pop(timed, None)
        return m
    if name == "metrics.json":
        return {k: v for k, v in json.loads(path.read_text()).items() if not _is_timing(k)}
    if name == "metrics.csv":  # siren training curve; 'seconds' is each epoch's time
        with open(path, newline="") as f:
            return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]
    return path.read_bytes()


def test_workflow_on_slurm_matches_local_run(slurm, tmp_path):
    local, remote = tmp_path / "local", tmp_path / "slurm"
    local.mkdir()
    remote.mkdir()
    proc = subprocess.run(
        [str(BIN / "snakemake"), "-s", str(REPO / "Snakefile"), "-d", str(local)]
        + ["--configfile", str(TEST_CONFIG), "--cores", "2"],
        capture_output=True,
        text=True,
        cwd=local,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr

    log_offset = slurm.ctld_log.stat().st_size
    proc = _run_on_slurm(slurm, remote)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{_tail(out, 80)}\n{slurm.logs()}"

    # Every rule job was submitted with sbatch, once; only `all` ran in Snakemake itself.
    (run_id,) = re.findall(r"SLURM run ID: (\S+)", out)
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+) \(log: (\S+)\)", out)
    rule_of = {jobid: Path(log).parent.name.removeprefix("rule_") for jobid, log in submitted}
    assert sorted(rule_of.values()) == sorted(JOB_RULES), out
    assert set(re.findall(r"^localrule (\w+):", out, re.M)) <= {"all"}, out

    # The plugin's per-job logs: one per rule job, from the jobstep executor on the node.
    logs = sorted((remote / ".snakemake" / "slurm_logs").glob("rule_*/*.log"))
    assert {(p.parent.name, p.stem) for p in logs} == {
        (f"rule_{rule}", jobid) for jobid, rule in rule_of.items()
    }
    for p in logs:
        text = p.read_text()
        rule = p.parent.name.removeprefix("rule_")
        assert "--executor slurm-jobstep" in text and f"(Rule: {rule})" in text, text

    # slurmctld received exactly these batch jobs during the run; each ended with status 0.
    ctld = slurm.ctld_log.read_text(errors="replace")[log_offset:]
    assert set(re.findall(r"_slurm_rpc_submit_batch_job: JobId=(\d+)", ctld)) == set(rule_of), ctld
    for jobid, rule in rule_of.items():
        assert f"_job_complete: JobId={jobid} WEXITSTATUS 0" in ctld, (rule, ctld)
        job = _job_fields(slurm, jobid)
        assert job["JobName"] == run_id and job["JobState"] == "COMPLETED", job
        assert job["ExitCode"] == "0:0" and job["Partition"] == "debug", job
        # the rules' threads/mem_mb/runtime (lut_figure: the profile's default-resources)
        threads, mem, limit = {
            "lut_build": ("2", "4000M", "01:00:00"),
            "siren_train": ("1", "4000M", "01:00:00"),
            "siren_eval": ("1", "4000M", "00:30:00"),
            "lut_figure": ("1", "2000M", "00:30:00"),
            "simulate": ("2", "4000M", "01:00:00"),
            "simulate_control": ("2", "4000M", "01:00:00"),
            "simulation_figures": ("1", "2000M", "00:30:00"),
            "reco_train": ("1", "4000M", "02:00:00"),
            "reco_infer": ("2", "4000M", "01:00:00"),
            "reco_eval": ("1", "4000M", "00:30:00"),
            "particle_train": ("1", "4000M", "01:00:00"),
            "particle_infer": ("2", "4000M", "01:00:00"),
            "particle_eval": ("1", "4000M", "00:30:00"),
            "calibrate": ("2", "6000M", "01:00:00"),
            "calibration_coverage": ("2", "4000M", "01:00:00"),
            "calibration_figures": ("1", "2000M", "00:30:00"),
        }[rule]
        assert job["NumCPUs"] == threads, (rule, job)
        assert job["MinMemoryNode"] == mem and job["TimeLimit"] == limit, (rule, job)

    # Same artifacts (ids and files) as the local run; data, models and figures byte for byte.
    assert cli(["artifacts", "verify", "--all", "--root", str(remote / "results")]) == 0
    a, b = _files(local / "results"), _files(remote / "results")
    assert sorted(a) == sorted(b)
    for stage, name in [
        ("lut", "lut.nc"),
        ("siren", "model.safetensors"),
        ("siren_eval", "evaluation.nc"),
        ("simulation", "events-00000.h5"),
        ("control", "crossing_muons-00000.h5"),
        ("reco", "model.safetensors"),
        ("reco_infer", "predictions-00000.h5"),
        ("particles", "chain.safetensors"),
        ("particle_infer", "particles-00000.h5"),
    ]:
        assert sum(rel.startswith(f"{stage}/") and rel.endswith(f"/{name}") for rel in a) == 1
    for rel in a:
        assert _stable(rel, a[rel]) == _stable(rel, b[rel]), f"{rel} differs from the local run"


# --- the sbatch options for GPU requests ----------------------------------------------------

# The stubs the plugin may call before or while it submits; sbatch records its arguments
# (NUL-separated) and fails, which ends the run after the first job (lut_build).
STUBS = {
    "sbatch": '#!/bin/sh\nfor a in "$@"; do printf "%s\\0" "$a"; done >> {record}\n'
    'echo "sbatch: error: stub, nothing submitted" >&2\nexit 1\n',
    "sinfo": "#!/bin/sh\nprintf 'PARTITION\\ncpu*\\ngpu\\n'\n",  # `sinfo -o %P`: default cpu
    "scontrol": "#!/bin/sh\necho 'MinJobAge               = 300 sec'\n",
    **{c: "#!/bin/sh\nexit 1\n" for c in ("sacct", "sacctmgr", "sshare", "squeue", "scancel")},
}


def _sbatch_args(tmp_path: Path, *extra: str) -> list[str]:
    """The arguments of the sbatch call the plugin makes for lut_build with the real profile
    plus ``extra``."""
    stubs, workdir, record = tmp_path / "stubs", tmp_path / "wd", tmp_path / "sbatch.args"
    stubs.mkdir()
    workdir.mkdir()
    for name, text in STUBS.items():
        (stubs / name).write_text(text.replace("{record}", str(record)))
        (stubs / name).chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env["PATH"] = os.pathsep.join([str(stubs), str(BIN), env.get("PATH", "")])
    proc = subprocess.run(
        [str(BIN / "snakemake"), "-s", str(REPO / "Snakefile"), "-d", str(workdir)]
        + ["--configfile", str(TEST_CONFIG), "--profile", str(PROFILE)]
        + [*FAST_POLLING, *NO_RETRIES, *extra],
        capture_output=True,
        text=True,
        env=env,
        cwd=workdir,
        timeout=300,
        check=False,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "stub, nothing submitted" in out, out
    args = record.read_text().split("\0")[:-1]
    assert args.count("--parsable") == 1, args  # exactly one submission
    assert args[args.index("--comment") + 1] == "rule_lut_build", args
    return args


GPU_CASES = {
    # the profile as it is: lut_build (gpu=0) on the cluster's default partition, no GPU
    "cpu": ((), "cpu", []),
    # the profile's documented GPU variant for lut_build
    "gpu-model": (
        ("lut_build:gpu=1", "lut_build:gpu_model=a100", "lut_build:slurm_partition=gpu"),
        "gpu",
        ["--gpus=a100:1"],
    ),
    "gpu": (("lut_build:gpu=1", "lut_build:slurm_partition=gpu"), "gpu", ["--gpus=1"]),
    "gres": (
        ("lut_build:gres=gpu:a100:1", "lut_build:slurm_partition=gpu"),
        "gpu",
        ["--gres=gpu:a100:1"],
    ),
}


@pytest.mark.parametrize("case", GPU_CASES)
def test_gpu_request_renders_sbatch_options(case, tmp_path):
    overrides, partition, gpu_options = GPU_CASES[case]
    extra = ("--set-resources", *overrides) if overrides else ()
    args = _sbatch_args(tmp_path, *extra)
    assert args[args.index("-p") + 1] == partition, args
    assert [a for a in args if a.startswith(("--gpus", "--gres"))] == gpu_options, args
    # the rule's own resources still apply: threads=2, mem_mb=4000, runtime=60 min
    assert "--cpus-per-task=2" in args, args
    assert args[args.index("--mem") + 1] == "4000", args
    assert args[args.index("-t") + 1] == "60", args


DASK_ON_SLURM = """
import json, sys
import numpy as np
from larchain.core.config import load_config
from larchain.lut.build import build_lut

cfg = load_config(sys.argv[1])
cfg["lut"]["photons_per_voxel"] = 400
dask_cfg = {"cluster": "slurm",
            "slurm": {"jobs": 2, "cores": 1, "memory": "1GB", "walltime": "00:10:00",
                      "start_timeout": 120}}
ds = build_lut(cfg, threads=1, dask_cfg=dask_cfg)
np.save(sys.argv[2], ds["visibility"].values)

import os
from larchain.core.cluster import dask_client
one = {"cluster": "slurm", "slurm": {**dask_cfg["slurm"], "jobs": 1}}
with dask_client(one, 1) as client:
    env = client.run(lambda: os.environ.get("MALLOC_MMAP_THRESHOLD_"))
with open(sys.argv[3], "w") as f:
    json.dump(list(env.values()), f)
"""


@pytest.mark.slurm
@pytest.mark.slow
def test_dask_slurmcluster_shards_blocks_over_batch_jobs(slurm, tmp_path):
    """`dask.cluster: slurm`: the stage submits its own Dask workers as SLURM batch jobs
    (dask-jobqueue) and the table equals the one computed locally."""
    from larchain.core.config import load_config
    from larchain.lut.build import build_lut

    submits_before = slurm.ctld_log.read_text(errors="replace").count("_slurm_rpc_submit_batch_job")
    out = tmp_path / "vis.npy"
    script = tmp_path / "dask_on_slurm.py"
    script.write_text(DASK_ON_SLURM)
    proc = subprocess.run(
        [sys.executable, str(script), str(REPO / "config" / "test.yaml"), str(out),
         str(tmp_path / "worker_env.json")],
        env=slurm.env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr + slurm.logs()
    submits = (
        slurm.ctld_log.read_text(errors="replace").count("_slurm_rpc_submit_batch_job")
        - submits_before
    )
    assert submits >= 2, slurm.logs()  # the two worker jobs went through sbatch
    cfg = load_config(REPO / "config" / "test.yaml")
    cfg["lut"]["photons_per_voxel"] = 400
    local = build_lut(cfg, threads=1)["visibility"].values
    assert np.array_equal(np.load(out), local)
    # batch-job workers get larchain's worker environment too (core.cluster.WORKER_ENV)
    from larchain.core.cluster import WORKER_ENV

    env = json.loads((tmp_path / "worker_env.json").read_text())
    assert env == [WORKER_ENV["MALLOC_MMAP_THRESHOLD_"]], env
