"""Graphs, cluster/edge features (larchain.reco.graph) and the GNNs (larchain.reco.gnn).

Graph builders and closest points are checked against brute-force O(N^2) references;
cluster features against numpy on shapes with known answers; the networks for the
symmetries they promise (endpoint swap, node permutation) and for learning a toy task.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from larchain.reco.gnn import EdgeScorer, GraphNet, Standardise
from larchain.reco.graph import (
    AXIS,
    CENTROID,
    COVARIANCE,
    DQDX,
    DQDX_ENDS,
    EDGE_NAMES,
    EIGEN_FRACTIONS,
    END,
    END_ACTIVITY,
    END_RADIUS,
    LENGTH,
    N_EDGE,
    N_GEOMETRY,
    N_POINTING,
    RR_EDGES,
    RR_PROFILE,
    START,
    closest_points,
    cluster_features,
    complete_graph,
    components,
    edge_features,
    feature_names,
    pointing_features,
    radius_graph,
    touching,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.one_thread


def brute_radius(x: np.ndarray, r: float, group: np.ndarray | None = None) -> np.ndarray:
    d = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
    ok = np.triu(d <= r, 1)
    if group is not None:
        ok &= group[:, None] == group[None, :]
    i, j = np.nonzero(ok)  # row-major: already lexicographic
    return np.stack([i, j]).astype(np.int64)


# --------------------------------------------------------------------------------------------
# Graphs
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("radius", [0.0, 0.7, 2.5, 10.0])
@pytest.mark.parametrize("grouped", [False, True])
def test_radius_graph_float_matches_brute_force(radius, grouped):
    rng = np.random.default_rng(1)
    x = rng.uniform(-5, 20, size=(400, 3))
    group = rng.integers(0, 4, 400) * 7 - 3 if grouped else None  # arbitrary labels
    got = radius_graph(torch.tensor(x), radius, None if group is None else torch.tensor(group),
                       chunk=64)
    assert got.dtype == torch.int64 and got.shape[0] == 2
    np.testing.assert_array_equal(got.numpy(), brute_radius(x, radius, group))


@pytest.mark.parametrize("radius", [1.0, 2**0.5, 3**0.5, 2.0])
@pytest.mark.parametrize("grouped", [False, True])
def test_radius_graph_integer_boundary(radius, grouped):
    """Integer voxels at exactly ``radius``: the boundary is inclusive."""
    rng = np.random.default_rng(2)
    x = np.unique(rng.integers(0, 8, size=(300, 3)), axis=0)
    group = rng.integers(0, 3, len(x)) if grouped else None
    got = radius_graph(torch.tensor(x), radius, None if group is None else torch.tensor(group))
    want = brute_radius(x.astype(float), radius, group)
    assert want.shape[1] > 0
    np.testing.assert_array_equal(got.numpy(), want)


def test_radius_graph_edge_cases():
    assert radius_graph(torch.zeros(0, 3), 1.0).shape == (2, 0)
    assert radius_graph(torch.zeros(1, 3), 1.0).shape == (2, 0)
    # duplicate points are at distance 0
    np.testing.assert_array_equal(radius_graph(torch.zeros(3, 3), 0.0).numpy(),
                                  [[0, 0, 1], [1, 2, 2]])
    with pytest.raises(ValueError):
        radius_graph(torch.zeros(3, 3), -1.0)


def test_radius_graph_large_is_deterministic():
    """A track-like event of 20,000 voxels (no N x N anywhere)."""
    g = torch.Generator().manual_seed(3)
    t = torch.rand(20000, 1, generator=g) * 700
    x = torch.floor(t * torch.tensor([[0.6, 0.5, 0.3]]) + torch.randn(20000, 3, generator=g))
    a = radius_graph(x, 1.8)
    assert a.shape[1] > 20000
    assert torch.equal(a, radius_graph(x[torch.arange(20000)], 1.8, chunk=1000))
    assert bool((a[0] < a[1]).all())
    key = a[0] * 20000 + a[1]
    assert bool((key[1:] > key[:-1]).all())


def test_complete_graph():
    batch = torch.tensor([2, 0, 2, 1, 0, 2, 2, 5])
    e = complete_graph(batch)
    sizes = torch.bincount(batch)
    assert e.shape[1] == int((sizes * (sizes - 1) // 2).sum()) == 6 + 1 + 0 + 0
    want = [(i, j) for i, j in itertools.combinations(range(len(batch)), 2)
            if batch[i] == batch[j]]
    assert [tuple(p) for p in e.T.tolist()] == want
    assert complete_graph(torch.zeros(0, dtype=torch.int64)).shape == (2, 0)
    assert complete_graph(torch.arange(4)).shape == (2, 0)
    assert complete_graph(torch.zeros(5, dtype=torch.int64)).shape == (2, 10)


def test_components():
    edges = torch.tensor([[5, 1, 3, 7], [6, 4, 1, 5]])
    got = components(9, edges)
    # components by lowest node: {0}, {1,3,4}, {2}, {5,6,7}, {8}
    assert got.tolist() == [0, 1, 2, 1, 1, 3, 3, 3, 4]
    assert components(3, torch.zeros(2, 0, dtype=torch.int64)).tolist() == [0, 1, 2]
    assert components(0, torch.zeros(2, 0, dtype=torch.int64)).shape == (0,)


# --------------------------------------------------------------------------------------------
# Cluster features
# --------------------------------------------------------------------------------------------


def test_feature_names():
    names = feature_names(2)
    assert len(names) == N_GEOMETRY + 2 and names[-1] == "extra_1"
    assert names[CENTROID] == ["centroid_x", "centroid_y", "centroid_z"]
    assert names[AXIS] == ["axis_x", "axis_y", "axis_z"]
    assert names[START] == ["start_x", "start_y", "start_z"]
    assert names[END] == ["end_x", "end_y", "end_z"]
    assert names[LENGTH] == "length"
    assert len(EDGE_NAMES) == N_EDGE


def test_cluster_features_line_and_blob():
    rng = np.random.default_rng(4)
    direction = np.array([-2.0, 3.0, 6.0]) / 7.0  # unit; largest |component| positive
    t = rng.permutation(np.arange(11.0))
    line = np.array([1.0, 2.0, 3.0]) + t[:, None] * direction
    blob = rng.normal(size=(30, 3)) * [3.0, 1.0, 0.5] + 40
    coords = np.concatenate([blob[:10], line, blob[10:]])
    cluster = np.array([1] * 10 + [0] * 11 + [1] * 20)
    charge = rng.uniform(1e3, 2e4, len(coords))
    extra = rng.uniform(size=(len(coords), 2))
    f = cluster_features(torch.tensor(coords), torch.tensor(charge), torch.tensor(cluster),
                         torch.tensor(extra)).double().numpy()
    assert f.shape == (2, N_GEOMETRY + 2)
    for k in (0, 1):
        m = cluster == k
        pts = coords[m]
        assert f[k, 0] == pytest.approx(np.log1p(m.sum()))
        assert f[k, 1] == pytest.approx(np.log1p(charge[m].sum() / 1e4), rel=1e-6)
        np.testing.assert_allclose(f[k, CENTROID], pts.mean(0), rtol=1e-6)
        cov = np.cov(pts.T, bias=True)
        np.testing.assert_allclose(
            f[k, COVARIANCE], cov[[0, 1, 2, 0, 0, 1], [0, 1, 2, 1, 2, 2]], rtol=1e-5, atol=1e-5
        )
        ev = np.linalg.eigvalsh(cov)[::-1]
        np.testing.assert_allclose(f[k, EIGEN_FRACTIONS], ev / ev.sum(), atol=1e-6)
        np.testing.assert_allclose(f[k, N_GEOMETRY:], extra[m].mean(0), rtol=1e-6)
        # start/end are voxels of the cluster, length their separation along the axis
        proj = (pts - pts.mean(0)) @ f[k, AXIS].astype(float)
        assert f[k, LENGTH] == pytest.approx(np.ptp(proj), rel=1e-5)
        np.testing.assert_allclose(f[k, START], pts[proj.argmin()], rtol=1e-6)
        np.testing.assert_allclose(f[k, END], pts[proj.argmax()], rtol=1e-6)
    np.testing.assert_allclose(f[0, AXIS], direction, atol=1e-6)
    assert f[0, EIGEN_FRACTIONS][0] == pytest.approx(1.0, abs=1e-6)
    assert f[0, LENGTH] == pytest.approx(10.0, rel=1e-6)
    np.testing.assert_allclose(f[0, START], [1, 2, 3], atol=1e-6)
    np.testing.assert_allclose(f[0, END], np.array([1, 2, 3]) + 10 * direction, atol=1e-6)
    # blob axis: dominant spread along x
    assert abs(f[1, AXIS][0]) > 0.9


def test_cluster_features_charge_per_length_and_bragg_end():
    """A 21-voxel line along z with 1e4 electrons per voxel and a 'Bragg peak' of 5e4 in its
    last five voxels (z 16-20): mean charge per voxel of length, the peak end's and the other
    end's, whichever way the axis points."""
    z = np.arange(21.0)
    charge = np.where(z >= 16, 5e4, 1e4)
    for sign in (1.0, -1.0):
        coords = np.stack([np.zeros(21), np.zeros(21), sign * z], 1)
        f = cluster_features(torch.tensor(coords), torch.tensor(charge),
                             torch.zeros(21, dtype=torch.int64)).double().numpy()[0]
        assert f[DQDX] == pytest.approx(np.log1p(charge.sum() / 21 / 1e4), rel=1e-6)
        # END_WINDOW = 4 voxels of length: the five voxel centres within it
        high, low = f[DQDX_ENDS]
        assert high == pytest.approx(np.log1p(5.0), rel=1e-6)
        assert low == pytest.approx(np.log1p(1.0), rel=1e-6)
    # a single voxel: its charge per voxel at both ends
    f = cluster_features(torch.zeros(1, 3), torch.tensor([3e4]), torch.zeros(1, dtype=torch.int64))
    np.testing.assert_allclose(f[0, DQDX_ENDS].numpy(), np.log1p([3.0, 3.0]), rtol=1e-6)
    assert f[0, DQDX] == pytest.approx(np.log1p(3.0), rel=1e-6)


