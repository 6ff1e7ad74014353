"""Particle-level metrics against hand-computed values."""

from __future__ import annotations

import json
from math import comb

import numpy as np
import pytest

from larchain.reco.metrics import (
    ari,
    event_scores,
    match_clusters,
    oracle_grouping,
    pid_confusion,
    purity_efficiency,
    summarise_scores,
)


def _ari_by_hand(true: list[int], pred: list[int]) -> float:
    """The Hubert-Arabie formula, with explicit loops (independent of sklearn)."""
    t_ids, p_ids = sorted(set(true)), sorted(set(pred))
    table = [[sum(1 for a, b in zip(true, pred, strict=True) if a == t and b == p)
              for p in p_ids] for t in t_ids]
    index = sum(comb(x, 2) for row in table for x in row)
    rows = sum(comb(sum(row), 2) for row in table)
    cols = sum(comb(sum(row[j] for row in table), 2) for j in range(len(p_ids)))
    expected = rows * cols / comb(len(true), 2)
    return (index - expected) / ((rows + cols) / 2 - expected)


def test_ari_relabelled_is_one():
    true = np.array([0, 0, 1, 1, 2, 2, 2])
    pred = np.array([9, 9, 4, 4, 7, 7, 7])
    assert ari(true, pred) == pytest.approx(1.0)


def test_ari_hand_example():
    true = [0, 0, 0, 1, 1, 1]
    pred = [0, 0, 1, 1, 2, 2]
    # index 2, rows 6, cols 3, expected 6*3/15 = 1.2, max 4.5: (2 - 1.2) / 3.3
    assert _ari_by_hand(true, pred) == pytest.approx(8 / 33)
    assert ari(np.array(true), np.array(pred)) == pytest.approx(8 / 33)
    t2 = [0, 1, 1, 2, 2, 2, 3, 0, 3]
    p2 = [1, 1, 1, 2, 2, 0, 0, 0, 3]
    assert ari(np.array(t2), np.array(p2)) == pytest.approx(_ari_by_hand(t2, p2))


def test_ari_conventions():
    assert ari(np.zeros(5), np.ones(5)) == 1.0  # both a single cluster
    assert ari(np.zeros(4), np.array([0, 0, 1, 1])) == pytest.approx(0.0)
    assert np.isnan(ari(np.zeros(0), np.zeros(0)))


def test_purity_efficiency_split_and_merge():
    purity, eff = purity_efficiency(np.array([0, 0, 0, 0]), np.array([0, 0, 1, 1]))
    assert (purity, eff) == (pytest.approx(1.0), pytest.approx(0.5))
    purity, eff = purity_efficiency(np.array([0, 0, 1, 1]), np.array([5, 5, 5, 5]))
    assert (purity, eff) == (pytest.approx(0.5), pytest.approx(1.0))
    # true 0 (3 voxels) 2 in pred 0; true 1 whole in pred 1, which also has 1 of true 0
    purity, eff = purity_efficiency(np.array([0, 0, 0, 1, 1]), np.array([0, 0, 1, 1, 1]))
    assert eff == pytest.approx((2 / 3 + 1) / 2)
    assert purity == pytest.approx((1 + 2 / 3) / 2)


def test_match_clusters_ties_to_lowest_id():
    true = np.array([3, 3, 1, 1, 1, 8, 8])
    pred = np.array([4, 2, 7, 7, 5, 9, 9])
    # unique(true) = [1, 3, 8]: 1 -> 7 (2 of 3), 3 -> tie 4/2 -> 2, 8 -> 9
    assert match_clusters(true, pred).tolist() == [7, 2, 9]


def test_pid_confusion_counts():
    conf = pid_confusion(np.array([0, 0, 2, 4, 4, 1]), np.array([0, 1, 2, 2, -1, 1]))
    expected = np.zeros((5, 5), dtype=int)
    expected[0, 0] = expected[0, 1] = expected[2, 2] = expected[4, 2] = expected[1, 1] = 1
    np.testing.assert_array_equal(conf, expected)  # the -1 (unmatched) pair is left out


