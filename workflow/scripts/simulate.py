"""Snakemake job: simulate a sample (the labelled events, or the control samples) into a
versioned artifact: HDF5 shards + index.json + manifest.json."""

import time
from pathlib import Path

from larchain.core.artifacts import ArtifactSpec, require, write_manifest
from larchain.core.geometry import Detector
from larchain.core.jobs import run_job
from larchain.sim.build import build_sample


def main(smk) -> None:  # noqa: ANN001
    t0 = time.perf_counter()
    spec = ArtifactSpec.from_dict(smk.params.artifact)
    section = smk.params.section
    visibility = smk.input.get("visibility")
    if visibility:
        visibility = str(Path(visibility).parent)
        require(visibility)
    config = {**smk.config, **spec.config}
    tpc = dict(config["tpc"])
    if section == "control":
        tpc.update(config["control"]["truth"])  # the samples' true detector physics
    n_det = Detector.from_config(config["detector"]).n_photodetectors
    out = Path(smk.output.index).parent
    index = build_sample(config, section, out, visibility_dir=visibility, n_detectors=n_det,
                         threads=smk.threads, dask_cfg=smk.config.get("dask"), tpc=tpc)
    files = [out / s["file"] for v in index["samples"].values() for s in v["shards"]]
    write_manifest(
        spec,
        [*files, smk.output.index],
        seed=int(config[section]["seed"]),
        wall_time_s=time.perf_counter() - t0,
        extra={"samples": {k: {"events": v["events"], "voxels": v["voxels"]}
                           for k, v in index["samples"].items()},
               "true_tpc": tpc},
    )


if __name__ == "__main__":  # Dask spawns worker processes that re-import this file
    run_job(main, snakemake)
