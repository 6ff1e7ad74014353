"""Snakemake job: build the LUT artifact (lut.nc + manifest.json)."""

import contextlib
import time

from larchain.core.artifacts import ArtifactSpec, write_manifest
from larchain.lut.build import build_lut, write_lut


def main(smk) -> None:  # noqa: ANN001
    t0 = time.perf_counter()
    spec = ArtifactSpec.from_dict(smk.params.artifact)
    config = dict(spec.config)
    config["lut"] = {**config["lut"], "device": smk.params.device}
    ds = build_lut(config, threads=smk.threads, dask_cfg=smk.params.dask)
    write_lut(ds, smk.output.lut)
    write_manifest(
        spec,
        [smk.output.lut],
        seed=int(config["lut"]["seed"]),
        wall_time_s=time.perf_counter() - t0,
        extra={"device": ds.attrs["device"], "truncated_photons": ds.attrs["truncated_photons"]},
    )


if __name__ == "__main__":  # Dask spawns worker processes that re-import this file
    with open(snakemake.log[0], "w") as log, contextlib.redirect_stderr(log):
        main(snakemake)
