"""Snakemake job: evaluate the SIREN against the LUT (bias, compression, speed, figures)."""

import csv
import time
from pathlib import Path

import torch
import xarray as xr

from larchain.core.artifacts import (
    ArtifactSpec,
    atomic_path,
    require,
    write_json_atomic,
    write_manifest,
)
from larchain.core.device import resolve_device
from larchain.core.jobs import run_job
from larchain.siren import n_parameters
from larchain.siren.evaluate import evaluate_surrogate
from larchain.siren.plots import plot_bias, plot_comparison, plot_training
from larchain.visibility import load_visibility


def main(smk) -> None:  # noqa: ANN001
    t0 = time.perf_counter()
    spec = ArtifactSpec.from_dict(smk.params.artifact)
    cfg = spec.config["siren_eval"]
    siren_dir = Path(smk.input.siren_manifest).parent
    lut_dir = Path(smk.input.lut).parent
    device = resolve_device(smk.config["siren"]["device"], "siren.device")
    torch.set_num_threads(smk.threads)
    surrogate = load_visibility(siren_dir, device=str(device))  # verifies the artifact
    table = load_visibility(lut_dir, device=str(device))
    with xr.open_dataset(smk.input.lut, engine="h5netcdf") as ds:
        ds = ds.load()
    summary, evald = evaluate_surrogate(
        surrogate, table, ds, cfg, n_parameters=n_parameters(surrogate), device=str(device)
    )
    summary["siren_artifact"] = require(siren_dir)["id"]
    evald.attrs["threshold"] = float(cfg["threshold"])
    with atomic_path(smk.output.evaluation) as tmp:
        evald.to_netcdf(tmp, engine="h5netcdf")
    write_json_atomic(smk.output.metrics, summary)
    fig = cfg["figure"]
    with atomic_path(smk.output.comparison) as tmp:
        plot_comparison(
            ds,
            evald,
            tmp.with_suffix(".png"),
            detector=fig["detector"],
            axis=fig["axis"],
            position=fig["position"],
        ).replace(tmp)
    with atomic_path(smk.output.bias) as tmp:
        plot_bias(evald, summary, tmp.with_suffix(".png")).replace(tmp)
    with open(siren_dir / "metrics.csv") as f:
        metrics = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
    with atomic_path(smk.output.training) as tmp:
        plot_training(metrics, tmp.with_suffix(".png")).replace(tmp)
    files = [
        smk.output.metrics,
        smk.output.evaluation,
        smk.output.comparison,
        smk.output.bias,
        smk.output.training,
    ]
    write_manifest(
        spec,
        files,
        seed=None,
        wall_time_s=time.perf_counter() - t0,
        extra={
            "device": device.type,
            "bias_mean": summary["bias_mean"],
            "compression": summary["compression"],
        },
    )


if __name__ == "__main__":
    run_job(main, snakemake)
