"""Sharded inference: the trained network over every simulated event, on a Dask cluster.

Shards follow the simulation's events in fixed blocks, so 1 or N workers write the same
files. Per voxel (in the simulation's voxel order): predicted class, class probabilities and
the last decoder features (float16; the input of the particle-level chain); per event: the
proposed points.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from larchain.core.artifacts import write_json_atomic
from larchain.core.cluster import dask_client, map_blocks
from larchain.reco.data import load_event, make_batch
from larchain.reco.train import load_model
from larchain.reco.uresnet import predict_points
from larchain.sim import storage
from larchain.sim.build import plan_shards


@functools.cache
def _model(model_dir: str) -> tuple[Any, dict[str, Any]]:
    return load_model(model_dir)


@torch.no_grad()
def predict_events(model: Any, events: list[dict[str, Any]], score_threshold: float
                   ) -> list[dict[str, Any]]:
    """Predictions for a list of events (from :func:`larchain.reco.data.load_event`), computed
    on the model's device (CPU or CUDA: same code path)."""
    device = next(model.parameters()).device
    batch = make_batch(events, device)
    st = batch["input"]
    out = model(st)
    prob = torch.softmax(out["segmentation"], 1)
    prob = st.to_input_order(prob).cpu()  # rows back in the order of the events' voxels
    feats = st.to_input_order(out["features"]).cpu()
    points = predict_points(st.coords, out, score_threshold=score_threshold).cpu()
    records, start = [], 0
    for b, ev in enumerate(events):
        n = len(ev["coords"])
        p = prob[start:start + n].numpy()
        f = feats[start:start + n].numpy()
        start += n
        pts = points[points[:, 0] == b][:, 1:].numpy()
        records.append({
            "index": ev["index"],
            "voxels": {"pred": p.argmax(1).astype(np.int8), "prob": p.astype(np.float16),
                       "features": f.astype(np.float16)},
            "points": {"position": pts[:, :3].astype(np.float32),
                       "type": pts[:, 3].astype(np.int8), "score": pts[:, 4].astype(np.float32)},
        })
    return records


def infer_shard(block: dict[str, Any], *, model_dir: str, sim_dir: str, out_dir: str,
                batch_events: int, score_threshold: float) -> dict[str, Any]:
    """Worker task: predict events ``block['first']..`` and write their shard."""
    torch.set_num_threads(1)
    model, cfg = _model(model_dir)
    ds = storage.EventDataset(sim_dir)
    voxel_size = float(ds.files[0].attrs["voxel_size"])
    ids = list(range(block["first"], block["first"] + block["n"]))
    records = []
    for k in range(0, len(ids), batch_events):
        events = [load_event(ds, i, voxel_size, float(cfg["charge_scale"]))
                  for i in ids[k:k + batch_events]]
        records += predict_events(model, events, score_threshold)
    return write_block(block, records, out_dir, ("voxels", "points"))


def write_block(block: Mapping[str, Any], records: list[dict[str, Any]], out_dir: str | Path,
                tables: tuple[str, ...]) -> dict[str, Any]:
    """Write one block's records as its shard; the shard's entry of ``index.json``."""
    path = Path(out_dir) / block["file"]
    storage.write_shard(path, records, {"first_event": block["first"]}, tables=tables)
    return {"file": block["file"], "first_event": block["first"], "n_events": block["n"],
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def run_sharded(task: Callable[..., dict[str, Any]], events: str | Path, out_dir: str | Path,
                sample: str, events_per_shard: int, *, desc: str, threads: int,
                dask_cfg: Mapping[str, Any] | None, **kwargs: Any) -> dict[str, Any]:
    """Run ``task(block, out_dir=..., **kwargs)`` over every event of the simulation artifact
    ``events`` in fixed blocks (so 1 or N workers write the same files) on a Dask cluster, and write
    ``index.json`` listing the shards of ``sample``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    n = len(storage.EventDataset(events))
    blocks = plan_shards({sample: n}, int(events_per_shard))
    results: dict[int, dict[str, Any]] = {}
    with dask_client(dask_cfg, threads) as client:
        map_blocks(client, task, blocks, desc=desc, on_result=results.__setitem__,
                   out_dir=str(out_dir), **kwargs)
    index = {"schema_version": storage.SCHEMA_VERSION,
             "samples": {sample: {"events": n, "shards": [results[i] for i in
                                                         range(len(blocks))]}}}
    write_json_atomic(out_dir / "index.json", index)
    return index


def run_inference(model_dir: str | Path, sim_dir: str | Path, out_dir: str | Path,
                  cfg: Mapping[str, Any], *, threads: int, dask_cfg: Mapping[str, Any] | None
                  ) -> dict[str, Any]:
    """Predict every event of a simulation artifact; write shards and ``index.json``."""
    return run_sharded(infer_shard, sim_dir, out_dir, "predictions", cfg["events_per_shard"],
                       desc="reco_infer", threads=threads, dask_cfg=dask_cfg,
                       model_dir=str(model_dir), sim_dir=str(sim_dir),
                       batch_events=int(cfg["batch_events"]),
                       score_threshold=float(cfg["score_threshold"]))
