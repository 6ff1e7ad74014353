"""Particle-level reconstruction versus training-set size: is the chain data-limited?

Simulates ``--events`` fresh events of the default physics (a different seed from the default
sample, so none was seen by the default UResNet), runs the default run's UResNet over them
(decoder features and classes, as ``reco_infer``), then trains the particle chain (edge
scorer + two GNNs, the default ``particles`` settings) on the first n events for each n of
``--train`` and scores the same last ``--holdout`` events with ``particle_eval``'s code.
With ``--classes true`` the UResNet's class probabilities are replaced by the true classes
(one-hot, as ``particle_reco.py --oracle``), which separates stages 2-3 from stage 1's errors.
The DBSCAN baseline is scored on the same held-out events for reference (it is not trained).
``--seeds`` repeats each training with other seeds (their spread is the training noise);
``--linearity`` compares track-breaking thresholds (``particles.break_tracks.linearity``),
``--kink-angle`` kink cuts (``particles.break_tracks.kink_angle``; ``none``: off) and
``--kink-min-segment`` their shortest arm (``particles.break_tracks.kink_min_segment``), the
baseline getting the same kink cut, ``--track-edge-threshold`` the voxel edge scorer's bar
between track voxels (``particles.track_edge_threshold``; ``none``: ``edge_threshold``),
``--interaction-touch`` the grouping of touching particles
before the interaction GNN (``particles.interaction_touch``; ``none``: off), and
``--interaction-linkage`` the interaction step's average linkage over voxel or node pairs
(``particles.interaction_linkage``; inference only, so each trained chain is scored with each).
``--interaction-pointing on off`` compares the touching groups' pointing edge features
(``particles.interaction_pointing``), ``--voxel-cross-class on off`` dense clustering across
predicted classes (``particles.voxel_cross_class``), ``--cross-class on off`` fragment grouping
across predicted classes (``particles.cross_class``) and ``--group-classes`` which classes'
fragments are grouped (``particles.group_classes``, comma-separated: ``shower,track``).

Needs the default run's stage-1 model (``snakemake --cores 2``: the newest ``results/reco``).

    python benchmarks/particle_learning_curve.py --events 1600 --holdout 256 \
        --train 96 384 1344 --classes uresnet true --seeds 0 1 --json curve.json
    python benchmarks/particle_learning_curve.py --train 384 --linearity 0.85 0.9  # compare
    python benchmarks/particle_learning_curve.py --train 384 --kink-angle none 20 --seeds 0 1
    python benchmarks/particle_learning_curve.py --events 640 --train 384 \
        --kink-min-segment 4 3 --seeds 0 1
    python benchmarks/particle_learning_curve.py --events 640 --train 384 \
        --track-edge-threshold none 0.9 --seeds 0 1
    python benchmarks/particle_learning_curve.py --events 640 --train 384 \
        --interaction-touch none 2 --seeds 0 1 2
    python benchmarks/particle_learning_curve.py --events 640 --train 384 \
        --interaction-linkage nodes voxels --seeds 0 1
    python benchmarks/particle_learning_curve.py --events 640 --train 384 --classes uresnet \
        --cross-class off on --group-classes shower,track shower,track,michel,delta --seeds 0 1
    python benchmarks/particle_learning_curve.py --events 640 --train 384 \
        --voxel-cross-class off on --seeds 1 2
    python benchmarks/particle_learning_curve.py --events 24 --holdout 8 --train 8 16  # smoke
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1600, help="events simulated")
    ap.add_argument("--holdout", type=int, default=256, help="last events, scored")
    ap.add_argument("--train", type=int, nargs="+", default=[96, 384, 1344],
                    help="training-set sizes (the first n events)")
    ap.add_argument("--classes", nargs="+", default=["uresnet", "true"],
                    choices=["uresnet", "true"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0],
                    help="offsets added to particles.seed: one training per offset and size")
    ap.add_argument("--linearity", type=float, nargs="+", default=None,
                    help="particles.break_tracks.linearity values to compare (default: the "
                         "config's)")
    ap.add_argument("--kink-angle", nargs="+", default=None,
                    help="particles.break_tracks.kink_angle values to compare, degrees or "
                         "'none' (default: the config's)")
    ap.add_argument("--kink-min-segment", type=float, nargs="+", default=None,
                    help="particles.break_tracks.kink_min_segment values to compare, voxels "
                         "(default: the config's)")
    ap.add_argument("--track-edge-threshold", nargs="+", default=None,
                    help="particles.track_edge_threshold values to compare, or 'none' "
                         "(default: the config's)")
    ap.add_argument("--interaction-touch", nargs="+", default=None,
                    help="particles.interaction_touch values to compare, voxels or 'none' "
                         "(default: the config's)")
    ap.add_argument("--interaction-pointing", nargs="+", default=None, choices=["on", "off"],
                    help="particles.interaction_pointing values to compare (default: the "
                         "config's)")
    ap.add_argument("--interaction-linkage", nargs="+", default=None,
                    choices=["voxels", "nodes"],
                    help="particles.interaction_linkage values to compare, each scored with "
                         "the same trained chain (default: the config's)")
    ap.add_argument("--voxel-cross-class", nargs="+", default=None, choices=["on", "off"],
                    help="particles.voxel_cross_class values to compare (default: the "
                         "config's)")
    ap.add_argument("--cross-class", nargs="+", default=None, choices=["on", "off"],
                    help="particles.cross_class values to compare (default: the config's)")
    ap.add_argument("--group-classes", nargs="+", default=None,
                    help="particles.group_classes values to compare, each comma-separated, "
                         "e.g. shower,track (default: the config's)")
    ap.add_argument("--min-voxels", type=int, default=5,
                    help="PID is also reported over true particles of at least this many "
                         "voxels (particles.eval.pid_min_voxels)")
    add_sample_arguments(ap)
    args = ap.parse_args()
    if max(args.train) + args.holdout > args.events:
        raise SystemExit(f"--train up to {max(args.train)} plus --holdout {args.holdout} needs "
                         f"--events >= {max(args.train) + args.holdout}")

    from larchain.reco import baseline as B
    from larchain.reco import metrics as M
    from larchain.reco.particles import train_chain
    from larchain.sim.truth import LOW_ENERGY

    events, vs, cfg, reco_dir = fresh_events(args.events, args.seed_offset, args.workers,
                                             args.results)
    pcfg = dict(cfg["particles"])
    res: dict = {"argv": vars(args), "torch": torch.__version__, "reco_model": reco_dir.name,
                 "particles_cfg": pcfg, "runs": []}
    torch.set_num_threads(2)
    hold_ids = range(args.events - args.holdout, args.events)
    res["voxels_per_event"] = float(np.mean([len(e.coords) for e in events]))

    for classes in args.classes:
        evs = with_true_classes(events) if classes == "true" else events
        hold = [evs[i] for i in hold_ids]
        masks = [e.truth["semantic"] != LOW_ENERGY for e in hold]
        kinks = _values(args.kink_angle, pcfg["break_tracks"]["kink_angle"])
        segments = args.kink_min_segment or [pcfg["break_tracks"]["kink_min_segment"]]
        kinks = list(itertools.product(kinks, segments))  # (angle, shortest arm) settings
        for kink, segment in kinks:
            base_scores = [
                M.event_scores(e.truth, B.baseline_chain(
                    e.coords.numpy().astype(np.float64), e.charge.numpy(),
                    e.semantic.numpy(), **{**B.DEFAULTS, "kink_angle": kink,
                                           "kink_min_segment": segment}), m)
                for e, m in zip(hold, masks, strict=True)]
            res["runs"].append(_row(classes, "baseline", 0,
                                    M.summarise_scores(base_scores, args.min_voxels), 0.0,
                                    kink_angle=kink, kink_min_segment=segment))
            _print(res["runs"][-1])
        linearities = args.linearity or [pcfg["break_tracks"]["linearity"]]
        touches = _values(args.interaction_touch, pcfg.get("interaction_touch"))
        pointings = _switches(args.interaction_pointing, pcfg["interaction_pointing"])
        track_cuts = _values(args.track_edge_threshold, pcfg.get("track_edge_threshold"))
        crosses = _switches(args.cross_class, pcfg["cross_class"])
        voxel_crosses = _switches(args.voxel_cross_class, pcfg["voxel_cross_class"])
        groupings = ([g.split(",") for g in args.group_classes] if args.group_classes
                     else [pcfg["group_classes"]])
        for n, lin, (kink, segment), cut, touch, pointing, vcross, cross, grouped, off in (
                itertools.product(args.train, linearities, kinks, track_cuts, touches,
                                  pointings, voxel_crosses, crosses, groupings, args.seeds)):
            chain_cfg = {**pcfg, "seed": int(pcfg["seed"]) + off, "interaction_touch": touch,
                         "interaction_pointing": pointing, "track_edge_threshold": cut,
                         "voxel_cross_class": vcross, "cross_class": cross,
                         "group_classes": grouped,
                         "break_tracks": {**pcfg["break_tracks"], "linearity": lin,
                                          "kink_angle": kink, "kink_min_segment": segment}}
            t0 = time.perf_counter()
            chain, _ = train_chain(evs[:n], chain_cfg, vs)
            seconds = time.perf_counter() - t0
            for linkage in args.interaction_linkage or [pcfg["interaction_linkage"]]:
                chain.cfg = {**chain.cfg, "interaction_linkage": linkage}  # inference only
                scores = []
                for e, m in zip(hold, masks, strict=True):
                    rec = chain.reconstruct(e)
                    scores.append(M.event_scores(e.truth, {
                        **rec["voxels"], "particle_ids": rec["particles"]["id"],
                        "type": rec["particles"]["type"],
                        "primary": rec["particles"]["primary"]}, m))
                res["runs"].append(_row(classes, "learned", n,
                                        M.summarise_scores(scores, args.min_voxels), seconds,
                                        off, lin, kink, touch, linkage, pointing, segment,
                                        cut, cross, grouped, vcross))
                _print(res["runs"][-1])
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1, default=float))
    return 0


def add_sample_arguments(ap: argparse.ArgumentParser) -> None:
    """The options of the fresh sample (:func:`fresh_events`) and of the JSON output."""
    ap.add_argument("--workers", type=int, default=2, help="Dask workers (simulation, stage 1)")
    ap.add_argument("--seed-offset", type=int, default=1000,
                    help="added to the default simulation seed (fresh events)")
    ap.add_argument("--results", default=str(REPO / "results"))
    ap.add_argument("--json", default=None)


def fresh_events(n_events: int, seed_offset: int, workers: int, results: str
                 ) -> tuple[list, float, dict, Path]:
    """Simulate ``n_events`` of the default physics with the simulation seed moved by
    ``seed_offset`` (events no default model has seen) and run the newest default UResNet
    under ``results`` over them. Returns the chain's inputs (with truth), the voxel size,
    the validated default config and the UResNet's artifact directory."""
    from larchain.core.config import validate_schema
    from larchain.reco.infer import run_inference
    from larchain.reco.particle_stage import load_inputs, voxel_size
    from larchain.sim.build import build_sample

    models = sorted(Path(results, "reco").glob("*/manifest.json"),
                    key=lambda p: p.stat().st_mtime)
    if not models:
        raise SystemExit(f"no reco artifact under {results}: run snakemake first")
    reco_dir = models[-1].parent
    cfg = validate_schema(yaml.safe_load((REPO / "config" / "config.yaml").read_text()))
    cfg["simulation"].update(events=n_events, events_per_shard=64,
                             seed=int(cfg["simulation"]["seed"]) + seed_offset)
    n_det = len(cfg["detector"].get("photodetectors") or []) or 16
    with tempfile.TemporaryDirectory() as tmp:
        sim, pred = Path(tmp, "sim"), Path(tmp, "pred")
        t0 = time.perf_counter()
        build_sample(cfg, "simulation", sim, visibility_dir=None, n_detectors=n_det,
                     threads=workers, dask_cfg={})
        run_inference(reco_dir, sim, pred, {**cfg["reco"]["infer"], "events_per_shard": 64},
                      threads=workers, dask_cfg={})
        print(f"simulated and segmented {n_events} events in "
              f"{time.perf_counter() - t0:.0f} s", flush=True)
        events = load_inputs(sim, pred, range(n_events), desc="load")
        vs = voxel_size(sim)
    return events, vs, cfg, reco_dir


