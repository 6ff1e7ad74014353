"""SIREN figures: LUT vs SIREN slice with the bias map, bias distributions, training curves."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402


def _save(fig: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_comparison(
    lut: xr.Dataset,
    evald: xr.Dataset,
    path: str | Path,
    *,
    detector: int = 0,
    axis: str = "z",
    position: float | None = None,
) -> Path:
    """LUT slice, the same SIREN slice (shared log colour scale) and the bias map."""
    n_det = lut.sizes["detector"]
    if detector >= n_det:
        raise ValueError(f"siren_eval.figure.detector = {detector}, but there are {n_det}")
    coord = lut[axis].values
    centre = lut["detector_center"].values[detector]["xyz".index(axis)]
    pos = float(np.clip(centre, coord.min(), coord.max())) if position is None else position
    dims = [d for d in ("x", "y", "z") if d != axis]
    table = lut["visibility"].sel({axis: pos}, method="nearest").isel(detector=detector)
    pred = evald["prediction"].sel({axis: pos}, method="nearest").isel(detector=detector)
    bias = evald["relative_bias"].sel({axis: pos}, method="nearest").isel(detector=detector)
    above = evald["above_threshold"].sel({axis: pos}, method="nearest").isel(detector=detector)
    t = table.transpose(dims[1], dims[0]).values
    p = pred.transpose(dims[1], dims[0]).values
    b = np.where(
        above.transpose(dims[1], dims[0]).values, bias.transpose(dims[1], dims[0]).values, np.nan
    )
    positive = np.concatenate([t[t > 0], p[p > 0]])
    vmax = float(positive.max()) if positive.size else 1.0
    vmin = max(float(positive.min()) if positive.size else 1e-9, vmax * 1e-5)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6), constrained_layout=True)
    xs, ys = lut[dims[0]].values, lut[dims[1]].values
    for ax, arr, title in ((axes[0], t, "LUT (Monte Carlo)"), (axes[1], p, "SIREN")):
        m = ax.pcolormesh(
            xs,
            ys,
            np.where(arr > 0, arr, np.nan),
            shading="nearest",
            norm=LogNorm(vmin=vmin, vmax=vmax),
        )
        fig.colorbar(m, ax=ax, label="visibility")
        ax.set_title(title)
    m = axes[2].pcolormesh(
        xs,
        ys,
        b,
        shading="nearest",
        cmap="magma",
        vmin=0,
        vmax=max(0.05, float(np.nanpercentile(b, 99)) if np.isfinite(b).any() else 0.05),
    )
    fig.colorbar(m, ax=axes[2], label="2|p - t| / (p + t)")
    axes[2].set_title(f"relative bias (entries above {evald.attrs.get('threshold', '')})")
    c = lut["detector_center"].values[detector]
    for ax in axes:
        ax.set_xlabel(f"{dims[0]} [cm]")
        ax.set_ylabel(f"{dims[1]} [cm]")
        ax.set_aspect("equal")
        ax.plot(c["xyz".index(dims[0])], c["xyz".index(dims[1])], "o", mfc="none", mec="red")
    name = str(lut["detector_name"].values[detector])
    fig.suptitle(f"photodetector {detector} ({name}), {axis} = {float(table[axis]):.1f} cm")
    return _save(fig, path)


def plot_bias(evald: xr.Dataset, summary: Mapping[str, Any], path: str | Path) -> Path:
    """Histogram of the bias over entries above threshold, and bias versus distance."""
    b = evald["relative_bias"].values[evald["above_threshold"].values]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4), constrained_layout=True)
    axes[0].hist(
        b,
        bins=np.linspace(0, max(0.2, float(np.percentile(b, 99.5))), 80),
        histtype="stepfilled",
        alpha=0.7,
    )
    for key, style in (("bias_mean", "-"), ("bias_median", "--"), ("bias_p90", ":")):
        axes[0].axvline(
            summary[key], color="k", ls=style, label=f"{key.split('_')[1]} {summary[key]:.3f}"
        )
    axes[0].axvline(
        summary["table_noise_floor_mean"],
        color="tab:red",
        ls="-.",
        label=f"table noise floor {summary['table_noise_floor_mean']:.3f}",
    )
    axes[0].set_yscale("log")
    axes[0].set_xlabel("2|p - t| / (p + t)")
    axes[0].set_ylabel("entries")
    axes[0].set_title(
        f"{summary['entries_above_threshold']} entries with t > {summary['threshold']:g}"
    )
    axes[0].legend()
    rows = [r for r in summary["bias_by_distance"] if r["entries"]]
    mid = [(r["distance_lo_cm"] + r["distance_hi_cm"]) / 2 for r in rows]
    axes[1].plot(mid, [r["mean"] for r in rows], "o-", label="mean")
    axes[1].plot(mid, [r["median"] for r in rows], "s--", label="median")
    axes[1].plot(mid, [r["p90"] for r in rows], "^:", label="90th percentile")
    axes[1].set_xlabel("distance from voxel to photodetector [cm]")
    axes[1].set_ylabel("relative bias")
    axes[1].set_title("bias versus distance")
    axes[1].legend()
    return _save(fig, path)


def plot_training(metrics: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Training and held-out loss per epoch, with the learning rate."""
    ep = [m["epoch"] for m in metrics]
    fig, ax = plt.subplots(figsize=(7, 4.2), constrained_layout=True)
    ax.plot(ep, [m["train_loss"] for m in metrics], label="training")
    ax.plot(ep, [m["holdout_loss"] for m in metrics], label="held-out voxels")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("weighted MSE (log-visibility scale)")
    ax2 = ax.twinx()
    ax2.plot(ep, [m["lr"] for m in metrics], color="grey", lw=0.8, label="learning rate")
    ax2.set_ylabel("learning rate")
    ax.legend(loc="upper right")
    return _save(fig, path)
