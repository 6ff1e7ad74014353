"""Charge signs and what negative muons and pions do where they stop.

Independent truth: a bound mu- either decays or is captured, and both compete for the same
muon, so the fraction that decays equals its lifetime in argon over the free lifetime (the
Huff factor for Z = 18 is within 1% of one); that lifetime is measured as 537 +- 32 ns (Suzuki,
Measday, Roalsvig, Phys. Rev. C 35 (1987) 2212). A pi- at rest is absorbed, never decays, and
its visible energy cannot exceed the 139.6 MeV it brings. Energy balances event by event.
"""

from __future__ import annotations

import numpy as np
import pytest

from larchain.core import constants as C
from larchain.sim import capture, hadronic
from larchain.sim import truth as T
from larchain.sim.generator import Primaries, generate_event
from tests.test_sim_events import _config, energy_balance, shoot

SIZE = (400.0, 400.0, 400.0)
START = (200.0, 200.0, 150.0)


def _children(tab, rows, process):
    kids = np.isin(tab["parent"], rows) & (tab["process"] == process)
    return np.flatnonzero(kids)


def test_signed_pdg_codes():
    sp = np.array([T.PHOTON, T.ELECTRON, T.POSITRON, T.MUON, T.MUON, T.PION, T.PION, T.PROTON])
    q = np.array([0, -1, 1, -1, 1, 1, -1, 1])
    np.testing.assert_array_equal(T.pdg_codes(sp, q), [22, 11, -11, 13, -13, 211, -211, 2212])


def test_mu_minus_decays_in_orbit_as_often_as_its_lifetime_says():
    n = 1500
    tab, _ = shoot(T.MUON, 60.0, n, size=SIZE, start=START, charge=-1, delta_threshold=1e6)
    prim = np.flatnonzero(tab["primary"])
    michel = _children(tab, prim, T.DECAY)
    assert np.all(tab["species"][michel] == T.ELECTRON)
    assert np.all(tab["semantic"][michel] == T.MICHEL) and np.all(tab["charge"][michel] == -1)
    assert len(np.unique(tab["parent"][michel])) == len(michel)  # at most one per muon
    f = len(michel) / n
    # the delay of each muon's end: the time of any of its products (the muons start at t = 0)
    kids = np.flatnonzero(np.isin(tab["parent"], prim) & ~tab["primary"])
    first = np.unique(tab["parent"][kids], return_index=True)[1]
    delay = tab["time"][kids[first]]
    assert len(delay) > 0.9 * n
    tau = delay.mean()
    assert abs(tau - 0.537) < 3 * 0.032 + 3 * tau / np.sqrt(len(delay))
    sigma_f = np.sqrt(f * (1 - f) / n)
    assert abs(f - tau / C.MUON_LIFETIME_US) < 4 * sigma_f + 0.01, (f, tau)
    assert 0.18 < f < 0.34
    # decay-in-orbit electrons stay below the muon's rest energy
    assert tab["energy"][michel].max() < C.MASS_MEV["muon"]


def test_mu_plus_always_decays():
    tab, _ = shoot(T.MUON, 60.0, 200, size=SIZE, start=START, charge=1)
    prim = np.flatnonzero(tab["primary"])
    assert len(_children(tab, prim, T.DECAY)) == 200
    assert len(_children(tab, prim, T.CAPTURE)) == 0


