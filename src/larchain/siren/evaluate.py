"""How well a visibility surrogate reproduces the photon library, and how fast it is.

The bias metric is the reference code's: ``2 |p - t| / (p + t)`` per (voxel, photodetector)
entry, over entries whose table value ``t`` exceeds a threshold (4.5e-5 in the anchor code):
dimmer entries are dominated by the table's own Monte Carlo noise. Since the table is itself
noisy, the summary also gives the score a perfect surrogate would get against it (the noise
floor, from the table's statistical errors): only the excess over it is the surrogate's.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import xarray as xr

from larchain.core.visibility import VisibilityModel
from larchain.siren.train import predict_dataset, volume_size, voxel_centres


def relative_bias(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """2 |p - t| / (p + t), in [0, 2]; 0 where both are 0."""
    denom = pred + true
    return np.where(denom > 0, 2.0 * np.abs(pred - true) / np.where(denom > 0, denom, 1.0), 0.0)


def throughput(model: VisibilityModel, n_points: int, size: np.ndarray, device: str) -> float:
    """Points x detectors evaluated per second (median of 3 timed batches, after warm-up)."""
    g = torch.Generator().manual_seed(0)
    pts = (torch.rand(n_points, 3, generator=g) * torch.tensor(size, dtype=torch.float32)).to(
        device
    )
    model.evaluate(pts[:1024])
    times = []
    for _ in range(3):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        model.evaluate(pts)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return n_points * model.n_detectors / float(np.median(times))


def evaluate_surrogate(
    surrogate: VisibilityModel,
    table: VisibilityModel,
    ds: xr.Dataset,
    cfg: Mapping[str, Any],
    *,
    n_parameters: int,
    device: str = "cpu",
) -> tuple[dict[str, Any], xr.Dataset]:
    """Bias summary (overall, per photodetector, versus distance), compression, throughput
    of the surrogate and of the table's trilinear lookup; plus a Dataset with the
    surrogate's prediction and the bias per entry."""
    true = ds["visibility"].transpose("x", "y", "z", "detector").values.astype(np.float64)
    err = ds["visibility_error"].transpose("x", "y", "z", "detector").values.astype(np.float64)
    pred = predict_dataset(surrogate, ds).astype(np.float64)
    bias = relative_bias(pred, true)
    mask = true > float(cfg["threshold"])
    b = bias[mask]
    if b.size == 0:
        raise ValueError(
            f"no LUT entry above siren_eval.threshold = {cfg['threshold']}: lower the threshold"
        )
    # distance from each voxel centre to each photodetector centre
    centres = voxel_centres(ds).reshape(*true.shape[:3], 3)
    det = ds["detector_center"].values
    dist = np.linalg.norm(centres[..., None, :] - det[None, None, None, :, :], axis=-1)
    edges = np.linspace(0.0, float(dist.max()) * (1 + 1e-9), int(cfg["distance_bins"]) + 1)
    which = np.digitize(dist[mask], edges) - 1
    by_distance = []
    for i in range(len(edges) - 1):
        sel = b[which == i]
        by_distance.append(
            {
                "distance_lo_cm": float(edges[i]),
                "distance_hi_cm": float(edges[i + 1]),
                "entries": int(sel.size),
                "mean": float(sel.mean()) if sel.size else None,
                "median": float(np.median(sel)) if sel.size else None,
                "p90": float(np.percentile(sel, 90)) if sel.size else None,
            }
        )
    per_det = [
        float(bias[..., j][mask[..., j]].mean()) if mask[..., j].any() else None
        for j in range(true.shape[-1])
    ]
    size = np.array(volume_size(ds))
    n_pts = int(cfg["throughput_points"])
    rate_surrogate = throughput(surrogate, n_pts, size, device)
    rate_table = throughput(table, n_pts, size, device)
    summary = {
        "threshold": float(cfg["threshold"]),
        "entries": int(true.size),
        "entries_above_threshold": int(mask.sum()),
        "bias_mean": float(b.mean()),
        "bias_median": float(np.median(b)),
        "bias_p90": float(np.percentile(b, 90)),
        "bias_p99": float(np.percentile(b, 99)),
        # what a perfect surrogate would score against this noisy table: E|2 dt / t| for
        # Gaussian table errors is sqrt(2 / pi) x relative error
        "table_noise_floor_mean": float(np.mean(np.sqrt(2 / np.pi) * err[mask] / true[mask])),
        "table_relative_error_median": float(np.median(err[mask] / true[mask])),
        "bias_by_distance": by_distance,
        "bias_mean_per_detector": per_det,
        "table_entries": int(true.size),
        "parameters": int(n_parameters),
        "compression": float(true.size / n_parameters),
        "throughput_points_x_detectors_per_s": rate_surrogate,
        "table_trilinear_points_x_detectors_per_s": rate_table,
        "speed_ratio_surrogate_over_table": rate_surrogate / rate_table,
        "device": device,
    }
    out = xr.Dataset(
        {
            "prediction": (("x", "y", "z", "detector"), pred.astype(np.float32)),
            "relative_bias": (("x", "y", "z", "detector"), bias.astype(np.float32)),
            "above_threshold": (("x", "y", "z", "detector"), mask),
        },
        coords={k: ds[k].values for k in ("x", "y", "z", "detector")},
    )
    out["relative_bias"].attrs["long_name"] = "2 |prediction - table| / (prediction + table)"
    return summary, out
