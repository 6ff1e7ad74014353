"""Sparse 3D convolutions in plain PyTorch, for voxelised LArTPC events.

Why plain PyTorch: MinkowskiEngine does not build here and spconv cannot backpropagate on
CPU-only torch. Events have ~1-10k active voxels in a grid of ~10^8-10^9 cells, so dense
``conv3d`` is out of the question, but a handful of gather / matmul / scatter-add calls per
kernel offset is fast enough and runs unchanged on CPU and CUDA (autograd does the backward).

How it works:

* A :class:`SparseTensor` holds unique integer coordinates ``(batch, x, y, z)`` at its own
  resolution and features ``[N, C]``, sorted by a packed int64 key (:func:`encode`), so that
  results do not depend on the order the voxels came in.
* Neighbour look-up is ``torch.searchsorted`` of packed query keys into the sorted key array:
  O(N log N), no hash table, no Python loop over voxels.
* A kernel map lists, for each kernel offset ``k``, the (input row, output row) pairs it
  connects; a convolution is then ``out.index_add_(0, o, x[i] @ W[k])`` over offsets.
* A :class:`KernelMapCache`, shared by every tensor derived from one input batch, keeps the
  coordinate set of each stride and each kernel map, so they are built once per
  (kind, stride, kernel size) and reused by later layers; a transposed convolution inverts the
  down-sampling map stored by the matching :class:`SparseConv3d`, which is how it finds the
  finer level's coordinates.

Weights are stored as ``[K^3, C_in, C_out]`` with the kernel offset index ``(kx * K + ky) * K +
kz``, i.e. ``nn.Conv3d``'s ``weight[c_out, c_in, kx, ky, kz]`` is ``W[k, c_in, c_out]``.
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "BATCH_BITS",
    "SPATIAL_BITS",
    "KernelMap",
    "KernelMapCache",
    "SparseActivation",
    "SparseBatchNorm",
    "SparseConv3d",
    "SparseConvTranspose3d",
    "SparseReLU",
    "SparseTensor",
    "SparseUNet",
    "SubmanifoldConv3d",
    "collate_coords",
    "decode",
    "encode",
    "from_dense",
    "sparse_cat",
    "to_dense",
]

# --------------------------------------------------------------------------------------------
# Coordinate keys
# --------------------------------------------------------------------------------------------

#: Bits per spatial axis in a packed key: coordinates 0 .. 65535 at any stride.
SPATIAL_BITS = 16
#: Bits left for the batch index (the key stays a non-negative int64): 0 .. 32767.
BATCH_BITS = 63 - 3 * SPATIAL_BITS
_SPATIAL_MAX = (1 << SPATIAL_BITS) - 1
_BATCH_MAX = (1 << BATCH_BITS) - 1


def encode(coords: Tensor) -> Tensor:
    """Pack ``(b, x, y, z)`` rows into one int64 key; key order is lexicographic order.

    The caller guarantees the range (see :func:`_check_coords`); out-of-range values would alias.
    """
    b, x, y, z = coords.unbind(1)
    return (b << (3 * SPATIAL_BITS)) | (x << (2 * SPATIAL_BITS)) | (y << SPATIAL_BITS) | z


def decode(keys: Tensor) -> Tensor:
    """Inverse of :func:`encode`: int64 keys ``[N]`` -> coordinates ``[N, 4]``."""
    z = keys & _SPATIAL_MAX
    y = (keys >> SPATIAL_BITS) & _SPATIAL_MAX
    x = (keys >> (2 * SPATIAL_BITS)) & _SPATIAL_MAX
    b = keys >> (3 * SPATIAL_BITS)
    return torch.stack([b, x, y, z], dim=1)


def _lookup(sorted_keys: Tensor, query: Tensor) -> tuple[Tensor, Tensor]:
    """Row of each query key in ``sorted_keys`` and whether it is there at all."""
    if sorted_keys.numel() == 0:
        return torch.zeros_like(query), torch.zeros_like(query, dtype=torch.bool)
    idx = torch.searchsorted(sorted_keys, query).clamp_(max=sorted_keys.numel() - 1)
    return idx, sorted_keys[idx] == query


def _check_coords(coords: object, name: str = "coords") -> Tensor:
    """Validate an integer ``[N, 4]`` coordinate tensor that fits the key; returns int64."""
    if not isinstance(coords, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(coords).__name__}")
    if coords.dtype.is_floating_point or coords.dtype.is_complex or coords.dtype == torch.bool:
        raise ValueError(f"{name} must have an integer dtype (int64), got {coords.dtype}")
    if coords.ndim != 2 or coords.shape[1] != 4:
        raise ValueError(
            f"{name} must have shape [N, 4] = (batch, x, y, z), got {tuple(coords.shape)}"
        )
    coords = coords.long()
    if coords.numel():
        lo = coords.amin(0)
        hi = coords.amax(0)
        if bool((lo < 0).any()):
            raise ValueError(
                f"{name} must be non-negative (shift events into the grid), min {lo.tolist()}"
            )
        if int(hi[0]) > _BATCH_MAX or bool((hi[1:] > _SPATIAL_MAX).any()):
            raise ValueError(
                f"{name} overflow the int64 key: batch index <= {_BATCH_MAX} and x, y, z <= "
                f"{_SPATIAL_MAX} ({SPATIAL_BITS} bits per axis), got max {hi.tolist()}"
            )
    return coords


def _check_features(features: object, n: int, device: torch.device) -> Tensor:
    if not isinstance(features, Tensor):
        raise ValueError(f"features must be a torch.Tensor, got {type(features).__name__}")
    if not features.dtype.is_floating_point:
        raise ValueError(f"features must have a floating dtype, got {features.dtype}")
    if features.ndim != 2 or features.shape[0] != n:
        raise ValueError(f"features must have shape [N={n}, C], got {tuple(features.shape)}")
    if features.device != device:
        raise ValueError(f"features are on {features.device} but coords on {device}")
    return features


def _duplicate_error(sorted_keys: Tensor, name: str = "coords") -> ValueError:
    dup = sorted_keys[1:] == sorted_keys[:-1]
    first = decode(sorted_keys[1:][dup][:1])[0].tolist()
    return ValueError(
        f"{name} contain {int(dup.sum())} duplicate site(s), e.g. (b, x, y, z) = {first}; "
        "merge them (sum their features) before building a SparseTensor"
    )


def collate_coords(events: Sequence[Tensor]) -> Tensor:
    """Stack per-event ``[N_i, 3]`` voxel indices into ``[sum N_i, 4]`` with the batch index."""
    return torch.cat([F.pad(c.long(), (1, 0), value=i) for i, c in enumerate(events)])


# --------------------------------------------------------------------------------------------
# Kernel maps and their cache
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KernelMap:
    """(input row, output row) pairs of a convolution, grouped by kernel offset.

    ``in_idx[s:e]`` / ``out_idx[s:e]``, with ``s, e`` the running sums of ``counts``, are the
    pairs of offset ``k``. ``identity`` is an offset whose pairs are ``(i, i)`` for every row
    (the centre of a submanifold kernel): they are not stored (its count is 0) but applied as a
    plain matmul, without gather or scatter.
    """

    in_idx: Tensor
    out_idx: Tensor
    counts: tuple[int, ...]
    n_in: int
    n_out: int
    identity: int | None = None

    def transposed(self) -> KernelMap:
        """The map of the transposed convolution: same pairs, input and output swapped."""
        return KernelMap(
            self.out_idx, self.in_idx, self.counts, self.n_out, self.n_in, self.identity
        )

    @functools.cached_property
    def padded(self) -> tuple[Tensor, Tensor, Tensor, int]:
        """The pairs laid out as ``[offsets with pairs, M]`` (M: the largest count) for one
        batched matmul: (input rows, output rows, those offsets, M). Padding slots read row
        ``n_in`` (a zero row appended to the input) and add their zero product to row 0."""
        dev, n = self.in_idx.device, self.in_idx.numel()
        active = [k for k, c in enumerate(self.counts) if c]  # the counts are on the host
        m = max(self.counts, default=0)
        c = torch.tensor([self.counts[k] for k in active], dtype=torch.int64, device=dev)
        # pair j of group g (pairs of a group are contiguous from start[g]) -> g * m + j - start
        shift = torch.arange(len(active), device=dev) * m - (torch.cumsum(c, 0) - c)
        slot = torch.arange(n, device=dev) + torch.repeat_interleave(shift, c, output_size=n)
        in_pad = torch.full((len(active) * m,), self.n_in, dtype=torch.int64, device=dev)
        out_pad = torch.zeros(len(active) * m, dtype=torch.int64, device=dev)
        in_pad[slot] = self.in_idx
        out_pad[slot] = self.out_idx
        return in_pad, out_pad, torch.tensor(active, dtype=torch.int64, device=dev), m


class KernelMapCache:
    """Coordinate sets per stride and kernel maps per (kind, stride, kernel size), for one batch.

    Shared by every :class:`SparseTensor` derived from one input, so a U-Net builds each map
    once: all submanifold convolutions at a stride share one map, and the way back up inverts
    the maps of the way down. ``builds`` counts how often each map was built (1 when reused).
    """

    def __init__(self) -> None:
        self.coords: dict[int, Tensor] = {}
        self.keys: dict[int, Tensor] = {}
        self.perms: dict[int, Tensor] = {}
        self.maps: dict[tuple[str, int, int], KernelMap] = {}
        self.builds: Counter[tuple[str, int, int]] = Counter()

    def register(self, stride: int, coords: Tensor, keys: Tensor) -> tuple[Tensor, Tensor]:
        """Record the coordinate set of ``stride``; returns the cached tensors for it.

        There is one coordinate set per stride (submanifold layers keep sites, strided ones
        are deterministic), which is what lets transposed layers find where to go back to.
        """
        old = self.keys.get(stride)
        if old is None:
            self.coords[stride], self.keys[stride] = coords, keys
        elif old is not keys and not torch.equal(old, keys):
            raise ValueError(
                f"coords at stride {stride} differ from the set already in this cache; "
                "use a fresh KernelMapCache for each input batch"
            )
        return self.coords[stride], self.keys[stride]

    def submanifold(self, stride: int, kernel_size: int) -> KernelMap:
        """Map of a submanifold conv: output sites = input sites, offsets in [-r, r]^3."""
        key = ("submanifold", stride, kernel_size)
        if key not in self.maps:
            self.maps[key] = self._build_submanifold(
                self.coords[stride], self.keys[stride], kernel_size
            )
            self.builds[key] += 1
        return self.maps[key]

    def downsample(self, stride: int, kernel_size: int) -> KernelMap:
        """Map of a conv with kernel = stride = ``kernel_size`` from ``stride``; registers the
        coarse coordinate set at ``stride * kernel_size``."""
        key = ("downsample", stride, kernel_size)
        if key not in self.maps:
            coarse, coarse_keys, kmap = self._build_downsample(self.coords[stride], kernel_size)
            self.register(stride * kernel_size, coarse, coarse_keys)
            self.maps[key] = kmap
            self.builds[key] += 1
        return self.maps[key]

    def upsample(self, stride: int, kernel_size: int) -> KernelMap:
        """Map of the transposed conv from ``stride`` to ``stride // kernel_size``: the
        transpose of the down-sampling map that produced ``stride``."""
        key = ("downsample", stride // kernel_size, kernel_size)
        if stride % kernel_size or key not in self.maps:
            raise ValueError(
                f"no SparseConv3d(kernel_size={kernel_size}, stride={kernel_size}) from stride "
                f"{stride // kernel_size} to {stride} in this tensor's cache: a transposed conv "
                "can only go back to a finer level that a strided conv came from"
            )
        up = ("upsample", stride, kernel_size)
        if up not in self.maps:  # kept, with its padded layout, for the next layer and pass
            self.maps[up] = self.maps[key].transposed()
        return self.maps[up]

    @staticmethod
    def _build_submanifold(coords: Tensor, keys: Tensor, kernel_size: int) -> KernelMap:
        """Look up the first half of the offsets (those before the centre) and mirror them:
        if ``o + d = i`` then ``i - d = o``, so offset ``-d`` has the pairs of ``d`` swapped.
        The centre is the identity. Offsets are ordered ``k = (kx * K + ky) * K + kz``, so the
        mirror of ``k`` is ``K^3 - 1 - k``."""
        n = coords.shape[0]
        r = kernel_size // 2
        steps = torch.arange(-r, r + 1, device=coords.device)
        n_off = kernel_size**3
        centre = n_off // 2
        half = torch.cartesian_prod(steps, steps, steps).view(-1, 3)[:centre]  # [H, 3]
        # a packed key plus a packed offset is the key of the shifted site, as long as no
        # coordinate leaves [0, _SPATIAL_MAX] (a carry would alias another site): sites
        # within r of that range's ends are masked explicitly
        shift = (half[:, 0] << (2 * SPATIAL_BITS)) + (half[:, 1] << SPATIAL_BITS) + half[:, 2]
        idx, found = _lookup(keys, (keys[None, :] + shift[:, None]).view(-1))
        found = found.view(centre, n)
        xyz = coords[:, 1:]
        edge = ((xyz < r) | (xyz > _SPATIAL_MAX - r)).any(1)
        if bool(edge.any()):
            e = edge.nonzero().flatten()
            q = xyz[e][None] + half[:, None, :]
            found[:, e] &= ((q >= 0) & (q <= _SPATIAL_MAX)).all(-1)
        offset_id, out_idx = found.nonzero(as_tuple=True)  # grouped by offset (row-major)
        in_idx = idx.view(centre, n)[offset_id, out_idx]
        counts = torch.bincount(offset_id, minlength=centre).tolist()
        # mirrored offsets K^3-1-k, in increasing order = the first half's groups reversed
        mirror_in = torch.split(out_idx, counts)[::-1]
        mirror_out = torch.split(in_idx, counts)[::-1]
        return KernelMap(
            torch.cat([in_idx, *mirror_in]),
            torch.cat([out_idx, *mirror_out]),
            (*counts, 0, *counts[::-1]),
            n,
            n,
            identity=centre,
        )

    @staticmethod
    def _build_downsample(coords: Tensor, k: int) -> tuple[Tensor, Tensor, KernelMap]:
        parent = coords.clone()
        parent[:, 1:] = torch.div(coords[:, 1:], k, rounding_mode="floor")
        rem = coords[:, 1:] - parent[:, 1:] * k
        offset_id = (rem[:, 0] * k + rem[:, 1]) * k + rem[:, 2]
        coarse_keys, out_of_in = torch.unique(encode(parent), sorted=True, return_inverse=True)
        in_idx = torch.argsort(offset_id, stable=True)
        counts = torch.bincount(offset_id, minlength=k**3).tolist()
        kmap = KernelMap(
            in_idx, out_of_in[in_idx], tuple(counts), coords.shape[0], coarse_keys.numel()
        )
        return decode(coarse_keys), coarse_keys, kmap


def _apply(x: Tensor, weight: Tensor, kmap: KernelMap, batched: bool | None = None) -> Tensor:
    """The convolution: ``out[o] += x[i] @ W[k]`` over the pairs (i, o) of each offset k.

    One gather of all pairs, the products, one scatter-add. The products are one matmul per
    offset on contiguous slices (no wasted work: best on a CPU), or, ``batched`` (default on
    CUDA), one batched matmul over the pairs padded to ``[offsets, M]``: a fixed handful of
    kernels per layer whatever the kernel size, since a GPU otherwise waits on kernel launches
    (3.2x slower than spconv per U-Net step, measured). Same maps, same result either way.
    """
    out = x @ weight[kmap.identity] if kmap.identity is not None else None
    if kmap.in_idx.numel():
        if x.is_cuda if batched is None else batched:
            in_pad, out_pad, active, m = kmap.padded
            xz = torch.cat([x, x.new_zeros(1, x.shape[1])])  # row n_in: what padding reads
            g = xz.index_select(0, in_pad).view(len(active), m, x.shape[1])
            y = torch.bmm(g, weight.index_select(0, active)).view(-1, weight.shape[2])
            out_idx = out_pad
        else:
            parts = torch.split(x.index_select(0, kmap.in_idx), kmap.counts)
            y = torch.cat([p @ weight[k] for k, p in enumerate(parts) if p.shape[0]])
            out_idx = kmap.out_idx
        if out is None:  # dtype of the products (autocast may differ from x's)
            out = y.new_zeros(kmap.n_out, weight.shape[2])
        out = out.index_add_(0, out_idx, y)
    if out is None:  # no pairs at all
        out = x.new_zeros(kmap.n_out, weight.shape[2])
    return out


# --------------------------------------------------------------------------------------------
# Sparse tensor
# --------------------------------------------------------------------------------------------


class SparseTensor:
    """Unique sorted sites ``coords [N, 4]`` (batch, x, y, z at this resolution), features
    ``[N, C]``, the ``stride`` relative to the input grid and the shared kernel-map cache.

    The constructor validates (and rejects unsorted or duplicate coordinates); use
    :meth:`from_batch` for voxels in any order, and :meth:`replace` inside layers.
    """

    __slots__ = ("coords", "features", "stride", "cache", "keys")

    def __init__(
        self,
        coords: Tensor,
        features: Tensor,
        stride: int = 1,
        cache: KernelMapCache | None = None,
    ) -> None:
        coords = _check_coords(coords)
        features = _check_features(features, coords.shape[0], coords.device)
        if not isinstance(stride, int) or stride < 1:
            raise ValueError(f"stride must be a positive int, got {stride!r}")
        keys = encode(coords)
        if keys.numel() > 1 and not bool((keys[1:] > keys[:-1]).all()):
            if bool((keys[1:] == keys[:-1]).any()):
                raise _duplicate_error(torch.sort(keys).values)
            raise ValueError(
                "coords must be sorted by (batch, x, y, z); use SparseTensor.from_batch"
            )
        self.cache = KernelMapCache() if cache is None else cache
        self.coords, self.keys = self.cache.register(stride, coords, keys)
        self.features = features
        self.stride = stride

    @classmethod
    def from_batch(cls, coords: Tensor, features: Tensor) -> SparseTensor:
        """Sparse tensor (stride 1, fresh cache) from voxels of a batch in any order.

        Rows are sorted canonically; the permutation is kept (:attr:`perm`) so that outputs can
        be put back in the input order with :meth:`to_input_order`.
        """
        coords = _check_coords(coords)
        features = _check_features(features, coords.shape[0], coords.device)
        keys, perm = torch.sort(encode(coords))
        if keys.numel() > 1 and bool((keys[1:] == keys[:-1]).any()):
            raise _duplicate_error(keys)
        cache = KernelMapCache()
        cache.perms[1] = perm
        return cls._make(coords[perm], features[perm], 1, cache, keys)

    @classmethod
    def _make(
        cls, coords: Tensor, features: Tensor, stride: int, cache: KernelMapCache, keys: Tensor
    ) -> SparseTensor:
        """Trusted constructor for layers (sites already canonical and registered)."""
        st = cls.__new__(cls)
        st.cache = cache
        st.coords, st.keys = cache.register(stride, coords, keys)
        st.features, st.stride = features, stride
        return st

    def replace(self, features: Tensor) -> SparseTensor:
        """Same sites, new features (one row per site)."""
        if features.ndim != 2 or features.shape[0] != self.coords.shape[0]:
            raise ValueError(
                f"features must have shape [N={self.num_sites}, C], got {tuple(features.shape)}"
            )
        return SparseTensor._make(self.coords, features, self.stride, self.cache, self.keys)

    @property
    def perm(self) -> Tensor | None:
        """Input row of each site (``coords == input_coords[perm]``), if built by from_batch."""
        return self.cache.perms.get(self.stride)

    def to_input_order(self, values: Tensor | None = None) -> Tensor:
        """Rows of ``values`` (default: the features) in the order given to :meth:`from_batch`."""
        perm = self.perm
        if perm is None:
            raise ValueError(f"no input order at stride {self.stride} (not built by from_batch)")
        values = self.features if values is None else values
        if values.shape[0] != perm.numel():
            raise ValueError(f"values must have {perm.numel()} rows, got {values.shape[0]}")
        inverse = torch.empty_like(perm)
        inverse[perm] = torch.arange(perm.numel(), device=perm.device)
        return values[inverse]

    @property
    def num_sites(self) -> int:
        return self.coords.shape[0]

    @property
    def num_channels(self) -> int:
        return self.features.shape[1]

    @property
    def device(self) -> torch.device:
        return self.features.device

    def batch_size(self) -> int:
        """Number of events (highest batch index + 1); synchronises on CUDA."""
        return int(self.coords[:, 0].max()) + 1 if self.num_sites else 0

    def to(self, device: torch.device | str) -> SparseTensor:
        """Copy to ``device`` with a fresh cache there (maps are rebuilt on first use)."""
        device = torch.device(device)
        if device == self.device:
            return self
        cache = KernelMapCache()
        if self.perm is not None:
            cache.perms[self.stride] = self.perm.to(device)
        return SparseTensor._make(
            self.coords.to(device),
            self.features.to(device),
            self.stride,
            cache,
            self.keys.to(device),
        )

    def __repr__(self) -> str:
        return (
            f"SparseTensor(sites={self.num_sites}, channels={self.num_channels}, "
            f"stride={self.stride}, dtype={self.features.dtype}, device={self.device})"
        )


# --------------------------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------------------------


class _SparseConv(nn.Module):
    """Weights ``[K^3, C_in, C_out]`` and bias, initialised like ``nn.Conv3d``."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, bias: bool, fan_in: int
    ) -> None:
        super().__init__()
        for name, v in (("in_channels", in_channels), ("out_channels", out_channels)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        self.in_channels, self.out_channels, self.kernel_size = (
            in_channels,
            out_channels,
            kernel_size,
        )
        self.weight = nn.Parameter(torch.empty(kernel_size**3, in_channels, out_channels))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self._fan_in = fan_in
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # nn.Conv3d: kaiming_uniform_(a=sqrt(5)) == U(+-1/sqrt(fan_in)); bias the same.
        bound = 1.0 / math.sqrt(self._fan_in)
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def _check_input(self, x: SparseTensor) -> None:
        if not isinstance(x, SparseTensor):
            raise ValueError(f"x must be a SparseTensor, got {type(x).__name__}")
        if x.num_channels != self.in_channels:
            raise ValueError(
                f"x.features has {x.num_channels} channels, "
                f"layer expects in_channels={self.in_channels}"
            )

    def _conv(self, x: SparseTensor, kmap: KernelMap) -> Tensor:
        out = _apply(x.features, self.weight, kmap)
        return out if self.bias is None else out + self.bias

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"bias={self.bias is not None}"
        )


