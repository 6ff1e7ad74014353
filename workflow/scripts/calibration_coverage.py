"""Snakemake job: the coverage study. Each toy redraws the readout noise, threshold and
Poisson light of the same tracks with the true parameters and refits; the pulls
(fit - truth) / sigma test the Hessian uncertainties. Toys run on the Dask cluster."""

import json
import sys
import time

from larchain.calib import stage
from larchain.core.artifacts import ArtifactSpec, atomic_path, write_manifest
from larchain.core.cluster import dask_client, map_blocks
from larchain.core.jobs import run_job


def main(smk) -> None:  # noqa: ANN001
    t0 = time.perf_counter()
    spec = ArtifactSpec.from_dict(smk.params.artifact)
    cfg = spec.config["calibration"]
    control, visibility = stage.job_inputs(smk.input.control, smk.input.get("visibility"))
    blocks = [{"toy": i} for i in range(int(cfg["coverage"]["toys"]))]
    toys: dict[int, dict] = {}
    with dask_client(smk.config.get("dask"), smk.threads) as client:
        map_blocks(client, stage.run_toy, blocks, desc="coverage toys",
                   on_result=toys.__setitem__, control_dir=str(control),
                   visibility_dir=str(visibility) if visibility else None, cfg=dict(cfg))
    ordered = [toys[i] for i in range(len(blocks))]
    timings = [t.pop("timing_s") for t in ordered]
    out = {"toys": ordered, "summary": stage.pull_summary(ordered),
           "events": dict(cfg["coverage"]["events"])}
    with atomic_path(smk.output.toys) as tmp:
        tmp.write_text(json.dumps(out, indent=1))
    # timings go to the log: the manifest holds only what the same config reproduces
    print(f"toy fit timings [s]: {json.dumps(timings)}", file=sys.stderr)
    write_manifest(spec, [smk.output.toys], seed=int(cfg["coverage"]["seed"]),
                   wall_time_s=time.perf_counter() - t0)


if __name__ == "__main__":  # Dask spawns worker processes that re-import this file
    run_job(main, snakemake)
