"""Event files: chunked HDF5 shards, read lazily event by event.

Schema (version 1) of one shard ``events-NNNNN.h5``; per-event rows of each table are the
slice ``[offset[e], offset[e+1])`` of that table::

    attrs        schema_version, first_event, n_events, voxel_size (cm), grid_shape,
                 semantic_classes, particle_types, processes, interaction_kinds
    events/      index [E] (global event number), voxel_offset, particle_offset,
                 interaction_offset, deposit_offset [E+1], pe, pe_expected [E, D],
                 deposited_energy, escaped_energy [E] (MeV; escaped also holds the energy of
                 hadronic interactions that no tracked product carries: neutrons, binding,
                 less the rest energy that absorbed pions and captured mu- release)
    voxels/      coords [M, 3] int32 (voxel indices; x from drift time), charge [M] (electrons),
                 semantic, fragment, particle, interaction, particle_type, primary [M]
    particles/   id, interaction, parent, pdg (signed: mu+ -13, pi- -211), type, primary,
                 process (index into attrs processes), semantic, start, end,
                 momentum [P, 3] (MeV/c), energy (kinetic, MeV), deposited_energy, time, n_voxels
    interactions/ id, kind, vertex [I, 3], energy (sum of primary kinetic energies), time
    deposits/    (control samples only) pos [N, 3], de, dx, time, particle, semantic

Files are written to a temporary name and renamed, with creation times off so the same
events give the same bytes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from larchain.core.artifacts import atomic_path
from larchain.sim import truth as T

SCHEMA_VERSION = 1
TABLES = ("voxels", "particles", "interactions", "deposits")
_OFFSET = {"voxels": "voxel_offset", "particles": "particle_offset",
           "interactions": "interaction_offset", "deposits": "deposit_offset"}


def _dataset(group: h5py.Group, name: str, data: np.ndarray) -> None:
    data = np.ascontiguousarray(data)
    kwargs: dict[str, Any] = {"track_times": False}
    if data.size >= 1024:
        rows = max(1, min(len(data), 65536 // max(1, data[0].size)))
        kwargs.update(chunks=(rows, *data.shape[1:]), compression="gzip", compression_opts=4,
                      shuffle=True)
    # flush now: otherwise compressed chunks are allocated when the chunk cache is emptied,
    # in an order that varies from run to run, and the same data give different bytes
    group.create_dataset(name, data=data, **kwargs).flush()


def _offset_name(table: str) -> str:
    return _OFFSET.get(table, f"{table}_offset")


def write_shard(path: str | Path, records: Sequence[dict[str, Any]], attrs: dict[str, Any],
                tables: Sequence[str] = TABLES) -> None:
    """Write one shard (records from :func:`larchain.sim.simulate.simulate_events`, or any
    per-event records of ``{table: {column: array}}`` for ``tables``, e.g. predictions)."""
    with atomic_path(path) as tmp, h5py.File(tmp, "w", track_order=True, libver="latest") as f:
        for k, v in {**attrs, "schema_version": SCHEMA_VERSION, "n_events": len(records),
                     "semantic_classes": list(T.SEMANTIC_CLASSES),
                     "particle_types": list(T.PARTICLE_TYPES),
                     "processes": list(T.PROCESSES)}.items():
            f.attrs[k] = json.dumps(v) if isinstance(v, dict) else v
        ev = f.create_group("events")
        _dataset(ev, "index", np.array([r["index"] for r in records], dtype=np.int64))
        for table in tables:
            present = [r[table] for r in records if r.get(table) is not None]
            if not present:
                continue
            if len(present) != len(records):
                raise ValueError(f"table {table!r} present in some events only")
            counts = [len(next(iter(r.values()))) for r in present]
            _dataset(ev, _offset_name(table),
                     np.concatenate([[0], np.cumsum(counts)]).astype(np.int64))
            g = f.create_group(table)
            for col in present[0]:
                _dataset(g, col, np.concatenate([r[col] for r in present]))
        for key in ("pe", "pe_expected"):
            if records and records[0].get(key) is not None:
                _dataset(ev, key, np.stack([r[key] for r in records]).astype(np.float32))
        for key in ("deposited_energy", "escaped_energy"):
            if records and key in records[0]:
                _dataset(ev, key, np.array([r[key] for r in records], dtype=np.float64))
        if records and "neighbourhood" in records[0]:
            _dataset(ev, "neighbourhood", np.array([r["neighbourhood"] for r in records],
                                                   dtype=np.int8))


class EventFile:
    """Lazy, event-by-event access to one shard. The HDF5 file is opened on first use in
    each process (h5py handles cannot cross process boundaries), so an ``EventFile`` can be
    handed to DataLoader workers."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"event file not found: {self.path}")
        with h5py.File(self.path, "r") as f:
            if int(f.attrs.get("schema_version", -1)) != SCHEMA_VERSION:
                raise ValueError(f"{self.path}: schema_version "
                                 f"{f.attrs.get('schema_version')!r}, expected {SCHEMA_VERSION}")
            self.n_events = int(f.attrs["n_events"])
            self.attrs = dict(f.attrs)
            self.tables = [t for t in f if t != "events"]
            self.offsets = {t: f["events"][_offset_name(t)][:] for t in self.tables}
            self.index = f["events"]["index"][:]
        self._file: h5py.File | None = None

    def __len__(self) -> int:
        return self.n_events

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_file": None}

    @property
    def file(self) -> h5py.File:
        if self._file is None:
            self._file = h5py.File(self.path, "r")
        return self._file

    def event(self, i: int, tables: Sequence[str] | None = None) -> dict[str, Any]:
        """One event: ``{table: {column: array}}`` plus ``index``, ``pe`` and energies."""
        if not 0 <= i < self.n_events:
            raise IndexError(f"{self.path}: event {i} out of range (0..{self.n_events - 1})")
        f = self.file
        out: dict[str, Any] = {"index": int(self.index[i])}
        for t in tables or self.tables:
            a, b = self.offsets[t][i], self.offsets[t][i + 1]
            out[t] = {k: v[a:b] for k, v in f[t].items()}
        for k in ("pe", "pe_expected", "deposited_energy", "escaped_energy", "neighbourhood"):
            if k in f["events"]:
                out[k] = f["events"][k][i]
        return out

    def column(self, table: str, name: str) -> np.ndarray:
        """A whole column of a table (all events), e.g. for class fractions."""
        return self.file[table][name][:]

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def shard_paths(artifact_dir: str | Path, sample: str = "events") -> list[Path]:
    """The shard files of one sample listed in an artifact's ``index.json``, in event order."""
    d = Path(artifact_dir)
    index_path = d / "index.json"
    if not index_path.exists():
        raise FileNotFoundError(f"{index_path} missing: not a simulation artifact?")
    samples = json.loads(index_path.read_text())["samples"]
    if sample not in samples:
        raise KeyError(f"{index_path}: no sample {sample!r} (has {sorted(samples)})")
    return [d / s["file"] for s in samples[sample]["shards"]]


