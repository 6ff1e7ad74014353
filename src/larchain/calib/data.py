"""Control samples as the tensors a fit needs.

The fit conditions on each track's true energy deposits (positions, dE, step length, start
time), as the differentiable-simulation anchor does: the unknowns are the detector
parameters that turn deposits into voxel charges and photoelectrons. Everything is kept in
float64 on one device; per-event arrays are indexed by a global event number ``0..E-1``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from larchain.core.artifacts import read_manifest
from larchain.sim.control import SAMPLES
from larchain.sim.storage import EventFile, shard_paths


@dataclass
class ControlData:
    """Deposits, observed voxels and observed PE of a set of control events.

    Per deposit (``N``): ``pos`` [N, 3] cm (true, x = drift distance), ``de`` MeV, ``dx`` cm,
    ``t0`` us, ``event`` int64. Per event (``E``): ``sample`` (index into
    :data:`~larchain.sim.control.SAMPLES`), ``neighbourhood`` (the charge-sharing k the
    simulation used), ``pe`` [E, D] observed photoelectrons (None without light),
    ``deposit_offset`` [E + 1]. Observed voxels (``M``): ``vox_event``, ``vox_coords``
    [M, 3], ``vox_charge`` electrons. ``grid`` voxels per axis; ``events`` the raw event
    dicts (for the classic baselines and plots); ``visibility`` [N, D] the visibility of
    every deposit (set by :meth:`with_visibility`: deposits do not move during a fit).
    """

    pos: Tensor
    de: Tensor
    dx: Tensor
    t0: Tensor
    event: Tensor
    sample: Tensor
    neighbourhood: Tensor
    pe: Tensor | None
    deposit_offset: Tensor
    vox_event: Tensor
    vox_coords: Tensor
    vox_charge: Tensor
    vox_offset: Tensor
    grid: tuple[int, int, int]
    pitch: float
    events: list[dict[str, Any]] = field(default_factory=list, repr=False)
    visibility: Tensor | None = None

    @property
    def n_events(self) -> int:
        return int(self.sample.shape[0])

    @property
    def n_detectors(self) -> int:
        return 0 if self.pe is None else int(self.pe.shape[1])

    def subset(self, events: Sequence[int] | Tensor) -> ControlData:
        """The events ``events`` (renumbered ``0..len-1`` in the given order)."""
        idx = torch.as_tensor(events, dtype=torch.int64)
        dep = _ranges(self.deposit_offset, idx)
        vox = _ranges(self.vox_offset, idx)
        n_dep = self.deposit_offset[idx + 1] - self.deposit_offset[idx]
        n_vox = self.vox_offset[idx + 1] - self.vox_offset[idx]
        local = torch.arange(len(idx), dtype=torch.int64)
        return replace(
            self,
            pos=self.pos[dep], de=self.de[dep], dx=self.dx[dep], t0=self.t0[dep],
            event=torch.repeat_interleave(local, n_dep),
            sample=self.sample[idx], neighbourhood=self.neighbourhood[idx],
            pe=None if self.pe is None else self.pe[idx],
            deposit_offset=_offsets(n_dep),
            vox_event=torch.repeat_interleave(local, n_vox),
            vox_coords=self.vox_coords[vox], vox_charge=self.vox_charge[vox],
            vox_offset=_offsets(n_vox),
            events=[self.events[int(i)] for i in idx] if self.events else [],
            visibility=None if self.visibility is None else self.visibility[dep],
        )

    def to(self, device: torch.device | str) -> ControlData:
        """The same data with every tensor on ``device`` (event dicts stay on the host)."""
        return replace(self, **{f.name: v.to(device) for f in fields(self)
                                if isinstance(v := getattr(self, f.name), Tensor)})

    def with_visibility(self, model: Any, batch_size: int = 65536) -> ControlData:
        """Evaluate a :class:`~larchain.core.visibility.VisibilityModel` at every deposit."""
        with torch.no_grad():
            vis = torch.cat([model(p.to(model.device, torch.float32)).to("cpu", torch.float64)
                             for p in torch.split(self.pos, batch_size)])
        if self.pe is not None and vis.shape[1] != self.pe.shape[1]:
            raise ValueError(f"visibility model has {vis.shape[1]} detectors, the control "
                             f"sample's PE {self.pe.shape[1]}")
        return replace(self, visibility=vis)

    def with_observation(self, vox_event: Tensor, vox_coords: Tensor, vox_charge: Tensor,
                         pe: Tensor | None) -> ControlData:
        """Same deposits, other observed voxels and PE (a toy experiment)."""
        order = torch.argsort(vox_event, stable=True)
        counts = torch.bincount(vox_event, minlength=self.n_events)
        return replace(self, vox_event=vox_event[order], vox_coords=vox_coords[order],
                       vox_charge=vox_charge[order], vox_offset=_offsets(counts), pe=pe,
                       events=[])


def _offsets(counts: Tensor) -> Tensor:
    return torch.cat([torch.zeros(1, dtype=torch.int64), torch.cumsum(counts, 0)])


def _ranges(offset: Tensor, idx: Tensor) -> Tensor:
    """Concatenated ``arange(offset[i], offset[i+1])`` for ``i`` in ``idx``."""
    if len(idx) == 0:
        return torch.zeros(0, dtype=torch.int64)
    a, b = offset[idx], offset[idx + 1]
    n = b - a
    start = torch.repeat_interleave(a - _offsets(n)[:-1], n)
    return start + torch.arange(int(n.sum()), dtype=torch.int64)


def control_info(artifact_dir: str | Path) -> dict[str, Any]:
    """The control artifact's configuration: nominal ``tpc``, ``readout``, ``detector`` and
    the samples' true physics ``true_tpc`` (from its manifest)."""
    manifest = read_manifest(artifact_dir)
    if manifest.get("stage") != "control":
        raise ValueError(f"{artifact_dir}: artifact stage {manifest.get('stage')!r}, "
                         "expected 'control' (a calibration control sample)")
    cfg = manifest["config"]
    true_tpc = (manifest.get("extra") or {}).get("true_tpc")
    if true_tpc is None:
        raise ValueError(f"{artifact_dir}/manifest.json: extra.true_tpc missing (the control "
                         "samples' true detector physics); re-run simulate_control")
    return {"tpc": cfg["tpc"], "readout": cfg["readout"], "detector": cfg["detector"],
            "true_tpc": true_tpc, "id": manifest.get("id")}


