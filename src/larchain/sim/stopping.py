"""Continuous energy loss of charged particles in liquid argon.

The event simulator steps muons, pions, protons and electrons through LAr; each step needs the
mean stopping power, the CSDA range (to end a stopping track exactly where it stops, and for
the dE/dx-versus-residual-range curve used in calibration) and a multiple-scattering angle.
Everything here is vectorised and computed in float64. Inputs may be Python floats, numpy
arrays or torch tensors: torch in gives torch out (same device and floating dtype); anything
else gives numpy out (a numpy scalar for a scalar input).

Physics (units: MeV, cm; mass stopping powers internally in MeV cm^2/g):

* Heavy particles (muon, pion, proton): Bethe formula with the exact T_max, the Sternheimer
  density effect with the PDG liquid-argon parameters (``constants.STERNHEIMER_LAR``), the
  Barkas-Berger shell correction, and for spin-1/2 particles the (T_max/E)^2/8 term; for
  muons also the radiative correction to ionisation that the PDG muon tables include.
  Below T_join = 8 MeV x (m / m_p) (beta*gamma ~ 0.13, where the shell-correction fit stops
  being valid) Bethe fails; there the ICRU 49 Andersen-Ziegler proton parametrisation for
  argon is used at the same velocity (S_low = A2 T^0.45, S_high = A3/T ln(1 + A4/T + A5 T),
  1/S = 1/S_low + 1/S_high, T in keV/u; S ~ sqrt(T) below 10 keV/u, the free-electron-gas
  limit). Above T_join the Bethe value is multiplied by 1 + (r - 1) T_join / T, with r the
  ratio of the two at T_join, so dE/dx is continuous and the correction fades as 1/T (the
  Geant4 Bragg/Bethe-Bloch join). Nuclear stopping (< 0.1% above 100 keV) is neglected.
* Muons also lose energy radiatively, b(E) E (bremsstrahlung + pair + photonuclear). b(E)
  is interpolated (log-log) in a few rows of the PDG liquid-argon muon table (Groom, Mokhov,
  Striganov, ADNDT 78 (2001) 183). It is ~0.3% of dE/dx at 1 GeV and ~1.2% at 10 GeV.
* Electrons: collision stopping power only (Rohrlich-Carlson / ICRU 37 form as used by
  Berger-Seltzer in ESTAR, with the same LAr density effect). Radiative loss is excluded on
  purpose: the simulator produces bremsstrahlung photons explicitly in its shower model, so
  counting it here would double-count it. Below 10 keV the formula is replaced by
  S(10 keV) sqrt(T / 10 keV) so that ranges stay finite.
* Multiple scattering: PDG Highland formula (see :func:`highland_theta0`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from scipy.integrate import cumulative_simpson

from larchain.core import constants as C

__all__ = [
    "PARTICLES",
    "RangeTable",
    "beta",
    "dedx",
    "highland_theta0",
    "momentum_mev",
]

#: Particles this module knows.
PARTICLES = ("muon", "pion", "proton", "electron")

_HEAVY = ("muon", "pion", "proton")
_SPIN_HALF = {"muon": True, "pion": False, "proton": True}

#: K = 4 pi N_A r_e^2 m_e c^2 [MeV cm^2/mol] and the fine-structure constant (PDG).
_K = 0.307075
_ALPHA = 7.2973525693e-3
_ME = C.MASS_MEV["electron"]
_MP = C.MASS_MEV["proton"]
_ZA = C.ARGON_Z / C.ARGON_A
_RHO = C.LAR_DENSITY_G_CM3
_I = C.ARGON_I_MEV
_LN10 = math.log(10.0)

# Sternheimer density effect, PDG liquid argon: STERNHEIMER_LAR["C"] is -C (positive).
_SC = C.STERNHEIMER_LAR["C"]
_SX0 = C.STERNHEIMER_LAR["x0"]
_SX1 = C.STERNHEIMER_LAR["x1"]
_SA = C.STERNHEIMER_LAR["a"]
_SK = C.STERNHEIMER_LAR["k"]
_SD0 = C.STERNHEIMER_LAR["delta0"]

#: Proton-equivalent kinetic energy [MeV] below which Bethe is replaced (beta*gamma ~ 0.13).
_T_JOIN_PROTON = 8.0
#: ICRU 49 Andersen-Ziegler coefficients A1..A5 for protons in argon (Z = 18), T in keV/u,
#: S in eV/(1e15 atoms/cm^2); as tabulated in Geant4 G4BraggModel::ElectronicStoppingPower.
_AZ_AR = (5.731, 6.500, 4.253e3, 5.300e2, 1.123e-2)
#: eV/(1e15 atoms/cm^2) -> MeV cm^2/g for argon.
_AZ_UNIT = C.AVOGADRO / C.ARGON_A * 1e-21
#: Proton mass in atomic mass units (keV -> keV/u).
_PROTON_AMU = 1.007276467
#: Electron kinetic energy [MeV] below which the collision formula is replaced by sqrt(T).
_T_FLOOR_ELECTRON = 0.01

#: Muon radiative loss b(E) E in LAr [MeV cm^2/g] (brems + pair + photonuclear) versus
#: kinetic energy [MeV], from the PDG table "muE_liquid_argon" (pdg.lbl.gov
#: AtomicNuclearProperties; Groom et al., ADNDT 78 (2001) 183), column "Radloss".
_MU_RAD_T = np.array([1e1, 1e2, 3e2, 1e3, 3e3, 1e4, 3e4, 1e5, 3e5, 1e6, 1e7])
_MU_RAD_LOSS = np.array(
    [4.907e-5, 9.925e-5, 2.586e-4, 9.759e-4, 4.906e-3, 2.417e-2, 9.580e-2, 4.055e-1, 1.415,
     5.258, 5.798e1]
)  # fmt: skip
_MU_RAD_LNE = np.log(_MU_RAD_T + C.MASS_MEV["muon"])
_MU_RAD_LNB = np.log(_MU_RAD_LOSS / (_MU_RAD_T + C.MASS_MEV["muon"]))

#: Highland constants (PDG, Review of Particle Physics, "Passage of particles through matter").
_HIGHLAND_E = 13.6
_HIGHLAND_LOG = 0.038


# --------------------------------------------------------------------------------------------
# numpy / torch plumbing


def _to64(x: Any) -> np.ndarray | torch.Tensor:
    """float64 working copy: tensors stay on their device (detached), the rest become numpy."""
    if isinstance(x, torch.Tensor):
        return x.detach().to(torch.float64)
    return np.asarray(x, dtype=np.float64)


def _like(x: Any, ref: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """``x`` as a float64 array of the same kind (and device) as ``ref``."""
    if isinstance(ref, torch.Tensor):
        if isinstance(x, torch.Tensor):
            return x.detach().to(device=ref.device, dtype=torch.float64)
        return torch.as_tensor(np.asarray(x, dtype=np.float64), device=ref.device)
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
    return np.asarray(x, dtype=np.float64)


def _out(y: np.ndarray | torch.Tensor, like: Any) -> Any:
    """Cast a float64 result back to the caller's kind: torch dtype kept, numpy otherwise."""
    if isinstance(y, torch.Tensor):
        ref = like if isinstance(like, torch.Tensor) else None
        if ref is not None and ref.is_floating_point():
            return y.to(ref.dtype)
        return y.to(torch.get_default_dtype())
    y = np.asarray(y, dtype=np.float64)
    return y[()] if y.ndim == 0 else y