def test_cluster_features_end_activity_counts_clusters_touching_each_end():
    """A 21-voxel track along x with its Bragg peak at x = 20, and small clusters around it:
    two within END_RADIUS of the peak end (one at exactly the radius: inclusive), one just
    beyond it, one at the far end. The counts and charges at each end come out as placed,
    whichever end the axis calls start, and a cluster never counts itself."""
    assert END_RADIUS == 3.0
    x = np.arange(21.0)
    track = np.stack([x, np.zeros(21), np.zeros(21)], 1)
    pieces = [
        (track, np.where(x >= 16, 5e4, 1e4)),
        (np.array([[21.0, 1.0, 0.0], [22.0, 1.0, 0.0]]), np.array([2e4, 2e4])),  # 1.4 from the peak
        (np.array([[20.0, 0.0, 3.0]]), np.array([7e4])),  # exactly END_RADIUS
        (np.array([[20.0, -3.5, 0.0]]), np.array([9e4])),  # beyond
        (np.array([[-1.0, 0.0, 0.0]]), np.array([3e4])),  # touches the far end
        (np.array([[60.0, 60.0, 60.0]]), np.array([1e4])),  # alone
    ]
    coords = np.concatenate([c for c, _ in pieces])
    charge = np.concatenate([q for _, q in pieces])
    cluster = np.concatenate([np.full(len(c), k) for k, (c, _) in enumerate(pieces)])
    for sign in (1.0, -1.0):  # the axis convention puts the peak at 'end', then at 'start'
        f = cluster_features(torch.tensor(coords * sign), torch.tensor(charge),
                             torch.tensor(cluster)).double().numpy()
        n_bragg, n_far, q_bragg, q_far = f[0, END_ACTIVITY]
        assert (n_bragg, n_far) == (2, 1)
        assert q_bragg == pytest.approx(np.log1p((4e4 + 7e4) / 1e4), rel=1e-6)
        assert q_far == pytest.approx(np.log1p(3.0), rel=1e-6)
        np.testing.assert_array_equal(f[5, END_ACTIVITY], 0.0)
        # the far-end cluster (one voxel: both ends) touches only the track
        assert tuple(f[4, END_ACTIVITY][:2]) == (1, 1)
        assert f[4, END_ACTIVITY][2] == pytest.approx(np.log1p(charge[cluster == 0].sum() / 1e4),
                                                      rel=1e-6)


