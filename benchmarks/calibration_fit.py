"""Calibration benchmark: one joint fit on ~1,000 control tracks and a coverage study.

Simulates control samples (crossing muons, stopping muons and protons) of the default
detector with true parameters that differ from the nominal config (lifetime, both box
constants, both diffusion constants, drift velocity, light yield, 16 efficiencies), fits
them from the nominal config, and prints per parameter the deviation from the truth in %
and in reported sigmas, the fit time against the 60 s target, and the lifetime error against
the classic exponential fit on the same events (ratio measured in the same run). Then
``--toys`` toys (readout redrawn on ``--toy-tracks`` tracks, fitted on a Dask LocalCluster)
give the pull means and widths with their errors, and the lifetime resolution of both
methods from the spread over the toys.

Light uses an analytic visibility (inverse square to each photodetector centre, x 0.1) so
the benchmark needs no LUT or SIREN artifact.

    python benchmarks/calibration_fit.py [--tracks 1000] [--toys 50] [--toy-tracks 200]
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
TRUTH = {"lifetime": 2600.0, "box_alpha": 0.91, "box_beta": 0.205, "diffusion_l": 4.4e-6,
         "diffusion_t": 9.5e-6, "drift_velocity": 0.158, "light_yield": 0.9,
         "pd_efficiency": [round(1 + 0.1 * math.sin(j), 4) for j in range(16)]}


def visibility_model(cfg: dict):  # noqa: ANN201
    from larchain.core.geometry import Detector
    from larchain.core.visibility import VisibilityModel

    class InverseSquare(VisibilityModel):
        def __init__(self, centres: torch.Tensor) -> None:
            super().__init__()
            self.register_buffer("centres", centres)

        @property
        def n_detectors(self) -> int:
            return int(self.centres.shape[0])

        def forward(self, points: torch.Tensor) -> torch.Tensor:
            d2 = ((points[:, None, :] - self.centres[None].to(points.dtype)) ** 2).sum(-1)
            return 0.1 / (4 * math.pi * d2.clamp_min(1.0))

    det = Detector.from_config(cfg["detector"])
    return InverseSquare(torch.tensor([p.center for p in det.photodetectors],
                                      dtype=torch.float32))


def make_control(out: Path, cfg: dict, n: tuple[int, int, int]) -> None:
    """A control artifact directory (shards, index, manifest) simulated in process."""
    import larchain.sim.build as build
    from larchain.sim.storage import SCHEMA_VERSION

    cfg["control"].update(crossing_muons=n[0], stopping_muons=n[1], stopping_protons=n[2])
    tpc = {**cfg["tpc"], **TRUTH}
    model = visibility_model(cfg)
    build._visibility = lambda path: model if path else None  # in-process: no artifact
    setup = build.setup_from_config(cfg, model.n_detectors, "control", tpc)
    samples = {s: c for s, c in zip(("crossing_muons", "stopping_muons", "stopping_protons"),
                                    n, strict=True) if c}
    index: dict = {"schema_version": SCHEMA_VERSION, "samples": {}}
    for b in build.plan_shards(samples, 100):
        r = build.simulate_shard(b, setup=setup, config=cfg, visibility_dir="analytic",
                                 out_dir=str(out))
        s = index["samples"].setdefault(b["sample"], {"events": 0, "voxels": 0, "shards": []})
        s["events"] += r["n_events"]
        s["shards"].append({k: r[k] for k in ("file", "first_event", "n_events", "sha256")})
    (out / "index.json").write_text(json.dumps(index))
    (out / "manifest.json").write_text(json.dumps({
        "stage": "control", "id": "benchmark",
        "config": {k: cfg[k] for k in ("tpc", "readout", "detector")},
        "extra": {"true_tpc": tpc}}))


_PROBLEM: dict = {}


def _toy(toy: int, control: str, cfg: dict) -> dict:
    """Dask task: one toy (the problem is built once per worker process)."""
    from larchain.calib import stage

    torch.set_num_threads(1)
    if "p" not in _PROBLEM:
        full = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
        _PROBLEM["p"] = stage.build_problem(control, None, cfg, events=cfg["coverage"]["events"],
                                            visibility_model=visibility_model(full))
    return stage.fit_toy(_PROBLEM["p"], toy, cfg)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tracks", type=int, default=1000)
    ap.add_argument("--toys", type=int, default=50)
    ap.add_argument("--toy-tracks", type=int, default=200)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="where the joint fit's likelihood runs")
    ap.add_argument("--first-toy", type=int, default=0,
                    help="toy seeds are derived from the toy number: split a study over runs")
    ap.add_argument("--json", default=None, help="also write every toy's result to this file")
    ap.add_argument("--merge", nargs="*", default=None,
                    help="summarise the toys of these --json files instead of running anything")
    args = ap.parse_args()
    if args.merge:
        from larchain.calib import stage

        toys = [t for f in args.merge for t in json.loads(Path(f).read_text())["toys"]]
        print_coverage(stage.pull_summary(toys), len(toys), "merged from " + ", ".join(args.merge))
        return

    from larchain.calib import baselines, stage
    from larchain.calib.fit import FitSettings, fit

    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    ccfg = cfg["calibration"]
    n = (args.tracks // 2, args.tracks // 4, args.tracks - args.tracks // 2 - args.tracks // 4)
    with tempfile.TemporaryDirectory() as tmp:
        control = Path(tmp)
        t0 = time.perf_counter()
        make_control(control, cfg, n)
        print(f"simulated {sum(n)} control tracks {n} in {time.perf_counter() - t0:.1f} s")
        torch.set_num_threads(2)
        problem = stage.build_problem(control, None, ccfg, visibility_model=visibility_model(cfg),
                                      device=args.device)
        t0 = time.perf_counter()
        result = fit(problem.likelihood, problem.param, FitSettings.from_config(ccfg, 1),
                     progress=False)
        wall = time.perf_counter() - t0
        rows = stage.summarise(result, problem.truth)
        print(f"\n== joint fit on {args.device}: {problem.data.n_events} tracks, "
              f"{len(problem.data.de)} deposits, {len(problem.data.vox_charge)} voxels, "
              f"{problem.param.size} free")
        print(f"time {wall:.1f} s (target 60 s: ratio {wall / 60:.2f}); phases "
              + ", ".join(f"{k} {v:.1f}" for k, v in result.timing.items()))
        ok = 0
        for name, r in rows.items():
            good = abs(r["relative"]) <= 0.005 or abs(r["pull"]) <= 2
            ok += good
            print(f"  {name:18s} fit {r['value']:.6g} +- {r['error']:.3g}  truth "
                  f"{r['truth']:.6g}  {100 * r['relative']:+.3f}%  pull {r['pull']:+.2f}"
                  f"  {'ok' if good else 'MISS'}")
        print(f"  within 0.5% or 2 sigma: {ok}/{len(rows)}")
        crossing = [ev for ev in problem.data.events if ev["sample"] == "crossing_muons"]
        classic = baselines.lifetime_fit(crossing, pitch=problem.data.pitch,
                                         reco_velocity=problem.settings.reco_drift_velocity)
        lt = rows["lifetime"]
        print(f"classic lifetime {classic['lifetime']:.0f} +- {classic['lifetime_error']:.0f} "
              f"us (truth {TRUTH['lifetime']:.0f}); differentiable {lt['value']:.0f} +- "
              f"{lt['error']:.1f}: error ratio diff/classic "
              f"{lt['error'] / classic['lifetime_error']:.3f}")

        if args.toys:
            from larchain.core.cluster import dask_client

            tracks = args.toy_tracks
            ccfg = {**ccfg, "coverage": {**ccfg["coverage"], "events": {
                "crossing_muons": tracks // 2, "stopping_muons": tracks // 4,
                "stopping_protons": tracks - tracks // 2 - tracks // 4}}}
            t0 = time.perf_counter()
            with dask_client(None, args.workers) as client:
                futures = client.map(_toy, range(args.first_toy, args.first_toy + args.toys),
                                     control=str(control), cfg=ccfg, pure=False)
                toys = client.gather(futures)
            if args.json:
                Path(args.json).write_text(json.dumps({"toy_tracks": tracks, "toys": toys}))
            print_coverage(stage.pull_summary(toys), args.toys,
                           f"{tracks} tracks in {time.perf_counter() - t0:.0f} s "
                           f"({args.workers} workers)")


def print_coverage(summary: dict, n_toys: int, how: str) -> None:
    print(f"\n== coverage: {n_toys} toys, {how}; failed fits: {summary['failed']['n']}")
    effs = [k for k in summary if k.startswith("pd_efficiency[")]
    for name, s in summary.items():
        if name in effs or name in ("lifetime_resolution", "failed"):
            continue
        print(f"  {name:18s} pull mean {s['mean']:+.3f} +- {s['mean_error']:.3f}"
              f"  width {s['width']:.3f} +- {s['width_error']:.3f}")
    if effs:
        w = np.array([summary[k]["width"] for k in effs])
        m = np.array([summary[k]["mean"] for k in effs])
        print(f"  pd_efficiency x{len(effs)}: pull widths {w.min():.3f}..{w.max():.3f}"
              f" (mean {w.mean():.3f}), means {m.min():+.3f}..{m.max():+.3f}")
    res = summary.get("lifetime_resolution")
    if res:
        print(f"  lifetime spread over toys: differentiable {res['fit_spread']:.1f} us,"
              f" classic {res['classic_spread']:.1f} us: ratio {res['ratio']:.3f}; "
              f"means {res['fit_mean']:.0f} vs {res['classic_mean']:.0f} us")


if __name__ == "__main__":
    main()