def load_control(artifact_dir: str | Path, samples: Sequence[str] = SAMPLES,
                 max_events: Mapping[str, int] | None = None, keep_events: bool = True
                 ) -> ControlData:
    """Read control samples (all events, or the first ``max_events[sample]``) into tensors.

    Raises ValueError naming the file when a shard lacks deposits (not a control sample) and
    when no events are found.
    """
    directory = Path(artifact_dir)
    index = json.loads((directory / "index.json").read_text())["samples"]
    cols: dict[str, list[np.ndarray]] = {k: [] for k in (
        "pos", "de", "dx", "t0", "nd", "vc", "vq", "nv", "pe", "k", "sample")}
    raw: list[dict[str, Any]] = []
    grid = pitch = None
    for name in samples:
        if name not in SAMPLES:
            raise ValueError(f"unknown control sample {name!r}; expected one of {SAMPLES}")
        if name not in index:
            continue
        limit = None if max_events is None else max_events.get(name)
        taken = 0
        for path in shard_paths(directory, name):
            f = EventFile(path)
            if "deposits" not in f.tables:
                raise ValueError(f"{path}: no deposits table (not a control-sample shard)")
            grid = tuple(int(g) for g in f.attrs["grid_shape"])
            pitch = float(f.attrs["voxel_size"])
            for i in range(len(f)):
                if limit is not None and taken >= limit:
                    break
                ev = f.event(i)
                if "neighbourhood" not in ev:
                    raise ValueError(f"{path}: events/neighbourhood missing (a control "
                                     "sample from an older simulation code; re-run it)")
                d, v = ev["deposits"], ev["voxels"]
                cols["pos"].append(d["pos"])
                cols["de"].append(d["de"])
                cols["dx"].append(np.maximum(d["dx"], 1e-6))
                cols["t0"].append(d["time"])
                cols["nd"].append(len(d["de"]))
                cols["vc"].append(v["coords"])
                cols["vq"].append(v["charge"])
                cols["nv"].append(len(v["charge"]))
                cols["k"].append(int(ev["neighbourhood"]))
                cols["sample"].append(SAMPLES.index(name))
                if ev.get("pe") is not None:
                    cols["pe"].append(ev["pe"])
                if keep_events:
                    raw.append({**ev, "sample": name})
                taken += 1
            f.close()
    if not cols["nd"]:
        raise ValueError(f"{directory}: no control events in samples {list(samples)}")
    if cols["pe"] and len(cols["pe"]) != len(cols["nd"]):
        raise ValueError(f"{directory}: some events have PE and some do not")

    def cat(key: str, dtype: torch.dtype, shape: tuple[int, ...] = (-1,)) -> Tensor:
        return torch.as_tensor(np.concatenate(cols[key]).reshape(shape), dtype=dtype)

    nd = torch.tensor(cols["nd"], dtype=torch.int64)
    nv = torch.tensor(cols["nv"], dtype=torch.int64)
    f64 = torch.float64
    assert grid is not None and pitch is not None
    return ControlData(
        pos=cat("pos", f64, (-1, 3)), de=cat("de", f64), dx=cat("dx", f64), t0=cat("t0", f64),
        event=torch.repeat_interleave(torch.arange(len(nd)), nd),
        sample=torch.tensor(cols["sample"], dtype=torch.int64),
        neighbourhood=torch.tensor(cols["k"], dtype=torch.int64),
        pe=torch.as_tensor(np.stack(cols["pe"]), dtype=f64) if cols["pe"] else None,
        deposit_offset=_offsets(nd),
        vox_event=torch.repeat_interleave(torch.arange(len(nv)), nv),
        vox_coords=cat("vc", torch.int64, (-1, 3)), vox_charge=cat("vq", f64),
        vox_offset=_offsets(nv), grid=grid, pitch=pitch, events=raw,
    )
