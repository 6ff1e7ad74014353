"""Compiled stepping kernel of charged particles (numba), one particle at a time.

Why compiled: a charged particle takes hundreds of sub-voxel steps, and vectorising over the
particles of a batch (numpy) leaves each step of the long tracks paying ~100 array calls; in
a scalar loop a step costs well under a microsecond. The physics is exactly that described
in :mod:`larchain.sim.transport` (which drives this kernel and builds the secondaries); the
random numbers are the same counter-based hashes as :mod:`larchain.sim.rng`, so the result
does not depend on how particles are batched.
"""

from __future__ import annotations

import math

import numba
import numpy as np

# species codes (larchain.sim.truth), kept literal for the compiled code
_ELECTRON, _POSITRON, _MUON = 1, 2, 3
_U64 = np.uint64
_GOLDEN = _U64(0x9E3779B97F4A7C15)
_M1 = _U64(0xBF58476D1CE4E5B9)
_M2 = _U64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11, _S16 = _U64(30), _U64(27), _U64(31), _U64(11), _U64(16)
_TWO53 = float(2**53)

#: Secondary kinds written by the kernel (HADRONIC: the particle itself ends in an inelastic
#: interaction with a nucleus; the secondary row carries its kinetic energy there).
DELTA, BREMS, HADRONIC = 0, 1, 2
#: Random-number streams: secondaries 10-18, inelastic interactions 19, scattering 2000-2001
#: (rng.normal_pair stream 0).
_S_SEC = 10
_S_HADRON = 19
_S_MCS_A, _S_MCS_B = 2000, 2001

_jit = numba.njit(cache=True, nogil=True, error_model="numpy")


@_jit
def _mix(z: np.uint64) -> np.uint64:
    z = z + _GOLDEN
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@_jit
def uniform(key: np.uint64, counter: int, stream: int) -> float:
    """Scalar twin of :func:`larchain.sim.rng.uniform` (same bits)."""
    tag = _mix((_U64(counter) << _S16) + _U64(stream))
    z = _mix(key ^ tag)
    return (float(z >> _S11) + 0.5) / _TWO53


@_jit
def _exp_interp(x, xs, ys, i):  # noqa: ANN001, ANN202
    """exp of the linear interpolation of ``ys(xs)`` at ``x`` in the interval ending at
    ``xs[i]`` (``i`` clamped to the table): the log-log CSDA tables, either way round."""
    i = min(max(i, 1), xs.shape[0] - 1)
    x0, x1 = xs[i - 1], xs[i]
    y0, y1 = ys[i - 1], ys[i]
    return math.exp(y0 + (x - x0) * ((y1 - y0) / (x1 - x0)))


@_jit
def _range_cm(lt, lr, s, t):  # noqa: ANN001, ANN202
    if t <= 0.0:
        return 0.0
    x = math.log(t)
    n = lt.shape[0]
    return _exp_interp(x, lt, lr[s], int((x - lt[0]) * ((n - 1) / (lt[n - 1] - lt[0]))) + 1)


@_jit
def _kinetic_at_range(lt, lr, s, r):  # noqa: ANN001, ANN202
    if r <= 0.0:
        return 0.0
    x = math.log(r)
    return _exp_interp(x, lr[s], lt, np.searchsorted(lr[s], x))


@_jit
def _hadron_mu(h_lt, h_mu, s, t):  # noqa: ANN001, ANN202
    """Inverse inelastic mean free path [1/cm] of species ``s`` at kinetic energy ``t``: linear
    in log T between the table's energies, zero below the first, flat above the last."""
    n = h_lt.shape[0]
    if h_mu[s, n - 1] <= 0.0 or t <= 0.0:
        return 0.0
    x = math.log(t)
    if x < h_lt[0]:
        return 0.0
    if x >= h_lt[n - 1]:
        return h_mu[s, n - 1]
    i = np.searchsorted(h_lt, x)
    i = min(max(i, 1), n - 1)
    w = (x - h_lt[i - 1]) / (h_lt[i] - h_lt[i - 1])
    return h_mu[s, i - 1] + w * (h_mu[s, i] - h_mu[s, i - 1])


@_jit
def _exit_distance(p, d, size):  # noqa: ANN001, ANN202
    best = np.inf
    for a in range(3):
        if d[a] > 0:
            best = min(best, (size[a] - p[a]) / d[a])
        elif d[a] < 0:
            best = min(best, -p[a] / d[a])
    return max(best, 0.0)


