"""Compiled (numba) CPU loops of :func:`larchain.sim.voxelize.coalesce` where no gradient
is needed.

Why compiled: a shard of 128 events of ~5k voxels shares ~0.7 M deposits over ~5 M voxels
(27 contributions each). The tensor path materialises about ten temporaries the size of the
contributions (weights, voxel ids, packed dominant keys) and merges the neighbourhoods with
general sorts; these loops touch each contribution once and merge the sorted runs in
linear time. The arithmetic and its order are those of the tensor path, so the results are
equal bit for bit (tested); the tensor path stays for autograd and GPUs.
"""

from __future__ import annotations

import numba
import numpy as np

_jit = numba.njit(cache=True, nogil=True, error_model="numpy")


@_jit
def union_runs(a: np.ndarray, off: np.ndarray, inv: np.ndarray) -> np.ndarray:
    """Sorted unique keys of ``a[:, None] + off[None]`` (``a`` sorted and unique, ``off``
    ascending): a merge of ``len(off)`` sorted runs. Writes the inverse into ``inv``
    ``[len(a), len(off)]`` (int32 where the keys fit: half the memory traffic)."""
    n, w = a.shape[0], off.shape[0]
    keys = np.empty(n * w, dtype=np.int64)
    head = np.zeros(w, dtype=np.int64)
    m = 0
    for _ in range(n * w):  # at most one new key per step
        found = False
        low = np.int64(0)
        for o in range(w):
            if head[o] < n:
                v = a[head[o]] + off[o]
                if not found or v < low:
                    low, found = v, True
        if not found:
            break
        keys[m] = low
        for o in range(w):
            if head[o] < n and a[head[o]] + off[o] == low:
                inv[head[o], o] = m
                head[o] += 1
        m += 1
    return keys[:m]


@_jit
def scatter_contributions(
    w: np.ndarray,
    charge: np.ndarray,
    grp: np.ndarray,
    idx: np.ndarray,
    inv_z: np.ndarray,
    inv_y: np.ndarray,
    inv_x: np.ndarray,
    q: np.ndarray,
    best: np.ndarray,
    with_dominant: bool,
) -> None:
    """Add a chunk of deposits' contributions to ``q``; keep the dominant deposit in ``best``.

    ``w`` ``[n, 3, width]`` per-axis weights of the deposits (in key order), ``charge``
    ``[n]``, ``grp`` their centre's row in ``inv_z``, ``idx`` their original index. The
    contribution of deposit ``d`` to its voxel at offsets ``(i, j, l)`` (x, y, z) is
    ``((w[d, 0, i] charge[d]) w[d, 1, j]) w[d, 2, l]``, added in the order ``(d, l, j, i)``:
    the tensor path's products and order of addition. ``best`` holds, per voxel, the float32
    bits of the largest contribution in the high word and its deposit in the low word (the
    tensor path's scatter-max).
    """
    n, width = w.shape[0], w.shape[2]
    bits = np.zeros(1, dtype=np.float32)
    as_int = bits.view(np.int32)
    for d in range(n):
        wx0 = charge[d]
        for el in range(width):
            vz = inv_z[grp[d], el]
            for j in range(width):
                vy = inv_y[vz, j]
                for i in range(width):
                    c = ((w[d, 0, i] * wx0) * w[d, 1, j]) * w[d, 2, el]
                    v = inv_x[vy, i]
                    q[v] += c
                    if with_dominant:
                        bits[0] = max(c, 0.0) + 0.0  # -0 -> +0, as the tensor path
                        packed = (np.int64(as_int[0]) << 32) | idx[d]
                        if packed > best[v]:
                            best[v] = packed
