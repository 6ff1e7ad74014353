"""The particle-level rules' work: train the chain, reconstruct every event on a Dask cluster,
score it and the classical baseline on the held-out events.

Output schema (one HDF5 shard per block of events, :mod:`larchain.sim.storage` layout;
positions in cm, energies in MeV; ids unique within an event)::

    voxels/       fragment, particle, interaction [M] int32, in the simulation's voxel order
    particles/    id, interaction, type (0 photon, 1 electron, 2 muon, 3 pion, 4 proton),
                  type_score (softmax probability of that type), primary (0/1), primary_score,
                  semantic (majority predicted class), n_voxels, n_fragments, start [P, 3],
                  end [P, 3], direction [P, 3] (unit, start -> end), length (cm),
                  deposited_energy, energy, energy_from_range (1: CSDA range of the type)
    interactions/ id, vertex [I, 3], n_particles, n_primaries
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from larchain.reco import baseline as B
from larchain.reco import metrics as M
from larchain.reco.infer import run_sharded, write_block
from larchain.reco.particles import Chain, EventInput, event_input, load_chain
from larchain.sim import storage
from larchain.sim import truth as T

TABLES = ("voxels", "particles", "interactions")


def load_inputs(sim_dir: str | Path, pred_dir: str | Path, indices: Sequence[int],
                with_truth: bool = True, desc: str | None = None) -> list[EventInput]:
    """Events ``indices`` of a simulation artifact joined with their stage-1 predictions."""
    events = storage.EventDataset(sim_dir)
    preds = storage.EventDataset(pred_dir, "predictions")
    if len(preds) != len(events):
        raise ValueError(f"{pred_dir}: {len(preds)} predicted events, {len(events)} simulated "
                         f"in {sim_dir}")
    it = tqdm(indices, desc=desc, unit="event", mininterval=1) if desc else indices
    return [event_input(events.raw(i), preds.raw(i), with_truth) for i in it]


def voxel_size(sim_dir: str | Path) -> float:
    return float(storage.EventDataset(sim_dir).files[0].attrs["voxel_size"])


@functools.cache
def _chain(model_dir: str) -> Chain:
    return load_chain(model_dir)


def infer_shard(block: dict[str, Any], *, model_dir: str, sim_dir: str, pred_dir: str,
                out_dir: str) -> dict[str, Any]:
    """Worker task: reconstruct events ``block['first']..`` and write their shard."""
    torch.set_num_threads(1)
    chain = _chain(model_dir)
    ids = range(block["first"], block["first"] + block["n"])
    records = [{"index": ev.index, **chain.reconstruct(ev)}
               for ev in load_inputs(sim_dir, pred_dir, ids, with_truth=False)]
    return write_block(block, records, out_dir, TABLES)


def run_inference(model_dir: str | Path, sim_dir: str | Path, pred_dir: str | Path,
                  out_dir: str | Path, cfg: Mapping[str, Any], *, threads: int,
                  dask_cfg: Mapping[str, Any] | None) -> dict[str, Any]:
    """Reconstruct every event of a simulation artifact; write shards and ``index.json``."""
    return run_sharded(infer_shard, sim_dir, out_dir, "particles", cfg["events_per_shard"],
                       desc="particle_infer", threads=threads, dask_cfg=dask_cfg,
                       model_dir=str(model_dir), sim_dir=str(sim_dir), pred_dir=str(pred_dir))


# ------------------------------------------------------------------------------------------
# evaluation


def as_prediction(rec: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """A reconstructed event's tables in the form :func:`metrics.event_scores` takes."""
    v, p = rec["voxels"], rec["particles"]
    return {"fragment": v["fragment"], "particle": v["particle"],
            "interaction": v["interaction"], "particle_ids": p["id"], "type": p["type"],
            "primary": p["primary"]}


def baseline_event(sim_event: Mapping[str, Any], prediction: Mapping[str, Any],
                   cfg: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The classical chain on the same voxels and the same stage-1 semantic predictions."""
    vox = sim_event["voxels"]
    return B.baseline_chain(vox["coords"].astype(np.float64), vox["charge"].astype(np.float64),
                            np.asarray(prediction["voxels"]["pred"]), **cfg)


def evaluate(sim_dir: str | Path, pred_dir: str | Path, particle_dir: str | Path,
             holdout: Sequence[int], cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Scores of the learned chain and the baseline on the held-out events. Voxels whose true
    class is low-energy are left out of the clustering scores when ``mask_low_energy``; PID
    is also summarised over true particles of at least ``pid_min_voxels`` voxels."""
    events = storage.EventDataset(sim_dir)
    preds = storage.EventDataset(pred_dir, "predictions")
    parts = storage.EventDataset(particle_dir, "particles")
    learned, base, shown = [], [], None
    for i in tqdm(holdout, desc="particle_eval", unit="event", mininterval=1):
        ev, pr, rec = events.raw(i), preds.raw(i), parts.raw(i)
        truth = ev["voxels"]
        mask = (truth["semantic"] != T.LOW_ENERGY) if cfg["mask_low_energy"] else None
        b = baseline_event(ev, pr, cfg["baseline"])
        learned.append(M.event_scores(truth, as_prediction(rec), mask))
        base.append(M.event_scores(truth, b, mask))
        # the display shows the event with the most interactions (the grouping at work)
        n_int = len(np.unique(truth["interaction"]))
        if shown is None or n_int > shown["n_interactions"]:
            shown = {"index": i, "coords": truth["coords"], "truth": truth, "learned": rec,
                     "baseline": b, "n_interactions": n_int}
    k = int(cfg["pid_min_voxels"])
    return {"events": list(holdout), "learned": M.summarise_scores(learned, k),
            "baseline": M.summarise_scores(base, k), "per_event": {"learned": learned,
                                                                "baseline": base},
            "display": shown}


def per_event_table(scores: Sequence[Mapping[str, Any]]) -> dict[str, list[float]]:
    """ARI / purity / efficiency per event and level, for the score-distribution figure."""
    out: dict[str, list[float]] = {}
    for level in ("fragment", "particle", "interaction"):
        for key in ("ari", "purity", "efficiency"):
            out[f"{level}_{key}"] = [float(s[level][key]) for s in scores]
    return out