def _event():
    # true particles: 10 (muon, 4 voxels), 11 (proton, 3), 12 (photon, 2, low energy)
    truth = {
        "particle": np.array([10, 10, 10, 10, 11, 11, 11, 12, 12]),
        "fragment": np.array([0, 0, 1, 1, 2, 2, 2, 3, 3]),
        "interaction": np.array([0, 0, 0, 0, 0, 0, 0, 1, 1]),
        "particle_type": np.array([2, 2, 2, 2, 4, 4, 4, 0, 0]),
        "primary": np.array([1, 1, 1, 1, 1, 1, 1, 0, 0]),
    }
    pred = {
        "particle": np.array([0, 0, 0, 1, 1, 1, 1, 5, 6]),
        "fragment": np.array([0, 0, 0, 1, 1, 1, 1, 5, 6]),
        "interaction": np.array([0, 0, 0, 0, 0, 0, 0, 0, 0]),
        "particle_ids": np.array([1, 0, 5]),  # not sorted; 6 has no entry
        "type": np.array([4, 3, 0]),
        "primary": np.array([True, False, True]),
    }
    return truth, pred


def test_event_scores_with_mask():
    truth, pred = _event()
    mask = np.array([1, 1, 1, 1, 1, 1, 1, 0, 0], dtype=bool)
    s = event_scores(truth, pred, mask=mask)
    assert s["n_voxels"] == 7
    assert s["particle"]["n_true"] == 2 and s["particle"]["n_pred"] == 2
    # particle 10 split 3 + 1, pred 1 = 1 of 10 + 3 of 11
    assert s["particle"]["efficiency"] == pytest.approx((3 / 4 + 1) / 2)
    assert s["particle"]["purity"] == pytest.approx((1 + 3 / 4) / 2)
    assert s["interaction"]["ari"] == 1.0  # one interaction each side on the masked voxels
    pid = s["pid"]
    assert pid["true_type"].tolist() == [2, 4]
    assert pid["pred_type"].tolist() == [3, 4]  # 10 -> pred 0 (pion), 11 -> pred 1
    assert pid["pred_primary"].tolist() == [0, 1]
    assert pid["true_primary"].tolist() == [1, 1]
    assert pid["n_voxels"].tolist() == [4, 3]
    assert pid["n_overlap"].tolist() == [3, 3]

    full = event_scores(truth, pred)
    assert full["particle"]["n_true"] == 3
    assert full["interaction"]["ari"] == pytest.approx(0.0)
    # 12 ties between 5 and 6: 5 (photon, primary) wins
    assert full["pid"]["pred_type"].tolist() == [3, 4, 0]


def test_event_scores_unmatched_prediction():
    truth, pred = _event()
    pred = {**pred, "particle": np.array([0, 0, 0, 1, 1, 1, 1, 6, 6])}
    s = event_scores(truth, pred)
    assert s["pid"]["pred_type"].tolist()[-1] == -1
    assert s["pid"]["pred_primary"].tolist()[-1] == -1


def test_summarise_two_events():
    truth, pred = _event()
    mask = np.array([1, 1, 1, 1, 1, 1, 1, 0, 0], dtype=bool)
    e1 = event_scores(truth, pred, mask=mask)  # types: muon->pion (wrong), proton right
    perfect = {k: truth[k] for k in ("particle", "fragment", "interaction")}
    perfect.update(particle_ids=np.array([10, 11, 12]), type=np.array([2, 4, 0]),
                   primary=np.array([1, 1, 0]))
    e2 = event_scores(truth, perfect)  # all 3 right
    s = summarise_scores([e1, e2])
    json.dumps(s)  # plain types only
    assert s["n_events"] == 2
    assert s["pid"]["n_particles"] == 5
    assert s["pid"]["accuracy"] == pytest.approx(4 / 5)
    assert s["pid"]["per_class"]["muon"]["accuracy"] == pytest.approx(1 / 2)
    assert s["pid"]["per_class"]["proton"]["accuracy"] == pytest.approx(1.0)
    assert s["pid"]["per_class"]["photon"]["accuracy"] == pytest.approx(1.0)
    assert s["pid"]["per_class"]["electron"]["accuracy"] is None
    assert s["pid"]["confusion"][2] == [0, 0, 1, 1, 0]
    # primary: e1 muon predicted 0 vs true 1 (wrong), proton right; e2 all right
    assert s["primary"]["accuracy"] == pytest.approx(4 / 5)
    eff = [e1["particle"]["efficiency"], 1.0]
    assert s["particle"]["efficiency"]["mean"] == pytest.approx(np.mean(eff))
    assert s["particle"]["efficiency"]["median"] == pytest.approx(np.median(eff))
    assert s["particle"]["efficiency"]["sem"] == pytest.approx(np.std(eff, ddof=1) / np.sqrt(2))
    assert s["fragment"]["ari"]["n"] == 2
    # PID over particles of >= 4 scored voxels: the two muons (e1's wrong, e2's right) stay;
    # the 3-voxel protons and the 2-voxel photon are counted out by type
    assert s["pid_visible"]["accuracy"] == s["pid"]["accuracy"]  # default: every particle
    big = summarise_scores([e1, e2], pid_min_voxels=4)["pid_visible"]
    assert big["min_voxels"] == 4 and big["n_particles"] == 2
    assert big["accuracy"] == pytest.approx(1 / 2)
    assert big["n_left_out"] == {"photon": 1, "electron": 0, "muon": 0, "pion": 0, "proton": 2}
    assert big["confusion"][2] == [0, 0, 1, 1, 0] and sum(map(sum, big["confusion"])) == 2