class EventDataset(torch.utils.data.Dataset):
    """All events of an artifact (or a list of shards) as a PyTorch dataset: item ``i`` is
    ``{"coords": int [M,3], "charge": float [M], <label>: int [M], "index": global event}``."""

    LABELS = ("semantic", "fragment", "particle", "interaction", "particle_type", "primary")

    def __init__(self, source: str | Path | Sequence[str | Path], sample: str = "events"
                 ) -> None:
        paths = (shard_paths(source, sample) if isinstance(source, (str, Path))
                 and Path(source).is_dir() else [Path(p) for p in (
                     [source] if isinstance(source, (str, Path)) else source)])
        self.files = [EventFile(p) for p in paths]
        self._starts = np.concatenate([[0], np.cumsum([len(f) for f in self.files])])

    def __len__(self) -> int:
        return int(self._starts[-1])

    def locate(self, i: int) -> tuple[EventFile, int]:
        if not 0 <= i < len(self):
            raise IndexError(f"event {i} out of range (0..{len(self) - 1})")
        k = int(np.searchsorted(self._starts, i, side="right") - 1)
        return self.files[k], i - int(self._starts[k])

    def raw(self, i: int) -> dict[str, Any]:
        f, j = self.locate(i)
        return f.event(j)

    def __getitem__(self, i: int) -> dict[str, Any]:
        f, j = self.locate(i)
        ev = f.event(j, ("voxels",))
        vox = ev["voxels"]
        item = {"index": ev["index"], "coords": torch.from_numpy(vox["coords"].astype(np.int64)),
                "charge": torch.from_numpy(vox["charge"].astype(np.float32))}
        for k in self.LABELS:
            item[k] = torch.from_numpy(vox[k].astype(np.int64))
        return item

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for i in range(len(self)):
            yield self[i]


def collate_sparse(items: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Batch sparse events: coordinates get a leading batch column ``[M, 4]``."""
    out: dict[str, Any] = {"coords": torch.cat([
        torch.cat([torch.full((len(it["coords"]), 1), b, dtype=torch.int64), it["coords"]], 1)
        for b, it in enumerate(items)])}
    for k in ("charge", *EventDataset.LABELS):
        out[k] = torch.cat([it[k] for it in items])
    out["index"] = torch.tensor([it["index"] for it in items])
    return out
