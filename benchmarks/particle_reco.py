"""Particle-level reconstruction: speed and, optionally, quality with true semantic labels.

Speed: events per second of the learned chain (dense clustering + two GNNs) and of the
classical DBSCAN baseline on the same events, one CPU thread.

``--oracle``: retrains the chain on the same training events with stage 1's class
probabilities replaced by the true classes (one-hot), and scores it and the baseline (also on
true classes) on the held-out events: what stages 2-3 reach when segmentation is perfect,
which separates their errors from stage 1's.

Needs the default run's artifacts (``snakemake --cores 2``): the newest ``results/particles``
model, the simulation and stage 1's predictions it was trained from.

    python benchmarks/particle_reco.py [--events 32] [--oracle]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=32)
    ap.add_argument("--results", default=str(ROOT / "results"))
    ap.add_argument("--oracle", action="store_true")
    args = ap.parse_args()

    from larchain.reco import baseline as B
    from larchain.reco.particle_stage import load_inputs
    from larchain.reco.particles import load_chain
    from larchain.sim.storage import EventDataset

    models = sorted(Path(args.results, "particles").glob("*/manifest.json"),
                    key=lambda p: p.stat().st_mtime)
    if not models:
        raise SystemExit(f"no particles artifact under {args.results}: run snakemake first")
    model_dir = models[-1].parent
    up = json.loads(models[-1].read_text())["upstream"]
    sim = Path(args.results, "simulation", up["simulation"])
    pred = Path(args.results, "reco_infer", up["predictions"])
    torch.set_num_threads(1)
    chain = load_chain(model_dir)
    n = min(args.events, len(EventDataset(sim)))
    events = load_inputs(sim, pred, range(n), with_truth=False)
    raw_pred = EventDataset(pred, "predictions")
    voxels = sum(len(e.coords) for e in events)
    chain.reconstruct(events[0])  # warm-up
    t0 = time.perf_counter()
    for ev in events:
        chain.reconstruct(ev)
    learned = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i, ev in enumerate(events):
        B.baseline_chain(ev.coords.numpy().astype(np.float64), ev.charge.numpy(),
                         np.asarray(raw_pred.raw(i)["voxels"]["pred"]), **B.DEFAULTS)
    base = time.perf_counter() - t0
    print(f"{n} events, {voxels / n:.0f} voxels/event on average, 1 CPU thread")
    print(f"learned chain : {n / learned:7.2f} events/s ({1e3 * learned / n:.1f} ms/event)")
    print(f"DBSCAN baseline: {n / base:7.2f} events/s ({1e3 * base / n:.1f} ms/event)")
    print(f"ratio learned/baseline time: {learned / base:.2f}")
    if args.oracle:
        oracle(model_dir, sim, pred)


def oracle(model_dir: Path, sim: Path, pred: Path) -> None:
    from larchain.reco import baseline as B
    from larchain.reco import metrics as M
    from larchain.reco.particle_stage import load_inputs
    from larchain.reco.particles import load_chain, train_chain
    from larchain.sim.truth import LOW_ENERGY

    split = json.loads(Path(str(ROOT / "results"), "reco", json.loads(
        (pred / "manifest.json").read_text())["upstream"]["reco"], "split.json").read_text())
    cfg = load_chain(model_dir).cfg
    train = load_inputs(sim, pred, split["train"])
    hold = load_inputs(sim, pred, split["holdout"])
    for ev in train + hold:
        ev.prob = torch.nn.functional.one_hot(
            torch.as_tensor(ev.truth["semantic"].astype(np.int64)), 5).float()
    chain, _ = train_chain(train, cfg, load_chain(model_dir).voxel_size)
    learned, base = [], []
    for ev in hold:
        rec = chain.reconstruct(ev)
        mask = ev.truth["semantic"] != LOW_ENERGY
        learned.append(M.event_scores(ev.truth, {
            **rec["voxels"], "particle_ids": rec["particles"]["id"],
            "type": rec["particles"]["type"], "primary": rec["particles"]["primary"]}, mask))
        b = B.baseline_chain(ev.coords.numpy().astype(np.float64), ev.charge.numpy(),
                             ev.truth["semantic"], **B.DEFAULTS)
        base.append(M.event_scores(ev.truth, b, mask))
    print(f"\n== true semantic classes, {len(hold)} held-out events (low-energy voxels masked)")
    for name, scores in (("learned chain", learned), ("DBSCAN baseline", base)):
        s = M.summarise_scores(scores)
        print(f"{name:15s} ARI " + ", ".join(
            f"{lv} {s[lv]['ari']['mean']:.3f}" for lv in M.LEVELS)
            + f"; PID accuracy {s['pid']['accuracy']:.3f}")


if __name__ == "__main__":
    main()
