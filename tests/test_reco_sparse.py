"""Sparse 3D convolutions (larchain.reco.sparse) against dense torch convolutions.

Every layer is checked against the dense operator it stands for, evaluated at the active
sites with inactive inputs set to zero: forward values and the gradients w.r.t. input features
and weights, in float64 to 1e-10. Then gradcheck, order/batch invariance, the kernel-map cache,
input validation, and a small U-Net that must learn a voxel labelling task.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from larchain.reco import sparse
from larchain.reco.sparse import (
    SPATIAL_BITS,
    SparseBatchNorm,
    SparseConv3d,
    SparseConvTranspose3d,
    SparseReLU,
    SparseTensor,
    SparseUNet,
    SubmanifoldConv3d,
    collate_coords,
    from_dense,
    sparse_cat,
    to_dense,
)

TOL = 1e-10
C_IN, C_OUT, BATCH = 3, 4, 2


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.one_thread


@pytest.fixture(params=["per-offset", "batched"])
def products(request, monkeypatch):
    """Run a test with each way of forming the products (per-offset matmuls, the CPU default;
    one padded batched matmul, the CUDA default): both must give the dense answer."""
    batched = request.param == "batched"
    monkeypatch.setattr(sparse, "_apply", functools.partial(sparse._apply, batched=batched))
    return request.param


def random_sites(size: int, occupancy: float, seed: int, batch: int = BATCH) -> torch.Tensor:
    """Active sites of a random grid, ``[N, 4]`` in shuffled (non-canonical) order."""
    g = torch.Generator().manual_seed(seed)
    coords = (torch.rand(batch, size, size, size, generator=g) < occupancy).nonzero()
    return coords[torch.randperm(len(coords), generator=g)]


def scatter_dense(coords: torch.Tensor, feats: torch.Tensor, size: int) -> torch.Tensor:
    """Dense ``[B, C, D, D, D]`` input with ``feats`` at ``coords`` (independent of to_dense)."""
    dense = feats.new_zeros(BATCH, size, size, size, feats.shape[1])
    dense = dense.index_put(tuple(coords.T), feats)
    return dense.permute(0, 4, 1, 2, 3)


def at_sites(dense: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Rows ``[N, C]`` of a dense ``[B, C, X, Y, Z]`` tensor at ``coords``."""
    b, x, y, z = coords.T
    return dense[b, :, x, y, z]


def conv3d_weight(w: torch.Tensor, k: int) -> torch.Tensor:
    """``[K^3, C_in, C_out]`` -> nn.Conv3d's ``[C_out, C_in, k, k, k]``."""
    return w.permute(2, 1, 0).reshape(w.shape[2], w.shape[1], k, k, k)


def conv_transpose3d_weight(w: torch.Tensor, k: int) -> torch.Tensor:
    """``[K^3, C_in, C_out]`` -> nn.ConvTranspose3d's ``[C_in, C_out, k, k, k]``."""
    return w.permute(1, 2, 0).reshape(w.shape[1], w.shape[2], k, k, k)


def max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float((a - b).detach().abs().max()) if a.numel() else 0.0


def compare_with_dense(layer, dense_fn, coords, size, pre=None) -> dict[str, float]:
    """Forward and gradients of ``layer`` against ``dense_fn(dense_input, dense_weight, bias)``.

    ``pre`` (optional) maps the stride-1 input tensor to the layer's input tensor and its dense
    size (the transposed conv starts from the coarse level); the layer's input features are a
    fresh leaf at that level. Loss = sum(out * G) over the output sites only, so the dense
    gradient is the masked one.
    """
    g = torch.Generator().manual_seed(1234)
    layer = layer.double()
    st = SparseTensor.from_batch(coords, torch.zeros(len(coords), 1, dtype=torch.float64))
    if pre is not None:
        st, size = pre(st)
    feats = torch.randn(st.num_sites, layer.in_channels, generator=g, dtype=torch.float64)
    feats_s = feats.clone().requires_grad_()
    feats_d = feats.clone().requires_grad_()
    w_d = layer.weight.detach().clone().requires_grad_()
    b_d = layer.bias.detach().clone().requires_grad_()

    out = layer(st.replace(feats_s))
    grad_out = torch.randn(out.features.shape, generator=g, dtype=torch.float64)
    (out.features * grad_out).sum().backward()

    ref = at_sites(dense_fn(scatter_dense(st.coords, feats_d, size), w_d, b_d), out.coords)
    (ref * grad_out).sum().backward()
    assert out.num_sites > 0
    return {
        "forward": max_err(out.features, ref),
        "grad_features": max_err(feats_s.grad, feats_d.grad),
        "grad_weight": max_err(layer.weight.grad, w_d.grad),
        "grad_bias": max_err(layer.bias.grad, b_d.grad),
    }


