"""Snakemake job: metrics of the network and of the PCA baseline on the held-out events,
and the reconstruction figures."""

import json
import time
from pathlib import Path

import numpy as np

from larchain.core.artifacts import ArtifactSpec, atomic_path, require, write_manifest
from larchain.core.jobs import run_job
from larchain.reco import evaluate as E
from larchain.reco import plots
from larchain.reco.data import event_points
from larchain.sim.storage import EventDataset


def main(smk) -> None:  # noqa: ANN001
    t0 = time.perf_counter()
    spec = ArtifactSpec.from_dict(smk.params.artifact)
    cfg = spec.config["reco"]["eval"]
    sim_dir, pred_dir = Path(smk.input.events).parent, Path(smk.input.predictions).parent
    for d in (sim_dir, pred_dir, Path(smk.input.split).parent):
        require(d)
    holdout = json.loads(Path(smk.input.split).read_text())["holdout"]
    events, preds = EventDataset(sim_dir), EventDataset(pred_dir, "predictions")
    voxel_size = float(events.files[0].attrs["voxel_size"])
    conf = np.zeros((E.N_CLASSES, E.N_CLASSES), np.int64)
    conf_base = conf.copy()
    true_pts, pred_pts, shown = [], [], None
    for i in holdout:
        ev, pr = events.raw(i), preds.raw(i)
        truth = ev["voxels"]["semantic"]
        conf += E.confusion(truth, pr["voxels"]["pred"])
        base = E.baseline_prediction(ev["voxels"]["coords"], cfg["baseline_radius"],
                                     cfg["baseline_linearity"])
        conf_base += E.confusion(truth, base)
        tp = event_points(ev["particles"], voxel_size)
        pp = np.c_[pr["points"]["position"], pr["points"]["type"]]
        true_pts.append(tp)
        pred_pts.append(pp)
        if shown is None:
            shown = (i, ev["voxels"]["coords"], truth, pr["voxels"]["pred"], tp, pp)
    points = E.point_metrics(true_pts, pred_pts, float(cfg["point_within"]))
    summary = E.summarise(conf, conf_base, points, holdout)
    with atomic_path(smk.output.metrics) as tmp:
        tmp.write_text(json.dumps(summary, indent=1))
    plots.confusion_figure(conf, conf_base, smk.output.confusion)
    i, coords, truth, pred, tp, pp = shown
    plots.prediction_display(coords, truth, pred, tp, pp, smk.output.display, f"event {i}")
    plots.point_residuals(points["distances"], float(cfg["point_within"]), smk.output.points)
    write_manifest(spec, [smk.output.metrics, smk.output.confusion, smk.output.display,
                          smk.output.points], seed=None, wall_time_s=time.perf_counter() - t0)


if __name__ == "__main__":
    run_job(main, snakemake)
