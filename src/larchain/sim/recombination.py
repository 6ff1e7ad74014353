"""Electron-ion recombination: the fraction R of ionisation electrons that escape.

Two field-dependent models, as in larnd-sim's ``quenching`` module:

* ``"box"`` -- modified box (ArgoNeuT, Baller, JINST 8 (2013) P08005):
  ``R = ln(alpha + xi) / xi`` with ``xi = beta (dE/dx) / (rho E)``;
* ``"birks"`` -- Birks (ICARUS, Amoruso et al., NIM A 523 (2004) 275):
  ``R = A_B / (1 + k_B (dE/dx) / (rho E))``.

``rho`` is :data:`~larchain.core.constants.LAR_DENSITY_G_CM3`. The modified box is a fit for
heavily ionising tracks: ``ln(alpha + xi)/xi`` peaks at xi ~ 0.47 (alpha = 0.93), so below that
(a MIP above ~0.7 kV/cm, or low dE/dx) R falls with field and, for xi < 1 - alpha, turns
negative; R is clamped to [0, 1] as in larnd-sim. Everything is plain torch
arithmetic so a calibration can differentiate R with respect to the field and the model
parameters.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from larchain.core.constants import LAR_DENSITY_G_CM3

#: Supported recombination models.
MODELS = ("box", "birks")
#: Parameter names each model reads from ``params``.
MODEL_PARAMS = {"box": ("box_alpha", "box_beta"), "birks": ("birks_ab", "birks_kb")}

# Smallest xi the box formula is evaluated at: below it R is held at its value there (with zero
# gradient), so dE/dx -> 0 gives finite values and gradients instead of 0/0.
_XI_MIN = 1.0e-6


def _as_tensor(value: Tensor | float, like: Tensor) -> Tensor:
    """A parameter as a tensor of ``like``'s dtype/device (differentiable when it is one)."""
    if isinstance(value, Tensor):
        return value.to(dtype=like.dtype, device=like.device)
    return torch.tensor(float(value), dtype=like.dtype, device=like.device)


def box_model(xi: Tensor, alpha: Tensor) -> Tensor:
    """Modified box ``ln(alpha + xi) / xi`` without its 0/0 at small xi.

    Written as ``(ln(alpha) + log1p(xi / alpha)) / xi``: exact, and accurate where the
    naive form cancels (alpha ~ 1, small xi: the ``log1p`` is the series
    ``1/alpha - xi/(2 alpha^2) + ...``). xi is floored at 1e-6. For alpha < 1 the formula
    itself turns negative below ``xi = 1 - alpha`` (dE/dx ~ 0.2 MeV/cm at 0.5 kV/cm), which is
    outside its validity; the caller clamps R to [0, 1] like larnd-sim's ``max(0, R)``.
    """
    xi_safe = torch.clamp(xi, min=_XI_MIN)
    return (torch.log(alpha) + torch.log1p(xi_safe / alpha)) / xi_safe


def recombination(
    dedx_mev_cm: Tensor,
    field_kv_cm: Tensor | float,
    params: Mapping[str, Tensor | float],
    model: str = "box",
) -> Tensor:
    """Recombination survival fraction R in [0, 1] per deposit.

    ``dedx_mev_cm``: dE/dx [MeV/cm] (>= 0); ``field_kv_cm``: drift field [kV/cm] (> 0,
    scalar or broadcastable); ``params``: ``box_alpha``/``box_beta`` or
    ``birks_ab``/``birks_kb`` (beta and k_B in (kV/cm)(g/cm^2)/MeV). R is clamped to
    [0, 1] (a fraction of the ionisation; zero gradient where clamped).
    """
    if model not in MODELS:
        raise ValueError(f"model must be one of {MODELS}, got {model!r}")
    if not isinstance(dedx_mev_cm, Tensor) or not dedx_mev_cm.is_floating_point():
        raise ValueError("dedx_mev_cm must be a floating-point tensor")
    for name in MODEL_PARAMS[model]:
        if name not in params:
            raise ValueError(f"params is missing {name!r} (needed by model {model!r})")
    field = _as_tensor(field_kv_cm, dedx_mev_cm)
    if bool((field <= 0).any()):
        raise ValueError("field_kv_cm must be > 0")
    if bool((dedx_mev_cm < 0).any()):
        raise ValueError("dedx_mev_cm must be >= 0")
    scaled = dedx_mev_cm / (LAR_DENSITY_G_CM3 * field)  # (dE/dx) / (rho E)
    if model == "box":
        alpha = _as_tensor(params["box_alpha"], dedx_mev_cm)
        beta = _as_tensor(params["box_beta"], dedx_mev_cm)
        if bool((alpha <= 0).any()):
            raise ValueError("params['box_alpha'] must be > 0")
        r = box_model(beta * scaled, alpha)
    else:
        ab = _as_tensor(params["birks_ab"], dedx_mev_cm)
        kb = _as_tensor(params["birks_kb"], dedx_mev_cm)
        r = ab / (1.0 + kb * scaled)
    return torch.clamp(r, 0.0, 1.0)
