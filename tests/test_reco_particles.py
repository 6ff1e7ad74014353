"""The particle-level chain: grouping, vertexing, energies, and training end to end on
synthetic events whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from larchain.reco import graph as G
from larchain.reco import metrics as M
from larchain.reco import particles as P
from larchain.sim.stopping import RangeTable
from larchain.sim.truth import SHOWER, TRACK


def test_majority_and_relabel():
    cluster = np.array([0, 0, 0, 1, 1, 2])
    label = np.array([5, 7, 7, 3, 9, 4])
    assert P.majority(cluster, label, 3).tolist() == [7, 3, 4]  # tie 3/9: smallest
    assert P._relabel(np.array([9, 9, 2, 5, 2])).tolist() == [0, 0, 1, 2, 1]


def test_average_linkage_resists_one_wrong_edge():
    """Two tight groups of four joined by one confident wrong edge: connected components of
    the thresholded edges merge them; average linkage keeps the groups apart (the two
    nodes of the wrong edge may pair up, but neither group follows them)."""
    n = 8
    i, j = torch.triu_indices(n, n, 1)
    edges = torch.stack([i, j])
    same = (i < 4) == (j < 4)
    prob = torch.where(same, 0.95, 0.02)
    prob[(i == 3) & (j == 4)] = 0.99
    labels = P.average_linkage(n, edges, prob, 0.5)
    assert len(set(labels[:3])) == 1 and len(set(labels[5:])) == 1
    assert labels[0] != labels[7]
    clean = P.average_linkage(n, edges, torch.where(same, 0.95, 0.02), 0.5)
    assert clean.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    from larchain.reco.graph import components
    assert len(np.unique(components(n, edges[:, prob > 0.5]).numpy())) == 1
    assert P.average_linkage(1, edges[:, :0], prob[:0], 0.5).tolist() == [0]


def test_weighted_linkage_with_unit_weights_is_scipy_average_linkage():
    rng = np.random.default_rng(4)
    n = 12
    i, j = torch.triu_indices(n, n, 1)
    keep = torch.as_tensor(rng.random(len(i)) < 0.7)
    edges = torch.stack([i[keep], j[keep]])
    for _ in range(5):
        prob = torch.as_tensor(rng.random(edges.shape[1]))
        assert (P.average_linkage(n, edges, prob, 0.4, np.ones(n)).tolist()
                == P.average_linkage(n, edges, prob, 0.4).tolist())


def test_voxel_weighted_linkage_stops_a_small_node_bridging_two_big_ones():
    """A 3-voxel particle scores 0.99 with two 200-voxel interactions that score 0.05 with
    each other. Over node pairs the mean after the first merge is (0.99 + 0.05) / 2 > 0.5
    and all three join; over voxel pairs it is (3 * 0.99 + 200 * 0.05) / 203 = 0.064."""
    edges = torch.tensor([[0, 0, 1], [1, 2, 2]])  # small-A, small-B, A-B
    prob = torch.tensor([0.99, 0.99, 0.05])
    assert P.average_linkage(3, edges, prob, 0.5).tolist() == [0, 0, 0]
    labels = P.average_linkage(3, edges, prob, 0.5, np.array([3, 200, 200]))
    assert labels[1] != labels[2] and labels[0] in (labels[1], labels[2])


def test_low_energy_particles_join_the_interaction_of_the_nearest_active_voxel():
    """Particles 0 and 1 (interactions 0 and 1) are tracks along x at y = 0 and y = 20;
    low-energy blobs 2-4 sit at y = 3 (near 0), y = 16 (near 1) and y = 9 / y = 12 (one
    voxel each: its nearest voxel, at y = 12, is 8 from track 1 and 12 from track 0)."""
    track0 = [[float(x), 0.0, 0.0] for x in range(10)]
    track1 = [[float(x), 20.0, 0.0] for x in range(10)]
    blobs = [[5.0, 3.0, 0.0], [6.0, 3.0, 0.0], [2.0, 16.0, 0.0], [8.0, 9.0, 0.0],
             [8.0, 12.0, 0.0]]
    coords = torch.tensor(track0 + track1 + blobs)
    particle = np.array([0] * 10 + [1] * 10 + [2, 2, 3, 4, 4])
    n = len(coords)
    ev = P.EventInput(0, coords, torch.ones(n), torch.zeros(n, 5), torch.zeros(n, 4))
    active = np.array([True, True, False, False, False])
    got = P.Chain._attach_low_energy(None, ev, particle, np.array([0, 1, 2, 3, 4]), active)
    assert got.tolist() == [0, 1, 0, 1, 1]
    alone = P.Chain._attach_low_energy(None, ev, particle, np.arange(5), np.zeros(5, bool))
    assert alone.tolist() == [0, 1, 2, 3, 4]  # nothing active: every particle stays alone


def test_vertex_is_the_common_start_of_the_primaries():
    v = np.array([10.0, 20.0, 30.0])
    dirs = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, -1.0]])
    start = np.array([v + 0.2 * d for d in dirs])
    end = np.array([v + 50 * d for d in dirs])
    # orientation unknown to the chain: swap one particle's ends
    start[1], end[1] = end[1].copy(), start[1].copy()
    got = P._vertex(start, end, np.array([True, True, True]))
    assert np.linalg.norm(got - v) < 0.5


def test_missing_decoder_features_is_a_clear_error():
    sim = {"index": 3, "voxels": {"coords": np.zeros((2, 3), np.int32),
                                  "charge": np.ones(2, np.float32)}}
    with pytest.raises(KeyError, match="re-run reco_infer"):
        P.event_input(sim, {"voxels": {"prob": np.zeros((2, 5))}}, with_truth=False)


def _line(start: np.ndarray, direction: np.ndarray, n: int) -> np.ndarray:
    return np.unique(np.floor(start + np.outer(np.arange(n) * 0.5, direction)).astype(np.int64),
                     axis=0)


def _synthetic_event(rng: np.random.Generator, index: int) -> P.EventInput:
    """Two interactions far apart; each: two tracks (a muon, a proton) from a vertex."""
    coords, part, inter, ptype, charge = [], [], [], [], []
    pid = 0
    for k in range(2):
        vertex = np.array([40.0, 40.0, 40.0]) + k * np.array([0.0, 0.0, 150.0])
        vertex += rng.uniform(-5, 5, 3)
        for t, (n, q) in enumerate(((120, 8000.0), (30, 40000.0))):
            d = rng.normal(size=3)
            d /= np.linalg.norm(d)
            c = _line(vertex + 1.5 * d, d, n)
            coords.append(c)
            part.append(np.full(len(c), pid))
            inter.append(np.full(len(c), k))
            ptype.append(np.full(len(c), 2 if t == 0 else 4))
            charge.append(np.full(len(c), q) * rng.uniform(0.9, 1.1, len(c)))
            pid += 1
    coords = np.concatenate(coords)
    coords, first = np.unique(coords, axis=0, return_index=True)  # crossing voxels: once
    part, inter = np.concatenate(part)[first], np.concatenate(inter)[first]
    ptype, charge = np.concatenate(ptype)[first], np.concatenate(charge)[first]
    n = len(coords)
    prob = np.zeros((n, 5), np.float32)
    prob[:, TRACK] = 1.0
    q = np.bincount(part, weights=charge, minlength=pid)
    truth = {"semantic": np.full(n, TRACK), "fragment": part, "particle": part,
             "interaction": inter, "particle_type": ptype, "primary": np.ones(n, np.int64)}
    return P.EventInput(
        index=index, coords=torch.as_tensor(coords, dtype=torch.float32),
        charge=torch.as_tensor(charge, dtype=torch.float32), prob=torch.as_tensor(prob),
        features=torch.as_tensor(rng.normal(size=(n, 4)).astype(np.float32) * 0.1),
        truth=truth, particles={"id": np.arange(pid), "deposited_energy": q * 2e-5})


CFG = {"radius": 1.75, "edge_threshold": 0.5, "hidden": 16, "layers": 2,
       "epochs": {"fragments": 3, "particles": 30, "interactions": 40}, "batch_events": 2,
       "lr": 1e-2, "seed": 3, "interaction_touch": 2.0, "interaction_linkage": "voxels",
       "interaction_pointing": True}


@pytest.fixture(scope="module")
def trained():
    torch.set_num_threads(1)
    rng = np.random.default_rng(1)
    events = [_synthetic_event(rng, i) for i in range(12)]
    # an event with nothing deposited in the volume is left out of training, not a crash
    empty = P.EventInput(99, torch.zeros(0, 3), torch.zeros(0), torch.zeros(0, 5),
                         torch.zeros(0, 4), truth={k: np.zeros(0, np.int64) for k in (
                             "semantic", "fragment", "particle", "interaction",
                             "particle_type", "primary")},
                         particles={"id": np.zeros(0, np.int64),
                                    "deposited_energy": np.zeros(0)})
    chain, history = P.train_chain(events[:6] + [empty] + events[6:], CFG, voxel_size=0.3)
    return chain, history, [_synthetic_event(rng, 100 + i) for i in range(4)]


def test_chain_learns_separated_interactions(trained):
    chain, history, held_out = trained
    assert {row["step"] for row in history} == {"fragments", "particles", "interactions",
                                                "interaction groups"}
    assert chain.group_gnn is not None
    assert chain.mev_per_electron == pytest.approx(2e-5)
    scores = []
    for ev in held_out:
        rec = chain.reconstruct(ev)
        pred = {**rec["voxels"], "particle_ids": rec["particles"]["id"],
                "type": rec["particles"]["type"], "primary": rec["particles"]["primary"]}
        scores.append(M.event_scores(ev.truth, pred))
    s = M.summarise_scores(scores)
    # 150 voxels apart: nothing of one interaction may be grouped with the other
    assert s["interaction"]["ari"]["mean"] > 0.95, s["interaction"]
    assert s["interaction"]["purity"]["mean"] > 0.99


def test_without_interaction_touch_the_particle_gnn_groups_interactions(trained):
    """``interaction_touch: null`` (and chains saved before it existed): one network both
    types the particles and groups them into interactions."""
    _, _, held_out = trained
    rng = np.random.default_rng(2)
    chain, history = P.train_chain([_synthetic_event(rng, i) for i in range(12)],
                                   {**CFG, "interaction_touch": None}, voxel_size=0.3)
    assert chain.group_gnn is None and chain.touch is None
    assert "interaction groups" not in {row["step"] for row in history}
    ari = [M.ari(ev.truth["interaction"], chain.reconstruct(ev)["voxels"]["interaction"])
           for ev in held_out]
    assert np.mean(ari) > 0.95, ari


def test_touch_graph_joins_touching_particles_before_the_gnn():
    """Two touching tracks and a third far away: two nodes; the far one is its own group."""
    coords = np.concatenate([_line(np.zeros(3), np.array([1.0, 0, 0]), 20),
                             _line(np.array([0.0, 1.0, 0]), np.array([0, 1.0, 0]), 20),
                             _line(np.array([0.0, 0, 60.0]), np.array([0, 0, 1.0]), 20)])
    cluster = np.repeat([0, 1, 2], [10, 10, 10])
    n = len(coords)
    ev = P.EventInput(0, torch.as_tensor(coords, dtype=torch.float32), torch.full((n,), 5e3),
                      torch.nn.functional.one_hot(torch.full((n,), TRACK), 5).float(),
                      torch.zeros(n, 4),
                      truth={"interaction": np.repeat([0, 0, 1], 10),
                             "particle_type": np.zeros(n, np.int64),
                             "primary": np.ones(n, np.int64)})
    g, group = P.touch_graph(ev, cluster, touch=2.0)
    assert group.tolist() == [0, 0, 1]
    assert len(g.x) == 2 and g.edges.tolist() == [[0], [1]]
    assert g.edge_target.tolist() == [0.0] and g.node_targets == []
    assert G.N_GEOMETRY + 5 == g.x.shape[1]
    assert g.x[0, 0] == pytest.approx(np.log1p(20))  # the group's voxels: both tracks


def _track_event(coords: np.ndarray) -> P.EventInput:
    """Voxels all predicted track with certainty, uniform charge, no decoder features."""
    n = len(coords)
    prob = np.zeros((n, 5), np.float32)
    prob[:, TRACK] = 1.0
    return P.EventInput(index=0, coords=torch.as_tensor(coords, dtype=torch.float32),
                        charge=torch.full((n,), 8000.0), prob=torch.as_tensor(prob),
                        features=torch.zeros(n, 4))


def test_track_breaking_splits_a_kink_that_the_scorer_keeps_whole(trained):
    """Two straight arms meeting at a right angle, one class: the edge scorer links all
    touching voxels (one fragment); with ``break_tracks`` each arm is its own fragment. An
    end-to-end kink needs the kink cut (``break_tracks.kink_angle``)."""
    chain = trained[0]
    arm_a = _line(np.array([20.0, 20.0, 20.0]), np.array([1.0, 0.0, 0.0]), 80)
    arm_b = _line(np.array([20.0, 20.0, 20.0]), np.array([0.0, 1.0, 0.0]), 80)[1:]
    coords = np.concatenate([arm_a, arm_b])
    ev = _track_event(coords)
    assert len(np.unique(chain.fragments(ev))) == 1
    broken = P.Chain(**{**chain.__dict__,
                        "cfg": {**chain.cfg, "break_tracks": {"radius": 4.0, "linearity": 0.85}}})
    frag = broken.fragments(ev)
    assert len(np.unique(frag)) == 2
    truth = np.r_[np.zeros(len(arm_a), int), np.ones(len(arm_b), int)]
    assert M.ari(truth, frag) > 0.9
    off = P.Chain(**{**chain.__dict__,
                     "cfg": {**chain.cfg, "break_tracks": {"radius": 4.0, "linearity": None}}})
    assert len(np.unique(off.fragments(ev))) == 1
    # a 40-degree kink between two straight arms (end to end) is linear everywhere, so only
    # the kink cut separates it
    turn = np.array([np.cos(np.radians(40.0)), np.sin(np.radians(40.0)), 0.0])
    kinked = np.concatenate([arm_a[:40], np.round(arm_a[39] + np.arange(1, 120)[:, None] / 3.0
                                                  * turn)])
    kinked = kinked[np.sort(np.unique(kinked, axis=0, return_index=True)[1])]
    n = len(kinked)
    ev = _track_event(kinked)
    assert len(np.unique(broken.fragments(ev))) == 1
    kinks = {"radius": 4.0, "linearity": 0.85, "kink_angle": 20.0, "kink_tolerance": 1.5,
             "kink_min_segment": 4.0}
    cut = P.Chain(**{**chain.__dict__, "cfg": {**chain.cfg, "break_tracks": kinks}})
    frag = cut.fragments(ev)
    assert len(np.unique(frag)) == 2
    assert M.ari(np.r_[np.zeros(40, int), np.ones(n - 40, int)], frag) > 0.85


class _HalfScorer(torch.nn.Module):
    """Scores every voxel edge 0.5 (logit 0)."""

    def forward(self, x: torch.Tensor, edges: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        return torch.zeros(edges.shape[1])


def test_track_edge_threshold_cuts_only_between_track_voxels(trained):
    """``track_edge_threshold`` is the edge scorer's bar on track-track edges only. Every
    edge scored 0.5, bars 0.4 elsewhere and 0.6 on tracks: track voxels end up alone, the
    other classes' touching voxels stay together."""
    chain, _, held_out = trained
    ev = held_out[0]  # all tracks: the voxels of every other particle become a shower
    odd = torch.as_tensor(ev.truth["particle"] % 2 == 1)
    prob = ev.prob.clone()
    prob[odd] = torch.nn.functional.one_hot(torch.tensor(SHOWER), 5).float()
    ev = P.EventInput(ev.index, ev.coords, ev.charge, prob, ev.features, ev.truth)
    track = ev.semantic.numpy() == TRACK
    assert track.any() and (~track).any()
    cfg = {**chain.cfg, "break_tracks": {}, "edge_threshold": 0.4}  # the scorer's fragments
    half = {**chain.__dict__, "scorer": _HalfScorer()}
    frag = P.Chain(**{**half, "cfg": {**cfg, "track_edge_threshold": 0.6}}).fragments(ev)
    assert len(np.unique(frag[track])) == track.sum()
    whole = P.Chain(**{**half, "cfg": {**cfg, "track_edge_threshold": None}}).fragments(ev)
    assert M.ari(whole[~track], frag[~track]) == 1.0
    assert len(np.unique(frag[~track])) < (~track).sum()
    assert len(np.unique(whole[track])) < track.sum()



