"""Simulate a sample shard by shard on a Dask cluster and write the artifact's files.

Shards are fixed by the config (``events_per_shard``), never by the number of workers, and
every event is seeded from (seed, event index): 1 or N workers write identical files.
Workers write their own shard file (h5py handles never cross processes); the driver writes
the index once all shards are done.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from larchain.core.artifacts import write_json_atomic
from larchain.core.cluster import dask_client, map_blocks
from larchain.sim import storage
from larchain.sim.control import SAMPLES, control_event
from larchain.sim.generator import generate_event
from larchain.sim.simulate import SimulationSetup, response_from_config, simulate_events
from larchain.sim.transport import TransportSettings


def setup_from_config(config: Mapping[str, Any], n_detectors: int, section: str = "simulation",
                      tpc: Mapping[str, Any] | None = None) -> SimulationSetup:
    """The worker-side description of a sample (size, transport, response, seed)."""
    from larchain.core.geometry import Detector

    det = Detector.from_config(config["detector"])
    sim = config["simulation"]
    params, settings = response_from_config(tpc or config["tpc"], config["readout"], n_detectors,
                                            nominal_tpc=config["tpc"])
    return SimulationSetup(
        size=tuple(float(s) for s in det.size),
        # control samples are selected stopping tracks: no hadronic interactions there
        transport=TransportSettings(
            size=tuple(float(s) for s in det.size), **sim["transport"],
            hadron_interactions=section == "simulation" and bool(sim["hadron_interactions"])),
        response=settings,
        params={k: v.detach() for k, v in params.items()},
        seed=int(config[section]["seed"]),
        keep_deposits=section == "control",
    )


@functools.cache
def _visibility(path: str | None) -> Any:
    if path is None:
        return None
    from larchain.visibility import load_visibility

    return load_visibility(path)


def _primaries(sample: str, config: Mapping[str, Any], size: np.ndarray, seed: int):  # noqa: ANN202
    if sample == "events":
        return lambda ev, local, out: generate_event(config["simulation"], size, seed, ev,
                                                     local, out)
    return lambda ev, local, out: control_event(sample, config["control"], size, seed, ev,
                                                local, out)


def simulate_shard(block: dict[str, Any], *, setup: SimulationSetup, config: Mapping[str, Any],
                   visibility_dir: str | None, out_dir: str) -> dict[str, Any]:
    """Worker task: simulate events ``block['first']..`` and write their shard file."""
    import torch

    torch.set_num_threads(1)
    size = np.asarray(setup.size)
    events = range(block["first"], block["first"] + block["n"])
    result = simulate_events(setup, events, _primaries(block["sample"], config, size,
                                                       setup.seed), _visibility(visibility_dir))
    path = Path(out_dir) / block["file"]
    storage.write_shard(path, result["events"], {
        "sample": block["sample"], "first_event": block["first"],
        "voxel_size": setup.response.pitch, "grid_shape": [int(g) for g in result["grid"]],
        "interaction_kinds": ["neutrino", "cosmic", "control"],
    })
    return {"file": block["file"], "first_event": block["first"], "n_events": block["n"],
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "n_voxels": int(sum(len(e["voxels"]["charge"]) for e in result["events"]))}


def plan_shards(samples: Mapping[str, int], per_shard: int) -> list[dict[str, Any]]:
    blocks = []
    for sample, n in samples.items():
        for k, first in enumerate(range(0, int(n), int(per_shard))):
            blocks.append({"sample": sample, "first": first,
                           "n": min(int(per_shard), int(n) - first),
                           "file": f"{sample}-{k:05d}.h5"})
    return blocks


def build_sample(config: Mapping[str, Any], section: str, out_dir: str | Path, *,
                 visibility_dir: str | Path | None, n_detectors: int, threads: int,
                 dask_cfg: Mapping[str, Any] | None, tpc: Mapping[str, Any] | None = None
                 ) -> dict[str, Any]:
    """Simulate ``section`` ("simulation": the main sample; "control": the calibration
    samples) into ``out_dir`` and write ``index.json``; returns the index."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    setup = setup_from_config(config, n_detectors, section, tpc)
    if section == "simulation":
        samples = {"events": config["simulation"]["events"]}
    else:
        samples = {s: config["control"][s] for s in SAMPLES if config["control"][s] > 0}
    blocks = plan_shards(samples, config[section]["events_per_shard"])
    results: dict[int, dict[str, Any]] = {}
    with dask_client(dask_cfg, threads) as client:
        map_blocks(client, simulate_shard, blocks, desc=f"simulate {section}",
                   on_result=results.__setitem__, setup=setup, config=dict(config),
                   visibility_dir=str(visibility_dir) if visibility_dir else None,
                   out_dir=str(out_dir))
    index: dict[str, Any] = {"schema_version": storage.SCHEMA_VERSION, "samples": {}}
    for i, b in enumerate(blocks):
        s = index["samples"].setdefault(b["sample"], {"events": 0, "voxels": 0, "shards": []})
        s["events"] += results[i]["n_events"]
        s["voxels"] += results[i]["n_voxels"]
        s["shards"].append({k: results[i][k] for k in ("file", "first_event", "n_events",
                                                          "sha256")})
    write_json_atomic(out_dir / "index.json", index)
    return index
