"""Exact solid angles vs independent truth: numerical integration of h / r^3 dA (scipy
dblquad), scipy's elliptic integrals, symmetry and Gauss-law identities."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from scipy import integrate, special

from larchain.lut.solid_angle import (
    _carlson_rf_rd,
    _disk_closed_form,
    _disk_far_series,
    disk_solid_angle,
    rectangle_solid_angle,
)

F64 = torch.float64
RTOL_QUAD = 1e-11  # dblquad's requested relative accuracy
RTOL = 1e-10  # what the closed forms must match it to (measured: <= 5e-13)


def _t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=F64)


# --- independent references -------------------------------------------------------------


def _disk_quad(r0: float, h: float, radius: float) -> float:
    """Integral of h rho / (rho^2 + h^2)^{3/2} in polar coordinates centred on the foot of
    the perpendicular, so the h -> 0 peak sits on a boundary where quad resolves it."""

    def integrand(rho: float, _phi: float) -> float:
        return h * rho / (rho * rho + h * h) ** 1.5

    def half_chord(phi: float) -> tuple[float, float]:
        b = r0 * math.cos(phi)  # ray p + t e(phi) meets the circle at t = -b -+ sqrt(disc)
        return -b, math.sqrt(max(b * b + radius * radius - r0 * r0, 0.0))

    if r0 <= radius:
        val, _ = integrate.dblquad(
            integrand,
            0.0,
            2.0 * math.pi,
            0.0,
            lambda phi: sum(half_chord(phi)),
            epsabs=0.0,
            epsrel=RTOL_QUAD,
        )
        return val
    half_angle = math.asin(radius / r0)
    val, _ = integrate.dblquad(
        integrand,
        math.pi - half_angle,
        math.pi + half_angle,
        lambda phi: half_chord(phi)[0] - half_chord(phi)[1],
        lambda phi: sum(half_chord(phi)),
        epsabs=0.0,
        epsrel=RTOL_QUAD,
    )
    return val


def _rect_quad(u: float, v: float, h: float, half_u: float, half_v: float) -> float:
    """Integral of h / r^3 over the rectangle, split at the foot of the perpendicular."""

    def integrand(y: float, x: float) -> float:
        return h / ((x - u) ** 2 + (y - v) ** 2 + h * h) ** 1.5

    xs = sorted({-half_u, half_u, min(max(u, -half_u), half_u)})
    ys = sorted({-half_v, half_v, min(max(v, -half_v), half_v)})
    total = 0.0
    for x0, x1 in zip(xs[:-1], xs[1:], strict=True):
        for y0, y1 in zip(ys[:-1], ys[1:], strict=True):
            val, _ = integrate.dblquad(integrand, x0, x1, y0, y1, epsabs=0.0, epsrel=RTOL_QUAD)
            total += val
    return total


def _disk_paxton_scipy(r0: float, h: float, radius: float) -> float:
    """Paxton's form with the complete third-kind integral, evaluated with scipy:
    2 pi [r0 < R] - 2 h / R_max [K(k) + (R - r0)/(R + r0) Pi(n, k)], r0 != R."""
    r_max = math.hypot(h, r0 + radius)
    m = 4.0 * r0 * radius / r_max**2
    n = 4.0 * r0 * radius / (r0 + radius) ** 2
    k = special.ellipk(m)
    pi3 = special.elliprf(0.0, 1.0 - m, 1.0) + n / 3.0 * special.elliprj(0.0, 1.0 - m, 1.0, 1.0 - n)
    inside = 2.0 * math.pi if r0 < radius else 0.0
    return inside - 2.0 * h / r_max * (k + (radius - r0) / (radius + r0) * pi3)


# --- Carlson integrals -------------------------------------------------------------------


def test_carlson_forms_match_scipy() -> None:
    rng = np.random.default_rng(7)
    # Includes one zero argument with a second one tiny (k'^2 -> 0: K(k) -> infinity).
    x = np.concatenate([[0.0, 0.0, 1e-200, 0.3], rng.uniform(0.0, 5.0, 60)])
    y = np.concatenate([[1e-30, 1e-300, 0.0, 0.3], 10.0 ** rng.uniform(-20, 2, 60)])
    z = np.concatenate([[1.0, 1.0, 1.0, 0.3], rng.uniform(0.1, 3.0, 60)])
    rf, rd = (t.numpy() for t in _carlson_rf_rd(*(torch.from_numpy(a) for a in (x, y, z))))
    np.testing.assert_allclose(rf, special.elliprf(x, y, z), rtol=1e-14)
    np.testing.assert_allclose(rd, special.elliprd(x, y, z), rtol=1e-14)
    np.testing.assert_allclose(rd, special.elliprj(x, y, z, z), rtol=1e-13)
    # K(k) = R_F(0, 1 - k^2, 1), the form the disk uses.
    m = np.concatenate([[0.0, 1.0 - 1e-15], rng.uniform(0.0, 1.0, 30)])
    ones = torch.ones(m.size, dtype=F64)
    k_carlson, _ = _carlson_rf_rd(0.0 * ones, torch.from_numpy(1.0 - m), ones)
    np.testing.assert_allclose(k_carlson.numpy(), special.ellipk(m), rtol=1e-14)


# --- disk ---------------------------------------------------------------------------------


def test_disk_on_axis() -> None:
    h = _t(1e-9, 1e-3, 0.1, 1.0, 3.0, 3.99, 4.01, 50.0, 1e4, 1e7)
    for radius in (0.5, 1.0, 7.0):
        s = torch.sqrt(h * h + radius**2)
        # 2 pi (1 - h / s), written without the far-field cancellation.
        expected = 2.0 * math.pi * radius**2 / (s * (s + h))
        got = disk_solid_angle(torch.zeros_like(h), torch.zeros_like(h), h, radius)
        torch.testing.assert_close(got, expected, rtol=1e-13, atol=0.0)


DISK_POINTS = [  # (r0 / R, h / R)
    (0.3, 0.5),  # foot inside
    (0.9, 2.0),
    (1.0, 0.5),  # foot on the rim
    (1.0 - 1e-9, 0.3),
    (1.0 + 1e-9, 0.3),
    (1.7, 0.5),  # foot outside
    (3.0, 2.5),  # either side of the far-series switch (distance 4 R)
    (3.0, 2.7),
    (30.0, 40.0),  # far away
    (200.0, 5.0),
    (0.5, 1e-3),  # very close to the plane
    (1.0, 1e-3),
    (0.999, 1e-3),
    (1.001, 1e-3),
    (2.0, 1e-3),
]


def test_disk_vs_numerical_integration() -> None:
    radius = 0.25
    r0 = np.array([p[0] for p in DISK_POINTS]) * radius
    h = np.array([p[1] for p in DISK_POINTS]) * radius
    phi = np.linspace(0.1, 6.0, r0.size)  # arbitrary azimuth of the foot
    got = disk_solid_angle(
        torch.from_numpy(r0 * np.cos(phi)),
        torch.from_numpy(r0 * np.sin(phi)),
        torch.from_numpy(h),
        radius,
    ).numpy()
    expected = np.array([_disk_quad(a, b, radius) for a, b in zip(r0, h, strict=True)])
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=0.0)


def test_disk_vs_paxton_form_with_scipy_elliptic_integrals() -> None:
    rng = np.random.default_rng(3)
    radius = rng.uniform(0.5, 1.5, 200)
    # Not within 5 % of the rim: there scipy's Pi(n -> 1) times (R - r0) -> 0 loses up to
    # ~1e-7 relative (the module's Heuman-lambda form does not; the quad test covers it).
    r0 = radius * np.where(
        rng.uniform(size=200) < 0.5, rng.uniform(0.0, 0.95, 200), rng.uniform(1.05, 3.0, 200)
    )
    h = 10.0 ** rng.uniform(-3, 0.5, 200)
    got = disk_solid_angle(
        torch.from_numpy(r0),
        torch.zeros(200, dtype=F64),
        torch.from_numpy(h),
        torch.from_numpy(radius),
    ).numpy()
    expected = np.array([_disk_paxton_scipy(*p) for p in zip(r0, h, radius, strict=True)])
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0.0)


def test_disk_continuous_at_rim_and_series_switch() -> None:
    delta = 1e-10
    for h in (1e-6, 0.3, 2.0):
        r0 = _t(1.0 - delta, 1.0, 1.0 + delta)
        om = disk_solid_angle(r0, torch.zeros(3, dtype=F64), torch.full((3,), h, dtype=F64), 1.0)
        # Smooth through the rim: |dOmega/dr0| <= 2 / h (the half-plane edge's
        # pi + 2 atan(x / h)), curvature O(delta^2 / h^2).
        assert abs(om[0] - om[2]) < 4.0 * delta / h * (1.0 + 1e-3)
        assert abs(om[0] + om[2] - 2.0 * om[1]) < 1e-12
    # At distance 4 R the implementation switches from the closed form to the exterior
    # multipole series: both must agree there.
    angles = torch.linspace(0.0, 0.5 * math.pi - 1e-6, 7, dtype=F64)
    rho, z = 4.0 * torch.sin(angles), 4.0 * torch.cos(angles)
    closed = _disk_closed_form(rho, z)
    series = _disk_far_series(torch.full_like(z, 0.25), z / 4.0)
    torch.testing.assert_close(series, closed, rtol=1e-13, atol=0.0)


def test_disk_far_field() -> None:
    radius = 0.1
    d = 1e3 * radius
    angles = _t(0.0, 0.5, 1.2, 1.5)
    h, r0 = d * torch.cos(angles), d * torch.sin(angles)
    got = disk_solid_angle(r0, torch.zeros_like(r0), h, radius)
    torch.testing.assert_close(got, math.pi * radius**2 * h / d**3, rtol=1e-5, atol=0.0)


# --- rectangle ----------------------------------------------------------------------------

RECT_POINTS = [  # (u, v, h) for the rectangle |u| <= 0.5, |v| <= 0.2
    (0.0, 0.0, 0.3),
    (0.2, -0.1, 0.05),  # foot inside
    (0.5, 0.1, 0.4),  # on an edge
    (0.5, 0.2, 0.1),  # on a corner
    (1.3, 0.05, 0.2),  # outside in u only
    (-0.9, 0.7, 0.6),  # outside in both
    (0.1, 0.05, 1e-3),  # very close to the plane
    (0.7, -0.3, 1e-2),
    (8.0, -5.0, 3.0),  # far
]


def test_rectangle_vs_numerical_integration() -> None:
    half_u, half_v = 0.5, 0.2
    u, v, h = (torch.tensor(c, dtype=F64) for c in zip(*RECT_POINTS, strict=True))
    got = rectangle_solid_angle(u, v, h, half_u, half_v).numpy()
    expected = np.array([_rect_quad(*p, half_u, half_v) for p in RECT_POINTS])
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=0.0)


def _cube_faces(point: torch.Tensor, half: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Solid angles of the six faces of the cube [-half, half]^3 and whether the point is
    on the outer side of each face's plane."""
    omegas, outer = [], []
    for axis in range(3):
        others = [a for a in range(3) if a != axis]
        for sign in (-1.0, 1.0):
            offset = sign * point[axis] - half  # > 0: outer side of this face
            om = rectangle_solid_angle(point[others[0]], point[others[1]], offset.abs(), half, half)
            omegas.append(om)
            outer.append(offset > 0)
    return torch.stack(omegas), torch.stack(outer)