class SubmanifoldConv3d(_SparseConv):
    """Conv with output sites = input sites (dense ``conv3d`` with padding K//2, read at the
    active sites, inactive inputs being zero): keeps tracks thin instead of dilating them."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 3, bias: bool = True
    ) -> None:
        if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd int, got {kernel_size!r}")
        super().__init__(in_channels, out_channels, kernel_size, bias, in_channels * kernel_size**3)

    def forward(self, x: SparseTensor) -> SparseTensor:
        self._check_input(x)
        kmap = x.cache.submanifold(x.stride, self.kernel_size)
        return x.replace(self._conv(x, kmap))


class SparseConv3d(_SparseConv):
    """Down-sampling conv, kernel = stride: dense ``conv3d(kernel=s, stride=s)`` evaluated at
    the occupied coarse cells ``unique(floor(coord / s))``. The output stride is ``x.stride * s``.

    Only kernel_size == stride is supported (each input feeds exactly one output cell, which
    is what makes the transposed conv land exactly on the finer level's sites).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 2,
        stride: int = 2,
        bias: bool = True,
    ) -> None:
        _check_kernel_stride(kernel_size, stride)
        super().__init__(in_channels, out_channels, kernel_size, bias, in_channels * kernel_size**3)
        self.stride = stride

    def forward(self, x: SparseTensor) -> SparseTensor:
        self._check_input(x)
        kmap = x.cache.downsample(x.stride, self.stride)
        s = x.stride * self.stride
        return SparseTensor._make(
            x.cache.coords[s], self._conv(x, kmap), s, x.cache, x.cache.keys[s]
        )

    def extra_repr(self) -> str:
        return super().extra_repr() + f", stride={self.stride}"


