"""Where the particle chain loses ARI: an error budget of stages 2-3 on fresh events.

Trains the particle chain (default ``particles`` settings) on the first ``--train`` of
``--events`` fresh events (``particle_learning_curve.fresh_events``: the default physics with
another seed, segmented by the default run's UResNet) and splits each held-out loss into
what the step's input already lost and what the step itself lost, by scoring oracle
groupings (:func:`larchain.reco.metrics.oracle_grouping`) of the chain's own clusters:

* particles: the learned grouping; the oracle grouping of the chain's fragments within each
  class (a perfect fragment GNN); the same with showers only or tracks only left to the
  oracle; the oracle over all classes (the fragmentation's own bound);
* interactions: the learned grouping; the oracle grouping of the chain's particles; and the
  bound of any method that links only particles whose closest voxels are within ``--radii``
  voxels (connected components of the true same-interaction pairs that close);
* how concentrated the loss is (share of the summed 1 - ARI in the worst 10% of events),
  the voxels lost to a fragment another particle owns (by particle types), and how often
  whole interactions are merged, by what met (neutrino or cosmic: an interaction whose one
  primary starts on a wall of the volume).

    python benchmarks/particle_error_budget.py --classes true --json budget.json
    python benchmarks/particle_error_budget.py --events 24 --holdout 8 --train 16  # smoke
"""

from __future__ import annotations

import argparse
import collections
import json
import time
from pathlib import Path

import numpy as np
import torch
from particle_learning_curve import add_sample_arguments, fresh_events, with_true_classes

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=640, help="events simulated")
    ap.add_argument("--holdout", type=int, default=256, help="last events, scored")
    ap.add_argument("--train", type=int, default=384, help="first events, trained on")
    ap.add_argument("--classes", default="true", choices=["uresnet", "true"])
    ap.add_argument("--seed", type=int, default=0, help="offset added to particles.seed")
    ap.add_argument("--radii", type=float, nargs="+", default=[20.0, 50.0, 100.0],
                    help="voxels: local-linking bounds of interaction grouping")
    add_sample_arguments(ap)
    args = ap.parse_args()
    if args.train + args.holdout > args.events:
        raise SystemExit(f"--train {args.train} plus --holdout {args.holdout} needs "
                         f"--events >= {args.train + args.holdout}")

    from larchain.reco.particles import train_chain

    events, vs, cfg, reco_dir = fresh_events(args.events, args.seed_offset, args.workers,
                                             args.results)
    if args.classes == "true":
        events = with_true_classes(events)
    torch.set_num_threads(2)
    pcfg = {**cfg["particles"], "seed": int(cfg["particles"]["seed"]) + args.seed}
    t0 = time.perf_counter()
    chain, history = train_chain(events[:args.train], pcfg, vs)
    train_s = time.perf_counter() - t0
    size_cm = np.asarray(cfg["detector"]["size"], np.float64)
    budget = _budget(chain, events[args.events - args.holdout:], args.radii, size_cm)
    inter_fit = [h for h in history if h["step"] == "interactions"]
    res = {"argv": vars(args), "torch": torch.__version__, "reco_model": reco_dir.name,
           "train_seconds": train_s,
           "interaction_gnn_train_edge_accuracy": inter_fit[-1]["edge_accuracy"]
           if inter_fit else None, **budget}
    _print(res)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1, default=float))
    return 0


