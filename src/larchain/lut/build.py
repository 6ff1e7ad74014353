"""Build the photon library: shard the voxel grid into blocks, run them on Dask, assemble.

Each block has a fixed place in the grid and its own seed (derived from the LUT seed and
the block index), so the table does not depend on how many workers ran it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr

from larchain.core.cluster import dask_client, map_blocks
from larchain.core.device import resolve_device
from larchain.core.geometry import Detector, VoxelGrid
from larchain.lut import CODE_VERSION
from larchain.lut.transport import Optics, PhotodetectorSet, simulate


@dataclass(frozen=True)
class Block:
    """A rectangular block of voxels: index ranges [lo, hi) on each axis, and its seed."""

    index: int
    lo: tuple[int, int, int]
    hi: tuple[int, int, int]
    seed: int


def make_blocks(shape: tuple[int, int, int], block: int | list[int], seed: int) -> list[Block]:
    bs = [block] * 3 if isinstance(block, int) else list(block)
    ranges = [list(range(0, n, b)) for n, b in zip(shape, bs, strict=True)]
    blocks = []
    for i0 in ranges[0]:
        for i1 in ranges[1]:
            for i2 in ranges[2]:
                lo = (i0, i1, i2)
                hi = tuple(min(n, s + b) for s, b, n in zip(lo, bs, shape, strict=True))
                seed_i = int(np.random.SeedSequence([seed, len(blocks)]).generate_state(1)[0])
                blocks.append(Block(len(blocks), lo, hi, seed_i))  # type: ignore[arg-type]
    return blocks


def batch_photons(lut_cfg: Mapping[str, Any], n_det: int, device: torch.device) -> int:
    """Photons tracked at once: from config, else sized so per-photon scores stay small."""
    if lut_cfg.get("batch_photons"):
        return int(lut_cfg["batch_photons"])
    budget = (1 << 22) if device.type == "cpu" else (1 << 27)  # elements of [photons, D]
    return int(max(1024, min(1 << 22, budget // max(1, n_det))))


def run_block(block: Block, *, config: Mapping[str, Any], device: str) -> dict[str, np.ndarray]:
    """Simulate one block (runs on a Dask worker)."""
    dev = resolve_device(device, "lut.device")
    if dev.type == "cpu":
        torch.set_num_threads(1)  # one worker per core; also keeps reductions deterministic
    det = Detector.from_config(config["detector"])
    lut = config["lut"]
    grid = VoxelGrid.from_config(det.size, lut["voxel_size"], "lut.voxel_size")
    dtype = torch.float32
    pdset = PhotodetectorSet(
        det, dev, dtype, quadrature=int(lut["nee_quadrature"]), compile=bool(lut.get("compile"))
    )
    axes = [torch.arange(block.lo[a], block.hi[a], device=dev) for a in range(3)]
    ix, iy, iz = torch.meshgrid(*axes, indexing="ij")
    vs = torch.tensor(grid.voxel_size, device=dev, dtype=dtype)
    origins = torch.stack([ix, iy, iz], -1).reshape(-1, 3).to(dtype) * vs
    optics = Optics(config["optics"]["rayleigh_length"], config["optics"]["absorption_length"])
    t = simulate(
        origins,
        vs,
        int(lut["photons_per_voxel"]),
        pdset,
        optics,
        reflectivity=det.wall_reflectivity,
        reflection=det.reflection,
        method=lut["method"],
        seed=block.seed,
        batch_photons=batch_photons(lut, det.n_photodetectors, dev),
        emission_nodes=int(lut["nee_emission_nodes"]),
    )
    return {k: getattr(t, k) for k in t.__dataclass_fields__}


def build_lut(
    config: Mapping[str, Any], *, threads: int = 1, dask_cfg: Mapping[str, Any] | None = None
) -> xr.Dataset:
    """Compute the LUT for ``config`` (validated) on a Dask cluster; returns the Dataset."""
    det = Detector.from_config(config["detector"])
    lut = config["lut"]
    grid = VoxelGrid.from_config(det.size, lut["voxel_size"], "lut.voxel_size")
    device = resolve_device(lut.get("device", "auto"), "lut.device")
    blocks = make_blocks(grid.shape, lut["block_voxels"], int(lut["seed"]))
    shape, n_det = grid.shape, det.n_photodetectors
    score = np.zeros((*shape, n_det))
    score_sq = np.zeros((*shape, n_det))
    fates = {
        k: np.zeros(shape)
        for k in ("absorbed", "on_walls", "detected", "reached_detector", "scatters", "truncated")
    }

    def collect(i: int, res: dict[str, np.ndarray]) -> None:
        b = blocks[i]
        sl = tuple(slice(lo, hi) for lo, hi in zip(b.lo, b.hi, strict=True))
        bshape = tuple(hi - lo for lo, hi in zip(b.lo, b.hi, strict=True))
        score[sl] = res["score"].reshape(*bshape, n_det)
        score_sq[sl] = res["score_sq"].reshape(*bshape, n_det)
        for k in fates:
            fates[k][sl] = res[k].reshape(bshape)

    with dask_client(dask_cfg, threads, gpu=device.type == "cuda") as client:
        map_blocks(
            client,
            run_block,
            blocks,
            desc="lut blocks",
            on_result=collect,
            config=json.loads(json.dumps(config)),
            device=str(device),
        )
    n = int(lut["photons_per_voxel"])
    vis = score / n
    var = np.clip(score_sq / n - vis**2, 0.0, None) * n / max(n - 1, 1)
    err = np.sqrt(var / n)
    return to_dataset(det, grid, vis, err, fates, config, device)


def to_dataset(det, grid, vis, err, fates, config, device) -> xr.Dataset:
    n = int(config["lut"]["photons_per_voxel"])
    coords = {
        "x": ("x", np.array(grid.centers(0)), {"units": "cm", "long_name": "voxel centre x"}),
        "y": ("y", np.array(grid.centers(1)), {"units": "cm", "long_name": "voxel centre y"}),
        "z": ("z", np.array(grid.centers(2)), {"units": "cm", "long_name": "voxel centre z"}),
        "detector": ("detector", np.arange(det.n_photodetectors)),
        "detector_name": ("detector", np.array([p.name for p in det.photodetectors])),
        "detector_wall": ("detector", np.array([p.wall for p in det.photodetectors])),
        "detector_center": (
            ("detector", "xyz"),
            np.array([p.center for p in det.photodetectors]),
            {"units": "cm"},
        ),
    }
    dims4 = ("x", "y", "z", "detector")
    ds = xr.Dataset(
        {
            "visibility": (
                dims4,
                vis.astype(np.float32),
                {
                    "long_name": "probability that a photon emitted in the voxel is detected",
                    "units": "1",
                },
            ),
            "visibility_error": (
                dims4,
                err.astype(np.float32),
                {"long_name": "statistical standard error of visibility", "units": "1"},
            ),
            "absorbed_fraction": (
                ("x", "y", "z"),
                (fates["absorbed"] / n).astype(np.float32),
                {"long_name": "fraction of photons absorbed in the bulk"},
            ),
            "mean_scatterings": (
                ("x", "y", "z"),
                (fates["scatters"] / n).astype(np.float32),
                {"long_name": "mean Rayleigh scatterings per photon"},
            ),
        },
        coords=coords,
    )
    optics = config["optics"]
    ds.attrs = {
        "title": "larchain photon visibility look-up table",
        "geometry": json.dumps(det.to_dict(), sort_keys=True),
        "voxel_size_cm": list(grid.voxel_size),
        "rayleigh_length_cm": _attr(optics["rayleigh_length"]),
        "absorption_length_cm": _attr(optics["absorption_length"]),
        "photons_per_voxel": n,
        "seed": int(config["lut"]["seed"]),
        "method": config["lut"]["method"],
        "nee_quadrature": int(config["lut"]["nee_quadrature"]),
        "nee_emission_nodes": int(config["lut"]["nee_emission_nodes"]),
        "code_version": CODE_VERSION,
        "truncated_photons": int(fates["truncated"].sum()),
    }
    ds.attrs["device"] = device.type
    return ds


def _attr(value: float | None) -> float:
    """NetCDF attributes cannot be None: an absent process is an infinite length."""
    return math.inf if value is None else float(value)


def write_lut(ds: xr.Dataset, path: str | Path) -> None:
    """Write NetCDF4 (HDF5) atomically, compressed, chunked one detector at a time."""
    from larchain.core.artifacts import atomic_path

    enc = {
        v: {"zlib": True, "complevel": 4, "chunksizes": tuple(ds[v].shape[:3]) + (1,)}
        for v in ("visibility", "visibility_error")
    }
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp, engine="h5netcdf", encoding=enc)


def open_lut(path: str | Path) -> xr.Dataset:
    return xr.open_dataset(path, engine="h5netcdf")
