"""The calibration stage end to end: set up the fit from the control artifact and the
config, run it next to the classic baselines, and the coverage toys.

Conventions: the fit starts from the nominal ``tpc`` the control samples were configured
with and uses the same readout settings (pitch, noise, threshold, time-to-x velocity); the
truth it is compared with is the samples' true physics (``control.truth`` merged over
``tpc``, recorded in the control manifest).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from larchain.calib import baselines
from larchain.calib.data import ControlData, control_info, load_control
from larchain.calib.fit import FitResult, FitSettings, fit
from larchain.calib.likelihood import Likelihood, Parametrisation, comparable_truth
from larchain.core.geometry import Detector
from larchain.sim import rng as hashrng
from larchain.sim.control import SAMPLES
from larchain.sim.light import sample_pe
from larchain.sim.recombination import MODEL_PARAMS
from larchain.sim.response import Deposits, ResponseSettings, detector_response
from larchain.sim.simulate import response_from_config

log = logging.getLogger(__name__)

LIGHT_ONLY = ("light_yield", "pd_efficiency")


@dataclass
class Problem:
    """Everything a fit needs: data, likelihood, parametrisation, settings and truth."""

    data: ControlData
    likelihood: Likelihood
    param: Parametrisation
    settings: ResponseSettings
    true_params: dict[str, torch.Tensor]
    truth: dict[str, float]
    notes: list[str]
    info: dict[str, Any]


def job_inputs(control_index: str | Path, visibility_manifest: str | Path | None
               ) -> tuple[Path, Path | None]:
    """The control and visibility artifact directories of a job's inputs, verified."""
    from larchain.core.artifacts import require

    control = Path(control_index).parent
    require(control)
    visibility = Path(visibility_manifest).parent if visibility_manifest else None
    if visibility is not None:
        require(visibility)
    return control, visibility


def free_parameters(names: Sequence[str], model: str) -> tuple[str, ...]:
    """Config names -> response parameter names ("recombination" -> the model's pair)."""
    out: list[str] = []
    for n in names:
        out.extend(MODEL_PARAMS[model] if n == "recombination" else [n])
    return tuple(out)


@functools.cache
def _visibility_model(directory: str | None) -> Any:
    if directory is None:
        return None
    from larchain.visibility import load_visibility

    return load_visibility(directory)


