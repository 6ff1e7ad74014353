"""The calibration artifact's files.

* ``calibration.json``: best fit per parameter (value, error, truth, pull), covariance and
  correlation, -ln L, the fit history, the classic baselines, notes.
* ``calibration.nc`` (NetCDF4 via xarray): the same numbers as arrays, dims ``parameter``,
  ``parameter_b`` and ``step`` (history of -ln L and of every parameter).
* ``tpc.yaml``: the fitted detector physics as a ``tpc`` config section: pass it to
  ``snakemake --configfile`` and the simulation runs with the calibrated detector.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
import yaml

from larchain.calib.fit import FitResult
from larchain.core.artifacts import atomic_path

#: tpc keys the fit can change (the rest of the section is copied from the nominal one).
_TPC_SCALARS = ("lifetime", "box_alpha", "box_beta", "birks_ab", "birks_kb", "diffusion_l",
                "diffusion_t", "drift_velocity", "light_yield")


def fitted_tpc(problem: Any, result: FitResult) -> dict[str, Any]:
    """The nominal ``tpc`` section with the fitted values in place."""
    tpc = dict(problem.info["tpc"])
    tpc["recombination"] = problem.settings.recombination
    params = problem.param.params(result.theta)
    for k in _TPC_SCALARS:
        # the light yield also changes when only the efficiencies are fitted: it carries
        # their mean
        if k in problem.param.scalars or (k == "light_yield" and problem.param.n_detectors):
            tpc[k] = float(params[k])
    if problem.param.n_detectors:
        tpc["pd_efficiency"] = [float(v) for v in params["pd_efficiency"]]
    return tpc


def _finite(x: Any) -> Any:
    return None if isinstance(x, float) and not math.isfinite(x) else x


def write_fit(directory: Path, problem: Any, result: FitResult, classic: dict[str, Any]
              ) -> list[Path]:
    """Write the three files (each atomically); returns their paths."""
    from larchain.calib.stage import summarise

    directory.mkdir(parents=True, exist_ok=True)
    rows = summarise(result, problem.truth)
    summary = {
        "control": problem.info.get("id"),
        "recombination": problem.settings.recombination,
        "events": problem.data.n_events,
        "free": list(problem.param.labels),
        "parameters": rows,
        "names": result.names,
        "covariance": result.covariance.tolist(),
        "correlation": result.correlation.tolist(),
        "nll": result.nll,
        "start": {n: _finite(problem.param.start[n]) for n in problem.param.scalars},
        "history": result.history,
        "baselines": classic,
        "notes": problem.notes,
    }
    paths = [directory / "calibration.json", directory / "calibration.nc",
             directory / "tpc.yaml"]
    with atomic_path(paths[0]) as tmp:
        tmp.write_text(json.dumps(summary, indent=1))

    names = result.names
    hist_names = [n for n in names if n in result.history[0]] if result.history else []
    ds = xr.Dataset(
        {
            "value": ("parameter", np.array([result.values[n] for n in names])),
            "error": ("parameter", np.array([result.errors[n] for n in names])),
            "truth": ("parameter", np.array([np.nan if problem.truth.get(n) is None
                                             else problem.truth[n] for n in names])),
            "covariance": (("parameter", "parameter_b"), result.covariance.numpy()),
            "correlation": (("parameter", "parameter_b"), result.correlation.numpy()),
            "history_nll": ("step", np.array([h["nll"] for h in result.history])),
            "history_phase": ("step", np.array([h["phase"] for h in result.history])),
            "history_value": (("step", "history_parameter"),
                              np.array([[h[n] for n in hist_names] for h in result.history])
                              .reshape(len(result.history), len(hist_names))),
        },
        coords={"parameter": names, "parameter_b": names, "history_parameter": hist_names},
        attrs={"nll": result.nll, "recombination": problem.settings.recombination,
               "events": problem.data.n_events},
    )
    with atomic_path(paths[1]) as tmp:
        ds.to_netcdf(tmp, engine="h5netcdf")

    header = (f"# Detector physics fitted by the larchain calibration of control sample "
              f"{problem.info.get('id')}.\n# Use it: snakemake --configfile <this file> "
              "(its tpc section replaces the configured one).\n# pd_efficiency is relative "
              "(mean 1); light_yield carries the mean.\n")
    with atomic_path(paths[2]) as tmp:
        tmp.write_text(header + yaml.safe_dump({"tpc": fitted_tpc(problem, result)},
                                               sort_keys=False))
    return paths
