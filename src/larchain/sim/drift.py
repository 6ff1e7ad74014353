"""Electron drift: velocity from the field, lifetime attenuation, diffusion widths.

The mobility is the parametrisation larnd-sim uses (``larndsim/consts/detector.py``,
``electron_mobility``), summarised on https://lar.bnl.gov/properties/trans.html: the
functional form fitted to world data including Walkowiak, NIM A 449 (2000) 288, with the
coefficients of Li et al., NIM A 816 (2016) 160 (arXiv:1508.07059)::

    mu(E, T) = (a0 + a1 E + a2 E^1.5 + a3 E^2.5) / (1 + (a1/a0) E + a4 E^2 + a5 E^3)
               * (T / T0)^-1.5            [cm^2/(V s)], E in kV/cm, T0 = 89 K

(coefficients in :data:`~larchain.core.constants.ELECTRON_MOBILITY_PARAMS`). At 0.5 kV/cm
and 87 K this gives v = mu E ~ 0.160 cm/us. All functions are torch expressions, so the
calibration can differentiate through them.
"""

from __future__ import annotations

import torch
from torch import Tensor

from larchain.core.constants import (
    ELECTRON_MOBILITY_PARAMS,
    ELECTRON_MOBILITY_T0_K,
    LAR_TEMPERATURE_K,
)

# cm^2/(V s) -> cm^2/(kV us): x 1e3 V/kV x 1e-6 s/us.
_MOBILITY_TO_CM2_KV_US = 1.0e-3
# Smallest variance [cm^2] a width is evaluated at: sqrt has an infinite slope at 0 (a point
# deposit at the anode with sigma0 = 0), so the variance is floored at (1e-6 cm)^2.
_VAR_MIN = 1.0e-12


def _tensor(x: Tensor | float, like: Tensor | None = None) -> Tensor:
    """``x`` as a tensor (float64 unless ``like`` gives the dtype/device)."""
    if isinstance(x, Tensor):
        return x
    if like is not None and like.is_floating_point():
        return torch.tensor(float(x), dtype=like.dtype, device=like.device)
    return torch.tensor(float(x), dtype=torch.float64)


def electron_mobility(
    field_kv_cm: Tensor | float, temperature_k: Tensor | float = LAR_TEMPERATURE_K
) -> Tensor:
    """Electron mobility in LAr [cm^2/(kV us)] so that ``v [cm/us] = mu * E [kV/cm]``."""
    e = _tensor(field_kv_cm)
    t = _tensor(temperature_k, like=e)
    if bool((e <= 0).any()):
        raise ValueError("field_kv_cm must be > 0")
    if bool((t <= 0).any()):
        raise ValueError("temperature_k must be > 0")
    a0, a1, a2, a3, a4, a5 = ELECTRON_MOBILITY_PARAMS
    num = a0 + a1 * e + a2 * e**1.5 + a3 * e**2.5
    den = 1.0 + (a1 / a0) * e + a4 * e**2 + a5 * e**3
    return num / den * (t / ELECTRON_MOBILITY_T0_K) ** -1.5 * _MOBILITY_TO_CM2_KV_US


def drift_velocity(
    field_kv_cm: Tensor | float, temperature_k: Tensor | float = LAR_TEMPERATURE_K
) -> Tensor:
    """Electron drift velocity [cm/us] = mobility x field."""
    return electron_mobility(field_kv_cm, temperature_k) * _tensor(field_kv_cm)


def drift_time(drift_distance_cm: Tensor, velocity_cm_us: Tensor | float) -> Tensor:
    """Time [us] to drift ``drift_distance_cm`` to the anode."""
    return drift_distance_cm / velocity_cm_us


def lifetime_attenuation(drift_time_us: Tensor, lifetime_us: Tensor | float) -> Tensor:
    """Fraction of electrons surviving attachment on impurities: ``exp(-t / tau)``."""
    return torch.exp(-drift_time_us / lifetime_us)


def diffusion_sigma(
    drift_time_us: Tensor, diffusion_cm2_us: Tensor | float, sigma0_cm: Tensor | float = 0.0
) -> Tensor:
    """Cloud width [cm] after drifting: ``sqrt(sigma0^2 + 2 D t)`` (variance floored at
    (1e-6 cm)^2 so the slope stays finite for a point deposit at the anode)."""
    var = sigma0_cm**2 + 2.0 * diffusion_cm2_us * drift_time_us
    return torch.sqrt(torch.clamp(var, min=_VAR_MIN))
