"""Graphs over voxels and clusters, and the geometric features the particle-level GNNs read.

Particle reconstruction works on two graphs: a voxel graph (``radius_graph``) whose edges a
dense-clustering scorer keeps or cuts, giving fragments (``components``); and a cluster graph
(``complete_graph`` per event) on which a GrapPA-style network groups fragments into
particles. Both networks see the fragments through the fixed geometric summaries below, so
that what they are given is documented, cheap, and independent of voxel order.

All coordinates are in voxel units (floats; voxel ``i`` spans ``[i, i + 1)``); charge is in
electrons. Nothing here builds an ``N x N`` matrix over voxels: events of ~20,000 voxels and
~200 clusters fit in a few MB.

Node features (:func:`cluster_features`, ``[C, N_GEOMETRY + K]`` float32), per cluster:

==========  =================  ==========================================================
column      name               meaning (units)
==========  =================  ==========================================================
0           ``log_n_voxels``   ``log1p(number of voxels)``
1           ``log_charge``     ``log1p(total charge / 1e4)`` (charge in electrons)
2-4         ``centroid_*``     mean voxel position, x y z (voxels), charge-unweighted
5-10        ``cov_**``         covariance of voxel positions, xx yy zz xy xz yz (voxels^2),
                               population normalisation (``np.cov(bias=True)``); 0 for
                               a single voxel
11-13       ``axis_*``         principal axis: unit eigenvector of the largest covariance
                               eigenvalue, sign fixed so that its largest-magnitude
                               component is positive (the first such on ties). Convention:
                               ``(1, 0, 0)`` when the covariance is zero (single voxel, or
                               all voxels at one position). When the two largest
                               eigenvalues are equal the axis is any unit vector of their
                               plane (deterministic, not meaningful)
14-16       ``eig_frac_*``     eigenvalues / their sum, descending (sum 1; ``~(1, 0, 0)``
                               for a line, ``~(1/2, 1/2, 0)`` for a disc); ``(1/3, 1/3, 1/3)``
                               when the covariance is zero
17          ``length``         extent along the principal axis: max - min of the voxel
                               projections on it (voxels); 0 for a single voxel
18-20       ``start_*``        the voxel with the smallest projection on the axis (voxels;
                               lowest voxel index on ties)
21-23       ``end_*``          the voxel with the largest projection on the axis (voxels)
24          ``log_dqdx``       ``log1p(total charge / (length + 1) / 1e4)``: mean charge
                               per voxel of length (a proton's is ~2-3x a muon's)
25          ``log_dqdx_ends``  ``log1p(charge per voxel of length within``
                               ``END_WINDOW`` ``of each end / 1e4)``, the larger of the
26                             two ends, then the smaller: a stopping particle's Bragg
                               peak, which end it is at left out (no orientation)
27          ``n_touch_bragg``  number of other clusters with a voxel within
                               ``END_RADIUS`` of the end with the larger end charge
                               (column 25's end; the ``end`` point on ties)
28          ``n_touch_far``    the same at the other end
29          ``log_q_touch_*``  ``log1p(summed total charge of those clusters / 1e4)``,
30                             at the Bragg end, then at the other end
31-34       ``log_dqdx_rr_*``  charge profile from the Bragg end: ``log1p(charge of the
                               voxels at a distance in [a, b) of column 27's end voxel /
                               (the part of [a, b) the cluster reaches + 1) / 1e4)``, for
                               ``RR_EDGES`` [a, b) = [0, 3), [3, 6), [6, 12), [12, 24)
                               voxels; 0 where no voxel is that far
35-...      ``extra_k``        per-cluster mean of the K ``extra`` per-voxel columns
==========  =================  ==========================================================

``start`` and ``end`` are the two ends of the cluster along its axis; which is which follows
the axis sign convention, not the particle's direction of travel.

Columns 27-30 are the only ones that depend on the other clusters passed in the same call
(those of one graph). Why: how a track ends is what tells a pion from a muon. A stopping
muon ends in one Michel electron; a pion ends in a star (protons and photons of an
absorption) or, when it stops and decays, in the 4 MeV decay muon's blob and its Michel;
a proton ends in nothing. Counting the clusters that touch the end with the Bragg peak
(where a stopping particle stops) gives that to the network directly. Message passing could
find it from the edge features, but from ~10^3 training events it did not: with these
columns, visible pions typed right went from 0.49 to 0.58 (BENCHMARKS.md, 2026-11-24).

Columns 31-34 are dQ/dx against residual range, the classical handle on a stopping track's
mass: at the same distance from its end a pion (140 MeV) loses ~12% more energy per cm than
a muon (106 MeV), a proton several times more. Since mu- are captured and pi- absorbed
(simulation code version 6) both often end in almost nothing, and the end alone does not
tell them apart.

Edge features (:func:`edge_features`, ``[E, N_EDGE]`` float32), per cluster pair ``(i, j)``
of ``edges[:, e]`` (``i = edges[0, e]``, ``j = edges[1, e]``):

==========  =================  ==========================================================
column      name               meaning (units)
==========  =================  ==========================================================
0           ``closest_dist``   distance between the closest voxels of i and j (voxels)
1-3         ``disp_*``         displacement from i's closest voxel to j's, x y z (voxels)
4           ``centroid_dist``  distance between the centroids (voxels)
5           ``cos_axes``       ``|cos|`` of the angle between the two principal axes
6           ``cos_axis_i``     ``|cos|`` between i's axis and the displacement (0 if the
                               closest distance is 0)
7           ``cos_axis_j``     the same for j's axis
8           ``i_to_start``     distance from i's closest voxel to i's start point (voxels)
9           ``i_to_end``       distance from i's closest voxel to i's end point (voxels)
10          ``j_to_start``     distance from j's closest voxel to j's start point (voxels)
11          ``j_to_end``       distance from j's closest voxel to j's end point (voxels)
==========  =================  ==========================================================

Columns 1-3 and 6-11 depend on the edge's orientation (which cluster is ``edges[0]``); the
graphs built here always orient edges ``i < j``.

Pointing features (:func:`pointing_features`, ``[E, N_POINTING]`` float32), per pair, on the
interaction level's groups of touching particles only. All are symmetric in ``i`` and ``j``:

==========  =================  ==========================================================
column      name               meaning
==========  =================  ==========================================================
0           ``log_impact_min`` ``log1p`` of the smaller of the two impacts (voxels); the
                               impact of i on j is the distance from i's principal-axis
                               line (through its centroid) to j's nearest voxel
1           ``log_impact_max`` ``log1p`` of the larger one
2           ``log_doca``       ``log1p`` of the distance of closest approach of the two
                               axis lines (voxels; parallel lines: their distance)
3           ``slog_behind_*``  where the lines' closest approach lies along each axis,
4                              from that cluster's nearer end: ``> 0`` outside the cluster,
                               ``< 0`` inside it (voxels, ``sign(x) log1p(|x|)``), the
                               smaller of the two, then the larger
==========  =================  ==========================================================

Why: a photon from a pi0 converts tens of voxels from its vertex and touches nothing, and two
neutrino interactions' showers can lie as close as two photons of one. What tells them
apart is where the shower points: back through the group holding its vertex (a small
impact), or, for the two photons of one pi0, at a common point behind both (a small
distance of closest approach, outside both).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree
from torch import Tensor

__all__ = [
    "AXIS",
    "CENTROID",
    "CHARGE",
    "COVARIANCE",
    "DQDX",
    "DQDX_ENDS",
    "END_ACTIVITY",
    "END_RADIUS",
    "RR_EDGES",
    "RR_PROFILE",
    "END_WINDOW",
    "EDGE_NAMES",
    "EIGEN_FRACTIONS",
    "END",
    "LENGTH",
    "N_EDGE",
    "N_GEOMETRY",
    "N_POINTING",
    "N_VOXELS",
    "POINTING_NAMES",
    "START",
    "closest_points",
    "cluster_features",
    "complete_graph",
    "components",
    "edge_features",
    "feature_names",
    "pointing_features",
    "radius_graph",
    "touching",
]

#: Column indices of :func:`cluster_features` (see the module docstring).
N_VOXELS = 0
CHARGE = 1
CENTROID = slice(2, 5)
COVARIANCE = slice(5, 11)
AXIS = slice(11, 14)
EIGEN_FRACTIONS = slice(14, 17)
LENGTH = 17
START = slice(18, 21)
END = slice(21, 24)
DQDX = 24
DQDX_ENDS = slice(25, 27)
END_ACTIVITY = slice(27, 31)
RR_PROFILE = slice(31, 35)
N_GEOMETRY = 35
#: Length along the axis (voxels) over which the charge at each end is summed.
END_WINDOW = 4.0
#: Distance (voxels) from an end point within which another cluster's voxel touches it.
END_RADIUS = 3.0
#: Bin edges (voxels of distance from the Bragg end) of the charge profile, columns 31-34.
RR_EDGES = (0.0, 3.0, 6.0, 12.0, 24.0)

_GEOMETRY_NAMES = [
    "log_n_voxels", "log_charge",
    "centroid_x", "centroid_y", "centroid_z",
    "cov_xx", "cov_yy", "cov_zz", "cov_xy", "cov_xz", "cov_yz",
    "axis_x", "axis_y", "axis_z",
    "eig_frac_0", "eig_frac_1", "eig_frac_2",
    "length",
    "start_x", "start_y", "start_z",
    "end_x", "end_y", "end_z",
    "log_dqdx", "log_dqdx_end_high", "log_dqdx_end_low",
    "n_touch_bragg", "n_touch_far", "log_q_touch_bragg", "log_q_touch_far",
    "log_dqdx_rr_0", "log_dqdx_rr_1", "log_dqdx_rr_2", "log_dqdx_rr_3",
]  # fmt: skip
assert len(_GEOMETRY_NAMES) == N_GEOMETRY

#: Column names of :func:`edge_features` (see the module docstring).
EDGE_NAMES = [
    "closest_dist", "disp_x", "disp_y", "disp_z", "centroid_dist",
    "cos_axes", "cos_axis_i", "cos_axis_j",
    "i_to_start", "i_to_end", "j_to_start", "j_to_end",
]  # fmt: skip
N_EDGE = len(EDGE_NAMES)
#: Column names of :func:`pointing_features` (see the module docstring).
POINTING_NAMES = ["log_impact_min", "log_impact_max", "log_doca", "slog_behind_min",
                  "slog_behind_max"]
N_POINTING = len(POINTING_NAMES)

# Covariance below this trace (voxels^2) counts as zero: the single-voxel conventions apply.
_ZERO_COV = 1e-12


def feature_names(k_extra: int) -> list[str]:
    """Names of the :func:`cluster_features` columns, with ``k_extra`` extra means."""
    return [*_GEOMETRY_NAMES, *(f"extra_{k}" for k in range(k_extra))]


# --------------------------------------------------------------------------------------------
# Graphs
# --------------------------------------------------------------------------------------------


def _empty_edges() -> Tensor:
    return torch.zeros(2, 0, dtype=torch.int64)


def _sorted_pairs(i: Tensor, j: Tensor, n: int) -> Tensor:
    """``[2, E]`` of ``(min, max)`` pairs, lexicographically sorted."""
    lo, hi = torch.minimum(i, j), torch.maximum(i, j)
    order = torch.argsort(lo * n + hi)
    return torch.stack([lo[order], hi[order]])


def radius_graph(
    coords: Tensor, radius: float, group: Tensor | None = None, chunk: int = 4096
) -> Tensor:
    """Undirected edges ``[2, E]`` (int64, ``i < j``, sorted) between points within
    ``radius`` (Euclidean, inclusive), restricted to equal ``group`` when given.

    Why cells: points are hashed to cubic cells of side >= ``radius`` (keyed with their
    group), so candidate partners are the points of the 27 neighbouring cells, found by
    binary search in the sorted keys; memory and time scale with the number of candidate
    pairs, never ``N^2``. ``chunk`` points are expanded at a time. The distance test is
    ``sqrt(sum d^2) <= radius`` in float64, so integer coordinates on the boundary are
    included exactly.
    """
    if radius < 0:
        raise ValueError(f"radius must be >= 0, got {radius}")
    if coords.ndim != 2 or coords.shape[1] != 3:
        raise ValueError(f"coords must be [N, 3], got {tuple(coords.shape)}")
    n = coords.shape[0]
    if n < 2:
        return _empty_edges()
    c = coords.detach().to("cpu", torch.float64)
    if group is None:
        g = torch.zeros(n, dtype=torch.int64)
    else:
        if group.shape != (n,):
            raise ValueError(f"group must be [{n}], got {tuple(group.shape)}")
        g = torch.unique(group.detach().cpu(), return_inverse=True)[1].to(torch.int64)
    n_groups = int(g.max()) + 1

    # Cell side: >= radius (with a margin against rounding in the floor), and large enough
    # that the int64 key (group, cx, cy, cz) cannot overflow.
    lo = c.min(0).values
    extent = float((c.max(0).values - lo).max())
    max_cells = int((2.0**62 / n_groups) ** (1 / 3)) - 1
    side = max(radius * (1 + 1e-6), extent / (max_cells - 3), 1e-9)
    cell = torch.floor((c - lo) / side).to(torch.int64) + 1  # >= 1: room for offset -1
    dims = cell.max(0).values + 2
    d1, d2 = int(dims[1]), int(dims[2])
    key = ((g * int(dims[0]) + cell[:, 0]) * d1 + cell[:, 1]) * d2 + cell[:, 2]
    order = torch.argsort(key, stable=True)
    skey = key[order]
    sc = c[order]

    # The cell itself (pairs later in sorted order) and the 13 lexicographically positive
    # neighbour offsets: every unordered pair is generated once.
    offsets = [(0, 0, 0)] + [
        (dx, dy, dz)
        for dx in (-1, 0, 1)
        for dy in (-1, 0, 1)
        for dz in (-1, 0, 1)
        if (dx, dy, dz) > (0, 0, 0)
    ]
    delta = torch.tensor([(dx * d1 + dy) * d2 + dz for dx, dy, dz in offsets])

    rows_out, cols_out = [], []
    for a in range(0, n, chunk):
        pos = torch.arange(a, min(a + chunk, n))
        q = skey[pos, None] + delta[None, :]  # [p, 14]
        start = torch.searchsorted(skey, q, side="left")
        end = torch.searchsorted(skey, q, side="right")
        start[:, 0] = pos + 1  # same cell: only partners after this point
        counts = (end - start).clamp_min(0).reshape(-1)
        total = int(counts.sum())
        if total == 0:
            continue
        first = torch.repeat_interleave(start.reshape(-1), counts)
        within = torch.arange(total) - torch.repeat_interleave(counts.cumsum(0) - counts, counts)
        cols = first + within
        rows = torch.repeat_interleave(pos.repeat_interleave(len(offsets)), counts)
        dist = torch.sqrt(((sc[rows] - sc[cols]) ** 2).sum(1))
        keep = dist <= radius
        rows_out.append(order[rows[keep]])
        cols_out.append(order[cols[keep]])
    if not rows_out:
        return _empty_edges()
    return _sorted_pairs(torch.cat(rows_out), torch.cat(cols_out), n)


def complete_graph(batch: Tensor) -> Tensor:
    """All pairs ``i < j`` with ``batch[i] == batch[j]``: ``[2, E]`` int64, sorted.

    Why: the particle-grouping GNN considers every fragment pair of an event; the edge
    count is ``sum n_b (n_b - 1) / 2``, fine for ~200 fragments per event.
    """
    n = batch.shape[0]
    if n < 2:
        return _empty_edges()
    b = torch.unique(batch.detach().cpu(), return_inverse=True)[1].to(torch.int64)
    order = torch.argsort(b, stable=True)  # by batch, then by index
    size = torch.bincount(b)
    first = torch.cumsum(size, 0) - size  # sorted position of each batch's first node
    pos = torch.arange(n)
    rank = pos - first[b[order]]  # rank of sorted position p within its batch
    later = size[b[order]] - 1 - rank  # partners after p in its batch
    total = int(later.sum())
    if total == 0:
        return _empty_edges()
    rows = torch.repeat_interleave(pos, later)
    within = torch.arange(total) - torch.repeat_interleave(later.cumsum(0) - later, later)
    cols = rows + 1 + within
    return _sorted_pairs(order[rows], order[cols], n)


def components(n: int, edges: Tensor) -> Tensor:
    """Connected-component label ``[n]`` (int64) of each node of the undirected graph.

    Labels are ``0..K-1`` in order of each component's lowest node index, so they do not
    depend on the edge order; isolated nodes are components of their own.
    """
    if n == 0:
        return torch.zeros(0, dtype=torch.int64)
    e = edges.detach().cpu().numpy().astype(np.int64).reshape(2, -1)
    adj = sp.coo_matrix((np.ones(e.shape[1], dtype=np.int8), (e[0], e[1])), shape=(n, n))
    _, labels = connected_components(adj.tocsr(), directed=False)
    _, first = np.unique(labels, return_index=True)  # lowest node of each scipy label
    relabel = np.empty(len(first), dtype=np.int64)
    relabel[np.argsort(first)] = np.arange(len(first))
    return torch.from_numpy(relabel[labels])


def touching(coords: Tensor, cluster: Tensor, radius: float) -> Tensor:
    """Per-cluster label ``[C]`` (int64, as :func:`components`) of the groups of clusters
    chained by closest voxels at most ``radius`` apart (``cluster``: per-voxel ids 0..C-1).

    Why: particles that touch almost always share an interaction (one cross-interaction
    pair in 1,908 within 1.5 voxels on 254 pile-up events), so they can be grouped before
    the interaction GNN, which then decides only for what does not touch.
    """
    n = int(cluster.max()) + 1 if cluster.numel() else 0
    if n <= 1:
        return torch.zeros(n, dtype=torch.int64)
    # voxel pairs within the radius (a tree query, not every cluster pair's closest points)
    pairs = cKDTree(coords.detach().cpu().double().numpy()).query_pairs(
        float(radius), output_type="ndarray")
    cl = cluster.detach().cpu().numpy().astype(np.int64)
    a, b = cl[pairs[:, 0]], cl[pairs[:, 1]]
    keep = a != b
    linked = np.unique(np.stack([np.minimum(a, b)[keep], np.maximum(a, b)[keep]]), axis=1)
    return components(n, torch.from_numpy(linked))


# --------------------------------------------------------------------------------------------
# Cluster and edge features
# --------------------------------------------------------------------------------------------


def _cluster_mean(values: Tensor, cluster: Tensor, count: Tensor) -> Tensor:
    out = torch.zeros(len(count), *values.shape[1:], dtype=values.dtype)
    return out.index_add_(0, cluster, values) / count.reshape(-1, *([1] * (values.ndim - 1)))


def cluster_features(
    coords: Tensor, charge: Tensor, cluster: Tensor, extra: Tensor | None = None
) -> Tensor:
    """Geometric summary ``[C, N_GEOMETRY + K]`` (float32) of each voxel cluster, columns as
    in the module docstring; ``cluster`` labels run ``0..C-1``, none empty.

    Why these: size, charge, position, shape (covariance and its eigenvalue fractions: line
    vs blob) and the two ends along the principal axis are what a physicist would use to
    decide whether two fragments continue each other. Computed for all clusters at once
    (scatter sums, one batched float64 ``eigh``).
    """
    n = coords.shape[0]
    k = 0 if extra is None else extra.shape[1]
    if n == 0:
        return torch.zeros(0, N_GEOMETRY + k, dtype=torch.float32)
    c = coords.detach().to("cpu", torch.float64)
    cl = cluster.detach().cpu().to(torch.int64)
    n_clusters = int(cl.max()) + 1
    count = torch.bincount(cl, minlength=n_clusters).to(torch.float64)
    if bool((count == 0).any()):
        raise ValueError("cluster labels must be 0..C-1 with every cluster non-empty")
    q = torch.zeros(n_clusters, dtype=torch.float64).index_add_(
        0, cl, charge.detach().to("cpu", torch.float64)
    )

    centroid = _cluster_mean(c, cl, count)
    d = c - centroid[cl]
    cov = _cluster_mean(d[:, :, None] * d[:, None, :], cl, count)  # [C, 3, 3]
    evals, evecs = torch.linalg.eigh(cov)  # ascending
    evals = evals.flip(1).clamp_min(0.0)
    axis = evecs[:, :, 2]
    zero = evals.sum(1) <= _ZERO_COV
    axis = torch.where(zero[:, None], torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64), axis)
    big = axis.abs().argmax(1, keepdim=True)
    axis = axis * torch.sign(axis.gather(1, big))
    frac = torch.where(
        zero[:, None],
        torch.full_like(evals, 1 / 3),
        evals / evals.sum(1, keepdim=True).clamp_min(_ZERO_COV),
    )

    t = (d * axis[cl]).sum(1)  # projection on the cluster's axis
    tmin = torch.full((n_clusters,), torch.inf, dtype=torch.float64)
    tmin = tmin.scatter_reduce(0, cl, t, "amin")
    tmax = torch.full((n_clusters,), -torch.inf, dtype=torch.float64)
    tmax = tmax.scatter_reduce(0, cl, t, "amax")
    idx = torch.arange(n)
    first = torch.full((n_clusters,), n, dtype=torch.int64)
    start = first.scatter_reduce(0, cl, torch.where(t == tmin[cl], idx, n), "amin")
    end = first.scatter_reduce(0, cl, torch.where(t == tmax[cl], idx, n), "amin")
    qv = charge.detach().to("cpu", torch.float64)
    zeros = torch.zeros(n_clusters, dtype=torch.float64)
    q_lo = zeros.index_add(0, cl, torch.where(t <= tmin[cl] + END_WINDOW, qv, 0.0))
    q_hi = zeros.index_add(0, cl, torch.where(t >= tmax[cl] - END_WINDOW, qv, 0.0))
    length = tmax - tmin
    window = torch.clamp(length, max=END_WINDOW) + 1.0
    bragg = torch.where(q_hi >= q_lo, end, start)

    cols = [
        torch.log1p(count)[:, None],
        torch.log1p(q / 1e4)[:, None],
        centroid,
        cov[:, [0, 1, 2, 0, 0, 1], [0, 1, 2, 1, 2, 2]],
        axis,
        frac,
        length[:, None],
        c[start],
        c[end],
        torch.log1p(q / (length + 1.0) / 1e4)[:, None],
        torch.log1p(torch.maximum(q_lo, q_hi) / window / 1e4)[:, None],
        torch.log1p(torch.minimum(q_lo, q_hi) / window / 1e4)[:, None],
        _end_activity(c, cl, q, bragg, torch.where(q_hi >= q_lo, start, end)),
        _residual_range_profile(c, cl, qv, bragg),
    ]
    if extra is not None:
        if extra.shape[0] != n:
            raise ValueError(f"extra must have {n} rows, got {extra.shape[0]}")
        cols.append(_cluster_mean(extra.detach().to("cpu", torch.float64), cl, count))
    return torch.cat(cols, 1).to(torch.float32)


def _end_activity(c: Tensor, cl: Tensor, q: Tensor, bragg: Tensor, far: Tensor) -> Tensor:
    """Columns 27-30 of :func:`cluster_features`: per cluster, the other clusters with a
    voxel within ``END_RADIUS`` of its voxel ``bragg`` and of its voxel ``far`` (counts, then
    ``log1p`` of their summed total charge ``q`` / 1e4). One KD-tree pair search, so the cost
    is the number of voxels near the ends, not clusters x voxels."""
    n_clusters = len(q)
    ends = c[torch.cat([bragg, far])].numpy()  # [2C, 3]: the Bragg ends, then the far ends
    pairs = cKDTree(ends).query_ball_tree(cKDTree(c.numpy()), END_RADIUS + 1e-9)
    row = np.repeat(np.arange(len(pairs)), [len(p) for p in pairs])
    other = cl.numpy()[np.concatenate(pairs).astype(np.int64)] if len(row) else row
    own = np.arange(2 * n_clusters) % n_clusters
    keep = other != own[row]
    touch = np.unique(row[keep] * n_clusters + other[keep])  # (end, other cluster) once each
    at, who = touch // n_clusters, touch % n_clusters
    count = np.bincount(at, minlength=2 * n_clusters).astype(np.float64)
    charge = np.bincount(at, weights=q.numpy()[who], minlength=2 * n_clusters)
    out = np.stack([count[:n_clusters], count[n_clusters:],
                    np.log1p(charge[:n_clusters] / 1e4), np.log1p(charge[n_clusters:] / 1e4)], 1)
    return torch.from_numpy(out)


def _residual_range_profile(c: Tensor, cl: Tensor, qv: Tensor, bragg: Tensor) -> Tensor:
    """Columns 31-34 of :func:`cluster_features`: charge per voxel of distance from each
    cluster's voxel ``bragg``, in the ``RR_EDGES`` bins (``log1p(... / 1e4)``)."""
    n_clusters = len(bragg)
    r = (c - c[bragg][cl]).norm(dim=1)
    edges = torch.tensor(RR_EDGES, dtype=torch.float64)
    b = torch.bucketize(r, edges, right=True) - 1  # bin of each voxel; len(edges)-1: beyond
    n_bins = len(RR_EDGES) - 1
    inside = b < n_bins
    q = torch.zeros(n_clusters * n_bins, dtype=torch.float64).index_add_(
        0, (cl * n_bins + b)[inside], qv[inside]).reshape(n_clusters, n_bins)
    reach = torch.full((n_clusters,), 0.0, dtype=torch.float64).scatter_reduce(0, cl, r, "amax")
    covered = (reach[:, None] - edges[None, :-1]).clamp(min=0.0)
    covered = torch.minimum(covered, edges[1:] - edges[:-1])
    return torch.log1p(q / (covered + 1.0) / 1e4)