def _kind(*xs: Any) -> Any:
    """The first torch tensor among ``xs`` (it decides the output kind), else ``xs[0]``."""
    for x in xs:
        if isinstance(x, torch.Tensor):
            return x
    return xs[0]


def _xp(a: Any) -> Any:
    return torch if isinstance(a, torch.Tensor) else np


def _clip_min(a: Any, lo: float) -> Any:
    return torch.clamp(a, min=lo) if isinstance(a, torch.Tensor) else np.maximum(a, lo)


def _where(cond: Any, a: Any, b: Any) -> Any:
    return torch.where(cond, a, b) if isinstance(cond, torch.Tensor) else np.where(cond, a, b)


def _check_particle(particle: str) -> str:
    if particle not in PARTICLES:
        raise ValueError(f"unknown particle {particle!r}; expected one of {PARTICLES}")
    return particle


def _check_nonneg(x: Any, what: str, particle: str | None = None) -> None:
    if bool((x < 0).any()):
        who = f" for {particle}" if particle else ""
        raise ValueError(f"{what} must be >= 0{who}; got a negative value")


# --------------------------------------------------------------------------------------------
# kinematics


def _gamma_beta2(t: Any, mass: float) -> tuple[Any, Any]:
    g = 1.0 + t / mass
    return g, 1.0 - 1.0 / (g * g)


