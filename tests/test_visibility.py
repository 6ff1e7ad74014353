"""The visibility interface: LUT trilinear interpolation and the artifact loader."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from larchain.core.artifacts import ArtifactError, ArtifactSpec, write_manifest
from larchain.core.visibility import VisibilityModel
from larchain.lut.interp import LutVisibility
from larchain.visibility import load_visibility

SHAPE = (4, 5, 6)  # voxels along x, y, z
VOXEL = 2.0  # cm
SIZE = tuple(n * VOXEL for n in SHAPE)
N_DET = 3


def centres(axis: int) -> np.ndarray:
    return (np.arange(SHAPE[axis]) + 0.5) * VOXEL


def make_dataset(values: np.ndarray | None = None, seed: int = 0) -> xr.Dataset:
    """A LUT-shaped Dataset (same variables, coords and attrs as the LUT stage writes)."""
    if values is None:
        values = np.random.default_rng(seed).uniform(0.01, 1.0, (*SHAPE, N_DET))
    return xr.Dataset(
        {"visibility": (("x", "y", "z", "detector"), values.astype(np.float32))},
        coords={
            "x": ("x", centres(0), {"units": "cm"}),
            "y": ("y", centres(1), {"units": "cm"}),
            "z": ("z", centres(2), {"units": "cm"}),
            "detector": ("detector", np.arange(N_DET)),
            "detector_name": ("detector", np.array([f"pd{i}" for i in range(N_DET)])),
            "detector_center": (
                ("detector", "xyz"),
                np.array([[0.0, 5.0, 6.0], [8.0, 5.0, 6.0], [4.0, 0.0, 6.0]]),
            ),
        },
        attrs={"geometry": json.dumps({"size": list(SIZE)})},
    )


def table_of(ds: xr.Dataset) -> np.ndarray:
    """[nx, ny, nz, D] float64 copy of the (float32) table."""
    return ds["visibility"].transpose("x", "y", "z", "detector").values.astype(np.float64)


def trilinear_reference(table: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Hand-written trilinear interpolation (float64) for points inside the centre box."""
    u = (p - VOXEL / 2) / VOXEL  # continuous voxel index
    i0 = np.minimum(np.floor(u).astype(int), np.array(SHAPE) - 2)
    f = u - i0
    out = np.zeros((len(p), table.shape[-1]))
    for corner in np.ndindex(2, 2, 2):
        c = np.array(corner)
        w = np.prod(np.where(c == 1, f, 1.0 - f), axis=1)
        idx = i0 + c
        out += w[:, None] * table[idx[:, 0], idx[:, 1], idx[:, 2]]
    return out


def close(actual: torch.Tensor, desired: torch.Tensor, rtol: float = 1e-7, atol: float = 0.0):
    """assert_allclose on tensors (numpy's: torch.testing costs a second to import)."""
    np.testing.assert_allclose(
        actual.detach().cpu().numpy(), desired.detach().cpu().numpy(), rtol=rtol, atol=atol
    )


def centre_points() -> torch.Tensor:
    mesh = np.meshgrid(*(centres(a) for a in range(3)), indexing="ij")
    return torch.tensor(np.stack([m.ravel() for m in mesh], axis=1))


def inside_points(n: int, seed: int = 1) -> torch.Tensor:
    """Random points in the box spanned by the outermost voxel centres."""
    rng = np.random.default_rng(seed)
    lo, hi = VOXEL / 2, np.array(SIZE) - VOXEL / 2
    return torch.tensor(rng.uniform(lo, hi, (n, 3)))


@pytest.fixture
def ds() -> xr.Dataset:
    return make_dataset()


def test_interface_is_abstract():
    with pytest.raises(TypeError):
        VisibilityModel()  # type: ignore[abstract]

    class NoForward(VisibilityModel):
        @property
        def n_detectors(self) -> int:
            return 1

    with pytest.raises(TypeError):
        NoForward()  # type: ignore[abstract]


def test_shapes_dtypes_and_metadata(ds):
    m = LutVisibility.from_dataset(ds)
    assert isinstance(m, VisibilityModel)
    assert m.n_detectors == N_DET
    assert m.grid_shape == SHAPE
    assert m.detector_names == ["pd0", "pd1", "pd2"]
    assert m.geometry == {"size": list(SIZE)}
    assert m.device == torch.device("cpu")
    out = m(inside_points(17).float())
    assert out.shape == (17, N_DET) and out.dtype == torch.float32
    assert (out >= 0).all()
    # Points of another dtype are accepted; the output has the table's dtype.
    assert m(inside_points(2)).dtype == torch.float32
    with pytest.raises(ValueError, match=r"\[N, 3\]"):
        m(torch.zeros(4, 2))


