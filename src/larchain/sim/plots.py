"""Simulation figures: event displays, dE/dx versus residual range, recombination, classes."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from larchain.core import constants as C  # noqa: E402
from larchain.sim import truth as T  # noqa: E402
from larchain.sim.recombination import recombination  # noqa: E402
from larchain.sim.stopping import RangeTable  # noqa: E402

#: PILArNet voxel fractions per class (BACKGROUND.md), for comparison.
PILARNET_FRACTIONS = (0.368, 0.389, 0.0065, 0.0176, 0.219)
_CLASS_COLOURS = ("tab:orange", "tab:blue", "tab:green", "tab:purple", "tab:gray")


def event_display(events: list[Mapping[str, Any]], path: str | Path, voxel_size: float) -> Path:
    """3D voxels of each event coloured by semantic class (top) and by particle (bottom)."""
    n = len(events)
    fig = plt.figure(figsize=(5.5 * n, 10))
    for i, ev in enumerate(events):
        vox = ev["voxels"]
        xyz = (vox["coords"] + 0.5) * voxel_size
        for row, (label, colours) in enumerate((("semantic", None), ("particle", "tab20"))):
            ax = fig.add_subplot(2, n, row * n + i + 1, projection="3d")
            if label == "semantic":
                for c, name in enumerate(T.SEMANTIC_CLASSES):
                    m = vox["semantic"] == c
                    if m.any():
                        ax.scatter(xyz[m, 2], xyz[m, 0], xyz[m, 1], s=0.5, c=_CLASS_COLOURS[c],
                                   label=f"{name} ({m.sum()})")
                ax.legend(loc="upper left", fontsize=7, markerscale=8)
            else:
                ax.scatter(xyz[:, 2], xyz[:, 0], xyz[:, 1], s=0.5, c=vox["particle"] % 20,
                           cmap=colours, vmin=0, vmax=19)
            ax.set_xlabel("z [cm]")
            ax.set_ylabel("x (drift) [cm]")
            ax.set_zlabel("y [cm]")
            ax.set_title(f"event {ev['index']}: by {label}"
                         + (f" ({vox['particle'].max() + 1} particles)" if row else ""),
                         fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def residual_range_points(deposits: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(residual range, dE/dx) of the primary track's steps in one stopping-track event: the
    residual range of a step is the path length still ahead of its midpoint."""
    primary = deposits["particle"] == 0
    dx = deposits["dx"][primary].astype(np.float64)
    de = deposits["de"][primary].astype(np.float64)
    ahead = np.cumsum(dx[::-1])[::-1] - 0.5 * dx
    ok = dx > 0.05
    return ahead[ok], de[ok] / dx[ok]


def dedx_residual_range(samples: Mapping[str, list[Mapping[str, np.ndarray]]],
                        path: str | Path) -> Path:
    """dE/dx versus residual range of stopping muons and protons against the table curves."""
    fig, axes = plt.subplots(1, len(samples), figsize=(6 * len(samples), 4.5), squeeze=False)
    for ax, (name, events) in zip(axes[0], samples.items(), strict=True):
        particle = "muon" if "muon" in name else "proton"
        rr, dedx = (np.concatenate(v) if v else np.zeros(0) for v in zip(
            *[residual_range_points(d) for d in events], strict=True)) if events else ([], [])
        ax.hist2d(rr, dedx, bins=(60, 60), range=((0, 60), (0, 20 if particle == "proton"
                                                               else 10)), cmin=1, cmap="viridis")
        r = np.linspace(0.05, 60, 400)
        ax.plot(r, RangeTable.for_particle(particle).dedx_at_residual_range(r), "r-", lw=1.5,
                label=f"CSDA table ({particle})")
        ax.set_xlabel("residual range [cm]")
        ax.set_ylabel("dE/dx [MeV/cm] (true steps)")
        ax.set_title(f"{name.replace('_', ' ')}: {len(events)} tracks")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def recombination_curve(tpc: Mapping[str, Any], path: str | Path,
                        deposits: Mapping[str, np.ndarray] | None = None) -> Path:
    """Recombination factor versus dE/dx for both models at the configured field, with the
    factor of the simulated steps."""
    dedx = torch.logspace(np.log10(1.0), np.log10(50.0), 300, dtype=torch.float64)
    field = torch.tensor(float(tpc["field"]), dtype=torch.float64)
    params = {k: torch.tensor(float(tpc[k]), dtype=torch.float64)
              for k in ("box_alpha", "box_beta", "birks_ab", "birks_kb")}
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for model, style in (("box", "-"), ("birks", "--")):
        ax.plot(dedx, recombination(dedx, field, params, model), style,
                label=f"{'modified box' if model == 'box' else 'Birks'}"
                + (" (simulated)" if model == tpc["recombination"] else ""))
    if deposits is not None and len(deposits["de"]):
        ok = deposits["dx"] > 0.05
        d = torch.as_tensor(deposits["de"][ok] / deposits["dx"][ok], dtype=torch.float64)
        r = recombination(d, field, params, tpc["recombination"])
        ax.scatter(d, r, s=3, c="k", alpha=0.15, label="stopping-track steps (control)")
    ax.axvline(C.MIP_DEDX_MEV_CM, color="0.6", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("dE/dx [MeV/cm]")
    ax.set_ylabel("recombination survival R")
    ax.set_title(f"field {tpc['field']} kV/cm")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def class_fractions(counts: np.ndarray, path: str | Path, n_events: int) -> Path:
    """Voxel fraction per semantic class, next to PILArNet's."""
    frac = counts / max(1, counts.sum())
    x = np.arange(len(T.SEMANTIC_CLASSES))
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.bar(x - 0.2, frac * 100, 0.4, color=_CLASS_COLOURS, label="larchain")
    ax.bar(x + 0.2, np.array(PILARNET_FRACTIONS) * 100, 0.4, color="none", edgecolor="k",
           label="PILArNet")
    for xi, f in zip(x, frac, strict=True):
        ax.text(xi - 0.2, f * 100 + 0.5, f"{100 * f:.1f}", ha="center", fontsize=8)
    ax.set_xticks(x, T.SEMANTIC_CLASSES)
    ax.set_ylabel("voxels [%]")
    ax.set_title(f"{n_events} events, {counts.sum() / max(1, n_events):.0f} voxels/event")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