class SparseConvTranspose3d(_SparseConv):
    """Up-sampling conv, the exact transpose of :class:`SparseConv3d` with the same kernel:
    on the finer level's sites (taken from the cache) it equals dense ``conv_transpose3d``
    (kernel = stride = s) with weight ``W.permute(1, 2, 0)``, read at those sites.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 2,
        stride: int = 2,
        bias: bool = True,
    ) -> None:
        _check_kernel_stride(kernel_size, stride)
        # fan_in = inputs summed per output value: each fine site has exactly one parent.
        super().__init__(in_channels, out_channels, kernel_size, bias, in_channels)
        self.stride = stride

    def forward(self, x: SparseTensor) -> SparseTensor:
        self._check_input(x)
        kmap = x.cache.upsample(x.stride, self.stride)
        s = x.stride // self.stride
        return SparseTensor._make(
            x.cache.coords[s], self._conv(x, kmap), s, x.cache, x.cache.keys[s]
        )

    def extra_repr(self) -> str:
        return super().extra_repr() + f", stride={self.stride}"


def _check_kernel_stride(kernel_size: int, stride: int) -> None:
    if not isinstance(stride, int) or stride < 1:
        raise ValueError(f"stride must be a positive int, got {stride!r}")
    if kernel_size != stride:
        raise ValueError(
            f"kernel_size must equal stride (got kernel_size={kernel_size}, stride={stride})"
        )


class SparseBatchNorm(nn.BatchNorm1d):
    """BatchNorm over the active sites' features (statistics pool all events of the batch)."""

    def forward(self, x: SparseTensor) -> SparseTensor:  # type: ignore[override]
        return x.replace(super().forward(x.features))