def momentum_mev(kinetic: Any, particle: str) -> Any:
    """Momentum p = sqrt(T (T + 2m)) [MeV/c]; the simulator and Highland work in p."""
    m = C.MASS_MEV[_check_particle(particle)]
    t = _to64(kinetic)
    _check_nonneg(t, "kinetic energy", particle)
    return _out(_xp(t).sqrt(t * (t + 2.0 * m)), kinetic)


def beta(kinetic: Any, particle: str) -> Any:
    """Velocity v/c = p / E, needed by Highland and by recombination/timing models."""
    m = C.MASS_MEV[_check_particle(particle)]
    t = _to64(kinetic)
    _check_nonneg(t, "kinetic energy", particle)
    return _out(_xp(t).sqrt(t * (t + 2.0 * m)) / (t + m), kinetic)


# --------------------------------------------------------------------------------------------
# stopping powers (mass stopping powers, MeV cm^2/g)


def _density_effect(bg: Any) -> Any:
    """Sternheimer delta(beta*gamma) for LAr (PDG parametrisation, delta0 = 0: insulator)."""
    xp = _xp(bg)
    x = xp.log10(_clip_min(bg, 1e-300))
    mid = 2.0 * _LN10 * x - _SC + _SA * _clip_min(_SX1 - x, 0.0) ** _SK
    low = _SD0 * 10.0 ** (2.0 * (x - _SX0))
    return _where(x < _SX0, low, mid)


def _shell_correction(bg: Any) -> Any:
    """Barkas-Berger (1964) shell correction C(eta, I), eta = beta*gamma >= 0.13, I in eV
    (the fit quoted in Leo, Techniques for Nuclear and Particle Physics Experiments, eq. 2.33).
    """
    e2 = 1.0 / _clip_min(bg, 0.13) ** 2
    i_ev = _I * 1e6
    c1 = (0.422377 * e2 + 0.0304043 * e2**2 - 0.00038106 * e2**3) * 1e-6 * i_ev**2
    c2 = (3.858019 * e2 - 0.1667989 * e2**2 + 0.00157955 * e2**3) * 1e-9 * i_ev**3
    return c1 + c2


def _bethe(t: Any, mass: float, spin_half: bool) -> Any:
    """Bethe mean stopping power with exact T_max, density effect and shell correction."""
    xp = _xp(t)
    g, b2 = _gamma_beta2(t, mass)
    bg2 = b2 * g * g
    r = _ME / mass
    tmax = 2.0 * _ME * bg2 / (1.0 + 2.0 * g * r + r * r)
    bg = xp.sqrt(bg2)
    bracket = (
        0.5 * xp.log(2.0 * _ME * bg2 * tmax / (_I * _I))
        - b2
        - 0.5 * _density_effect(bg)
        - _shell_correction(bg) / C.ARGON_Z
    )
    if spin_half:
        bracket = bracket + tmax * tmax / (8.0 * (g * mass) ** 2)
    return _K * _ZA / b2 * bracket