def test_cluster_features_charge_profile_from_the_bragg_end():
    """The 21-voxel track of the test above (Bragg peak at x = 20): charge per voxel of
    distance in each RR_EDGES bin, counted from the peak end whichever end the axis calls
    start; the last bin is reached only in part (8 of its 12 voxels). A lone voxel has its
    charge in the first bin and nothing beyond."""
    assert RR_EDGES == (0.0, 3.0, 6.0, 12.0, 24.0)
    x = np.arange(21.0)
    track = np.stack([x, np.zeros(21), np.zeros(21)], 1)
    q_track = np.where(x >= 16, 5e4, 1e4)
    coords = np.concatenate([track, [[50.0, 50.0, 50.0]]])
    charge = np.concatenate([q_track, [2e4]])
    cluster = np.array([0] * 21 + [1])
    # distances 0-2: x = 18-20; 3-5: x = 15-17; 6-11: x = 9-14; 12-20: x = 0-8
    expect = np.log1p(np.array([15e4 / 4, 11e4 / 4, 6e4 / 7, 9e4 / 9]) / 1e4)
    for sign in (1.0, -1.0):
        f = cluster_features(torch.tensor(coords * sign), torch.tensor(charge),
                             torch.tensor(cluster)).double().numpy()
        np.testing.assert_allclose(f[0, RR_PROFILE], expect, rtol=1e-6)
        np.testing.assert_allclose(f[1, RR_PROFILE], [np.log1p(2.0), 0, 0, 0], rtol=1e-6)