def test_exact_at_voxel_centres(ds):
    table = table_of(ds)
    expected = table.reshape(-1, N_DET)
    # float64: exact to double rounding.
    m64 = LutVisibility.from_dataset(ds, dtype=torch.float64)
    np.testing.assert_allclose(m64(centre_points()).numpy(), expected, rtol=0, atol=1e-12)
    # float32: grid_sample un-normalises the coordinate in float32, so at most a few ulp.
    m32 = LutVisibility.from_dataset(ds)
    got = m32(centre_points().float()).numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=4 * np.finfo(np.float32).eps)


def test_trilinear_between_centres(ds):
    table = table_of(ds)
    m = LutVisibility.from_dataset(ds, dtype=torch.float64)
    # The middle of a cell of 8 centres is their mean.
    mid = torch.tensor([[2.0, 4.0, 6.0]], dtype=torch.float64)  # between centres 1,3 / 3,5 / 5,7 cm
    np.testing.assert_allclose(m(mid).numpy()[0], table[0:2, 1:3, 2:4].mean(axis=(0, 1, 2)))
    # One point by hand: u = (1.5, 0.25, 4.0) -> x halfway, y a quarter, z on a centre plane.
    p = torch.tensor([[4.0, 1.5, 9.0]], dtype=torch.float64)
    hand = (
        0.5 * 0.75 * table[1, 0, 4]
        + 0.5 * 0.25 * table[1, 1, 4]
        + 0.5 * 0.75 * table[2, 0, 4]
        + 0.5 * 0.25 * table[2, 1, 4]
    )
    np.testing.assert_allclose(m(p).numpy()[0], hand, rtol=1e-12)
    # Random points against an independent implementation, both dtypes.
    pts = inside_points(200)
    ref = trilinear_reference(table, pts.numpy())
    np.testing.assert_allclose(m(pts).numpy(), ref, rtol=1e-12)
    m32 = LutVisibility.from_dataset(ds)
    np.testing.assert_allclose(m32(pts.float()).numpy(), ref, rtol=1e-5, atol=1e-6)


def test_linear_table_reproduced_everywhere_inside():
    x, y, z = np.meshgrid(centres(0), centres(1), centres(2), indexing="ij")
    coef = np.array([[0.1, 0.02, -0.01, 0.03], [0.5, -0.04, 0.0, 0.01], [0.2, 0.0, 0.05, 0.0]])
    values = np.stack([c[0] + c[1] * x + c[2] * y + c[3] * z for c in coef], axis=-1)
    m = LutVisibility.from_dataset(make_dataset(values + 1.0), dtype=torch.float64)
    pts = inside_points(100, seed=3)
    p = pts.numpy()
    # Values are stored as float32 in the Dataset: compare at that precision.
    expect = 1.0 + coef[:, 0] + p @ coef[:, 1:].T
    np.testing.assert_allclose(m(pts).numpy(), expect, rtol=1e-6)


def test_clamped_outside_centres(ds):
    m = LutVisibility.from_dataset(ds, dtype=torch.float64)
    table = table_of(ds)
    inner = torch.tensor([[1.0, 4.2, 7.3]])  # x on the first centre plane
    for x in (0.0, 0.5, -10.0):  # the half voxel at the wall, and outside the volume
        outer = inner.clone()
        outer[0, 0] = x
        assert torch.equal(m(outer), m(inner))
    far = torch.tensor([[100.0, 100.0, 100.0], [-5.0, -5.0, -5.0]])
    np.testing.assert_allclose(m(far).numpy(), [table[-1, -1, -1], table[0, 0, 0]], rtol=1e-12)
    # Along a clamped axis the gradient is zero; along the others it is not.
    p = torch.tensor([[-3.0, 4.2, 7.3]], requires_grad=True)
    m(p).sum().backward()
    assert p.grad is not None
    assert p.grad[0, 0] == 0 and (p.grad[0, 1:] != 0).all()


def test_gradient_matches_finite_differences_linear_in_x():
    slopes = np.array([0.05, -0.02, 0.11])
    x = centres(0)[:, None, None, None]
    values = np.broadcast_to(1.0 + slopes * x, (*SHAPE, N_DET)).copy()
    m = LutVisibility.from_dataset(make_dataset(values), dtype=torch.float64)
    pts = inside_points(20, seed=4)
    weights = torch.tensor([1.0, 2.0, -0.5], dtype=torch.float64)

    def objective(p: torch.Tensor) -> torch.Tensor:
        return (m(p) * weights).sum(dim=1)

    p = pts.clone().requires_grad_(True)
    objective(p).sum().backward()
    assert p.grad is not None
    h = 1e-4
    fd = torch.stack(
        [
            (objective(pts + h * e) - objective(pts - h * e)) / (2 * h)
            for e in torch.eye(3, dtype=torch.float64)
        ],
        dim=1,
    )
    close(p.grad, fd, rtol=1e-6, atol=1e-8)
    slope = float((slopes.astype(np.float32) * weights.numpy()).sum())
    close(p.grad[:, 0], torch.full((20,), slope, dtype=torch.float64), 1e-6, 1e-7)


