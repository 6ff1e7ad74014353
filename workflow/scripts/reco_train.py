"""Snakemake job: train the UResNet + PPN on the simulated events (model + metrics)."""

import csv
import json
import time
from pathlib import Path

import torch

from larchain.core.artifacts import ArtifactSpec, atomic_path, require, write_manifest
from larchain.core.device import resolve_device
from larchain.core.jobs import run_job
from larchain.reco.train import save_model, train_uresnet
from larchain.sim.storage import EventDataset


def main(smk) -> None:  # noqa: ANN001
    t0 = time.perf_counter()
    spec = ArtifactSpec.from_dict(smk.params.artifact)
    cfg = spec.config["reco"]
    sim_dir = Path(smk.input.events).parent
    require(sim_dir)
    device = resolve_device(smk.config["reco"]["device"], "reco.device")
    torch.set_num_threads(smk.threads)
    dataset = EventDataset(sim_dir)
    voxel_size = float(dataset.files[0].attrs["voxel_size"])
    model, history, split = train_uresnet(dataset, cfg, voxel_size, device=str(device))
    out = Path(smk.output.model).parent
    save_model(model.cpu(), cfg, out)
    with atomic_path(smk.output.metrics) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
    with atomic_path(smk.output.split) as tmp:
        tmp.write_text(json.dumps({k: split[k] for k in ("train", "holdout")}))
    write_manifest(
        spec,
        [smk.output.model, smk.output.model_config, smk.output.metrics, smk.output.split],
        seed=int(cfg["seed"]),
        wall_time_s=time.perf_counter() - t0,
        extra={"device": device.type, "parameters": split["parameters"],
               "best_epoch": split["best_epoch"], "class_weights": split["class_weights"]},
    )


if __name__ == "__main__":
    run_job(main, snakemake)
