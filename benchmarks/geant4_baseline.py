"""Geant4 optical-photon tracking speed: the baseline for the LUT photons/s benchmark.

Why this exists
---------------
larchain's optical model is a vectorised PyTorch Monte Carlo (and the look-up
table built from it).  To say how fast it is we need an honest reference: how
many optical photons per second real Geant4 tracks on ONE core/thread in the
same toy problem.  This script measures exactly that, with Geant4 set up to be
as fast as it can be:

* a box of liquid argon (default 100 x 100 x 100 cm, centred at the origin)
  with constant RINDEX / RAYLEIGH / ABSLENGTH around 9.69 eV (128 nm);
* a world of G4_Galactic *without* a material properties table, so a photon
  reaching the box wall is killed there (perfectly absorbing walls);
* a modular physics list holding only G4OpticalPhysics (Cerenkov,
  scintillation, WLS, WLS2 and Mie switched off; OpAbsorption, OpRayleigh and
  OpBoundary active);
* a serial run manager, all verbosity off, and in timing mode NO user
  stepping/tracking/event action at all -- scoring would only slow Geant4
  down, so the number is an upper bound on Geant4's speed.

Primaries are optical photons of 9.69 eV, uniform in the whole box, isotropic,
with random linear polarisation perpendicular to the momentum.  They are
pre-drawn with numpy and fed through a G4ParticleGun (one vertex per photon,
``--per-event`` photons per event).  The time spent in the Python generator is
measured and reported separately so it can be subtracted.

``--crosscheck M`` additionally tracks M photons with a stepping + tracking
action and reports the fraction absorbed in the bulk, the fraction reaching
the wall, and the mean number of Rayleigh scatterings per photon, with errors;
our own Monte Carlo is compared against those numbers.

geant4-pybind is an optional, benchmark-only dependency
(``pip install geant4-pybind``).  With only optical physics no Geant4 data set
is needed; the script points GEANT4_DATA_DIR / G4ENSDFSTATEDATA at a temporary
directory (holding an empty ENSDFSTATE.dat) if they are not already set.  If
geant4_pybind cannot be imported the script exits with code 2.

Usage::

    python benchmarks/geant4_baseline.py                   # timing, 200k photons
    python benchmarks/geant4_baseline.py --crosscheck 50000 --json g4.json
    python benchmarks/geant4_baseline.py --rayleigh 1e9 --absorption 1e9
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import io
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

LAR_RINDEX = 1.357
PHOTON_ENERGY_EV = 9.69  # 128 nm, LAr scintillation peak
# Optical properties are tabulated (constant) on this narrow energy window.
MPT_ENERGY_RANGE_EV = (9.0, 10.4)
EXIT_NO_GEANT4 = 2


# --------------------------------------------------------------------------- #
# Environment / import helpers
# --------------------------------------------------------------------------- #
def prepare_geant4_environment() -> Path | None:
    """Make Geant4 start without any of its data sets.

    Optical physics needs none of them, but Geant4 (and geant4_pybind's data
    downloader) look at GEANT4_DATA_DIR and G4ENSDFSTATEDATA at start-up.  If
    either is unset (or points nowhere) a temporary directory with an empty
    ENSDFSTATE.dat is created and used.  Returns that directory, if created.
    """
    data_dir = os.environ.get("GEANT4_DATA_DIR")
    ensdf_dir = os.environ.get("G4ENSDFSTATEDATA")
    need_data = not (data_dir and Path(data_dir).is_dir())
    need_ensdf = not (ensdf_dir and (Path(ensdf_dir) / "ENSDFSTATE.dat").is_file())
    if not (need_data or need_ensdf):
        return None
    tmp = Path(tempfile.mkdtemp(prefix="g4_nodata_"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    (tmp / "ENSDFSTATE.dat").touch()
    if need_data:
        os.environ["GEANT4_DATA_DIR"] = str(tmp)
    if need_ensdf:
        os.environ["G4ENSDFSTATEDATA"] = str(tmp)
    return tmp


def import_geant4() -> ModuleType | None:
    """Import geant4_pybind, or return None if it is not available."""
    try:
        import geant4_pybind
    except ImportError:
        return None
    return geant4_pybind


def geant4_version_string(g4: ModuleType) -> str:
    """Human-readable Geant4 version, falling back to the geant4_pybind version."""
    name = getattr(g4, "G4Version", "")
    if isinstance(name, str) and "geant4-" in name:
        # '$Name: geant4-11-04-patch-01 [MT]$' -> 'geant4-11-04-patch-01 [MT]'
        return name.replace("$Name:", "").strip(" $")
    number = getattr(g4, "G4VERSION_NUMBER", None)
    if number is not None:
        return f"geant4 {number}"
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"geant4-pybind {version('geant4-pybind')}"
    except PackageNotFoundError:
        return "unknown"


# --------------------------------------------------------------------------- #
# Primary generation (pure numpy, testable without Geant4)
# --------------------------------------------------------------------------- #
def draw_photons(rng: np.random.Generator, n: int, half_sizes: np.ndarray) -> np.ndarray:
    """Draw ``n`` photons uniform in the box, isotropic, random perpendicular polarisation.

    Returns an array of shape (n, 9): position (in the caller's length unit),
    unit momentum direction, unit polarisation (perpendicular to momentum).
    """
    pos = rng.uniform(-1.0, 1.0, size=(n, 3)) * half_sizes
    cos_t = rng.uniform(-1.0, 1.0, size=n)
    phi = rng.uniform(0.0, 2.0 * math.pi, size=n)
    sin_t = np.sqrt(np.clip(1.0 - cos_t * cos_t, 0.0, None))
    cphi, sphi = np.cos(phi), np.sin(phi)
    direction = np.stack([sin_t * cphi, sin_t * sphi, cos_t], axis=1)
    # Orthonormal basis perpendicular to the direction: e_theta and e_phi.
    e_theta = np.stack([cos_t * cphi, cos_t * sphi, -sin_t], axis=1)
    e_phi = np.stack([-sphi, cphi, np.zeros(n)], axis=1)
    psi = rng.uniform(0.0, 2.0 * math.pi, size=n)
    pol = np.cos(psi)[:, None] * e_theta + np.sin(psi)[:, None] * e_phi
    return np.concatenate([pos, direction, pol], axis=1)


# --------------------------------------------------------------------------- #
# Crosscheck bookkeeping (pure Python)
# --------------------------------------------------------------------------- #
@dataclass
class CrosscheckTally:
    """Per-photon fate and Rayleigh-scatter counts collected by the user actions."""

    photons: int = 0
    absorbed: int = 0
    wall: int = 0
    other: int = 0
    scatters_sum: int = 0
    scatters_sq_sum: int = 0
    last_process: Counter[str] = field(default_factory=Counter)
    step_process: Counter[str] = field(default_factory=Counter)

    def summary(self) -> dict[str, Any]:
        n = max(self.photons, 1)
        f_abs = self.absorbed / n
        f_wall = self.wall / n
        mean_sc = self.scatters_sum / n
        var_sc = max(self.scatters_sq_sum / n - mean_sc * mean_sc, 0.0)
        return {
            "crosscheck_photons": self.photons,
            "frac_absorbed": f_abs,
            "frac_absorbed_err": math.sqrt(f_abs * (1.0 - f_abs) / n),
            "frac_wall": f_wall,
            "frac_wall_err": math.sqrt(f_wall * (1.0 - f_wall) / n),
            "frac_other": self.other / n,
            "mean_scatters": mean_sc,
            "mean_scatters_err": math.sqrt(var_sc / n),
            "last_step_processes": dict(self.last_process),
            "step_processes": dict(self.step_process),
        }


# --------------------------------------------------------------------------- #
# Geant4 application
# --------------------------------------------------------------------------- #
@dataclass
class BoxConfig:
    """Geometry and optics of the liquid-argon box (lengths in cm)."""

    size_cm: tuple[float, float, float] = (100.0, 100.0, 100.0)
    rayleigh_cm: float = 99.9
    absorption_cm: float = 2000.0
    rindex: float = LAR_RINDEX
    energy_ev: float = PHOTON_ENERGY_EV


@dataclass
class Geant4App:
    """The run manager plus the user objects that must stay alive with it."""

    g4: ModuleType
    run_manager: Any
    generator: Any
    keep_alive: list[Any]
    processes: dict[str, bool]
    lar_density_g_cm3: float

    def beam_on(self, n_photons: int) -> tuple[float, float]:
        """Track ``n_photons`` photons. Returns (wall seconds of BeamOn, generator seconds)."""
        if n_photons <= 0:
            return 0.0, 0.0
        per_event = self.generator.per_event
        n_events = (n_photons + per_event - 1) // per_event
        self.generator.remaining = n_photons
        self.generator.seconds = 0.0
        t0 = time.perf_counter()
        self.run_manager.BeamOn(n_events)
        seconds = time.perf_counter() - t0
        if self.generator.remaining != 0:
            raise RuntimeError("generator did not emit the requested number of photons")
        return seconds, self.generator.seconds


def build_app(g4: ModuleType, cfg: BoxConfig, seed: int, per_event: int, quiet: bool) -> Geant4App:
    """Create the serial run manager, geometry, optical-only physics and photon gun."""
    cm, ev = g4.cm, g4.eV
    half = np.asarray(cfg.size_cm, dtype=float) / 2.0

    class LArBox(g4.G4VUserDetectorConstruction):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.keep: list[Any] = []
            self.lar_density_g_cm3 = float("nan")

        def Construct(self) -> Any:
            nist = g4.G4NistManager.Instance()
            lar = nist.FindOrBuildMaterial("G4_lAr")  # 1.396 g/cm3
            world_mat = nist.FindOrBuildMaterial("G4_Galactic")  # no MPT: kills photons
            lo, hi = MPT_ENERGY_RANGE_EV
            energies = g4.G4doubleVector([lo * ev, cfg.energy_ev * ev, hi * ev])

            def const(value: float) -> Any:
                return g4.G4doubleVector([value] * 3)

            mpt = g4.G4MaterialPropertiesTable()
            mpt.AddProperty("RINDEX", energies, const(cfg.rindex))
            mpt.AddProperty("RAYLEIGH", energies, const(cfg.rayleigh_cm * cm))
            mpt.AddProperty("ABSLENGTH", energies, const(cfg.absorption_cm * cm))
            lar.SetMaterialPropertiesTable(mpt)
            self.lar_density_g_cm3 = lar.GetDensity() / (g4.g / g4.cm3)

            hx, hy, hz = (float(h) * cm for h in half)
            margin = 1.0 * cm
            world_solid = g4.G4Box("World", hx + margin, hy + margin, hz + margin)
            world_lv = g4.G4LogicalVolume(world_solid, world_mat, "World")
            world_pv = g4.G4PVPlacement(
                None, g4.G4ThreeVector(), world_lv, "World", None, False, 0, False
            )
            box_solid = g4.G4Box("LArBox", hx, hy, hz)
            box_lv = g4.G4LogicalVolume(box_solid, lar, "LArBox")
            box_pv = g4.G4PVPlacement(
                None, g4.G4ThreeVector(), box_lv, "LArBox", world_lv, False, 0, False
            )
            self.keep += [mpt, world_solid, world_lv, world_pv, box_solid, box_lv, box_pv]
            return world_pv

    class OpticalOnlyPhysics(g4.G4VModularPhysicsList):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.SetVerboseLevel(0)
            self.optical = g4.G4OpticalPhysics()
            self.RegisterPhysics(self.optical)

    class PhotonGun(g4.G4VUserPrimaryGeneratorAction):  # type: ignore[misc, name-defined]
        """One G4PrimaryVertex per photon, ``per_event`` photons per event."""

        def __init__(self) -> None:
            super().__init__()
            self.per_event = per_event
            self.remaining = 0
            self.seconds = 0.0
            self.rng = np.random.default_rng(seed)
            self.gun = g4.G4ParticleGun(1)
            self.gun.SetParticleDefinition(g4.G4OpticalPhoton.OpticalPhotonDefinition())
            self.gun.SetParticleEnergy(cfg.energy_ev * ev)
            self.gun.SetParticleTime(0.0)
            self.pos = g4.G4ThreeVector()
            self.mom = g4.G4ThreeVector(0.0, 0.0, 1.0)
            self.pol = g4.G4ThreeVector(1.0, 0.0, 0.0)

        def GeneratePrimaries(self, event: Any) -> None:
            t0 = time.perf_counter()
            n = min(self.per_event, self.remaining)
            self.remaining -= n
            table = draw_photons(self.rng, n, half)
            table[:, :3] *= cm
            gun = self.gun
            # Re-using three G4ThreeVectors (the gun copies them) is ~2x faster
            # than constructing new ones per photon.
            pos, mom, pol = self.pos, self.mom, self.pol
            set_pos, set_mom, set_pol = pos.set, mom.set, pol.set
            gun_pos = gun.SetParticlePosition
            gun_mom = gun.SetParticleMomentumDirection
            gun_pol = gun.SetParticlePolarization
            generate = gun.GeneratePrimaryVertex
            for x, y, z, dx, dy, dz, px, py, pz in table.tolist():
                set_pos(x, y, z)
                set_mom(dx, dy, dz)
                set_pol(px, py, pz)
                gun_pos(pos)
                gun_mom(mom)
                gun_pol(pol)
                generate(event)
            self.seconds += time.perf_counter() - t0

    sink = io.StringIO()
    redirect = contextlib.redirect_stdout(sink) if quiet else contextlib.nullcontext()
    with redirect:
        run_manager = g4.G4RunManagerFactory.CreateRunManager(g4.G4RunManagerType.Serial)
        ui = g4.G4UImanager.GetUIpointer()
        for cmd in (
            "/control/verbose 0",
            "/run/verbose 0",
            "/event/verbose 0",
            "/tracking/verbose 0",
            "/process/verbose 0",
        ):
            ui.ApplyCommand(cmd)
        g4.HepRandom.setTheSeed(seed)

        detector = LArBox()
        physics = OpticalOnlyPhysics()
        run_manager.SetUserInitialization(detector)
        run_manager.SetUserInitialization(physics)
        # G4OpticalParameters exists now (created by G4OpticalPhysics): configure it.
        for cmd in (
            "/process/optical/verbose 0",
            "/process/optical/processActivation Cerenkov false",
            "/process/optical/processActivation Scintillation false",
            "/process/optical/processActivation OpWLS false",
            "/process/optical/processActivation OpWLS2 false",
            "/process/optical/processActivation OpMieHG false",
            "/process/optical/processActivation OpAbsorption true",
            "/process/optical/processActivation OpRayleigh true",
            "/process/optical/processActivation OpBoundary true",
        ):
            ui.ApplyCommand(cmd)  # returns None in geant4_pybind; checked below
        generator = PhotonGun()
        run_manager.SetUserAction(generator)
        run_manager.Initialize()
        for cmd in (
            "/run/verbose 0",
            "/event/verbose 0",
            "/tracking/verbose 0",
            "/process/verbose 0",
        ):
            ui.ApplyCommand(cmd)
        run_manager.SetVerboseLevel(0)
        run_manager.SetPrintProgress(-1)  # no '### Run N starts.' lines

    processes = optical_photon_processes(g4)
    for required in ("Transportation", "OpAbsorption", "OpRayleigh", "OpBoundary"):
        if not processes.get(required, False):
            raise RuntimeError(f"optical photon process {required} is not active: {processes}")
    keep_alive = [detector, physics, generator]
    return Geant4App(
        g4=g4,
        run_manager=run_manager,
        generator=generator,
        keep_alive=keep_alive,
        processes=processes,
        lar_density_g_cm3=detector.lar_density_g_cm3,
    )


def optical_photon_processes(g4: ModuleType) -> dict[str, bool]:
    """Processes attached to the optical photon, mapped to whether they are active."""
    manager = g4.G4OpticalPhoton.OpticalPhotonDefinition().GetProcessManager()
    return {
        proc.GetProcessName(): bool(manager.GetProcessActivation(proc))
        for proc in manager.GetProcessList()
    }


def attach_crosscheck_actions(app: Geant4App, tally: CrosscheckTally) -> None:
    """Add a stepping action (counts OpRayleigh) and a post-tracking action (fate)."""
    g4 = app.g4
    geom_boundary = g4.G4StepStatus.fGeomBoundary
    world_boundary = g4.G4StepStatus.fWorldBoundary
    state = {"scatters": 0, "last": "", "boundary": False}

    class ScatterCounter(g4.G4UserSteppingAction):  # type: ignore[misc, name-defined]
        def UserSteppingAction(self, step: Any) -> None:
            post = step.GetPostStepPoint()
            name = post.GetProcessDefinedStep().GetProcessName()
            tally.step_process[name] += 1
            if name == "OpRayleigh":
                state["scatters"] += 1
            state["last"] = name
            status = post.GetStepStatus()
            state["boundary"] = status == geom_boundary or status == world_boundary

    class FateClassifier(g4.G4UserTrackingAction):  # type: ignore[misc, name-defined]
        def PreUserTrackingAction(self, track: Any) -> None:
            state["scatters"] = 0
            state["last"] = ""
            state["boundary"] = False

        def PostUserTrackingAction(self, track: Any) -> None:
            if track.GetParentID() != 0:
                return
            n_sc = state["scatters"]
            last = state["last"]
            tally.photons += 1
            tally.scatters_sum += n_sc
            tally.scatters_sq_sum += n_sc * n_sc
            tally.last_process[last] += 1
            if last == "OpAbsorption":
                tally.absorbed += 1
            elif state["boundary"]:
                tally.wall += 1
            else:
                tally.other += 1

    stepping = ScatterCounter()
    tracking = FateClassifier()
    app.run_manager.SetUserAction(stepping)
    app.run_manager.SetUserAction(tracking)
    app.keep_alive += [stepping, tracking]


# --------------------------------------------------------------------------- #
# CLI
# --------------------------------------------------------------------------- #
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Measure Geant4 optical-photon tracking speed (photons/s, one thread) "
        "in a liquid-argon box; optional physics crosscheck.",
    )
    p.add_argument(
        "--size",
        type=float,
        nargs=3,
        default=[100.0, 100.0, 100.0],
        metavar=("X", "Y", "Z"),
        help="full box sizes in cm (default 100 100 100)",
    )
    p.add_argument("--rayleigh", type=float, default=99.9, help="Rayleigh length in cm")
    p.add_argument("--absorption", type=float, default=2000.0, help="absorption length in cm")
    p.add_argument("--rindex", type=float, default=LAR_RINDEX, help="refractive index")
    p.add_argument("--photons", type=int, default=200_000, help="photons in the timed run")
    p.add_argument("--warmup", type=int, default=5_000, help="photons in the warm-up run")
    p.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="timed runs of --photons each; the median is reported",
    )
    p.add_argument("--per-event", type=int, default=1_000, help="photons per G4Event")
    p.add_argument(
        "--crosscheck",
        type=int,
        default=0,
        metavar="M",
        help="also track M photons with scoring actions (fates, scatters)",
    )
    p.add_argument("--seed", type=int, default=1, help="HepRandom / numpy seed")
    p.add_argument("--json", type=Path, default=None, metavar="PATH", help="write results here")
    p.add_argument("--verbose", action="store_true", help="do not hide Geant4's start-up output")
    args = p.parse_args(argv)
    if args.per_event <= 0 or args.repeats <= 0:
        p.error("--per-event and --repeats must be positive")
    if args.photons < 0 or args.warmup < 0 or args.crosscheck < 0:
        p.error("photon counts must not be negative")
    if min(args.size) <= 0 or args.rayleigh <= 0 or args.absorption <= 0:
        p.error("sizes and lengths must be positive")
    return args


def run(args: argparse.Namespace, g4: ModuleType) -> dict[str, Any]:
    cfg = BoxConfig(
        size_cm=(args.size[0], args.size[1], args.size[2]),
        rayleigh_cm=args.rayleigh,
        absorption_cm=args.absorption,
        rindex=args.rindex,
    )
    t_init = time.perf_counter()
    app = build_app(g4, cfg, seed=args.seed, per_event=args.per_event, quiet=not args.verbose)
    init_seconds = time.perf_counter() - t_init

    result: dict[str, Any] = {
        "geant4_version": geant4_version_string(g4),
        "size_cm": list(cfg.size_cm),
        "rayleigh_cm": cfg.rayleigh_cm,
        "absorption_cm": cfg.absorption_cm,
        "rindex": cfg.rindex,
        "lar_density_g_cm3": app.lar_density_g_cm3,
        "photon_energy_ev": cfg.energy_ev,
        "seed": args.seed,
        "per_event": args.per_event,
        "init_seconds": init_seconds,
        "optical_photon_processes": app.processes,
    }

    app.beam_on(args.warmup)
    timings = [app.beam_on(args.photons) for _ in range(args.repeats if args.photons > 0 else 0)]
    # Report the median repeat (by total BeamOn time) to damp noise from a shared machine.
    seconds, gen_seconds = sorted(timings)[len(timings) // 2] if timings else (0.0, 0.0)
    nan = float("nan")
    result.update(
        {
            "warmup_photons": args.warmup,
            "photons": args.photons,
            "repeats": len(timings),
            "seconds": seconds,
            "seconds_all_repeats": [t for t, _ in timings],
            "photons_per_second": args.photons / seconds if seconds > 0 else nan,
            "generator_seconds": gen_seconds,
            "photons_per_second_excl_generator": (
                args.photons / (seconds - gen_seconds) if seconds > gen_seconds else nan
            ),
        }
    )

    if args.crosscheck > 0:
        tally = CrosscheckTally()
        attach_crosscheck_actions(app, tally)
        cc_seconds, _ = app.beam_on(args.crosscheck)
        result.update(tally.summary())
        result["crosscheck_seconds"] = cc_seconds
    return result


def print_summary(res: dict[str, Any]) -> None:
    sx, sy, sz = res["size_cm"]
    print(f"Geant4 optical baseline ({res['geant4_version']}, serial, 1 thread)")
    print(
        f"  LAr box {sx:g} x {sy:g} x {sz:g} cm, Rayleigh {res['rayleigh_cm']:g} cm, "
        f"absorption {res['absorption_cm']:g} cm, n={res['rindex']:g}"
    )
    if res["photons"] > 0:
        gen = res["generator_seconds"]
        print(
            f"  timed: {res['photons']} photons in {res['seconds']:.3f} s "
            f"(median of {res['repeats']}) -> {res['photons_per_second']:,.0f} photons/s"
        )
        print(
            f"  python generator: {gen:.3f} s ({100 * gen / res['seconds']:.1f} %) "
            f"-> {res['photons_per_second_excl_generator']:,.0f} photons/s excluding it"
        )
    if "crosscheck_photons" in res:
        print(
            f"  crosscheck: {res['crosscheck_photons']} photons "
            f"({res['crosscheck_seconds']:.2f} s with Python scoring)"
        )
        f_abs, e_abs = res["frac_absorbed"], res["frac_absorbed_err"]
        f_wall, e_wall = res["frac_wall"], res["frac_wall_err"]
        print(f"    absorbed in bulk : {f_abs:.5f} +- {e_abs:.5f}")
        print(f"    reached wall     : {f_wall:.5f} +- {e_wall:.5f}")
        if res["frac_other"] > 0:
            print(f"    other            : {res['frac_other']:.5f}")
        m_sc, e_sc = res["mean_scatters"], res["mean_scatters_err"]
        print(f"    Rayleigh/photon  : {m_sc:.4f} +- {e_sc:.4f}")
        print(f"    step processes   : {res['step_processes']}")
        print(f"    last-step procs  : {res['last_step_processes']}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    prepare_geant4_environment()
    g4 = import_geant4()
    if g4 is None:
        print(
            "geant4_pybind is not installed; this benchmark needs it "
            "(optional dependency): pip install geant4-pybind",
            file=sys.stderr,
        )
        return EXIT_NO_GEANT4
    res = run(args, g4)
    print_summary(res)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=2, sort_keys=True) + "\n")
        print(f"  wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
