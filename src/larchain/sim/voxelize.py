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

Speed: on CPU the union of the neighbourhoods is found by a stable (Timsort) argsort of the
``(2k+1)^3`` shifted copies of the sorted unique centre keys -- already sorted runs, so the
merge is much cheaper than a general sort of ``27 N`` keys; deposits are processed in
centre-key order so the scatters are nearly sequential.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

#: Readout modes: ``"exact"`` (hard threshold, random noise) or ``"smooth"`` (sigmoid).
MODES = ("exact", "smooth")

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


def _union_cpu(uc: Tensor, off: Tensor) -> tuple[Tensor, Tensor]:
    """Unique keys of ``uc[None] + off[:, None]`` and the inverse ``[len(off), len(uc)]``.

    ``uc`` is sorted, so each row is a sorted run and a stable argsort (Timsort) merges them.
    """
    cand = (uc.numpy()[None, :] + off.numpy()[:, None]).ravel()
    perm = np.argsort(cand, kind="stable")
    s = cand[perm]
    new = np.empty(s.shape[0], dtype=bool)
    new[:1] = True
    np.not_equal(s[1:], s[:-1], out=new[1:])
    ids = np.cumsum(new, dtype=np.int64) - 1
    inv = np.empty_like(ids)
    inv[perm] = ids
    return torch.from_numpy(s[new]), torch.from_numpy(inv).view(off.shape[0], uc.shape[0])


def _union_torch(uc: Tensor, off: Tensor) -> tuple[Tensor, Tensor]:
    """Device-agnostic version of :func:`_union_cpu` (``torch.unique``; fast on GPUs)."""
    cand = uc.unsqueeze(0) + off.unsqueeze(1)
    u, inv = torch.unique(cand.reshape(-1), sorted=True, return_inverse=True)
    return u, inv.view(off.shape[0], uc.shape[0])


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
    dev, dtype = pos.device, pos.dtype
    if n == 0:
        return Voxels(
            torch.zeros((0, 3), dtype=torch.int64, device=dev),
            torch.zeros(0, dtype=torch.int64, device=dev),
            charge.new_zeros(0),
            torch.zeros(0, dtype=torch.int64, device=dev),
        )
    if bool((sigma.detach() <= 0).any()):
        raise ValueError("sigma must be > 0")
    if k is None:
        k = neighbourhood_size(float(sigma.detach().max()), pitch)
    elif int(k) < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    k = int(k)
    width = 2 * k + 1

    # --- integer keys of the centre voxels, in a bounding box padded by k
    cell = torch.floor(pos.detach() / pitch).to(torch.int64)
    lo = cell.min(0).values - k
    dims = (cell.max(0).values + k - lo + 1).tolist()
    n_ev = int(event.max()) + 1
    if n_ev * dims[0] * dims[1] * dims[2] >= _MAX_KEY:
        raise ValueError("positions span too many voxels to key in int64 (check pos/pitch)")
    rel = cell - lo
    keys = ((event * dims[0] + rel[:, 0]) * dims[1] + rel[:, 1]) * dims[2] + rel[:, 2]

    # --- process deposits in key order (nearly sequential scatters), unique centres
    order, uc, grp = _sort_keys(keys)
    pos_s, sigma_s, charge_s, cell_s = pos[order], sigma[order], charge[order], cell[order]
    r = torch.arange(-k, k + 1, device=dev)
    off = (r.view(-1, 1, 1) * dims[1] + r.view(1, -1, 1)) * dims[2] + r.view(1, 1, -1)
    off = off.reshape(-1)  # [width^3], x-major like the contributions below
    union = _union_cpu if dev.type == "cpu" else _union_torch
    vkeys, inv = union(uc, off)  # [M], [width^3, U]
    vid = inv[:, grp].reshape(-1)  # [width^3 * N], offset-major

    # --- separable weights -> contributions [width^3, N]
    w = axis_weights(pos_s, sigma_s, cell_s, k, pitch).transpose(0, 1)  # [3, N, width]
    wx, wy, wz = (w[a].transpose(0, 1) for a in range(3))  # [width, N]
    contrib = (wx * charge_s).view(width, 1, 1, n) * wy.view(1, width, 1, n)
    contrib = (contrib * wz.view(1, 1, width, n)).reshape(-1)
    m = vkeys.shape[0]
    q = torch.zeros(m, dtype=dtype, device=dev).index_add(0, vid, contrib)

    # --- dominant deposit: float32 bits of the (non-negative) contribution in the high word,
    # the deposit index in the low word, one scatter-max.
    c32 = contrib.detach().to(torch.float32).clamp_min(0.0) + 0.0  # +0.0 turns -0.0 into 0.0
    bits = c32.view(torch.int32).to(torch.int64)
    packed = (bits.view(-1, n) << 32) | order.view(1, n)
    best = torch.full((m,), -1, dtype=torch.int64, device=dev)
    best.scatter_reduce_(0, vid, packed.reshape(-1), reduce="amax")
    dominant = best & 0xFFFFFFFF

    # --- decode keys
    iz = vkeys % dims[2]
    rest = vkeys // dims[2]
    iy = rest % dims[1]
    rest = rest // dims[1]
    ix = rest % dims[0]
    ev = rest // dims[0]
    coords = torch.stack([ix, iy, iz], dim=1) + lo
    return Voxels(coords, ev, q, dominant)


def readout(
    charge: Tensor,
    threshold_electrons: float,
    noise_electrons: float = 0.0,
    mode: str = "exact",
    threshold_width: float = 1.0,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor | None]:
    """Pixel electronics on coalesced voxel charges: ``(charge_out, keep)``.

    Noise (rms in electrons) is added to every voxel with signal (self-triggered readout).
    ``"exact"``: Gaussian noise from ``generator`` (global RNG if None), then voxels with
    ``q < threshold`` are dropped; ``keep`` is the boolean mask of survivors.
    ``"smooth"``: every voxel is kept (``keep`` is None) and scaled by
    ``sigmoid((q - threshold) / threshold_width)`` so gradients flow through the threshold.
    Noise is reparameterised, ``q + rms * z``, with ``z`` a standard-normal draw from
    ``generator``; it is off when no generator is given (pass an identically seeded
    generator each call to keep the draw fixed during a fit).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if noise_electrons < 0:
        raise ValueError(f"noise_electrons must be >= 0, got {noise_electrons}")
    q = charge
    if noise_electrons > 0 and (mode == "exact" or generator is not None):
        z = torch.randn(q.shape, generator=generator, dtype=q.dtype, device=q.device)
        q = q + noise_electrons * z
    if mode == "exact":
        keep = q >= threshold_electrons
        return q[keep], keep
    if not threshold_width > 0:
        raise ValueError(f"threshold_width must be > 0 in smooth mode, got {threshold_width}")
    return q * torch.sigmoid((q - threshold_electrons) / threshold_width), None