def test_rectangle_cube_identities() -> None:
    # Centre of a cube: each face is exactly 4 pi / 6.
    om, _ = _cube_faces(_t(0.0, 0.0, 0.0))
    torch.testing.assert_close(
        om, torch.full((6,), 4.0 * math.pi / 6.0, dtype=F64), rtol=1e-15, atol=0.0
    )
    # Any interior point: the faces close around it (Gauss), 4 pi in all.
    for p in ([0.3, -0.7, 0.9], [0.99, 0.99, -0.99], [-0.2, 0.0, 1.0 - 1e-9]):
        om, _ = _cube_faces(_t(*p))
        assert abs(om.sum().item() - 4.0 * math.pi) < 1e-12
    # Exterior point: the faces seen from outside and those seen from inside cover the same
    # cone (signed total 0); the inner ones have their foot outside the face.
    for p in ([3.0, 0.5, 0.2], [-2.0, 1.5, 0.3], [1.5, -2.5, 4.0]):
        om, outer = _cube_faces(_t(*p))
        front, back = om[outer].sum().item(), om[~outer].sum().item()
        assert abs(front - back) < 1e-13 * front, (front, back)


def test_rectangle_far_field() -> None:
    half_u, half_v = 0.3, 0.8
    d = 1e3
    angles = _t(0.0, 0.5, 1.2)
    h, u = d * torch.cos(angles), d * torch.sin(angles)
    got = rectangle_solid_angle(u, 0.5 * torch.ones_like(u), h, half_u, half_v)
    area = 4.0 * half_u * half_v
    torch.testing.assert_close(got, area * h / (d**2 + 0.25) ** 1.5, rtol=1e-5, atol=0.0)