@_jit
def _rotate(d, cos_t, phi, out):  # noqa: ANN001, ANN202
    """``d`` turned by acos(cos_t) at azimuth phi (the basis of transport.rotate)."""
    dx, dy, dz = d[0], d[1], d[2]
    if abs(dx) < 0.9:
        a, b, c = 0.0, dz, -dy
    else:
        a, b, c = -dz, 0.0, dx
    norm = math.sqrt(a * a + b * b + c * c)
    a, b, c = a / norm, b / norm, c / norm
    e2x, e2y, e2z = dy * c - dz * b, dz * a - dx * c, dx * b - dy * a
    sin_t = math.sqrt(max(1.0 - cos_t * cos_t, 0.0))
    cp, sp = math.cos(phi), math.sin(phi)
    ox = cos_t * dx + sin_t * (cp * a + sp * e2x)
    oy = cos_t * dy + sin_t * (cp * b + sp * e2y)
    oz = cos_t * dz + sin_t * (cp * c + sp * e2z)
    norm = math.sqrt(ox * ox + oy * oy + oz * oz)
    out[0], out[1], out[2] = ox / norm, oy / norm, oz / norm


@_jit
def step_charged(
    species, pos, direction, energy, keys, lt, lr, mass, size, consts, h_lt, h_mu, h_row,
    dep_pos, dep_de, dep_dx, dep_part, sec_part, sec_kind, sec_step, sec_pos, sec_dir,
    sec_energy, end_pos, escaped, stopped, first,
):  # noqa: ANN001, ANN201
    """Transport particles ``first..`` until each stops or leaves, or an output buffer fills.

    ``consts`` = (step, delta_threshold, brems_threshold, electron_cut, max_steps, X0,
    delta-ray prefactor K Z/A rho / 2, m_e, m_mu); ``h_mu[h_row[i]]`` the inverse inelastic
    mean free paths of particle ``i`` on the log-energy grid ``h_lt`` (all zero: no hadronic
    interactions; rows: :func:`larchain.sim.hadronic.table_rows`). A particle that interacts
    ends at the end of that step with a HADRONIC secondary holding its kinetic energy.
    Returns ``(next particle, deposits written, secondaries written)``: a particle that
    would overflow a buffer is rolled back, so the caller empties the buffers (growing them
    if no particle fitted) and calls again from ``next``; ``next = -1`` means a particle
    exceeded ``max_steps``. Deposits and secondaries come particle by particle, step by step
    (at most one secondary per step).
    """
    step, tcut, kmin, e_cut = consts[0], consts[1], consts[2], consts[3]
    max_steps, x0, pref0, me, m_mu = int(consts[4]), consts[5], consts[6], consts[7], consts[8]
    n_dep = 0
    n_sec = 0
    cap_dep = dep_de.shape[0]
    cap_sec = sec_energy.shape[0]
    p = np.empty(3)
    d = np.empty(3)
    nd = np.empty(3)
    for i in range(first, species.shape[0]):
        s = species[i]
        ke = energy[i]
        key = keys[i]
        dep0, sec0 = n_dep, n_sec  # rolled back if this particle does not fit
        for a in range(3):
            p[a] = pos[i, a]
            d[a] = direction[i, a]
        leaving = False
        stop = False
        absorbed = False
        n = 0
        while True:
            if n >= max_steps:
                return -1, n_dep, n_sec
            if n_dep >= cap_dep or n_sec >= cap_sec:
                return i, dep0, sec0
            r = _range_cm(lt, lr, s, ke)
            ds = min(step, r)
            ex = _exit_distance(p, d, size)
            leaving = ex <= ds
            ds = min(ds, ex)
            t_after = min(_kinetic_at_range(lt, lr, s, max(r - ds, 0.0)), ke)
            local = ke - t_after
            new_ke = t_after
            kind, e_sec, u = -1, 0.0, 0.0
            if s == _MUON:
                e_tot = ke + m_mu
                gamma = e_tot / m_mu
                beta2 = 1.0 - 1.0 / (gamma * gamma)
                tmax = 2 * me * beta2 * gamma * gamma / (
                    1 + 2 * gamma * me / m_mu + (me / m_mu) ** 2)
                mean_loss = 0.0
                rate = 0.0
                pref = pref0 / beta2
                if tmax > tcut:
                    mean_loss = pref * (math.log(tmax / tcut) - beta2 * (tmax - tcut) / tmax) * ds
                    rate = pref * (1.0 / tcut - 1.0 / tmax)
                restricted = max(local - mean_loss, 0.0)
                emit = tmax > tcut and uniform(key, n, _S_SEC) < -math.expm1(-rate * ds)
                td = 1.0 / (1.0 / tcut - uniform(key, n, _S_SEC + 1) * (1.0 / tcut - 1.0 / tmax))
                emit = emit and uniform(key, n, _S_SEC + 2) < 1.0 - beta2 * td / tmax
                td = min(td, ke - restricted) if emit else 0.0
                local = restricted
                new_ke = max(ke - restricted - td, 0.0)
                if emit and td > 0:
                    p_d = math.sqrt(td * (td + 2 * me))
                    p_max = math.sqrt(tmax * (tmax + 2 * me))
                    cos_t = min(max(td / p_d * p_max / tmax, -1.0), 1.0)
                    phi = 2 * math.pi * uniform(key, n, _S_SEC + 3)
                    _rotate(d, cos_t, phi, nd)
                    kind, e_sec, u = DELTA, td, uniform(key, n, _S_SEC + 4)
            elif s == _ELECTRON or s == _POSITRON:
                e_tot = ke + me
                ymin = min(kmin / e_tot, 1.0)
                soft = ds / x0 * e_tot * (4 / 3 * ymin - 2 / 3 * ymin**2 + ymin**3 / 3)
                soft = min(soft, new_ke)
                local += soft
                new_ke -= soft
                able = ke > kmin
                rate = 4.0 / 3.0 * math.log(1.0 / ymin) / x0 if able else 0.0
                emit = able and uniform(key, n, _S_SEC + 5) < -math.expm1(-rate * ds)
                y = ymin ** (1.0 - uniform(key, n, _S_SEC + 6))
                emit = emit and uniform(key, n, _S_SEC + 7) * (4 / 3) < 4 / 3 - 4 / 3 * y + y * y
                kph = min(y * e_tot, new_ke) if emit else 0.0
                new_ke -= kph
                if emit and kph > 0:
                    for a in range(3):
                        nd[a] = d[a]
                    kind, e_sec, u = BREMS, kph, uniform(key, n, _S_SEC + 8)
            mu_h = _hadron_mu(h_lt, h_mu, h_row[i], ke)
            if (kind < 0 and mu_h > 0.0 and not leaving
                    and uniform(key, n, _S_HADRON) < -math.expm1(-mu_h * ds)):
                for a in range(3):
                    nd[a] = d[a]
                kind, e_sec, u = HADRONIC, new_ke, 1.0  # at the end of the step
                new_ke = 0.0
                absorbed = True
            if kind >= 0:  # the step's secondary, emitted at a uniform point of the step
                for a in range(3):
                    sec_pos[n_sec, a] = p[a] + u * ds * d[a]
                    sec_dir[n_sec, a] = nd[a]
                sec_part[n_sec], sec_kind[n_sec], sec_step[n_sec] = i, kind, n
                sec_energy[n_sec] = e_sec
                n_sec += 1
            stop = new_ke < e_cut and not leaving
            if stop:
                local += new_ke
                new_ke = 0.0
            if local > 0:
                for a in range(3):
                    dep_pos[n_dep, a] = p[a] + 0.5 * ds * d[a]
                dep_de[n_dep], dep_dx[n_dep], dep_part[n_dep] = local, ds, i
                n_dep += 1
            for a in range(3):
                p[a] += ds * d[a]
            # multiple scattering (Highland, log term at X0)
            m = mass[s]
            if ke > 0:
                pp = ke * (ke + 2 * m)
                beta2 = pp / max((ke + m) ** 2, 1e-300)
                th = 13.6 * (ke + m) / max(pp, 1e-300) * math.sqrt(ds / x0)
                th *= max(1.0 - 0.038 * math.log(beta2), 0.0)
            else:
                th = np.inf
            u1 = uniform(key, n, _S_MCS_A)
            u2 = uniform(key, n, _S_MCS_B)
            rr = math.sqrt(-2.0 * math.log(u1))
            tx = th * rr * math.cos(2.0 * math.pi * u2)
            ty = th * rr * math.sin(2.0 * math.pi * u2)
            theta = min(math.hypot(tx, ty), math.pi)
            _rotate(d, math.cos(theta), math.atan2(ty, tx), nd)
            for a in range(3):
                d[a] = nd[a]
            ke = new_ke
            n += 1
            if stop or leaving or ke <= 0:
                break
        for a in range(3):
            end_pos[i, a] = p[a]
        escaped[i] = ke if leaving else 0.0
        stopped[i] = not leaving and not absorbed
    return species.shape[0], n_dep, n_sec