def test_cluster_features_axis_sign_and_single_voxel():
    # a line along -y: axis must come out +y whatever eigh returns
    line = torch.tensor([[5.0, -float(i), 2.0] for i in range(6)])
    single = torch.tensor([[7.0, 8.0, 9.0]])
    dup = torch.tensor([[1.0, 1.0, 1.0]] * 3)  # all voxels at one position: zero covariance
    coords = torch.cat([single, line, dup])
    cluster = torch.tensor([0] + [1] * 6 + [2] * 3)
    f = cluster_features(coords, torch.full((10,), 5e3), cluster)
    assert f.dtype == torch.float32 and f.shape == (3, N_GEOMETRY)
    np.testing.assert_allclose(f[1, AXIS].numpy(), [0, 1, 0], atol=1e-6)
    np.testing.assert_allclose(f[1, START].numpy(), [5, -5, 2])
    np.testing.assert_allclose(f[1, END].numpy(), [5, 0, 2])
    for k, p in ((0, [7, 8, 9]), (2, [1, 1, 1])):
        np.testing.assert_allclose(f[k, AXIS].numpy(), [1, 0, 0])
        np.testing.assert_allclose(f[k, EIGEN_FRACTIONS].numpy(), [1 / 3] * 3, rtol=1e-6)
        assert f[k, LENGTH] == 0
        assert torch.all(f[k, COVARIANCE] == 0)
        np.testing.assert_allclose(f[k, CENTROID].numpy(), p)
        np.testing.assert_allclose(f[k, START].numpy(), p)
        np.testing.assert_allclose(f[k, END].numpy(), p)
    assert f[0, 0] == pytest.approx(np.log(2))
    assert f[2, 1] == pytest.approx(np.log1p(1.5))
    with pytest.raises(ValueError):
        cluster_features(coords, torch.ones(10), cluster + 1)  # cluster 0 empty


# --------------------------------------------------------------------------------------------
# Closest points and edge features
# --------------------------------------------------------------------------------------------


