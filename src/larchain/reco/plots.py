"""Reconstruction figures: confusion matrices, prediction vs truth display, point residuals."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from larchain.sim.truth import SEMANTIC_CLASSES  # noqa: E402

_COLOURS = np.array(["tab:orange", "tab:blue", "tab:green", "tab:purple", "tab:gray"])


def confusion_figure(conf: np.ndarray, conf_base: np.ndarray, path: str | Path) -> Path:
    """Row-normalised confusion (recall on the diagonal) for the network and the baseline."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8))
    panels = ((axes[0], conf, "UResNet"), (axes[1], conf_base, "PCA-linearity baseline"))
    for ax, c, title in panels:
        confusion_panel(ax, c, SEMANTIC_CLASSES, SEMANTIC_CLASSES, title, digits=1)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def confusion_panel(ax: Any, c: np.ndarray, predicted: Sequence[str], true: Sequence[str],
                    title: str, digits: int = 1, ylabel: str = "true") -> None:
    """Row-normalised confusion matrix (percent in each cell) with its overall accuracy."""
    c = np.asarray(c)
    with np.errstate(invalid="ignore"):
        norm = np.nan_to_num(c / c.sum(1, keepdims=True))
    ax.imshow(norm, vmin=0, vmax=1, cmap="Blues")
    for i in range(len(c)):
        for j in range(len(c)):
            if c[i].sum():
                ax.text(j, i, f"{100 * norm[i, j]:.{digits}f}", ha="center", va="center",
                        fontsize=8, color="w" if norm[i, j] > 0.5 else "k")
    ax.set_xticks(range(len(c)), predicted, rotation=30)
    ax.set_yticks(range(len(c)), true)
    ax.set_xlabel("predicted")
    ax.set_ylabel(ylabel)
    ax.set_title(f"{title}: accuracy {np.trace(c) / max(c.sum(), 1):.3f}")


def prediction_display(coords: np.ndarray, truth: np.ndarray, pred: np.ndarray,
                       true_points: np.ndarray, pred_points: np.ndarray, path: str | Path,
                       title: str) -> Path:
    """One event: voxels coloured by true and by predicted class; true points (x) and
    proposals (o)."""
    fig = plt.figure(figsize=(12, 5.5))
    for k, (lab, name) in enumerate(((truth, "truth"), (pred, "prediction"))):
        ax = fig.add_subplot(1, 2, k + 1, projection="3d")
        ax.scatter(coords[:, 2], coords[:, 0], coords[:, 1], s=0.5, c=_COLOURS[lab])
        pts = true_points if k == 0 else pred_points
        if len(pts):
            ax.scatter(pts[:, 2], pts[:, 0], pts[:, 1], s=30, marker="x" if k == 0 else "o",
                       facecolors="none" if k else None, edgecolors="r" if k else None,
                       c=None if k else "r")
        ax.set_xlabel("z [voxel]")
        ax.set_ylabel("x [voxel]")
        ax.set_zlabel("y [voxel]")
        ax.set_title(f"{title}: {name}", fontsize=9)
    handles = [plt.Line2D([], [], ls="", marker="o", color=c, label=n)
               for c, n in zip(_COLOURS, SEMANTIC_CLASSES, strict=True)]
    fig.legend(handles=handles, loc="lower center", ncol=5)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def point_residuals(distances: np.ndarray, within: float, path: str | Path) -> Path:
    """Distance from each true point to the nearest proposal of its type."""
    fig, ax = plt.subplots(figsize=(6, 4))
    d = distances[np.isfinite(distances)]
    missed = int((~np.isfinite(distances)).sum())
    ax.hist(np.clip(d, 0, 20), bins=40, range=(0, 20), color="tab:blue")
    ax.axvline(within, color="r", ls="--", label=f"{within:g} voxels")
    eff = float((distances <= within).mean()) if len(distances) else float("nan")
    ax.set_title(f"{len(distances)} true points: {100 * eff:.1f}% within {within:g} voxels, "
                 f"{missed} without a proposal", fontsize=9)
    ax.set_xlabel("distance to nearest proposal [voxels] (clipped at 20)")
    ax.set_ylabel("true points")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