def test_voxel_cross_class_links_voxels_of_two_predicted_classes(trained):
    """The middle third of a muon is 'predicted' shower and every edge is scored 0.5 (above
    the bar): by default the voxel graph never links the two classes, so the muon falls into
    its shower middle and two track ends; with ``voxel_cross_class`` it is one fragment. The
    track bar applies to track-track edges only, so a stricter one (0.6) leaves each track
    voxel tied to the others through the shower ones alone."""
    chain, _, held_out = trained
    ev = held_out[0]
    muon = ev.truth["particle"] == 0
    xyz = ev.coords.numpy()[muon].astype(np.float64)
    axis = np.linalg.svd(xyz - xyz.mean(0))[2][0]
    along = (xyz - xyz.mean(0)) @ axis
    middle = np.zeros(len(muon), bool)
    middle[np.flatnonzero(muon)] = np.abs(along) < np.ptp(along) / 6
    prob = ev.prob.clone()
    prob[torch.as_tensor(middle)] = torch.nn.functional.one_hot(torch.tensor(SHOWER), 5).float()
    ev = P.EventInput(ev.index, ev.coords, ev.charge, prob, ev.features, ev.truth)
    assert middle.any() and (muon & ~middle).any()
    cfg = {**chain.cfg, "break_tracks": {}, "edge_threshold": 0.4}  # the scorer's fragments
    half = {**chain.__dict__, "scorer": _HalfScorer()}

    def fragments(**extra: object) -> np.ndarray:
        return P.Chain(**{**half, "cfg": {**cfg, **extra}}).fragments(ev)

    assert len(np.unique(fragments()[muon])) == 3
    assert len(np.unique(fragments(voxel_cross_class=True)[muon])) == 1
    strict = fragments(voxel_cross_class=True, track_edge_threshold=0.6)
    track_ends = muon & ~middle
    assert len(np.unique(strict[track_ends])) > 1  # track-track edges cut ...
    c = ev.coords.numpy()
    near = np.linalg.norm(c[:, None] - c[middle][None], axis=2).min(1) <= cfg["radius"]
    touching = track_ends & near
    assert touching.any()  # ... not the cross-class ones: those voxels join the middle
    assert set(strict[touching]) == set(strict[middle]) and len(set(strict[middle])) == 1