# --- dtypes, batching, robustness, gradients ------------------------------------------


def test_dtypes_batching_and_broadcasting() -> None:
    rng = np.random.default_rng(11)
    n = 64
    u, v = (torch.from_numpy(rng.uniform(-2.0, 2.0, n)) for _ in range(2))
    h = torch.from_numpy(10.0 ** rng.uniform(-3, 1, n))
    radius = torch.from_numpy(rng.uniform(0.2, 1.5, n))

    disk64 = disk_solid_angle(u, v, h, radius)
    rect64 = rectangle_solid_angle(u, v, h, radius, 0.5 * radius)
    assert disk64.shape == rect64.shape == (n,)
    assert disk64.dtype == rect64.dtype == F64
    # Per-element radius == one call per element with a scalar radius.
    loop = torch.cat(
        [
            disk_solid_angle(u[i : i + 1], v[i : i + 1], h[i : i + 1], float(radius[i]))
            for i in range(n)
        ]
    )
    torch.testing.assert_close(disk64, loop, rtol=0.0, atol=0.0)

    # float32 in, float32 out, computed in float64 then rounded.
    disk32 = disk_solid_angle(u.float(), v.float(), h.float(), radius.float())
    rect32 = rectangle_solid_angle(
        u.float(), v.float(), h.float(), radius.float(), 0.5 * radius.float()
    )
    assert disk32.dtype == rect32.dtype == torch.float32
    ref32 = disk_solid_angle(
        u.float().double(), v.float().double(), h.float().double(), radius.float().double()
    )
    torch.testing.assert_close(disk32, ref32.float(), rtol=1.2e-7, atol=0.0)
    ref32 = rectangle_solid_angle(
        u.float().double(),
        v.float().double(),
        h.float().double(),
        radius.float().double(),
        0.5 * radius.float().double(),
    )
    torch.testing.assert_close(rect32, ref32.float(), rtol=1.2e-7, atol=0.0)

    # Broadcasting: (n, 1) points against (3,) radii.
    grid = disk_solid_angle(u[:, None], v[:, None], h[:, None], _t(0.3, 1.0, 2.0))
    assert grid.shape == (n, 3)
    torch.testing.assert_close(grid[:, 1], disk_solid_angle(u, v, h, 1.0))
    grid = rectangle_solid_angle(u[:, None], v[:, None], h[:, None], _t(0.3, 1.0, 2.0), 0.4)
    assert grid.shape == (n, 3)
    torch.testing.assert_close(grid[:, 2], rectangle_solid_angle(u, v, h, 2.0, 0.4))