def _ionisation_brems_correction(t: Any, mass: float) -> Any:
    """Radiative correction to muon ionisation (bremsstrahlung on atomic electrons; Kelner,
    Kokoulin & Petrukhin, as used for the PDG muon tables, Groom et al. 2001):
    K Z/A alpha/(4 pi) [ln(2E/M) - ln(2 T_max/m_e)/3] ln^2(2 T_max/m_e), zero for
    T_max < m_e/2. It is 0.2% of dE/dx at 1 GeV and 0.8% at 10 GeV."""
    xp = _xp(t)
    g, b2 = _gamma_beta2(t, mass)
    r = _ME / mass
    tmax = 2.0 * _ME * b2 * g * g / (1.0 + 2.0 * g * r + r * r)
    lt = _clip_min(xp.log(_clip_min(2.0 * tmax / _ME, 1e-300)), 0.0)
    return _K * _ZA * _ALPHA / (4.0 * math.pi) * (xp.log(2.0 * g) - lt / 3.0) * lt * lt


def _ziegler_proton(t_proton: Any) -> Any:
    """ICRU 49 Andersen-Ziegler electronic stopping of protons in argon [MeV cm^2/g]."""
    tk = t_proton * (1e3 / _PROTON_AMU)  # keV/u
    fac = _where(tk < 10.0, (_clip_min(tk, 0.0) / 10.0) ** 0.5, 1.0 + 0.0 * tk)
    tk = _clip_min(tk, 10.0)
    a1, a2, a3, a4, a5 = _AZ_AR
    s_low = a2 * tk**0.45
    s_high = a3 / tk * _xp(tk).log(1.0 + a4 / tk + a5 * tk)
    return s_low * s_high / (s_low + s_high) * fac * _AZ_UNIT


_JOIN_RATIO: dict[str, float] = {}


def _join_ratio(particle: str) -> float:
    """r = S_param / S_Bethe at T_join (cached): sets the fading correction above T_join."""
    if particle not in _JOIN_RATIO:
        m = C.MASS_MEV[particle]
        tj = np.float64(_T_JOIN_PROTON * m / _MP)
        low = _ziegler_proton(tj * (_MP / m))
        _JOIN_RATIO[particle] = float(low / _bethe(tj, m, _SPIN_HALF[particle]))
    return _JOIN_RATIO[particle]


def _heavy_stopping(t: Any, particle: str) -> Any:
    m = C.MASS_MEV[particle]
    tj = _T_JOIN_PROTON * m / _MP
    low = _ziegler_proton(t * (_MP / m))
    th = _clip_min(t, tj)
    high = _bethe(th, m, _SPIN_HALF[particle]) * (1.0 + (_join_ratio(particle) - 1.0) * tj / th)
    return _where(t < tj, low, high)


def _interp(x: Any, xp_tab: np.ndarray, fp_tab: np.ndarray) -> Any:
    """Piecewise-linear interpolation, clamped at the ends (numpy or torch)."""
    if isinstance(x, torch.Tensor):
        xt = torch.as_tensor(xp_tab, dtype=x.dtype, device=x.device)
        ft = torch.as_tensor(fp_tab, dtype=x.dtype, device=x.device)
        xc = x.clamp(min=float(xp_tab[0]), max=float(xp_tab[-1]))
        i = torch.searchsorted(xt, xc).clamp(1, len(xp_tab) - 1)
        x0, x1, f0, f1 = xt[i - 1], xt[i], ft[i - 1], ft[i]
        return f0 + (xc - x0) * (f1 - f0) / (x1 - x0)
    return np.interp(x, xp_tab, fp_tab)


def _muon_radiative(t: Any) -> Any:
    """b(E) E [MeV cm^2/g]: b interpolated log-log in the PDG table, constant off its ends."""
    e = t + C.MASS_MEV["muon"]
    xp = _xp(e)
    return xp.exp(_interp(xp.log(e), _MU_RAD_LNE, _MU_RAD_LNB)) * e


def _electron_collision_formula(t: Any) -> Any:
    xp = _xp(t)
    tau = t / _ME
    g, b2 = _gamma_beta2(t, _ME)
    f_minus = 1.0 - b2 + (tau * tau / 8.0 - (2.0 * tau + 1.0) * math.log(2.0)) / (tau + 1.0) ** 2
    arg = tau * tau * (tau + 2.0) / (2.0 * (_I / _ME) ** 2)
    bracket = xp.log(arg) + f_minus - _density_effect(xp.sqrt(b2) * g)
    return 0.5 * _K * _ZA / b2 * bracket


