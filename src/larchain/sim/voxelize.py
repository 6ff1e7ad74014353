"""Charge sharing of drifted Gaussian electron clouds onto a voxel grid, and the readout.

Each deposit is a 3-D Gaussian cloud (centre ``pos``, per-axis width ``sigma``) of ``charge``
electrons. Its charge is split over the ``(2k+1)^3`` voxels around the voxel containing its
centre with separable weights: on each axis the Gaussian probability of each of the ``2k+1``
voxel intervals (differences of ``erf`` at the voxel boundaries), renormalised to sum to one
over the neighbourhood, so every deposit's charge is conserved exactly and the weights are
smooth in the centre and the widths (what the calibration differentiates).

Contributions of all deposits are coalesced into unique voxels keyed by
``(event, ix, iy, iz)`` packed into one int64; charges are summed with ``index_add`` (so they
stay differentiable). The voxel set itself is piecewise constant: it depends on which voxel
holds each centre, not on the parameters, as long as no centre crosses a voxel boundary.

Speed: the union of the neighbourhoods merges shifted copies of the sorted unique centre
keys, one axis at a time (on CPU a linear merge of sorted runs, compiled; ``torch.unique``
elsewhere); deposits are processed in centre-key order so the scatters are nearly
sequential. Without autograd on CPU the contributions are formed and scattered by a compiled
loop (:mod:`larchain.sim.voxel_kernels`), equal bit for bit to the tensor path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from larchain.sim import voxel_kernels

#: Readout modes: ``"exact"`` (hard threshold, random noise), ``"smooth"`` (sigmoid) or
#: ``"expected"`` (the mean charge of every voxel, before noise and threshold: what a
#: likelihood of the noisy, thresholded data is written in terms of).
MODES = ("exact", "smooth", "expected")

_SQRT2 = math.sqrt(2.0)
_MAX_KEY = 2**62


@dataclass
class Voxels:
    """Coalesced voxel charges of a batch, sorted by ``(event, ix, iy, iz)``."""

    coords: Tensor  # [M, 3] int64 voxel indices (floor(position / pitch))
    event: Tensor  # [M] int64
    charge: Tensor  # [M] electrons (differentiable)
    dominant: Tensor  # [M] int64 index of the deposit contributing the most charge


def neighbourhood_size(max_sigma_cm: float, pitch_cm: float, n_sigma: float = 3.0) -> int:
    """Smallest k >= 1 whose ``(2k+1)`` voxels cover ``n_sigma`` widths on both sides of any
    centre: a centre lies within half a pitch of its voxel's middle and the neighbourhood
    reaches ``(k + 1/2)`` pitches from there, so ``k pitch >= n_sigma sigma`` suffices."""
    if not math.isfinite(max_sigma_cm) or max_sigma_cm < 0:
        raise ValueError(f"max_sigma_cm must be finite and >= 0, got {max_sigma_cm}")
    if pitch_cm <= 0:
        raise ValueError(f"pitch_cm must be > 0, got {pitch_cm}")
    return max(1, math.ceil(n_sigma * max_sigma_cm / pitch_cm - 1e-12))


def axis_weights(pos: Tensor, sigma: Tensor, cell: Tensor, k: int, pitch: float) -> Tensor:
    """Per-axis sharing weights ``[N, 3, 2k+1]`` (each row sums to one).

    Entry ``[i, a, j]`` is the Gaussian probability of voxel ``cell[i, a] - k + j`` on axis
    ``a``, renormalised over the ``2k+1`` voxels (erf differences over voxel boundaries).
    """
    offs = torch.arange(-k, k + 2, device=pos.device, dtype=pos.dtype)  # 2k+2 boundaries
    edges = (cell.to(pos.dtype).unsqueeze(-1) + offs) * pitch
    cdf = torch.erf((edges - pos.unsqueeze(-1)) / (sigma.unsqueeze(-1) * _SQRT2))
    w = cdf[..., 1:] - cdf[..., :-1]
    return w / w.sum(-1, keepdim=True).clamp_min(torch.finfo(pos.dtype).tiny)


def _union_cpu(a: Tensor, off: Tensor, small: bool = False) -> tuple[Tensor, Tensor]:
    """Sorted unique keys of ``a[:, None] + off[None]`` and the inverse ``[len(a), len(off)]``
    (``a`` sorted and unique, ``off`` ascending): a linear merge of the shifted copies. The
    inverse is int64, or int32 with ``small`` where the keys fit (half the memory traffic
    for the compiled loop; torch's scatters want int64)."""
    n, w = a.shape[0], off.shape[0]
    inv = np.empty((n, w), dtype=np.int32 if small and n * w < 2**31 else np.int64)
    keys = voxel_kernels.union_runs(a.contiguous().numpy(), off.contiguous().numpy(), inv)
    return torch.from_numpy(keys), torch.from_numpy(inv)


def _union_torch(a: Tensor, off: Tensor, small: bool = False) -> tuple[Tensor, Tensor]:
    """Device-agnostic version of :func:`_union_cpu` (``torch.unique``; fast on GPUs; the
    inverse is always int64)."""
    cand = a.unsqueeze(1) + off.unsqueeze(0)
    u, inv = torch.unique(cand.reshape(-1), sorted=True, return_inverse=True)
    return u, inv.view(a.shape[0], off.shape[0])


def _dilate(centres: Tensor, k: int, strides: tuple[int, int, int], small: bool = False
            ) -> tuple[Tensor, list[Tensor]]:
    """Union of the ``(2k+1)^3`` neighbourhoods of the sorted unique ``centres`` keys.

    Done one axis at a time (z, then y, then x: three merges of ``2k+1`` shifted copies,
    cheaper than one merge of ``(2k+1)^3``). Returns the sorted voxel keys and the inverse
    maps ``[inv_z, inv_y, inv_x]`` (each ``[n_prev, 2k+1]``; see ``small`` in
    :func:`_union_cpu`): the voxel of centre ``u`` at
    offset ``(i, j, l)`` (x, y, z) is ``inv_x[inv_y[inv_z[u, l], j], i]``.
    """
    union = _union_cpu if centres.device.type == "cpu" else _union_torch
    r = torch.arange(-k, k + 1, device=centres.device)
    keys, invs = centres, []
    for stride in reversed(strides):
        keys, inv = union(keys, r * stride, small)
        invs.append(inv)
    return keys, invs


def _sort_keys(keys: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Stable order of ``keys``, their sorted unique values and each sorted key's group."""
    if keys.device.type == "cpu":
        order = torch.from_numpy(np.argsort(keys.numpy(), kind="stable"))
    else:
        order = torch.sort(keys, stable=True).indices
    sk = keys[order]
    new = torch.ones_like(sk, dtype=torch.bool)
    new[1:] = sk[1:] != sk[:-1]
    return order, sk[new], torch.cumsum(new, 0) - 1


@dataclass
class Coalesced:
    """Voxel charges before decoding: int64 ``keys`` (sorted), ``charge``, ``dominant``, and
    the grid (``lo`` offset, ``dims``) needed to decode keys into ``(event, ix, iy, iz)``.

    Decoding is deferred so a caller that drops voxels (the threshold) decodes only the
    survivors."""

    keys: Tensor
    charge: Tensor
    dominant: Tensor
    lo: Tensor
    dims: tuple[int, int, int]

    def event_of_keys(self) -> Tensor:
        """Event index of every voxel (non-decreasing: keys are sorted)."""
        dx, dy, dz = self.dims
        return self.keys // (dx * dy * dz)

    def decode(self, keep: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(coords [M, 3] int64, event [M])`` of all voxels, or of ``keep`` (a mask)."""
        keys = self.keys if keep is None else self.keys[keep]
        dx, dy, dz = self.dims
        iz = keys % dz
        rest = keys // dz
        iy = rest % dy
        rest = rest // dy
        coords = torch.stack([rest % dx, iy, iz], dim=1) + self.lo
        return coords, rest // dx


def coalesce(
    pos: Tensor,
    sigma: Tensor,
    charge: Tensor,
    event: Tensor,
    pitch: float = 0.3,
    k: int | None = None,
    chunk: int = 1 << 15,
    with_dominant: bool = True,
    engine: str = "auto",
) -> Coalesced:
    """The work of :func:`voxelize` without decoding the keys (see there).

    ``with_dominant=False`` skips the dominant-deposit bookkeeping (truth labels; ``dominant``
    is then all -1), which a fit evaluating the response many times does not need.
    Contributions are formed and scattered ``chunk`` deposits at a time so the
    ``(2k+1)^3``-fold temporaries stay cache-sized (fresh large allocations dominate the cost
    on CPU otherwise); the loop is over chunks, never over deposits. ``engine``: ``"tensor"``
    (torch operations, differentiable, any device), ``"compiled"`` (the CPU loop of
    :mod:`larchain.sim.voxel_kernels`; no gradients) or ``"auto"`` (compiled on CPU when no
    input needs a gradient).
    """
    n = pos.shape[0]
    if pos.ndim != 2 or pos.shape[1] != 3:
        raise ValueError(f"pos must have shape [N, 3], got {tuple(pos.shape)}")
    if sigma.shape != pos.shape:
        raise ValueError(f"sigma must have shape {tuple(pos.shape)}, got {tuple(sigma.shape)}")
    if charge.shape != (n,):
        raise ValueError(f"charge must have shape [{n}], got {tuple(charge.shape)}")
    if event.shape != (n,) or event.dtype != torch.int64:
        raise ValueError(f"event must be an int64 tensor of shape [{n}]")
    if not pitch > 0:
        raise ValueError(f"pitch must be > 0, got {pitch}")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    if engine not in ("auto", "tensor", "compiled"):
        raise ValueError(f"engine must be 'auto', 'tensor' or 'compiled', got {engine!r}")
    needs_grad = torch.is_grad_enabled() and any(
        t.requires_grad for t in (pos, sigma, charge))
    if engine == "compiled" and (needs_grad or pos.device.type != "cpu"):
        raise ValueError("engine='compiled' runs on CPU tensors without autograd")
    compiled = engine == "compiled" or (
        engine == "auto" and not needs_grad and pos.device.type == "cpu")
    dev, dtype = pos.device, pos.dtype
    if n == 0:
        z = torch.zeros(0, dtype=torch.int64, device=dev)
        lo0 = torch.zeros(3, dtype=torch.int64, device=dev)
        return Coalesced(z, charge.new_zeros(0), z, lo0, (1, 1, 1))
    if not bool(torch.isfinite(pos.detach()).all()):
        raise ValueError("pos must be finite")
    if not bool((sigma.detach() > 0).all()) or not bool(torch.isfinite(sigma.detach()).all()):
        raise ValueError("sigma must be finite and > 0")
    if k is None:
        k = neighbourhood_size(float(sigma.detach().max()), pitch)
    elif int(k) < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    k = int(k)

    # --- integer keys of the centre voxels, in a bounding box padded by k
    cell = torch.floor(pos.detach() / pitch).to(torch.int64)
    lo = cell.min(0).values - k
    dims = tuple(int(d) for d in (cell.max(0).values + k - lo + 1).tolist())
    n_ev = int(event.max()) + 1
    if n_ev * dims[0] * dims[1] * dims[2] >= _MAX_KEY:
        raise ValueError("positions span too many voxels to key in int64 (check pos/pitch)")
    rel = cell - lo
    keys = ((event * dims[0] + rel[:, 0]) * dims[1] + rel[:, 1]) * dims[2] + rel[:, 2]

    # --- deposits in key order (nearly sequential scatters); union of the neighbourhoods
    order, uc, grp = _sort_keys(keys)
    vkeys, (inv_z, inv_y, inv_x) = _dilate(uc, k, (dims[1] * dims[2], dims[2], 1), compiled)
    m = vkeys.shape[0]
    q = torch.zeros(m, dtype=dtype, device=dev)
    best = torch.full((m,), -1, dtype=torch.int64, device=dev)
    pieces = zip(
        torch.split(pos[order], chunk),
        torch.split(sigma[order], chunk),
        torch.split(charge[order], chunk),
        torch.split(cell[order], chunk),
        torch.split(grp, chunk),
        torch.split(order, chunk),
        strict=True,
    )
    # contributions deposit by deposit, offsets (l, j, i) = (z, y, x) inner: the order of
    # addition does not depend on the chunks and is the same in both engines
    if compiled:
        for pos_c, sigma_c, charge_c, cell_c, grp_c, idx_c in pieces:
            w = axis_weights(pos_c, sigma_c, cell_c, k, pitch)  # [c, 3 (x, y, z), width]
            voxel_kernels.scatter_contributions(
                w.detach().numpy(), charge_c.detach().numpy(), grp_c.numpy(), idx_c.numpy(),
                inv_z.numpy(), inv_y.numpy(), inv_x.numpy(), q.numpy(), best.numpy(),
                with_dominant,
            )
        dominant = best & 0xFFFFFFFF if with_dominant else best
        return Coalesced(vkeys, q, dominant, lo, dims)

    for pos_c, sigma_c, charge_c, cell_c, grp_c, idx_c in pieces:
        c = pos_c.shape[0]
        w = axis_weights(pos_c, sigma_c, cell_c, k, pitch)  # [c, 3 (x, y, z), width]
        wx = w[:, 0] * charge_c.unsqueeze(1)
        contrib = (wx[:, None, None, :] * w[:, 1, None, :, None]) * w[:, 2, :, None, None]
        contrib = contrib.reshape(-1)  # [c, width (z), width (y), width (x)]
        vid = inv_z.index_select(0, grp_c)  # [c, width (z)]
        vid = inv_y.index_select(0, vid.reshape(-1))  # [c * width (z), width (y)]
        vid = inv_x.index_select(0, vid.reshape(-1)).reshape(-1)  # same layout as contrib
        q.index_add_(0, vid, contrib)
        if not with_dominant:
            continue
        # dominant deposit: float32 bits of the non-negative contribution in the high word,
        # the deposit index in the low word; one scatter-max picks the largest contribution.
        c32 = torch.clamp_min(contrib.detach().to(torch.float32), 0.0).add_(0.0)  # -0 -> +0
        packed = c32.view(torch.int32).to(torch.int64).bitwise_left_shift_(32)
        packed.view(c, -1).bitwise_or_(idx_c.unsqueeze(1))
        best.scatter_reduce_(0, vid, packed, reduce="amax")
    dominant = best & 0xFFFFFFFF if with_dominant else best
    return Coalesced(vkeys, q, dominant, lo, dims)


def voxelize(
    pos: Tensor,
    sigma: Tensor,
    charge: Tensor,
    event: Tensor,
    pitch: float = 0.3,
    k: int | None = None,
) -> Voxels:
    """Share each Gaussian cloud's charge over voxels and coalesce per ``(event, voxel)``.

    ``pos`` ``[N, 3]`` cloud centres [cm] (voxel ``i`` on an axis spans
    ``[i pitch, (i+1) pitch)``), ``sigma`` ``[N, 3]`` per-axis widths [cm] (> 0),
    ``charge`` ``[N]`` electrons, ``event`` ``[N]`` int64. ``k`` is the neighbourhood
    half-size (``None``: :func:`neighbourhood_size` of the largest width). ``dominant`` is the
    deposit with the largest contribution to each voxel (contributions compared in float32;
    exact ties go to the higher deposit index).
    """
    c = coalesce(pos, sigma, charge, event, pitch, k)
    coords, ev = c.decode()
    return Voxels(coords, ev, c.charge, c.dominant)


def readout(
    charge: Tensor,
    threshold_electrons: float,
    noise_electrons: float = 0.0,
    mode: str = "exact",
    threshold_width: float = 1.0,
    generator: torch.Generator | None = None,
    noise: Tensor | None = None,
) -> tuple[Tensor, Tensor | None]:
    """Pixel electronics on coalesced voxel charges: ``(charge_out, keep)``.

    Noise (rms in electrons) is added to every voxel with signal (self-triggered readout).
    ``"exact"``: Gaussian noise from ``generator`` (global RNG if None), then voxels with
    ``q < threshold`` are dropped; ``keep`` is the boolean mask of survivors.
    ``"expected"``: every voxel is kept, unchanged (no noise, no threshold).
    ``"smooth"``: every voxel is kept (``keep`` is None) and scaled by
    ``sigmoid((q - threshold) / threshold_width)`` so gradients flow through the threshold.
    Noise is reparameterised, ``q + rms * z``, with ``z`` a standard-normal draw from
    ``generator``; it is off when no generator is given (pass an identically seeded
    generator each call to keep the draw fixed during a fit). ``noise`` gives that draw ``z``
    (one per voxel) instead, e.g. drawn event by event from per-event generators.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if noise_electrons < 0:
        raise ValueError(f"noise_electrons must be >= 0, got {noise_electrons}")
    if mode == "expected":
        return charge, None
    q = charge
    if noise is not None:
        if noise.shape != q.shape:
            raise ValueError(f"noise must have the charge's shape {tuple(q.shape)}, got "
                             f"{tuple(noise.shape)}")
        q = q + noise_electrons * noise
    elif noise_electrons > 0 and (mode == "exact" or generator is not None):
        z = torch.randn(q.shape, generator=generator, dtype=q.dtype, device=q.device)
        q = q + noise_electrons * z
    if mode == "exact":
        keep = q >= threshold_electrons
        return q[keep], keep
    if not threshold_width > 0:
        raise ValueError(f"threshold_width must be > 0 in smooth mode, got {threshold_width}")
    return q * torch.sigmoid((q - threshold_electrons) / threshold_width), None