class SparseActivation(nn.Module):
    """Apply an element-wise module (``nn.GELU()``, ...) to the features."""

    def __init__(self, fn: nn.Module) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: SparseTensor) -> SparseTensor:
        return x.replace(self.fn(x.features))


class SparseReLU(SparseActivation):
    def __init__(self, inplace: bool = False) -> None:
        super().__init__(nn.ReLU(inplace=inplace))


def sparse_cat(*tensors: SparseTensor) -> SparseTensor:
    """Concatenate features of tensors on identical sites (U-Net skip connections)."""
    if not tensors:
        raise ValueError("tensors: need at least one SparseTensor")
    first = tensors[0]
    for t in tensors[1:]:
        same = t.stride == first.stride and (
            t.keys is first.keys or torch.equal(t.keys, first.keys)
        )
        if not same:
            raise ValueError("tensors must have identical coords and stride to be concatenated")
    return first.replace(torch.cat([t.features for t in tensors], dim=1))


# --------------------------------------------------------------------------------------------
# Dense conversion (tests, debugging)
# --------------------------------------------------------------------------------------------


def to_dense(st: SparseTensor, shape: Sequence[int], batch_size: int | None = None) -> Tensor:
    """Dense ``[B, C, X, Y, Z]`` (conv3d layout) with the features at the active sites, zeros
    elsewhere; ``shape`` is the spatial shape at the tensor's resolution. Differentiable."""
    if len(shape) != 3:
        raise ValueError(f"shape must be (X, Y, Z), got {tuple(shape)}")
    b = st.batch_size() if batch_size is None else batch_size
    if st.num_sites:
        hi = st.coords.amax(0).tolist()
        if hi[0] >= b or any(h >= s for h, s in zip(hi[1:], shape, strict=True)):
            raise ValueError(f"shape {tuple(shape)} (batch {b}) too small for coords up to {hi}")
    dense = st.features.new_zeros(b, *shape, st.num_channels)
    dense = dense.index_put(tuple(st.coords.unbind(1)), st.features)
    return dense.permute(0, 4, 1, 2, 3).contiguous()


