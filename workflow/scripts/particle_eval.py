"""Snakemake job: clustering and particle-ID scores of the learned chain and of the classical
baseline on the held-out events, and the particle-level figures."""

import json
import sys
import time
from pathlib import Path

from larchain.core.artifacts import ArtifactSpec, atomic_path, require, write_manifest
from larchain.core.jobs import run_job
from larchain.reco import particle_plots as plots
from larchain.reco.particle_stage import evaluate, per_event_table, voxel_size


def main(smk) -> None:  # noqa: ANN001
    t0 = time.perf_counter()
    spec = ArtifactSpec.from_dict(smk.params.artifact)
    cfg = spec.config["particles"]["eval"]
    sim_dir = Path(smk.input.events).parent
    pred_dir, part_dir = Path(smk.input.predictions).parent, Path(smk.input.particles).parent
    for d in (sim_dir, pred_dir, part_dir, Path(smk.input.split).parent):
        require(d)
    holdout = json.loads(Path(smk.input.split).read_text())["holdout"]
    result = evaluate(sim_dir, pred_dir, part_dir, holdout, cfg)
    tables = {k: per_event_table(v) for k, v in result["per_event"].items()}
    summary = {"events": result["events"], "mask_low_energy": cfg["mask_low_energy"],
               "learned": result["learned"], "baseline": result["baseline"],
               "per_event": tables}
    with atomic_path(smk.output.metrics) as tmp:
        tmp.write_text(json.dumps(summary, indent=1))
    for name in ("learned", "baseline"):
        s = result[name]
        print(f"{name:8s} ARI fragment {s['fragment']['ari']['mean']:.3f} particle "
              f"{s['particle']['ari']['mean']:.3f} interaction "
              f"{s['interaction']['ari']['mean']:.3f}; PID accuracy {s['pid']['accuracy']} "
              f"({s['pid_visible']['accuracy']} over particles of >= "
              f"{s['pid_visible']['min_voxels']} voxels, {s['pid_mutual']['accuracy']} over "
              f"those reconstructed as their own particle)", file=sys.stderr)
    plots.event_display({**result["display"], "voxel_size": voxel_size(sim_dir)},
                        smk.output.display)
    vis = result["learned"]["pid_visible"]
    plots.pid_confusion(result["learned"]["pid"]["confusion"],
                        result["baseline"]["pid"]["confusion"], smk.output.pid,
                        visible=(vis["confusion"], result["baseline"]["pid_visible"]["confusion"],
                                 vis["min_voxels"]))
    plots.score_distributions(tables["learned"], tables["baseline"], smk.output.scores)
    write_manifest(spec, [smk.output.metrics, smk.output.display, smk.output.pid,
                          smk.output.scores], seed=None, wall_time_s=time.perf_counter() - t0)


if __name__ == "__main__":
    run_job(main, snakemake)
