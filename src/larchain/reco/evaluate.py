"""Evaluation on held-out events: semantic segmentation and point proposals, next to a
classical baseline on the same events.

Baseline: local principal-component linearity. For each voxel, the covariance of its
neighbours within ``radius`` voxels; linearity = (l1 - l2) / l1 of the eigenvalues. Voxels
with linearity above ``threshold`` are called track, the others shower (it cannot name
Michel, delta or low-energy voxels, so those count as misses): what a hand-tuned
track/shower separation gives without learning.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch

from larchain.sim.truth import SEMANTIC_CLASSES, SHOWER, TRACK

N_CLASSES = len(SEMANTIC_CLASSES)


def confusion(truth: np.ndarray, pred: np.ndarray, n: int = N_CLASSES) -> np.ndarray:
    """Counts ``[true class, predicted class]``."""
    return np.bincount(truth.astype(np.int64) * n + pred.astype(np.int64),
                       minlength=n * n).reshape(n, n)


def segmentation_metrics(conf: np.ndarray) -> dict[str, Any]:
    """Per-class recall and precision, overall accuracy, from a confusion matrix."""
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.diag(conf) / conf.sum(1)
        precision = np.diag(conf) / conf.sum(0)
    return {
        "accuracy": float(np.trace(conf) / max(conf.sum(), 1)),
        "recall": {c: _num(r) for c, r in zip(SEMANTIC_CLASSES, recall, strict=True)},
        "precision": {c: _num(p) for c, p in zip(SEMANTIC_CLASSES, precision, strict=True)},
        "voxels": {c: int(v) for c, v in zip(SEMANTIC_CLASSES, conf.sum(1), strict=True)},
    }


def _num(x: float) -> float | None:
    return None if not np.isfinite(x) else float(x)


def pca_linearity(coords: np.ndarray, radius: float = 3.0) -> np.ndarray:
    """Linearity (l1 - l2) / l1 of each voxel's neighbourhood (0 for isolated voxels)."""
    c = torch.as_tensor(coords, dtype=torch.float64)
    out = torch.zeros(len(c), dtype=torch.float64)
    for start in range(0, len(c), 2048):
        q = c[start:start + 2048]
        near = (torch.cdist(q, c) <= radius).to(torch.float64)  # [q, N]
        n = near.sum(1, keepdim=True)
        mean = near @ c / n
        second = (near @ (c[:, :, None] * c[:, None, :]).reshape(-1, 9)).reshape(-1, 3, 3)
        second = second / n[:, :, None]
        cov = second - mean[:, :, None] * mean[:, None, :]
        ev = torch.linalg.eigvalsh(cov)  # ascending
        l1, l2 = ev[:, 2], ev[:, 1]
        out[start:start + 2048] = torch.where(l1 > 1e-9, (l1 - l2) / l1.clamp_min(1e-9), 0.0)
    return out.numpy()


def baseline_prediction(coords: np.ndarray, radius: float, threshold: float) -> np.ndarray:
    lin = pca_linearity(coords, radius)
    return np.where(lin > threshold, TRACK, SHOWER).astype(np.int8)


def point_metrics(true_points: Iterable[np.ndarray], pred_points: Iterable[np.ndarray],
                  within: float = 3.0) -> dict[str, Any]:
    """For each true point, the distance (voxels) to the nearest proposal of the same type in
    its event: efficiency within ``within`` voxels and the distance distribution; for each
    proposal, whether a true point is within ``within`` (purity)."""
    dist, hit_pred, n_pred = [], 0, 0
    for t, p in zip(true_points, pred_points, strict=True):
        n_pred += len(p)
        for kind in (0, 1):
            tt, pp = t[t[:, 3] == kind, :3], p[p[:, 3] == kind, :3]
            if len(tt) and len(pp):
                d = np.linalg.norm(tt[:, None] - pp[None], axis=2)
                dist.append(d.min(1))
                hit_pred += int((d.min(0) <= within).sum())
            elif len(tt):
                dist.append(np.full(len(tt), np.inf))
    d = np.concatenate(dist) if dist else np.zeros(0)
    finite = d[np.isfinite(d)]
    return {
        "true_points": int(len(d)),
        "proposals": int(n_pred),
        "efficiency_within": float((d <= within).mean()) if len(d) else None,
        "purity_within": float(hit_pred / n_pred) if n_pred else None,
        "median_distance": float(np.median(finite)) if len(finite) else None,
        "within": within,
        "distances": d,
    }


def summarise(conf: np.ndarray, conf_base: np.ndarray, points: Mapping[str, Any],
              events: list[int]) -> dict[str, Any]:
    return {
        "events": events,
        "uresnet": segmentation_metrics(conf),
        "baseline_pca": segmentation_metrics(conf_base),
        "confusion": conf.tolist(),
        "confusion_baseline": conf_base.tolist(),
        "ppn": {k: v for k, v in points.items() if k != "distances"},
    }