def test_summarise_empty_is_none():
    s = summarise_scores([])
    json.dumps(s)
    assert s["pid"]["accuracy"] is None
    assert s["particle"]["ari"]["mean"] is None


def test_oracle_grouping_merges_clusters_of_one_truth_label():
    # clusters 0 and 2 belong to particle 7, cluster 1 to particle 5 (one stray voxel of 7)
    cluster = np.array([0, 0, 1, 1, 1, 2, 2])
    truth = np.array([7, 7, 5, 5, 7, 7, 7])
    group = oracle_grouping(cluster, truth)
    assert group[0] == group[5] != group[2]
    # the stray voxel stays with its cluster: grouping cannot repair an impure cluster
    assert ari(truth, group) < 1.0
    assert group[4] == group[2]


def test_oracle_grouping_respects_key():
    cluster = np.array([0, 1, 2, 3])
    truth = np.array([1, 1, 1, 1])
    group = oracle_grouping(cluster, truth, key=np.array([0, 0, 1, -1]))
    assert group[0] == group[1]
    assert len({group[1], group[2], group[3]}) == 3  # other key; negative key: alone


def test_oracle_grouping_checks_lengths():
    with pytest.raises(ValueError, match="lengths differ"):
        oracle_grouping(np.array([0, 1]), np.array([0]))
    with pytest.raises(ValueError, match="key has 1 values for 2 clusters"):
        oracle_grouping(np.array([0, 1]), np.array([0, 0]), key=np.array([0]))


def test_pid_mutual_leaves_out_a_particle_swallowed_by_a_bigger_one():
    """A 2-voxel delta ray (electron) merged into its 5-voxel muon is 'typed' by the muon's
    particle in ``pid``, and a 3-voxel electron inside a predicted particle that is mostly
    another muon's voxels is typed right by luck: ``pid_mutual`` scores neither and counts
    both as swallowed, while a particle reconstructed as its own stays scored."""
    truth = {
        "particle": np.array([1, 1, 1, 1, 1, 2, 2, 3, 3, 3, 4, 4, 4, 4, 4, 4]),
        "fragment": np.array([0, 0, 0, 0, 0, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3, 3]),
        "interaction": np.zeros(16, dtype=np.int64),
        "particle_type": np.array([2] * 5 + [1] * 2 + [1] * 3 + [2] * 6),
        "primary": np.zeros(16, dtype=np.int64),
    }
    pred = {
        # muon 1 + delta 2 -> particle 0; muon 4's voxels 10-13 + electron 3 -> particle 1
        # (4 of muon 4 against 3 of electron 3); muon 4's voxels 14-15 -> particle 2
        "particle": np.array([0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 2, 2]),
        "fragment": np.array([0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 2, 2]),
        "interaction": np.zeros(16, dtype=np.int64),
        "particle_ids": np.array([0, 1, 2]),
        "type": np.array([2, 1, 2]),  # muon, electron, muon
        "primary": np.zeros(3, dtype=np.int64),
    }
    e = event_scores(truth, pred)
    assert e["pid"]["mutual"].tolist() == [1, 0, 0, 1]
    s = summarise_scores([e], pid_min_voxels=2)
    assert s["pid_visible"]["n_particles"] == 4
    # wrong: the delta (typed muon) and muon 4 (its particle 1 is typed electron)
    assert s["pid_visible"]["accuracy"] == pytest.approx(2 / 4)
    assert s["pid_visible"]["per_class"]["electron"]["accuracy"] == pytest.approx(1 / 2)
    mutual = s["pid_mutual"]
    assert mutual["n_particles"] == 2 and mutual["accuracy"] == pytest.approx(1 / 2)
    assert mutual["per_class"]["electron"]["n"] == 0
    assert mutual["per_class"]["muon"] == {"accuracy": 0.5, "n": 2}
    assert mutual["n_swallowed"] == {"photon": 0, "electron": 2, "muon": 0, "pion": 0,
                                     "proton": 0}
