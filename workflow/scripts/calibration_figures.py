"""Snakemake job: the calibration figures (convergence, pulls, correlations, dQ/dx versus
drift time with both fits, PE per detector, closed loop)."""

import json
from pathlib import Path

import numpy as np
import torch
import yaml

from larchain.calib import baselines, plots, stage
from larchain.core.artifacts import atomic_path, require
from larchain.core.geometry import Detector
from larchain.core.jobs import run_job
from larchain.sim.simulate import response_from_config


def _profile(problem, data, t_bin):  # noqa: ANN001, ANN202
    """The classic dQ/dx-versus-drift-time profile of the crossing muons (None when there
    are too few to build it)."""
    crossing = [ev for ev in data.events if ev["sample"] == "crossing_muons"]
    try:
        fit = baselines.lifetime_fit(crossing, pitch=data.pitch, t_bin_us=t_bin,
                                     reco_velocity=problem.settings.reco_drift_velocity)
    except ValueError:
        return None
    return fit["points"]


def main(smk) -> None:  # noqa: ANN001
    out = smk.output
    calib_dir, cov_dir = Path(smk.input.calibration).parent, Path(smk.input.toys).parent
    for d in (calib_dir, cov_dir):
        require(d)
    control, visibility = stage.job_inputs(smk.input.control, smk.input.get("visibility"))
    torch.set_num_threads(2)
    summary = json.loads(Path(smk.input.calibration).read_text())
    coverage = json.loads(Path(smk.input.toys).read_text())
    cfg = {**smk.config["calibration"]}
    problem = stage.build_problem(control, visibility, cfg)
    rows = summary["parameters"]
    truth = {n: r["truth"] for n, r in rows.items()}
    names = summary["names"]
    t_bin = float(smk.params.figure["t_bin"])

    plots.convergence_figure(summary["history"], truth, names, out.convergence)
    plots.pulls_figure(coverage["summary"], out.pulls)
    plots.correlation_figure(names, np.array(summary["correlation"]), out.correlation)
    # closed loop: the same tracks through nominal, fitted and true detector physics
    info = problem.info
    n_det = Detector.from_config(info["detector"]).n_photodetectors
    fitted_tpc = yaml.safe_load((calib_dir / "tpc.yaml").read_text())["tpc"]
    sets = {
        "nominal": response_from_config(info["tpc"], info["readout"], n_det)[0],
        "fitted": response_from_config(fitted_tpc, info["readout"], n_det,
                                       nominal_tpc=info["tpc"])[0],
        "true": problem.true_params,
    }
    seed = int(cfg["seed"])
    profiles = {"observed": _profile(problem, problem.data, t_bin)}
    pe = {}
    if problem.data.pe is not None and problem.data.visibility is not None:
        pe["observed"] = problem.data.pe.sum(0).numpy()
    for name, params in sets.items():
        sim = stage.toy_observation(problem, seed, params)
        profiles[name] = _profile(problem, sim, t_bin)
        if "observed" in pe:
            with torch.no_grad():
                pe[name] = problem.likelihood.expected_pe(problem.data, params).sum(0).numpy()
    profiles = {k: v for k, v in profiles.items() if v is not None}
    plots.closed_loop_figure(profiles, pe, out.closed_loop)
    classic = summary["baselines"].get("lifetime", {})
    if "lifetime" in rows and "lifetime" in classic:
        plots.lifetime_figure(classic["points"], classic, rows["lifetime"]["value"],
                              rows["lifetime"]["error"], truth.get("lifetime"), out.lifetime,
                              model=profiles.get("fitted"))
    else:
        plots.lifetime_figure({"t": [0.0], "dqdx": [np.nan], "dqdx_error": [0.0]},
                              {"amplitude": np.nan, "lifetime": np.nan,
                               "lifetime_error": np.nan}, np.nan, np.nan, None, out.lifetime)

    if "observed" in pe:
        plots.light_figure(pe["observed"], pe["fitted"], pe["nominal"], out.light)
    else:
        plots.light_figure(np.zeros(1), np.ones(1), np.ones(1), out.light)
    res = coverage["summary"].get("lifetime_resolution", {})
    with atomic_path(out.summary) as tmp:
        tmp.write_text(json.dumps({
            "fit": {n: {k: r[k] for k in ("value", "error", "truth", "pull", "relative")}
                    for n, r in rows.items()},
            "classic_lifetime": {k: classic.get(k) for k in ("lifetime", "lifetime_error")},
            "pulls": {n: {k: v[k] for k in ("n", "mean", "mean_error", "width",
                                            "width_error")}
                      for n, v in coverage["summary"].items() if "pulls" in v},
            "lifetime_resolution": res,
            "failed_toys": coverage["summary"].get("failed"),
        }, indent=1))


if __name__ == "__main__":
    run_job(main, snakemake)
