"""Snakemake job: build the LUT artifact (lut.nc + manifest.json)."""

import time

from larchain.core.artifacts import ArtifactSpec, write_manifest
from larchain.core.jobs import run_job
from larchain.lut.build import build_lut, write_lut


def main(smk) -> None:  # noqa: ANN001
    t0 = time.perf_counter()
    spec = ArtifactSpec.from_dict(smk.params.artifact)
    config = dict(spec.config)
    config["lut"] = {**config["lut"], "device": smk.config["lut"]["device"]}
    ds = build_lut(config, threads=smk.threads, dask_cfg=smk.config.get("dask"))
    write_lut(ds, smk.output.lut)
    write_manifest(
        spec,
        [smk.output.lut],
        seed=int(config["lut"]["seed"]),
        wall_time_s=time.perf_counter() - t0,
        extra={"device": ds.attrs["device"], "truncated_photons": ds.attrs["truncated_photons"]},
    )


if __name__ == "__main__":  # Dask spawns worker processes that re-import this file
    run_job(main, snakemake)
