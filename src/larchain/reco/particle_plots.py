"""Particle-level figures: event displays by particle and interaction, PID confusion, score
distributions of the learned chain next to the classical baseline."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from larchain.reco.plots import confusion_panel  # noqa: E402
from larchain.sim.truth import PARTICLE_TYPES  # noqa: E402


def _palette(labels: np.ndarray) -> np.ndarray:
    """A distinct colour per label (tab20, cycled), stable for a given labelling."""
    _, inv = np.unique(labels, return_inverse=True)
    return plt.get_cmap("tab20")(inv % 20)


def event_display(shown: Mapping[str, Any], path: str | Path) -> Path:
    """One held-out event, z (beam) horizontally and x (drift) vertically: voxels coloured by
    true particle / predicted particle / baseline particle (top) and by true / predicted /
    baseline interaction (bottom); predicted vertices as black stars."""
    c = np.asarray(shown["coords"], np.float64)
    truth, rec, base = shown["truth"], shown["learned"], shown["baseline"]
    cols = (("truth", truth), ("learned chain", rec["voxels"]), ("DBSCAN baseline", base))
    fig, axes = plt.subplots(2, 3, figsize=(15, 7.5), sharex=True, sharey=True)
    for j, (name, lab) in enumerate(cols):
        for i, level in enumerate(("particle", "interaction")):
            ax = axes[i, j]
            ax.scatter(c[:, 2], c[:, 0], s=1.0, c=_palette(np.asarray(lab[level])), lw=0)
            n = len(np.unique(lab[level]))
            ax.set_title(f"{name}: {n} {level}{'s' if n != 1 else ''}", fontsize=10)
            if j == 1 and level == "interaction" and len(rec["interactions"]["vertex"]):
                vs = shown.get("voxel_size", 1.0)
                v = np.asarray(rec["interactions"]["vertex"]) / vs - 0.5
                ax.scatter(v[:, 2], v[:, 0], marker="*", s=120, c="k", label="vertex")
                ax.legend(loc="upper right", fontsize=8)
            if i == 1:
                ax.set_xlabel("z [voxels]")
            if j == 0:
                ax.set_ylabel("x [voxels]")
    fig.suptitle(f"event {shown['index']}: colours are arbitrary ids within each panel")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def pid_confusion(learned: np.ndarray, baseline: np.ndarray, path: str | Path,
                  visible: tuple[np.ndarray, np.ndarray, int] | None = None) -> Path:
    """Row-normalised particle-ID confusion (true particles matched to predicted ones). With
    ``visible`` (learned and baseline confusions over particles of at least ``min_voxels``
    voxels, and ``min_voxels``) a second row of panels shows those."""
    panels = [(np.asarray(learned), np.asarray(baseline), "all particles")]
    if visible is not None:
        panels.append((np.asarray(visible[0]), np.asarray(visible[1]),
                       f">= {visible[2]} voxels"))
    fig, axes = plt.subplots(len(panels), 2, figsize=(11, 4.8 * len(panels)), squeeze=False)
    for row, (cl, cb, which) in enumerate(panels):
        for ax, c, title in ((axes[row, 0], cl, "GNN"), (axes[row, 1], cb, "heuristic baseline")):
            rows = [f"{t} ({int(c[k].sum())})" for k, t in enumerate(PARTICLE_TYPES)]
            confusion_panel(ax, c, PARTICLE_TYPES, rows, f"{title}, {which}", digits=0,
                            ylabel="true (particles)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def score_distributions(learned: Mapping[str, Sequence[float]],
                        baseline: Mapping[str, Sequence[float]], path: str | Path) -> Path:
    """Per-event adjusted Rand index, purity and efficiency for fragments, particles and
    interactions: learned chain (filled) vs baseline (outline)."""
    levels, keys = ("fragment", "particle", "interaction"), ("ari", "purity", "efficiency")
    fig, axes = plt.subplots(3, 3, figsize=(13, 9))
    bins = np.linspace(0, 1, 26)
    for i, level in enumerate(levels):
        for j, key in enumerate(keys):
            ax = axes[i, j]
            a = np.clip(np.asarray(learned[f"{level}_{key}"], float), 0, 1)
            b = np.clip(np.asarray(baseline[f"{level}_{key}"], float), 0, 1)
            ax.hist(a, bins, alpha=0.6, label=f"learned (mean {a.mean():.3f})")
            ax.hist(b, bins, histtype="step", lw=1.5, color="k",
                    label=f"baseline (mean {b.mean():.3f})")
            ax.set_title(f"{level} {key}", fontsize=10)
            ax.legend(fontsize=8, loc="upper left")
            if i == 2:
                ax.set_xlabel("score per event")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
