"""Calibration fit: likelihood, Hessian uncertainties against analytic answers, recovery of
injected detector parameters through the simulator's own response, the artifact's files."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import yaml

from larchain.calib.data import ControlData, control_info, load_control
from larchain.calib.fit import FitSettings, covariance_from_hessian, fit, full_hessian, hessian
from larchain.calib.likelihood import (
    Likelihood,
    Parametrisation,
    comparable_truth,
    sum_zero_basis,
)
from larchain.core.visibility import VisibilityModel
from larchain.sim.response import Deposits, ResponseSettings, default_params, detector_response

F64 = torch.float64
GRID = (200, 200, 200)


class Constant(VisibilityModel):
    def __init__(self, values: list[float]) -> None:
        super().__init__()
        self.register_buffer("values", torch.tensor(values, dtype=torch.float32))

    @property
    def n_detectors(self) -> int:
        return int(self.values.shape[0])

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        return self.values.to(points.dtype).expand(points.shape[0], -1).clone()


def start_params(n_det: int = 0) -> dict:
    p = default_params("box", n_det, F64)
    return {k: (v.tolist() if k == "pd_efficiency" else float(v)) for k, v in p.items()}


def observe(pos, de, dx, t0, event, n_events, params, settings, gen, visibility=None,
            n_det=0) -> ControlData:
    """ControlData whose voxels and PE come from the exact (production) response."""
    dep = Deposits(pos=pos, de=de, dx=dx, t0=t0, event=event, n_events=n_events)
    resp = detector_response(dep, params, settings, visibility, gen)
    inside = ((resp.coords >= 0) & (resp.coords < torch.tensor(GRID))).all(1)
    order = torch.argsort(resp.event[inside], stable=True)
    vev = resp.event[inside][order]
    nd = torch.bincount(event, minlength=n_events)
    nv = torch.bincount(vev, minlength=n_events)
    z = torch.zeros(1, dtype=torch.int64)
    data = ControlData(
        pos=pos, de=de, dx=dx, t0=t0, event=event,
        sample=torch.zeros(n_events, dtype=torch.int64),
        neighbourhood=torch.full((n_events,), int(settings.neighbourhood), dtype=torch.int64),
        pe=None if resp.pe is None else resp.pe.to(F64),
        deposit_offset=torch.cat([z, nd.cumsum(0)]),
        vox_event=vev, vox_coords=resp.coords[inside][order],
        vox_charge=resp.charge[inside][order].to(F64), vox_offset=torch.cat([z, nv.cumsum(0)]),
        grid=GRID, pitch=settings.pitch,
    )
    return data.with_visibility(visibility) if visibility is not None else data


def tracks(n: int, seed: int = 0, length: float = 40.0, step: float = 0.15):
    """``n`` straight MIP-like and proton-like tracks at random drift distances and angles
    (dE/dx from 2 to ~12 MeV/cm so both box constants are constrained)."""
    g = np.random.default_rng(seed)
    pos, de, dx, t0, ev = [], [], [], [], []
    for i in range(n):
        a = g.uniform([2, 5, 5], [55, 55, 55])
        d = g.normal(size=3)
        d /= np.linalg.norm(d)
        s = np.arange(0, length, step)[:, None]
        p = a + s * d
        p[:, 0] = np.abs(p[:, 0]) + 0.5
        dedx = 2.1 if i % 2 == 0 else float(g.uniform(4, 12))
        pos.append(p)
        de.append(np.full(len(s), dedx * step))
        dx.append(np.full(len(s), step))
        t0.append(np.full(len(s), g.uniform(0, 20)))
        ev.append(np.full(len(s), i))
    cat = lambda xs: torch.as_tensor(np.concatenate(xs), dtype=F64)  # noqa: E731
    return (cat(pos), cat(de), cat(dx), cat(t0),
            torch.as_tensor(np.concatenate(ev), dtype=torch.int64))


# -- pieces -----------------------------------------------------------------------------


def test_sum_zero_basis_is_orthonormal_and_sums_to_zero():
    b = sum_zero_basis(7)
    assert torch.allclose(b.T @ b, torch.eye(6, dtype=F64), atol=1e-12)
    assert torch.allclose(b.sum(0), torch.zeros(6, dtype=F64), atol=1e-12)


def test_hessian_matches_analytic_quadratic_and_restricted_rows():
    a = torch.tensor([[4.0, 1.0, 0.5], [1.0, 3.0, 0.2], [0.5, 0.2, 2.0]], dtype=F64)
    f = lambda x: 0.5 * x @ a @ x + torch.sin(x[0]) * 0  # noqa: E731
    x0 = torch.tensor([0.3, -0.2, 0.1], dtype=F64)
    assert torch.allclose(hessian(f, x0), a, atol=1e-12)
    sub = hessian(f, x0, rows=[0, 2])
    assert torch.allclose(sub[[0, 2]][:, [0, 2]], a[[0, 2]][:, [0, 2]])
    assert float(sub[1].abs().sum()) == 0.0
    with pytest.raises(ValueError, match="not positive definite"):
        covariance_from_hessian(torch.diag(torch.tensor([1.0, -1.0], dtype=F64)))


def test_parametrisation_keeps_product_of_yield_and_efficiency():
    start = start_params(3)
    start["pd_efficiency"] = [0.8, 1.0, 1.2]
    start["light_yield"] = 2.0
    p = Parametrisation(("light_yield", "pd_efficiency", "lifetime"), start, 3)
    q = p.params(p.initial())
    assert torch.allclose(q["pd_efficiency"].mean(), torch.tensor(1.0, dtype=F64))
    assert torch.allclose(q["light_yield"] * q["pd_efficiency"],
                          torch.tensor([1.6, 2.0, 2.4], dtype=F64))
    truth = comparable_truth({**start, "light_yield": 1.0}, 3)
    assert truth["light_yield"] == pytest.approx(1.0)
    assert truth["pd_efficiency[2]"] == pytest.approx(1.2)
    with pytest.raises(ValueError, match="cannot fit"):
        Parametrisation(("field",), start, 3)


# -- Hessian uncertainties on problems with analytic answers ----------------------------


def test_light_yield_error_is_poisson_analytic():
    """PE ~ Poisson(Y c): the MLE is sum(n) / sum(c) and sigma_Y = Y / sqrt(sum n)."""
    pos, de, dx, t0, ev = tracks(6, seed=1)
    vis = Constant([2e-4, 5e-4, 1e-3])
    settings = ResponseSettings(neighbourhood=1)
    truth = default_params("box", 3, F64)
    truth["light_yield"] = torch.tensor(0.8, dtype=F64)
    data = observe(pos, de, dx, t0, ev, 6, truth, settings, torch.Generator().manual_seed(3),
                   vis, 3)
    param = Parametrisation(("light_yield",), start_params(3), 3)
    lik = Likelihood(data, settings)
    res = fit(lik, param, FitSettings(adam_steps=0, lbfgs_iterations=30, tolerance=1e-10),
              progress=False)
    n = float(data.pe.sum())
    with torch.no_grad():
        resp = detector_response(Deposits(pos, de, dx, t0, ev, 6), param.params(
            torch.zeros(1, dtype=F64)), settings, charge=False)
    c = float(resp.photons.sum() * vis.values.to(F64).sum())  # Y = 1 at theta = 0
    assert res.values["light_yield"] == pytest.approx(n / c, rel=1e-6)
    assert res.errors["light_yield"] == pytest.approx(res.values["light_yield"] / math.sqrt(n),
                                                      rel=1e-5)


def test_lifetime_error_matches_gauss_newton_on_noiseless_data():
    """Noiseless charges, charge in one voxel per deposit, no censoring: at the truth the
    Hessian of sum (q - mu)^2 / (2 s^2) is sum (d mu / d theta)^2 / s^2 exactly."""
    pitch = 0.3
    g = np.random.default_rng(4)
    cells = g.choice(150 * 150, size=300, replace=False)
    ix, iy = cells // 150, cells % 150
    centres = np.c_[(ix + 0.5) * pitch, (iy + 0.5) * pitch, np.full(300, 15.15)]
    pos = torch.as_tensor(centres, dtype=F64)
    de = torch.full((300,), 0.6, dtype=F64)
    dx = torch.full((300,), 0.3, dtype=F64)
    t0 = torch.zeros(300, dtype=F64)
    ev = torch.zeros(300, dtype=torch.int64)
    noise = 400.0
    truth = default_params("box", 0, F64)
    truth["diffusion_l"] = truth["diffusion_t"] = torch.tensor(0.0, dtype=F64)
    settings = ResponseSettings(pitch=pitch, neighbourhood=1, noise_electrons=noise,
                                threshold_electrons=-1e9)
    data = observe(pos, de, dx, t0, ev, 1, truth, ResponseSettings(
        pitch=pitch, neighbourhood=1, noise_electrons=0.0, threshold_electrons=-1e9), None)
    start = start_params()
    start.update(diffusion_l=0.0, diffusion_t=0.0)
    param = Parametrisation(("lifetime",), start, 0)
    lik = Likelihood(data, settings, use_light=False)
    res = fit(lik, param, FitSettings(adam_steps=0, lbfgs_iterations=20, tolerance=1e-12),
              progress=False)
    tau = float(truth["lifetime"])
    assert res.values["lifetime"] == pytest.approx(tau, rel=1e-7)
    dep = Deposits(pos, de, dx, t0, ev, 1)
    t = pos[:, 0] / float(truth["drift_velocity"])
    q = detector_response(dep, truth, ResponseSettings(pitch=pitch, neighbourhood=1,
                                                       mode="expected")).electrons
    dmu_dtheta = q * torch.exp(-t / tau) * t / tau  # d mu / d ln(tau)
    sigma_theta = 1.0 / math.sqrt(float((dmu_dtheta**2).sum()) / noise**2)
    assert res.errors["lifetime"] == pytest.approx(tau * sigma_theta, rel=1e-4)


# -- recovery of injected parameters through the production response --------------------


def test_joint_fit_recovers_injected_parameters_within_errors():
    pos, de, dx, t0, ev = tracks(24, seed=7)
    vis = Constant([3e-4, 6e-4, 9e-4, 4e-4])
    settings = ResponseSettings(neighbourhood=1)
    truth = default_params("box", 4, F64)
    truth.update(lifetime=torch.tensor(2200.0, dtype=F64),
                 box_alpha=torch.tensor(0.90, dtype=F64),
                 box_beta=torch.tensor(0.200, dtype=F64),
                 drift_velocity=torch.tensor(0.158, dtype=F64),
                 light_yield=torch.tensor(0.9, dtype=F64),
                 pd_efficiency=torch.tensor([1.1, 0.9, 1.05, 0.95], dtype=F64))
    data = observe(pos, de, dx, t0, ev, 24, truth, settings,
                   torch.Generator().manual_seed(11), vis, 4)
    free = ("lifetime", "box_alpha", "box_beta", "drift_velocity", "light_yield",
            "pd_efficiency")
    param = Parametrisation(free, start_params(4), 4)
    lik = Likelihood(data, settings)
    res = fit(lik, param, FitSettings(adam_steps=60, batch_events=12, adam_lr=0.01,
                                      lbfgs_iterations=30, tolerance=1e-6, seed=1),
              progress=False)
    want = comparable_truth({k: (v.tolist() if k == "pd_efficiency" else float(v))
                             for k, v in truth.items()}, 4)
    for n in res.names:
        pull = (res.values[n] - want[n]) / res.errors[n]
        assert abs(pull) < 4.0, (n, res.values[n], want[n], res.errors[n])
    # the start was 13% off in lifetime and 1.3% in velocity: the fit moved there
    assert res.values["lifetime"] == pytest.approx(2200.0, rel=0.05)
    assert res.values["drift_velocity"] == pytest.approx(0.158, rel=1e-3)
    phases = [h["phase"] for h in res.history]
    assert phases[0] == "adam" and "lbfgs" in phases and phases[-1] == "newton"
    # the reported point is a minimum: the Newton decrement there is below the tolerance
    assert 0 <= res.history[-1]["decrement"] < 1e-6
    assert res.history[-1]["nll"] < res.history[0]["nll"]
    assert np.allclose(np.diag(res.correlation.numpy()), 1.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_likelihood_on_cuda_matches_cpu():
    """Same -ln L, gradient and Hessian with the groups on the GPU (parameters on the host)."""
    pos, de, dx, t0, ev = tracks(8, seed=5)
    vis = Constant([3e-4, 6e-4, 9e-4])
    settings = ResponseSettings(neighbourhood=1)
    data = observe(pos, de, dx, t0, ev, 8, default_params("box", 3, F64), settings,
                   torch.Generator().manual_seed(2), vis, 3)
    param = Parametrisation(("lifetime", "box_alpha", "drift_velocity", "light_yield",
                             "pd_efficiency"), start_params(3), 3)
    theta = torch.full((param.size,), 0.01, dtype=F64)
    out = {}
    for device in ("cpu", "cuda"):
        lik = Likelihood(data, settings, device=device)
        assert all(d.pos.device.type == device for _, d in lik.groups)
        out[device] = full_hessian(lik, param, theta)
    (h0, g0, v0), (h1, g1, v1) = out["cpu"], out["cuda"]
    assert h1.device.type == "cpu" and v1 == pytest.approx(v0, rel=1e-10)
    assert torch.allclose(g1, g0, rtol=1e-8, atol=1e-8 * float(g0.abs().max()))
    assert torch.allclose(h1, h0, rtol=1e-8, atol=1e-8 * float(h0.abs().max()))


# -- files ---------------------------------------------------------------------------------


def test_load_control_rejects_a_non_control_artifact(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"stage": "simulation", "config": {}}))
    with pytest.raises(ValueError, match="expected 'control'"):
        control_info(tmp_path)
    (tmp_path / "index.json").write_text(json.dumps({"samples": {}}))
    with pytest.raises(ValueError, match="no control events"):
        load_control(tmp_path)


def test_fitted_tpc_is_a_valid_simulation_config(tmp_path):
    from larchain.calib.fit import FitResult
    from larchain.calib.output import write_fit
    from larchain.calib.stage import Problem
    from larchain.core.config import check_config
    from larchain.sim.simulate import response_from_config

    cfg = yaml.safe_load(open("config/config.yaml"))
    n_det = 16
    start = start_params(n_det)
    param = Parametrisation(("lifetime", "light_yield", "pd_efficiency"), start, n_det)
    theta = param.initial()
    theta[0] = math.log(0.9)
    names, jac = param.jacobian(theta)
    cov = jac @ torch.eye(param.size, dtype=F64) * 1e-4 @ jac.T
    res = FitResult(names=names, values=param.values(theta),
                    errors={n: 0.01 for n in names}, covariance=cov,
                    correlation=torch.eye(len(names), dtype=F64), theta=theta, nll=1.0,
                    history=[{"phase": "lbfgs", "step": 0, "nll": 1.0,
                              **param.values(theta)}])
    data = observe(*tracks(1), 1, default_params("box", 0, F64), ResponseSettings(
        neighbourhood=1), torch.Generator().manual_seed(0))
    problem = Problem(data=data, likelihood=None, param=param,
                      settings=ResponseSettings(neighbourhood=1), true_params={},
                      truth={}, notes=[], info={"tpc": cfg["tpc"], "id": "abc"})
    files = write_fit(tmp_path, problem, res, {})
    assert [f.name for f in files] == ["calibration.json", "calibration.nc", "tpc.yaml"]
    tpc = yaml.safe_load((tmp_path / "tpc.yaml").read_text())["tpc"]
    assert tpc["lifetime"] == pytest.approx(0.9 * cfg["tpc"]["lifetime"])
    merged = {**cfg, "tpc": tpc}
    check_config(merged)
    params, _ = response_from_config(tpc, cfg["readout"], n_det)
    assert float(params["lifetime"]) == pytest.approx(2700.0)
    import xarray as xr

    with xr.open_dataset(tmp_path / "calibration.nc", engine="h5netcdf") as ds:
        assert list(ds["parameter"].values[:2]) == ["lifetime", "light_yield"]
        assert ds["covariance"].shape == (len(names), len(names))


def test_birks_model_fit_recovers_its_constants():
    """The recombination model is selectable: Birks A_B and k_B are recovered from charge
    and light of tracks spanning dE/dx 2-12 MeV/cm."""
    pos, de, dx, t0, ev = tracks(16, seed=9)
    vis = Constant([4e-4, 8e-4])
    settings = ResponseSettings(neighbourhood=1, recombination="birks")
    truth = default_params("birks", 2, F64)
    truth.update(birks_ab=torch.tensor(0.78, dtype=F64), birks_kb=torch.tensor(0.052, dtype=F64))
    data = observe(pos, de, dx, t0, ev, 16, truth, settings,
                   torch.Generator().manual_seed(5), vis, 2)
    param = Parametrisation(("birks_ab", "birks_kb"), start_params(2), 2)
    res = fit(Likelihood(data, settings), param,
              FitSettings(adam_steps=30, batch_events=8, lbfgs_iterations=30, seed=2),
              progress=False)
    for name, want in (("birks_ab", 0.78), ("birks_kb", 0.052)):
        assert abs(res.values[name] - want) < 4 * res.errors[name], (name, res.values[name])
        assert res.values[name] == pytest.approx(want, rel=0.02)
    assert -1 < float(res.correlation[0, 1]) < 1
