"""Vectorised optical-photon Monte Carlo in a LAr box: the physics of the photon library.

Photons are emitted isotropically, fly exponential distances (Rayleigh scattering and bulk
absorption), scatter with the unpolarised Rayleigh phase function (1 + cos^2), and end
absorbed in the bulk, on a wall, or on a photodetector (counted with its efficiency).
Walls reflect with a configurable probability (specular or Lambertian).

Two estimators of the visibility (detection probability per photodetector):

* ``analog``: score the efficiency of a photodetector when a photon lands on it.
* ``nee`` (next-event estimation): at emission and at every scattering vertex, add for
  every photodetector the probability that the next flight reaches it directly,
  ``eff x integral over its solid angle of phase x exp(-r / L)``: in polar angles about the
  foot of the perpendicular for near pairs (:meth:`PhotodetectorSet._near_disk`,
  :meth:`PhotodetectorSet._near_rect`), by a second-order far-field expansion beyond
  ``FAR_FACTOR`` detector sizes (:meth:`PhotodetectorSet._far`), and by a fixed face
  cubature in between (:meth:`PhotodetectorSet._mid`, from ``MID_FACTOR`` sizes, where the
  integrand is smooth over the face and 9-16 nodes suffice). A flight that starts
  at such a vertex and lands on a photodetector is then not scored again (it was already
  counted in expectation); flights after a wall reflection are scored analogously. The
  walk itself is the same analog walk, so both estimators have the same mean.

Everything runs on whichever torch device the inputs live on; the random stream comes
from one ``torch.Generator`` per call, so a block's result depends only on its seed. Photons
are stored as rows (structure of arrays) and every photon in flight takes one flight per
step in a single elementwise kernel (:func:`_advance`), which ``compile=True`` fuses with
torch.compile: on a CPU the fused loops vectorise along photons.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from larchain.core.geometry import Detector, in_plane_axes
from larchain.lut.solid_angle import disk_solid_angle, rectangle_solid_angle

FOUR_PI = 4.0 * math.pi
RAYLEIGH_NORM = 3.0 / (16.0 * math.pi)  # (3 / 16 pi)(1 + mu^2) integrates to 1 over 4 pi
#: Pairs nearer than this many detector sizes (half-diagonal, or radius) take the exact path.
FAR_FACTOR = 5.0
#: Pairs between MID_FACTOR and FAR_FACTOR sizes take the face cubature (below 1e-3 relative
#: error there: a Gauss product rule, 2 x 8 nodes on a disk, 3 x 3 on a rectangle).
MID_FACTOR = 2.5
#: Each wall is cut into LANDING_CELLS x LANDING_CELLS cells, each listing the photodetectors
#: that touch it, so that finding the one a wall hit lands on costs a few tests, not D.
LANDING_CELLS = 256


def _face_cubature(shape: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nodes (u, v) on the unit face (unit disk, or [-1, 1]^2) and weights summing to 1.

    Disk: Gauss-Legendre in s = rho^2 (dA = ds dtheta / 2) x 8 equally spaced azimuths,
    offset by half a step; rectangle: 3 x 3 Gauss-Legendre."""
    if shape == "disk":
        x, w = np.polynomial.legendre.leggauss(2)
        rho = np.sqrt(0.5 * (x + 1.0))
        theta = 2.0 * np.pi * (np.arange(8) + 0.5) / 8
        uu = (rho[:, None] * np.cos(theta)).ravel()
        vv = (rho[:, None] * np.sin(theta)).ravel()
        ww = np.repeat(w / 2.0, 8) / 8
    else:
        x, w = np.polynomial.legendre.leggauss(3)
        uu, vv = (a.ravel() for a in np.meshgrid(x, x, indexing="ij"))
        ww = np.outer(w, w).ravel() / 4.0
    return uu, vv, ww


def _transposed(x: torch.Tensor) -> torch.Tensor:
    """``x.T`` [N, M] in freshly allocated row-major memory: the same strides for every N,
    M (``.contiguous()`` keeps odd strides on size-1 dims, and torch.compile guards on them)."""
    return torch.empty(x.shape[1], x.shape[0], device=x.device, dtype=x.dtype).copy_(x.T)


@dataclass(frozen=True)
class Optics:
    """Bulk optical constants (cm); ``None`` switches a process off."""

    rayleigh_length: float | None
    absorption_length: float | None

    @property
    def inverse_lengths(self) -> tuple[float, float]:
        inv_s = 0.0 if self.rayleigh_length is None else 1.0 / self.rayleigh_length
        inv_a = 0.0 if self.absorption_length is None else 1.0 / self.absorption_length
        return inv_s, inv_a


@dataclass
class Tallies:
    """Per-voxel sums over photons (float64, on CPU).

    ``score`` and ``score_sq`` are the sums of the per-photon detection score and of its
    square, per photodetector; the fractions are how the analog walk ended.
    """

    score: np.ndarray  # [V, D]
    score_sq: np.ndarray  # [V, D]
    absorbed: np.ndarray  # [V] photons absorbed in the bulk
    on_walls: np.ndarray  # [V] photons ending on a wall (incl. undetected on a photodetector)
    detected: np.ndarray  # [V] analog detections (efficiency-weighted)
    reached_detector: np.ndarray  # [V] photons whose walk ended on a photodetector face
    scatters: np.ndarray  # [V] Rayleigh scatterings
    truncated: np.ndarray  # [V] photons still alive after max_steps (should be 0)


