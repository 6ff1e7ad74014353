"""Classic calibration baselines (larchain.calib.baselines) checked against injected truth.

Events are built from straight-line deposits pushed through the real detector response
(recombination, lifetime, diffusion, charge sharing, noise, threshold) with known parameters,
so the truth is independent of the baselines' own arithmetic; one end-to-end test runs the
full control-sample simulator.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from larchain.calib.baselines import box_fit, diffusion_fit, lifetime_fit, run_baselines
from larchain.sim.response import (
    NOMINAL_DRIFT_VELOCITY,
    Deposits,
    ResponseSettings,
    default_params,
    detector_response,
)
from larchain.sim.stopping import RangeTable

PITCH = 0.3
V = NOMINAL_DRIFT_VELOCITY
SIZE = np.array([100.0, 100.0, 200.0])
MIP = 2.105  # MeV/cm


def simulate(tracks: list[dict], *, threshold: float = 2000.0, noise: float | None = None,
             seed: int = 0, **params: float) -> list[dict]:
    """Event dicts (the storage layout the baselines read) for straight-line ``tracks``.

    Each track: ``pos`` [N,3], ``de`` [N], ``dx`` [N], ``t0``, ``start``, ``end``, ``pdg``.
    Voxels outside the readout grid are dropped, as the simulator does. Noise defaults to
    500 e with a threshold and to 0 without one (with no threshold, the noise on every
    near-empty voxel of the sharing neighbourhood would be kept and add charge).
    """
    if noise is None:
        noise = 500.0 if threshold > 0 else 0.0
    p = default_params(dtype=torch.float64)
    for k, v in params.items():
        p[k] = torch.tensor(float(v), dtype=torch.float64)
    pos = np.concatenate([t["pos"] for t in tracks])
    ev = np.concatenate([np.full(len(t["de"]), i) for i, t in enumerate(tracks)])
    dep = Deposits(
        pos=torch.as_tensor(pos, dtype=torch.float64),
        de=torch.as_tensor(np.concatenate([t["de"] for t in tracks]), dtype=torch.float64),
        dx=torch.as_tensor(np.concatenate([t["dx"] for t in tracks]), dtype=torch.float64),
        t0=torch.as_tensor(np.concatenate([np.full(len(t["de"]), t["t0"]) for t in tracks]),
                           dtype=torch.float64),
        event=torch.as_tensor(ev, dtype=torch.int64),
        n_events=len(tracks),
    )
    settings = ResponseSettings(pitch=PITCH, noise_electrons=noise, threshold_electrons=threshold,
                                neighbourhood=2)
    with torch.no_grad():
        r = detector_response(dep, p, settings, generator=torch.Generator().manual_seed(seed))
    coords, event, charge = r.coords.numpy(), r.event.numpy(), r.charge.numpy()
    grid = np.floor(SIZE / PITCH + 1e-9).astype(np.int64)
    inside = np.all((coords >= 0) & (coords < grid), axis=1)
    out = []
    for i, t in enumerate(tracks):
        sel = inside & (event == i)
        out.append({
            "voxels": {"coords": coords[sel].astype(np.int32),
                       "charge": charge[sel].astype(np.float32)},
            "particles": {"start": np.asarray(t["start"], np.float32)[None],
                          "end": np.asarray(t["end"], np.float32)[None],
                          "pdg": np.array([t["pdg"]], np.int32),
                          "energy": np.array([t.get("energy", 0.0)], np.float32)},
            "interactions": {"time": np.array([t["t0"]], np.float32)},
        })
    return out


def crossing_tracks(n: int, seed: int = 1, step: float = 0.15) -> list[dict]:
    """Anode-to-cathode muons (as larchain.sim.control) with gamma-distributed step losses
    around a MIP (a skewed, Landau-like spread that the robust means must handle)."""
    g = np.random.default_rng(seed)
    tracks = []
    for _ in range(n):
        entry = np.array([1e-6, *g.uniform([5, 5], [95, 195])])
        exit_ = np.array([SIZE[0] - 1e-6, *g.uniform([5, 5], [95, 195])])
        length = float(np.linalg.norm(exit_ - entry))
        m = int(length / step)
        s = (np.arange(m) + 0.5) * length / m
        d = (exit_ - entry) / length
        dx = np.full(m, length / m)
        tracks.append({"pos": entry + s[:, None] * d, "dx": dx,
                       "de": MIP * dx * g.gamma(4.0, 0.25, m), "t0": float(g.uniform(0, 50)),
                       "start": entry, "end": exit_, "pdg": 13})
    return tracks


def proton_tracks(n: int, seed: int = 2, step: float = 0.1) -> list[dict]:
    """Stopping protons ending inside the volume, dE per step from the CSDA range table."""
    g = np.random.default_rng(seed)
    table = RangeTable.for_particle("proton")
    tracks = []
    for _ in range(n):
        end = g.uniform([35, 35, 35], [65, 65, 165])
        cos_t, phi = g.uniform(-1, 1), g.uniform(0, 2 * np.pi)
        d = np.array([math.sqrt(1 - cos_t**2) * math.cos(phi),
                      math.sqrt(1 - cos_t**2) * math.sin(phi), cos_t])
        length = float(g.uniform(22, 30))
        r = np.arange(0.0, length + 1e-9, step)
        t = np.asarray(table.kinetic_at_range(r))
        de = np.diff(t)
        mid = 0.5 * (r[1:] + r[:-1])
        tracks.append({"pos": end - mid[:, None] * d, "de": de, "dx": np.diff(r),
                       "t0": float(g.uniform(0, 50)), "start": end - length * d, "end": end,
                       "pdg": 2212, "energy": float(t[-1])})
    return tracks


@pytest.fixture(scope="module")
def muons() -> list[dict]:
    return crossing_tracks(160)


@pytest.fixture(scope="module")
def protons() -> list[dict]:
    return proton_tracks(150)


# ----------------------------------------------------------------------------------- lifetime


def test_lifetime_fit_recovers_injected_lifetime(muons):
    """Without diffusion the threshold loses a near-constant fraction: the fit is unbiased."""
    tau = 1500.0
    events = simulate(muons, lifetime=tau, diffusion_l=0.0, diffusion_t=0.0)
    res = lifetime_fit(events, pitch=PITCH, reco_velocity=V)
    assert abs(res["lifetime"] - tau) < 3.0 * res["lifetime_error"]
    # measured: 1469 +- 21 us (the threshold still costs ~1-2% more charge at long drift)
    assert abs(res["lifetime"] / tau - 1) < 0.04
    assert 0 < res["lifetime_error"] < 0.03 * tau
    # amplitude: MIP charge at t = 0 (recombination ~0.7 at 0.5 kV/cm), within ~10%
    assert res["amplitude"] == pytest.approx(0.70 * MIP / 23.6e-6, rel=0.1)
    assert res["chi2"] < 3.0 * res["ndf"] + 10
    pts = res["points"]
    assert len(pts["t"]) == len(pts["dqdx"]) == len(pts["dqdx_error"]) == res["ndf"] + 2
    assert pts["t"] == sorted(pts["t"]) and max(pts["t"]) > 500
    json.dumps(res)


def test_lifetime_fit_sees_longer_lifetime_as_flatter(muons):
    short = lifetime_fit(simulate(muons[:80], lifetime=800.0, diffusion_l=0, diffusion_t=0),
                         pitch=PITCH, reco_velocity=V)
    long_ = lifetime_fit(simulate(muons[:80], lifetime=5000.0, diffusion_l=0, diffusion_t=0),
                         pitch=PITCH, reco_velocity=V)
    assert short["lifetime"] == pytest.approx(800.0, rel=0.05)
    assert long_["lifetime"] == pytest.approx(5000.0, rel=0.15)


def test_lifetime_fit_threshold_bias_with_diffusion_is_low(muons):
    """Documented bias: diffusion pushes charge into sub-threshold voxels at long drift, so the
    classic fit underestimates the lifetime; with the threshold off it is unbiased again."""
    tau = 2600.0
    tracks = muons[:100]
    biased = lifetime_fit(simulate(tracks, lifetime=tau), pitch=PITCH, reco_velocity=V)
    clean = lifetime_fit(simulate(tracks, lifetime=tau, threshold=0.0), pitch=PITCH,
                         reco_velocity=V)
    assert biased["lifetime"] < 0.85 * tau  # measured ~0.6 tau
    assert abs(clean["lifetime"] - tau) < 3 * clean["lifetime_error"]
    assert abs(clean["lifetime"] / tau - 1) < 0.06


# ------------------------------------------------------------------------------------ box fit


def test_box_fit_recovers_injected_alpha_beta(protons):
    alpha, beta, tau = 0.90, 0.23, 2000.0
    events = simulate(protons, threshold=0.0, lifetime=tau, box_alpha=alpha, box_beta=beta)
    res = box_fit(events, pitch=PITCH, reco_velocity=V, lifetime=tau, size=SIZE.tolist())
    # measured: both ~0.5-0.8% low at ~0.3% statistical error (chi2 ~1.5 per dof)
    for name, truth in (("alpha", alpha), ("beta", beta)):
        assert abs(res[name] - truth) < 5.0 * res[f"{name}_error"], (name, res[name], truth)
        assert abs(res[name] / truth - 1) < 0.015, (name, res[name], truth)
    cov = np.array(res["covariance"])
    assert cov.shape == (2, 2) and np.allclose(cov, cov.T)
    assert math.sqrt(cov[0, 0]) == pytest.approx(res["alpha_error"])
    assert 0.3 < res["correlation"][0][1] < 1.0  # alpha and beta are positively correlated
    pts = res["points"]
    assert np.all(np.diff(pts["dedx"]) < 0)  # dE/dx falls with residual range
    assert min(pts["dedx"]) < 5.0 and max(pts["dedx"]) > 12.0
    assert np.allclose(pts["dqdx_fit"], pts["dqdx"], rtol=0.05)
    json.dumps(res)


def test_box_fit_needs_the_lifetime_correction(protons):
    """A wrong (too long) lifetime leaves attenuation in the points: the fit moves off."""
    tau = 1000.0
    events = simulate(protons[:80], threshold=0.0, lifetime=tau)
    good = box_fit(events, pitch=PITCH, reco_velocity=V, lifetime=tau)
    bad = box_fit(events, pitch=PITCH, reco_velocity=V, lifetime=1e7)
    scale = np.mean(np.array(bad["points"]["dqdx"]) / np.array(good["points"]["dqdx"]))
    assert scale < 0.95
    assert abs(good["beta"] - 0.212) < 3 * good["beta_error"]
    assert abs(bad["beta"] - 0.212) > 3 * bad["beta_error"]


# ---------------------------------------------------------------------------------- diffusion


def test_diffusion_fit_recovers_transverse_diffusion_without_threshold(muons):
    d_t = 8.8e-6
    res = diffusion_fit(simulate(muons[:100], threshold=0.0, diffusion_t=d_t), pitch=PITCH,
                        reco_velocity=V)
    assert res["diffusion_t"] == pytest.approx(d_t, rel=0.3)  # measured +3..6%
    assert res["diffusion_t_error"] < 0.3 * d_t
    # voxelisation: the intercept is about pitch^2 / 12
    assert res["offset_t"] == pytest.approx(PITCH**2 / 12, rel=0.5)
    assert np.isfinite(res["diffusion_l"]) and res["diffusion_l_error"] > 0
    json.dumps(res)


def test_diffusion_fit_grows_with_injected_diffusion(muons):
    """With the realistic threshold the slope is biased low, but it still tracks D."""
    res = {}
    for k in (1.0, 4.0):
        ev = simulate(muons[:100], diffusion_t=8.8e-6 * k, diffusion_l=4.0e-6 * k)
        res[k] = diffusion_fit(ev, pitch=PITCH, reco_velocity=V)
    lo, hi = res[1.0], res[4.0]
    assert hi["diffusion_t"] > lo["diffusion_t"] + 3 * math.hypot(lo["diffusion_t_error"],
                                                                  hi["diffusion_t_error"])
    assert hi["diffusion_l"] > lo["diffusion_l"] + 2 * math.hypot(lo["diffusion_l_error"],
                                                                  hi["diffusion_l_error"])
    assert lo["diffusion_t"] < 8.8e-6  # threshold truncates the tails: low, not high


# ---------------------------------------------------------------------------------- bad input


def test_bad_input_raises_clear_errors(muons, protons):
    with pytest.raises(ValueError, match="crossing_muons: no events"):
        lifetime_fit([], pitch=PITCH, reco_velocity=V)
    with pytest.raises(ValueError, match="stopping_protons: no events"):
        box_fit([], pitch=PITCH, reco_velocity=V, lifetime=2000.0)
    with pytest.raises(ValueError, match="crossing_muons: no events"):
        diffusion_fit([], pitch=PITCH, reco_velocity=V)
    few = simulate(muons[:2], lifetime=2000.0)
    with pytest.raises(ValueError, match="crossing_muons.*usable bins"):
        lifetime_fit(few, pitch=PITCH, reco_velocity=V)
    with pytest.raises(ValueError, match="stopping_protons.*residual-range bins"):
        box_fit(simulate(protons[:2]), pitch=PITCH, reco_velocity=V, lifetime=2000.0)
    with pytest.raises(ValueError, match="expected 2212"):
        box_fit(few, pitch=PITCH, reco_velocity=V, lifetime=2000.0)
    with pytest.raises(ValueError, match="reco_velocity"):
        lifetime_fit(few, pitch=PITCH, reco_velocity=0.0)
    with pytest.raises(ValueError, match="event 0 lacks"):
        lifetime_fit([{"voxels": {}}], pitch=PITCH, reco_velocity=V)


# ------------------------------------------------------------------------------ run_baselines


def test_run_baselines_chains_lifetime_into_box_and_skips_missing(muons, protons):
    tau = 1800.0
    samples = {
        "crossing_muons": simulate(muons[:80], lifetime=tau, diffusion_l=0, diffusion_t=0,
                                   threshold=0.0),
        "stopping_protons": simulate(protons[:60], lifetime=tau, threshold=0.0),
    }
    settings = {"pitch": PITCH, "reco_velocity": V, "field": 0.5, "size": SIZE.tolist()}
    out = run_baselines(samples, settings)
    assert out["order"] == ["lifetime", "box", "diffusion"]
    assert out["box"]["lifetime_used"] == out["lifetime"]["lifetime"]
    assert out["lifetime"]["lifetime"] == pytest.approx(tau, rel=0.05)
    assert "diffusion_t" in out["diffusion"]
    json.loads(json.dumps(out))

    only = run_baselines({"stopping_protons": samples["stopping_protons"],
                          "crossing_muons": []}, settings)
    assert "crossing_muons" in only["lifetime"]["skipped"]
    assert "no lifetime" in only["box"]["skipped"]
    assert "skipped" in only["diffusion"]
    fixed = run_baselines({"stopping_protons": samples["stopping_protons"]},
                          {**settings, "lifetime": tau})
    assert fixed["box"]["lifetime_used"] == tau and "not given" in fixed["lifetime"]["skipped"]
    with pytest.raises(ValueError, match="pitch"):
        run_baselines(samples, {"reco_velocity": V})


def test_end_to_end_on_simulated_control_samples():
    """The real control-sample simulator (transport, delta rays, MCS) through all three."""
    import yaml

    from larchain.sim.build import _primaries, setup_from_config
    from larchain.sim.simulate import simulate_events

    with open(Path(__file__).resolve().parents[1] / "config" / "config.yaml") as f:
        cfg = yaml.safe_load(f)
    tpc = {**cfg["tpc"], **cfg["control"]["truth"]}
    setup = setup_from_config(cfg, 16, "control", tpc)
    samples = {}
    for sample, n in (("crossing_muons", 40), ("stopping_protons", 40)):
        res = simulate_events(setup, range(n), _primaries(sample, cfg, np.asarray(setup.size),
                                                          setup.seed), None)
        samples[sample] = res["events"]
    out = run_baselines(samples, {"pitch": setup.response.pitch,
                                  "reco_velocity": setup.response.reco_drift_velocity,
                                  "size": list(setup.size)})
    life = out["lifetime"]["lifetime"]
    # threshold + diffusion bias: low, but in the right range (truth 2600 us)
    assert 1000 < life < tpc["lifetime"]
    assert 0.5 < out["box"]["alpha"] < 1.2 and 0.1 < out["box"]["beta"] < 0.3
    assert 0 < out["diffusion"]["diffusion_t"] < 2 * tpc["diffusion_t"]