def with_true_classes(events: list) -> list:
    """Shallow copies of the chain's inputs whose class probabilities are the true classes
    (one-hot): stages 2-3 measured without stage 1's errors."""
    out = [copy.copy(e) for e in events]
    for e in out:
        e.prob = torch.nn.functional.one_hot(
            torch.as_tensor(e.truth["semantic"].astype(np.int64)), 5).float()
    return out


def _values(given: list[str] | None, default: float | None) -> list[float | None]:
    """Numbers or ``none`` from the command line, or the config's value alone."""
    if not given:
        return [default]
    return [None if v.lower() == "none" else float(v) for v in given]


def _switches(given: list[str] | None, default: bool) -> list[bool]:
    """``on``/``off`` from the command line, or the config's value alone."""
    return [v == "on" for v in given] if given else [bool(default)]


def _row(classes: str, chain: str, n_train: int, s: dict, seconds: float,
         seed_offset: int = 0, linearity: float | None = None,
         kink_angle: float | None = None, touch: float | None = None,
         linkage: str | None = None, pointing: bool | None = None,
         kink_min_segment: float | None = None,
         track_edge_threshold: float | None = None, cross_class: bool | None = None,
         group_classes: list[str] | None = None,
         voxel_cross_class: bool | None = None) -> dict:
    from larchain.reco import metrics as M

    return {"classes": classes, "chain": chain, "train_events": n_train,
            "seed_offset": seed_offset, "break_linearity": linearity, "kink_angle": kink_angle,
            "kink_min_segment": kink_min_segment, "track_edge_threshold": track_edge_threshold,
            "interaction_touch": touch, "interaction_linkage": linkage,
            "interaction_pointing": pointing, "voxel_cross_class": voxel_cross_class,
            "cross_class": cross_class,
            "group_classes": group_classes, "train_seconds": seconds,
            **{f"{lv}_ari": s[lv]["ari"]["mean"] for lv in M.LEVELS},
            "pid": s["pid"]["accuracy"], "pid_particles": s["pid"]["n_particles"],
            "pid_per_class": {k: v["accuracy"] for k, v in s["pid"]["per_class"].items()},
            "pid_visible": s["pid_visible"], "pid_mutual": s["pid_mutual"],
            "primary": s.get("primary", {}).get("accuracy")}


