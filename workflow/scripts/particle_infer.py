"""Snakemake job: reconstruct particles and interactions in every event, on a Dask cluster."""

import sys
import time
from pathlib import Path

from larchain.core.artifacts import ArtifactSpec, require, write_manifest
from larchain.core.jobs import run_job
from larchain.reco.particle_stage import run_inference


def main(smk) -> None:  # noqa: ANN001
    t0 = time.perf_counter()
    spec = ArtifactSpec.from_dict(smk.params.artifact)
    model_dir = Path(smk.input.model).parent
    sim_dir, pred_dir = Path(smk.input.events).parent, Path(smk.input.predictions).parent
    for d in (model_dir, sim_dir, pred_dir):
        require(d)
    out = Path(smk.output.index).parent
    index = run_inference(model_dir, sim_dir, pred_dir, out, spec.config["particles"]["infer"],
                          threads=smk.threads, dask_cfg=smk.config.get("dask"))
    sample = index["samples"]["particles"]
    wall = time.perf_counter() - t0
    print(f"{sample['events']} events in {wall:.1f} s ({sample['events'] / wall:.2f} events/s "
          f"with {smk.threads} worker(s), start-up included)", file=sys.stderr)
    files = [out / s["file"] for s in sample["shards"]]
    write_manifest(spec, [*files, smk.output.index], seed=None, wall_time_s=wall,
                   extra={"events": sample["events"]})


if __name__ == "__main__":  # Dask spawns worker processes that re-import this file
    run_job(main, snakemake)