def closest_points(
    coords: Tensor, cluster: Tensor, edges: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """For each cluster pair ``edges[:, e]``: the distance between the closest voxels of the
    two clusters ``[E]``, that voxel of ``edges[0, e]`` ``[E, 3]`` and of ``edges[1, e]``
    ``[E, 3]``.

    Exact (float64): for each cluster ``a`` of ``edges[0]``, a k-d tree of its voxels gives
    every voxel of its partner clusters its distance to ``a``; per partner, the nearest such
    voxel (lowest index on ties), then that voxel's nearest voxel of ``a`` (lowest index on
    ties). The work is ``sum_a |partners' voxels| log |a|``, not the ``sum_e |A_e| |B_e|`` of
    checking every voxel pair. Outputs are float64 for float64 ``coords``, float32 otherwise.
    """
    out_dtype = coords.dtype if coords.dtype == torch.float64 else torch.float32
    e = edges.detach().cpu().to(torch.int64).reshape(2, -1).numpy()
    n_edges = e.shape[1]
    if n_edges == 0:
        z = torch.zeros(0, 3, dtype=out_dtype)
        return torch.zeros(0, dtype=out_dtype), z, z.clone()
    c = coords.detach().to("cpu", torch.float64).numpy()
    cl = cluster.detach().cpu().to(torch.int64).numpy()
    n_clusters = max(int(cl.max()), int(e.max())) + 1
    members = np.argsort(cl, kind="stable")
    bounds = np.concatenate([[0], np.bincount(cl, minlength=n_clusters).cumsum()])
    by_first = np.argsort(e[0], kind="stable")
    first = np.searchsorted(e[0][by_first], np.arange(n_clusters + 1))
    ia_of = np.empty(n_edges, np.int64)
    ib_of = np.empty(n_edges, np.int64)
    for a in np.unique(e[0]).tolist():
        sel = by_first[first[a]:first[a + 1]]
        partners = e[1, sel]
        ia = members[bounds[a]:bounds[a + 1]]  # ascending voxel index
        if len(ia) == 0:
            raise ValueError(f"cluster {a} has no voxels")
        wanted = np.zeros(n_clusters, bool)
        wanted[partners] = True
        cols = np.flatnonzero(wanted[cl])  # voxels of any partner, ascending
        if len(cols) == 0:
            raise ValueError(f"a partner of cluster {a} has no voxels")
        tree = cKDTree(c[ia])
        best = tree.query(c[cols], k=1)[0]
        # per partner cluster: the nearest of its voxels (lowest index on ties)
        cb = cl[cols]
        dmin = np.full(n_clusters, np.inf)
        np.minimum.at(dmin, cb, best)
        tie = best == dmin[cb]
        at = np.full(n_clusters, len(cols), np.int64)
        np.minimum.at(at, cb[tie], np.flatnonzero(tie))
        jb = cols[at[partners]]
        ib_of[sel] = jb
        # and its nearest voxel of a: candidates within that distance, compared exactly
        near = tree.query_ball_point(c[jb], r=dmin[partners] * (1 + 1e-9) + 1e-12)
        for k, j, cand in zip(sel.tolist(), jb.tolist(), near, strict=True):
            cand = np.sort(np.asarray(cand, np.int64))
            d2 = ((c[ia[cand]] - c[j]) ** 2).sum(1)
            ia_of[k] = ia[cand[int(d2.argmin())]]
    pa, pb = c[ia_of], c[ib_of]
    dist = np.sqrt(((pa - pb) ** 2).sum(1))
    return (torch.from_numpy(dist).to(out_dtype), torch.from_numpy(pa).to(out_dtype),
            torch.from_numpy(pb).to(out_dtype))


def edge_features(
    coords: Tensor, cluster: Tensor, node_features: Tensor, edges: Tensor
) -> Tensor:
    """Pair features ``[E, N_EDGE]`` (float32) of the cluster pairs ``edges``, columns as in
    the module docstring; ``node_features`` is :func:`cluster_features` of the same clusters.

    Why: the closest approach and where it sits relative to each cluster's ends (a track
    continues another at its end; a shower fragment points back at its parent) are the
    cues that node features alone cannot give.
    """
    e = edges.detach().cpu().to(torch.int64).reshape(2, -1)
    if e.shape[1] == 0:
        return torch.zeros(0, N_EDGE, dtype=torch.float32)
    dist, pa, pb = closest_points(coords.detach().to(torch.float64), cluster, e)
    x = node_features.detach().cpu().to(torch.float64)
    i, j = e[0], e[1]
    disp = pb - pa
    axis_i, axis_j = x[i, AXIS], x[j, AXIS]
    unit = disp / dist.clamp_min(1e-12)[:, None]
    cols = [
        dist[:, None],
        disp,
        torch.linalg.norm(x[j, CENTROID] - x[i, CENTROID], dim=1)[:, None],
        (axis_i * axis_j).sum(1).abs()[:, None],
        (axis_i * unit).sum(1).abs()[:, None],
        (axis_j * unit).sum(1).abs()[:, None],
        torch.linalg.norm(pa - x[i, START], dim=1)[:, None],
        torch.linalg.norm(pa - x[i, END], dim=1)[:, None],
        torch.linalg.norm(pb - x[j, START], dim=1)[:, None],
        torch.linalg.norm(pb - x[j, END], dim=1)[:, None],
    ]
    return torch.cat(cols, 1).to(torch.float32)


def pointing_features(coords: Tensor, cluster: Tensor, node_features: Tensor, edges: Tensor
                      ) -> Tensor:
    """Pair features ``[E, N_POINTING]`` (float32) of the cluster pairs ``edges``, columns as
    in the module docstring: how each cluster's principal axis points at the other, and
    where the two axes meet. ``node_features`` is :func:`cluster_features` of the same
    clusters."""
    e = edges.detach().cpu().to(torch.int64).reshape(2, -1)
    if e.shape[1] == 0:
        return torch.zeros(0, N_POINTING, dtype=torch.float32)
    x = node_features.detach().cpu().to(torch.float64)
    c = coords.detach().cpu().to(torch.float64)  # the frame of the centroids and ends
    cl = cluster.detach().cpu().to(torch.int64)
    n = len(x)
    centre, axis = x[:, CENTROID], x[:, AXIS]
    # impact[a, b]: distance from a's axis line to b's nearest voxel
    impact = torch.full((n, n), float("inf"), dtype=torch.float64)
    for a in range(n):
        rel = c - centre[a]
        perp = torch.linalg.norm(rel - (rel @ axis[a])[:, None] * axis[a], dim=1)
        impact[a].scatter_reduce_(0, cl, perp, "amin")
    i, j = e[0], e[1]
    lo = torch.minimum(impact[i, j], impact[j, i])
    hi = torch.maximum(impact[i, j], impact[j, i])
    # closest approach of the lines p + s u and q + t v
    p, u, q, v = centre[i], axis[i], centre[j], axis[j]
    w = p - q
    b, d, f = (u * v).sum(1), (u * w).sum(1), (v * w).sum(1)
    den = 1.0 - b * b
    parallel = den < 1e-6
    den = torch.where(parallel, torch.ones_like(den), den)
    s, t = (b * f - d) / den, (f - b * d) / den
    doca = torch.where(parallel, torch.linalg.norm(torch.linalg.cross(w, u), dim=1),
                       torch.linalg.norm(p + s[:, None] * u - q - t[:, None] * v, dim=1))
    meet = 0.5 * (p + s[:, None] * u + q + t[:, None] * v)

    def behind(k: Tensor, ax: Tensor) -> Tensor:
        """Signed distance along ``ax`` from cluster k's nearer end to ``meet``: > 0 outside."""
        a = ((meet - x[k, START]) * ax).sum(1)
        z = ((meet - x[k, END]) * ax).sum(1)
        near, far = torch.minimum(a, z), torch.maximum(a, z)
        return torch.where(near > 0, near, torch.where(far < 0, -far, -torch.minimum(-near, far)))

    bi = torch.where(parallel, torch.zeros_like(b), behind(i, u))
    bj = torch.where(parallel, torch.zeros_like(b), behind(j, v))

    def slog(y: Tensor) -> Tensor:
        return torch.sign(y) * torch.log1p(y.abs())

    cols = [torch.log1p(lo), torch.log1p(hi), torch.log1p(doca),
            slog(torch.minimum(bi, bj)), slog(torch.maximum(bi, bj))]
    return torch.stack(cols, 1).to(torch.float32)