def test_jacobian_matches_finite_differences_random_table(ds):
    """Every detector's gradient, points kept away from cell boundaries (where the
    piecewise-linear interpolant has kinks)."""
    m = LutVisibility.from_dataset(ds, dtype=torch.float64)
    rng = np.random.default_rng(5)
    cell = rng.integers(0, np.array(SHAPE) - 1, (8, 3))
    frac = rng.uniform(0.2, 0.8, (8, 3))
    pts = torch.tensor((cell + frac + 0.5) * VOXEL)
    h = 1e-5
    for d in range(N_DET):
        p = pts.clone().requires_grad_(True)
        m(p)[:, d].sum().backward()
        assert p.grad is not None
        fd = torch.stack(
            [
                (m(pts + h * e)[:, d] - m(pts - h * e)[:, d]) / (2 * h)
                for e in torch.eye(3, dtype=torch.float64)
            ],
            dim=1,
        )
        close(p.grad, fd, rtol=1e-6, atol=1e-9)


def test_evaluate_batched_equals_forward(ds):
    m = LutVisibility.from_dataset(ds)
    pts = inside_points(50).float().requires_grad_(True)
    full = m(pts)
    batched = m.evaluate(pts, batch_size=7)
    assert not batched.requires_grad
    assert batched.device == pts.device
    assert torch.equal(batched, full.detach())
    empty = m.evaluate(torch.zeros(0, 3))
    assert empty.shape == (0, N_DET)
    with pytest.raises(ValueError):
        m.evaluate(pts, batch_size=0)


def test_dimension_order_of_dataset_is_irrelevant(ds):
    a = LutVisibility.from_dataset(ds)
    b = LutVisibility.from_dataset(ds.transpose("detector", "xyz", "z", "x", "y"))
    pts = inside_points(30).float()
    assert torch.equal(a(pts), b(pts))


def test_irregular_grid_refused(ds):
    bad = ds.assign_coords(x=np.array([1.0, 3.0, 5.5, 7.0]))
    with pytest.raises(ValueError, match="regular"):
        LutVisibility.from_dataset(bad)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(ds):
    cpu = LutVisibility.from_dataset(ds)
    gpu = LutVisibility.from_dataset(ds, device="cuda")
    assert gpu.device.type == "cuda"
    pts = inside_points(1000).float()
    out = gpu.evaluate(pts, batch_size=128)
    assert out.device == pts.device
    close(out, cpu(pts), rtol=1e-6, atol=1e-7)
    p = pts.cuda().requires_grad_(True)
    gpu(p).sum().backward()
    q = pts.clone().requires_grad_(True)
    cpu(q).sum().backward()
    close(p.grad, q.grad, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="device"):
        gpu(pts)


def write_artifact(root: Path, stage: str, ds: xr.Dataset, name: str = "lut.nc") -> Path:
    spec = ArtifactSpec(stage=stage, config={}, code_version="1", root=str(root))
    directory = Path(spec.path)
    directory.mkdir(parents=True)
    ds.to_netcdf(directory / name, engine="h5netcdf")
    write_manifest(spec, [directory / name], seed=0, wall_time_s=0.0)
    return directory


def test_load_visibility_lut_artifact(tmp_path, ds):
    directory = write_artifact(tmp_path / "results", "lut", ds)
    m = load_visibility(directory)
    assert isinstance(m, LutVisibility)
    pts = inside_points(25).float()
    assert torch.equal(m(pts), LutVisibility.from_dataset(ds)(pts))
    assert isinstance(load_visibility(str(directory), device="cpu"), LutVisibility)


def test_load_visibility_refuses_corrupt_artifact(tmp_path, ds):
    directory = write_artifact(tmp_path / "results", "lut", ds)
    lut = directory / "lut.nc"
    data = bytearray(lut.read_bytes())
    data[len(data) // 2] ^= 0xFF
    lut.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="sha256"):
        load_visibility(directory)
    lut.unlink()
    with pytest.raises(ArtifactError, match="missing"):
        load_visibility(directory)
    with pytest.raises(ArtifactError, match="manifest"):
        load_visibility(tmp_path / "nowhere")


def test_load_visibility_unknown_stage(tmp_path, ds):
    directory = write_artifact(tmp_path / "results", "calib", ds, name="calib.nc")
    with pytest.raises(ValueError, match="'calib'") as info:
        load_visibility(directory)
    assert str(directory) in str(info.value)
