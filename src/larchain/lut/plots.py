"""LUT figures: a slice of the visibility map for one photodetector and for the sum."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402


def plot_slice(
    ds: xr.Dataset,
    path: str | Path,
    *,
    detector: int = 0,
    axis: str = "z",
    position: float | None = None,
) -> Path:
    """Save a two-panel PNG: visibility of ``detector`` and summed visibility on the slice
    perpendicular to ``axis`` nearest ``position`` (cm; default: through the detector)."""
    if detector >= ds.sizes["detector"]:
        raise ValueError(
            f"lut.figure.detector = {detector}, but the LUT has {ds.sizes['detector']} "
            "photodetectors (indices start at 0)"
        )
    coord = ds[axis].values
    centre = ds["detector_center"].values[detector]["xyz".index(axis)]
    pos = float(np.clip(centre, coord.min(), coord.max())) if position is None else position
    sl = ds.sel({axis: pos}, method="nearest")
    one = sl["visibility"].isel(detector=detector)
    total = sl["visibility"].sum("detector")
    dims = [d for d in ("x", "y", "z") if d != axis]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6), constrained_layout=True)
    name = str(ds["detector_name"].values[detector])
    for ax, data, title in (
        (axes[0], one, f"photodetector {detector} ({name})"),
        (axes[1], total, "sum over photodetectors"),
    ):
        arr = data.transpose(dims[1], dims[0]).values
        positive = arr[arr > 0]
        vmin = float(positive.min()) if positive.size else 1e-9
        vmax = float(arr.max()) if arr.max() > 0 else 1.0
        mesh = ax.pcolormesh(
            ds[dims[0]].values,
            ds[dims[1]].values,
            np.where(arr > 0, arr, np.nan),
            norm=LogNorm(vmin=max(vmin, vmax * 1e-6), vmax=vmax),
            shading="nearest",
        )
        ax.set_xlabel(f"{dims[0]} [cm]")
        ax.set_ylabel(f"{dims[1]} [cm]")
        ax.set_aspect("equal")
        ax.set_title(f"{title}, {axis} = {float(sl[axis]):.1f} cm")
        fig.colorbar(mesh, ax=ax, label="visibility")
    centers = ds["detector_center"].values
    for i, c in enumerate(centers):
        style = dict(marker="o", ms=7, mfc="none", mec="red" if i == detector else "white")
        axes[1].plot(c["xyz".index(dims[0])], c["xyz".index(dims[1])], **style)
        if i == detector:
            axes[0].plot(c["xyz".index(dims[0])], c["xyz".index(dims[1])], **style)
    fig.suptitle(
        f"LUT: {ds.attrs.get('method', '?')}, {ds.attrs.get('photons_per_voxel', '?')} "
        f"photons/voxel, Rayleigh {ds.attrs.get('rayleigh_length_cm')} cm, "
        f"absorption {ds.attrs.get('absorption_length_cm')} cm"
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