def _electron_collision(t: Any) -> Any:
    """Collision stopping power of electrons (ICRU 37 / Berger-Seltzer), sqrt(T) below 10 keV."""
    s_floor = float(_electron_collision_formula(np.float64(_T_FLOOR_ELECTRON)))
    tc = _clip_min(t, _T_FLOOR_ELECTRON)
    low = s_floor * (_clip_min(t, 0.0) / _T_FLOOR_ELECTRON) ** 0.5
    return _where(t < _T_FLOOR_ELECTRON, low, _electron_collision_formula(tc))


def _mass_stopping(t: Any, particle: str) -> Any:
    if particle == "electron":
        return _electron_collision(t)
    s = _heavy_stopping(t, particle)
    if particle == "muon":
        s = s + _ionisation_brems_correction(t, C.MASS_MEV["muon"]) + _muon_radiative(t)
    return s


def dedx(kinetic_mev: Any, particle: str) -> Any:
    """Mean (unrestricted) stopping power -dE/dx in LAr [MeV/cm].

    Muons include radiative losses; electrons are collision-only (the shower model makes the
    bremsstrahlung photons). Raises ValueError for an unknown particle or a negative energy.
    """
    _check_particle(particle)
    t = _to64(kinetic_mev)
    _check_nonneg(t, "kinetic energy", particle)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = _mass_stopping(t, particle) * _RHO
    return _out(s, kinetic_mev)


# --------------------------------------------------------------------------------------------
# CSDA range tables


def _loglog(x: Any, lx_tab: Any, ly_tab: Any) -> Any:
    """exp of the piecewise-linear interpolation of ln y in ln x; the end segments extrapolate
    (power laws), and x = 0 gives 0 (both curves go through the origin)."""
    xp = _xp(x)
    if xp is torch:
        lx = torch.log(x)
        i = torch.searchsorted(lx_tab, lx).clamp(1, lx_tab.shape[0] - 1)
    else:
        with np.errstate(divide="ignore"):
            lx = np.log(x)
        i = np.clip(np.searchsorted(lx_tab, lx), 1, lx_tab.shape[0] - 1)
    x0, x1, y0, y1 = lx_tab[i - 1], lx_tab[i], ly_tab[i - 1], ly_tab[i]
    ly = y0 + (lx - x0) * ((y1 - y0) / (x1 - x0))
    y = xp.exp(ly)
    return _where(x > 0, y, 0.0 * x)


