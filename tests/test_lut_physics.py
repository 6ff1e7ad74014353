"""LUT optical Monte Carlo against independent truth: closed-form solid angles, exp(-r/L),
the Rayleigh phase function, probability conservation, Geant4, and analog vs NEE."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from larchain.core.geometry import WALLS, Detector, in_plane_axes
from larchain.lut.transport import (
    FAR_FACTOR,
    MID_FACTOR,
    Optics,
    PhotodetectorSet,
    rotate_rows,
    sample_rayleigh_cos,
    simulate,
    voxel_emission_probability,
)

CPU = torch.device("cpu")
TINY = 1e-4  # cm: a "voxel" this small is a point source


def box(size, pds, reflectivity=0.0, reflection="specular"):
    return Detector.from_config(
        {
            "size": size,
            "photodetectors": pds,
            "wall_reflectivity": reflectivity,
            "reflection": reflection,
        }
    )


def run(det, point, n, optics, method, seed=1, vsize=TINY, quadrature=4, dtype=torch.float32):
    pdset = PhotodetectorSet(det, CPU, dtype, quadrature)
    origin = torch.tensor([point], dtype=dtype) - 0.5 * vsize
    t = simulate(
        origin,
        torch.full((3,), vsize, dtype=dtype),
        n,
        pdset,
        optics,
        reflectivity=det.wall_reflectivity,
        reflection=det.reflection,
        method=method,
        seed=seed,
        batch_photons=1 << 17,
    )
    vis = t.score[0] / n
    err = np.sqrt(np.clip(t.score_sq[0] / n - vis**2, 0, None) / n)
    return vis, err, t


def rect_solid_angle_closed(u, v, h, a, b):
    """Independent closed form: signed sum of corner rectangles, atan(xy / (h sqrt(...)))."""
    tot = 0.0
    for x in (a - u, a + u):
        for y in (b - v, b + v):
            tot += math.atan(x * y / (h * math.sqrt(x * x + y * y + h * h)))
    return tot


def disk_solid_angle_numeric(r0, h, radius):
    """Independent truth for an off-axis disk: integrate h / r^3 over its area."""
    val, _ = integrate.dblquad(
        lambda r, phi: h * r / (h * h + r * r + r0 * r0 - 2 * r * r0 * math.cos(phi)) ** 1.5,
        0,
        2 * math.pi,
        0,
        radius,
        epsabs=0,
        epsrel=1e-10,
    )
    return val


NO_MEDIUM = Optics(None, None)


@pytest.mark.parametrize("method", ["analog", "nee"])
def test_rectangle_solid_angle_fraction(method):
    pds = [
        {
            "wall": "x-",
            "center": [0, 50, 50],
            "shape": "rectangle",
            "size": [30, 20],
            "efficiency": 1.0,
        }
    ]
    det = box([100, 100, 100], pds)
    point = (20.0, 58.0, 43.0)  # foot of the perpendicular inside the rectangle
    truth = rect_solid_angle_closed(58 - 50, 43 - 50, 20.0, 15.0, 10.0) / (4 * math.pi)
    n = 200_000
    vis, err, _ = run(det, point, n, NO_MEDIUM, method)
    binom = math.sqrt(truth * (1 - truth) / n)
    if method == "analog":
        assert abs(vis[0] - truth) < 4 * binom
        assert err[0] == pytest.approx(binom, rel=0.05)
    else:  # exact at the emission vertex: no statistical error without scattering
        assert vis[0] == pytest.approx(truth, rel=2e-3)
        assert err[0] < 1e-3 * binom


@pytest.mark.parametrize("method", ["analog", "nee"])
@pytest.mark.parametrize("offset", [0.0, 7.0, 25.0])
def test_disk_solid_angle_fraction(method, offset):
    radius, h = 10.16, 15.0
    pds = [
        {
            "wall": "z+",
            "center": [50, 50, 100],
            "shape": "disk",
            "radius": radius,
            "efficiency": 1.0,
        }
    ]
    det = box([100, 100, 100], pds)
    point = (50.0 + offset, 50.0, 100.0 - h)
    if offset == 0.0:
        omega = 2 * math.pi * (1 - h / math.sqrt(h * h + radius * radius))
    else:
        omega = disk_solid_angle_numeric(offset, h, radius)
    truth = omega / (4 * math.pi)
    n = 200_000
    vis, _, _ = run(det, point, n, NO_MEDIUM, method)
    binom = math.sqrt(truth * (1 - truth) / n)
    if method == "analog":
        assert abs(vis[0] - truth) < 4 * binom
    else:
        assert vis[0] == pytest.approx(truth, rel=2e-3)


def test_efficiency_scales_detection():
    pds = [
        {"wall": "y-", "center": [50, 0, 50], "shape": "disk", "radius": 20.0, "efficiency": 0.25}
    ]
    det = box([100, 100, 100], pds)
    omega = 2 * math.pi * (1 - 30 / math.sqrt(30**2 + 20**2))
    for method in ("analog", "nee"):
        vis, _, _ = run(det, (50.0, 30.0, 50.0), 100_000, NO_MEDIUM, method)
        assert vis[0] == pytest.approx(0.25 * omega / (4 * math.pi), rel=0.02)


def test_absorption_is_exp_minus_r_over_l_for_small_distant_detector():
    """Absorption only: a small detector far away sees its solid angle times exp(-r / L)."""
    r, length = 80.0, 40.0
    pds = [
        {"wall": "x+", "center": [100, 50, 50], "shape": "disk", "radius": 2.0, "efficiency": 1.0}
    ]
    det = box([100, 100, 100], pds)
    point = (100.0 - r, 50.0, 50.0)
    clear, _, _ = run(det, point, 1000, NO_MEDIUM, "nee")
    absorbed, _, _ = run(det, point, 1000, Optics(None, length), "nee")
    assert absorbed[0] / clear[0] == pytest.approx(math.exp(-r / length), rel=1e-3)


def test_absorption_large_detector_analog_against_numerical_integral():
    """Analog absorption over a large near detector against a direct quadrature of
    exp(-r / L) cos / r^2 / 4 pi over the face."""
    length, h = 30.0, 25.0
    pds = [
        {
            "wall": "x-",
            "center": [0, 50, 50],
            "shape": "rectangle",
            "size": [40, 40],
            "efficiency": 1.0,
        }
    ]
    det = box([100, 100, 100], pds)
    truth, _ = integrate.dblquad(
        lambda y, z: (
            h
            * math.exp(-math.sqrt(h * h + y * y + z * z) / length)
            / (h * h + y * y + z * z) ** 1.5
            / (4 * math.pi)
        ),
        -20,
        20,
        -20,
        20,
        epsrel=1e-9,
    )
    n = 300_000
    vis, _, t = run(det, (h, 50.0, 50.0), n, Optics(None, length), "analog")
    assert abs(vis[0] - truth) < 4 * math.sqrt(truth * (1 - truth) / n)
    vis_nee, _, _ = run(det, (h, 50.0, 50.0), 1000, Optics(None, length), "nee")
    assert vis_nee[0] == pytest.approx(truth, rel=2e-3)


def test_absorbed_fraction_from_cube_centre():
    """No scattering: the absorbed fraction is 1 - <exp(-t_wall / L)> over directions."""
    length, half = 50.0, 50.0

    def survive(cos_t, phi):
        d = np.array(
            [
                math.sqrt(1 - cos_t**2) * math.cos(phi),
                math.sqrt(1 - cos_t**2) * math.sin(phi),
                cos_t,
            ]
        )
        t = min(half / abs(c) if c != 0 else math.inf for c in d)
        return math.exp(-t / length) / (4 * math.pi)

    # integrate over one octant-symmetric piece and multiply: use the full sphere directly
    s, _ = integrate.dblquad(survive, 0, 2 * math.pi, -1, 1, epsrel=1e-6)
    pds = [{"wall": "x-", "center": [0, 5, 5], "shape": "disk", "radius": 1.0, "efficiency": 1.0}]
    det = box([100, 100, 100], pds)
    n = 200_000
    _, _, t = run(det, (50.0, 50.0, 50.0), n, Optics(None, length), "analog")
    frac = t.absorbed[0] / n
    truth = 1 - s
    assert abs(frac - truth) < 4 * math.sqrt(truth * (1 - truth) / n)


def test_rayleigh_phase_function_is_one_plus_cos_squared():
    g = torch.Generator().manual_seed(3)
    u = torch.rand(400_000, generator=g, dtype=torch.float64)
    mu = sample_rayleigh_cos(u).numpy()
    assert mu.min() >= -1 and mu.max() <= 1
    cdf = lambda x: (x**3 / 3 + x + 4 / 3) * 3 / 8  # noqa: E731  CDF of 3/8 (1 + x^2)
    assert stats.kstest(mu, cdf).pvalue > 1e-3
    # moments: <mu^2> = 2/5 for 3/8 (1 + mu^2), vs 1/3 for isotropic
    assert np.mean(mu**2) == pytest.approx(0.4, abs=3e-3)
    # the rotation puts new directions at exactly that angle to the old, azimuth uniform
    d = torch.nn.functional.normalize(
        torch.randn(50_000, 3, generator=g, dtype=torch.float64), dim=1
    )
    m = torch.as_tensor(mu[:50_000])
    phi = 2 * math.pi * torch.rand(50_000, generator=g, dtype=torch.float64)
    new = rotate_rows(d.T.contiguous(), m, phi).T
    assert torch.allclose(new.norm(dim=1), torch.ones(50_000, dtype=torch.float64), atol=1e-12)
    assert torch.allclose((new * d).sum(1), m, atol=1e-12)
    # scattered directions from a fixed incoming direction are symmetric about it
    assert new.mean(0).abs().max() < 0.02


@pytest.mark.parametrize("reflection", ["specular", "diffuse"])
def test_probability_is_conserved(reflection):
    """Every photon ends detected, absorbed in the bulk, or lost on a wall: the three
    efficiency-weighted fractions add to one, with no photon left in flight."""
    pds = [
        {"wall": "x-", "center": [0, 30, 30], "shape": "disk", "radius": 10.0, "efficiency": 0.4},
        {
            "wall": "z+",
            "center": [30, 30, 60],
            "shape": "rectangle",
            "size": [20, 10],
            "efficiency": 0.9,
        },
    ]
    det = box([60, 60, 60], pds, reflectivity=0.5, reflection=reflection)
    n = 50_000
    _, _, t = run(det, (20.0, 35.0, 40.0), n, Optics(30.0, 200.0), "analog", vsize=5.0)
    total = t.absorbed[0] + t.on_walls[0] + t.detected[0]
    assert total == pytest.approx(n, rel=1e-6)
    assert t.truncated[0] == 0
    assert t.absorbed[0] > 0 and t.detected[0] > 0 and t.scatters[0] > n


def test_walk_matches_geant4_in_the_benchmark_box():
    """Our walk against real Geant4 11.4.1 (benchmarks/geant4_baseline.py --crosscheck
    50000, 2026-11-22): 100 cm LAr cube, Rayleigh 99.9 cm, absorption 20 m, photons
    uniform in the box: absorbed 0.02442 +- 0.00069, mean Rayleigh scatterings
    0.4937 +- 0.0039 per photon."""
    pds = [
        {"wall": "x-", "center": [0, 50, 50], "shape": "disk", "radius": 10.16, "efficiency": 1.0}
    ]
    det = box([100, 100, 100], pds)
    pdset = PhotodetectorSet(det, CPU, torch.float32, 4)
    n = 20_000
    origins = torch.zeros(1, 3)
    t = simulate(
        origins, torch.full((3,), 100.0), n, pdset, Optics(99.9, 2000.0), method="analog", seed=5
    )
    absorbed, scat = t.absorbed[0] / n, t.scatters[0] / n
    err_abs = math.hypot(0.00069, math.sqrt(absorbed * (1 - absorbed) / n))
    assert abs(absorbed - 0.02442) < 4 * err_abs
    assert abs(scat - 0.4937) < 4 * math.hypot(0.0039, math.sqrt(scat / n))


def test_nee_agrees_with_analog_and_is_more_precise():
    """Same walk, two estimators: equal means within errors for every (voxel, detector)
    entry, including scattering, absorption and reflecting walls; NEE far more precise."""
    pds = [
        {"wall": "x-", "center": [0, 20, 30], "shape": "disk", "radius": 8.0, "efficiency": 1.0},
        {"wall": "x+", "center": [40, 20, 30], "shape": "disk", "radius": 8.0, "efficiency": 0.5},
        {
            "wall": "z+",
            "center": [20, 20, 60],
            "shape": "rectangle",
            "size": [16, 12],
            "efficiency": 1.0,
        },
        {"wall": "y-", "center": [30, 0, 10], "shape": "disk", "radius": 5.0, "efficiency": 1.0},
    ]
    det = box([40, 40, 60], pds, reflectivity=0.2, reflection="diffuse")
    pdset = PhotodetectorSet(det, CPU, torch.float32, 4)
    vs = torch.tensor([10.0, 10.0, 15.0])
    origins = torch.tensor(
        [[0.0, 0.0, 0.0], [10.0, 20.0, 15.0], [30.0, 30.0, 45.0], [20.0, 10.0, 30.0]]
    )
    optics = Optics(25.0, 150.0)  # short lengths: plenty of scattering and absorption
    kw = dict(reflectivity=0.2, reflection="diffuse", batch_photons=1 << 17)
    na, nn = 200_000, 20_000
    ta = simulate(origins, vs, na, pdset, optics, method="analog", seed=11, **kw)
    tn = simulate(origins, vs, nn, pdset, optics, method="nee", seed=12, **kw)
    va, vn = ta.score / na, tn.score / nn
    ea = np.sqrt((ta.score_sq / na - va**2) / na)
    en = np.sqrt((tn.score_sq / nn - vn**2) / nn)
    pull = (vn - va) / np.hypot(ea, en)
    assert np.abs(pull).max() < 4.0, pull
    assert np.mean(pull**2) < 2.0  # chi2 / ndf over 16 entries
    # variance per photon: NEE at least 5x lower for the median entry
    ratio = (ea**2 * na) / (en**2 * nn)
    assert np.median(ratio) > 5.0, ratio


def test_same_seed_same_result_different_seed_different():
    pds = [{"wall": "x-", "center": [0, 20, 20], "shape": "disk", "radius": 8.0, "efficiency": 1.0}]
    det = box([40, 40, 40], pds)
    a = run(det, (20.0, 20.0, 20.0), 5000, Optics(30.0, 300.0), "nee", seed=1, vsize=5.0)[0]
    b = run(det, (20.0, 20.0, 20.0), 5000, Optics(30.0, 300.0), "nee", seed=1, vsize=5.0)[0]
    c = run(det, (20.0, 20.0, 20.0), 5000, Optics(30.0, 300.0), "nee", seed=2, vsize=5.0)[0]
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def _direct_probability_numeric(pd, pos, d_in, length):
    """eff x integral over the face of phase x exp(-r / L) x h / r^3 dA, by scipy."""
    axis = pd.axis
    ua, va = pd.uv_axes
    h = abs(pos[axis] - pd.center[axis])

    def integrand(v, u):
        x = np.array(pd.center, dtype=float)
        x[ua] += u
        x[va] += v
        rel = x - pos
        r = np.linalg.norm(rel)
        phase = (
            1 / (4 * math.pi) if d_in is None else 3 / (16 * math.pi) * (1 + (rel @ d_in / r) ** 2)
        )
        return phase * math.exp(-r / length) * h / r**3

    if pd.shape == "disk":
        val, _ = integrate.dblquad(
            lambda r, phi: integrand(r * math.sin(phi), r * math.cos(phi)) * r,
            0,
            2 * math.pi,
            0,
            pd.radius,
            epsrel=1e-9,
        )
    else:
        a, b = pd.size[0] / 2, pd.size[1] / 2
        val, _ = integrate.dblquad(integrand, -a, a, -b, b, epsrel=1e-9)
    return pd.efficiency * val


@pytest.mark.parametrize("quadrature,tol_max,tol_mean", [(4, 2e-2, 3e-3), (8, 4e-3, 5e-4)])
def test_next_event_kernel_against_numerical_integration(quadrature, tol_max, tol_mean):
    """The NEE direct-hit probability (near: polar quadrature / exact solid angle; far:
    second-order expansion) against brute-force integration, from touching distance to
    far away, isotropic and Rayleigh vertices."""
    pds = [
        {"wall": "x-", "center": [0, 100, 100], "shape": "disk", "radius": 10.0, "efficiency": 0.5},
        {
            "wall": "y+",
            "center": [100, 200, 100],
            "shape": "rectangle",
            "size": [30, 10],
            "efficiency": 1.0,
        },
    ]
    det = box([200, 200, 200], pds)
    pdset = PhotodetectorSet(det, CPU, torch.float64, quadrature)
    rng = np.random.default_rng(7)
    errs, far_errs, mid_errs = [], [], []
    length = 95.0
    for k, pd in enumerate(det.photodetectors):
        for dist in (2.0, 8.0, 15.0, 40.0, 70.0, 100.0, 100.0, 130.0, 150.0):
            while True:
                d = rng.normal(size=3)
                d /= np.linalg.norm(d)
                pos = np.array(pd.center) + dist * d
                if np.all(pos > 0) and np.all(pos < 200):
                    break
            for d_in in (None, rng.normal(size=3)):
                if d_in is not None:
                    d_in = d_in / np.linalg.norm(d_in)
                truth = _direct_probability_numeric(pd, pos, d_in, length)
                got = pdset.direct_probability(
                    torch.tensor(pos[None]),
                    None if d_in is None else torch.tensor(d_in[None]),
                    1 / length,
                )[0, k].item()
                errs.append(abs(got / truth - 1))
                size = pd.radius if pd.shape == "disk" else math.hypot(*pd.half_extent)
                if dist >= FAR_FACTOR * size:  # the far-field expansion
                    far_errs.append(abs(got / truth - 1))
                elif dist >= MID_FACTOR * size:  # the face cubature
                    mid_errs.append(abs(got / truth - 1))
    errs = np.array(errs)
    assert errs.max() < tol_max, errs
    assert errs.mean() < tol_mean, errs
    assert max(far_errs) < 4e-3, far_errs
    assert len(mid_errs) >= 4 and max(mid_errs) < 1.5e-3, mid_errs


def test_voxel_emission_probability_against_a_fine_grid():
    """The emission vertex's expected direct-hit probability (composite Gauss rule) against
    a 48^3 midpoint average, for a voxel whose wall face the disk's rim crosses (a kink),
    one in front of the disk and one far away."""
    pds = [{"wall": "x-", "center": [0, 50, 50], "shape": "disk", "radius": 10.16, "efficiency": 1}]
    det = box([100, 100, 100], pds)
    pdset = PhotodetectorSet(det, CPU, torch.float64, 4)
    vs = torch.tensor([5.0, 5.0, 5.0], dtype=torch.float64)
    origins = torch.tensor(
        [[0.0, 57.5, 47.5], [0.0, 47.5, 47.5], [5.0, 60.0, 45.0], [60.0, 20.0, 80.0]],
        dtype=torch.float64,
    )
    got = voxel_emission_probability(origins, vs, pdset, 1 / 95.0, nodes=4)[:, 0]
    m = 48
    c = (torch.arange(m, dtype=torch.float64) + 0.5) / m
    grid = torch.stack(torch.meshgrid(c, c, c, indexing="ij"), -1).reshape(-1, 3) * vs
    ref = torch.stack(
        [pdset.direct_probability(o + grid, None, 1 / 95.0)[:, 0].mean() for o in origins]
    )
    assert torch.allclose(got, ref, rtol=1e-3, atol=0), got / ref - 1


def test_emission_expectation_keeps_the_mean_and_lowers_the_variance():
    """Scoring the voxel average at emission (default) instead of the sampled point: the walk
    and its random stream are the same, so the two runs differ only by the emission term,
    whose mean agrees within its own statistical error; the per-photon variance is lower."""
    pds = [
        {"wall": "x-", "center": [0, 20, 20], "shape": "disk", "radius": 8.0, "efficiency": 1.0},
        {
            "wall": "z+",
            "center": [20, 20, 40],
            "shape": "rectangle",
            "size": [12, 8],
            "efficiency": 1,
        },
    ]
    det = box([40, 40, 40], pds)
    pdset = PhotodetectorSet(det, CPU, torch.float64, 4)
    vs = torch.full((3,), 10.0, dtype=torch.float64)
    origins = torch.tensor([[0.0, 15.0, 15.0], [20.0, 10.0, 25.0]], dtype=torch.float64)
    kw = dict(method="nee", seed=5, batch_photons=1 << 15)
    n = 20_000
    sampled = simulate(origins, vs, n, pdset, Optics(30.0, 300.0), emission_nodes=0, **kw)
    averaged = simulate(origins, vs, n, pdset, Optics(30.0, 300.0), emission_nodes=4, **kw)
    # the emission term alone, sampled: its mean and error per entry
    pts = origins[:, None, :] + vs * torch.rand(
        2, n, 3, generator=torch.Generator().manual_seed(9), dtype=torch.float64
    )
    direct = pdset.direct_probability(pts.reshape(-1, 3), None, 1 / 30.0 + 1 / 300.0)
    err = direct.view(2, n, -1).std(1).numpy() / math.sqrt(n)
    diff = (averaged.score - sampled.score) / n
    assert np.all(np.abs(diff) < 4 * err), (diff, err)
    assert np.all(averaged.score_sq <= sampled.score_sq * 1.0001)


def test_compiled_kernels_match_eager_and_compile_once():
    """lut.compile: the fused kernels agree with eager ones, and new batch sizes, directions
    and attenuation lengths do not recompile (a recompile storm silently falls back to eager)."""
    pds = [
        {"wall": "x-", "center": [0, 20, 20], "shape": "disk", "radius": 8.0, "efficiency": 0.5},
        {
            "wall": "y+",
            "center": [20, 40, 20],
            "shape": "rectangle",
            "size": [12, 8],
            "efficiency": 1,
        },
    ]
    det = box([40, 40, 40], pds)
    eager = PhotodetectorSet(det, CPU, torch.float32, 4)
    fused = PhotodetectorSet(det, CPU, torch.float32, 4, compile=True)
    g = torch.Generator().manual_seed(3)
    with torch._dynamo.config.patch(error_on_recompile=True):
        for m, inv in ((5, 0.0), (300, 1 / 95.0), (4097, 1 / 30.0)):
            pos = torch.rand(m, 3, generator=g) * 40.0
            d = torch.nn.functional.normalize(torch.randn(m, 3, generator=g), dim=1)
            for d_in in (None, d):
                a = eager.direct_probability(pos, d_in, inv)
                b = fused.direct_probability(pos, d_in, inv)
                assert torch.allclose(a, b, rtol=1e-4, atol=1e-9)
        # the whole walk with the fused kernels: same random stream,
        # so the same photons end the same way and the tallies agree to rounding
        origins = torch.tensor([[0.0, 10.0, 10.0], [20.0, 30.0, 5.0]])
        runs = [
            simulate(origins, torch.full((3,), 5.0), 3000, ps, Optics(30.0, 300.0), seed=4)
            for ps in (eager, fused)
        ]
    np.testing.assert_allclose(runs[1].score, runs[0].score, rtol=1e-4)
    assert np.array_equal(runs[1].reached_detector, runs[0].reached_detector)


def test_landing_cells_find_the_same_photodetector_as_testing_every_one():
    """The per-wall cell lists against a brute-force test of every photodetector: tiles that
    share edges (several candidates per cell), disks, and detectors smaller than a cell."""
    pds = [
        {
            "wall": "z-",
            "center": [10.0 + 20.0 * i, 10.0 + 20.0 * j, 0],
            "shape": "rectangle",
            "size": [20.0, 20.0],
            "efficiency": 1.0,
        }
        for i in range(3)
        for j in range(2)
    ]
    pds += [
        {"wall": "x+", "center": [100, 30, 40], "shape": "disk", "radius": 12.0, "efficiency": 1},
        {"wall": "x+", "center": [100, 56, 40], "shape": "disk", "radius": 12.0, "efficiency": 1},
        {"wall": "y-", "center": [50, 0, 50], "shape": "disk", "radius": 0.2, "efficiency": 1},
        {
            "wall": "y-",
            "center": [20, 0, 70],
            "shape": "rectangle",
            "size": [0.3, 0.1],
            "efficiency": 1,
        },
    ]
    det = box([100, 80, 90], pds)
    pdset = PhotodetectorSet(det, CPU, torch.float32, 4)
    assert pdset.cells.shape[0] >= 4  # a tile corner cell lists four tiles
    g = torch.Generator().manual_seed(8)
    for wall in ("z-", "x+", "y-"):
        axis, side = WALLS[wall]
        ua, va = in_plane_axes(axis)
        m = 200_000
        u = torch.rand(m, generator=g) * det.size[ua]
        v = torch.rand(m, generator=g) * det.size[va]
        # plus points crowding the small detectors and the tiles' shared edges
        for p in (p for p in det.photodetectors if p.wall == wall):
            pu = p.center[ua] + (torch.rand(2000, generator=g) - 0.5) * 2.2 * p.half_extent[0]
            pv = p.center[va] + (torch.rand(2000, generator=g) - 0.5) * 2.2 * p.half_extent[1]
            u, v = torch.cat([u, pu]), torch.cat([v, pv])
        got = pdset.landing(torch.full_like(u, 2 * axis + side, dtype=torch.long), u, v)
        want = torch.full_like(got, -1)
        for k in reversed(range(len(det.photodetectors))):  # lowest index wins
            p = det.photodetectors[k]
            if (p.axis, p.side) != (axis, side):
                continue
            du, dv = u - p.center[ua], v - p.center[va]
            if p.shape == "disk":
                inside = du * du + dv * dv <= p.radius**2
            else:
                inside = (du.abs() <= p.half_extent[0]) & (dv.abs() <= p.half_extent[1])
            want = torch.where(inside, k, want)
        assert torch.equal(got, want), wall
        assert (got >= 0).sum() > 1000