def test_closest_points_brute_force():
    rng = np.random.default_rng(5)
    n, c = 2000, 40
    centres = rng.uniform(0, 100, size=(c, 3))
    cluster = rng.integers(0, c, n)
    coords = centres[cluster] + rng.normal(size=(n, 3)) * 4
    edges = complete_graph(torch.zeros(c, dtype=torch.int64))
    edges = torch.cat([edges, edges.flip(0)[:, :50]], 1)  # some reversed pairs too
    d, pa, pb = closest_points(torch.tensor(coords), torch.tensor(cluster), edges)
    assert d.dtype == torch.float64 and d.shape == (edges.shape[1],)
    for k, (a, b) in enumerate(edges.T.tolist()):
        xa, xb = coords[cluster == a], coords[cluster == b]
        dm = np.sqrt(((xa[:, None] - xb[None]) ** 2).sum(-1))
        ia, ib = np.unravel_index(dm.argmin(), dm.shape)
        assert d[k].item() == pytest.approx(dm.min(), rel=1e-12)
        np.testing.assert_array_equal(pa[k].numpy(), xa[ia])
        np.testing.assert_array_equal(pb[k].numpy(), xb[ib])
    empty = closest_points(torch.tensor(coords), torch.tensor(cluster),
                           torch.zeros(2, 0, dtype=torch.int64))
    assert [t.shape for t in empty] == [(0,), (0, 3), (0, 3)]


def test_closest_points_breaks_ties_on_a_voxel_grid_by_lowest_index():
    """On integer voxel coordinates equal distances are common. The voxel of the second
    cluster is the lowest-index one at the closest distance, and the first cluster's voxel the
    lowest-index one nearest to it (so features do not depend on how the search went)."""
    rng = np.random.default_rng(8)
    n, c = 600, 12
    cluster = rng.integers(0, c, n)
    coords = (rng.integers(0, 6, (c, 3))[cluster] * 3 + rng.integers(0, 4, (n, 3))).astype(float)
    coords, first = np.unique(coords, axis=0, return_index=True)  # one voxel per position
    cluster = cluster[first]
    order = rng.permutation(len(coords))
    coords, cluster = coords[order], cluster[order]
    edges = complete_graph(torch.zeros(c, dtype=torch.int64))
    edges = torch.cat([edges, edges.flip(0)], 1)
    d, pa, pb = closest_points(torch.tensor(coords), torch.tensor(cluster), edges)
    ties = 0
    for k, (a, b) in enumerate(edges.T.tolist()):
        xa, xb = coords[cluster == a], coords[cluster == b]
        dm = np.sqrt(((xa[:, None] - xb[None]) ** 2).sum(-1))
        jb = int(np.flatnonzero(dm.min(0) == dm.min())[0])
        ia = int(np.flatnonzero(dm[:, jb] == dm[:, jb].min())[0])
        ties += int((dm == dm.min()).sum() > 1)
        assert d[k].item() == dm.min()
        np.testing.assert_array_equal(pb[k].numpy(), xb[jb])
        np.testing.assert_array_equal(pa[k].numpy(), xa[ia])
    assert ties > 20  # the rule was exercised


def test_closest_points_large_event():
    """20,000 voxels in 200 clusters, all pairs: exact, in bounded memory (the
    chain's speed, this included, is measured by benchmarks/particle_reco.py)."""
    g = torch.Generator().manual_seed(6)
    cluster = torch.randint(0, 200, (20000,), generator=g)
    coords = torch.rand(200, 3, generator=g)[cluster] * 500 + torch.randn(20000, 3, generator=g)
    edges = complete_graph(torch.zeros(200, dtype=torch.int64))
    d, pa, pb = closest_points(coords, cluster, edges)
    assert d.dtype == torch.float32 and d.shape == (19900,)
    torch.testing.assert_close(d, torch.linalg.norm(pa - pb, dim=1))
    k = 1234
    a, b = edges[:, k].tolist()
    want = torch.cdist(coords[cluster == a].double(), coords[cluster == b].double()).min()
    assert d[k].item() == pytest.approx(want.item(), rel=1e-6)


def _segment(origin, direction, n):
    return [[float(o + k * d) for o, d in zip(origin, direction, strict=True)] for k in range(n)]


