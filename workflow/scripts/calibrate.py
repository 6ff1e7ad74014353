"""Snakemake job: fit the detector physics to the control samples (Adam, L-BFGS, Hessian),
the classic baselines on the same events, and the fitted detector config."""

import json
import sys
import time
from pathlib import Path

import torch

from larchain.calib import stage
from larchain.calib.fit import FitSettings, fit
from larchain.calib.output import write_fit
from larchain.core.artifacts import ArtifactSpec, write_manifest
from larchain.core.device import resolve_device
from larchain.core.jobs import run_job


def main(smk) -> None:  # noqa: ANN001
    t0 = time.perf_counter()
    spec = ArtifactSpec.from_dict(smk.params.artifact)
    cfg = spec.config["calibration"]
    control, visibility = stage.job_inputs(smk.input.control, smk.input.get("visibility"))
    # a fixed thread count: float sums, hence the artifact's bytes, do not depend on --cores
    torch.set_num_threads(2)
    device = resolve_device(smk.config["calibration"]["device"], "calibration.device")
    problem = stage.build_problem(control, visibility, cfg, device=device)
    result = fit(problem.likelihood, problem.param, FitSettings.from_config(cfg, cfg["seed"]))
    classic = stage.run_baselines(problem)
    files = write_fit(Path(spec.path), problem, result, classic)
    # timings go to the log: the manifest holds only what the same config reproduces
    print(f"fit timing [s]: {json.dumps(result.timing)}", file=sys.stderr)
    write_manifest(spec, files, seed=int(cfg["seed"]), wall_time_s=time.perf_counter() - t0,
                   extra={"events": problem.data.n_events, "notes": problem.notes,
                          "device": device.type})


if __name__ == "__main__":
    run_job(main, snakemake)