def _print(r: dict) -> None:
    from larchain.reco import metrics as M

    who = (f"{r['chain']} ({r['train_events']} events, seed+{r['seed_offset']}, "
           f"track cut {r.get('track_edge_threshold')}, break {r['break_linearity']}, "
           f"kink {r['kink_angle']}/{r['kink_min_segment']}, "
           f"touch {r['interaction_touch']}, pointing {r.get('interaction_pointing')}, "
           f"linkage {r.get('interaction_linkage')}, "
           f"voxel cross-class {r.get('voxel_cross_class')}, "
           f"cross-class {r.get('cross_class')}, "
           f"grouped {','.join(r.get('group_classes') or [])})"
           if r["chain"] == "learned"
           else f"baseline (kink {r['kink_angle']}/{r['kink_min_segment']})")
    primary = "" if r["primary"] is None else f", primary {r['primary']:.3f}"
    print(f"{r['classes']:7s} classes, {who:66s} ARI " + ", ".join(
        f"{lv} {r[lv + '_ari']:.3f}" for lv in M.LEVELS)
        + f"; PID {r['pid']:.3f} ({r['pid_particles']} particles){primary}"
        + f"; PID >= {r['pid_visible']['min_voxels']} voxels {r['pid_visible']['accuracy']:.3f} "
          f"({r['pid_visible']['n_particles']} particles)"
        + f"; mutual {r['pid_mutual']['accuracy']:.3f} "
          f"({sum(r['pid_mutual']['n_swallowed'].values())} swallowed)"
        + (f"; trained in {r['train_seconds']:.0f} s" if r["train_seconds"] else ""),
        flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
