"""ICARUS-scale SIREN surrogate on one GPU: build the photon library, fit the anchor-size
SIREN to it, and score the fit, all in one process.

Why: the anchor result (a ~1.4M-parameter SIREN reproducing the ICARUS photon library,
74 x 77 x 394 voxels x 180 PMTs, with a compression of ~287) was never reproduced by
larchain at full scale, because the workflow's LUT stage needs a Dask cluster and the
lent GPU machines have no dask/h5netcdf. This script therefore skips ``larchain.lut.build``
and ``load_config`` and drives the same building blocks directly:

1. the LUT: ``larchain.lut.transport.simulate`` (next-event estimation) over the whole
   ICARUS grid of ``config/icarus.yaml``, in chunks of voxels, with a low photon count
   (default 20 NEE photons per voxel) so that it takes seconds; the Dataset has the LUT
   stage's layout (visibility, visibility_error, coords, geometry attrs);
2. the SIREN: ``larchain.siren.train.train_siren`` with the anchor's size (512 wide,
   ``hidden_layers = 5``, i.e. 6 sine layers and a linear output: 1,407,668 parameters for
   180 PMTs, compression 404.1M / 1.41M = 287) and TF32 matmuls, for as many epochs as
   fit in ``--train-seconds`` (the time per epoch is measured first, with a short warm-up
   fit on the same data);
3. the score: ``larchain.siren.evaluate.evaluate_surrogate`` against the table's own
   trilinear interpolation (bias, noise floor, compression, throughputs).

The table is noisy at 20 photons per voxel, so the bias is compared with the table's
noise floor (also reported): the excess over it is the surrogate's.

Usage (on a GPU machine; no dask needed):
    PYTHONPATH=src python benchmarks/siren_icarus_gpu.py --device cuda --json out.json
Tiny CPU smoke test:
    PYTHONPATH=src python benchmarks/siren_icarus_gpu.py --device cpu --max-voxels-z 4 \
        --photons 2 --epochs-cap 1 --train-seconds 5 --throughput-points 4096
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import numpy as np
import torch
import xarray as xr
import yaml

from larchain.core.geometry import Detector, VoxelGrid
from larchain.lut.interp import LutVisibility
from larchain.lut.transport import Optics, PhotodetectorSet, simulate
from larchain.siren.evaluate import evaluate_surrogate, relative_bias
from larchain.siren.model import n_parameters
from larchain.siren.train import train_siren

REPO = Path(__file__).resolve().parent.parent


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def nee_setup(cfg: dict, args, device: torch.device) -> dict:
    """What every NEE simulation of this benchmark shares (the kernels compiled once)."""
    det = Detector.from_config(cfg["detector"])
    batch = min(1 << 24, (1 << 28) // max(det.n_photodetectors, 1))
    nodes = args.emission_nodes
    return {
        "det": det,
        "grid": VoxelGrid.from_config(det.size, cfg["lut"]["voxel_size"], "voxel_size"),
        "pdset": PhotodetectorSet(
            det,
            device,
            torch.float32,
            quadrature=int(cfg["lut"]["nee_quadrature"]),
            compile=bool(args.compile),
        ),
        "optics": Optics(cfg["optics"]["rayleigh_length"], cfg["optics"]["absorption_length"]),
        "batch": batch if device.type != "cpu" else min(batch, 1 << 16),
        "nodes": int(cfg["lut"].get("nee_emission_nodes", 4) if nodes is None else nodes),
    }


def run_nee(setup: dict, origins: torch.Tensor, vsize: torch.Tensor, n: int, seed: int):
    """NEE tallies of ``n`` photons per voxel at ``origins``."""
    det = setup["det"]
    return simulate(
        origins,
        vsize,
        n,
        setup["pdset"],
        setup["optics"],
        reflectivity=det.wall_reflectivity,
        reflection=det.reflection,
        method="nee",
        seed=seed,
        batch_photons=setup["batch"],
        emission_nodes=setup["nodes"],
    )


def build_library(setup: dict, args, device: torch.device) -> tuple[xr.Dataset, dict]:
    """The photon library (ICARUS) on ``device``: a LUT-stage-like Dataset."""
    det, grid = setup["det"], setup["grid"]
    nx, ny, nz = grid.shape
    if args.max_voxels_z:
        nz = min(nz, int(args.max_voxels_z))
    shape = (nx, ny, nz)
    n_det = det.n_photodetectors
    vsize = torch.tensor(grid.voxel_size, dtype=torch.float32, device=device)
    idx = [torch.arange(n, device=device, dtype=torch.float32) for n in shape]
    gx, gy, gz = torch.meshgrid(*idx, indexing="ij")  # x-major: ix slowest, iz fastest
    origins = torch.stack([gx, gy, gz], -1).reshape(-1, 3) * vsize
    n_vox = origins.shape[0]
    n = int(args.photons)
    vis = np.empty((n_vox, n_det), dtype=np.float32)
    err = np.empty((n_vox, n_det), dtype=np.float32)
    truncated = 0.0
    sim_seconds = 0.0
    seed0 = int(args.seed)
    chunk = int(args.chunk_voxels)
    t_all = time.perf_counter()
    for k, v0 in enumerate(range(0, n_vox, chunk)):
        v1 = min(v0 + chunk, n_vox)
        sync(device)
        t0 = time.perf_counter()
        t = run_nee(setup, origins[v0:v1], vsize, n, seed0 + k)
        sync(device)
        sim_seconds += time.perf_counter() - t0
        mean = t.score / n
        # as the LUT stage: unbiased per-photon variance, standard error of the mean
        var = np.clip(t.score_sq / n - mean**2, 0.0, None) * n / max(n - 1, 1)
        vis[v0:v1] = mean
        err[v0:v1] = np.sqrt(var / n)
        truncated += float(np.sum(t.truncated))
        log(f"lut chunk {k}: voxels {v0}..{v1} of {n_vox}, simulate {sim_seconds:.1f} s so far")
    total_seconds = time.perf_counter() - t_all

    centers = [np.array(grid.centers(a))[: shape[a]] for a in range(3)]
    ds = xr.Dataset(
        {
            "visibility": (("x", "y", "z", "detector"), vis.reshape(*shape, n_det)),
            "visibility_error": (("x", "y", "z", "detector"), err.reshape(*shape, n_det)),
        },
        coords={
            "x": ("x", centers[0], {"units": "cm"}),
            "y": ("y", centers[1], {"units": "cm"}),
            "z": ("z", centers[2], {"units": "cm"}),
            "detector": ("detector", np.arange(n_det)),
            "detector_name": ("detector", np.array([p.name for p in det.photodetectors])),
            "detector_center": (
                ("detector", "xyz"),
                np.array([p.center for p in det.photodetectors]),
                {"units": "cm"},
            ),
        },
        attrs={
            "geometry": json.dumps(det.to_dict(), sort_keys=True),
            "photons_per_voxel": n,
            "method": "nee",
        },
    )
    photons = n_vox * n
    info = {
        "grid_shape": list(shape),
        "full_grid_shape": list(grid.shape),
        "voxels": n_vox,
        "detectors": n_det,
        "photons_per_voxel": n,
        "emission_nodes": setup["nodes"],
        "compile": bool(args.compile),
        "photons": photons,
        "chunk_voxels": chunk,
        "batch_photons": setup["batch"],
        "simulate_seconds": sim_seconds,
        "build_seconds": total_seconds,
        "photons_per_s": photons / sim_seconds if sim_seconds > 0 else None,
        "truncated_photons": truncated,
        "visibility_sum_mean": float(vis.sum(1).mean()),
    }
    return ds, info


def reference_scores(setup: dict, args, device: torch.device, ds: xr.Dataset, model) -> dict:
    """Bias of the SIREN and of the table it was trained on against a high-statistics
    simulation of random voxels (independent seed): what the surrogate gets right about the
    true visibility, not about the table's noise."""
    grid = setup["grid"]
    shape = tuple(ds.sizes[a] for a in ("x", "y", "z"))
    rng = np.random.default_rng(int(args.seed) + 7919)
    idx = np.stack([rng.integers(0, n, args.reference_voxels) for n in shape], 1)
    vsize = torch.tensor(grid.voxel_size, dtype=torch.float32, device=device)
    origins = torch.tensor(idx, dtype=torch.float32, device=device) * vsize
    n = int(args.reference_photons)
    sync(device)
    t0 = time.perf_counter()
    t = run_nee(setup, origins, vsize, n, int(args.seed) + 104729)
    sync(device)
    seconds = time.perf_counter() - t0
    ref = t.score / n
    ref_err = np.sqrt(np.clip(t.score_sq / n - ref**2, 0, None) / n)
    centres = origins + 0.5 * vsize
    siren = model.evaluate(centres).float().cpu().numpy()
    table = ds["visibility"].values[idx[:, 0], idx[:, 1], idx[:, 2]]
    ok = ref > args.threshold
    log(f"reference: {len(idx)} voxels x {n} photons in {seconds:.1f} s")

    def stats(pred: np.ndarray) -> dict:
        b = relative_bias(pred[ok], ref[ok])
        return {
            "mean": float(b.mean()),
            "median": float(np.median(b)),
            "p90": float(np.percentile(b, 90)),
            "p99": float(np.percentile(b, 99)),
        }

    return {
        "voxels": len(idx),
        "photons_per_voxel": n,
        "simulate_seconds": seconds,
        "entries": int(ok.sum()),
        "reference_relative_error_median": float(np.median(ref_err[ok] / ref[ok])),
        "siren": stats(siren),
        "table": stats(table),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=str(REPO / "config" / "icarus.yaml"))
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--photons", type=int, default=20, help="NEE photons per voxel")
    ap.add_argument("--seed", type=int, default=20261122)
    ap.add_argument("--compile", action="store_true", help="torch.compile the NEE kernels")
    ap.add_argument(
        "--emission-nodes", type=int, default=None, help="default: the config's lut value"
    )
    ap.add_argument("--chunk-voxels", type=int, default=200_000)
    ap.add_argument(
        "--max-voxels-z", type=int, default=0, help="keep only the first N z slices (smoke tests)"
    )
    ap.add_argument("--hidden-features", type=int, default=512)
    ap.add_argument(
        "--hidden-layers",
        type=int,
        default=5,
        help="hidden-to-hidden sine layers (+1 input layer); 5 gives the anchor's 1.41M "
        "parameters with 180 outputs (compression 287)",
    )
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--lr-min", type=float, default=1e-6)
    ap.add_argument("--batch-voxels", type=int, default=131072)
    ap.add_argument("--patience", type=int, default=50)
    ap.add_argument("--train-seconds", type=float, default=300.0, help="training time budget")
    ap.add_argument("--warmup-epochs", type=int, default=2, help="epochs of the timing fit")
    ap.add_argument("--epochs-cap", type=int, default=100_000, help="upper bound on epochs")
    ap.add_argument("--throughput-points", type=int, default=1 << 20)
    ap.add_argument("--threshold", type=float, default=4.5e-5)
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument(
        "--reference-voxels",
        type=int,
        default=0,
        help="also score SIREN and table against these many random voxels simulated anew",
    )
    ap.add_argument("--reference-photons", type=int, default=20_000, help="NEE, per voxel")
    args = ap.parse_args()

    device = torch.device(args.device)
    cfg = yaml.safe_load(Path(args.config).read_text())
    result: dict = {
        "argv": vars(args),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
    }

    def dump() -> None:
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(result, indent=2, default=float))

    log(f"device {result['device']}, torch {torch.__version__}")

    # 1. the photon library
    setup = nee_setup(cfg, args, device)
    ds, lut = build_library(setup, args, device)
    result["lut"] = lut
    dump()
    log(
        f"LUT {lut['grid_shape']} x {lut['detectors']}: {lut['photons']:.3g} photons in "
        f"{lut['simulate_seconds']:.1f} s simulate ({lut['photons_per_s']:.3g} photons/s), "
        f"{lut['build_seconds']:.1f} s with host copies"
    )

    # 2. the SIREN
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        log("TF32 enabled for matmul and cuDNN (training, evaluation and throughput)")
    scfg = dict(
        hidden_features=args.hidden_features,
        hidden_layers=args.hidden_layers,
        omega_0=30.0,
        hidden_omega_0=30.0,
        floor=1e-7,
        weight_gamma=1.0,
        lr=args.lr,
        lr_min=args.lr_min,
        epochs=max(1, args.warmup_epochs),
        batch_voxels=args.batch_voxels,
        holdout_fraction=0.05,
        patience=args.patience,
        seed=1,
    )
    sync(device)
    t0 = time.perf_counter()
    _, warm = train_siren(ds, scfg, device=str(device), progress=False)
    sync(device)
    warm_seconds = time.perf_counter() - t0
    per_epoch = min(m["seconds"] for m in warm)
    overhead = max(0.0, warm_seconds - sum(m["seconds"] for m in warm))
    epochs = max(1, min(args.epochs_cap, int((args.train_seconds - overhead) / per_epoch)))
    log(
        f"timing fit: {len(warm)} epochs in {warm_seconds:.1f} s ({per_epoch:.3f} s/epoch, "
        f"{overhead:.1f} s setup); training for {epochs} epochs"
    )
    scfg["epochs"] = epochs
    sync(device)
    t0 = time.perf_counter()
    model, metrics = train_siren(ds, scfg, device=str(device), progress=False)
    sync(device)
    train_seconds = time.perf_counter() - t0
    n_par = n_parameters(model)
    best = min(metrics, key=lambda m: m["holdout_loss"])
    result["siren"] = {
        "config": scfg,
        "tf32": device.type == "cuda",
        "parameters": n_par,
        "timing_fit_seconds": warm_seconds,
        "seconds_per_epoch_measured": per_epoch,
        "epochs_planned": epochs,
        "epochs_run": len(metrics),
        "early_stopped": len(metrics) < epochs,
        "train_seconds": train_seconds,
        "seconds_per_epoch": float(np.mean([m["seconds"] for m in metrics])),
        "best_holdout_loss": best["holdout_loss"],
        "best_epoch": best["epoch"],
        "final_train_loss": metrics[-1]["train_loss"],
        "final_holdout_loss": metrics[-1]["holdout_loss"],
        "holdout_loss_curve": [
            (m["epoch"], m["holdout_loss"])
            for m in metrics[:: max(1, len(metrics) // 50)] + [metrics[-1]]
        ],
    }
    dump()
    log(
        f"SIREN {n_par:,} parameters: {len(metrics)} epochs in {train_seconds:.1f} s, best "
        f"held-out loss {best['holdout_loss']:.4g} (epoch {best['epoch']})"
    )

    # 3. the score
    t0 = time.perf_counter()
    table = LutVisibility.from_dataset(ds, device=str(device))
    summary, _ = evaluate_surrogate(
        model,
        table,
        ds,
        {
            "threshold": args.threshold,
            "distance_bins": 12,
            "throughput_points": args.throughput_points,
        },
        n_parameters=n_par,
        device=str(device),
    )
    summary["eval_seconds"] = time.perf_counter() - t0
    result["evaluation"] = summary
    dump()

    if args.reference_voxels:
        result["reference"] = reference_scores(setup, args, device, ds, model)
        dump()

    s = summary
    print()
    print(f"device              {result['device']}   torch {torch.__version__}")
    print(
        f"LUT                 {lut['grid_shape']} x {lut['detectors']} detectors, "
        f"{lut['photons_per_voxel']} NEE photons/voxel"
    )
    print(
        f"  build             {lut['simulate_seconds']:.1f} s simulate "
        f"({lut['photons_per_s']:.3g} photons/s), {lut['build_seconds']:.1f} s total"
    )
    sr = result["siren"]
    print(
        f"SIREN               {n_par:,} parameters "
        f"({args.hidden_features} x {args.hidden_layers + 1} sine layers), TF32 {sr['tf32']}"
    )
    print(
        f"  training          {sr['epochs_run']} epochs (planned {epochs}) in "
        f"{sr['train_seconds']:.1f} s ({sr['seconds_per_epoch']:.3f} s/epoch)"
    )
    print(f"  best held-out     {sr['best_holdout_loss']:.5g} (epoch {sr['best_epoch']})")
    print(f"compression         {s['compression']:.1f} (table entries / parameters)")
    print(
        f"bias (> {s['threshold']:g}) mean {s['bias_mean']:.4f}  median {s['bias_median']:.4f}  "
        f"p90 {s['bias_p90']:.4f}  p99 {s['bias_p99']:.4f}  "
        f"({s['entries_above_threshold']:,} of {s['entries']:,} entries)"
    )
    print(
        f"table noise floor   mean {s['table_noise_floor_mean']:.4f}, relative error median "
        f"{s['table_relative_error_median']:.4f}"
    )
    print(
        f"throughput          SIREN {s['throughput_points_x_detectors_per_s']:.3g}, "
        f"trilinear LUT {s['table_trilinear_points_x_detectors_per_s']:.3g} "
        f"points x detectors/s (ratio {s['speed_ratio_surrogate_over_table']:.3g})"
    )
    print(f"evaluation          {s['eval_seconds']:.1f} s")
    if "reference" in result:
        r = result["reference"]
        print(
            f"vs a precise reference ({r['voxels']} random voxels x {r['photons_per_voxel']} NEE "
            f"photons, median relative error {r['reference_relative_error_median']:.4f}; "
            f"{r['entries']:,} entries > {args.threshold:g}):"
        )
        for who in ("siren", "table"):
            b = r[who]
            print(
                f"  {who:6s} bias mean {b['mean']:.4f}  median {b['median']:.4f}  "
                f"p90 {b['p90']:.4f}  p99 {b['p99']:.4f}"
            )
    if args.json:
        print(f"wrote {args.json}")
    return 0 if math.isfinite(sr["best_holdout_loss"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
