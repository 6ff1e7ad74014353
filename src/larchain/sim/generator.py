"""Primary particles of each event, drawn from the config.

An event holds ``1 + Poisson(pileup_mean)`` neutrino-like interactions (a vertex uniform in
the fiducial volume; a lepton: muon (CC nu_mu-like), electron (CC nu_e-like) or none
(NC-like); Poisson numbers of protons, charged pions, pi0 -> two photons and soft
de-excitation photons, isotropic) plus ``Poisson(cosmics.mean)`` cosmic-like muons entering
through the top wall with a cos^2 zenith distribution (through-going or stopping, depending
on their energy). Energies are log-uniform in the configured ranges (kinetic, MeV). Muons and
charged pions are negative with the configured ``negative_fraction`` (neutrino beams make
mostly mu- and pi+; cosmic muons at sea level are 44% mu-, mu+/mu- = 1.27): what happens
where they stop depends on it (:mod:`larchain.sim.capture`).

Generation uses one numpy Generator per event seeded from (seed, event index), so the event
does not depend on which shard or worker makes it; the charge signs come from a second one, so
the kinematics do not depend on the sign fractions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from larchain.sim import rng as hashrng
from larchain.sim import truth as T

PI0_MASS = 134.9768


def log_uniform(g: np.random.Generator, lo_hi: list[float], n: int | None = None):  # noqa: ANN201
    """Energies log-uniform in [lo, hi] (one, or ``n`` of them)."""
    lo, hi = float(lo_hi[0]), float(lo_hi[1])
    return np.exp(g.uniform(np.log(lo), np.log(hi), n))


def _isotropic(g: np.random.Generator, n: int) -> np.ndarray:
    cos_t = g.uniform(-1.0, 1.0, n)
    phi = g.uniform(0.0, 2 * np.pi, n)
    s = np.sqrt(1 - cos_t**2)
    return np.stack([s * np.cos(phi), s * np.sin(phi), cos_t], axis=1)


def _forward(g: np.random.Generator, n: int, min_cos: float) -> np.ndarray:
    """Directions within a cone about +z (the beam)."""
    cos_t = g.uniform(min_cos, 1.0, n)
    phi = g.uniform(0.0, 2 * np.pi, n)
    s = np.sqrt(1 - cos_t**2)
    return np.stack([s * np.cos(phi), s * np.sin(phi), cos_t], axis=1)


class Primaries:
    """Primary particles of a set of events, as columns for :class:`TrackTable.add`."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.interactions: list[dict[str, Any]] = []

    def add(self, event: int, interaction: int, species: int, pos: np.ndarray,
            direction: np.ndarray, energy: float, time: float = 0.0,
            semantic: int | None = None, charge: int | None = None) -> None:
        if semantic is None:
            semantic = T.TRACK if species in (T.MUON, T.PION, T.PROTON) else T.SHOWER
        if charge is None:
            charge = int(T.CHARGE_OF_SPECIES[species])
        self.rows.append(dict(event=event, interaction=interaction, species=species,
                              charge=charge,
                              start=np.asarray(pos, float), direction=np.asarray(direction, float),
                              energy=float(energy), time=float(time), semantic=semantic))

    def columns(self, event_keys: Mapping[int, int]) -> dict:
        n = len(self.rows)
        ev = np.array([r["event"] for r in self.rows], dtype=np.int64)
        energy = np.array([r["energy"] for r in self.rows])
        species = np.array([r["species"] for r in self.rows], dtype=np.int8)
        semantic = np.array([r["semantic"] for r in self.rows], dtype=np.int8)
        # position of each primary among its event's primaries (rows keep their order)
        order = np.argsort(ev, kind="stable")
        first = np.searchsorted(ev[order], ev[order])
        index_in_event = np.empty(n, dtype=np.int64)
        index_in_event[order] = np.arange(n) - first
        root = np.array([event_keys[int(e)] for e in ev], dtype=np.uint64)
        keys = hashrng.derive(root, index_in_event) if n else np.zeros(0, np.uint64)
        return dict(
            event=ev, interaction=np.array([r["interaction"] for r in self.rows], np.int64),
            species=species, charge=np.array([r["charge"] for r in self.rows], np.int8),
            process=np.full(n, T.PRIMARY, np.int8), parent=np.full(n, -1),
            group=np.full(n, -1), fragment=np.full(n, -1), semantic=semantic,
            primary=np.ones(n, bool), key=keys.reshape(n),
            start=np.array([r["start"] for r in self.rows]).reshape(n, 3),
            direction=np.array([r["direction"] for r in self.rows]).reshape(n, 3),
            energy=energy, time=np.array([r["time"] for r in self.rows]),
        )


def _sign(gq: np.random.Generator, negative_fraction: float) -> int:
    return -1 if gq.uniform() < negative_fraction else 1