def from_dense(dense: Tensor, mask: Tensor, stride: int = 1) -> SparseTensor:
    """Sparse tensor of the sites where ``mask [B, X, Y, Z]`` is true, features from
    ``dense [B, C, X, Y, Z]`` (fresh cache)."""
    if dense.ndim != 5:
        raise ValueError(f"dense must have shape [B, C, X, Y, Z], got {tuple(dense.shape)}")
    if mask.dtype != torch.bool or mask.shape != dense.shape[:1] + dense.shape[2:]:
        raise ValueError(
            f"mask must be bool [B, X, Y, Z] matching dense, got {mask.dtype} {tuple(mask.shape)}"
        )
    coords = mask.nonzero()  # row-major == canonical (b, x, y, z) order
    return SparseTensor(coords, dense.permute(0, 2, 3, 4, 1)[mask], stride)


# --------------------------------------------------------------------------------------------
# A small U-Net (how the layers compose; used by the tests and the benchmark)
# --------------------------------------------------------------------------------------------


def _block(c_in: int, c_out: int, kernel_size: int = 3) -> nn.Sequential:
    return nn.Sequential(
        SubmanifoldConv3d(c_in, c_out, kernel_size, bias=False),
        SparseBatchNorm(c_out),
        SparseReLU(),
    )


