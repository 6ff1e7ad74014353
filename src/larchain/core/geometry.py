"""Detector geometry shared by every stage: a rectangular LAr volume, photodetectors on its walls.

The volume spans ``[0, size_x] x [0, size_y] x [0, size_z]`` (cm). A wall is named by its
normal axis and side: ``x-`` is the plane x = 0, ``x+`` the plane x = size_x, and so on.
Positions on a wall use local in-plane axes ``(u, v)``: the two other axes in x, y, z order
(wall ``x±``: u = y, v = z; ``y±``: u = x, v = z; ``z±``: u = x, v = y). Rectangle sizes are
given as ``[size_u, size_v]`` in that convention.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from larchain.core.config import ConfigError

WALLS: dict[str, tuple[int, int]] = {
    "x-": (0, 0),
    "x+": (0, 1),
    "y-": (1, 0),
    "y+": (1, 1),
    "z-": (2, 0),
    "z+": (2, 1),
}
SHAPES = ("disk", "rectangle")
_TOL = 1e-6  # cm; tolerance for "lies on the wall" / "fits on the wall"


def in_plane_axes(axis: int) -> tuple[int, int]:
    """The (u, v) axes of a wall whose normal is ``axis``."""
    return tuple(a for a in range(3) if a != axis)  # type: ignore[return-value]


@dataclass(frozen=True)
class Photodetector:
    """A flat photodetector (disk or rectangle) lying on one wall, facing into the volume."""

    name: str
    wall: str
    center: tuple[float, float, float]
    shape: str
    efficiency: float
    radius: float = 0.0
    size: tuple[float, float] = (0.0, 0.0)

    @property
    def axis(self) -> int:
        return WALLS[self.wall][0]

    @property
    def side(self) -> int:
        return WALLS[self.wall][1]

    @property
    def uv_axes(self) -> tuple[int, int]:
        return in_plane_axes(self.axis)

    @property
    def half_extent(self) -> tuple[float, float]:
        """Half size along (u, v): the bounding box of the detector on its wall."""
        if self.shape == "disk":
            return (self.radius, self.radius)
        return (0.5 * self.size[0], 0.5 * self.size[1])

    @property
    def area(self) -> float:
        if self.shape == "disk":
            return math.pi * self.radius**2
        return self.size[0] * self.size[1]

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "name": self.name,
            "wall": self.wall,
            "center": list(self.center),
            "shape": self.shape,
            "efficiency": self.efficiency,
        }
        if self.shape == "disk":
            d["radius"] = self.radius
        else:
            d["size"] = list(self.size)
        return d


@dataclass(frozen=True)
class Detector:
    """The LAr volume, its wall optics and its photodetectors."""

    size: tuple[float, float, float]
    photodetectors: tuple[Photodetector, ...]
    wall_reflectivity: float = 0.0
    reflection: str = "specular"
    extras: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def n_photodetectors(self) -> int:
        return len(self.photodetectors)

    def wall_position(self, wall: str) -> float:
        axis, side = WALLS[wall]
        return self.size[axis] * side

    def to_dict(self) -> dict[str, Any]:
        return {
            "size": list(self.size),
            "wall_reflectivity": self.wall_reflectivity,
            "reflection": self.reflection,
            "photodetectors": [p.to_dict() for p in self.photodetectors],
        }

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], key: str = "detector") -> Detector:
        """Build from the ``detector`` config section, expanding photodetector arrays.

        Raises :class:`ConfigError` naming the offending key when a photodetector is not on
        a wall of the volume or does not fit on it.
        """
        size = tuple(float(s) for s in cfg["size"])
        if len(size) != 3 or any(not s > 0 for s in size):
            raise ConfigError(f"{key}.size", f"expected three positive lengths in cm, got {size}")
        pds: list[Photodetector] = []
        for i, entry in enumerate(cfg.get("photodetectors", []) or []):
            pds.append(_photodetector(entry, f"{key}.photodetectors[{i}]", default_name=f"pd{i}"))
        for j, arr in enumerate(cfg.get("photodetector_arrays", []) or []):
            pds.extend(_expand_array(arr, size, f"{key}.photodetector_arrays[{j}]", start=len(pds)))
        if not pds:
            raise ConfigError(
                f"{key}.photodetectors",
                "expected at least one photodetector (in photodetectors or photodetector_arrays)",
            )
        names = [p.name for p in pds]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ConfigError(f"{key}.photodetectors", f"photodetector names must be unique: {dup}")
        det = cls(
            size=size,  # type: ignore[arg-type]
            photodetectors=tuple(pds),
            wall_reflectivity=float(cfg.get("wall_reflectivity", 0.0)),
            reflection=str(cfg.get("reflection", "specular")),
        )
        for p, where in zip(pds, _origins(cfg, key), strict=True):
            _check_on_wall(det, p, where)
        return det


def _origins(cfg: Mapping[str, Any], key: str) -> list[str]:
    """Config key of every expanded photodetector, for error messages."""
    out = [f"{key}.photodetectors[{i}]" for i in range(len(cfg.get("photodetectors", []) or []))]
    for j, arr in enumerate(cfg.get("photodetector_arrays", []) or []):
        n = int(arr["counts"][0]) * int(arr["counts"][1])
        out += [f"{key}.photodetector_arrays[{j}]"] * n
    return out


def _photodetector(entry: Mapping[str, Any], key: str, default_name: str) -> Photodetector:
    shape = entry["shape"]
    wall = entry["wall"]
    if wall not in WALLS:
        raise ConfigError(f"{key}.wall", f"expected one of {sorted(WALLS)}, got {wall!r}")
    if shape not in SHAPES:
        raise ConfigError(f"{key}.shape", f"expected one of {SHAPES}, got {shape!r}")
    center = tuple(float(c) for c in entry["center"])
    if shape == "disk":
        if "radius" not in entry:
            raise ConfigError(f"{key}.radius", "a disk photodetector needs a radius (cm)")
        return Photodetector(
            name=str(entry.get("name", default_name)),
            wall=wall,
            center=center,  # type: ignore[arg-type]
            shape=shape,
            efficiency=float(entry["efficiency"]),
            radius=float(entry["radius"]),
        )
    if "size" not in entry:
        raise ConfigError(f"{key}.size", "a rectangle photodetector needs size [u, v] (cm)")
    return Photodetector(
        name=str(entry.get("name", default_name)),
        wall=wall,
        center=center,  # type: ignore[arg-type]
        shape=shape,
        efficiency=float(entry["efficiency"]),
        size=tuple(float(s) for s in entry["size"]),  # type: ignore[arg-type]
    )


def _expand_array(
    arr: Mapping[str, Any], size: Sequence[float], key: str, start: int
) -> list[Photodetector]:
    """A regular n_u x n_v tiling of a wall, one photodetector at the centre of each tile."""
    wall = arr["wall"]
    if wall not in WALLS:
        raise ConfigError(f"{key}.wall", f"expected one of {sorted(WALLS)}, got {wall!r}")
    axis, side = WALLS[wall]
    ua, va = in_plane_axes(axis)
    nu, nv = (int(c) for c in arr["counts"])
    prefix = str(arr.get("name_prefix", f"{wall[0]}{'m' if side == 0 else 'p'}_"))
    out = []
    for iu in range(nu):
        for iv in range(nv):
            c = [0.0, 0.0, 0.0]
            c[axis] = size[axis] * side
            c[ua] = size[ua] * (iu + 0.5) / nu
            c[va] = size[va] * (iv + 0.5) / nv
            entry = dict(arr)
            entry.update(center=c, name=f"{prefix}{iu:02d}_{iv:02d}")
            out.append(_photodetector(entry, key, default_name=f"pd{start + len(out)}"))
    return out


def _check_on_wall(det: Detector, p: Photodetector, key: str) -> None:
    plane = det.wall_position(p.wall)
    if abs(p.center[p.axis] - plane) > _TOL:
        raise ConfigError(
            f"{key}.center",
            f"photodetector {p.name!r} is not on wall {p.wall}: its {'xyz'[p.axis]} = "
            f"{p.center[p.axis]} cm, expected {plane} cm (the wall plane)",
        )
    if not 0.0 < p.efficiency <= 1.0:
        raise ConfigError(f"{key}.efficiency", f"expected 0 < efficiency <= 1, got {p.efficiency}")
    hu, hv = p.half_extent
    if hu <= 0 or hv <= 0:
        raise ConfigError(f"{key}", f"photodetector {p.name!r} needs a positive size/radius")
    for half, ax in ((hu, p.uv_axes[0]), (hv, p.uv_axes[1])):
        lo, hi = p.center[ax] - half, p.center[ax] + half
        if lo < -_TOL or hi > det.size[ax] + _TOL:
            raise ConfigError(
                f"{key}.center",
                f"photodetector {p.name!r} does not fit on wall {p.wall}: it spans "
                f"{'xyz'[ax]} in [{lo:g}, {hi:g}] cm, the wall spans [0, {det.size[ax]:g}] cm",
            )


@dataclass(frozen=True)
class VoxelGrid:
    """A regular voxel grid covering the volume exactly."""

    size: tuple[float, float, float]
    voxel_size: tuple[float, float, float]

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(round(s / v) for s, v in zip(self.size, self.voxel_size, strict=True))  # type: ignore[return-value]

    @property
    def n_voxels(self) -> int:
        nx, ny, nz = self.shape
        return nx * ny * nz

    def centers(self, axis: int) -> list[float]:
        n = self.shape[axis]
        return [(i + 0.5) * self.voxel_size[axis] for i in range(n)]

    @classmethod
    def from_config(
        cls, size: Sequence[float], voxel_size: float | Sequence[float], key: str
    ) -> VoxelGrid:
        """Check the voxel size divides the volume along every axis (to 1e-6 relative)."""
        vs = [float(voxel_size)] * 3 if isinstance(voxel_size, int | float) else list(voxel_size)
        if len(vs) != 3 or any(not v > 0 for v in vs):
            raise ConfigError(
                key, f"expected a positive voxel size (cm) or three, got {voxel_size}"
            )
        for ax, (s, v) in enumerate(zip(size, vs, strict=True)):
            n = s / v
            if abs(n - round(n)) > 1e-6 * max(1.0, n) or round(n) < 1:
                raise ConfigError(
                    key,
                    f"voxel size {v} cm does not divide the volume's {'xyz'[ax]} size {s} cm "
                    f"({n:.4g} voxels); expected a size that divides every axis exactly",
                )
        return cls(size=tuple(float(s) for s in size), voxel_size=tuple(vs))  # type: ignore[arg-type]