def neutrino_interaction(g: np.random.Generator, cfg: Mapping[str, Any], vertex: np.ndarray,
                         out: Primaries, event: int, interaction: int,
                         gq: np.random.Generator) -> None:
    """A neutrino-like final state at ``vertex`` (charge signs drawn from ``gq``)."""
    negative = cfg["negative_fraction"]
    probs = cfg["lepton"]
    kinds = ["muon", "electron", "none"]
    p = np.array([probs[k] for k in kinds], dtype=float)
    lepton = kinds[int(g.choice(3, p=p / p.sum()))]
    if lepton != "none":
        species = T.MUON if lepton == "muon" else T.ELECTRON
        d = _forward(g, 1, float(cfg["lepton_min_cos"]))[0]
        charge = _sign(gq, negative["muon"]) if species == T.MUON else -1
        out.add(event, interaction, species, vertex, d,
                log_uniform(g, cfg[f"{lepton}_energy"]), charge=charge)
    for name, species in (("protons", T.PROTON), ("pions", T.PION)):
        n = g.poisson(cfg[name]["mean"])
        for d, e in zip(_isotropic(g, n), log_uniform(g, cfg[name]["energy"], n), strict=True):
            charge = _sign(gq, negative["pion"]) if species == T.PION else 1
            out.add(event, interaction, species, vertex, d, e, charge=charge)
    # pi0 -> gamma gamma: isotropic decay in the pi0 rest frame, boosted
    for _ in range(g.poisson(cfg["pi0"]["mean"])):
        t_pi = log_uniform(g, cfg["pi0"]["energy"])
        e_pi = t_pi + PI0_MASS
        p_pi = np.sqrt(e_pi**2 - PI0_MASS**2)
        axis = _isotropic(g, 1)[0]
        d_rest = _isotropic(g, 1)[0]
        beta = p_pi / e_pi
        gam = e_pi / PI0_MASS
        half = PI0_MASS / 2
        for sign in (1.0, -1.0):
            k_rest = sign * half * d_rest
            k_par = k_rest @ axis
            k_perp = k_rest - k_par * axis
            e_lab = gam * (half + beta * k_par)
            k_lab = k_perp + gam * (k_par + beta * half) * axis
            out.add(event, interaction, T.PHOTON, vertex, k_lab / np.linalg.norm(k_lab), e_lab)
    n = g.poisson(cfg["deexcitation_photons"]["mean"])
    for d, e in zip(_isotropic(g, n), log_uniform(g, cfg["deexcitation_photons"]["energy"], n),
                    strict=True):
        out.add(event, interaction, T.PHOTON, vertex, d, e, semantic=T.LOW_ENERGY)


def cosmic_muon(g: np.random.Generator, cfg: Mapping[str, Any], size: np.ndarray,
                out: Primaries, event: int, interaction: int,
                gq: np.random.Generator) -> np.ndarray:
    """A muon entering through the top wall (y = size_y), cos^2 zenith distribution."""
    cos_z = g.uniform(0, 1) ** (1.0 / 3.0)  # pdf ~ cos^2 on [0, 1]
    phi = g.uniform(0, 2 * np.pi)
    s = np.sqrt(1 - cos_z**2)
    d = np.array([s * np.cos(phi), -cos_z, s * np.sin(phi)])
    start = np.array([g.uniform(0, size[0]), size[1] * (1 - 1e-9), g.uniform(0, size[2])])
    out.add(event, interaction, T.MUON, start, d, log_uniform(g, cfg["energy"]),
            charge=_sign(gq, cfg["negative_fraction"]))
    return start


def generate_event(cfg: Mapping[str, Any], size: np.ndarray, seed: int, event_index: int,
                   local_event: int, out: Primaries) -> None:
    """Append event ``event_index``'s primaries (numbered ``local_event`` in the batch)."""
    g = np.random.default_rng(np.random.SeedSequence([int(seed), int(event_index), 1]))
    gq = np.random.default_rng(np.random.SeedSequence([int(seed), int(event_index), 3]))
    nu = cfg["neutrino"]
    margin = float(cfg["fiducial_margin"])
    lo, hi = np.full(3, margin), size - margin
    n_nu = 1 + g.poisson(nu["pileup_mean"])
    inter = 0
    for _ in range(n_nu):
        vertex = g.uniform(lo, hi)
        neutrino_interaction(g, nu, vertex, out, local_event, inter, gq)
        out.interactions.append(dict(event=local_event, id=inter, kind="neutrino", vertex=vertex))
        inter += 1
    for _ in range(g.poisson(cfg["cosmics"]["mean"])):
        start = cosmic_muon(g, cfg["cosmics"], size, out, local_event, inter, gq)
        out.interactions.append(dict(event=local_event, id=inter, kind="cosmic", vertex=start))
        inter += 1