def _as_start(params: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    return {k: (v.tolist() if k == "pd_efficiency" else float(v)) for k, v in params.items()}


def build_problem(control_dir: str | Path, visibility_dir: str | Path | None,
                  cfg: Mapping[str, Any], events: Mapping[str, int | None] | None = None,
                  visibility_model: Any = None, device: torch.device | str | None = None
                  ) -> Problem:
    """Load the control samples and set up the likelihood of ``cfg`` (the ``calibration``
    section) for them. ``events`` overrides ``cfg["events"]`` (the coverage toys' subset);
    ``visibility_model`` overrides the model of ``visibility_dir``; ``device`` is where the
    likelihood is evaluated (default: the host)."""
    info = control_info(control_dir)
    n_det = Detector.from_config(info["detector"]).n_photodetectors
    model = str(cfg["recombination"])
    nominal = {**info["tpc"], "recombination": model}
    start, settings = response_from_config(nominal, info["readout"], n_det)
    true_tpc = dict(info["true_tpc"])
    true_params, _ = response_from_config(true_tpc, info["readout"], n_det,
                                          nominal_tpc=info["tpc"])
    wanted = dict(cfg.get("events") or {}) if events is None else dict(events)
    limits = {s: int(v) for s, v in wanted.items() if v is not None}
    samples = [s for s in SAMPLES if limits.get(s, 1) > 0]
    data = load_control(control_dir, samples, limits)
    notes: list[str] = []
    free = free_parameters(cfg["parameters"], model)
    vis = visibility_model if visibility_model is not None else _visibility_model(
        str(visibility_dir) if visibility_dir else None)
    if data.pe is None or vis is None:
        dropped = [n for n in free if n in LIGHT_ONLY]
        if dropped:
            notes.append(f"not fitted (no light in the control samples): {dropped}")
        free = tuple(n for n in free if n not in LIGHT_ONLY)
    else:
        data = data.with_visibility(vis)
    param = Parametrisation(free, _as_start(start), n_det if data.pe is not None else 0)
    truth = comparable_truth(_as_start(true_params), param.n_detectors)
    if true_tpc.get("recombination", "box") != model:
        notes.append(f"the samples' recombination model is {true_tpc.get('recombination')!r}"
                     f", the fit's {model!r}: no truth for {MODEL_PARAMS[model]}")
        for n in MODEL_PARAMS[model]:
            truth.pop(n, None)
    likelihood = Likelihood(data, settings, use_light=data.visibility is not None, device=device)
    return Problem(data, likelihood, param, settings, true_params, truth, notes, info)


def baseline_settings(problem: Problem) -> dict[str, Any]:
    return {"pitch": problem.data.pitch,
            "reco_velocity": problem.settings.reco_drift_velocity,
            "field": float(problem.info["tpc"]["field"]),
            "size": [float(v) for v in Detector.from_config(problem.info["detector"]).size]}


def run_baselines(problem: Problem, data: ControlData | None = None) -> dict[str, Any]:
    """The classic fits on the same events (default: the problem's own observation)."""
    d = data if data is not None else problem.data
    by_sample: dict[str, list[dict[str, Any]]] = {s: [] for s in SAMPLES}
    for ev in d.events:
        by_sample[ev["sample"]].append(ev)
    return baselines.run_baselines(by_sample, baseline_settings(problem))


def summarise(result: FitResult, truth: Mapping[str, float]) -> dict[str, Any]:
    """Per parameter: value, error, truth, pull and relative deviation."""
    rows = {}
    for n in result.names:
        v, e = result.values[n], result.errors[n]
        t = truth.get(n)
        rows[n] = {"value": v, "error": e, "truth": t,
                   "pull": None if t is None or e <= 0 else (v - t) / e,
                   "relative": None if not t else (v - t) / t}
    return rows


def toy_observation(problem: Problem, toy_seed: int,
                    params: Mapping[str, torch.Tensor] | None = None) -> ControlData:
    """Redraw the detector noise, threshold and Poisson light of every event with the true
    parameters (or ``params``) on the same deposits: one pseudo-experiment of the readout."""
    data = problem.data
    params = problem.true_params if params is None else params
    gen = torch.Generator().manual_seed(int(toy_seed))
    settings = replace(problem.settings, mode="exact")
    grid = torch.tensor(data.grid)
    ev_out, co_out, q_out = [], [], []
    for k in torch.unique(data.neighbourhood).tolist():
        events = torch.nonzero(data.neighbourhood == k).flatten()
        d = data.subset(events)
        deposits = Deposits(pos=d.pos, de=d.de, dx=d.dx, t0=d.t0, event=d.event,
                            n_events=d.n_events)
        with torch.no_grad():
            resp = detector_response(deposits, params,
                                     replace(settings, neighbourhood=int(k)), generator=gen)
        inside = ((resp.coords >= 0) & (resp.coords < grid)).all(1)
        ev_out.append(events[resp.event[inside]])
        co_out.append(resp.coords[inside])
        q_out.append(resp.charge[inside].to(torch.float32).to(torch.float64))
    pe = None
    if data.pe is not None and data.visibility is not None:
        with torch.no_grad():
            pe = sample_pe(problem.likelihood.expected_pe(data, params), gen)
    toy = data.with_observation(torch.cat(ev_out), torch.cat(co_out), torch.cat(q_out), pe)
    if data.events:  # the baselines read event dicts: same tracks, the toy's voxels
        vox_event = toy.vox_event.numpy()
        bounds = np.searchsorted(vox_event, np.arange(data.n_events + 1))
        coords, charge = toy.vox_coords.numpy(), toy.vox_charge.numpy()
        toy.events = [{**ev, "voxels": {"coords": coords[a:b].astype(np.int32),
                                        "charge": charge[a:b].astype(np.float32)}}
                      for ev, a, b in zip(data.events, bounds[:-1], bounds[1:], strict=True)]
    return toy


def run_toy(block: Mapping[str, Any], *, control_dir: str, visibility_dir: str | None,
            cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Dask task: toy ``block['toy']`` of the coverage study (see :func:`fit_toy`)."""
    torch.set_num_threads(1)
    problem = _coverage_problem(control_dir, visibility_dir, _freeze(cfg))
    return fit_toy(problem, int(block["toy"]), cfg)


def fit_toy(problem: Problem, toy: int, cfg: Mapping[str, Any]) -> dict[str, Any]:
    """One toy: redraw the readout of the problem's tracks, refit, and the classic lifetime
    fit on the same toy; pulls against the truth."""
    seed = int(hashrng.derive(int(cfg["coverage"]["seed"]), int(toy)))
    data = toy_observation(problem, seed & 0x7FFFFFFFFFFFFFFF)
    lik = Likelihood(data, problem.settings, use_light=problem.likelihood.use_light,
                     device=problem.likelihood.device)
    try:
        result = fit(lik, problem.param, FitSettings.from_config(cfg, seed & 0xFFFFFFFF),
                     progress=False)
    except ValueError as err:  # e.g. no minimum found: counted, not hidden
        return {"toy": int(toy), "failed": str(err), "timing_s": {}}
    rows = summarise(result, problem.truth)
    classic: dict[str, Any] = {}
    crossing = [ev for ev in data.events if ev["sample"] == "crossing_muons"]
    if crossing:
        try:
            lt = baselines.lifetime_fit(crossing, pitch=data.pitch,
                                        reco_velocity=problem.settings.reco_drift_velocity)
            classic = {"lifetime": lt["lifetime"], "lifetime_error": lt["lifetime_error"]}
        except ValueError as err:
            classic = {"error": str(err)}
    return {"toy": int(toy), "fit": rows, "nll": result.nll,
            "timing_s": result.timing, "classic": classic}


def _freeze(cfg: Mapping[str, Any]) -> str:
    import json

    return json.dumps(cfg, sort_keys=True)


@functools.cache
def _coverage_problem(control_dir: str, visibility_dir: str | None, cfg_json: str) -> Problem:
    import json

    cfg = json.loads(cfg_json)
    return build_problem(control_dir, visibility_dir, cfg, events=cfg["coverage"]["events"])


def pull_summary(toys: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Mean and width of the pulls per parameter, with their statistical errors (toys whose
    fit failed are counted in ``failed`` and left out)."""
    failed = [t for t in toys if "failed" in t]
    toys = [t for t in toys if "failed" not in t]
    names = list(toys[0]["fit"]) if toys else []
    out: dict[str, Any] = {"failed": {"n": len(failed),
                                      "reasons": sorted({t["failed"] for t in failed})}}
    for n in names:
        pulls = np.array([t["fit"][n]["pull"] for t in toys if t["fit"][n]["pull"] is not None])
        if len(pulls) < 2:
            continue
        m = len(pulls)
        width = float(pulls.std(ddof=1))
        out[n] = {"n": m, "mean": float(pulls.mean()), "mean_error": width / np.sqrt(m),
                  "width": width, "width_error": width / np.sqrt(2 * (m - 1)),
                  "pulls": pulls.tolist()}
    lt_fit = np.array([t["fit"]["lifetime"]["value"] for t in toys if "lifetime" in t["fit"]])
    lt_classic = np.array([t["classic"]["lifetime"] for t in toys
                           if "lifetime" in t.get("classic", {})])
    if len(lt_fit) >= 2 and len(lt_classic) >= 2:
        out["lifetime_resolution"] = {
            "fit_spread": float(lt_fit.std(ddof=1)),
            "classic_spread": float(lt_classic.std(ddof=1)),
            "ratio": float(lt_fit.std(ddof=1) / lt_classic.std(ddof=1)),
            "fit_mean": float(lt_fit.mean()), "classic_mean": float(lt_classic.mean())}
    return out
