"""Geant4 reference tables for negative muons and pions that stop in liquid argon.

Why this exists
---------------
A stopped positive muon decays (a Michel electron) and a stopped pi+ decays to a 4.1 MeV mu+.
Negative ones do not behave like that. A mu- falls into an argon atom's 1s orbit; about three
times out of four the nucleus captures it (mu- p -> nu n), which leaves a few MeV of photons and
sometimes a proton, and no Michel electron. Otherwise it decays in orbit. A pi- is captured
at once, and the nucleus breaks up into a "star" of neutrons, protons and light fragments.
That end is what tells a physicist a stopping pi- from a muon. The simulator
(:mod:`larchain.sim.capture`) samples these final states from tables. This script measures
them with Geant4 (``G4StoppingPhysics``: ``muMinusCaptureAtRest``, ``hBertiniCaptureAtRest``)
and writes ``src/larchain/sim/data/capture_at_rest.npz``.

Method
------
A mu- or pi- starts at rest in a 10 m cube of G4_lAr. Only decay, hadronic and stopping
physics are registered (no EM physics, which needs G4LEDATA). The secondaries of its
at-rest step are recorded for each stopped particle:
* the PDG code, kinetic energy and direction of each one;
* its delay after the particle stopped (the muonic atom's lifetime, drawn by Geant4);
* whether the end was a decay in orbit (an anti-nu_e among the secondaries).
Photons, electrons, positrons, charged pions and protons are kept. Nuclear fragments
(deuterons, tritons, alphas, the residual nucleus) stop within millimetres, and so do photons
and electrons below 50 keV (X-rays and Auger electrons of the atomic cascade), so their kinetic
energy is kept as one local deposit per capture. Neutrons and neutrinos are dropped: they
leave no charge.

geant4-pybind is an optional, benchmark-only dependency (see geant4_hadron_tables.py for
why the data directories are placeholders).

Usage::

    python benchmarks/geant4_capture_tables.py --out src/larchain/sim/data/capture_at_rest.npz
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from geant4_hadron_tables import product_arrays, start_geant4, write_tables  # noqa: E402

#: Stopped particles tabulated; their order is the table's first axis (larchain.sim.capture).
STOPPED = ("mu-", "pi-")
#: Kept products: PDG code -> (larchain species, charge): photon 0, electron 1, positron 2,
#: pion 4, proton 5 (larchain.sim.truth).
KEPT = {22: (0, 0), 11: (1, -1), -11: (2, 1), 211: (4, 1), -211: (4, -1), 2212: (5, 1)}
ANTI_NU_E = -12
#: Photons and electrons below this kinetic energy [MeV] (atomic X-rays and Auger electrons of
#: the muonic/pionic cascade) are absorbed within millimetres: booked as local energy.
SOFT_MEV = 0.05


def measure(n_stops: int, seed: int) -> dict[str, np.ndarray]:
    import geant4_pybind as g

    ends: list = []

    class Step(g.G4UserSteppingAction):
        def UserSteppingAction(self, step):  # noqa: ANN001, ANN202, N802
            tr = step.GetTrack()
            if tr.GetParentID() != 0:
                return
            t_stop = step.GetPreStepPoint().GetGlobalTime()
            ends.append((
                step.GetPostStepPoint().GetProcessDefinedStep().GetProcessName(),
                [(s.GetDefinition().GetPDGEncoding(), s.GetKineticEnergy() / g.MeV,
                  (s.GetMomentumDirection().x, s.GetMomentumDirection().y,
                   s.GetMomentumDirection().z), (s.GetGlobalTime() - t_stop) / g.microsecond)
                 for s in step.GetSecondaryInCurrentStep()]))
            tr.SetTrackStatus(g.G4TrackStatus.fKillTrackAndSecondaries)

    rm, gun = start_geant4(5.0, Step, stopping=True)
    g.G4Random.setTheSeed(seed)
    gun.SetParticlePosition(g.G4ThreeVector())
    gun.SetParticleMomentumDirection(g.G4ThreeVector(0, 0, 1))
    gun.SetParticleEnergy(0.0)
    table = g.G4ParticleTable.GetParticleTable()
    offsets = np.zeros((len(STOPPED), n_stops + 1), dtype=np.int64)
    local = np.zeros((len(STOPPED), n_stops))
    delay = np.zeros((len(STOPPED), n_stops))
    decay = np.zeros((len(STOPPED), n_stops), dtype=bool)
    species: list[int] = []
    charge: list[int] = []
    kes: list[float] = []
    dirs: list[tuple] = []
    for a, name in enumerate(STOPPED):
        gun.SetParticleDefinition(table.FindParticle(name))
        ends.clear()
        while len(ends) < n_stops:
            rm.BeamOn(1)
        procs: dict[str, int] = {}
        for k, (proc, products) in enumerate(ends[:n_stops]):
            procs[proc] = procs.get(proc, 0) + 1
            offsets[a, k] = len(species)
            delay[a, k] = max((t for *_, t in products), default=0.0)
            decay[a, k] = any(pdg == ANTI_NU_E for pdg, *_ in products)
            for pdg, ke, d, _ in products:
                if pdg in KEPT and not (KEPT[pdg][0] in (0, 1) and ke < SOFT_MEV):
                    sp, q = KEPT[pdg]
                    species.append(sp), charge.append(q), kes.append(ke), dirs.append(d)
                elif abs(pdg) > 1_000_000_000 or pdg in (22, 11):  # ions; soft X-rays, Auger
                    local[a, k] += ke
        offsets[a, n_stops] = len(species)
        print(f"{name}: {procs}; decays in orbit {decay[a].mean():.3f}; mean delay "
              f"{delay[a].mean() * 1e3:.0f} ns", flush=True)
    return {
        "stopped": np.array(STOPPED), "offsets": offsets, "local_energy": local.astype(np.float32),
        "delay_us": delay.astype(np.float32), "decay_in_orbit": decay,
        **product_arrays(species, charge, kes, dirs),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--stops", type=int, default=3000, help="stopped particles per species")
    ap.add_argument("--seed", type=int, default=20261124)
    args = ap.parse_args(argv)
    return write_tables(args.out, lambda: measure(args.stops, args.seed))


if __name__ == "__main__":
    sys.exit(main())
