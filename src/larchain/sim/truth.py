"""Truth bookkeeping shared by the transport, the labels and the HDF5 files.

Every simulated object (a primary, a delta ray, a bremsstrahlung photon, a Compton
electron, ...) is one row of a :class:`TrackTable`. A row knows its parent, the particle
(``group``: PILArNet's "group", e.g. a whole EM shower) and the fragment (a connected piece
of a particle, e.g. one conversion electron pair) it belongs to, and its semantic class.
Voxel labels are read off the row that deposited most of a voxel's charge.
"""

from __future__ import annotations

import numpy as np

#: Semantic classes, PILArNet order.
SEMANTIC_CLASSES = ("shower", "track", "michel", "delta", "low_energy")
SHOWER, TRACK, MICHEL, DELTA, LOW_ENERGY = range(5)

#: Species of tracked objects (positrons are electrons for labelling).
SPECIES = ("photon", "electron", "positron", "muon", "pion", "proton")
PHOTON, ELECTRON, POSITRON, MUON, PION, PROTON = range(6)
#: Particle-type labels (what reconstruction's particle ID predicts) per species.
PARTICLE_TYPES = ("photon", "electron", "muon", "pion", "proton")
TYPE_OF_SPECIES = np.array([0, 1, 1, 2, 3, 4], dtype=np.int8)
#: Charge per species where the species fixes it; muons and pions carry their sign in the
#: ``charge`` column (these are the defaults of rows added without one: mu+, pi+).
CHARGE_OF_SPECIES = np.array([0, -1, 1, 1, 1, 1], dtype=np.int8)
#: PDG codes of the particle (not antiparticle) of each species.
_PDG_PARTICLE = np.array([22, 11, 11, 13, 211, 2212], dtype=np.int32)


def pdg_codes(species: np.ndarray, charge: np.ndarray) -> np.ndarray:
    """Signed PDG codes: e+ -11, mu+ -13, pi- -211 (leptons are negative particles, pions
    positive)."""
    species = np.asarray(species, dtype=np.int64)
    code = _PDG_PARTICLE[species]
    lepton = np.isin(species, (ELECTRON, POSITRON, MUON))
    anti = np.where(lepton, np.asarray(charge) > 0, np.asarray(charge) < 0)
    return np.where(anti, -code, code).astype(np.int32)


#: Name of the stopping-power table per charged species.
STOPPING_NAME = {ELECTRON: "electron", POSITRON: "electron", MUON: "muon", PION: "pion",
                 PROTON: "proton"}

#: Creation processes.
PROCESSES = ("primary", "decay", "delta", "brems", "compton", "conversion", "photoelectric",
             "annihilation", "hadronic", "capture")
(PRIMARY, DECAY, DELTA_RAY, BREMS, COMPTON, CONVERSION, PHOTOELECTRIC, ANNIHILATION,
 HADRONIC, CAPTURE) = range(10)

_COLUMNS: dict[str, tuple[type, tuple[int, ...]]] = {
    "event": (np.int64, ()),
    "interaction": (np.int64, ()),
    "species": (np.int8, ()),
    "charge": (np.int8, ()),
    "process": (np.int8, ()),
    "parent": (np.int64, ()),
    "group": (np.int64, ()),
    "fragment": (np.int64, ()),
    "semantic": (np.int8, ()),
    "primary": (np.bool_, ()),
    "key": (np.uint64, ()),
    "start": (np.float64, (3,)),
    "direction": (np.float64, (3,)),
    "end": (np.float64, (3,)),
    "energy": (np.float64, ()),
    "time": (np.float64, ()),
    "escaped": (np.float64, ()),
}


class TrackTable:
    """A growable column store of tracked objects; rows are never reordered."""

    def __init__(self, capacity: int = 1024) -> None:
        self.n = 0
        self._cols = {k: np.zeros((capacity, *s), dtype=t) for k, (t, s) in _COLUMNS.items()}

    def __getitem__(self, name: str) -> np.ndarray:
        return self._cols[name][: self.n]

    def __len__(self) -> int:
        return self.n

    def add(self, **columns: np.ndarray) -> np.ndarray:
        """Append rows; ``group``/``fragment`` equal to -1 mean "this row itself"; without a
        ``charge`` column the species' default (:data:`CHARGE_OF_SPECIES`). Returns the new
        row indices."""
        m = len(columns["event"])
        need = self.n + m
        cap = len(self._cols["event"])
        if need > cap:
            new_cap = max(need, 2 * cap)
            for k, a in self._cols.items():
                b = np.zeros((new_cap, *a.shape[1:]), dtype=a.dtype)
                b[: self.n] = a[: self.n]
                self._cols[k] = b
        rows = np.arange(self.n, need)
        for k, v in columns.items():
            self._cols[k][rows] = v
        if "charge" not in columns:
            self._cols["charge"][rows] = CHARGE_OF_SPECIES[self._cols["species"][rows]]
        for k in ("group", "fragment"):
            col = self._cols[k]
            col[rows] = np.where(col[rows] < 0, rows, col[rows])
        self._cols["end"][rows] = self._cols["start"][rows]
        self.n = need
        return rows

    def set(self, name: str, rows: np.ndarray, values: np.ndarray) -> None:
        self._cols[name][rows] = values

    def as_dict(self) -> dict[str, np.ndarray]:
        return {k: v[: self.n].copy() for k, v in self._cols.items()}
