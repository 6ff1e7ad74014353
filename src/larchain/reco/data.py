"""Simulated events as training batches: sparse tensors, semantic labels and true points.

Point-proposal targets follow the anchor chain: every track-like particle (muon, pion, proton)
gives its start and end point (type 0, "track end"), every shower-like particle (an EM
shower, Michel or delta electron) its start point (type 1, "shower start"); only particles
that left at least ``min_voxels`` voxels count. Points are in voxel units (cm / pitch), the
frame of the voxel coordinates (for in-time interactions the drift coordinate is undistorted).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from larchain.reco.sparse import SparseTensor
from larchain.sim import truth as T

TRACK_END, SHOWER_START = 0, 1


def event_points(particles: dict[str, np.ndarray], voxel_size: float, min_voxels: int = 5
                 ) -> np.ndarray:
    """True points ``[P, 4]`` = (x, y, z, type) in voxel units of one event."""
    keep = particles["n_voxels"] >= min_voxels
    track = keep & (particles["semantic"] == T.TRACK)
    shower = keep & np.isin(particles["semantic"], (T.SHOWER, T.MICHEL, T.DELTA))
    pts = [
        np.c_[particles["start"][track], np.full(track.sum(), TRACK_END)],
        np.c_[particles["end"][track], np.full(track.sum(), TRACK_END)],
        np.c_[particles["start"][shower], np.full(shower.sum(), SHOWER_START)],
    ]
    out = np.concatenate(pts).astype(np.float64)
    out[:, :3] /= voxel_size
    return out


def load_event(dataset: Any, i: int, voxel_size: float, charge_scale: float) -> dict[str, Any]:
    """One event of an :class:`~larchain.sim.storage.EventDataset` as arrays."""
    raw = dataset.raw(i)
    vox = raw["voxels"]
    return {
        "index": raw["index"],
        "coords": vox["coords"].astype(np.int64),
        "features": (vox["charge"] / charge_scale).astype(np.float32)[:, None],
        "semantic": vox["semantic"].astype(np.int64),
        "points": event_points(raw["particles"], voxel_size),
    }


def augment_event(event: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    """The event mirrored along a random subset of the axes and with its axes permuted at
    random: labels are unchanged by such a symmetry of the cubic voxel grid, and points move
    with the voxels (voxel c spans [c, c + 1) in point units, so mirroring about the
    event's extent L maps c -> L - 1 - c and a point p -> L - p). Sites stay >= 0."""
    coords = event["coords"].copy()
    xyz = event["points"][:, :3].copy()
    flip = rng.random(3) < 0.5
    extent = coords.max(0) + 1 if len(coords) else np.zeros(3, np.int64)
    coords[:, flip] = extent[flip] - 1 - coords[:, flip]
    xyz[:, flip] = extent[flip] - xyz[:, flip]
    order = rng.permutation(3)
    points = np.c_[xyz[:, order], event["points"][:, 3:]]
    return {**event, "coords": coords[:, order], "points": points}


def make_batch(events: Sequence[dict[str, Any]], device: str | torch.device = "cpu"
               ) -> dict[str, Any]:
    """Collate events into a :class:`SparseTensor` (sorted sites) with labels in the same
    order, and points ``[P, 5]`` = (batch, x, y, z, type)."""
    coords = np.concatenate([np.c_[np.full(len(e["coords"]), b), e["coords"]]
                             for b, e in enumerate(events)])
    feats = np.concatenate([e["features"] for e in events])
    st = SparseTensor.from_batch(torch.as_tensor(coords, device=device),
                                 torch.as_tensor(feats, device=device))
    labels = torch.as_tensor(np.concatenate([e["semantic"] for e in events]), device=device)
    perm = st.perm
    points = np.concatenate([np.c_[np.full(len(e["points"]), b), e["points"]]
                             for b, e in enumerate(events)]).reshape(-1, 5)
    return {
        "input": st,
        "semantic": labels if perm is None else labels[perm],
        "points": torch.as_tensor(points, dtype=torch.float32, device=device),
        "index": [e["index"] for e in events],
        "perm": perm,
    }
