"""Snakemake job: train the SIREN surrogate on the LUT (model + metrics + manifest)."""

import csv
import time
from pathlib import Path

import torch
import xarray as xr

from larchain.core.artifacts import ArtifactSpec, atomic_path, require, write_manifest
from larchain.core.device import resolve_device
from larchain.core.jobs import run_job
from larchain.siren import n_parameters, train_siren


def main(smk) -> None:  # noqa: ANN001
    t0 = time.perf_counter()
    spec = ArtifactSpec.from_dict(smk.params.artifact)
    cfg = spec.config["siren"]
    require(Path(smk.input.lut).parent)
    device = resolve_device(smk.config["siren"]["device"], "siren.device")
    torch.set_num_threads(smk.threads)
    with xr.open_dataset(smk.input.lut, engine="h5netcdf") as ds:
        ds = ds.load()
    model, metrics = train_siren(ds, cfg, device=str(device))
    out = Path(smk.output.model).parent
    model.cpu().save(out)
    with atomic_path(smk.output.metrics) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(metrics[0]))
        writer.writeheader()
        writer.writerows(metrics)
    best = min(metrics, key=lambda m: m["holdout_loss"])
    write_manifest(
        spec,
        [smk.output.model, smk.output.model_config, smk.output.metrics],
        seed=int(cfg["seed"]),
        wall_time_s=time.perf_counter() - t0,
        extra={
            "device": device.type,
            "parameters": n_parameters(model),
            "epochs_run": len(metrics),
            "best_epoch": best["epoch"],
            "best_holdout_loss": best["holdout_loss"],
        },
    )


if __name__ == "__main__":
    run_job(main, snakemake)
