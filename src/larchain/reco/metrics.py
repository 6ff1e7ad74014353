"""Particle-level reconstruction metrics: clustering quality of fragments, particles and
interactions, particle identification and primary flags.

The learned chain and the classical baseline (:mod:`larchain.reco.baseline`) are scored by
the same functions on the same held-out events, so every number here is a function of
per-voxel cluster ids only (ids are arbitrary integers; only the partition matters).

Conventions:

* ARI is :func:`sklearn.metrics.adjusted_rand_score`. sklearn returns 1.0 when both
  labelings put every voxel in one cluster (and for one voxel): a perfect, if trivial, match.
  An event with no scored voxels gives NaN, which the summary skips. Beware the other
  degenerate case: one true cluster (a single-interaction event) against any split
  prediction gives 0, however small the stray piece; read ARI next to purity/efficiency.
* Purity and efficiency are voxel-count based (see :func:`purity_efficiency`).
* Ids are taken as given: a caller that leaves voxels unassigned (say id -1) makes them one
  cluster; give them unique ids to score them as singletons instead.
* PID: a true particle's predicted type (and primary flag) is that of the predicted particle
  sharing most of its voxels (:func:`match_clusters`); -1 when that predicted particle has no
  entry in ``particle_ids`` (counts as wrong, left out of the confusion matrix).
* That match is one-sided: a small particle swallowed by a bigger one (a delta ray merged
  into its muon) is "typed" by the bigger one, and can be "right" by luck (a delta ray inside
  a blob of muon voxels called shower, typed electron). ``"pid_mutual"`` therefore also
  scores PID over the matches that hold both ways (the predicted particle's voxels are
  mostly this true particle's), and counts the swallowed particles by type.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.metrics import adjusted_rand_score

from larchain.sim.truth import PARTICLE_TYPES

LEVELS = ("fragment", "particle", "interaction")
N_TYPES = len(PARTICLE_TYPES)
_PID_KEYS = ("true_type", "pred_type", "true_primary", "pred_primary", "n_voxels", "n_overlap",
             "mutual")


def ari(true: np.ndarray, pred: np.ndarray) -> float:
    """Adjusted Rand index of two voxel labelings (sklearn's: 1.0 when both are a single
    cluster); NaN when there are no voxels."""
    true, pred = np.asarray(true).ravel(), np.asarray(pred).ravel()
    if len(true) != len(pred):
        raise ValueError(f"label lengths differ: {len(true)} != {len(pred)}")
    if len(true) == 0:
        return float("nan")
    return float(adjusted_rand_score(true, pred))


def oracle_grouping(cluster: np.ndarray, truth: np.ndarray,
                    key: np.ndarray | None = None) -> np.ndarray:
    """Per-voxel group ids of the best grouping a clustering step could make of ``cluster``
    (per-voxel ids 0..C-1): clusters whose voxels mostly carry the same ``truth`` label are
    merged. ``key`` (one value per cluster) restricts merging to clusters of the same key
    (e.g. their semantic class, as the fragment GNN only joins fragments of one class);
    clusters with a negative key stay alone.

    Why: scoring this against the truth separates what a grouping step loses from what its
    input already lost (an impure cluster cannot be repaired by grouping), the error budget
    of ``benchmarks/particle_error_budget.py``. Ties go to the smallest truth label."""
    cluster = np.asarray(cluster).astype(np.int64).ravel()
    truth = np.asarray(truth).ravel()
    if len(cluster) != len(truth):
        raise ValueError(f"label lengths differ: {len(cluster)} != {len(truth)}")
    if len(cluster) == 0:
        return np.zeros(0, np.int64)
    n = int(cluster.max()) + 1
    t_ids, t = np.unique(truth, return_inverse=True)
    counts = np.zeros((n, len(t_ids)), np.int64)
    np.add.at(counts, (cluster, t.ravel()), 1)
    owner = counts.argmax(1)
    key = np.zeros(n, np.int64) if key is None else np.asarray(key).astype(np.int64).ravel()
    if len(key) != n:
        raise ValueError(f"key has {len(key)} values for {n} clusters")
    pair = np.where(key >= 0, owner * (int(key.max(initial=0)) + 1) + key, -1)
    _, group = np.unique(np.where(pair >= 0, pair, -2 - np.arange(n)), return_inverse=True)
    return group.ravel()[cluster]


def _contingency(true: np.ndarray, pred: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dense overlap counts ``[true cluster, predicted cluster]`` with the sorted unique ids
    of each side (C_true x C_pred: clusters, never voxels, squared)."""
    true, pred = np.asarray(true).ravel(), np.asarray(pred).ravel()
    if len(true) != len(pred):
        raise ValueError(f"label lengths differ: {len(true)} != {len(pred)}")
    t_ids, t = np.unique(true, return_inverse=True)
    p_ids, p = np.unique(pred, return_inverse=True)
    counts = np.bincount(t.ravel() * len(p_ids) + p.ravel(), minlength=len(t_ids) * len(p_ids))
    return counts.reshape(len(t_ids), len(p_ids)), t_ids, p_ids


