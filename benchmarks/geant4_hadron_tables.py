"""Geant4 reference tables for pion and proton inelastic interactions in liquid argon.

Why this exists
---------------
The simulator's charged pions and protons interact with argon nuclei in flight (without it a
stopping pion is indistinguishable from a muon). Its cross-sections and final states are not
invented: they are taken from Geant4 (FTFP_BERT: Barashenkov-Glauber-Gribov cross-sections,
Bertini cascade below 3 GeV) by this script, which writes
``src/larchain/sim/data/hadron_inelastic.npz``, the file :mod:`larchain.sim.hadronic` reads.
pi+ and pi- are tabulated apart: on argon (18 protons, 22 neutrons) their cross-sections differ
(the Coulomb attraction of a slow pi-; isospin at the Delta), and so do their final states.

Method
------
* Cross-section: mono-energetic pi+, pi- or protons start in a 1 km cube of G4_lAr with only
  decay and hadronic physics (no energy loss, no elastic scattering), so the distance to the
  first inelastic interaction is exponential with the mean free path at that energy. With
  decay competing (pions), the maximum-likelihood mean free path is the summed first-step
  lengths over the number of inelastic ends; its relative error is 1/sqrt(n).
* Final states: the secondaries of the first ``--final-states`` inelastic interactions at each
  energy, directions relative to the incoming +z. pi0 are decayed here to two photons
  (isotropic in their rest frame, numpy seeded); neutrons (and any other neutral hadron) are
  not kept (they leave no charge in a TPC: their energy is bookkept as invisible); the kinetic
  energy of nuclear fragments (deuterons ... residual nucleus: ranges of millimetres) is kept
  per interaction as a local deposit. Each kept product keeps its charge (pi+ and pi- are one
  larchain species plus a charge).

geant4-pybind is an optional, benchmark-only dependency. FTFP_BERT's neutron builder insists on
reading G4PARTICLEXS files at start-up; neutrons are never tracked here, so the script points
every Geant4 data variable at a temporary directory and gives it flat placeholder neutron
tables (the pion and proton cross-sections are parametrisations compiled into Geant4).

Usage::

    python benchmarks/geant4_hadron_tables.py --out src/larchain/sim/data/hadron_inelastic.npz
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

ENERGIES_MEV = (10, 20, 30, 50, 75, 100, 150, 200, 250, 300, 400, 500, 700, 1000, 1500, 2000)
#: Geant4 particle name -> (larchain species code (larchain.sim.truth: PION 4, PROTON 5),
#: charge). pi- last, so that the pi+ and proton tables keep their random sequence.
INCIDENT = {"pi+": (4, 1), "proton": (5, 1), "pi-": (4, -1)}
#: Kept products: PDG code -> larchain species (photon 0, electron 1, positron 2, pion 4, proton 5).
KEPT = {22: 0, 11: 1, -11: 2, 211: 4, -211: 4, 2212: 5}
#: Electric charge of the kept products (pi+ and pi- share a species; the sign is kept apart).
CHARGE = {22: 0, 11: -1, -11: 1, 211: 1, -211: -1, 2212: 1}
PI0 = 111
PI0_MASS = 134.9768
LAR_DENSITY = 1.396
ARGON_A = 39.948
AVOGADRO = 6.02214076e23
#: 1/(n sigma) -> sigma in barn: divide by the mean free path [cm]. The constants are repeated
#: here (not imported from larchain) so the script runs in a bare geant4-pybind environment.
BARN_CM = ARGON_A / (AVOGADRO * LAR_DENSITY) * 1e24
_DATA_VARS = ("G4LEDATA", "G4LEVELGAMMADATA", "G4NEUTRONHPDATA", "G4NEUTRONXSDATA", "G4PIIDATA",
              "G4RADIOACTIVEDATA", "G4REALSURFACEDATA", "G4SAIDXSDATA", "G4ABLADATA",
              "G4INCLDATA", "G4PARTICLEXSDATA", "G4CHANNELINGDATA", "G4NUDEXLIBDATA",
              "G4URRPTDATA", "GEANT4_DATA_DIR", "G4ENSDFSTATEDATA")


def _placeholder_data() -> Path:
    """A data directory Geant4 starts with: empty ENSDFSTATE and flat neutron tables."""
    tmp = Path(tempfile.mkdtemp(prefix="g4_hadron_"))
    (tmp / "ENSDFSTATE.dat").touch()
    (tmp / "neutron").mkdir()
    flat = "1e-11 1e7 2\n2\n1e-11 1e-30\n1e7 1e-30\n"  # G4PhysicsVector ascii: ~zero
    for kind in ("inel", "cap", "el"):
        for z in range(0, 101):
            (tmp / "neutron" / f"{kind}{z}").write_text(flat)
    for var in _DATA_VARS:
        os.environ[var] = str(tmp)
    return tmp


def _decay_pi0(ke: float, d: np.ndarray, rng: np.random.Generator
               ) -> list[tuple[float, np.ndarray]]:
    """Two photons of a pi0 decay in flight (isotropic in the rest frame)."""
    e = ke + PI0_MASS
    p = math.sqrt(max(e * e - PI0_MASS * PI0_MASS, 0.0))
    beta, gamma = p / e, e / PI0_MASS
    c = rng.uniform(-1, 1)
    phi = rng.uniform(0, 2 * math.pi)
    s = math.sqrt(1 - c * c)
    k = np.array([s * math.cos(phi), s * math.sin(phi), c]) * PI0_MASS / 2
    out = []
    for sign in (1, -1):
        kr = sign * k
        # boost along d: parallel component transforms, perpendicular one does not
        kpar = float(kr @ d)
        kperp = kr - kpar * d
        e_lab = gamma * (PI0_MASS / 2 + beta * kpar)
        kpar_lab = gamma * (kpar + beta * PI0_MASS / 2)
        mom = kperp + kpar_lab * d
        out.append((e_lab, mom / np.linalg.norm(mom)))
    return out


_ALIVE: list = []


def start_geant4(half_size_m: float, stepping: type, stopping: bool = False
                 ) -> tuple[object, object]:
    """A serial Geant4 run in a G4_lAr cube of half-size ``half_size_m`` metres, with only
    decay and FTFP_BERT hadron physics (plus ``G4StoppingPhysics`` with ``stopping``), the
    user stepping action ``stepping`` (a ``G4UserSteppingAction`` subclass) and secondaries
    killed at birth (what a step made is read in the stepping action). Returns ``(run
    manager, particle gun)``; the gun fires one particle per ``BeamOn(1)``."""
    import geant4_pybind as g

    class Det(g.G4VUserDetectorConstruction):
        def Construct(self):  # noqa: ANN202, N802
            lar = g.G4NistManager.Instance().FindOrBuildMaterial("G4_lAr")
            half = half_size_m * g.m
            lv = g.G4LogicalVolume(g.G4Box("w", half, half, half), lar, "w")
            return g.G4PVPlacement(None, g.G4ThreeVector(), lv, "w", None, False, 0)

    class Stack(g.G4UserStackingAction):
        def ClassifyNewTrack(self, track):  # noqa: ANN001, ANN202, N802
            c = g.G4ClassificationOfNewTrack
            return c.fKill if track.GetParentID() > 0 else c.fUrgent

    class Gen(g.G4VUserPrimaryGeneratorAction):
        def GeneratePrimaries(self, ev):  # noqa: ANN001, ANN202, N802
            gun.GeneratePrimaryVertex(ev)

    keep: list = []

    class Act(g.G4VUserActionInitialization):
        def Build(self):  # noqa: ANN202, N802
            keep[:] = [Gen(), stepping(), Stack()]  # pybind needs the Python objects alive
            for a in keep:
                self.SetUserAction(a)

    rm = g.G4RunManagerFactory.CreateRunManager(g.G4RunManagerType.Serial)
    det, physics, act = Det(), g.G4VModularPhysicsList(), Act()
    _ALIVE.extend([det, physics, act])  # Geant4 keeps pointers to them
    rm.SetUserInitialization(det)
    physics.RegisterPhysics(g.G4DecayPhysics())
    physics.RegisterPhysics(g.G4HadronPhysicsFTFP_BERT())
    if stopping:
        physics.RegisterPhysics(g.G4StoppingPhysics())
    rm.SetUserInitialization(physics)
    gun = g.G4ParticleGun(1)
    rm.SetUserInitialization(act)
    rm.Initialize()
    return rm, gun


def measure(n_xs: int, n_fs: int, seed: int) -> dict[str, np.ndarray]:
    import geant4_pybind as g

    state: dict = {"steps": [], "fs": [], "record": True}

    class Step(g.G4UserSteppingAction):
        def UserSteppingAction(self, step):  # noqa: ANN001, ANN202, N802
            tr = step.GetTrack()
            if tr.GetParentID() == 0 and tr.GetCurrentStepNumber() == 1:
                name = step.GetPostStepPoint().GetProcessDefinedStep().GetProcessName()
                inel = "Inelastic" in name
                state["steps"].append((step.GetStepLength() / g.cm, inel))
                if inel and state["record"]:
                    state["fs"].append([
                        (s.GetDefinition().GetPDGEncoding(), s.GetKineticEnergy() / g.MeV,
                         (s.GetMomentumDirection().x, s.GetMomentumDirection().y,
                          s.GetMomentumDirection().z))
                        for s in step.GetSecondaryInCurrentStep()])
            tr.SetTrackStatus(g.G4TrackStatus.fKillTrackAndSecondaries)

    rm, gun = start_geant4(500.0, Step)
    g.G4Random.setTheSeed(seed)
    gun.SetParticleMomentumDirection(g.G4ThreeVector(0, 0, 1))
    gun.SetParticlePosition(g.G4ThreeVector(0, 0, -499 * g.m))
    table = g.G4ParticleTable.GetParticleTable()
    rng = np.random.default_rng(seed)
    energies = np.array(ENERGIES_MEV, dtype=np.float64)
    n_sp = len(INCIDENT)
    sigma = np.zeros((n_sp, len(energies)))
    sigma_err = np.zeros_like(sigma)
    offsets = np.zeros((n_sp, len(energies), n_fs + 1), dtype=np.int64)
    local = np.zeros((n_sp, len(energies), n_fs))
    codes: list[int] = []
    charges: list[int] = []
    kes: list[float] = []
    dirs: list[np.ndarray] = []
    for a, name in enumerate(INCIDENT):
        gun.SetParticleDefinition(table.FindParticle(name))
        for b, t in enumerate(energies):
            gun.SetParticleEnergy(float(t) * g.MeV)
            state["steps"], state["fs"], state["record"] = [], [], True
            while sum(i for _, i in state["steps"]) < n_xs:
                state["record"] = len(state["fs"]) < n_fs
                rm.BeamOn(1)
            lengths = np.array([s for s, _ in state["steps"]])
            n_inel = sum(i for _, i in state["steps"])
            mfp = lengths.sum() / n_inel
            sigma[a, b] = BARN_CM / mfp
            sigma_err[a, b] = sigma[a, b] / math.sqrt(n_inel)
            for k, products in enumerate(state["fs"][:n_fs]):
                offsets[a, b, k] = len(codes)
                for pdg, ke, d in products:
                    d = np.asarray(d, dtype=np.float64)
                    if pdg in KEPT:
                        codes.append(KEPT[pdg]), kes.append(ke), dirs.append(d)
                        charges.append(CHARGE[pdg])
                    elif pdg == PI0:
                        for e_ph, d_ph in _decay_pi0(ke, d, rng):
                            codes.append(0), kes.append(e_ph), dirs.append(d_ph)
                            charges.append(0)
                    elif abs(pdg) > 1_000_000_000:  # ions, deuterons included
                        local[a, b, k] += ke  # nuclear fragments stop within millimetres
            offsets[a, b, n_fs] = len(codes)
            print(f"{name:7s} {t:7.0f} MeV  sigma {sigma[a, b]:.4f} +- {sigma_err[a, b]:.4f} b"
                  f"  ({n_inel} interactions)", flush=True)
    return {
        "energies": energies,
        "species": np.array([sp for sp, _ in INCIDENT.values()], dtype=np.int64),
        "charge": np.array([q for _, q in INCIDENT.values()], dtype=np.int64),
        "sigma_barn": sigma, "sigma_err_barn": sigma_err, "offsets": offsets,
        "local_energy": local.astype(np.float32),
        **product_arrays(codes, charges, kes, dirs),
    }


def product_arrays(species: list, charge: list, energy: list, direction: list
                   ) -> dict[str, np.ndarray]:
    """The product columns of a table file (larchain species, charge, kinetic energy [MeV],
    unit direction) and the Geant4 version that made them."""
    import geant4_pybind as g

    return {
        "product_species": np.array(species, dtype=np.int8),
        "product_charge": np.array(charge, dtype=np.int8),
        "product_energy": np.array(energy, dtype=np.float32),
        "product_direction": np.array(direction, dtype=np.float32).reshape(-1, 3),
        "geant4": np.array(g.G4Version if isinstance(g.G4Version, str) else "geant4"),
    }


def write_tables(out: Path, measure: Callable[[], dict[str, np.ndarray]]) -> int:
    """Set up Geant4's placeholder data, run ``measure`` and save its arrays to ``out``
    (exit status: 2 when geant4-pybind is missing)."""
    _placeholder_data()  # before the import: geant4_pybind checks its data at import
    try:
        import geant4_pybind  # noqa: F401
    except ImportError:
        print("geant4_pybind is not installed (pip install geant4-pybind)", file=sys.stderr)
        return 2
    tables = measure()
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **tables)
    print(f"wrote {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--interactions", type=int, default=2000,
                    help="inelastic interactions per energy for the cross-section")
    ap.add_argument("--final-states", type=int, default=100,
                    help="final states kept per energy and species")
    ap.add_argument("--seed", type=int, default=20261123)
    args = ap.parse_args(argv)
    return write_tables(args.out, lambda: measure(args.interactions, args.final_states, args.seed))


if __name__ == "__main__":
    sys.exit(main())