def test_no_nan_or_inf_at_extremes() -> None:
    r0 = _t(0.0, 1e-300, 1e-12, 0.5, 1.0 - 1e-15, 1.0, 1.0 + 1e-15, 2.0, 3.999999, 4.0, 1e3, 1e150)
    h = _t(1e-300, 1e-12, 1e-3, 1.0, 4.0, 1e3, 1e150)
    r0, h = (t.reshape(-1) for t in torch.meshgrid(r0, h, indexing="ij"))
    r0.requires_grad_(True)
    h.requires_grad_(True)
    for om in (
        disk_solid_angle(r0, torch.zeros_like(r0), h, 1.0),
        rectangle_solid_angle(r0, 0.5 * r0, h, 1.0, 1.0),
    ):
        assert torch.isfinite(om).all()
        assert (om >= 0.0).all() and (om <= 2.0 * math.pi).all()
        grad_r0, grad_h = torch.autograd.grad(om.sum(), (r0, h))
        assert torch.isfinite(grad_r0).all() and torch.isfinite(grad_h).all()
    # float32 underflows the smallest h to 0: the h -> 0 limits come out, not nan.
    r0, h = r0.detach().float(), h.detach().float()
    keep = torch.isfinite(r0) & torch.isfinite(h)  # 1e150 is inf in float32
    r0, h = r0[keep], h[keep]
    assert (h == 0).any()
    for om in (
        disk_solid_angle(r0, torch.zeros_like(r0), h, 1.0),
        rectangle_solid_angle(r0, 0.5 * r0, h, 1.0, 1.0),
    ):
        assert torch.isfinite(om).all()
        assert (om >= 0.0).all() and (om <= 2.0 * math.pi).all()
    on_plane = disk_solid_angle(
        _t(0.5, 1.0, 1.5), torch.zeros(3, dtype=F64), torch.zeros(3, dtype=F64), 1.0
    )
    torch.testing.assert_close(on_plane, _t(2.0 * math.pi, math.pi, 0.0), rtol=0.0, atol=1e-12)


