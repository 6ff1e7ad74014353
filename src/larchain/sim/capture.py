"""What a negative muon or pion does where it stops, from Geant4 tables.

Why: a stopped mu+ always decays (a Michel electron) and a stopped pi+ decays to a 4.1 MeV mu+,
which then decays too; the transport does those in closed form. Negative ones end otherwise,
and that end is much of what tells a stopping pion from a muon:

* a mu- falls into an argon atom's 1s orbit. Most of the time the nucleus captures it
  (mu- p -> nu n): a few MeV of de-excitation photons, sometimes a proton, neutrons, and no
  Michel electron. Otherwise it decays in orbit (an electron of up to ~55 MeV). Both compete
  for the same muon, so the decay fraction is the bound muon's lifetime over the free one
  (Geant4: 0.257 and 573 ns, against 537 +- 32 ns measured; Suzuki, Measday, Roalsvig,
  Phys. Rev. C 35 (1987) 2212);
* a pi- is absorbed by the nucleus at once, which breaks up into a "star": neutrons, protons
  (in 45% of captures), deuterons, alphas and photons, sharing the pion's 140 MeV rest energy.

``benchmarks/geant4_capture_tables.py`` records these final states with Geant4 11.4
(``muMinusCaptureAtRest``, ``hBertiniCaptureAtRest``) into ``data/capture_at_rest.npz``:
3,000 stopped particles of each kind. For each: the photons, electrons, pions and protons with
their kinetic energy and direction, the kinetic energy of nuclear fragments and soft (< 50 keV)
atomic X-rays and Auger electrons (deposited on the spot), the delay after the particle stopped
(the muonic atom's lifetime), and whether it was a decay in orbit. Neutrons and neutrinos are
dropped: they leave no charge.

Sampling: one recorded final state uniformly, turned by a uniform random rotation (the
particle is at rest, so its end has no preferred direction).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources

import numpy as np

from larchain.sim import rng

DATA_FILE = "capture_at_rest.npz"
#: Rows of the tables.
MU_MINUS, PI_MINUS = 0, 1
# random-number streams (counter AT_REST_COUNTER, shared with the transport's at-rest draws)
AT_REST_COUNTER = 10**6
_S_ENTRY, _S_Q = 70, 71  # 71, 72, 73: the rotation's three uniforms


def _random_rotation(keys: np.ndarray, counter: int) -> np.ndarray:
    """Uniform random rotations ``[n, 3, 3]`` (unit quaternions from three uniforms, Shoemake,
    Graphics Gems III)."""
    u1, u2, u3 = (rng.uniform(keys, counter, _S_Q + i) for i in range(3))
    a, b = np.sqrt(1 - u1), np.sqrt(u1)
    w, x = a * np.sin(2 * np.pi * u2), a * np.cos(2 * np.pi * u2)
    y, z = b * np.sin(2 * np.pi * u3), b * np.cos(2 * np.pi * u3)
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], axis=-2)


@dataclass(frozen=True)
class CaptureTables:
    """The Geant4 final states (see the module docstring); first axis: MU_MINUS, PI_MINUS."""

    offsets: np.ndarray  # [2, N + 1] rows of the product arrays
    local_energy: np.ndarray  # [2, N] MeV deposited on the spot
    delay_us: np.ndarray  # [2, N] time from stopping to the end
    decay_in_orbit: np.ndarray  # [2, N] bool
    product_species: np.ndarray  # [P] int8 (larchain.sim.truth)
    product_charge: np.ndarray  # [P] int8
    product_energy: np.ndarray  # [P] MeV
    product_direction: np.ndarray  # [P, 3]

    def sample(self, which: np.ndarray, keys: np.ndarray) -> dict[str, np.ndarray]:
        """Final states of stopped particles of rows ``which``, drawn with ``keys``.

        Per stopped particle: ``local`` [MeV], ``delay`` [us], ``decay_in_orbit``; per product:
        ``owner`` (index of its stopped particle), ``species``, ``charge``, ``energy``,
        ``direction``."""
        which = np.asarray(which, dtype=np.int64)
        n_entries = self.offsets.shape[1] - 1
        k = np.minimum((rng.uniform(keys, AT_REST_COUNTER, _S_ENTRY) * n_entries)
                       .astype(np.int64), n_entries - 1)
        first = self.offsets[which, k]
        count = self.offsets[which, k + 1] - first
        owner = np.repeat(np.arange(len(which)), count)
        rows = np.repeat(first - np.cumsum(count) + count, count) + np.arange(count.sum())
        turn = _random_rotation(keys, AT_REST_COUNTER)[owner]
        d = np.einsum("nij,nj->ni", turn, self.product_direction[rows].astype(np.float64))
        return {
            "local": self.local_energy[which, k].astype(np.float64),
            "delay": self.delay_us[which, k].astype(np.float64),
            "decay_in_orbit": self.decay_in_orbit[which, k],
            "owner": owner,
            "species": self.product_species[rows].astype(np.int64),
            "charge": self.product_charge[rows].astype(np.int64),
            "energy": self.product_energy[rows].astype(np.float64),
            "direction": d,
        }


@functools.cache
def tables() -> CaptureTables:
    """The packaged Geant4 tables (loaded once per process)."""
    with resources.files("larchain.sim").joinpath("data", DATA_FILE).open("rb") as f:
        z = np.load(f)
        if tuple(z["stopped"]) != ("mu-", "pi-"):
            raise ValueError(f"{DATA_FILE}: rows {tuple(z['stopped'])}, expected ('mu-', 'pi-')")
        return CaptureTables(
            offsets=z["offsets"], local_energy=z["local_energy"], delay_us=z["delay_us"],
            decay_in_orbit=z["decay_in_orbit"], product_species=z["product_species"],
            product_charge=z["product_charge"], product_energy=z["product_energy"],
            product_direction=z["product_direction"])
