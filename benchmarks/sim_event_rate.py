"""Simulation throughput: events per second for ~5k-voxel events (transport + response +
labels + HDF5), on a Dask LocalCluster of N single-threaded workers.

    python benchmarks/sim_event_rate.py --events 128 --workers 2

Prints events/s, voxels/event, the share of the detector response (one worker, in process),
the ratio to a baseline measured in the same run (the same events one at a time, no
batching of the transport) and to the target (100 events/s on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from larchain.core.config import validate_schema
from larchain.sim.build import build_sample, setup_from_config
from larchain.sim.generator import generate_event
from larchain.sim.simulate import simulate_events

REPO = Path(__file__).resolve().parents[1]
TARGET = 100.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=128)
    ap.add_argument("--per-shard", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--pileup", type=float, default=3.0, help="extra interactions per event")
    args = ap.parse_args()
    cfg = validate_schema(yaml.safe_load((REPO / "config" / "config.yaml").read_text()))
    cfg["simulation"].update(events=args.events, events_per_shard=args.per_shard)
    cfg["simulation"]["neutrino"]["pileup_mean"] = args.pileup
    cfg["simulation"]["cosmics"]["mean"] = 1.0
    n_det = 16
    # in-process split on one shard
    setup = setup_from_config(cfg, n_det)
    size = np.asarray(cfg["detector"]["size"])
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
    res = simulate_events(setup, range(args.per_shard), lambda e, i, o: generate_event(
        cfg["simulation"], size, setup.seed, e, i, o))
    total = time.perf_counter() - t
    S.detector_response = orig
    vox = np.mean([len(e["voxels"]["charge"]) for e in res["events"]])
    batched = args.per_shard / total
    print(f"one worker, {args.per_shard} events batched: {batched:.1f} events/s; "
          f"{vox:.0f} voxels/event; response {spent['response'] / total:.0%} of the time")
    # baseline in the same run: the same physics one event at a time (no batching)
    n_base = min(16, args.per_shard)
    t = time.perf_counter()
    for e in range(n_base):
        simulate_events(setup, [e], lambda e, i, o: generate_event(
            cfg["simulation"], size, setup.seed, e, i, o))
    single = n_base / (time.perf_counter() - t)
    print(f"baseline, one event at a time: {single:.1f} events/s; batching gains "
          f"x{batched / single:.2f}")
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        idx = build_sample(cfg, "simulation", d, visibility_dir=None, n_detectors=n_det,
                           threads=args.workers, dask_cfg={})
        wall = time.perf_counter() - t
    s = idx["samples"]["events"]
    rate = s["events"] / wall
    print(f"{args.workers} workers: {s['events']} events in {wall:.1f} s = {rate:.1f} events/s "
          f"({s['voxels'] / s['events']:.0f} voxels/event, cluster start-up included); "
          f"ratio to the {TARGET:.0f} events/s target: {rate / TARGET:.2f}")


if __name__ == "__main__":
    main()
