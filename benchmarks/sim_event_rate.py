"""Simulation throughput: events per second for ~5k-voxel events (transport + response +
labels + HDF5), in process on one core and on a Dask LocalCluster of N single-threaded workers.

    python benchmarks/sim_event_rate.py --events 1024 --per-shard 128 --workers 2

Prints events/s and voxels/event in process (one core: the share of the detector response,
and the ratio to a baseline measured in the same run, the same events one at a time), then
on one cluster (started through larchain.core.cluster, so with its worker settings): the
start-up (cluster, workers importing torch and loading the compiled kernels, a 2-event
sample) and ``--repeats`` runs of the sample through the running cluster, median and range,
against the target (100 events/s on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from larchain.core.cluster import dask_client
from larchain.core.config import validate_schema
from larchain.sim.build import build_sample, setup_from_config
from larchain.sim.generator import generate_event
from larchain.sim.simulate import simulate_events

REPO = Path(__file__).resolve().parents[1]
TARGET = 100.0


def _config(events: int, per_shard: int, pileup: float) -> dict:
    cfg = validate_schema(yaml.safe_load((REPO / "config" / "config.yaml").read_text()))
    cfg["simulation"].update(events=events, events_per_shard=per_shard)
    cfg["simulation"]["neutrino"]["pileup_mean"] = pileup
    cfg["simulation"]["cosmics"]["mean"] = 1.0
    return cfg


def _build(cfg: dict, workers: int, n_det: int, dask_cfg: dict) -> tuple[float, dict]:
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        idx = build_sample(cfg, "simulation", d, visibility_dir=None, n_detectors=n_det,
                           threads=workers, dask_cfg=dask_cfg)
        return time.perf_counter() - t, idx["samples"]["events"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1024, help="events on the cluster")
    ap.add_argument("--per-shard", type=int, default=128)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3, help="cluster runs of the sample")
    ap.add_argument("--pileup", type=float, default=5.0,
                    help="extra interactions per event (5: ~5k voxels per event)")
    args = ap.parse_args()
    cfg = _config(args.events, args.per_shard, args.pileup)
    n_det = 16
    torch.set_num_threads(1)  # one core, as a Dask worker
    setup = setup_from_config(cfg, n_det)
    size = np.asarray(cfg["detector"]["size"])

    def make(e: int, i: int, o) -> None:  # noqa: ANN001
        generate_event(cfg["simulation"], size, setup.seed, e, i, o)

    simulate_events(setup, [0], make)  # compile / load the stepping kernel
    import larchain.sim.simulate as S

    spent = {"response": 0.0}
    orig = S.detector_response

    def timed(*a, **k):  # noqa: ANN002, ANN003, ANN202
        t = time.perf_counter()
        out = orig(*a, **k)
        spent["response"] += time.perf_counter() - t
        return out

    S.detector_response = timed
    t = time.perf_counter()
    res = simulate_events(setup, range(args.per_shard), make)
    total = time.perf_counter() - t
    S.detector_response = orig
    vox = np.mean([len(e["voxels"]["charge"]) for e in res["events"]])
    batched = args.per_shard / total
    print(f"one core, {args.per_shard} events batched: {batched:.1f} events/s; {vox:.0f} "
          f"voxels/event; response {spent['response'] / total:.0%} of the time")
    # baseline in the same run: the same physics one event at a time (no batching)
    n_base = min(16, args.per_shard)
    t = time.perf_counter()
    for e in range(n_base):
        simulate_events(setup, [e], make)
    single = n_base / (time.perf_counter() - t)
    print(f"baseline, one event at a time: {single:.1f} events/s; batching gains "
          f"x{batched / single:.2f}")
    t = time.perf_counter()
    with dask_client({}, args.workers) as client:
        running = {"scheduler_address": client.scheduler.address}
        _build(_config(2, 1, args.pileup), args.workers, n_det, running)
        startup = time.perf_counter() - t
        runs = [_build(cfg, args.workers, n_det, running) for _ in range(args.repeats)]
    s = runs[0][1]
    rates = sorted(s["events"] / wall for wall, _ in runs)
    rate = statistics.median(rates)
    amortised = s["events"] / (startup + s["events"] / rate)
    print(f"{args.workers} workers: {s['events']} events ({s['voxels'] / s['events']:.0f} "
          f"voxels/event), {len(runs)} runs: median {rate:.1f} events/s (range "
          f"{rates[0]:.1f}-{rates[-1]:.1f}); ratio to the {TARGET:.0f} events/s target: "
          f"{rate / TARGET:.2f}. Start-up {startup:.1f} s (cluster, imports, a 2-event "
          f"sample); one run of {s['events']} events including it: {amortised:.1f} events/s")


if __name__ == "__main__":
    main()