def test_touching_matches_the_closest_points_definition():
    """Clusters are joined (transitively) when their closest voxels are within the radius:
    the tree query over voxel pairs against closest_points over every cluster pair."""
    rng = np.random.default_rng(5)
    for _ in range(40):
        n = int(rng.integers(1, 300))
        coords = torch.as_tensor(rng.integers(0, 20, (n, 3)).astype(np.float32))
        cluster = torch.as_tensor(np.unique(rng.integers(0, 25, n), return_inverse=True)[1])
        radius = float(rng.choice([1.0, 1.5, 2.0, 3.0]))
        k = int(cluster.max()) + 1
        edges = complete_graph(torch.zeros(k, dtype=torch.int64))
        dist, _, _ = closest_points(coords, cluster, edges)
        assert torch.equal(touching(coords, cluster, radius),
                           components(k, edges[:, dist <= radius]))
    assert touching(torch.zeros(0, 3), torch.zeros(0, dtype=torch.int64), 2.0).numel() == 0


def test_pointing_features_of_a_pi0_like_layout():
    """Two 'photons' (lines) converting 20 and 30 voxels from a vertex blob at the origin,
    along +x and +y, and an unrelated line along z through (50, 60, z). Expected values are
    plain geometry: an axis line through the blob has impact 0 on it; the photons' axes meet
    at the origin, 20 and 30 voxels behind their first voxels; the unrelated line's axis
    passes 60 voxels from the x photon's and 50 from the y photon's."""
    a = _segment((20, 0, 0), (1, 0, 0), 30)
    blob = [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [-1.0, 0.0, 0.0]]
    c = _segment((0, 30, 0), (0, 1, 0), 30)
    d = _segment((50, 60, 40), (0, 0, 1), 30)
    coords = torch.tensor(a + blob + c + d)
    cluster = torch.tensor([0] * 30 + [1] * 5 + [2] * 30 + [3] * 30)
    x = cluster_features(coords, torch.ones(len(coords)), cluster)
    edges = complete_graph(torch.zeros(4, dtype=torch.int64))
    f = pointing_features(coords, cluster, x, edges).double()
    assert f.shape == (6, N_POINTING)
    raw = torch.sign(f) * torch.expm1(f.abs())  # every column is log1p or sign * log1p
    row = {tuple(e): raw[k] for k, e in enumerate(edges.T.tolist())}
    assert row[(0, 1)][0] == pytest.approx(0.0, abs=1e-6)  # x photon points through the blob
    assert row[(1, 2)][0] == pytest.approx(0.0, abs=1e-6)  # so does the y photon
    ab = row[(0, 2)]
    assert ab[2] == pytest.approx(0.0, abs=1e-4)  # the two photon axes meet ...
    assert ab[3:].tolist() == pytest.approx([20.0, 30.0], abs=1e-3)  # ... behind both
    assert row[(0, 3)][2] == pytest.approx(60.0, abs=1e-3)
    assert row[(2, 3)][2] == pytest.approx(50.0, abs=1e-3)
    # the x photon's axis and the z line meet at (50, 0, 0) - (50, 60, 0): 1 voxel past the
    # photon's far end (x = 49) and 40 before the z line's first voxel (z = 40)
    assert row[(0, 3)][3:].tolist() == pytest.approx([1.0, 40.0], abs=1e-3)
    # symmetric in the pair
    flipped = pointing_features(coords, cluster, x, edges.flip(0))
    assert torch.allclose(flipped, pointing_features(coords, cluster, x, edges))
    assert pointing_features(coords, cluster, x, edges[:, :0]).shape == (0, N_POINTING)


def test_pointing_features_of_parallel_lines():
    """Parallel axes never meet: the closest approach is their distance, 'behind' is 0."""
    coords = torch.tensor(_segment((0, 0, 0), (1, 0, 0), 10) + _segment((0, 7, 0), (1, 0, 0), 10))
    cluster = torch.tensor([0] * 10 + [1] * 10)
    x = cluster_features(coords, torch.ones(20), cluster)
    raw = torch.expm1(pointing_features(coords, cluster, x, torch.tensor([[0], [1]]))[0].double())
    assert raw.tolist() == pytest.approx([7.0, 7.0, 7.0, 0.0, 0.0], abs=1e-4)


