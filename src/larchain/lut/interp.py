"""Trilinear interpolation of the photon library: the LUT as a :class:`VisibilityModel`.

The table holds one value per voxel, taken to be the value at the voxel centre. Between
centres the visibility is trilinear (continuous, piecewise linear along each axis, so
differentiable almost everywhere in the position: what a vertex fit needs). It is computed
with ``torch.nn.functional.grid_sample`` (``mode="bilinear"`` on a 5-D input is trilinear),
batched, on CPU or CUDA, with autograd through the points.

Outside the box spanned by the outermost voxel centres (the half voxel next to each wall,
and anything beyond the volume) the *coordinate* is clamped to that box
(``padding_mode="border"``): along an axis where the point lies outside, the value is the
edge voxels' value; along the other axes it is still interpolated. The gradient along a
clamped axis is therefore zero there.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import xarray as xr
from torch import Tensor

from larchain.core.visibility import VisibilityModel

#: Relative tolerance on the spacing of voxel centres (the grid must be regular).
_REGULAR_RTOL = 1e-5


def _axis_map(centres: np.ndarray, name: str) -> tuple[float, float, float]:
    """(origin, scale, offset) with ``g = (p - origin) * scale + offset`` mapping the first
    centre to -1 and the last to +1 (grid_sample's ``align_corners=True`` convention); an
    axis with a single voxel maps everything to 0."""
    c = np.asarray(centres, dtype=np.float64)
    if c.ndim != 1 or c.size == 0 or not np.all(np.isfinite(c)):
        raise ValueError(f"LUT coordinate {name!r} must be a non-empty finite 1-D array")
    if c.size == 1:
        return float(c[0]), 0.0, 0.0
    step = np.diff(c)
    span = float(c[-1] - c[0])
    if not np.all(step > 0) or not np.allclose(step, span / (c.size - 1), rtol=_REGULAR_RTOL):
        raise ValueError(
            f"LUT coordinate {name!r} is not a regular increasing grid of voxel centres "
            f"(steps {step.min():.6g} to {step.max():.6g} cm)"
        )
    return float(c[0]), 2.0 / span, -1.0


class LutVisibility(VisibilityModel):
    """Visibility by trilinear interpolation between LUT voxel centres.

    The table is a buffer ``[1, D, nz, ny, nx]`` (grid_sample's ``[N, C, D, H, W]`` layout,
    with the sample grid's last dimension ordered (x, y, z)), so ``.to(device)`` moves it.
    Exact (to floating-point rounding) at voxel centres; clamped outside them (module doc).
    """

    table: Tensor
    origin: Tensor
    scale: Tensor
    offset: Tensor
    detector_center: Tensor

    def __init__(
        self,
        table: Tensor | np.ndarray,
        centres: Sequence[np.ndarray],
        *,
        detector_names: Sequence[str] | None = None,
        detector_center: Tensor | np.ndarray | None = None,
        geometry: dict[str, Any] | None = None,
    ) -> None:
        """``table`` is ``[nx, ny, nz, D]`` (the Dataset's order); ``centres`` the x, y, z
        voxel-centre coordinates in cm."""
        super().__init__()
        t = torch.as_tensor(table)
        if t.ndim != 4 or not t.is_floating_point():
            raise ValueError(f"expected a floating [nx, ny, nz, D] table, got {tuple(t.shape)}")
        if len(centres) != 3:
            raise ValueError("expected x, y, z voxel centres")
        maps = [_axis_map(c, n) for c, n in zip(centres, "xyz", strict=True)]
        for ax, (c, n) in enumerate(zip(centres, t.shape[:3], strict=True)):
            if len(c) != n:
                raise ValueError(f"{'xyz'[ax]}: {len(c)} centres for {n} voxels in the table")
        if not bool(torch.isfinite(t).all()):
            raise ValueError("LUT table has non-finite values")
        d = t.shape[3]
        self.register_buffer("table", t.permute(3, 2, 1, 0).contiguous().unsqueeze(0))
        f64 = torch.float64
        self.register_buffer("origin", torch.tensor([m[0] for m in maps], dtype=f64))
        self.register_buffer("scale", torch.tensor([m[1] for m in maps], dtype=f64))
        self.register_buffer("offset", torch.tensor([m[2] for m in maps], dtype=f64))
        centre = (
            torch.full((d, 3), float("nan"), dtype=f64)
            if detector_center is None
            else torch.as_tensor(np.asarray(detector_center), dtype=f64)
        )
        if centre.shape != (d, 3):
            raise ValueError(f"detector_center must be [{d}, 3], got {tuple(centre.shape)}")
        self.register_buffer("detector_center", centre)
        self.detector_names = list(detector_names) if detector_names is not None else None
        if self.detector_names is not None and len(self.detector_names) != d:
            raise ValueError(f"{len(self.detector_names)} detector names for {d} detectors")
        self.geometry = geometry

    @property
    def n_detectors(self) -> int:
        return int(self.table.shape[1])

    @property
    def grid_shape(self) -> tuple[int, int, int]:
        """(nx, ny, nz) voxels."""
        _, _, nz, ny, nx = self.table.shape
        return int(nx), int(ny), int(nz)

    def forward(self, points: Tensor) -> Tensor:
        """Trilinear visibility ``[N, D]`` (table dtype) at ``points`` ``[N, 3]`` cm."""
        if points.ndim != 2 or points.shape[-1] != 3:
            raise ValueError(f"expected points of shape [N, 3], got {tuple(points.shape)}")
        if points.device != self.table.device:
            raise ValueError(
                f"points are on device {points.device} but the LUT is on {self.table.device}; "
                "move one of them (or use evaluate(), which moves batches for you)"
            )
        # Normalise in the wider of the points' and the table's float types.
        work = torch.promote_types(points.dtype, self.table.dtype)
        g = (points.to(work) - self.origin.to(work)) * self.scale.to(work) + self.offset.to(work)
        grid = g.to(self.table.dtype).view(1, 1, 1, -1, 3)
        out = F.grid_sample(
            self.table, grid, mode="bilinear", padding_mode="border", align_corners=True
        )  # [1, D, 1, 1, N]
        return out.view(self.n_detectors, -1).t().contiguous()

    @classmethod
    def from_dataset(
        cls,
        ds: xr.Dataset,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> LutVisibility:
        """From the LUT stage's Dataset (``visibility`` on dims x, y, z, detector)."""
        if "visibility" not in ds:
            raise ValueError("dataset has no 'visibility' variable (not a LUT?)")
        vis = ds["visibility"]
        if set(vis.dims) != {"x", "y", "z", "detector"}:
            raise ValueError(f"visibility dims are {vis.dims}, expected (x, y, z, detector)")
        table = np.asarray(vis.transpose("x", "y", "z", "detector").values)
        centres = [np.asarray(ds[a].values, dtype=np.float64) for a in "xyz"]
        names = [str(n) for n in ds["detector_name"].values] if "detector_name" in ds else None
        centre = None
        if "detector_center" in ds:
            centre = ds["detector_center"].transpose("detector", ...).values
        geometry = json.loads(ds.attrs["geometry"]) if "geometry" in ds.attrs else None
        model = cls(
            torch.from_numpy(table).to(dtype),
            centres,
            detector_names=names,
            detector_center=centre,
            geometry=geometry,
        )
        return model.to(device)

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> LutVisibility:
        """From ``lut.nc`` (the file is read once and closed)."""
        with xr.open_dataset(path, engine="h5netcdf") as ds:
            return cls.from_dataset(ds, device=device, dtype=dtype)
