"""Inelastic interactions of charged pions and protons with argon nuclei, from Geant4 tables.

Why: without them every pion reaches its end, where a pi+ decays to a 4.1 MeV muon and a
Michel electron, which makes it a muon in all but a few millimetres; in argon most pions
above ~100 MeV interact before they stop (mean free path ~50 cm at the Delta resonance), and
their interactions (absorption with knocked-out protons, scattering with a kink, charge
exchange to a pi0) are what tells a physicist a pion from a muon. Protons interact too (~80
cm), ending short of their Bragg peak.

Both the cross-section and the final states come from Geant4 11.4 (FTFP_BERT:
Barashenkov-Glauber-Gribov cross-sections, Bertini cascade), tabulated by
``benchmarks/geant4_hadron_tables.py`` into ``data/hadron_inelastic.npz``:

* the inelastic (reaction) cross-section of pi+, pi- and protons on argon at 16 kinetic
  energies, 10 MeV - 2 GeV, each from 2,000 interactions (+-2.2%); linear in log T between
  them, zero below 10 MeV (such particles are within a centimetre of their end) and flat above
  2 GeV. pi+ and pi- have tables of their own (one row each: :func:`table_rows`);
* per energy 100 final states: the kinetic energy and direction (relative to the incoming
  particle) of every photon (pi0 already decayed), electron, charged pion and proton, and the
  summed kinetic energy of nuclear fragments (deposited on the spot: their ranges are
  millimetres), and the charge of every product. Neutrons are dropped: they leave no charge.

Sampling a final state at kinetic energy T: one of the two tabulated energies around T
(chosen with probability linear in log T), one of its final states uniformly, turned by a
random azimuth about the incoming direction; its kinetic energies are scaled by
(T + Q) / (T_table + Q), with Q the rest energy an absorbed pion releases (m_pi; 0 for
protons), so that the available energy follows T. Whatever the tracked products and the
fragments do not carry (neutrons, nuclear binding, less the released pion mass) is booked as
the interacting particle's ``escaped`` energy, so that energy stays balanced event by event.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources

import numpy as np

from larchain.core import constants as C
from larchain.sim import rng
from larchain.sim import truth as T

DATA_FILE = "hadron_inelastic.npz"
#: Argon nuclei per cm^3 of liquid argon.
ARGON_NUCLEI_PER_CM3 = C.LAR_DENSITY_G_CM3 * C.AVOGADRO / C.ARGON_A
BARN_CM2 = 1e-24
# random-number streams of the final-state sampling (counter: the interaction's step number)
_S_BIN, _S_ENTRY, _S_PHI = 60, 61, 62
#: Table row of pi- (the other rows are the species codes; pi+ is row PION).
PI_MINUS_ROW = len(T.SPECIES)
N_ROWS = PI_MINUS_ROW + 1


def table_rows(species: np.ndarray, charge: np.ndarray) -> np.ndarray:
    """The table row of each particle: its species, or :data:`PI_MINUS_ROW` for a pi-."""
    species = np.asarray(species, dtype=np.int64)
    return np.where((species == T.PION) & (np.asarray(charge) < 0), PI_MINUS_ROW, species)


@dataclass(frozen=True)
class HadronTables:
    """The Geant4 tables (see the module docstring), indexed by :func:`table_rows`."""

    energies: np.ndarray  # [E] MeV
    sigma_barn: np.ndarray  # [row, E]; zero for species that do not interact
    offsets: np.ndarray  # [row, E, N + 1] rows of the product arrays
    local_energy: np.ndarray  # [row, E, N] MeV of nuclear fragments
    product_species: np.ndarray  # [P] int8
    product_charge: np.ndarray  # [P] int8
    product_energy: np.ndarray  # [P] MeV
    product_direction: np.ndarray  # [P, 3], incoming along +z

    @property
    def log_energies(self) -> np.ndarray:
        return np.log(self.energies)

    def inverse_mfp(self, enabled: bool = True) -> np.ndarray:
        """``[row, E]`` inverse mean free paths [1/cm] for the stepping kernel."""
        mu = self.sigma_barn * BARN_CM2 * ARGON_NUCLEI_PER_CM3
        return np.ascontiguousarray(mu if enabled else np.zeros_like(mu))

    def sample(self, row: np.ndarray, t: np.ndarray, keys: np.ndarray, counter: np.ndarray
               ) -> tuple[np.ndarray, ...]:
        """Final states of interactions of particles of table rows ``row`` (:func:`table_rows`)
        at kinetic energies ``t``.

        Returns ``(owner, product species, product charge, kinetic energy, direction relative
        to the incoming particle, local energy per interaction)``; ``owner`` indexes the
        interactions."""
        lt = np.log(np.clip(t, self.energies[0], self.energies[-1]))
        grid = self.log_energies
        hi = np.clip(np.searchsorted(grid, lt), 1, len(grid) - 1)
        frac = (lt - grid[hi - 1]) / (grid[hi] - grid[hi - 1])
        b = np.where(rng.uniform(keys, counter, _S_BIN) < frac, hi, hi - 1)
        n_entries = self.offsets.shape[2] - 1
        k = np.minimum((rng.uniform(keys, counter, _S_ENTRY) * n_entries).astype(np.int64),
                       n_entries - 1)
        first = self.offsets[row, b, k]
        count = self.offsets[row, b, k + 1] - first
        q = np.where(np.isin(row, (T.PION, PI_MINUS_ROW)), C.MASS_MEV["pion"], 0.0)
        scale = (t + q) / (self.energies[b] + q)
        owner = np.repeat(np.arange(len(t)), count)
        rows = np.repeat(first - np.cumsum(count) + count, count) + np.arange(count.sum())
        phi = 2 * np.pi * rng.uniform(keys, counter, _S_PHI)
        d = self.product_direction[rows].astype(np.float64)
        c, s = np.cos(phi[owner]), np.sin(phi[owner])
        d = np.stack([c * d[:, 0] - s * d[:, 1], s * d[:, 0] + c * d[:, 1], d[:, 2]], axis=1)
        return (owner, self.product_species[rows].astype(np.int64),
                self.product_charge[rows].astype(np.int64),
                self.product_energy[rows].astype(np.float64) * scale[owner], d,
                self.local_energy[row, b, k].astype(np.float64) * scale)


@functools.cache
def tables() -> HadronTables:
    """The packaged Geant4 tables (loaded once per process)."""
    with resources.files("larchain.sim").joinpath("data", DATA_FILE).open("rb") as f:
        z = np.load(f)
        r = table_rows(z["species"], z["charge"])
        n_e, n_k = z["offsets"].shape[1:]
        sigma = np.zeros((N_ROWS, n_e))
        offsets = np.zeros((N_ROWS, n_e, n_k), dtype=np.int64)
        local = np.zeros((N_ROWS, n_e, n_k - 1))
        sigma[r], offsets[r], local[r] = z["sigma_barn"], z["offsets"], z["local_energy"]
        return HadronTables(
            energies=z["energies"].astype(np.float64), sigma_barn=sigma, offsets=offsets,
            local_energy=local, product_species=z["product_species"],
            product_charge=z["product_charge"],
            product_energy=z["product_energy"], product_direction=z["product_direction"])