class SparseUNet(nn.Module):
    """U-Net with ``len(widths)`` levels: two submanifold conv-BN-ReLU blocks per level, 2x
    strided conv down, transposed conv up, skip concatenation, a 1x1x1 head (logits)."""

    def __init__(
        self, in_channels: int, out_channels: int, widths: Sequence[int] = (16, 32)
    ) -> None:
        super().__init__()
        w = list(widths)
        self.stem = nn.Sequential(_block(in_channels, w[0]), _block(w[0], w[0]))
        self.down = nn.ModuleList(
            nn.Sequential(
                SparseConv3d(w[i - 1], w[i], bias=False),
                SparseBatchNorm(w[i]),
                SparseReLU(),
                _block(w[i], w[i]),
                _block(w[i], w[i]),
            )
            for i in range(1, len(w))
        )
        self.up = nn.ModuleList(
            nn.Sequential(
                SparseConvTranspose3d(w[i], w[i - 1], bias=False),
                SparseBatchNorm(w[i - 1]),
                SparseReLU(),
            )
            for i in range(1, len(w))
        )
        self.merge = nn.ModuleList(
            nn.Sequential(_block(2 * w[i - 1], w[i - 1]), _block(w[i - 1], w[i - 1]))
            for i in range(1, len(w))
        )
        self.head = SubmanifoldConv3d(w[0], out_channels, kernel_size=1)

    def forward(self, x: SparseTensor) -> SparseTensor:
        skips = [self.stem(x)]
        for down in self.down:
            skips.append(down(skips[-1]))
        y = skips.pop()
        for up, merge in zip(reversed(self.up), reversed(self.merge), strict=True):
            y = merge(sparse_cat(up(y), skips.pop()))
        return self.head(y)