def purity_efficiency(true: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    """(purity, efficiency), voxel counts. Efficiency: mean over true clusters of the share
    of the cluster in its best predicted cluster (splitting lowers it). Purity: mean over
    predicted clusters of the share of the cluster from its best true cluster (merging lowers
    it). NaN for no voxels."""
    c, _, _ = _contingency(true, pred)
    if c.size == 0:
        return float("nan"), float("nan")
    efficiency = float(np.mean(c.max(1) / c.sum(1)))
    purity = float(np.mean(c.max(0) / c.sum(0)))
    return purity, efficiency


def match_clusters(true: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """For each true cluster (``np.unique(true)`` order) the predicted id overlapping it most
    (ties: the lowest predicted id)."""
    c, _, p_ids = _contingency(true, pred)
    if c.size == 0:
        return np.zeros(0, dtype=np.asarray(pred).dtype)
    return p_ids[np.argmax(c, axis=1)]  # argmax takes the first maximum: lowest id


def pid_confusion(true_type: np.ndarray, pred_type: np.ndarray, n: int = N_TYPES) -> np.ndarray:
    """Counts ``[true type, predicted type]``; pairs with a type outside 0..n-1 (e.g. -1,
    unmatched) are left out."""
    t, p = np.asarray(true_type, np.int64).ravel(), np.asarray(pred_type, np.int64).ravel()
    ok = (t >= 0) & (t < n) & (p >= 0) & (p < n)
    return np.bincount(t[ok] * n + p[ok], minlength=n * n).reshape(n, n)


def event_scores(truth: Mapping[str, np.ndarray], pred: Mapping[str, np.ndarray],
                 mask: np.ndarray | None = None) -> dict[str, Any]:
    """Scores of one event.

    ``truth``: per-voxel ``fragment``, ``particle``, ``interaction``, ``particle_type``,
    ``primary``. ``pred``: per-voxel ``fragment``, ``particle``, ``interaction`` and per
    predicted particle ``particle_ids``, ``type``, ``primary``. ``mask`` (bool, per voxel)
    picks the voxels scored, e.g. ``semantic != LOW_ENERGY`` to leave out the low-energy
    depositions that neither method is expected to group; clusters and PID are judged on the
    masked voxels only (a true particle without masked voxels is not scored).

    Returns ``{level: {"ari", "purity", "efficiency", "n_true", "n_pred"}}`` for each of
    :data:`LEVELS`, ``"n_voxels"`` (scored), and ``"pid"``: arrays over the scored true
    particles (``np.unique`` order of their ids) of ``true_type``, ``pred_type``,
    ``true_primary``, ``pred_primary``, ``n_voxels`` (masked voxels of the true particle) and
    ``n_overlap`` (of those, in the matched predicted particle) and ``mutual`` (1 where the
    matched predicted particle's masked voxels are mostly this true particle's, ties to the
    lowest true id: the match holds both ways); concatenated by :func:`summarise_scores`.
    """
    n = len(np.asarray(truth["particle"]))
    m = np.ones(n, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    if len(m) != n:
        raise ValueError(f"mask has {len(m)} entries for {n} voxels")
    out: dict[str, Any] = {"n_voxels": int(m.sum())}
    for level in LEVELS:
        t, p = np.asarray(truth[level])[m], np.asarray(pred[level])[m]
        purity, efficiency = purity_efficiency(t, p)
        out[level] = {"ari": ari(t, p), "purity": purity, "efficiency": efficiency,
                      "n_true": len(np.unique(t)), "n_pred": len(np.unique(p))}

    t_part = np.asarray(truth["particle"])[m]
    p_part = np.asarray(pred["particle"])[m]
    c, t_ids, p_ids = _contingency(t_part, p_part)
    if c.size:
        best = np.argmax(c, axis=1)
        matched = p_ids[best]
        n_overlap = c[np.arange(len(t_ids)), best]
        n_vox = c.sum(1)
        mutual = np.argmax(c, axis=0)[best] == np.arange(len(t_ids))
    else:
        matched = np.zeros(0, dtype=np.int64)
        n_overlap = n_vox = np.zeros(0, dtype=np.int64)
        mutual = np.zeros(0, dtype=bool)
    # A true particle's type and primary flag: its first (masked) voxel's labels.
    _, first = np.unique(t_part, return_index=True)
    true_type = np.asarray(truth["particle_type"])[m][first].astype(np.int64)
    true_primary = np.asarray(truth["primary"])[m][first].astype(np.int64)

    ids = np.asarray(pred["particle_ids"]).ravel()
    ptype = np.asarray(pred["type"]).ravel().astype(np.int64)
    pprim = np.asarray(pred["primary"]).ravel().astype(np.int64)
    row = {int(i): k for k, i in enumerate(ids)}  # predicted particle id -> its entry
    at = np.array([row.get(int(i), -1) for i in matched], dtype=np.int64)
    found = at >= 0
    pred_type = np.where(found, ptype[at] if len(ids) else -1, -1).astype(np.int64)
    pred_primary = np.where(found, pprim[at] if len(ids) else -1, -1).astype(np.int64)
    out["pid"] = {"true_type": true_type, "pred_type": pred_type,
                  "true_primary": true_primary, "pred_primary": pred_primary,
                  "n_voxels": n_vox.astype(np.int64), "n_overlap": n_overlap.astype(np.int64),
                  "mutual": mutual.astype(np.int64)}
    return out


def _stats(values: Sequence[float]) -> dict[str, Any]:
    """Mean, median, standard error of the mean over the events where it is defined."""
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return {"mean": None, "median": None, "sem": None, "n": 0}
    sem = float(np.std(x, ddof=1) / np.sqrt(len(x))) if len(x) > 1 else None
    return {"mean": float(np.mean(x)), "median": float(np.median(x)), "sem": sem,
            "n": int(len(x))}


def _ratio(num: int, den: int) -> float | None:
    return float(num / den) if den else None


def summarise_scores(events: Sequence[dict[str, Any]], pid_min_voxels: int = 1
                     ) -> dict[str, Any]:
    """Aggregate :func:`event_scores` over events, JSON-ready (None where undefined).

    Clustering metrics: per-event mean, median, s.e.m. (events weigh equally). PID and
    primary accuracy: over all scored true particles of all events (particles weigh
    equally); per class, the fraction of true particles of that type called that type.
    ``"pid_visible"`` is the same PID summary over the true particles with at least
    ``pid_min_voxels`` scored voxels, with the count left out per type. Why: a particle of
    one or two voxels has no shape to type it by (a stopping pion's 4 MeV decay muon travels
    1.5 mm in 3 mm voxels), yet it weighs as much as a metre-long track in ``"pid"``.
    ``"pid_mutual"``: the same over the visible particles whose match holds both ways, with
    the visible particles swallowed by another particle counted per type (``n_swallowed``).
    """
    out: dict[str, Any] = {"n_events": len(events)}
    for level in LEVELS:
        out[level] = {k: _stats([e[level][k] for e in events])
                      for k in ("ari", "purity", "efficiency")}
        out[level]["n_true"] = int(sum(e[level]["n_true"] for e in events))
        out[level]["n_pred"] = int(sum(e[level]["n_pred"] for e in events))

    pid = {k: np.concatenate([np.asarray(e["pid"][k], dtype=np.int64) for e in events])
           if events else np.zeros(0, dtype=np.int64) for k in _PID_KEYS}
    t, p = pid["true_type"], pid["pred_type"]
    out["pid"] = _pid_summary(t, p)
    big = pid["n_voxels"] >= pid_min_voxels
    out["pid_visible"] = {
        "min_voxels": int(pid_min_voxels), **_pid_summary(t[big], p[big]),
        "n_left_out": {name: int(np.sum(~big & (t == i)))
                       for i, name in enumerate(PARTICLE_TYPES)}}
    own = big & (pid["mutual"] == 1)
    out["pid_mutual"] = {
        **_pid_summary(t[own], p[own]),
        "n_swallowed": {name: int(np.sum(big & ~own & (t == i)))
                        for i, name in enumerate(PARTICLE_TYPES)}}
    out["primary"] = {
        "accuracy": _ratio(int(np.sum(pid["true_primary"] == pid["pred_primary"])),
                           len(pid["true_primary"])),
        "n_particles": int(len(pid["true_primary"])),
    }
    return out


def _pid_summary(t: np.ndarray, p: np.ndarray) -> dict[str, Any]:
    correct = t == p
    per_class = {}
    for i, name in enumerate(PARTICLE_TYPES):
        sel = t == i
        per_class[name] = {"accuracy": _ratio(int(correct[sel].sum()), int(sel.sum())),
                           "n": int(sel.sum())}
    return {
        "accuracy": _ratio(int(correct.sum()), len(t)),
        "per_class": per_class,
        "confusion": pid_confusion(t, p).tolist(),
        "labels": list(PARTICLE_TYPES),
        "n_particles": int(len(t)),
        "n_unmatched": int(np.sum(p < 0)),
    }
