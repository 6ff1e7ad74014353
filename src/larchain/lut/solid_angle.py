"""Exact solid angles of flat rectangular and circular photodetectors, in PyTorch.

Used by the optical Monte Carlo's next-event estimator, where every photon scoring
step needs the solid angle of each detector seen from the scattering point. Points are
given in the detector's LOCAL frame: the detector lies in the plane ``h = 0`` centred at
the origin and a point is ``(u, v, h)``, with ``h > 0`` its distance from that plane.

All functions are vectorised (broadcasting), differentiable and device-agnostic. They
compute in float64 whatever the input dtype (the closed forms subtract O(1) terms, which
float32 could not afford) and return the promoted floating dtype of the inputs, so the
device must support float64 (CPU and CUDA do; MPS does not).

Accuracy (float64): the disk is within ~2e-14 relative of a 50-digit reference everywhere,
including the rim ``r0 = R``, the axis, ``h -> 0`` and the far field. The rectangle is as
good while the foot of the perpendicular is inside it; outside, its four corner terms
cancel and the relative error is ~1e-16 * 2 pi / Omega (e.g. 1e-10 at Omega = 1e-6).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["disk_solid_angle", "rectangle_solid_angle"]

_F64 = torch.float64

# Carlson duplication steps. Each step shrinks the spread of the arguments by 4; 12
# steps reach float64 round-off for every argument set used here, down to a parameter
# k'^2 = 1e-300 (tested against scipy.special.elliprf / elliprd).
_N_DUPLICATION = 12
# Floor for k'^2 and h / R: keeps K(k) finite (it multiplies h, so the value is unchanged)
# when they underflow, e.g. h = 0 after a float32 round-trip, where the limits 2 pi, pi, 0
# come out instead of nan.
_TINY = 1e-300

# Beyond this distance (in disk radii) the disk uses its exterior multipole series,
# which avoids the O(1) cancellation of the closed form (relative error would grow like
# 1e-16 * (d / R)^3). With d >= 4 R, _N_SERIES terms converge to < 1e-20 relative.
_FAR_DISTANCE = 4.0
_N_SERIES = 20


def _output_dtype(*values: Tensor | float) -> torch.dtype:
    """Promoted floating dtype of the tensor arguments (Python floats do not count)."""
    dtype: torch.dtype | None = None
    for value in values:
        if isinstance(value, Tensor):
            dtype = value.dtype if dtype is None else torch.promote_types(dtype, value.dtype)
    if dtype is None or not dtype.is_floating_point:
        return torch.get_default_dtype()
    return dtype


def _device(*values: Tensor | float) -> torch.device:
    for value in values:
        if isinstance(value, Tensor):
            return value.device
    return torch.device("cpu")


def _sqrt0(x: Tensor) -> Tensor:
    """sqrt with a zero (not infinite) derivative at 0, so that 0 * inf never reaches the
    gradient (e.g. cos(xi)^2 = 0 on the disk rim)."""
    positive = x > 0
    return torch.where(positive, torch.where(positive, x, 1.0).sqrt(), 0.0)


def _carlson_rf_rd(x: Tensor, y: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
    """Carlson's symmetric integrals ``(R_F(x, y, z), R_D(x, y, z))``, ``R_D = R_J(x, y, z, z)``.

    Needs z > 0 and at most one of x, y zero. Duplication algorithm (Carlson 1995, Numer.
    Algorithms 10, 13; DLMF 19.36.1-2) with a fixed number of steps, so it vectorises
    without data-dependent control flow; R_F and R_D share the duplication sequence, so
    both come for the price of one. R_J with p = z is the only third-kind integral the
    disk needs (see :func:`_disk_closed_form`).
    """
    acc = torch.zeros_like(z)  # R_D's sum of 4^-m / (sqrt(z_m) (z_m + lambda_m))
    fac = 1.0
    for step in range(_N_DUPLICATION):
        sqrt = _sqrt0 if step == 0 else torch.sqrt  # later arguments are all > 0
        sx, sy, sz = sqrt(x), sqrt(y), z.sqrt()
        lam = sx * (sy + sz) + sy * sz
        acc = acc + fac / (sz * (z + lam))
        fac *= 0.25
        x, y, z = 0.25 * (x + lam), 0.25 * (y + lam), 0.25 * (z + lam)

    # Fifth-order Taylor series about the common limit.
    a = (x + y + z) / 3.0
    dx, dy = (a - x) / a, (a - y) / a
    dz = -(dx + dy)
    e2 = dx * dy - dz * dz
    e3 = dx * dy * dz
    rf = (1.0 - e2 / 10.0 + e3 / 14.0 + e2 * e2 / 24.0 - 3.0 * e2 * e3 / 44.0) / a.sqrt()

    a = (x + y + 3.0 * z) / 5.0
    dx, dy = (a - x) / a, (a - y) / a
    dz = -(dx + dy) / 3.0
    ea = dx * dy
    eb = dz * dz
    ec = ea - eb
    ed = ea - 6.0 * eb
    ee = ed + 2.0 * ec
    series = (
        1.0
        + ed * (-3.0 / 14.0 + (9.0 / 88.0) * ed - (9.0 / 52.0) * dz * ee)
        + dz * (ee / 6.0 + dz * (-(9.0 / 22.0) * ec + dz * (3.0 / 26.0) * ea))
    )
    rd = 3.0 * acc + fac * series / (a * a.sqrt())
    return rf, rd


def rectangle_solid_angle(
    u: Tensor, v: Tensor, h: Tensor, half_u: float | Tensor, half_v: float | Tensor
) -> Tensor:
    """Solid angle (sr) of the rectangle ``|u'| <= half_u, |v'| <= half_v`` seen from
    ``(u, v, h)``, ``h > 0``.

    Exact: a rectangle with one corner at the foot of the perpendicular and sides a, b
    subtends ``atan(a b / (h sqrt(a^2 + b^2 + h^2)))``. That expression is odd in a and in
    b, so the sum over the four corner rectangles with signed sides ``half_u -+ u``,
    ``half_v -+ v`` is right whether the foot lies inside or outside the rectangle
    (outside, the terms partly cancel: see the module docstring for the accuracy).
    """
    dtype = _output_dtype(u, v, h, half_u, half_v)
    device = _device(u, v, h, half_u, half_v)
    u64, v64, h64, hu, hv = (
        torch.as_tensor(t, dtype=_F64, device=device) for t in (u, v, h, half_u, half_v)
    )
    total = torch.zeros((), dtype=_F64, device=device)
    for a in (hu - u64, hu + u64):
        for b in (hv - v64, hv + v64):
            # atan2 with a positive second argument is atan(ratio), but stays finite as
            # h -> 0. (Not hypot: its gradient is nan above a corner, a = b = 0.)
            total = total + torch.atan2(a * b, h64 * torch.sqrt(a * a + b * b + h64 * h64))
    return total.to(dtype)


def _disk_closed_form(rho: Tensor, z: Tensor) -> Tensor:
    """Disk of unit radius seen from radial offset ``rho`` and height ``z`` (Paxton 1959).

    ``Omega = 2 pi - pi Lambda0(xi, k) - 2 z K(k) / R_max`` inside the rim,
    ``pi - 2 z K / R_max`` on it and ``pi Lambda0 - 2 z K / R_max`` outside, with
    ``R_max = sqrt(z^2 + (1 + rho)^2)``, ``R_1 = sqrt(z^2 + (1 - rho)^2)``,
    ``k^2 = 4 rho / R_max^2``, ``k'^2 = R_1^2 / R_max^2``, ``xi = atan(z / |1 - rho|)`` and
    Heuman's lambda ``Lambda0 = 2/pi [E(k) F(xi, k') + K(k) E(xi, k') - K(k) F(xi, k')]``.

    This is the Paxton form with the complete integral of the third kind
    ``(1 - rho)/(1 + rho) Pi(4 rho/(1 + rho)^2, k)`` rewritten through Heuman's lambda
    (A&S 17.7.14): that term is 0 * infinity at the rim and jumps by 2 pi across it,
    whereas Lambda0 -> 1 there from both sides (xi -> pi/2), so the three branches join
    continuously with nothing singular left to evaluate. Every argument is
    formed from ratios of lengths (no 1 - k^2 cancellation), and rho -> 0 needs no special
    case (k -> 0 gives 2 pi (1 - z / sqrt(1 + z^2)) exactly).

    Carlson forms: K = R_F(0, k'^2, 1), E = K - k^2/3 R_D(0, k'^2, 1),
    F(xi, k') = s R_F(c^2, Delta^2, 1), E(xi, k') - F(xi, k') = -k'^2 s^3/3 R_D(c^2, Delta^2, 1)
    with s = sin xi = z / R_1, c = cos xi = |1 - rho| / R_1,
    Delta^2 = 1 - k'^2 s^2 = (1 + rho)^2 / R_max^2.
    """
    r_max = torch.hypot(z, 1.0 + rho)
    r_1 = torch.hypot(z, 1.0 - rho)
    k2 = 4.0 * rho / (r_max * r_max)
    kp2 = ((r_1 / r_max) ** 2).clamp_min(_TINY)
    s = z / r_1
    c2 = ((1.0 - rho) / r_1) ** 2
    delta2 = ((1.0 + rho) / r_max) ** 2
    zero = torch.zeros_like(kp2)
    one = torch.ones_like(kp2)

    k_complete, rd_complete = _carlson_rf_rd(zero, kp2, one)
    e_complete = k_complete - k2 / 3.0 * rd_complete
    rf_xi, rd_xi = _carlson_rf_rd(c2, delta2, one)
    f_incomplete = s * rf_xi
    e_minus_f = -kp2 * s**3 / 3.0 * rd_xi
    heuman = (2.0 / math.pi) * (e_complete * f_incomplete + k_complete * e_minus_f)

    # On the rim the value is pi, but d(pi Lambda0)/d rho (the same from either side) is
    # lost there: Lambda0 depends on |1 - rho|. Restore it with a term that is exactly 0:
    # dLambda0/dxi = 2/pi (E - k'^2 K sin^2 xi) / Delta, with Delta = k and
    # dxi/drho = -+1/z at the rim, and k = 2 / R_max there.
    # (Detached: only its value is needed, as it multiplies rho - 1 = 0.)
    rim_slope = (-(e_complete - kp2 * k_complete) * r_max / z).detach()
    # Branch by hand rather than as pi + sgn pi (1 - Lambda0): outside the rim and near
    # the plane Lambda0 -> 0, and pi - pi (1 - Lambda0) would cancel to O(1e-16) absolute.
    lam_term = torch.where(
        rho < 1.0,
        2.0 * math.pi - math.pi * heuman,
        torch.where(rho > 1.0, math.pi * heuman, math.pi + (rho - 1.0) * rim_slope),
    )
    return lam_term - 2.0 * z / r_max * k_complete


def _disk_far_series(q: Tensor, cos_theta: Tensor) -> Tensor:
    """Exterior expansion of the unit-disk solid angle at distance ``1/q`` (q < 1).

    ``Omega = 2 pi sum_l c_l q^(2l+2) P_(2l+1)(cos theta)`` with
    ``c_l = (-1)^l (2l+1)!! / (2^(l+1) (l+1)!)``: the unique axisymmetric harmonic that
    decays at infinity and matches the on-axis value ``2 pi (1 - 1/sqrt(1 + q^2))``.
    """
    q2 = q * q
    p_prev = torch.ones_like(cos_theta)  # P_0
    p_cur = cos_theta  # P_1
    power = q2
    coeff = 0.5  # c_0
    total = coeff * power * p_cur
    n = 1  # degree of p_cur
    for ell in range(1, _N_SERIES):
        for _ in range(2):  # advance P_n -> P_(n+2)
            p_prev, p_cur = p_cur, ((2 * n + 1) * cos_theta * p_cur - n * p_prev) / (n + 1)
            n += 1
        coeff *= -(2 * ell + 1) / (2.0 * (ell + 1))
        power = power * q2
        total = total + coeff * power * p_cur
    return 2.0 * math.pi * total


def disk_solid_angle(u: Tensor, v: Tensor, h: Tensor, radius: float | Tensor) -> Tensor:
    """Solid angle (sr) of the disk of ``radius`` (> 0) seen from ``(u, v, h)``, ``h > 0``.

    Exact for any radial offset ``r0 = sqrt(u^2 + v^2)`` (inside, on and outside the rim):
    Paxton's closed form with complete and incomplete elliptic integrals written as
    Carlson's R_F / R_D (see :func:`_disk_closed_form`); beyond ``4 R`` from the centre,
    where that form cancels to ~1e-16 (d/R)^3 relative, the convergent exterior multipole
    series is used instead (continuous to round-off at the switch).
    """
    dtype = _output_dtype(u, v, h, radius)
    device = _device(u, v, h, radius)
    u64, v64, h64, r64 = torch.broadcast_tensors(
        *(torch.as_tensor(t, dtype=_F64, device=device) for t in (u, v, h, radius))
    )
    # r0 = hypot(u, v) has an undefined gradient on the axis; pin it to 0 there.
    off_axis = (u64 != 0) | (v64 != 0)
    r0 = torch.where(
        off_axis,
        torch.hypot(torch.where(off_axis, u64, 1.0), torch.where(off_axis, v64, 1.0)),
        0.0,
    )
    rho = r0 / r64
    z = (h64 / r64).clamp_min(_TINY)
    dist = torch.hypot(rho, z)
    far = dist >= _FAR_DISTANCE
    # Each branch only sees inputs on which it is finite, so torch.where's gradient of the
    # unselected branch is 0 (not 0 * inf = nan).
    near_value = _disk_closed_form(torch.where(far, 0.0, rho), torch.where(far, 1.0, z))
    safe_dist = torch.where(far, dist, _FAR_DISTANCE)
    far_value = _disk_far_series(1.0 / safe_dist, torch.where(far, z, 1.0) / safe_dist)
    return torch.where(far, far_value, near_value).to(dtype)
