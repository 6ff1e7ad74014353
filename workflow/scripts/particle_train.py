"""Snakemake job: train the particle-level chain (dense clustering, fragment GNN, particle
GNN) on the training events, from the simulation and stage 1's predictions."""

import csv
import json
import sys
import time
from pathlib import Path

import torch

from larchain.core.artifacts import ArtifactSpec, atomic_path, require, write_manifest
from larchain.core.jobs import run_job
from larchain.reco.particle_stage import load_inputs, voxel_size
from larchain.reco.particles import save_chain, train_chain


def main(smk) -> None:  # noqa: ANN001
    t0 = time.perf_counter()
    spec = ArtifactSpec.from_dict(smk.params.artifact)
    cfg = spec.config["particles"]
    sim_dir, pred_dir = Path(smk.input.events).parent, Path(smk.input.predictions).parent
    for d in (sim_dir, pred_dir, Path(smk.input.split).parent):
        require(d)
    torch.set_num_threads(smk.threads)
    train = json.loads(Path(smk.input.split).read_text())["train"]
    events = load_inputs(sim_dir, pred_dir, train, desc="load")
    chain, history = train_chain(events, {k: v for k, v in cfg.items()
                                          if k not in ("infer", "eval")}, voxel_size(sim_dir))
    out = Path(smk.output.manifest).parent
    save_chain(chain, out)
    with atomic_path(smk.output.history) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
    last = {row["step"]: row for row in history}
    print({k: round(v["edge_accuracy"], 4) for k, v in last.items()},
          f"trained in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    write_manifest(spec, [smk.output.model, smk.output.chain, smk.output.history],
                   seed=int(cfg["seed"]), wall_time_s=time.perf_counter() - t0,
                   extra={"train_events": len(train),
                          "mev_per_electron": chain.mev_per_electron,
                          "final_edge_accuracy": {k: v["edge_accuracy"]
                                                  for k, v in last.items()}})


if __name__ == "__main__":
    run_job(main, snakemake)
