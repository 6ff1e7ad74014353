"""Reconstruction stage 1: data, metrics, baseline, training determinism, sharded inference."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
import yaml

from larchain.core.config import validate_schema
from larchain.reco import evaluate as E
from larchain.reco.data import SHOWER_START, TRACK_END, event_points, load_event, make_batch
from larchain.reco.infer import predict_events, run_inference
from larchain.reco.train import _loss as T_loss
from larchain.reco.train import load_model, save_model, split_events, train_uresnet
from larchain.sim import truth as T
from larchain.sim.build import build_sample
from larchain.sim.storage import EventDataset

from .conftest import REPO

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.one_thread


def test_confusion_and_metrics_closed_form():
    truth = np.array([0, 0, 1, 1, 1, 2, 4])
    pred = np.array([0, 1, 1, 1, 0, 2, 1])
    conf = E.confusion(truth, pred)
    assert conf[0, 0] == 1 and conf[0, 1] == 1 and conf[1, 1] == 2 and conf[4, 1] == 1
    m = E.segmentation_metrics(conf)
    assert m["accuracy"] == pytest.approx(4 / 7)
    assert m["recall"]["track"] == pytest.approx(2 / 3)
    assert m["precision"]["track"] == pytest.approx(2 / 4)
    assert m["recall"]["delta"] is None  # no true delta voxels: undefined, not 0


def test_point_metrics_hand_made():
    true = [np.array([[0, 0, 0, TRACK_END], [10, 0, 0, TRACK_END], [5, 5, 5, SHOWER_START]])]
    pred = [np.array([[1, 0, 0, TRACK_END], [30, 0, 0, TRACK_END], [5, 5, 9, SHOWER_START]])]
    m = E.point_metrics(true, pred, within=3.0)
    assert m["true_points"] == 3
    # (0,0,0) found at 1; (10,0,0) nearest at 9; the shower start at 4
    assert m["efficiency_within"] == pytest.approx(1 / 3)
    assert m["purity_within"] == pytest.approx(1 / 3)
    np.testing.assert_allclose(sorted(m["distances"]), [1.0, 4.0, 9.0])


def test_pca_linearity_separates_lines_from_blobs():
    line = np.stack([np.arange(30), np.arange(30) // 2, np.zeros(30)], 1)
    g = np.random.default_rng(0)
    blob = np.unique(g.integers(40, 46, size=(200, 3)), axis=0)
    lin = E.pca_linearity(np.concatenate([line, blob]), radius=3.0)
    assert lin[5:25].min() > 0.9
    assert np.median(lin[30:]) < 0.5
    pred = E.baseline_prediction(np.concatenate([line, blob]), 3.0, 0.8)
    assert np.all(pred[5:25] == T.TRACK) and np.mean(pred[30:] == T.SHOWER) > 0.9


def test_event_points_from_particle_table():
    particles = {
        "n_voxels": np.array([50, 3, 40, 20]),
        "semantic": np.array([T.TRACK, T.TRACK, T.SHOWER, T.MICHEL]),
        "start": np.array([[3.0, 3.0, 3.0], [0, 0, 0], [6.0, 0, 0], [9.0, 9.0, 9.0]]),
        "end": np.array([[30.0, 3.0, 3.0], [1, 1, 1], [6.0, 0, 0], [9.0, 9.0, 9.0]]),
    }
    pts = event_points(particles, voxel_size=0.3)
    # the 3-voxel track is dropped; track start+end, shower start, Michel start remain
    assert len(pts) == 4
    np.testing.assert_allclose(pts[pts[:, 3] == TRACK_END][:, 0], [10.0, 100.0])
    assert (pts[:, 3] == SHOWER_START).sum() == 2


def _sim(tmp_path, events=6):
    cfg = validate_schema(yaml.safe_load((REPO / "config" / "test.yaml").read_text()))
    cfg["detector"]["size"] = [60.0, 60.0, 100.0]
    cfg["detector"]["photodetectors"] = [
        {"wall": "x-", "center": [0.0, 30.0, 50.0], "shape": "disk", "radius": 5.0,
         "efficiency": 0.2}]
    cfg["simulation"].update(events=events, events_per_shard=3)
    build_sample(cfg, "simulation", tmp_path, visibility_dir=None, n_detectors=1, threads=1,
                 dask_cfg={"processes": False})
    return cfg


@pytest.fixture(scope="module")
def sim_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("sim")
    _sim(d)
    return d


def test_batch_labels_follow_the_sorted_sites(sim_dir):
    ds = EventDataset(sim_dir)
    events = [load_event(ds, i, 0.3, 1e4) for i in range(2)]
    batch = make_batch(events)
    st = batch["input"]
    # the label of each sorted site is the label of that coordinate in the event
    for b, ev in enumerate(events):
        lut = {tuple(c): s for c, s in zip(ev["coords"].tolist(), ev["semantic"].tolist(),
                                           strict=True)}
        rows = (st.coords[:, 0] == b).nonzero().squeeze(1)
        for r in rows[:: max(1, len(rows) // 50)].tolist():
            assert lut[tuple(st.coords[r, 1:].tolist())] == int(batch["semantic"][r])


CFG = {"filters": 4, "depth": 2, "reps": 1, "epochs": 3, "batch_events": 2, "lr": 3e-3,
       "holdout_fraction": 0.34, "ppn_radius": 3.0, "charge_scale": 1e4, "seed": 5}


def test_training_lowers_the_loss_and_is_deterministic(sim_dir, tmp_path):
    ds = EventDataset(sim_dir)
    model_a, hist, split = train_uresnet(ds, CFG, 0.3)
    model_b, hist_b, _ = train_uresnet(ds, CFG, 0.3)
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    assert [h["train_loss"] for h in hist] == [h["train_loss"] for h in hist_b]
    for (k, a), (_, b) in zip(model_a.state_dict().items(), model_b.state_dict().items(),
                              strict=True):
        assert torch.equal(a, b), k
    assert split["holdout"] == split_events(len(ds), 0.34)[1] and split["holdout"]
    assert not set(split["holdout"]) & set(split["train"])
    # safetensors round trip: identical predictions
    save_model(model_a, CFG, tmp_path)
    loaded, cfg = load_model(tmp_path)
    ev = [load_event(ds, 0, 0.3, cfg["charge_scale"])]
    a, b = predict_events(model_a, ev, 0.5)[0], predict_events(loaded, ev, 0.5)[0]
    np.testing.assert_array_equal(a["voxels"]["prob"], b["voxels"]["prob"])


@pytest.mark.parametrize("keep", ["last", "best_holdout"])
def test_cosine_schedule_and_which_epoch_is_kept(sim_dir, keep):
    """reco.lr_final moves the rate per step along a cosine; reco.keep says whether the
    last epoch's weights or those of the lowest held-out loss come back. The rate here rises
    to 0.3, so that the last epoch is not the best one and the two choices differ."""
    ds = EventDataset(sim_dir)
    cfg = {**CFG, "epochs": 4, "lr_final": 0.3, "keep": keep}
    model, hist, split = train_uresnet(ds, cfg, 0.3)
    lrs = [h["lr"] for h in hist]
    expected = [0.3 + (3e-3 - 0.3) * (1 + np.cos(np.pi * e / 4)) / 2 for e in range(4)]
    np.testing.assert_allclose(lrs, expected, rtol=1e-6)
    # the returned weights give the held-out loss of the epoch that was kept
    w = torch.tensor(split["class_weights"])
    batch = make_batch([load_event(ds, i, 0.3, 1e4) for i in split["holdout"]])
    with torch.no_grad():
        loss = float(T_loss(model, batch, w, CFG["ppn_radius"])[0])
    losses = [h["holdout_loss"] for h in hist]
    assert int(np.argmin(losses)) != len(hist) - 1  # else the test cannot tell them apart
    kept = len(hist) - 1 if keep == "last" else int(np.argmin(losses))
    assert split["best_epoch"] == kept
    assert loss == pytest.approx(losses[kept], rel=1e-5)


def test_sharded_inference_same_files_for_one_and_two_workers(sim_dir, tmp_path):
    ds = EventDataset(sim_dir)
    model, _, _ = train_uresnet(ds, {**CFG, "epochs": 1}, 0.3)
    save_model(model, CFG, tmp_path / "model")
    shas = {}
    for w in (1, 2):
        out = tmp_path / f"pred{w}"
        idx = run_inference(tmp_path / "model", sim_dir, out,
                            {"events_per_shard": 4, "batch_events": 2, "score_threshold": 0.5},
                            threads=w, dask_cfg={"processes": False})
        shas[w] = [hashlib.sha256((out / s["file"]).read_bytes()).hexdigest()
                   for s in idx["samples"]["predictions"]["shards"]]
    assert shas[1] == shas[2] and len(shas[1]) == 2
    preds = EventDataset(tmp_path / "pred1", "predictions")
    assert len(preds) == len(ds)
    p = preds.raw(3)
    assert len(p["voxels"]["pred"]) == len(ds.raw(3)["voxels"]["charge"])
    np.testing.assert_allclose(p["voxels"]["prob"].astype(np.float32).sum(1), 1.0, atol=5e-3)