def _budget(chain, events, radii, size_cm) -> dict:  # noqa: ANN001
    from larchain.reco import metrics as M
    from larchain.reco.particles import AGGREGATED, majority
    from larchain.sim.truth import LOW_ENERGY, PARTICLE_TYPES, SHOWER, TRACK

    ari = collections.defaultdict(list)
    impure: collections.Counter = collections.Counter()
    merged: collections.Counter = collections.Counter()
    multi: collections.Counter = collections.Counter()
    for ev in events:
        if not len(ev.coords):
            continue
        rec = chain.reconstruct(ev)["voxels"]
        frag, part, inter = (rec[k].astype(np.int64) for k in
                             ("fragment", "particle", "interaction"))
        tp, ti = ev.truth["particle"], ev.truth["interaction"]
        m = ev.truth["semantic"] != LOW_ENERGY
        if not m.any():
            continue
        n_frag = int(frag.max()) + 1
        fcls = majority(frag, ev.semantic.numpy(), n_frag)
        key = np.where(np.isin(fcls, AGGREGATED), fcls, -1)
        oracle = M.oracle_grouping(frag, tp, key)
        learned_of_frag = majority(frag, part, n_frag)  # fragments nest in particles
        ari["particle"].append(M.ari(tp[m], part[m]))
        ari["particle_oracle"].append(M.ari(tp[m], oracle[m]))
        for cls, name in ((SHOWER, "showers"), (TRACK, "tracks")):
            hybrid = np.where(fcls[frag] == cls, oracle, learned_of_frag[frag] + len(frag))
            ari[f"particle_oracle_{name}_only"].append(M.ari(tp[m], hybrid[m]))
        ari["particle_fragmentation_bound"].append(M.ari(tp[m], M.oracle_grouping(frag, tp)[m]))
        ari["interaction"].append(M.ari(ti[m], inter[m]))
        ari["interaction_oracle"].append(M.ari(ti[m], M.oracle_grouping(part, ti)[m]))
        for r, lab in zip(radii, _local_bounds(ev.coords, part, ti, radii), strict=True):
            ari[f"interaction_within_{r:g}"].append(M.ari(ti[m], lab[m]))
        # voxels in a fragment whose majority particle is another one
        owner = majority(frag, tp, n_frag)[frag]
        ptype = ev.truth["particle_type"]
        owner_type = dict(zip(tp.tolist(), ptype.tolist(), strict=True))
        for o, t in zip(owner[m & (owner != tp)].tolist(), ptype[m & (owner != tp)].tolist(),
                        strict=True):
            impure[f"{PARTICLE_TYPES[owner_type[o]]} <- {PARTICLE_TYPES[t]}"] += 1
        true_inter = np.unique(ti[m])
        if len(true_inter) > 1:
            kinds = "+".join(sorted(_kind(ev.particles, i, size_cm) for i in true_inter))
            multi[kinds] += 1
            if ari["interaction"][-1] < 0.5:
                merged[kinds] += 1
    out: dict = {"events": len(ari["particle"])}
    for k, v in ari.items():
        a = np.asarray(v, np.float64)
        loss = np.nan_to_num(1.0 - a)
        worst = np.sort(loss)[::-1][:max(1, len(loss) // 10)]
        out[k] = {"ari": float(np.nanmean(a)),
                  "loss_share_worst_10pct": float(worst.sum() / loss.sum()) if loss.sum() else 0.0}
    out["impure_voxels"] = dict(impure.most_common(8))
    out["multi_interaction_events"] = dict(multi)
    out["merged_interaction_events"] = dict(merged)
    return out


def _local_bounds(coords, part, ti, radii):  # noqa: ANN001, ANN202
    """Per radius, per-voxel interaction ids of the connected components of the particle
    pairs that truly share an interaction and whose closest voxels are within the radius."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    from larchain.reco import graph as G
    from larchain.reco.particles import majority

    n = int(part.max()) + 1
    edges = G.complete_graph(torch.zeros(n, dtype=torch.int64))
    if edges.shape[1] == 0:
        return [np.zeros(len(part), np.int64) for _ in radii]
    dist = G.closest_points(coords, torch.as_tensor(part), edges)[0].numpy()
    e = edges.numpy()
    owner = majority(part, ti, n)
    same = owner[e[0]] == owner[e[1]]
    out = []
    for r in radii:
        k = same & (dist <= r)
        adj = coo_matrix((np.ones(int(k.sum())), (e[0][k], e[1][k])), shape=(n, n))
        out.append(connected_components(adj, directed=False)[1][part])
    return out


def _kind(particles, interaction: int, size_cm: np.ndarray) -> str:  # noqa: ANN001
    """``cosmic`` if the interaction's one primary starts on a wall of the volume (neutrino
    vertices keep ``simulation.fiducial_margin`` from the walls), else ``neutrino``."""
    rows = np.flatnonzero((np.asarray(particles["interaction"]) == interaction)
                          & (np.asarray(particles["primary"]) == 1))
    start = np.asarray(particles["start"], np.float64)[rows]
    on_wall = np.any((start < 0.5) | (start > size_cm - 0.5), axis=1)
    return "cosmic" if len(rows) == 1 and bool(on_wall.all()) else "neutrino"


def _print(r: dict) -> None:
    print(f"{r['events']} held-out events, {r['argv']['classes']} classes, chain trained on "
          f"{r['argv']['train']} events in {r['train_seconds']:.0f} s")
    for k, v in r.items():
        if isinstance(v, dict) and "ari" in v:
            print(f"  {k:36s} ARI {v['ari']:.4f}   worst 10% of events hold "
                  f"{v['loss_share_worst_10pct']:.0%} of the loss")
    print(f"  interaction GNN, training edge accuracy: {r['interaction_gnn_train_edge_accuracy']}")
    print(f"  voxels in a fragment another particle owns (owner <- voxel's): "
          f"{r['impure_voxels']}")
    print(f"  events with several interactions: {r['multi_interaction_events']}")
    print(f"  ... of which merged into one (interaction ARI < 0.5): "
          f"{r['merged_interaction_events']}")


if __name__ == "__main__":
    raise SystemExit(main())