class _JoinAll(torch.nn.Module):
    """A fragment GNN that scores every edge "same particle" (logit 10)."""

    def forward(self, x: torch.Tensor, edges: torch.Tensor, e: torch.Tensor
                ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return torch.full((edges.shape[1],), 10.0), []


def test_cross_class_and_group_classes_set_what_the_fragment_gnn_may_join(trained):
    """Tracks of one event, every other particle relabelled shower, a fragment GNN that
    joins every pair it is shown: by default the particles never mix the two classes; with
    ``cross_class`` all shower and track fragments become one particle; with
    ``group_classes: [shower]`` each track fragment stays a particle of its own."""
    chain, _, held_out = trained
    ev = held_out[0]
    odd = torch.as_tensor(ev.truth["particle"] % 2 == 1)
    prob = ev.prob.clone()
    prob[odd] = torch.nn.functional.one_hot(torch.tensor(SHOWER), 5).float()
    ev = P.EventInput(ev.index, ev.coords, ev.charge, prob, ev.features, ev.truth)
    sem = ev.semantic.numpy()
    track, shower = sem == TRACK, sem == SHOWER
    assert track.any() and shower.any()
    join = {**chain.__dict__, "fragment_gnn": _JoinAll()}

    def particles(**cfg: object) -> np.ndarray:
        return P.Chain(**{**join, "cfg": {**chain.cfg, **cfg}}).reconstruct(ev)[
            "voxels"]["particle"]

    same = particles()
    assert len(np.unique(same[track])) == 1 and len(np.unique(same[shower])) == 1
    assert not np.isin(same[track], same[shower]).any()
    cross = particles(cross_class=True)
    assert len(np.unique(cross[track | shower])) == 1
    showers_only = particles(group_classes=["shower"])
    frag = chain.fragments(ev)
    assert len(np.unique(frag[track])) > 1
    assert M.ari(frag[track], showers_only[track]) == 1.0
    assert len(np.unique(showers_only[shower])) == 1


def test_reconstructed_tables_are_consistent(trained):
    chain, _, held_out = trained
    ev = held_out[0]
    rec = chain.reconstruct(ev)
    v, p, i = rec["voxels"], rec["particles"], rec["interactions"]
    n_part = len(p["id"])
    assert len(v["particle"]) == len(ev.coords)
    assert set(np.unique(v["particle"])) == set(range(n_part))
    assert np.array_equal(p["n_voxels"], np.bincount(v["particle"], minlength=n_part))
    assert np.array_equal(p["interaction"][v["particle"]], v["interaction"])
    assert np.array_equal(i["n_particles"], np.bincount(p["interaction"]))
    np.testing.assert_allclose(np.linalg.norm(p["direction"], axis=1)[p["length"] > 0], 1,
                               atol=1e-5)
    # charge x the fitted constant; range-based kinetic energy for track types
    q = np.bincount(v["particle"], weights=ev.charge.numpy().astype(np.float64))
    np.testing.assert_allclose(p["deposited_energy"], q * 2e-5, rtol=1e-5)
    names = {2: "muon", 3: "pion", 4: "proton"}
    for k in range(n_part):
        if p["type"][k] in names:
            assert p["energy_from_range"][k] == 1
            want = RangeTable.for_particle(names[int(p["type"][k])]).kinetic_at_range(
                float(p["length"][k]))
            assert p["energy"][k] == pytest.approx(want, rel=1e-5)


def test_save_and_load_give_the_same_reconstruction(trained, tmp_path):
    chain, _, held_out = trained
    P.save_chain(chain, tmp_path)
    again = P.load_chain(tmp_path)
    a, b = chain.reconstruct(held_out[1]), again.reconstruct(held_out[1])
    for table in a:
        for col in a[table]:
            assert np.array_equal(a[table][col], b[table][col]), (table, col)


@pytest.mark.parametrize("n", [0, 1])
def test_empty_and_single_voxel_events(trained, n):
    chain, _, held_out = trained
    f = held_out[0].features.shape[1]
    ev = P.EventInput(7, torch.zeros(n, 3), torch.full((n,), 5e3), torch.full((n, 5), 0.2),
                      torch.zeros(n, f))
    rec = chain.reconstruct(ev)
    assert len(rec["voxels"]["particle"]) == n
    assert len(rec["particles"]["id"]) == n and len(rec["interactions"]["id"]) == n
    if n == 0:
        with pytest.raises(ValueError, match="no training event has any voxel"):
            P.train_chain([ev], CFG, voxel_size=0.3)


def test_type_logits_keep_only_the_types_the_class_allows():
    from larchain.sim import truth as T

    logits = torch.tensor([[0.0, 1.0, 5.0, 2.0, 3.0]]).repeat(5, 1)
    prob = torch.softmax(P.type_logits(logits, torch.arange(5)), 1)
    assert prob[T.SHOWER].argmax() == 1 and prob[T.SHOWER, 2:].sum() == 0
    assert prob[T.TRACK].argmax() == 2 and prob[T.TRACK, :2].sum() == 0
    for cls in (T.MICHEL, T.DELTA):
        assert prob[cls].tolist() == [0.0, 1.0, 0.0, 0.0, 0.0]
    assert prob[T.LOW_ENERGY].tolist() == [1.0, 0.0, 0.0, 0.0, 0.0]


def test_pid_by_shape_trains_and_types_within_the_predicted_class():
    """The short track of each interaction (a proton) is 'predicted' shower: its true type is
    impossible for its class, so it is left out of the type loss (which stays finite), and in
    use it is typed photon or electron while the long tracks (muons) come out muons."""
    from larchain.sim.truth import SHOWER

    def shower_protons(ev: P.EventInput) -> P.EventInput:
        proton = torch.as_tensor(ev.truth["particle_type"] == 4)
        ev.prob[proton] = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0])
        return ev

    torch.set_num_threads(1)
    rng = np.random.default_rng(2)
    events = [shower_protons(_synthetic_event(rng, i)) for i in range(8)]
    chain, history = P.train_chain(events, {**CFG, "pid_by_shape": True}, voxel_size=0.3)
    assert all(np.isfinite(row["loss"]) for row in history)
    for ev in [shower_protons(_synthetic_event(rng, 100 + i)) for i in range(3)]:
        parts = chain.reconstruct(ev)["particles"]
        shower = parts["semantic"] == SHOWER
        assert shower.any() and (~shower).any()
        assert np.isin(parts["type"][shower], (0, 1)).all()
        big = ~shower & (parts["n_voxels"] >= 20)
        assert big.any() and (parts["type"][big] == 2).all()  # muons
