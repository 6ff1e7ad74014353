"""Pion and proton inelastic interactions: the transport samples the Geant4 tables it is given.

Truth here is independent of the stepping code: the probability of interacting before stopping
is 1 - exp(-integral of the inverse mean free path along the CSDA path), integrated from the
tables with numpy; energy balances event by event; the tables themselves have the Delta
resonance where pion-nucleus physics puts it.
"""

from __future__ import annotations

import numpy as np
import pytest

from larchain.core import constants as C
from larchain.sim import hadronic
from larchain.sim import truth as T
from larchain.sim.stopping import RangeTable
from tests.test_sim_events import energy_balance, shoot

SIZE = (600.0, 600.0, 1000.0)


def _interaction_probability(row: int, name: str, t0: float) -> float:
    """1 - exp(-int mu dx) along the CSDA path of a particle of kinetic energy t0 (``row``:
    its table row, hadronic.table_rows)."""
    tab = hadronic.tables()
    t = np.geomspace(0.5, t0, 20001)
    x = RangeTable.for_particle(name).range_cm(t)  # residual range at each energy
    # the inverse mean free path, linear in log T between the tabulated energies, zero below
    mu = np.interp(np.log(t), tab.log_energies, tab.inverse_mfp()[row])
    mu = np.where(t >= tab.energies[0], mu, 0.0)
    integral = np.sum(0.5 * (mu[1:] + mu[:-1]) * np.diff(x))
    return float(-np.expm1(-integral))


def _interacted(tab, dep, name: str, t0: float) -> np.ndarray:
    """Per primary: did it end in a hadronic interaction, i.e. short of its CSDA range? (No
    interaction happens in a track's last centimetre: the tables start at 10 MeV; a stopped
    particle's path is its range plus the step that holds what its end deposits.)"""
    prim = tab["primary"][dep["row"]]
    path = np.bincount(tab["event"][dep["row"]][prim], weights=dep["dx"][prim])
    return path < RangeTable.for_particle(name).range_cm(t0) - 0.3


@pytest.mark.parametrize(("species", "charge", "name", "t0"), [
    (T.PION, 1, "pion", 250.0), (T.PION, -1, "pion", 150.0), (T.PROTON, 1, "proton", 300.0)])
def test_fraction_interacting_before_stopping(species, charge, name, t0):
    n = 600
    tab, dep = shoot(species, t0, n, size=SIZE, start=(300.0, 300.0, 100.0), charge=charge,
                     hadron_interactions=True, delta_threshold=1e6)
    p = _interaction_probability(int(hadronic.table_rows(species, charge)), name, t0)
    frac = _interacted(tab, dep, name, t0).mean()
    assert 0.2 < p < 0.8  # a test that can see a wrong cross-section
    assert abs(frac - p) < 4 * np.sqrt(p * (1 - p) / n), (frac, p)


def test_off_means_no_interactions_and_identical_tracks():
    a, da = shoot(T.PION, 250.0, 50, size=SIZE, hadron_interactions=False)
    b, db = shoot(T.PION, 250.0, 50, size=SIZE)
    assert not np.any(a["process"] == T.HADRONIC)
    np.testing.assert_array_equal(da["de"], db["de"])


@pytest.mark.parametrize(("species", "t0"), [(T.PION, 300.0), (T.PROTON, 400.0)])
def test_energy_balances_with_interactions(species, t0):
    """Deposited + escaped (which holds the interactions' unseen energy) = primary kinetic
    energy + decay energies - pair rest masses + annihilated rest masses."""
    n = 40
    tab, dep = shoot(species, t0, n, size=SIZE, start=(300.0, 300.0, 100.0),
                     hadron_interactions=True, seed=7)
    assert (tab["process"] == T.HADRONIC).sum() > 10
    np.testing.assert_allclose(*energy_balance(tab, dep, n), rtol=1e-9, atol=1e-6)


def test_products_are_new_particles_of_the_same_interaction():
    tab, _ = shoot(T.PION, 300.0, 100, size=SIZE, start=(300.0, 300.0, 100.0),
                   hadron_interactions=True, seed=3)
    kids = np.flatnonzero(tab["process"] == T.HADRONIC)
    assert len(kids) > 50
    parent = tab["parent"][kids]
    assert np.all(tab["group"][kids] == kids) and not tab["primary"][kids].any()
    assert np.all(tab["event"][kids] == tab["event"][parent])
    np.testing.assert_allclose(tab["start"][kids], tab["end"][parent])
    track = np.isin(tab["species"][kids], (T.PION, T.PROTON))
    assert np.all(tab["semantic"][kids][track] == T.TRACK)
    # an interacting pion does not also decay at rest
    interacted = np.unique(parent)
    decays = np.isin(tab["parent"], interacted) & (tab["process"] == T.DECAY)
    assert not decays.any()
    # products keep to the kinematics: no product has more than T + m_pi
    assert tab["energy"][kids].max() <= 300.0 + C.MASS_MEV["pion"]


def test_tables_have_the_delta_resonance_and_high_energy_limit():
    """pi-Ar reaction cross-section peaks near the Delta (T ~ 100-200 MeV) at ~0.9 b and
    falls to the geometric ~0.6 b by a GeV; protons sit near 0.5-0.65 b above 100 MeV (PDG's
    high-energy nuclear interaction length of Ar, 119.7 g/cm^2, is 0.554 b)."""
    tab = hadronic.tables()
    e = tab.energies
    pion = tab.sigma_barn[T.PION]
    peak = e[np.argmax(pion)]
    assert 100.0 <= peak <= 200.0 and 0.8 < pion.max() < 1.0
    assert 0.5 < pion[e == 1000.0][0] < 0.7
    proton = tab.sigma_barn[T.PROTON][e >= 100.0]
    assert np.all((proton > 0.45) & (proton < 0.7))
    assert np.all(tab.sigma_barn[[T.PHOTON, T.ELECTRON, T.POSITRON, T.MUON]] == 0)
