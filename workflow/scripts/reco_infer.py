"""Snakemake job: sharded inference of the trained network over every simulated event."""

import time
from pathlib import Path

from larchain.core.artifacts import ArtifactSpec, require, write_manifest
from larchain.core.jobs import run_job
from larchain.reco.infer import run_inference


def main(smk) -> None:  # noqa: ANN001
    t0 = time.perf_counter()
    spec = ArtifactSpec.from_dict(smk.params.artifact)
    model_dir, sim_dir = Path(smk.input.model).parent, Path(smk.input.events).parent
    require(model_dir)
    require(sim_dir)
    out = Path(smk.output.index).parent
    index = run_inference(model_dir, sim_dir, out, spec.config["reco"]["infer"],
                          threads=smk.threads, dask_cfg=smk.config.get("dask"))
    files = [out / s["file"] for s in index["samples"]["predictions"]["shards"]]
    write_manifest(spec, [*files, smk.output.index], seed=None,
                   wall_time_s=time.perf_counter() - t0,
                   extra={"events": index["samples"]["predictions"]["events"]})


if __name__ == "__main__":  # Dask spawns worker processes that re-import this file
    run_job(main, snakemake)