class PhotodetectorSet:
    """Photodetector geometry as tensors, with the quadrature used by next-event estimation."""

    def __init__(
        self,
        detector: Detector,
        device: torch.device,
        dtype: torch.dtype,
        quadrature: int = 4,
        compile: bool = False,
    ) -> None:
        pds = detector.photodetectors
        self.n = len(pds)
        self.device, self.dtype = device, dtype
        t = lambda x, dt=dtype: torch.tensor(x, device=device, dtype=dt)  # noqa: E731
        self.size = t(list(detector.size))
        self.axis = t([p.axis for p in pds], torch.long)
        self.u_axis = t([p.uv_axes[0] for p in pds], torch.long)
        self.v_axis = t([p.uv_axes[1] for p in pds], torch.long)
        self.center = t([list(p.center) for p in pds])
        self.center_u = t([p.center[p.uv_axes[0]] for p in pds])
        self.center_v = t([p.center[p.uv_axes[1]] for p in pds])
        self.plane = t([detector.wall_position(p.wall) for p in pds])
        self.is_disk = t([p.shape == "disk" for p in pds], torch.bool)
        self.radius = t([p.radius for p in pds])
        self.half_u = t([p.half_extent[0] for p in pds])
        self.half_v = t([p.half_extent[1] for p in pds])
        self.efficiency = t([p.efficiency for p in pds])
        self.disk_idx = torch.nonzero(self.is_disk).flatten()
        self.rect_idx = torch.nonzero(~self.is_disk).flatten()
        eye = np.eye(3)
        self.e_u = t(np.stack([eye[p.uv_axes[0]] for p in pds]))
        self.e_v = t(np.stack([eye[p.uv_axes[1]] for p in pds]))
        self.n_in = t(np.stack([eye[p.axis] * (1.0 if p.side == 0 else -1.0) for p in pds]))
        m_u = [p.radius**2 / 4 if p.shape == "disk" else p.size[0] ** 2 / 12 for p in pds]
        m_v = [p.radius**2 / 4 if p.shape == "disk" else p.size[1] ** 2 / 12 for p in pds]
        self.m_u, self.m_v = t(m_u), t(m_v)
        self.trace_m = self.m_u + self.m_v
        self.area = t([p.area for p in pds])
        # size scale: radius of a disk, half-diagonal of a rectangle
        extent2 = [
            p.radius**2 if p.shape == "disk" else p.half_extent[0] ** 2 + p.half_extent[1] ** 2
            for p in pds
        ]
        self.near_r2 = t([FAR_FACTOR**2 * e for e in extent2])
        self.mid_r2 = t([MID_FACTOR**2 * e for e in extent2])
        # face cubature for the middle zone: global node positions [D, N, 3] and weights
        # (area included) [D, N]; rectangles' 9 nodes padded with zero weight to a disk's 16
        nodes = np.zeros((self.n, 16, 3))
        weights = np.zeros((self.n, 16))
        for k, p in enumerate(pds):
            uu, vv, ww = _face_cubature(p.shape)
            su, sv = (p.radius, p.radius) if p.shape == "disk" else p.half_extent
            nodes[k] = p.center
            nodes[k, : len(uu), p.uv_axes[0]] += su * uu
            nodes[k, : len(uu), p.uv_axes[1]] += sv * vv
            weights[k, : len(uu)] = p.area * ww
        # as rows: coordinate, node, detector ([3, 16, D]) and node, detector ([16, D])
        self.cub_nodes = t(nodes.transpose(2, 1, 0).copy())
        self.cub_weights = t(weights.T.copy())
        # polar quadrature for near disks: 2q azimuths x q polar angles (Gauss-Legendre)
        self.polar_nodes = (2 * quadrature, quadrature)
        gp = np.polynomial.legendre.leggauss(2 * quadrature)
        ga = np.polynomial.legendre.leggauss(quadrature)
        self.gl_phi = (t(gp[0]), t(gp[1]))
        self.gl_alpha = (t(ga[0]), t(ga[1]))
        self.gl_half = self.gl_alpha
        self._build_landing_cells(detector)
        self._inv_cache: dict[float, torch.Tensor] = {}
        self.compiled = compile
        if compile:
            # fuse the elementwise chains of the NEE kernels (memory-bound on GPU); the
            # fused kernels round differently, so lut.compile is part of the artifact id
            self._far = torch.compile(self._far, dynamic=True)
            self._near_disk = torch.compile(self._near_disk, dynamic=True)
            self._near_rect = torch.compile(self._near_rect, dynamic=True)
            self._mid = torch.compile(self._mid, dynamic=True)
            self._warm_up()

    def _build_landing_cells(self, detector: Detector) -> None:
        """Per wall (axis, side), a LANDING_CELLS^2 grid of cells, each with the indices of the
        photodetectors whose bounding box touches it (ascending, padded with -1):
        ``cells`` [6 x LANDING_CELLS^2 x K]; ``wall_u_axis``/``wall_v_axis`` [6]: the wall's
        in-plane axes; ``cell_size`` [6, 2] (cm)."""
        n = LANDING_CELLS
        lists: list[list[int]] = [[] for _ in range(6 * n * n)]
        uv = [in_plane_axes(w // 2) for w in range(6)]
        cell = np.array([[detector.size[a] / n for a in uv[w]] for w in range(6)])
        for k, pd in enumerate(detector.photodetectors):
            w = 2 * pd.axis + pd.side
            centre = np.array([pd.center[a] for a in uv[w]])
            half = np.array(pd.half_extent)
            lo, hi = (
                np.clip(np.floor((centre + sign * half) / cell[w]), 0, n - 1).astype(int)
                for sign in (-1.0, 1.0)
            )
            for iu in range(lo[0], hi[0] + 1):
                for iv in range(lo[1], hi[1] + 1):
                    lists[(w * n + iu) * n + iv].append(k)
        width = max(1, max(len(c) for c in lists))
        table = np.full((len(lists), width), -1, dtype=np.int64)
        for i, c in enumerate(lists):
            table[i, : len(c)] = c
        t = lambda x, dt: torch.tensor(x, device=self.device, dtype=dt)  # noqa: E731
        self.cells = t(table.T.copy(), torch.long)  # [K, cells]: one row per candidate
        self.wall_u_axis = t([a for a, _ in uv], torch.long)
        self.wall_v_axis = t([b for _, b in uv], torch.long)
        self.cell_size = t(cell, self.dtype)

    def landing(self, wall_id: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Index of the photodetector containing each wall point (or -1): ``wall_id`` =
        2 x axis + side, (u, v) the point's coordinates along the wall's in-plane axes (cm).
        Only the few candidates listed for the point's cell are tested."""
        n = LANDING_CELLS
        iu = (u / self.cell_size[wall_id, 0]).long().clamp(0, n - 1)
        iv = (v / self.cell_size[wall_id, 1]).long().clamp(0, n - 1)
        cell = (wall_id * n + iu) * n + iv
        first = torch.full_like(cell, -1)
        for cand in self.cells:  # ascending, so the first match is the lowest index
            j = cand[cell]
            jj = j.clamp_min(0)
            du, dv = u - self.center_u[jj], v - self.center_v[jj]
            inside = torch.where(
                self.is_disk[jj],
                du * du + dv * dv <= self.radius[jj] * self.radius[jj],
                (du.abs() <= self.half_u[jj]) & (dv.abs() <= self.half_v[jj]),
            )
            first = torch.where((first < 0) & (j >= 0) & inside, j, first)
        return first

    def _warm_up(self) -> None:
        """Compile every variant the walk will meet (isotropic or Rayleigh vertex; one or
        many points) now, rather than inside the first timed or production batch."""
        g = torch.Generator(device=self.device).manual_seed(0)
        for m in (1, 2, 7):
            pos = torch.rand(3, m, generator=g, device=self.device, dtype=self.dtype)
            pos = pos * self.size[:, None]
            d = torch.nn.functional.normalize(
                torch.randn(3, m, generator=g, device=self.device, dtype=self.dtype), dim=0
            )
            idet = torch.arange(m, device=self.device) % self.n
            inv = self._inverse_length(0.01)
            for d_in in (None, d):
                self._far(pos, d_in, inv)
                self._mid(pos, d_in, idet, inv)
                pos_t, d_t = _transposed(pos), None if d_in is None else _transposed(d_in)
                if len(self.disk_idx):
                    self._near_disk(pos_t, d_t, self.disk_idx[idet % len(self.disk_idx)], inv)
                if len(self.rect_idx):
                    self._near_rect(pos_t, d_t, self.rect_idx[idet % len(self.rect_idx)], inv)
            # the walk's flight kernel (shared by all sets: compiled once per process)
            state = torch.zeros(_STATE_ROWS, m, device=self.device, dtype=self.dtype)
            state[_X], state[_D] = pos, d
            rnd = torch.rand(4, m, generator=g, device=self.device, dtype=self.dtype)
            # distinct scalars, as simulate passes them (torch.compile guards on aliasing)
            scalars = [
                torch.tensor(x, device=self.device, dtype=self.dtype) for x in (0.1, 0.2, 0.3)
            ]
            for diffuse in (False, True):
                _advance_fn(True)(state, rnd, *scalars, diffuse, self)

    def local(self, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(u, v, h) of points [M, 3] in every detector's frame: [M, D] each."""
        u = pos[:, self.u_axis] - self.center_u
        v = pos[:, self.v_axis] - self.center_v
        h = torch.abs(pos[:, self.axis] - self.plane).clamp_min(1e-9)
        return u, v, h

    def solid_angle(self, pos: torch.Tensor) -> torch.Tensor:
        """Exact solid angle [M, D] of every photodetector seen from points [M, 3]."""
        u, v, h = self.local(pos)
        omega = torch.empty_like(u)
        if len(self.disk_idx):
            i = self.disk_idx
            omega[:, i] = disk_solid_angle(u[:, i], v[:, i], h[:, i], self.radius[i])
        if len(self.rect_idx):
            i = self.rect_idx
            omega[:, i] = rectangle_solid_angle(
                u[:, i], v[:, i], h[:, i], self.half_u[i], self.half_v[i]
            )
        return omega

    def direct_probability(
        self, pos: torch.Tensor, d_in: torch.Tensor | None, inv_length: float
    ) -> torch.Tensor:
        """Probability [M, D] that the next flight from ``pos`` [M, 3] is detected directly
        (:meth:`direct_probability_rows` for points given as rows)."""
        d_rows = None if d_in is None else _transposed(d_in)
        return self.direct_probability_rows(_transposed(pos), d_rows, inv_length).T

    def direct_probability_rows(
        self, pos: torch.Tensor, d_in: torch.Tensor | None, inv_length: float
    ) -> torch.Tensor:
        """Probability [D, M] that the next flight from ``pos`` [3, M] is detected directly.

        ``d_in`` [3, M] is the incoming direction at a Rayleigh vertex (None: isotropic
        emission); ``inv_length`` is 1 / (total attenuation length) of the direct path. Pairs
        farther than ``FAR_FACTOR`` detector sizes use the second-order far-field expansion
        (:meth:`_far`), pairs beyond ``MID_FACTOR`` sizes a face cubature (:meth:`_mid`),
        nearer pairs the polar quadrature about the foot of the perpendicular (:meth:`_near`).
        Points are rows so that the far field, which every pair takes, runs along photons.
        """
        inv = self._inverse_length(inv_length)
        out, near = self._far(pos, d_in, inv)
        if near.any():
            idet, iv = torch.nonzero(near, as_tuple=True)
            p_near = pos[:, iv]
            d_near = None if d_in is None else d_in[:, iv]
            close = (p_near - self.center.T[:, idet]).square().sum(0) < self.mid_r2[idet]
            vals = torch.empty(len(idet), device=pos.device, dtype=pos.dtype)
            for sel, kernel in ((~close, self._mid), (close, self._near)):
                k = torch.nonzero(sel).flatten()
                if k.numel():
                    d_k = None if d_near is None else d_near[:, k]
                    vals[k] = kernel(p_near[:, k], d_k, idet[k], inv)
            out[idet, iv] = vals
        return out

    def _mid(self, pos, d_in, idet, inv_length):
        """Direct probability for pairs [K] at moderate distance (``pos``, ``d_in`` rows
        [3, K]): eff x sum over the face's cubature nodes of w dA x (h / |X|^3) x phase x
        exp(-|X| / L), X = node - pos. The solid-angle density and the phase are smooth over
        the face from MID_FACTOR sizes on (tested against brute-force integration)."""
        nodes = self.cub_nodes[:, :, idet]  # [3, N, K]
        x, y, z = nodes[0] - pos[0], nodes[1] - pos[1], nodes[2] - pos[2]
        r2 = x * x + y * y + z * z
        rinv = torch.rsqrt(r2)
        h = (pos.gather(0, self.axis[idet][None]) - self.plane[idet][None]).abs()
        f = self.cub_weights[:, idet] * h * rinv * rinv * rinv * torch.exp(-r2 * rinv * inv_length)
        if d_in is None:
            f = f / FOUR_PI
        else:
            mu = (x * d_in[0] + y * d_in[1] + z * d_in[2]) * rinv
            f = f * RAYLEIGH_NORM * (1.0 + mu * mu)
        return self.efficiency[idet] * f.sum(0)

    def _inverse_length(self, inv_length: float) -> torch.Tensor:
        """The attenuation as a 0-d tensor: the kernels take no branch on its value, so
        torch.compile traces them once instead of specialising on every float."""
        key = float(inv_length)
        if key not in self._inv_cache:
            self._inv_cache[key] = torch.tensor(key, device=self.device, dtype=self.dtype)
        return self._inv_cache[key]

    def _far(self, pos, d_in, inv_length):
        """Far-field direct probability [D, M] for points ``pos`` [3, M] (rows), and the mask of
        pairs too near for it.

        With the face's in-plane second moments M (R^2/4 for a disk, a^2/3 and b^2/3 for a
        rectangle of half sizes a, b), s = C.x / r^2, t = |x|^2 / r^2 and the solid-angle
        density h / |X|^3 expanded to second order in |x| / r, the face averages are
        <t> = tr M / r^2, <s^2> = C_par.M.C_par / r^4, <a^2> = d_par.M.d_par / r^2,
        <a s> = d_par.M.C_par / r^3 (a = d.x / r). Then
        Omega = A cos(theta) / r^2 (1 - 3/2 <t> + 15/2 <s^2>),
        <exp(-|X|/L)> = exp(-r/L) (1 - lam <t>/2 + (7/2 lam + lam^2/2) <s^2>), lam = r/L,
        <mu^2> = mu_c^2 + <a^2> - 10 mu_c <a s> + 10 mu_c^2 <s^2> - mu_c^2 <t>,
        plus the cross term -2 lam mu_c (<a s> - mu_c <s^2>). Neglected terms are
        O((size / r)^4): below 2e-3 (disks) to 4e-3 (3:1 rectangles) relative beyond
        FAR_FACTOR sizes (tested against brute-force integration).
        """
        col = lambda x: x[:, None]  # noqa: E731  per-detector constants against [D, M]
        dx = col(self.center[:, 0]) - pos[0]
        dy = col(self.center[:, 1]) - pos[1]
        dz = col(self.center[:, 2]) - pos[2]
        r2 = dx * dx + dy * dy + dz * dz
        rinv = torch.rsqrt(r2)
        near = r2 < col(self.near_r2)
        # components of the unit vector to the centre along the face's u and v axes
        e_u, e_v, n_in = self.e_u, self.e_v, self.n_in
        cu = (dx * col(e_u[:, 0]) + dy * col(e_u[:, 1]) + dz * col(e_u[:, 2])) * rinv
        cv = (dx * col(e_v[:, 0]) + dy * col(e_v[:, 1]) + dz * col(e_v[:, 2])) * rinv
        cos_t = (dx * col(n_in[:, 0]) + dy * col(n_in[:, 1]) + dz * col(n_in[:, 2])).neg_() * rinv
        r2inv = rinv * rinv
        m_u, m_v = col(self.m_u), col(self.m_v)
        t_avg = col(self.trace_m) * r2inv
        s2 = (m_u * cu * cu + m_v * cv * cv) * r2inv
        omega = col(self.area) * cos_t * r2inv * (1.0 - 1.5 * t_avg + 7.5 * s2)
        lam = r2 * rinv * inv_length  # 0 without attenuation: g = 1 exactly
        g = torch.exp(-lam) * (1.0 - 0.5 * lam * t_avg + (3.5 * lam + 0.5 * lam * lam) * s2)
        if d_in is None:
            f = g / FOUR_PI
        else:
            mu = (dx * d_in[0] + dy * d_in[1] + dz * d_in[2]) * rinv
            du = e_u @ d_in  # [D, M]: d's components along each face's axes
            dv = e_v @ d_in
            a2 = (m_u * du * du + m_v * dv * dv) * r2inv
            a_s = (m_u * du * cu + m_v * dv * cv) * r2inv
            mu2 = mu * mu
            phi = 1.0 + mu2 + a2 - 10.0 * mu * a_s + 10.0 * mu2 * s2 - mu2 * t_avg
            phi = phi - 2.0 * lam * mu * (a_s - mu * s2)
            f = g * RAYLEIGH_NORM * phi
        return col(self.efficiency) * omega * f, near

    def _near(self, pos, d_in, idet, inv_length):
        """Direct probability for selected (near) pairs: ``pos`` [3, K], ``d_in`` [3, K] or
        None (rows, as :meth:`_mid`), ``idet`` [K] detector index per pair. Disks:
        :meth:`_near_disk`; rectangles: :meth:`_near_rect`. Both take points [K, 3]."""
        pos = _transposed(pos)
        d_in = None if d_in is None else _transposed(d_in)
        out = torch.empty(len(idet), device=pos.device, dtype=pos.dtype)
        disk = self.is_disk[idet]
        if disk.any():
            out[disk] = self._near_disk(
                pos[disk], None if d_in is None else d_in[disk], idet[disk], inv_length
            )
        rect = ~disk
        if rect.any():
            out[rect] = self._near_rect(
                pos[rect], None if d_in is None else d_in[rect], idet[rect], inv_length
            )
        return out

    def _near_disk(self, pos, d_in, idet, inv_length):
        """Integrate eff x phase x exp(-r/L) over the disk's solid angle in polar angles
        (alpha from the wall normal, phi in the wall plane) about the foot of the
        perpendicular: dOmega = sin(alpha) dalpha dphi with alpha between the circle's
        near and far crossings along phi. The integrand is smooth in these variables, so
        Gauss-Legendre converges fast even for vertices touching the disk."""
        n_phi, n_alpha = self.polar_nodes
        u = pos.gather(1, self.u_axis[idet, None])[:, 0] - self.center_u[idet]
        v = pos.gather(1, self.v_axis[idet, None])[:, 0] - self.center_v[idet]
        h = (pos.gather(1, self.axis[idet, None])[:, 0] - self.plane[idet]).abs().clamp_min(1e-9)
        rad = self.radius[idet]
        # rays from the foot F = (u, v) towards the centre are at phi_c
        fdist = torch.sqrt(u * u + v * v)
        inside = fdist < rad
        phi_c = torch.atan2(-v, -u)
        half = torch.where(
            inside,
            torch.full_like(fdist, math.pi),
            torch.asin((rad / fdist.clamp_min(1e-30)).clamp(max=1.0)),
        )
        # outside the rim: phi = phi_c + half sin(pi s / 2), smoothing the sqrt behaviour
        # at the tangent rays; inside: the two half-turns facing towards/away from the
        # centre separately, since the far crossing has a near-kink at phi_c +- pi/2 when
        # the foot approaches the rim.
        xs, ws = self.gl_phi  # 2q nodes on [-1, 1]
        arg = 0.5 * math.pi * xs
        phi_out = phi_c[:, None] + half[:, None] * torch.sin(arg)[None, :]
        dphi_out = (half[:, None] * (0.5 * math.pi) * torch.cos(arg)[None, :]) * ws[None, :]
        xh, wh = self.gl_half  # q nodes on [-1, 1], used twice
        offs = torch.cat([0.5 * math.pi * xh, math.pi + 0.5 * math.pi * xh])
        phi_in = phi_c[:, None] + offs[None, :]
        dphi_in = (0.5 * math.pi * torch.cat([wh, wh]))[None, :].expand_as(phi_in)
        phi = torch.where(inside[:, None], phi_in, phi_out)
        dphi = torch.where(inside[:, None], dphi_in, dphi_out)
        # ray-circle crossings: rho^2 + 2 rho (F.e) + |F|^2 - R^2 = 0
        fe = u[:, None] * torch.cos(phi) + v[:, None] * torch.sin(phi)
        disc = (fe * fe - (fdist * fdist - rad * rad)[:, None]).clamp_min(0.0).sqrt()
        rho_hi = -fe + disc
        rho_lo = torch.where(inside[:, None], torch.zeros_like(fe), (-fe - disc).clamp_min(0.0))
        a_lo = torch.atan2(rho_lo, h[:, None])
        a_hi = torch.atan2(rho_hi, h[:, None])
        xa, wa = self.gl_alpha
        alpha = 0.5 * (a_hi + a_lo)[..., None] + 0.5 * (a_hi - a_lo)[..., None] * xa
        dalpha = 0.5 * (a_hi - a_lo)[..., None] * wa  # [K, n_phi, n_alpha]
        sin_a, cos_a = torch.sin(alpha), torch.cos(alpha)
        weight = sin_a * dalpha * dphi[..., None]
        f = torch.exp(-(h[:, None, None] / cos_a.clamp_min(1e-9)) * inv_length)
        if d_in is None:
            f = f / FOUR_PI
        else:
            # direction in the global frame: sin(a)cos(phi) e_u + sin(a)sin(phi) e_v - cos(a) n_in
            du = (d_in * self.e_u[idet]).sum(1)
            dv = (d_in * self.e_v[idet]).sum(1)
            dn = (d_in * self.n_in[idet]).sum(1)
            mu = (
                sin_a
                * (
                    du[:, None, None] * torch.cos(phi)[..., None]
                    + dv[:, None, None] * torch.sin(phi)[..., None]
                )
                - cos_a * dn[:, None, None]
            )
            f = f * RAYLEIGH_NORM * (1.0 + mu * mu)
        return self.efficiency[idet] * (weight * f).sum((1, 2))

    def _near_rect(self, pos, d_in, idet, inv_length):
        """Rectangles: polar angles about the foot of the perpendicular over the face's
        azimuth range, split at the four corner directions so that the entry and exit
        edges (slab test) are fixed, and the integrand smooth, on each piece."""
        u = pos.gather(1, self.u_axis[idet, None])[:, 0] - self.center_u[idet]
        v = pos.gather(1, self.v_axis[idet, None])[:, 0] - self.center_v[idet]
        h = (pos.gather(1, self.axis[idet, None])[:, 0] - self.plane[idet]).abs().clamp_min(1e-9)
        a, b = self.half_u[idet], self.half_v[idet]
        cu = torch.stack([a, -a, -a, a], 1) - u[:, None]  # corners relative to the foot
        cv = torch.stack([b, b, -b, -b], 1) - v[:, None]
        phi_c = torch.atan2(-v, -u)  # towards the centre
        rel = torch.remainder(torch.atan2(cv, cu) - phi_c[:, None] + math.pi, 2 * math.pi)
        rel = torch.sort(rel - math.pi, dim=1).values  # corner azimuths, (-pi, pi]
        # pieces between consecutive corners, closing the circle (rays that miss the face,
        # as in the last piece when the foot is outside, get an empty range)
        nxt = torch.cat([rel[:, 1:], rel[:, :1] + 2 * math.pi], 1)
        xp, wp = self.gl_phi  # 2q azimuth nodes per piece: pieces can span almost pi
        phi = (
            phi_c[:, None, None] + 0.5 * (nxt + rel)[..., None] + 0.5 * (nxt - rel)[..., None] * xp
        )
        dphi = 0.5 * (nxt - rel)[..., None] * wp  # [K, 4, 2q]
        cos_p, sin_p = torch.cos(phi), torch.sin(phi)
        big = torch.finfo(pos.dtype).max / 4

        def slab(o, half, c):  # entry/exit distance along one axis
            safe = torch.where(c.abs() > 1e-12, c, torch.full_like(c, 1e-12))
            t1, t2 = (-half - o) / safe, (half - o) / safe
            return torch.minimum(t1, t2).clamp(-big, big), torch.maximum(t1, t2).clamp(-big, big)

        lo_u, hi_u = slab(u[:, None, None], a[:, None, None], cos_p)
        lo_v, hi_v = slab(v[:, None, None], b[:, None, None], sin_p)
        rho_lo = torch.maximum(lo_u, lo_v).clamp_min(0.0)
        rho_hi = torch.minimum(hi_u, hi_v).clamp_min(0.0)
        rho_hi = torch.maximum(rho_hi, rho_lo)
        hh = h[:, None, None]
        a_lo, a_hi = torch.atan2(rho_lo, hh), torch.atan2(rho_hi, hh)
        xa, wa = self.gl_alpha
        alpha = 0.5 * (a_hi + a_lo)[..., None] + 0.5 * (a_hi - a_lo)[..., None] * xa
        dalpha = 0.5 * (a_hi - a_lo)[..., None] * wa  # [K, 4, q, q]
        sin_a, cos_a = torch.sin(alpha), torch.cos(alpha)
        weight = sin_a * dalpha * dphi[..., None]
        f = torch.exp(-(hh[..., None] / cos_a.clamp_min(1e-9)) * inv_length)
        if d_in is None:
            f = f / FOUR_PI
        else:
            du = (d_in * self.e_u[idet]).sum(1)[:, None, None, None]
            dv = (d_in * self.e_v[idet]).sum(1)[:, None, None, None]
            dn = (d_in * self.n_in[idet]).sum(1)[:, None, None, None]
            mu = sin_a * (du * cos_p[..., None] + dv * sin_p[..., None]) - cos_a * dn
            f = f * RAYLEIGH_NORM * (1.0 + mu * mu)
        return self.efficiency[idet] * (weight * f).sum((1, 2, 3))


def disk_multipole(q: torch.Tensor, cos_t: torch.Tensor, terms: int = 12) -> torch.Tensor:
    """Solid angle of a unit disk from distance 1/q (q < 1), polar angle acos(cos_t):
    Omega = 2 pi sum_l c_l q^(2l+2) P_(2l+1)(cos_t), c_l = (-1)^l (2l+1)!! / (2^(l+1) (l+1)!)
    (the exterior harmonic matching the on-axis value). Converges as q^(2 terms)."""
    q2 = q * q
    p_prev, p_cur = torch.ones_like(cos_t), cos_t
    coeff, power, n = 0.5, q2, 1
    total = coeff * power * p_cur
    for ell in range(1, terms):
        for _ in range(2):
            p_prev, p_cur = p_cur, ((2 * n + 1) * cos_t * p_cur - n * p_prev) / (n + 1)
            n += 1
        coeff *= -(2 * ell + 1) / (2.0 * (ell + 1))
        power = power * q2
        total = total + coeff * power * p_cur
    return 2.0 * math.pi * total


def sample_rayleigh_cos(u: torch.Tensor) -> torch.Tensor:
    """Inverse CDF of p(mu) = 3/8 (1 + mu^2) on [-1, 1] (Cardano's root of
    mu^3 + 3 mu + 4 - 8u = 0)."""
    q = 4.0 - 8.0 * u
    s = torch.sqrt(0.25 * q * q + 1.0)
    a, b = -0.5 * q + s, -0.5 * q - s
    return torch.sign(a) * a.abs().pow(1.0 / 3.0) + torch.sign(b) * b.abs().pow(1.0 / 3.0)


_FATES = ("absorbed", "on_walls", "detected", "reached_detector", "scatters", "truncated")


def fixed_point_scale(photons_per_voxel: int) -> float:
    """Per-voxel sums are int64 in units of 1/scale: exact and order-independent, so results
    are deterministic even with GPU atomics. The scale leaves room for per-photon values up
    to 2^5 (a photon's score is at most the number of its vertices x 1/2) summed over all
    photons of a voxel: 2^-48 for 1000 photons per voxel, 2^-38 for a million."""
    return float(2 ** (58 - max(1, math.ceil(math.log2(photons_per_voxel)))))


def voxel_emission_probability(
    voxel_origins: torch.Tensor,
    voxel_size: torch.Tensor,
    pdset: PhotodetectorSet,
    inv_length: float,
    nodes: int = 4,
    chunk_points: int = 1 << 16,
) -> torch.Tensor:
    """Direct-hit probability [V, D] averaged over each voxel: the expectation of the
    emission vertex's next-event score over a uniform emission point.

    A composite Gauss-Legendre rule: the voxel cut into 2 x 2 x 2 cells, ``nodes`` points per
    axis in each, so that the kink where a detector's rim crosses a voxel next to its wall
    is integrated to ~2e-4 (relative) with 4 nodes, and smooth voxels to ~1e-8."""
    device, dtype = voxel_origins.device, voxel_origins.dtype
    x, w = np.polynomial.legendre.leggauss(nodes)
    xs = np.concatenate([0.25 * (x + 1.0), 0.5 + 0.25 * (x + 1.0)])  # on [0, 1]
    ws = np.concatenate([w, w]) / 4.0
    grid = np.stack(np.meshgrid(xs, xs, xs, indexing="ij"), -1).reshape(-1, 3)
    weights = np.einsum("i,j,k->ijk", ws, ws, ws).reshape(-1)
    offsets = torch.tensor(grid, device=device, dtype=dtype) * voxel_size
    wts = torch.tensor(weights, device=device, dtype=dtype)
    n_vox, n_pts = voxel_origins.shape[0], len(weights)
    out = torch.empty(n_vox, pdset.n, device=device, dtype=dtype)
    step = max(1, chunk_points // n_pts)
    for lo in range(0, n_vox, step):
        pts = (voxel_origins[lo : lo + step, None, :] + offsets).reshape(-1, 3)
        prob = pdset.direct_probability_rows(_transposed(pts), None, inv_length)
        out[lo : lo + step] = torch.einsum("dvp,p->vd", prob.view(pdset.n, -1, n_pts), wts)
    return out


# event codes of one flight (_advance)
SCATTERED, ABSORBED, DETECTED, LOST, REFLECTED, TRUNCATED = range(6)
#: rows of the pool's float state [9, M] (structure of arrays: every row is contiguous, so
#: the elementwise work vectorises along photons on a CPU and coalesces on a GPU)
_X, _D, _SCAT, _FROM_VERTEX, _AGE = slice(0, 3), slice(3, 6), 6, 7, 8
_STATE_ROWS = 9


def rotate_rows(d: torch.Tensor, cos_t: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
    """Directions at polar angle acos(cos_t), azimuth phi about the unit vectors ``d``,
    stored as rows [3, M]."""
    dx, dy, dz = d[0], d[1], d[2]
    hx = (dx.abs() < 0.9).to(d.dtype)  # helper (1, 0, 0) or (0, 1, 0)
    hy = 1.0 - hx
    e1x, e1y, e1z = -dz * hy, dz * hx, dx * hy - dy * hx  # d x helper
    norm = torch.rsqrt(e1x * e1x + e1y * e1y + e1z * e1z)
    e1x, e1y, e1z = e1x * norm, e1y * norm, e1z * norm
    e2x, e2y, e2z = dy * e1z - dz * e1y, dz * e1x - dx * e1z, dx * e1y - dy * e1x  # d x e1
    sin_t = (1.0 - cos_t * cos_t).clamp_min(0.0).sqrt()
    a, b = sin_t * torch.cos(phi), sin_t * torch.sin(phi)
    return torch.stack(
        [
            cos_t * dx + a * e1x + b * e2x,
            cos_t * dy + a * e1y + b * e2y,
            cos_t * dz + a * e1z + b * e2z,
        ]
    )


def _advance(state, rnd, inv_t, p_abs, reflectivity, diffuse: bool, pd):
    """One flight of every photon in the pool: the analog walk's step, elementwise.

    ``state`` [9, M] (position, direction, scatterings, from-vertex flag, age), ``rnd``
    [4, M] uniforms: flight length; absorption (in the bulk) or reflection (on a wall);
    the new direction's two angles (Rayleigh, or Lambertian after a diffuse reflection).
    Returns the new state, the event code per photon and the photodetector hit (-1)."""
    pos, d, size = state[_X], state[_D], pd.size
    big = torch.finfo(state.dtype).max
    t = torch.where(d > 0, (size[:, None] - pos) / d, torch.where(d < 0, -pos / d, big))
    t_wall = torch.minimum(torch.minimum(t[0], t[1]), t[2])
    ax = torch.where(t[0] == t_wall, 0, torch.where(t[1] == t_wall, 1, 2))
    s = -torch.log1p(-rnd[0]) / inv_t  # inf (or nan) without attenuation: no interaction
    interact = s < t_wall
    absorbed = interact & (rnd[1] < p_abs)
    scatter = interact & ~absorbed
    wall = ~interact
    on_axis = torch.arange(3, device=state.device)[:, None] == ax  # [3, M]
    side = (d * on_axis).sum(0) > 0
    new_pos = pos + torch.where(interact, s, t_wall) * d
    new_pos = torch.where(on_axis & wall, size[:, None] * side.to(state.dtype), new_pos)
    # which photodetector (if any) a wall hit lands on
    wall_id = 2 * ax + side.long()
    hu = new_pos.gather(0, pd.wall_u_axis[wall_id][None])[0]
    hv = new_pos.gather(0, pd.wall_v_axis[wall_id][None])[0]
    first = pd.landing(wall_id, hu, hv)
    on_pd = wall & (first >= 0)
    reflect = wall & ~on_pd & (rnd[1] < reflectivity)
    # new directions: Rayleigh about d; specular mirror or Lambertian about the normal
    two_pi = 2.0 * math.pi
    d_new = rotate_rows(d, sample_rayleigh_cos(rnd[2]), two_pi * rnd[3])
    if diffuse:
        normal = on_axis.to(state.dtype) * (1.0 - 2.0 * side.to(state.dtype))
        d_refl = rotate_rows(normal, rnd[2].sqrt(), two_pi * rnd[3])
    else:
        d_refl = torch.where(on_axis, -d, d)
    d_new = torch.where(scatter, d_new, torch.where(reflect, d_refl, d))
    event = torch.where(
        scatter,
        SCATTERED,
        torch.where(
            absorbed, ABSORBED, torch.where(on_pd, DETECTED, torch.where(reflect, REFLECTED, LOST))
        ),
    )
    from_vertex = torch.where(scatter, 1.0, torch.where(reflect, 0.0, state[_FROM_VERTEX]))
    new_state = torch.cat(
        [
            new_pos,
            d_new,
            (state[_SCAT] + scatter.to(state.dtype))[None],
            from_vertex[None],
            (state[_AGE] + 1.0)[None],
        ]
    )
    return new_state, event, torch.where(on_pd, first, -1)


_ADVANCE_COMPILED = None


def _advance_fn(compiled: bool):
    """The flight kernel: eager, or fused by torch.compile (one trace for all pool sizes)."""
    global _ADVANCE_COMPILED
    if not compiled:
        return _advance
    if _ADVANCE_COMPILED is None:
        _ADVANCE_COMPILED = torch.compile(_advance, dynamic=True)
    return _ADVANCE_COMPILED


def simulate(
    voxel_origins: torch.Tensor,
    voxel_size: torch.Tensor,
    photons_per_voxel: int,
    pdset: PhotodetectorSet,
    optics: Optics,
    *,
    reflectivity: float = 0.0,
    reflection: str = "specular",
    method: str = "nee",
    seed: int = 0,
    batch_photons: int = 1 << 18,
    max_steps: int = 100_000,
    emission_nodes: int = 4,
) -> Tallies:
    """Emit ``photons_per_voxel`` photons uniformly in each voxel and tally their fate.

    ``voxel_origins`` [V, 3] are the low corners; ``voxel_size`` [3]. Photons stream through
    a pool of at most ``batch_photons``: whenever fewer than half are alive, new photons (in
    voxel-major order) are launched, so the few photons that scatter many times never leave
    the device working on tiny arrays. Every photon in the pool flies once per step
    (:func:`_advance`); a photon's totals are added to its voxel's sums when it ends. The
    result depends only on the seed, ``batch_photons``, the device and ``pdset.compiled``.

    With ``nee``, the emission vertex scores the voxel average of the direct-hit probability
    (:func:`voxel_emission_probability`, ``emission_nodes`` > 0) rather than its value at the
    sampled point: the same mean, no more variance (conditional expectation), and one
    integral per voxel instead of one evaluation per photon. ``emission_nodes=0`` scores the
    sampled point. The walk's per-photon scores then hold only what the walk adds, so the
    many photons that never scatter cost nothing to tally.
    """
    if method not in ("nee", "analog"):
        raise ValueError(f"method must be 'nee' or 'analog', got {method!r}")
    if reflection not in ("specular", "diffuse"):
        raise ValueError(f"reflection must be 'specular' or 'diffuse', got {reflection!r}")
    nee = method == "nee"
    device, dtype = voxel_origins.device, voxel_origins.dtype
    gen = torch.Generator(device=device)
    gen.manual_seed(int(seed))
    n_vox, n_det = voxel_origins.shape[0], pdset.n
    total = n_vox * photons_per_voxel
    scale = fixed_point_scale(photons_per_voxel)

    def _fixed(x: torch.Tensor) -> torch.Tensor:
        # scale is a power of two: the product is exact in x's own precision
        return torch.round(x * scale).long()

    acc_score = torch.zeros(n_vox * n_det, dtype=torch.long, device=device)
    acc_sq = torch.zeros(n_vox * n_det, dtype=torch.long, device=device)
    acc_fate = torch.zeros(n_vox * len(_FATES), dtype=torch.long, device=device)
    inv_s, inv_a = optics.inverse_lengths
    inv_t = inv_s + inv_a
    scalar = lambda x: torch.tensor(float(x), device=device, dtype=dtype)  # noqa: E731
    consts = (
        scalar(inv_t),
        scalar(inv_a / inv_t if inv_t > 0 else 0.0),
        scalar(reflectivity),
        reflection == "diffuse",
        pdset,
    )
    advance = _advance_fn(pdset.compiled)
    det_ids = torch.arange(n_det, device=device)
    fate_ids = torch.arange(len(_FATES), device=device)

    # the pool: per-photon state of the photons in flight, one row per quantity
    state = torch.empty(_STATE_ROWS, 0, device=device, dtype=dtype)
    vox = torch.empty(0, dtype=torch.long, device=device)
    score = torch.empty(n_det, 0, device=device, dtype=dtype)  # NEE only
    launched = 0
    pool = max(1, int(batch_photons))
    emission = None
    if nee and emission_nodes > 0:
        emission = voxel_emission_probability(
            voxel_origins, voxel_size, pdset, inv_t, emission_nodes, chunk_points=pool
        )

    def flush(v: torch.Tensor, sc: torch.Tensor) -> None:
        """Add per-photon scores [D, K] of ended photons to their voxels' sums (photons that
        scored nothing add nothing: most never scatter)."""
        scored = torch.nonzero((sc != 0).any(0)).flatten()
        v, sc = v[scored], sc[:, scored]
        idx = (v[None, :] * n_det + det_ids[:, None]).flatten()
        acc_score.index_add_(0, idx, _fixed(sc).flatten())
        acc_sq.index_add_(0, idx, _fixed(sc * sc).flatten())

    while True:
        if launched < total and state.shape[1] < pool // 2 + 1:
            k = min(pool - state.shape[1], total - launched)
            v_new = torch.arange(launched, launched + k, device=device) // photons_per_voxel
            u = torch.rand(5, k, generator=gen, device=device, dtype=dtype)
            p_new = voxel_origins[v_new].T + voxel_size[:, None] * u[:3]
            cos_t, phi = 2.0 * u[3] - 1.0, 2.0 * math.pi * u[4]
            sin_t = (1.0 - cos_t * cos_t).clamp_min(0.0).sqrt()
            fresh = torch.zeros(_STATE_ROWS, k, device=device, dtype=dtype)
            fresh[_X] = p_new
            fresh[_D] = torch.stack([sin_t * torch.cos(phi), sin_t * torch.sin(phi), cos_t])
            fresh[_FROM_VERTEX] = 1.0
            state, vox = torch.cat([state, fresh], 1), torch.cat([vox, v_new])
            if nee:
                if emission is None:
                    s_new = pdset.direct_probability_rows(p_new, None, inv_t)
                else:  # the voxel average is added once per voxel at the end
                    s_new = torch.zeros(n_det, k, device=device, dtype=dtype)
                score = torch.cat([score, s_new], 1)
            launched += k
        m = state.shape[1]
        if m == 0:
            break
        rnd = torch.rand(4, m, generator=gen, device=device, dtype=dtype)
        new, event, pd_idx = advance(state, rnd, *consts)
        if nee:  # next-event estimation at the new scattering vertices
            sc = torch.nonzero(event == SCATTERED).flatten()
            if sc.numel():
                p_sc = pdset.direct_probability_rows(new[_X][:, sc], state[_D][:, sc], inv_t)
                score.index_add_(1, sc, p_sc)
        hits = torch.nonzero(event == DETECTED).flatten()
        if hits.numel():
            pdi = pd_idx[hits]
            eff = pdset.efficiency[pdi]
            if nee:  # flights from a vertex were already scored in expectation
                count = state[_FROM_VERTEX, hits] == 0
                score[pdi[count], hits[count]] += eff[count]
            else:  # analog: the photon's whole score is this hit
                idx = vox[hits] * n_det + pdi
                acc_score.index_add_(0, idx, _fixed(eff))
                acc_sq.index_add_(0, idx, _fixed(eff * eff))
        ended = (event != SCATTERED) & (event != REFLECTED)
        too_old = ~ended & (new[_AGE] >= max_steps)
        if too_old.any():
            event = torch.where(too_old, TRUNCATED, event)
            ended |= too_old
        done = torch.nonzero(ended).flatten()
        if done.numel():
            ev, v_done = event[done], vox[done]
            is_det = ev == DETECTED
            eff = torch.where(is_det, pdset.efficiency[pd_idx[done].clamp_min(0)], 0.0)
            fates = torch.stack(
                [
                    (ev == ABSORBED).to(dtype),
                    torch.where(is_det, 1.0 - eff, (ev == LOST).to(dtype)),
                    eff,
                    is_det.to(dtype),
                    new[_SCAT, done],
                    (ev == TRUNCATED).to(dtype),
                ],
                1,
            )
            idx = (v_done[:, None] * len(_FATES) + fate_ids).flatten()
            acc_fate.index_add_(0, idx, _fixed(fates).flatten())
            keep = torch.nonzero(~ended).flatten()
            state, vox = new[:, keep], vox[keep]
            if nee:
                flush(v_done, score[:, done])
                score = score[:, keep]
        else:
            state = new

    score_sum = acc_score.view(n_vox, n_det).double() / scale
    score_sq = acc_sq.view(n_vox, n_det).double() / scale
    if emission is not None:
        # every photon's score is e + x, with e the voxel average of the emission vertex and
        # x what the walk added (tallied above): sums of (e + x) and (e + x)^2 in closed form
        e = emission.double()
        n = photons_per_voxel
        score_sq = n * e * e + 2.0 * e * score_sum + score_sq
        score_sum = n * e + score_sum
    out = {"score": score_sum, "score_sq": score_sq}
    fate_sums = acc_fate.view(n_vox, len(_FATES)).double() / scale
    for i, k in enumerate(_FATES):
        out[k] = fate_sums[:, i]
    return Tallies(**{k: v.cpu().numpy() for k, v in out.items()})
