"""Classical particle-level reconstruction: the hand-tuned chain the learned one is compared
with on the same events (scored by :mod:`larchain.reco.metrics`).

Input: voxel coordinates (integer voxel indices; every distance here is in voxel units),
charge (electrons) and a semantic class per voxel (predicted, or true for an upper bound).

1. Fragments (:func:`dbscan_fragments`): DBSCAN (``eps``, ``min_samples``) separately within
   each semantic class, so a fragment never mixes classes. ``eps=1.8`` joins the 26
   neighbours of a voxel (diagonal sqrt(3) = 1.73) and nothing further. DBSCAN noise points
   (only with ``min_samples > 1``) become singleton fragments. Ids 0..F-1 in order of each
   fragment's first voxel.
2. Track breaking (:func:`break_tracks`, skipped with ``track_linearity=None``): tracks
   leaving one vertex touch, so DBSCAN makes them one fragment. Track voxels whose
   neighbourhood (``track_radius`` = 4 voxels) has a local linearity (l1 - l2) / l1 of the
   covariance eigenvalues below ``track_linearity`` (0.85) -- vertices and sharp kinks --
   are set aside, the rest is re-clustered and the set-aside voxels join their nearest
   kept piece. Above ~0.9 (or with a 3-voxel radius) muons shatter at every wiggle.
   Then (:func:`split_kinks`, skipped with ``kink_angle=None``) each track fragment is cut
   where its spine bends: a particle that ends where another begins (a pion's hadronic
   scatter, a decay in flight) stays linear in every 4-voxel neighbourhood, so the linearity
   cut above misses it. The spine is the fragment's longest geodesic path (two Dijkstra
   sweeps over the touching-voxel graph), simplified by Ramer-Douglas-Peucker to within
   ``kink_tolerance`` voxels; a corner between two simplified segments of at least
   ``kink_min_segment`` voxels that turns by more than ``kink_angle`` degrees is a cut.
   Voxels follow their nearest spine point; pieces are cut again the same way (their own
   spine may be a branch the first one skipped). Multiple scattering (Highland) turns a
   100 MeV/c muon by ~3.7 degrees rms over 1.5 cm (5 voxels), so 20 degrees is beyond 5
   sigma; what it may cut
   wrongly (a low-energy proton's last voxels) the fragment GNN can join back.
3. Particles (:func:`group_particles`): a fragment's class is its voxels' majority class.
   Track, Michel, delta and low-energy fragments are one particle each. Shower fragments are
   taken from largest to smallest (ties: lower fragment id); each joins an existing shower
   particle if (a) its closest voxel is at most ``shower_distance`` from that particle's
   voxels, or (b) its centroid lies in the cone of the particle's seed: apex at the seed's
   start, axis the seed's principal axis, ``cos >= shower_cos``, at most ``cone_length``
   from the apex. The seed is the particle's first (largest) fragment; cones are only drawn
   from seeds of at least ``MIN_CONE_VOXELS`` voxels (smaller ones have no axis to speak
   of). The seed's start is the end of its principal axis where it is thinner (mean
   distance from the axis over the end third of its extent): EM showers widen downstream.
   Several candidates: the touching one with the closest voxels, else the cone whose apex
   is nearest the fragment's centroid. A fragment joining nothing seeds a new particle.
   Shower pieces (brems photons) lie up to ~300 voxels from the trunk, hence the long cone.
4. Interactions (:func:`group_interactions`): particles whose closest voxels are at most
   ``distance`` apart are connected; interactions are the connected components. Gaps inside
   one interaction (neutral hops, dead stretches) need ~20 voxels; separate interactions in
   the simulated samples are mostly further apart. Then (:func:`attach_showers`, skipped
   with ``pointing_cos=None``) an interaction made of showers only (a displaced photon) joins
   the interaction holding the nearest non-shower voxel inside its backward cone
   (``pointing_cos``, at most ``shower_cone_length`` away).
5. Identification (:func:`classify_particles`), by the particle's majority class:

   * Michel, delta: electron, not primary.
   * shower: electron if its closest voxel is within ``TOUCH_DISTANCE`` (2) voxels of a
     track particle (it starts at a vertex, as an electron from a neutrino interaction
     does), else photon (displaced by its conversion length); primary.
   * track: proton if charge per unit length (total charge / extent along the principal
     axis, extent = max - min projection + 1 voxel) exceeds ``proton_charge_per_length``
     (protons ionise more densely: true protons >= 36k e/voxel for 95%, muons <= 38k for
     95% with a median of 17k), else muon; primary. Pions are never called: a minimum
     ionising pion looks like a muon to these heuristics. Decay products (a muon from a
     pion) are not recognised, so every track counts as primary.
   * low energy: photon, primary (in the simulated samples these are almost all primary
     low-energy photons).

Parameters in :data:`DEFAULTS` were tuned by hand on true semantic labels (events 0-63 of
a simulated sample); with predicted labels they may want retuning.

Closest-voxel distances use per-cluster :class:`scipy.spatial.cKDTree` queries for the
cluster pairs whose bounding boxes are close enough (no voxel x voxel matrices).
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components, dijkstra
from scipy.spatial import cKDTree
from sklearn.cluster import DBSCAN

from larchain.sim.truth import DELTA, LOW_ENERGY, MICHEL, SHOWER, TRACK

PHOTON_T, ELECTRON_T, MUON_T, PION_T, PROTON_T = range(5)  # PARTICLE_TYPES order

#: Recommended parameters (tuned on true semantic labels; see :func:`baseline_chain`).
DEFAULTS: dict[str, float] = {
    "eps": 1.8,
    "shower_distance": 3.0,
    "shower_cos": 0.85,
    "shower_cone_length": 300.0,
    "interaction_distance": 20.0,
    "pointing_cos": 0.9,
    "proton_charge_per_length": 30_000.0,
    "track_radius": 4.0,
    "track_linearity": 0.85,
    "kink_angle": 20.0,
    "kink_tolerance": 1.5,
    "kink_min_segment": 4.0,
}
#: Deepest re-cut of a piece in :func:`split_kinks`.
MAX_KINK_DEPTH = 4
#: Seeds smaller than this draw no cone (their axis is noise).
MIN_CONE_VOXELS = 10
#: A shower within this many voxels of a track starts at a vertex: electron.
TOUCH_DISTANCE = 2.0


def _relabel_first_seen(labels: np.ndarray) -> np.ndarray:
    """Ids 0..K-1 in order of first occurrence: depends only on the partition and the voxel
    order, not on how a clustering happened to number its clusters."""
    _, first, inv = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    return rank[inv.ravel()]


def _majority(labels: np.ndarray, values: np.ndarray, n_labels: int, n_values: int
              ) -> np.ndarray:
    """Most common value per label (ties: lowest value)."""
    counts = np.bincount(labels * n_values + values, minlength=n_labels * n_values)
    return counts.reshape(n_labels, n_values).argmax(1)


def _members(labels: np.ndarray, n: int) -> list[np.ndarray]:
    """Voxel indices of each cluster 0..n-1."""
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(n + 1))
    return [order[bounds[i]:bounds[i + 1]] for i in range(n)]


def _close_pairs(coords: np.ndarray, members: list[np.ndarray], distance: float,
                 among: np.ndarray | None = None) -> dict[tuple[int, int], float]:
    """Closest-voxel distance of every cluster pair (i < j) at most ``distance`` apart.
    Bounding boxes rule out most pairs; the rest query one cluster's KD tree."""
    idx = np.arange(len(members)) if among is None else np.asarray(among)
    if len(idx) < 2:
        return {}
    c = coords.astype(np.float64)
    lo = np.array([c[members[i]].min(0) for i in idx])
    hi = np.array([c[members[i]].max(0) for i in idx])
    gap = np.maximum(0.0, np.maximum(lo[:, None] - hi[None], lo[None] - hi[:, None]))
    near = np.linalg.norm(gap, axis=2) <= distance
    a, b = np.nonzero(np.triu(near, 1))
    trees: dict[int, cKDTree] = {}
    out: dict[tuple[int, int], float] = {}
    for i, j in zip(idx[a].tolist(), idx[b].tolist(), strict=True):
        small, big = (i, j) if len(members[i]) <= len(members[j]) else (j, i)
        if big not in trees:
            trees[big] = cKDTree(c[members[big]])
        d, _ = trees[big].query(c[members[small]], distance_upper_bound=distance + 1e-9)
        dmin = float(d.min())
        if dmin <= distance:
            out[(min(i, j), max(i, j))] = dmin
    return out