def test_edge_features_hand_computed():
    # cluster 0: line along x from (0,0,0) to (4,0,0); cluster 1: line along y from (7,1,0)
    # to (7,5,0); cluster 2: a single voxel at (0,0,0) (touches cluster 0)
    c0 = [[float(i), 0.0, 0.0] for i in range(5)]
    c1 = [[7.0, 1.0 + i, 0.0] for i in range(5)]
    coords = torch.tensor(c0 + c1 + [[0.0, 0.0, 0.0]])
    cluster = torch.tensor([0] * 5 + [1] * 5 + [2])
    x = cluster_features(coords, torch.ones(11), cluster)
    edges = torch.tensor([[0, 0], [1, 2]])
    e = edge_features(coords, cluster, x, edges)
    assert e.shape == (2, N_EDGE) and e.dtype == torch.float32
    d = np.hypot(3, 1)
    want = [
        d, 3, 1, 0,  # closest (4,0,0) -> (7,1,0)
        np.hypot(5, 3),  # centroids (2,0,0), (7,3,0)
        0,  # perpendicular axes
        3 / d, 1 / d,
        4, 0,  # (4,0,0) is cluster 0's end
        0, 4,  # (7,1,0) is cluster 1's start
    ]
    np.testing.assert_allclose(e[0].numpy(), want, rtol=1e-6, atol=1e-6)
    # touching clusters: zero distance, cosines defined as 0
    np.testing.assert_allclose(e[1, :4].numpy(), 0)
    np.testing.assert_allclose(e[1, 6:8].numpy(), 0)
    assert e[1, 4] == pytest.approx(2.0)
    assert edge_features(coords, cluster, x, torch.zeros(2, 0, dtype=torch.int64)).shape == (
        0, N_EDGE)


# --------------------------------------------------------------------------------------------
# Networks
# --------------------------------------------------------------------------------------------


