"""LUT optical Monte Carlo speed: photons/s per core (or per GPU), analog and next-event
estimation, against real Geant4 tracking the same box measured in the same run.

Figures printed:

* raw photons/s of each estimator;
* NEE "photon-equivalents"/s: NEE photons/s times the per-photon variance ratio
  var(analog) / var(NEE), median over (voxel, photodetector) entries with visibility above
  a threshold. An analog run needs that many more photons to reach the same per-voxel
  precision, so this is the rate that compares with Geant4 (which is analog);
* Geant4 11 photons/s on one thread for the same box and optics, with no scoring at all
  (an upper bound on Geant4's speed), from benchmarks/geant4_baseline.py;
* optionally (--geometry icarus) the projected cost of an ICARUS-scale table at
  1e6 photon-equivalents per voxel.

Usage:
    python benchmarks/lut_photon_rate.py                       # CPU, 1 thread, with Geant4
    python benchmarks/lut_photon_rate.py --device cuda --geometry icarus --no-geant4
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from larchain.core.geometry import Detector, VoxelGrid
from larchain.lut.build import batch_photons
from larchain.lut.transport import Optics, PhotodetectorSet, simulate, voxel_emission_probability

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

#: The benchmark box: the Geant4 baseline's defaults (100 cm LAr cube, absorbing walls,
#: Rayleigh 99.9 cm, absorption 20 m) with four 8-inch PMTs on two opposite walls.
BOX = {
    "size": [100.0, 100.0, 100.0],
    "photodetector_arrays": [
        {"wall": "x-", "counts": [2, 2], "shape": "disk", "radius": 10.16, "efficiency": 0.121},
        {"wall": "x+", "counts": [2, 2], "shape": "disk", "radius": 10.16, "efficiency": 0.121},
    ],
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed_simulate(origins, vsize, n, pdset, optics, method, seed, batch, emission_nodes):
    sync(origins.device)
    t0 = time.perf_counter()
    t = simulate(
        origins,
        vsize,
        n,
        pdset,
        optics,
        method=method,
        seed=seed,
        batch_photons=batch,
        emission_nodes=emission_nodes,
    )
    sync(origins.device)
    return t, time.perf_counter() - t0


def per_photon_variance(t, n):
    mean = t.score / n
    return mean, np.clip(t.score_sq / n - mean**2, 0, None)


def geant4_rate(photons: int) -> dict | None:
    script = HERE / "geant4_baseline.py"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "g4.json"
        proc = subprocess.run(
            [sys.executable, str(script), "--photons", str(photons), "--json", str(out)],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            print(
                f"Geant4 baseline unavailable (exit {proc.returncode}): "
                f"{proc.stderr.strip()[-300:]}"
            )
            return None
        return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (per-core rate: 1)")
    p.add_argument("--geometry", choices=["box", "icarus"], default="box")
    p.add_argument("--voxels", type=int, default=None, help="voxels sampled from the grid")
    p.add_argument("--analog-photons", type=int, default=None, help="per voxel")
    p.add_argument("--nee-photons", type=int, default=None, help="per voxel")
    p.add_argument("--batch", type=int, default=None, help="photons tracked at once")
    p.add_argument(
        "--emission-nodes", type=int, default=4, help="lut.nee_emission_nodes (0: sampled)"
    )
    p.add_argument("--threshold", type=float, default=1e-4, help="visibility threshold")
    p.add_argument("--no-geant4", action="store_true")
    p.add_argument("--geant4-photons", type=int, default=200_000)
    p.add_argument("--pairs", type=int, default=5, help="NEE / Geant4 timings back to back")
    p.add_argument("--compile", action="store_true", help="torch.compile the NEE kernels")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)

    device = torch.device(args.device)
    gpu = device.type == "cuda"
    torch.set_num_threads(args.threads)
    if args.geometry == "box":
        det = Detector.from_config(BOX)
        voxel = 5.0
        optics = Optics(99.9, 2000.0)
    else:
        # plain YAML (the preset is complete): no schema validation needed here, so the
        # benchmark also runs where jsonschema is not installed (GPU machines)
        cfg = yaml.safe_load((REPO / "config" / "icarus.yaml").read_text())
        det = Detector.from_config(cfg["detector"])
        voxel = cfg["lut"]["voxel_size"]
        optics = Optics(cfg["optics"]["rayleigh_length"], cfg["optics"]["absorption_length"])
    grid = VoxelGrid.from_config(det.size, voxel, "voxel_size")
    n_vox = args.voxels or (2048 if gpu else 16)
    n_a = args.analog_photons or (20_000 if gpu else 20_000)
    # enough photons per voxel that the per-photon variance (heavy-tailed: scattering
    # vertices next to a detector) is measured, and that the pool runs in steady state
    n_n = args.nee_photons or 20_000
    # photons at once: as the LUT stage sizes its pool (lut.batch_photons: null)
    batch = args.batch or batch_photons({}, det.n_photodetectors, device)
    rng = np.random.default_rng(0)
    idx = np.stack([rng.integers(0, s, n_vox) for s in grid.shape], 1)
    dtype = torch.float32
    vsize = torch.tensor(grid.voxel_size, dtype=dtype, device=device)
    origins = torch.tensor(idx, dtype=dtype, device=device) * vsize
    pdset = PhotodetectorSet(det, device, dtype, quadrature=4, compile=args.compile)

    # warm-up (allocator, kernels), then timed runs
    nodes = args.emission_nodes
    timed_simulate(origins[:4], vsize, 500, pdset, optics, "analog", 0, batch, nodes)
    timed_simulate(origins[:4], vsize, 200, pdset, optics, "nee", 0, batch, nodes)
    if args.compile:  # compile for the shapes of the timed run too (dynamic, once)
        timed_simulate(origins[:64], vsize, 200, pdset, optics, "nee", 0, batch, nodes)
    ta, sa = timed_simulate(origins, vsize, n_a, pdset, optics, "analog", 1, batch, nodes)
    tn, sn = timed_simulate(origins, vsize, n_n, pdset, optics, "nee", 2, batch, nodes)
    # the per-voxel part of NEE (the emission vertex's voxel average), timed on its own: a
    # fixed cost per voxel, so projections to 1e6 photons per voxel must not scale it
    t_voxel = 0.0
    if nodes > 0:
        inv_t = sum(optics.inverse_lengths)
        sync(device)
        t0 = time.perf_counter()
        voxel_emission_probability(origins, vsize, pdset, inv_t, nodes, chunk_points=batch)
        sync(device)
        t_voxel = (time.perf_counter() - t0) / n_vox
    rate_a = n_vox * n_a / sa
    rate_n = n_vox * n_n / sn  # everything included: what the Geant4 comparison uses
    rate_walk = n_vox * n_n / max(sn - n_vox * t_voxel, 1e-9)
    mean_a, var_a_measured = per_photon_variance(ta, n_a)
    mean_n, var_n = per_photon_variance(tn, n_n)
    # The analog score of a photon is the efficiency eps of the photodetector it lands on,
    # or 0: a scaled Bernoulli, so its variance is exactly p eps - p^2. Using p from the
    # (more precise) NEE run covers dim entries that the analog run barely hits.
    eff = np.array([pd.efficiency for pd in det.photodetectors])
    var_a = np.clip(mean_n * eff - mean_n**2, 0, None)
    ok = (mean_n > args.threshold) & (var_n > 0)
    ratio = var_a[ok] / var_n[ok]
    med = float(np.median(ratio))
    p10 = float(np.percentile(ratio, 10))
    bright = (mean_a * n_a >= 100) & ok
    # cross-check of the formula on bright entries, where the analog variance is measured
    formula_check = (
        float(np.median(var_a_measured[bright] / var_a[bright])) if bright.any() else math.nan
    )
    rel_a = np.sqrt(var_a[ok] / n_a) / mean_n[ok]
    eff_rate = rate_n * med
    res = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": platform.node(),
        "cpu": platform.processor() or platform.machine(),
        "device": str(device) + (f" ({torch.cuda.get_device_name()})" if gpu else ""),
        "torch": torch.__version__,
        "threads": args.threads,
        "compile": args.compile,
        "mean_scatterings_per_photon": float(ta.scatters.sum() / (n_vox * n_a)),
        "geometry": args.geometry,
        "photodetectors": det.n_photodetectors,
        "voxels_sampled": n_vox,
        "analog_photons_per_s": rate_a,
        "nee_photons_per_voxel": n_n,
        "batch_photons": batch,
        "emission_nodes": nodes,
        "nee_photons_per_s": rate_n,
        "nee_photons_per_s_excluding_voxel_average": rate_walk,
        "voxel_average_seconds_per_voxel": t_voxel,
        "variance_ratio_median": med,
        "variance_ratio_p10": p10,
        "entries_compared": int(ok.sum()),
        "analog_variance_measured_over_formula": formula_check,
        "analog_median_rel_error": float(np.median(rel_a)) if ok.any() else math.nan,
        "nee_photon_equivalents_per_s": eff_rate,
    }
    print(
        f"device {res['device']}, {args.threads} thread(s), geometry {args.geometry} "
        f"({det.n_photodetectors} photodetectors), {n_vox} voxels"
    )
    print(
        f"  analog : {rate_a:12.4g} photons/s; "
        f"{res['mean_scatterings_per_photon']:.2f} scatterings per photon"
    )
    print(
        f"  NEE    : {rate_n:12.4g} photons/s; per-photon variance ratio analog/NEE: "
        f"median {med:.1f}, 10th percentile {p10:.1f} over {int(ok.sum())} entries "
        f"(analog variance measured/formula on bright entries: {formula_check:.3f})"
    )
    print(
        f"  NEE    : {eff_rate:12.4g} photon-equivalents/s (emission voxel average "
        f"{t_voxel * 1e6:.1f} us/voxel, included; walk alone {rate_walk:.4g} photons/s)"
    )
    if args.geometry == "icarus":
        n_total = 74 * 77 * 394
        # per voxel: the fixed voxel average + the NEE photons worth 1e6 analog photons
        gpu_hours = n_total * (t_voxel + 1e6 / med / rate_walk) / 3600
        res["icarus_hours_at_1e6_equivalents_per_voxel"] = gpu_hours
        print(
            f"  ICARUS table ({n_total} voxels x 180 PMTs) at 1e6 photon-equivalents per "
            f"voxel: {gpu_hours:.3g} {'GPU' if gpu else 'core'}-hours (projected)"
        )
    if not args.no_geant4:
        # the VM's speed drifts by tens of percent over a minute, so NEE and Geant4 are timed
        # back to back in pairs, and the median of the pairs' ratios is the figure
        pairs = []
        for r in range(args.pairs):
            if r == 0:
                sn_r = sn
            else:
                sn_r = timed_simulate(origins, vsize, n_n, pdset, optics, "nee", 2, batch, nodes)[1]
            g4 = geant4_rate(args.geant4_photons)
            if not g4:
                break
            g4_rate = g4["photons_per_second_excl_generator"]
            pairs.append((n_vox * n_n / sn_r * med, g4_rate))
        if pairs:
            ratios = [e / g for e, g in pairs]
            g4_med = float(np.median([g for _, g in pairs]))
            res["geant4"] = {k: g4[k] for k in ("geant4_version", "photons_per_second") if k in g4}
            res["geant4"]["photons_per_second_excl_generator_pairs"] = [g for _, g in pairs]
            res["nee_photon_equivalents_per_s_pairs"] = [e for e, _ in pairs]
            res["ratio_analog_vs_geant4"] = rate_a / g4_med
            res["ratio_nee_equivalents_vs_geant4_pairs"] = ratios
            res["ratio_nee_equivalents_vs_geant4"] = float(np.median(ratios))
            print(
                f"  Geant4 : {g4_med:12.4g} photons/s median of {len(pairs)} (tracking only, "
                f"1 thread, no scoring; {g4.get('geant4_version', '?')})"
            )
            print(f"  ratio analog / Geant4              : {rate_a / g4_med:8.2f}x")
            print(
                f"  ratio NEE equivalents / Geant4     : {np.median(ratios):8.2f}x median of "
                f"pairs timed back to back ({', '.join(f'{x:.1f}' for x in ratios)})"
            )
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