def _principal_axes(coords: np.ndarray, members: list[np.ndarray]
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Centroid and unit principal axis (largest-variance eigenvector) per cluster."""
    cent = np.array([coords[m].mean(0) for m in members]).reshape(-1, 3)
    cov = np.array([np.cov(coords[m].T, bias=True) if len(m) > 1 else np.zeros((3, 3))
                    for m in members]).reshape(-1, 3, 3)
    _, vec = np.linalg.eigh(cov)
    return cent, vec[:, :, -1]


def dbscan_fragments(coords: np.ndarray, semantic: np.ndarray, eps: float = 1.8,
                     min_samples: int = 1) -> np.ndarray:
    """Per-voxel fragment ids 0..F-1: DBSCAN within each semantic class (classes never
    merge); noise points are singletons."""
    coords = np.asarray(coords, dtype=np.float64)
    semantic = np.asarray(semantic)
    labels = np.empty(len(coords), dtype=np.int64)
    offset = 0
    for cls in np.unique(semantic):
        sel = np.flatnonzero(semantic == cls)
        lab = DBSCAN(eps=eps, min_samples=min_samples).fit_predict(coords[sel])
        noise = lab < 0
        lab[noise] = lab.max(initial=-1) + 1 + np.arange(noise.sum())
        labels[sel] = lab + offset
        offset += int(lab.max(initial=-1)) + 1
    return _relabel_first_seen(labels) if len(labels) else labels


def local_linearity(coords: np.ndarray, radius: float) -> np.ndarray:
    """Linearity (l1 - l2) / l1 of the covariance eigenvalues of each voxel's neighbours
    within ``radius`` (0 where the neighbourhood is a single voxel). Sparse neighbour
    matrix: about N x (neighbours per voxel) entries."""
    x = np.asarray(coords, dtype=np.float64)
    if len(x) == 0:
        return np.zeros(0)
    pairs = cKDTree(x).query_pairs(radius, output_type="ndarray")
    n_vox = len(x)
    rows = np.concatenate([pairs[:, 0], pairs[:, 1], np.arange(n_vox)])
    cols = np.concatenate([pairs[:, 1], pairs[:, 0], np.arange(n_vox)])
    near = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n_vox, n_vox)).tocsr()
    n = np.asarray(near.sum(1)).ravel()
    mean = (near @ x) / n[:, None]
    outer = (x[:, :, None] * x[:, None, :]).reshape(-1, 9)
    cov = (near @ outer).reshape(-1, 3, 3) / n[:, None, None]
    cov -= mean[:, :, None] * mean[:, None, :]
    ev = np.linalg.eigvalsh(cov)
    l1, l2 = ev[:, 2], ev[:, 1]
    return np.where(l1 > 1e-9, (l1 - l2) / np.maximum(l1, 1e-9), 0.0)


def break_tracks(coords: np.ndarray, semantic: np.ndarray, fragment: np.ndarray, *,
                 radius: float, linearity: float, eps: float = 1.8) -> np.ndarray:
    """Split track fragments at vertices and kinks: voxels whose neighbourhood (``radius``)
    has linearity below ``linearity`` are set aside, the rest of each track fragment is
    re-clustered (DBSCAN ``eps``) and every set-aside voxel joins the piece of its own
    fragment holding its nearest kept voxel. A fragment with nothing kept stays whole.
    Returns per-voxel fragment ids 0..F-1."""
    coords = np.asarray(coords, dtype=np.float64)
    frag = np.asarray(fragment).astype(np.int64).copy()
    is_track = np.asarray(semantic) == TRACK
    if not is_track.any():
        return _relabel_first_seen(frag) if len(frag) else frag
    lin = np.zeros(len(coords))
    lin[is_track] = local_linearity(coords[is_track], radius)
    next_id = int(frag.max()) + 1
    for f in np.unique(frag[is_track]).tolist():
        sel = np.flatnonzero((frag == f) & is_track)
        keep = lin[sel] >= linearity
        if not keep.any() or keep.all():
            continue
        kept = sel[keep]
        lab = DBSCAN(eps=eps, min_samples=1).fit_predict(coords[kept])
        if lab.max() == 0:
            continue
        _, nearest = cKDTree(coords[kept]).query(coords[sel[~keep]])
        frag[kept] = next_id + lab
        frag[sel[~keep]] = next_id + lab[nearest]
        next_id += int(lab.max()) + 1
    return _relabel_first_seen(frag)


def _simplify(points: np.ndarray, tolerance: float) -> np.ndarray:
    """Indices of the Ramer-Douglas-Peucker simplification of an ordered polyline: every
    point lies within ``tolerance`` of the kept polyline."""
    keep, stack = [0, len(points) - 1], [(0, len(points) - 1)]
    while stack:
        a, b = stack.pop()
        if b - a < 2:
            continue
        chord = points[b] - points[a]
        length = np.linalg.norm(chord)
        rel = points[a + 1:b] - points[a]
        dist = (np.linalg.norm(np.cross(rel, chord / length), axis=1) if length > 1e-9
                else np.linalg.norm(rel, axis=1))
        k = int(dist.argmax())
        if dist[k] > tolerance:
            keep.append(a + 1 + k)
            stack += [(a, a + 1 + k), (a + 1 + k, b)]
    return np.unique(keep)


def _spine(x: np.ndarray, eps: float) -> np.ndarray:
    """Voxel indices along the longest geodesic path of the touching-voxel graph (two
    Dijkstra sweeps: the voxel farthest from voxel 0, then the one farthest from it)."""
    pairs = cKDTree(x).query_pairs(eps, output_type="ndarray")
    n = len(x)
    w = np.linalg.norm(x[pairs[:, 0]] - x[pairs[:, 1]], axis=1)
    graph = coo_matrix((w, (pairs[:, 0], pairs[:, 1])), shape=(n, n)).tocsr()
    d0 = dijkstra(graph, directed=False, indices=0)
    a = int(np.where(np.isfinite(d0), d0, -1.0).argmax())
    da, pred = dijkstra(graph, directed=False, indices=a, return_predecessors=True)
    path = [int(np.where(np.isfinite(da), da, -1.0).argmax())]
    while path[-1] != a:
        path.append(int(pred[path[-1]]))
    return np.array(path[::-1])


def _kink_pieces(x: np.ndarray, angle: float, tolerance: float, min_segment: float,
                 eps: float, depth: int = 0) -> np.ndarray:
    """Piece ids 0..K-1 of one track fragment's voxels, cut at the bends of its spine."""
    n = len(x)
    if n < 2 * min_segment or depth > MAX_KINK_DEPTH:
        return np.zeros(n, dtype=np.int64)
    spine = x[_spine(x, eps)]
    corner = _simplify(spine, tolerance)
    u = spine[corner[1:-1]] - spine[corner[:-2]]
    v = spine[corner[2:]] - spine[corner[1:-1]]
    lu, lv = np.linalg.norm(u, axis=1), np.linalg.norm(v, axis=1)
    cos = np.einsum("ij,ij->i", u, v) / np.maximum(lu * lv, 1e-12)
    bend = (lu >= min_segment) & (lv >= min_segment) & (cos < np.cos(np.radians(angle)))
    cuts = corner[1:-1][bend]
    if not len(cuts):
        return np.zeros(n, dtype=np.int64)
    _, nearest = cKDTree(spine).query(x)
    piece = np.searchsorted(cuts, nearest, side="right")
    out, next_id = np.zeros(n, dtype=np.int64), 0
    for p in np.unique(piece).tolist():
        sel = np.flatnonzero(piece == p)
        sub = _kink_pieces(x[sel], angle, tolerance, min_segment, eps, depth + 1)
        out[sel] = next_id + sub
        next_id += int(sub.max()) + 1
    return out


def split_kinks(coords: np.ndarray, semantic: np.ndarray, fragment: np.ndarray, *,
                angle: float, tolerance: float, min_segment: float, eps: float = 1.8
                ) -> np.ndarray:
    """Cut track fragments where their spine turns by more than ``angle`` degrees (see the
    module docstring). Returns per-voxel fragment ids 0..F-1."""
    coords = np.asarray(coords, dtype=np.float64)
    frag = np.asarray(fragment).astype(np.int64).copy()
    is_track = np.asarray(semantic) == TRACK
    next_id = int(frag.max(initial=-1)) + 1
    for f in np.unique(frag[is_track]).tolist():
        sel = np.flatnonzero((frag == f) & is_track)
        piece = _kink_pieces(coords[sel], angle, tolerance, min_segment, eps)
        if piece.max() > 0:
            frag[sel] = next_id + piece
            next_id += int(piece.max()) + 1
    return _relabel_first_seen(frag) if len(frag) else frag


def _seed_start(coords: np.ndarray, cent: np.ndarray, axis: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """Apex and forward direction of a shower seed: the thinner end of its principal axis."""
    x = coords - cent
    t = x @ axis
    r = np.linalg.norm(x - t[:, None] * axis, axis=1)
    lo, hi = t.min(), t.max()
    third = (hi - lo) / 3.0
    r_lo = r[t <= lo + third].mean()
    r_hi = r[t >= hi - third].mean()
    if r_hi < r_lo:
        axis, lo = -axis, -hi
    return cent + lo * axis, axis


def group_particles(coords: np.ndarray, semantic: np.ndarray, fragment: np.ndarray, *,
                    shower_distance: float, shower_cos: float,
                    cone_length: float = 300.0) -> np.ndarray:
    """Per-voxel particle ids 0..P-1: non-shower fragments alone, shower fragments grouped
    around their largest fragments (see the module docstring)."""
    coords = np.asarray(coords, dtype=np.float64)
    frag = _relabel_first_seen(np.asarray(fragment)) if len(coords) else np.zeros(0, np.int64)
    n_frag = int(frag.max(initial=-1)) + 1
    members = _members(frag, n_frag)
    fsem = _majority(frag, np.asarray(semantic, dtype=np.int64), n_frag, 5)
    owner = np.arange(n_frag)  # fragment -> particle (a fragment id)

    showers = np.flatnonzero(fsem == SHOWER)
    sizes = np.array([len(members[f]) for f in showers])
    showers = showers[np.lexsort((showers, -sizes))]  # largest first, then lower id
    close = _close_pairs(coords, members, shower_distance, among=showers)
    cent, axes = _principal_axes(coords, [members[f] for f in showers])
    where = {int(f): k for k, f in enumerate(showers)}

    neighbours: dict[int, list[tuple[int, float]]] = {int(f): [] for f in showers}
    for (i, j), d in close.items():
        neighbours[i].append((j, d))
        neighbours[j].append((i, d))
    done = np.zeros(n_frag, dtype=bool)
    apex: dict[int, np.ndarray] = {}  # seed fragment -> cone apex, forward direction
    direction: dict[int, np.ndarray] = {}
    for f in showers.tolist():
        touch: dict[int, float] = {}
        for g, d in neighbours[f]:
            if done[g]:
                s = int(owner[g])
                touch[s] = min(d, touch.get(s, np.inf))
        best = min(touch, key=lambda s: (touch[s], s)) if touch else -1
        if best < 0:
            best_len = np.inf
            for s in apex:
                v = cent[where[f]] - apex[s]
                length = float(np.linalg.norm(v))
                if 0 < length <= cone_length and v @ direction[s] >= shower_cos * length \
                        and length < best_len:
                    best, best_len = s, length
        done[f] = True
        if best >= 0:
            owner[f] = best
        elif len(members[f]) >= MIN_CONE_VOXELS:  # a new seed; big enough for a cone
            k = where[f]
            apex[f], direction[f] = _seed_start(coords[members[f]], cent[k], axes[k])
    return _relabel_first_seen(owner[frag]) if len(frag) else frag


def group_interactions(coords: np.ndarray, particle: np.ndarray, *, distance: float
                       ) -> np.ndarray:
    """Per-voxel interaction ids: connected components of particles whose closest voxels are
    at most ``distance`` apart."""
    coords = np.asarray(coords, dtype=np.float64)
    if len(coords) == 0:
        return np.zeros(0, dtype=np.int64)
    part = _relabel_first_seen(np.asarray(particle))
    n = int(part.max()) + 1
    pairs = list(_close_pairs(coords, _members(part, n), distance))
    a = np.array([p[0] for p in pairs], dtype=np.int64)
    b = np.array([p[1] for p in pairs], dtype=np.int64)
    graph = coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    return _relabel_first_seen(comp[part])


def attach_showers(coords: np.ndarray, semantic: np.ndarray, particle: np.ndarray,
                   interaction: np.ndarray, *, cos: float, max_distance: float) -> np.ndarray:
    """Join displaced photon showers to the interaction they point back to: an interaction
    made of shower voxels only takes its largest particle's principal axis, oriented and
    started at the thinner end (as a shower seed); voxels of interactions holding any other
    class that lie behind the start, within ``max_distance`` and inside the backward cone
    ``cos``, are candidates; the interaction of the nearest one absorbs it. Returns
    per-voxel interaction ids 0..I-1."""
    coords = np.asarray(coords, dtype=np.float64)
    inter = _relabel_first_seen(np.asarray(interaction)) if len(coords) else \
        np.zeros(0, np.int64)
    n = int(inter.max(initial=-1)) + 1
    sem = np.asarray(semantic)
    only_shower = np.bincount(inter, weights=(sem != SHOWER), minlength=n) == 0
    target = np.flatnonzero(~only_shower[inter])  # voxels that can receive a shower
    if not len(target) or not only_shower.any():
        return inter
    merged = np.arange(n)
    part = np.asarray(particle)
    for i in np.flatnonzero(only_shower).tolist():
        sel = np.flatnonzero(inter == i)
        ids, counts = np.unique(part[sel], return_counts=True)
        seed = sel[part[sel] == ids[np.argmax(counts)]]
        if len(seed) < MIN_CONE_VOXELS:
            continue
        (cent,), (axis,) = _principal_axes(coords, [seed])
        apex, forward = _seed_start(coords[seed], cent, axis)
        back = apex - coords[target]  # from candidate voxel to the shower start
        dist = np.linalg.norm(back, axis=1)
        ok = (dist <= max_distance) & (back @ forward >= cos * dist)
        if ok.any():
            merged[i] = inter[target[ok][np.argmin(dist[ok])]]
    return _relabel_first_seen(merged[inter])


def classify_particles(coords: np.ndarray, charge: np.ndarray, semantic: np.ndarray,
                       particle: np.ndarray, *, proton_charge_per_length: float
                       ) -> tuple[np.ndarray, np.ndarray]:
    """(type, primary) per particle id 0..P-1 (``particle`` must use ids 0..P-1), by the
    rules in the module docstring."""
    coords = np.asarray(coords, dtype=np.float64)
    charge = np.asarray(charge, dtype=np.float64)
    part = np.asarray(particle, dtype=np.int64)
    n = int(part.max(initial=-1)) + 1
    members = _members(part, n)
    psem = _majority(part, np.asarray(semantic, dtype=np.int64), n, 5)
    ptype = np.full(n, PHOTON_T, dtype=np.int64)
    primary = np.ones(n, dtype=bool)

    ptype[(psem == MICHEL) | (psem == DELTA)] = ELECTRON_T
    primary[(psem == MICHEL) | (psem == DELTA)] = False

    tracks = np.flatnonzero(psem == TRACK)
    if len(tracks):
        cent, axes = _principal_axes(coords, [members[p] for p in tracks])
        for k, p in enumerate(tracks.tolist()):
            t = (coords[members[p]] - cent[k]) @ axes[k]
            per_length = charge[members[p]].sum() / (t.max() - t.min() + 1.0)
            ptype[p] = PROTON_T if per_length > proton_charge_per_length else MUON_T

    showers = np.flatnonzero(psem == SHOWER)
    if len(showers) and len(tracks):
        close = _close_pairs(coords, members, TOUCH_DISTANCE,
                             among=np.concatenate([showers, tracks]))
        is_track = np.zeros(n, dtype=bool)
        is_track[tracks] = True
        for i, j in close:
            if is_track[i] != is_track[j]:
                ptype[j if is_track[i] else i] = ELECTRON_T
    ptype[psem == LOW_ENERGY] = PHOTON_T
    return ptype, primary


def baseline_chain(coords: np.ndarray, charge: np.ndarray, semantic: np.ndarray, *,
                   eps: float = DEFAULTS["eps"],
                   shower_distance: float = DEFAULTS["shower_distance"],
                   shower_cos: float = DEFAULTS["shower_cos"],
                   shower_cone_length: float = DEFAULTS["shower_cone_length"],
                   interaction_distance: float = DEFAULTS["interaction_distance"],
                   pointing_cos: float | None = DEFAULTS["pointing_cos"],
                   proton_charge_per_length: float = DEFAULTS["proton_charge_per_length"],
                   track_radius: float = DEFAULTS["track_radius"],
                   track_linearity: float | None = DEFAULTS["track_linearity"],
                   kink_angle: float | None = DEFAULTS["kink_angle"],
                   kink_tolerance: float = DEFAULTS["kink_tolerance"],
                   kink_min_segment: float = DEFAULTS["kink_min_segment"],
                   ) -> dict[str, np.ndarray]:
    """The whole classical chain on one event, in the format ``metrics.event_scores``
    takes as ``pred``: per-voxel ``fragment``, ``particle``, ``interaction``; per particle
    ``particle_ids`` (0..P-1), ``type``, ``primary``. ``track_linearity=None`` skips
    :func:`break_tracks`, ``kink_angle=None`` :func:`split_kinks` (both off: plain DBSCAN
    fragments)."""
    coords = np.asarray(coords)
    charge, semantic = np.asarray(charge), np.asarray(semantic)
    # Work in coordinate order, so that ties (equal sizes, equidistant voxels) and hence the
    # partitions do not depend on the order the voxels come in; ids follow the input order.
    order = np.lexsort((semantic, *coords.T[::-1])) if len(coords) else np.zeros(0, int)
    back = np.empty_like(order)
    back[order] = np.arange(len(order))
    coords, charge, semantic = coords[order], charge[order], semantic[order]

    fragment = dbscan_fragments(coords, semantic, eps=eps)
    if track_linearity is not None:
        fragment = break_tracks(coords, semantic, fragment, radius=track_radius,
                                linearity=track_linearity, eps=eps)
    if kink_angle is not None:
        fragment = split_kinks(coords, semantic, fragment, angle=kink_angle,
                               tolerance=kink_tolerance, min_segment=kink_min_segment, eps=eps)
    particle = group_particles(coords, semantic, fragment, shower_distance=shower_distance,
                               shower_cos=shower_cos, cone_length=shower_cone_length)
    interaction = group_interactions(coords, particle, distance=interaction_distance)
    if pointing_cos is not None:
        interaction = attach_showers(coords, semantic, particle, interaction, cos=pointing_cos,
                                     max_distance=shower_cone_length)
    ptype, primary = classify_particles(coords, charge, semantic, particle,
                                        proton_charge_per_length=proton_charge_per_length)

    out = {"fragment": fragment[back], "interaction": interaction[back]}
    out = {k: _relabel_first_seen(v) if len(v) else v for k, v in out.items()}
    particle = particle[back]
    new = _relabel_first_seen(particle) if len(particle) else particle
    ptype_new, primary_new = np.empty_like(ptype), np.empty_like(primary)
    ptype_new[new], primary_new[new] = ptype[particle], primary[particle]
    return {"fragment": out["fragment"], "particle": new, "interaction": out["interaction"],
            "particle_ids": np.arange(len(ptype), dtype=np.int64), "type": ptype_new,
            "primary": primary_new}