def test_standardise():
    s = Standardise(3)
    x = torch.randn(100, 3) * torch.tensor([1.0, 5.0, 0.0]) + torch.tensor([2.0, -1.0, 4.0])
    assert torch.equal(s(x), x)  # identity until fitted
    y = s.fit(x)(x)
    torch.testing.assert_close(y.mean(0), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(y[:, :2].std(0, correction=0), torch.ones(2))
    assert s.std[2] == pytest.approx(1e-6)
    assert set(dict(s.named_buffers())) == {"mean", "std"}


def _toy_graph(n: int, seed: int, edge_in: int = 3):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    edges = complete_graph(torch.randint(0, max(1, n // 6), (n,), generator=g))
    e = torch.randn(edges.shape[1], edge_in, generator=g)
    return x, edges, e


def test_edge_scorer_symmetric():
    torch.manual_seed(0)
    x, edges, e = _toy_graph(30, 1)
    model = EdgeScorer(6, 3)
    model.fit_normalisation(x, e)
    out = model(x, edges, e)
    assert out.shape == (edges.shape[1],)
    assert torch.equal(out, model(x, edges.flip(0), e))
    assert model(x, torch.zeros(2, 0, dtype=torch.int64), torch.zeros(0, 3)).shape == (0,)


def test_graph_net_symmetry_and_permutation():
    torch.manual_seed(0)
    x, edges, e = _toy_graph(40, 2)
    model = GraphNet(6, 3, hidden=16, layers=2, node_out=(5, 2)).double()
    model.fit_normalisation(x.double(), e.double())
    x, e = x.double(), e.double()
    logit, nodes = model(x, edges, e)
    assert logit.shape == (edges.shape[1],)
    assert [t.shape for t in nodes] == [(40, 5), (40, 2)]
    # swapping endpoints
    logit2, nodes2 = model(x, edges.flip(0), e)
    torch.testing.assert_close(logit2, logit, rtol=1e-12, atol=1e-12)
    # permuting nodes (and the edge list order)
    perm = torch.randperm(40)
    inv = torch.argsort(perm)  # new index of old node
    eperm = torch.randperm(edges.shape[1])
    logit3, nodes3 = model(x[perm], inv[edges][:, eperm], e[eperm])
    torch.testing.assert_close(logit3, logit[eperm], rtol=1e-10, atol=1e-10)
    for a, b in zip(nodes3, nodes, strict=True):
        torch.testing.assert_close(a, b[perm], rtol=1e-10, atol=1e-10)


def test_graph_net_degenerate_graphs():
    model = GraphNet(6, 3, hidden=8, layers=2, node_out=(4,))
    logit, (node,) = model(torch.randn(1, 6), torch.zeros(2, 0, dtype=torch.int64),
                           torch.zeros(0, 3))
    assert logit.shape == (0,) and node.shape == (1, 4) and torch.isfinite(node).all()
    logit, (node,) = model(torch.zeros(0, 6), torch.zeros(2, 0, dtype=torch.int64),
                           torch.zeros(0, 3))
    assert logit.shape == (0,) and node.shape == (0, 4)
    # an isolated node next to connected ones gets finite outputs
    logit, (node,) = model(torch.randn(3, 6), torch.tensor([[0], [1]]), torch.randn(1, 3))
    assert logit.shape == (1,) and torch.isfinite(node).all()
    with pytest.raises(ValueError):
        model(torch.randn(3, 6), torch.tensor([[0], [3]]), torch.randn(1, 3))


def _colour_graph(seed: int, n: int = 60):
    """Nodes with a noisy one-hot colour; edge label: same colour; node label: the colour."""
    g = torch.Generator().manual_seed(seed)
    colour = torch.randint(0, 3, (n,), generator=g)
    x = torch.cat([torch.eye(3)[colour] + 0.1 * torch.randn(n, 3, generator=g),
                   torch.randn(n, 2, generator=g)], 1)
    edges = complete_graph(torch.randint(0, 4, (n,), generator=g))
    e = torch.randn(edges.shape[1], 2, generator=g)
    label = (colour[edges[0]] == colour[edges[1]]).float()
    return x, edges, e, label, colour


def test_graph_net_learns_toy_task():
    torch.manual_seed(0)
    x, edges, e, label, colour = _colour_graph(7)
    model = GraphNet(5, 2, hidden=32, layers=2, node_out=(3,))
    model.fit_normalisation(x, e)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(300):
        logit, (node,) = model(x, edges, e)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logit, label)
        loss = loss + torch.nn.functional.cross_entropy(node, colour)
        opt.zero_grad()
        loss.backward()
        opt.step()
    x, edges, e, label, colour = _colour_graph(8)  # held out
    with torch.no_grad():
        logit, (node,) = model(x, edges, e)
    assert ((logit > 0).float() == label).float().mean() > 0.95
    assert (node.argmax(1) == colour).float().mean() > 0.95


def test_graph_net_gradients_are_reproducible_with_two_threads():
    """Same weights, same graph, two torch threads: every backward pass gives the same
    gradient bits. Nodes receive many edges each, so an unordered parallel accumulation of
    the gathered rows' gradients (what ``h[src]``'s backward does on CPU) shows up."""
    torch.manual_seed(0)
    n, e = 300, 30_000
    edges = torch.stack([torch.randint(0, n, (e,)), torch.randint(0, n, (e,))])
    edges = edges[:, edges[0] != edges[1]]
    x, ef = torch.randn(n, 8), torch.randn(edges.shape[1], 5)
    net = GraphNet(8, 5, hidden=32, layers=2, node_out=(5,))
    scorer = EdgeScorer(8, 5, hidden=32)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        seen = set()
        for _ in range(8):
            net.zero_grad()
            scorer.zero_grad()
            logit, (types,) = net(x, edges, ef)
            (logit.square().sum() + types.square().sum() + scorer(x, edges, ef).square().sum()
             ).backward()
            grads = [p.grad for m in (net, scorer) for p in m.parameters()]
            seen.add(b"".join(g.numpy().tobytes() for g in grads))
    finally:
        torch.set_num_threads(threads)
    assert len(seen) == 1