def test_pi_minus_is_absorbed_and_pi_plus_decays_through_mu_plus():
    n = 400
    neg, _ = shoot(T.PION, 40.0, n, size=SIZE, start=START, charge=-1)
    prim = np.flatnonzero(neg["primary"])
    assert len(_children(neg, prim, T.DECAY)) == 0
    star = _children(neg, prim, T.CAPTURE)
    assert len(np.unique(neg["parent"][star])) > 0.8 * n
    assert np.all(neg["semantic"][star][np.isin(neg["species"][star], (T.PROTON, T.PION))]
                  == T.TRACK)
    # visible energy of each absorption: products + fragments, booked as -escaped
    visible = -neg["escaped"][prim]
    assert visible.min() >= 0 and visible.max() < C.MASS_MEV["pion"]
    protons = np.isin(prim, neg["parent"][star[neg["species"][star] == T.PROTON]])
    assert 0.2 < protons.mean() < 0.7

    pos, _ = shoot(T.PION, 40.0, n, size=SIZE, start=START, charge=1)
    prim = np.flatnonzero(pos["primary"])
    mu = _children(pos, prim, T.DECAY)
    assert len(mu) == n and np.all(pos["species"][mu] == T.MUON)
    assert np.all(pos["charge"][mu] == 1)
    assert len(_children(pos, mu, T.DECAY)) == n  # every mu+ gives its Michel electron


@pytest.mark.parametrize("species", [T.MUON, T.PION])
def test_energy_balances_with_captures(species):
    """Deposited + escaped = primary kinetic energy + decay energies - pair rest masses +
    annihilated rest masses, with what captures release booked as negative escaped."""
    n = 60
    tab, dep = shoot(species, 80.0, n, size=SIZE, start=START, charge=-1, seed=5,
                     hadron_interactions=True)
    assert (tab["process"] == T.CAPTURE).sum() > n
    np.testing.assert_allclose(*energy_balance(tab, dep, n), rtol=1e-9, atol=1e-6)


def test_capture_products_are_isotropic():
    keys = np.arange(4000, dtype=np.uint64) * np.uint64(7919) + np.uint64(11)
    fs = capture.tables().sample(np.full(4000, capture.PI_MINUS), keys)
    d = fs["direction"]
    np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1.0, rtol=1e-5)
    # the mean direction of isotropic unit vectors: 0 +- 1/sqrt(3 n) per axis
    assert np.all(np.abs(d.mean(axis=0)) < 5 / np.sqrt(3 * len(d)))


def test_pi_minus_in_flight_uses_its_own_table():
    rows = hadronic.table_rows(np.array([T.PION, T.PION, T.PROTON, T.MUON]),
                               np.array([1, -1, 1, -1]))
    np.testing.assert_array_equal(rows, [T.PION, hadronic.PI_MINUS_ROW, T.PROTON, T.MUON])
    sigma = hadronic.tables().sigma_barn
    # Coulomb attraction: a slow pi- is far likelier to react than a slow pi+
    assert sigma[hadronic.PI_MINUS_ROW, 0] > 3 * sigma[T.PION, 0]
    assert np.all(sigma[hadronic.PI_MINUS_ROW] > 0.4)


def test_charge_fractions_follow_the_config_and_leave_kinematics_alone():
    cfg = _config()
    sim = cfg["simulation"]
    sim["neutrino"]["pions"]["mean"] = 2.0
    size = np.asarray(cfg["detector"]["size"])
    out = {}
    for frac in (0.0, 0.25, 1.0):
        sim["neutrino"]["negative_fraction"] = {"muon": frac, "pion": frac}
        sim["cosmics"]["negative_fraction"] = frac
        p = Primaries()
        for e in range(300):
            generate_event(sim, size, 1, e, e, p)
        out[frac] = p.columns({e: e for e in range(300)})
    c = out[0.25]
    signed = np.isin(c["species"], (T.MUON, T.PION))
    neg = (c["charge"][signed] < 0).mean()
    n = signed.sum()
    assert n > 300 and abs(neg - 0.25) < 4 * np.sqrt(0.25 * 0.75 / n)
    assert np.all(out[0.0]["charge"][signed] == 1) and np.all(out[1.0]["charge"][signed] == -1)
    assert np.all(np.abs(c["charge"][~signed]) <= 1)
    for k in ("species", "start", "direction", "energy", "key"):
        np.testing.assert_array_equal(out[0.0][k], out[1.0][k])
