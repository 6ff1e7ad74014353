"""Calibration control samples: one track per event, with known detector parameters.

* ``crossing_muons``: anode-cathode crossers (enter at the anode x = 0, leave through the
  cathode x = size_x) with a known start time t0: charge versus drift time gives the
  lifetime and the drift velocity, hit width versus drift time the diffusion.
* ``stopping_muons`` and ``stopping_protons``: end inside the volume, so dE/dx is known from
  the residual range (recombination). The muons are mu+, so every one gives a Michel
  electron (a mu- would be captured by a nucleus three times out of four).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from larchain.sim import truth as T
from larchain.sim.generator import Primaries, log_uniform
from larchain.sim.stopping import RangeTable

SAMPLES = ("crossing_muons", "stopping_muons", "stopping_protons")


def control_event(sample: str, cfg: Mapping[str, Any], size: np.ndarray, seed: int,
                  event_index: int, local: int, out: Primaries) -> None:
    """Append one control event's primary track."""
    if sample not in SAMPLES:
        raise ValueError(f"unknown control sample {sample!r}; expected one of {SAMPLES}")
    g = np.random.default_rng(np.random.SeedSequence([int(seed), SAMPLES.index(sample),
                                                      int(event_index), 2]))
    margin = float(cfg["margin"])
    lo, hi = np.full(3, margin), size - margin
    t0 = float(g.uniform(0.0, cfg["t0_max"]))
    if sample == "crossing_muons":
        entry = np.array([1e-6, *g.uniform(lo[1:], hi[1:])])
        exit_ = np.array([size[0] - 1e-6, *g.uniform(lo[1:], hi[1:])])
        d = (exit_ - entry) / np.linalg.norm(exit_ - entry)
        energy = log_uniform(g, cfg["crossing_energy"])
        out.add(local, 0, T.MUON, entry, d, energy, time=t0, charge=1)
        vertex = entry
    else:
        species = T.MUON if sample == "stopping_muons" else T.PROTON
        name = "muon" if species == T.MUON else "proton"
        end = g.uniform(lo, hi)
        cos_t, phi = g.uniform(-1, 1), g.uniform(0, 2 * np.pi)
        s = np.sqrt(1 - cos_t**2)
        d = np.array([s * np.cos(phi), s * np.sin(phi), cos_t])
        energy = log_uniform(g, cfg[f"{sample[:-1]}_energy"])
        # the track must start inside: shorten it to the room behind the end point
        with np.errstate(divide="ignore", invalid="ignore"):
            back = np.where(d > 0, (end - lo) / d, np.where(d < 0, (end - hi) / d, np.inf))
        room = max(float(back.min()), 1.0)
        table = RangeTable.for_particle(name)
        length = min(float(table.range_cm(energy)), room)
        energy = float(table.kinetic_at_range(length))
        out.add(local, 0, species, end - length * d, d, energy, time=t0, charge=1)
        vertex = end - length * d
    out.interactions.append(dict(event=local, id=0, kind="control", vertex=vertex, time=t0))