def test_gradcheck() -> None:
    def inputs(*values: float) -> tuple[torch.Tensor, ...]:
        return tuple(torch.tensor(x, dtype=F64, requires_grad=True) for x in values)

    # Rectangle: foot inside and outside.
    for point in ((0.2, -0.1, 0.4, 0.5, 0.3), (1.3, 0.7, 0.2, 0.5, 0.3)):
        assert torch.autograd.gradcheck(rectangle_solid_angle, inputs(*point))
    # Disk: generic points (r0 != R) inside, outside, close and beyond the series switch.
    for point in (
        (0.3, 0.2, 0.5, 1.0),
        (1.1, -0.6, 0.3, 1.0),
        (0.2, 0.1, 1e-2, 0.5),
        (4.0, 3.0, 2.0, 1.0),
    ):
        assert torch.autograd.gradcheck(disk_solid_angle, inputs(*point))


def test_gradient_on_branch_points() -> None:
    """Exactly on the disk rim (r0 = R), on the axis and above a rectangle corner the
    implementation switches branch or has a removable singularity: autograd must still
    give the true derivative (compared with central differences straddling the point)."""

    def check(
        fn: Callable[..., torch.Tensor], point: tuple[float, ...], step: float = 1e-6
    ) -> None:
        x = torch.tensor(point, dtype=F64, requires_grad=True)
        (grad,) = torch.autograd.grad(fn(*x.unbind()), x)
        for i in range(len(point)):
            e = torch.zeros(len(point), dtype=F64)
            e[i] = step
            fd = (fn(*(x.detach() + e).unbind()) - fn(*(x.detach() - e).unbind())) / (2 * step)
            assert abs(grad[i].item() - fd.item()) < 1e-6 * max(1.0, abs(fd.item())), (i, grad, fd)

    check(disk_solid_angle, (0.6, 0.8, 0.3, 1.0))  # r0 = R exactly
    check(disk_solid_angle, (0.0, 0.5, 0.05, 0.5))  # r0 = R, close to the plane
    check(disk_solid_angle, (0.0, 0.0, 0.7, 1.3))  # on the axis
    check(rectangle_solid_angle, (0.5, 0.2, 0.3, 0.5, 0.2))  # above a corner