class RangeTable:
    """CSDA range R(T) = integral_0^T dT'/(dE/dx) for one particle in LAr, and its inverse.

    Built once per particle on a log-spaced grid (``points_per_decade`` per decade from
    ``t_min`` to ``t_max`` MeV) by Simpson integration of T/(dE/dx) in ln T, starting from the
    analytic range below ``t_min`` (dE/dx ~ sqrt(T) there, so R(t_min) = 2 t_min / S(t_min)).
    Lookups interpolate linearly in log-log (interpolation error < 1e-5 with the default 400
    points per decade); outside the grid the end segments extrapolate as power laws, which is
    exact below ``t_min``. Use :meth:`for_particle` for a cached instance.
    """

    _cache: dict[str, RangeTable] = {}

    def __init__(
        self,
        particle: str,
        t_min: float = 1e-3,
        t_max: float = 1e5,
        points_per_decade: int = 400,
    ) -> None:
        self.particle = _check_particle(particle)
        n = int(round(points_per_decade * math.log10(t_max / t_min))) + 1
        t = np.geomspace(t_min, t_max, n)
        s = np.asarray(dedx(t, particle), dtype=np.float64)  # MeV/cm
        r0 = 2.0 * t[0] / s[0]
        r = r0 + cumulative_simpson(t / s, x=np.log(t), initial=0.0)
        #: Kinetic-energy grid [MeV], CSDA range [cm] and dE/dx [MeV/cm] on it.
        self.kinetic_grid = t
        self.range_grid = r
        self.dedx_grid = s
        self._lt, self._lr, self._ls = np.log(t), np.log(r), np.log(s)
        self._torch: dict[torch.device, tuple[torch.Tensor, ...]] = {}

    @classmethod
    def for_particle(cls, particle: str) -> RangeTable:
        """Cached default table: built once per process (about 10 ms) and shared."""
        _check_particle(particle)
        if particle not in cls._cache:
            cls._cache[particle] = cls(particle)
        return cls._cache[particle]

    def _tables(self, x: Any) -> tuple[Any, Any, Any]:
        """(ln T, ln R, ln dE/dx) as float64 numpy, or as torch tensors on x's device (cached)."""
        if not isinstance(x, torch.Tensor):
            return self._lt, self._lr, self._ls
        key = x.device
        if key not in self._torch:
            self._torch[key] = tuple(
                torch.as_tensor(a, dtype=torch.float64, device=x.device)
                for a in (self._lt, self._lr, self._ls)
            )
        return self._torch[key]

    def range_cm(self, kinetic: Any) -> Any:
        """CSDA range [cm] of a particle of kinetic energy ``kinetic`` [MeV] (0 at T = 0)."""
        t = _to64(kinetic)
        _check_nonneg(t, "kinetic energy", self.particle)
        lt, lr, _ = self._tables(t)
        return _out(_loglog(t, lt, lr), kinetic)

    def kinetic_at_range(self, range_cm: Any) -> Any:
        """Inverse of :meth:`range_cm`: kinetic energy [MeV] with this residual range [cm]."""
        r = _to64(range_cm)
        _check_nonneg(r, "range", self.particle)
        lt, lr, _ = self._tables(r)
        return _out(_loglog(r, lr, lt), range_cm)

    def dedx_at_residual_range(self, residual_range_cm: Any) -> Any:
        """dE/dx [MeV/cm] at a residual range [cm]: the table curve of dE/dx-vs-residual-range
        plots and of stopping-track calibrations."""
        r = _to64(residual_range_cm)
        _check_nonneg(r, "residual range", self.particle)
        _, lr, ls = self._tables(r)
        return _out(_loglog(r, lr, ls), residual_range_cm)


# --------------------------------------------------------------------------------------------
# multiple scattering


def highland_theta0(
    kinetic_mev: Any,
    particle: str,
    step_cm: Any,
    *,
    log_path_cm: Any = None,
) -> Any:
    """Plane-projected RMS multiple-scattering angle [rad] over ``step_cm`` of LAr (Highland).

    PDG form: theta0 = 13.6 MeV / (beta c p) z sqrt(x/X0) [1 + 0.038 ln(x z^2 / (X0 beta^2))]
    with X0 = ``constants.RADIATION_LENGTH_CM`` and z = 1. The log term is not additive: for
    n short steps sum(theta0(x/n)^2) < theta0(x)^2, and the PDG warns that the formula is
    only good to 11% for 1e-3 < x/X0 < 100. Choice made here: by default the log term uses
    ``step_cm`` itself (the PDG formula as printed, right for a single segment); a stepping
    simulator should pass the total path length of the track (or the segment length used in
    an MCS fit) as ``log_path_cm``, which keeps the angle of the summed steps equal to the
    Highland angle of the whole path. The bracket is clipped at 0 for absurdly short paths.
    """
    _check_particle(particle)
    m = C.MASS_MEV[particle]
    ref = _kind(kinetic_mev, step_cm, log_path_cm)
    t = _like(kinetic_mev, _to64(ref))
    x = _like(step_cm, t)
    _check_nonneg(t, "kinetic energy", particle)
    _check_nonneg(x, "step length", particle)
    xl = x if log_path_cm is None else _like(log_path_cm, t)
    _check_nonneg(xl, "log_path_cm", particle)
    xp = _xp(t)
    x0 = C.RADIATION_LENGTH_CM
    with np.errstate(divide="ignore", invalid="ignore"):
        p = xp.sqrt(t * (t + 2.0 * m))
        b = p / (t + m)
        bracket = 1.0 + _HIGHLAND_LOG * xp.log(_clip_min(xl, 1e-300) / (x0 * b * b))
        theta = _HIGHLAND_E / (b * p) * xp.sqrt(x / x0) * _clip_min(bracket, 0.0)
    return _out(theta, ref)
