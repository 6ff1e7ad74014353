"""From primaries to labelled voxel images: transport, detector response, truth labels.

:func:`simulate_events` makes one batch of events (a shard) and returns plain numpy arrays
ready for :mod:`larchain.sim.storage`. Transport is batched over all events of the shard
(counter-based random numbers); the detector response too, with each event's noise and
Poisson light drawn from a generator seeded from the event's own seed, so no event depends
on its batch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from larchain.core import constants as C
from larchain.sim import rng as hashrng
from larchain.sim import truth as T
from larchain.sim.drift import drift_velocity
from larchain.sim.generator import Primaries
from larchain.sim.response import Deposits, ResponseSettings, default_params, detector_response
from larchain.sim.transport import DepositList, Transport, TransportSettings

#: Interaction kinds (``interactions/kind`` in the files).
INTERACTION_KINDS = ("neutrino", "cosmic", "control")


@dataclass(frozen=True)
class SimulationSetup:
    """Everything a worker needs to simulate events (picklable; no open files)."""

    size: tuple[float, float, float]
    transport: TransportSettings
    response: ResponseSettings
    params: Mapping[str, Any]
    seed: int
    keep_deposits: bool = False


def _velocity(tpc: Mapping[str, Any]) -> torch.Tensor:
    """Drift velocity of a ``tpc`` section: given, or from its field and temperature."""
    if tpc.get("drift_velocity") is not None:
        return torch.tensor(float(tpc["drift_velocity"]), dtype=torch.float64)
    return torch.as_tensor(drift_velocity(float(tpc["field"]), float(tpc["temperature"])),
                           dtype=torch.float64)


def response_from_config(tpc: Mapping[str, Any], readout: Mapping[str, Any], n_detectors: int,
                         nominal_tpc: Mapping[str, Any] | None = None
                         ) -> tuple[dict[str, torch.Tensor], ResponseSettings]:
    """Detector-physics parameters (the true ``tpc``) and readout settings as the response
    wants them. Drift time becomes x with the velocity of ``nominal_tpc`` (default: ``tpc``),
    unless ``readout.reco_drift_velocity`` is set: samples whose true physics differs from the
    configured one show the distortion a real detector would."""
    params = default_params(tpc["recombination"], n_detectors, torch.float64)
    for key in ("field", "box_alpha", "box_beta", "birks_ab", "birks_kb", "lifetime",
                "diffusion_l", "diffusion_t", "light_yield"):
        params[key] = torch.tensor(float(tpc[key]), dtype=torch.float64)
    params["drift_velocity"] = _velocity(tpc)
    if tpc.get("pd_efficiency") is not None:
        eff = torch.tensor([float(v) for v in tpc["pd_efficiency"]], dtype=torch.float64)
        if eff.numel() != n_detectors:
            raise ValueError(f"tpc.pd_efficiency has {eff.numel()} entries, expected one per "
                             f"photodetector ({n_detectors})")
        params["pd_efficiency"] = eff
    reco_v = readout.get("reco_drift_velocity")
    settings = ResponseSettings(
        pitch=float(readout["voxel_size"]),
        recombination=str(tpc["recombination"]),
        reco_drift_velocity=float(reco_v if reco_v is not None
                                  else _velocity(nominal_tpc or tpc).item()),
        sigma0=float(readout.get("sigma0", 0.0)),
        noise_electrons=float(readout["noise"]),
        threshold_electrons=float(readout["threshold"]),
        neighbourhood=(None if readout.get("neighbourhood") is None
                       else int(readout["neighbourhood"])),
        mode="exact",
    )
    return params, settings


def _renumber(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map values to 0..k-1 in order of first appearance; returns (new, unique-in-order)."""
    uniq, first, inv = np.unique(values, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rank[inv], uniq[order]


def simulate_events(
    setup: SimulationSetup,
    event_indices: Sequence[int],
    make_primaries: Callable[[int, int, Primaries], None],
    visibility: Any = None,
) -> dict[str, Any]:
    """Simulate the events ``event_indices``; ``make_primaries(event_index, local, out)``
    appends each event's primaries. Returns per-event records (see storage.write_shard)."""
    primaries = Primaries()
    for local, ev in enumerate(event_indices):
        make_primaries(int(ev), local, primaries)
    keys = {i: hashrng.event_key(setup.seed, int(ev)) for i, ev in enumerate(event_indices)}
    table = T.TrackTable()
    if primaries.rows:
        rows = table.add(**primaries.columns(keys))
        Transport(setup.transport).run(table, rows, deposits := DepositList.empty())
    else:
        deposits = DepositList.empty()
    dep = deposits.arrays()
    tab = table.as_dict()
    dep_event = tab["event"][dep["row"]] if len(dep["row"]) else np.zeros(0, np.int64)
    order = np.argsort(dep_event, kind="stable")
    dep = {k: v[order] for k, v in dep.items()}
    dep_event = dep_event[order]
    bounds = np.searchsorted(dep_event, np.arange(len(event_indices) + 1))
    grid = np.floor(np.asarray(setup.size) / setup.response.pitch + 1e-9).astype(np.int64)
    responses = _responses(setup, dep, dep_event, [int(e) for e in event_indices], visibility)
    events = []
    for local, ev in enumerate(event_indices):
        a, b = bounds[local], bounds[local + 1]
        events.append(_one_event(setup, int(ev), local, tab, {k: v[a:b] for k, v in dep.items()},
                                 primaries, grid, responses[local]))
    return {"events": events, "grid": grid}


def _responses(setup: SimulationSetup, dep: dict[str, np.ndarray], dep_event: np.ndarray,
               event_indices: list[int], visibility: Any) -> list[dict[str, Any]]:
    """Detector response of every event (deposits sorted by event), split per event.

    Each event draws its noise and light from a generator seeded from its own key, so the
    events of a shard go through one batched call (much cheaper than one call each) and
    still do not depend on the batch. With ``neighbourhood: null`` each event chooses its own
    neighbourhood, so those events run one by one."""
    n_ev = len(event_indices)
    gens = [torch.Generator().manual_seed(hashrng.event_key(setup.seed, e) >> 1)
            for e in event_indices]
    n = len(dep["de"])
    # production runs the response in float32 (1.5x faster; fits use float64)
    tensors = {
        "pos": torch.as_tensor(dep["pos"], dtype=torch.float32).reshape(n, 3),
        "de": torch.as_tensor(dep["de"], dtype=torch.float32),
        "dx": torch.as_tensor(np.maximum(dep["dx"], 1e-6), dtype=torch.float32),
        "t0": torch.as_tensor(dep["time"], dtype=torch.float32),
    }
    event = torch.as_tensor(dep_event, dtype=torch.int64)
    bounds = np.searchsorted(dep_event, np.arange(n_ev + 1))
    if setup.response.neighbourhood is None:
        groups = [[e] for e in range(n_ev)]
    else:
        groups = [list(range(n_ev))] if n_ev else []
    out: list[dict[str, Any]] = []
    for group in groups:
        a, b = bounds[group[0]], bounds[group[-1] + 1]
        deposits = Deposits(**{k: v[a:b] for k, v in tensors.items()},
                            event=event[a:b] - group[0], n_events=len(group))
        with torch.no_grad():
            resp = detector_response(deposits, dict(setup.params), setup.response, visibility,
                                     [gens[e] for e in group])
        vox_bounds = np.searchsorted(resp.event.numpy(), np.arange(len(group) + 1))
        coords, charge, dominant = resp.coords.numpy(), resp.charge.numpy(), resp.dominant.numpy()
        for j, e in enumerate(group):
            va, vb = vox_bounds[j], vox_bounds[j + 1]
            out.append({
                "coords": coords[va:vb], "charge": charge[va:vb],
                "dominant": dominant[va:vb] - (bounds[e] - a),  # index within the event
                "pe": resp.pe[j].numpy() if resp.pe is not None else None,
                "pe_expected": (resp.pe_expected[j].numpy()
                                if resp.pe_expected is not None else None),
                "neighbourhood": int(resp.neighbourhood),
            })
    return out


def _one_event(setup: SimulationSetup, event_index: int, local: int, tab: dict,
               dep: dict[str, np.ndarray], primaries: Primaries, grid: np.ndarray,
               resp: dict[str, Any]) -> dict[str, Any]:
    coords = resp["coords"]
    inside = np.all((coords >= 0) & (coords < grid), axis=1)
    coords = coords[inside]
    charge = resp["charge"][inside]
    row = dep["row"][resp["dominant"][inside]]
    # truth labels of the voxel = those of the object that deposited most of its charge
    ev_rows = np.flatnonzero(tab["event"] == local)
    group_new, group_rows = _renumber(tab["group"][ev_rows])
    frag_new, _ = _renumber(tab["fragment"][ev_rows])
    root_species = tab["species"][group_rows]
    at = np.searchsorted(ev_rows, row)  # position of each voxel's row among the event's rows
    vox_group = group_new[at].astype(np.int32)
    voxels = {
        "coords": coords.astype(np.int32),
        "charge": charge.astype(np.float32),
        "semantic": tab["semantic"][row].astype(np.int8),
        "fragment": frag_new[at].astype(np.int32),
        "particle": vox_group,
        "interaction": tab["interaction"][row].astype(np.int32),
        "particle_type": T.TYPE_OF_SPECIES[root_species][vox_group].astype(np.int8),
        "primary": tab["primary"][group_rows][vox_group].astype(np.int8),
    }
    # per particle (group) truth
    dep_group = group_new[np.searchsorted(ev_rows, dep["row"])]
    n_groups = len(group_rows)
    root_parent = tab["parent"][group_rows]
    parent_group = np.where(root_parent >= 0, group_new[np.searchsorted(
        ev_rows, np.maximum(root_parent, 0))], -1).astype(np.int32)
    e_root = tab["energy"][group_rows]
    m_root = np.array([C.MASS_MEV[T.SPECIES[s] if T.SPECIES[s] != "positron" else "electron"]
                       for s in root_species])
    p_root = np.sqrt(np.maximum(e_root * (e_root + 2 * m_root), 0.0))
    is_track = np.isin(root_species, (T.MUON, T.PION, T.PROTON))
    particles = {
        "id": np.arange(n_groups, dtype=np.int32),
        "interaction": tab["interaction"][group_rows].astype(np.int32),
        "parent": parent_group,
        "pdg": T.pdg_codes(root_species, tab["charge"][group_rows]),
        "type": T.TYPE_OF_SPECIES[root_species].astype(np.int8),
        "primary": tab["primary"][group_rows].astype(np.int8),
        "process": tab["process"][group_rows].astype(np.int8),
        "semantic": tab["semantic"][group_rows].astype(np.int8),
        "start": tab["start"][group_rows].astype(np.float32),
        "end": np.where(is_track[:, None], tab["end"][group_rows],
                        tab["start"][group_rows]).astype(np.float32),
        "momentum": (tab["direction"][group_rows] * p_root[:, None]).astype(np.float32),
        "energy": e_root.astype(np.float32),
        "deposited_energy": np.bincount(dep_group, weights=dep["de"],
                                        minlength=n_groups).astype(np.float32),
        "time": tab["time"][group_rows].astype(np.float32),
        "n_voxels": np.bincount(vox_group, minlength=n_groups).astype(np.int32),
    }
    inter = [r for r in primaries.interactions if r["event"] == local]
    prim = ev_rows[tab["primary"][ev_rows]]
    inter_energy = np.bincount(tab["interaction"][prim], weights=tab["energy"][prim],
                               minlength=len(inter))
    interactions = {
        "id": np.array([r["id"] for r in inter], dtype=np.int32),
        "kind": np.array([INTERACTION_KINDS.index(r["kind"]) for r in inter], dtype=np.int8),
        "vertex": np.array([r["vertex"] for r in inter], dtype=np.float32).reshape(-1, 3),
        "energy": inter_energy[: len(inter)].astype(np.float32),
        "time": np.array([r.get("time", 0.0) for r in inter], dtype=np.float32),
    }
    record = {
        "index": event_index,
        "voxels": voxels,
        "particles": particles,
        "interactions": interactions,
        "pe": resp["pe"].astype(np.float32) if resp["pe"] is not None else None,
        "pe_expected": (resp["pe_expected"].astype(np.float32)
                        if resp["pe_expected"] is not None else None),
        "neighbourhood": resp["neighbourhood"],
        "deposited_energy": float(dep["de"].sum()),
        "escaped_energy": float(tab["escaped"][ev_rows].sum()),
    }
    if setup.keep_deposits:
        record["deposits"] = {
            "pos": dep["pos"].astype(np.float32), "de": dep["de"].astype(np.float32),
            "dx": dep["dx"].astype(np.float32), "time": dep["time"].astype(np.float32),
            "particle": dep_group.astype(np.int32),
            "semantic": tab["semantic"][dep["row"]].astype(np.int8),
        }
    return record