# --------------------------------------------------------------------------------------------
# 1-2. Equality with dense convolutions
# --------------------------------------------------------------------------------------------

CASES = [(8, 0.3, 0), (10, 0.2, 1), (12, 0.1, 2)]


@pytest.mark.parametrize(
    ("size", "occupancy", "seed", "k"), [*[(*c, 3) for c in CASES], (9, 0.25, 3, 5)]
)
@pytest.mark.usefixtures("products")
def test_submanifold_equals_dense_conv3d(size, occupancy, seed, k):
    coords = random_sites(size, occupancy, seed)
    layer = SubmanifoldConv3d(C_IN, C_OUT, kernel_size=k)

    def dense(x, w, b):
        return F.conv3d(x, conv3d_weight(w, k), b, padding=k // 2)

    errs = compare_with_dense(layer, dense, coords, size)
    assert max(errs.values()) < TOL, errs


@pytest.mark.parametrize(("size", "occupancy", "seed"), CASES)
@pytest.mark.usefixtures("products")
def test_strided_equals_dense_conv3d(size, occupancy, seed):
    coords = random_sites(size, occupancy, seed)
    layer = SparseConv3d(C_IN, C_OUT, kernel_size=2, stride=2)

    def dense(x, w, b):
        return F.conv3d(x, conv3d_weight(w, 2), b, stride=2)

    errs = compare_with_dense(layer, dense, coords, size)
    assert max(errs.values()) < TOL, errs
    # output sites are exactly the occupied coarse cells
    out = SparseConv3d(1, 1)(SparseTensor.from_batch(coords, torch.ones(len(coords), 1)))
    expect = np.unique(np.c_[coords[:, :1].numpy(), coords[:, 1:].numpy() // 2], axis=0)
    np.testing.assert_array_equal(out.coords.numpy(), expect)
    assert out.stride == 2


@pytest.mark.parametrize(("size", "occupancy", "seed"), CASES)
@pytest.mark.usefixtures("products")
def test_transposed_equals_dense_conv_transpose3d(size, occupancy, seed):
    coords = random_sites(size, occupancy, seed)
    layer = SparseConvTranspose3d(C_IN, C_OUT, kernel_size=2, stride=2)

    def coarse(st):
        return SparseConv3d(1, 1).double()(st), (size + 1) // 2

    def dense(x, w, b):
        y = F.conv_transpose3d(x, conv_transpose3d_weight(w, 2), b, stride=2)
        return y[..., :size, :size, :size]

    errs = compare_with_dense(layer, dense, coords, size, pre=coarse)
    assert max(errs.values()) < TOL, errs


def test_strided_odd_grid_and_bias_free():
    """Odd grid sizes (a partial coarse cell at the edge) and bias=False."""
    coords = random_sites(7, 0.3, 5)
    layer = SparseConv3d(C_IN, C_OUT, bias=False).double()
    x = torch.randn(len(coords), C_IN, dtype=torch.float64)
    out = layer(SparseTensor.from_batch(coords, x))
    dense = F.conv3d(
        F.pad(scatter_dense(coords, x, 7), (0, 1, 0, 1, 0, 1)),
        conv3d_weight(layer.weight.detach(), 2),
        stride=2,
    )
    assert max_err(out.features, at_sites(dense, out.coords)) < TOL


# --------------------------------------------------------------------------------------------
# 3. gradcheck
# --------------------------------------------------------------------------------------------


def _gradcheck_layer(layer: nn.Module, x: SparseTensor) -> None:
    layer = layer.double()
    params = {n: p.detach().clone().requires_grad_() for n, p in layer.named_parameters()}
    feats = torch.randn(x.num_sites, x.num_channels, dtype=torch.float64, requires_grad=True)

    def fn(f, *ps):
        out = functional_call(layer, dict(zip(params, ps, strict=True)), (x.replace(f),))
        return out.features

    assert torch.autograd.gradcheck(fn, (feats, *params.values()), eps=1e-6, atol=1e-8)


def _tiny(channels: int = 2) -> SparseTensor:
    coords = random_sites(3, 0.4, 7)
    return SparseTensor.from_batch(coords, torch.zeros(len(coords), channels, dtype=torch.float64))


@pytest.mark.parametrize(
    "make",
    [
        lambda: SubmanifoldConv3d(2, 3),
        lambda: SparseConv3d(2, 3),
        lambda: SparseBatchNorm(2),
        lambda: nn.Sequential(SubmanifoldConv3d(2, 2, 1), SparseReLU()),
    ],
    ids=["submanifold", "strided", "batchnorm", "relu"],
)
@pytest.mark.usefixtures("products")
def test_gradcheck(make):
    _gradcheck_layer(make(), _tiny())


@pytest.mark.usefixtures("products")
def test_gradcheck_transposed():
    x = _tiny()
    coarse = SparseConv3d(2, 2).double()(x)
    _gradcheck_layer(SparseConvTranspose3d(2, 3), coarse.replace(coarse.features.detach()))


# --------------------------------------------------------------------------------------------
# 4. Invariance
# --------------------------------------------------------------------------------------------


def _net() -> nn.Module:
    torch.manual_seed(0)
    net = SparseUNet(C_IN, C_OUT, widths=(4, 6, 8)).double()
    for m in net.modules():  # non-trivial BN statistics, then eval: BN is per-site
        if isinstance(m, SparseBatchNorm):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return net.eval()


def test_row_order_does_not_matter():
    coords = random_sites(10, 0.2, 11)
    feats = torch.randn(len(coords), C_IN, dtype=torch.float64)
    net = _net()
    out = net(SparseTensor.from_batch(coords, feats)).to_input_order()
    perm = torch.randperm(len(coords), generator=torch.Generator().manual_seed(3))
    out_p = net(SparseTensor.from_batch(coords[perm], feats[perm])).to_input_order()
    assert torch.equal(out_p, out[perm])


@pytest.mark.usefixtures("products")
def test_sites_at_the_ends_of_the_key_range_have_no_wrapped_neighbours():
    """Kernel maps add packed offsets to packed keys: a site at coordinate 65535 shifted by +1
    (or at 0 by -1) must not alias the site whose key follows (precedes) it in the packing,
    e.g. (x, y, 65535) + (0, 0, 1) -> (x, y + 1, 0). Every site here is isolated, so each
    output is the centre tap alone, exactly."""
    top = (1 << SPATIAL_BITS) - 1
    coords = torch.tensor(
        [
            [0, 5, 5, top],
            [0, 5, 6, 0],  # key of (5, 5, top) + 1
            [0, 7, top, 3],
            [0, 8, 0, 3],  # key of (7, top, 3) + (0, 1, 0)
            [0, top, 9, 9],
            [1, 0, 9, 9],  # key of (top, 9, 9) + (1, 0, 0): the next batch entry
        ]
    )
    feats = torch.randn(len(coords), C_IN, dtype=torch.float64)
    layer = SubmanifoldConv3d(C_IN, C_OUT, kernel_size=3).double()
    out = layer(SparseTensor.from_batch(coords, feats)).to_input_order()
    centre = layer.weight[13]  # [C_in, C_out], offset (0, 0, 0)
    assert max_err(out, feats @ centre + layer.bias) < 1e-12


def test_events_in_a_batch_do_not_interact():
    coords = random_sites(10, 0.2, 12)
    feats = torch.randn(len(coords), C_IN, dtype=torch.float64)
    net = _net()
    batched = net(SparseTensor.from_batch(coords, feats)).to_input_order()
    for b in range(BATCH):
        rows = coords[:, 0] == b
        alone_coords = coords[rows].clone()
        alone_coords[:, 0] = 0
        alone = net(SparseTensor.from_batch(alone_coords, feats[rows])).to_input_order()
        assert max_err(alone, batched[rows]) < 1e-12


# --------------------------------------------------------------------------------------------
# 5. Kernel-map cache
# --------------------------------------------------------------------------------------------


def test_kernel_maps_are_built_once_and_reused():
    coords = random_sites(10, 0.2, 13)
    x = SparseTensor.from_batch(coords, torch.randn(len(coords), 2))
    cache = x.cache
    a = SubmanifoldConv3d(2, 3)(x)
    b = SubmanifoldConv3d(3, 3)(a)
    assert cache.builds[("submanifold", 1, 3)] == 1
    assert b.coords is x.coords and b.cache is cache
    SubmanifoldConv3d(3, 3, kernel_size=5)(b)
    assert cache.builds[("submanifold", 1, 5)] == 1
    c = SparseConv3d(3, 4)(b)
    SubmanifoldConv3d(4, 4)(SubmanifoldConv3d(4, 4)(c))
    assert cache.builds[("submanifold", 2, 3)] == 1
    up = SparseConvTranspose3d(4, 3)(c)  # reuses the down-sampling map, builds nothing
    assert cache.builds[("downsample", 1, 2)] == 1
    assert sum(cache.builds.values()) == 4
    assert up.stride == 1 and up.coords is x.coords


def test_down_up_round_trip_restores_the_coordinate_set():
    coords = random_sites(12, 0.15, 14)
    x = SparseTensor.from_batch(coords, torch.randn(len(coords), 2))
    d1 = SparseConv3d(2, 2)(x)
    d2 = SparseConv3d(2, 2)(d1)
    assert (d1.stride, d2.stride) == (2, 4)
    assert d2.num_sites < d1.num_sites < x.num_sites
    u1 = SparseConvTranspose3d(2, 2)(d2)
    u0 = SparseConvTranspose3d(2, 2)(u1)
    assert torch.equal(u1.coords, d1.coords) and u1.stride == 2
    assert torch.equal(u0.coords, x.coords) and u0.stride == 1
    # and the original rows are recovered in input order
    assert torch.equal(u0.to_input_order(u0.coords), coords)
    # A stride-4 set reached in one step (kernel 4) agrees with the two-step one.
    d2b = SparseConv3d(2, 2, kernel_size=4, stride=4)(x)
    assert d2b.coords is d2.coords


def test_sparse_cat_and_dense_round_trip():
    coords = random_sites(6, 0.3, 15)
    x = SparseTensor.from_batch(coords, torch.randn(len(coords), 2, dtype=torch.float64))
    y = SubmanifoldConv3d(2, 3).double()(x)
    cat = sparse_cat(x, y)
    assert cat.num_channels == 5 and cat.coords is x.coords
    assert torch.equal(cat.features, torch.cat([x.features, y.features], 1))
    dense = to_dense(cat, (6, 6, 6))
    back = from_dense(dense, (dense != 0).any(1))
    assert torch.equal(back.coords, cat.coords) and torch.equal(back.features, cat.features)
    with pytest.raises(ValueError, match="identical coords"):
        sparse_cat(x, SparseConv3d(2, 2).double()(x))


@pytest.mark.usefixtures("products")
def test_empty_batch():
    x = SparseTensor.from_batch(torch.zeros(0, 4, dtype=torch.long), torch.zeros(0, 2))
    y = SparseConvTranspose3d(3, 1)(SparseConv3d(3, 3)(SubmanifoldConv3d(2, 3)(x)))
    assert y.features.shape == (0, 1)


# --------------------------------------------------------------------------------------------
# 6. Bad input
# --------------------------------------------------------------------------------------------

GOOD = torch.tensor([[0, 1, 2, 3], [1, 0, 0, 0]])


@pytest.mark.parametrize(
    ("coords", "features", "match"),
    [
        (torch.tensor([[0, 1, 2, 3], [0, 1, 2, 3]]), torch.ones(2, 1), "coords.*duplicate"),
        (GOOD[:, 1:], torch.ones(2, 1), "coords.*shape"),
        (GOOD.float(), torch.ones(2, 1), "coords.*integer"),
        (GOOD.numpy(), torch.ones(2, 1), "coords.*torch.Tensor"),
        (torch.tensor([[0, -1, 2, 3]]), torch.ones(1, 1), "coords.*non-negative"),
        (torch.tensor([[0, 1 << 16, 0, 0]]), torch.ones(1, 1), "coords.*overflow"),
        (torch.tensor([[1 << 15, 0, 0, 0]]), torch.ones(1, 1), "coords.*overflow"),
        (GOOD, torch.ones(3, 1), "features.*shape"),
        (GOOD, torch.ones(2), "features.*shape"),
        (GOOD, torch.ones(2, 1, dtype=torch.long), "features.*floating"),
    ],
)
def test_bad_input_raises(coords, features, match):
    with pytest.raises(ValueError, match=match):
        SparseTensor.from_batch(coords, features)


def test_bad_use_raises():
    with pytest.raises(ValueError, match="sorted"):
        SparseTensor(GOOD.flip(0), torch.ones(2, 1))
    with pytest.raises(ValueError, match="duplicate"):
        SparseTensor(torch.tensor([[0, 1, 2, 3], [0, 1, 2, 3]]), torch.ones(2, 1))
    x = SparseTensor.from_batch(GOOD, torch.ones(2, 1))
    with pytest.raises(ValueError, match="in_channels"):
        SubmanifoldConv3d(2, 2)(x)
    with pytest.raises(ValueError, match="kernel_size"):
        SubmanifoldConv3d(1, 1, kernel_size=2)
    with pytest.raises(ValueError, match="kernel_size must equal stride"):
        SparseConv3d(1, 1, kernel_size=3, stride=2)
    with pytest.raises(ValueError, match="transposed conv"):
        SparseConvTranspose3d(1, 1)(x.replace(x.features))  # no finer level to go back to
    with pytest.raises(ValueError, match="stride"):
        SparseTensor(GOOD, torch.ones(2, 1), stride=0)
    with pytest.raises(ValueError, match="differ"):
        SparseTensor(GOOD[:1], torch.ones(1, 1), cache=x.cache)
    with pytest.raises(ValueError, match="shape"):
        to_dense(x, (3, 3, 3))


# --------------------------------------------------------------------------------------------
# 7. A tiny U-Net learns: voxels on lines vs voxels in blobs
# --------------------------------------------------------------------------------------------


def toy_events(n_events: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Events with thin straight lines (label 0) and solid balls (label 1); labels of
    overlapping voxels go to the ball. Returns coords ``[N, 4]`` and labels ``[N]``."""
    rng = np.random.default_rng(seed)
    grid = np.arange(size)
    xyz = np.stack(np.meshgrid(grid, grid, grid, indexing="ij"), -1).reshape(-1, 3)
    events = []
    labels = []
    for _ in range(n_events):
        label = np.full(size**3, -1)
        for _ in range(4):
            start = rng.uniform(2, size - 2, 3)
            direction = rng.normal(size=3)
            direction /= np.linalg.norm(direction)
            t = np.arange(0, rng.uniform(8, 14), 0.5)
            pts = np.clip(np.rint(start + t[:, None] * direction), 0, size - 1).astype(int)
            label[np.ravel_multi_index(pts.T, (size,) * 3)] = 0
        for _ in range(2):
            centre = rng.uniform(3, size - 3, 3)
            label[np.linalg.norm(xyz - centre, axis=1) <= rng.uniform(1.5, 2.5)] = 1
        active = label >= 0
        events.append(torch.from_numpy(xyz[active]))
        labels.append(torch.from_numpy(label[active]))
    return collate_coords(events), torch.cat(labels)


@pytest.mark.usefixtures("products")
def test_unet_learns_lines_vs_blobs():
    torch.manual_seed(0)
    coords, labels = toy_events(4, 16, seed=0)
    frac_blob = float(labels.float().mean())
    assert 0.3 < frac_blob < 0.7  # neither class alone scores > 70%
    net = SparseUNet(1, 2, widths=(8, 16))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(100):
        x = SparseTensor.from_batch(coords, torch.ones(len(coords), 1))
        logits = net(x).to_input_order()
        loss = F.cross_entropy(logits, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        pred = net(SparseTensor.from_batch(coords, torch.ones(len(coords), 1)))
        pred = pred.to_input_order().argmax(1)
    acc = float((pred == labels).float().mean())
    acc_per_class = [float((pred[labels == c] == c).float().mean()) for c in (0, 1)]
    assert acc > 0.95 and min(acc_per_class) > 0.9, (acc, acc_per_class, float(loss))


# --------------------------------------------------------------------------------------------
# 8. CUDA agrees with CPU
# --------------------------------------------------------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    coords = random_sites(12, 0.2, 16)
    feats = torch.randn(len(coords), C_IN, dtype=torch.float64)
    results = {}
    for device in ("cpu", "cuda"):
        net = _net().to(device)
        f = feats.to(device).detach().requires_grad_()  # a leaf on each device
        x = SparseTensor.from_batch(coords.to(device), f)
        out = net(x)
        out.features.square().sum().backward()
        grads = [p.grad.cpu() for p in net.parameters()]
        results[device] = (
            out.coords.cpu(),
            out.to_input_order().detach().cpu(),
            f.grad.cpu(),
            grads,
        )
    (c0, o0, g0, w0), (c1, o1, g1, w1) = results["cpu"], results["cuda"]
    assert torch.equal(c0, c1)
    assert max_err(o0, o1) < TOL and max_err(g0, g1) < TOL
    assert max(max_err(a, b) for a, b in zip(w0, w1, strict=True)) < TOL
