"""Scintillation light: photons per deposit and photoelectrons per photodetector.

Every ionisation quantum either escapes as a drift electron or recombines into an excited
state, so light and charge are anticorrelated (larnd-sim ``quenching``):
``photons = light_yield * (dE / W_ph - electrons)`` with ``electrons`` counted after
recombination (before lifetime losses). The expected photoelectrons of event ``e`` on
photodetector ``j`` are ``sum_i photons_i * visibility_j(pos_i) * pd_efficiency_j`` with the
visibility from any :class:`~larchain.core.visibility.VisibilityModel`; ``pd_efficiency`` is
a relative scale (default 1) since the visibility already includes the nominal detection
efficiency. Production samples ``Poisson(PE)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from larchain.core.constants import W_PH_MEV
from larchain.core.visibility import VisibilityModel


def scintillation_photons(
    de_mev: Tensor, electrons: Tensor, light_yield: Tensor | float = 1.0
) -> Tensor:
    """Scintillation photons per deposit: ``light_yield * (dE / W_ph - electrons)``."""
    return light_yield * (de_mev / W_PH_MEV - electrons)


def expected_pe(
    pos: Tensor,
    photons: Tensor,
    event: Tensor,
    n_events: int,
    visibility: VisibilityModel,
    pd_efficiency: Tensor | None = None,
    batch_size: int = 65536,
) -> Tensor:
    """Expected photoelectrons ``[n_events, D]`` summed over each event's deposits.

    The visibility is evaluated at the true deposit positions ``pos`` ``[N, 3]`` in batches
    of ``batch_size`` (bounded memory for N x D); autograd runs through the visibility only
    when ``pos`` requires grad (parameters of the response enter through ``photons`` and
    ``pd_efficiency``, which stay differentiable).
    """
    n = pos.shape[0]
    d = visibility.n_detectors
    if pos.ndim != 2 or pos.shape[1] != 3:
        raise ValueError(f"pos must have shape [N, 3], got {tuple(pos.shape)}")
    if photons.shape != (n,) or event.shape != (n,):
        raise ValueError(f"photons and event must have shape [{n}]")
    if pd_efficiency is not None and pd_efficiency.shape != (d,):
        raise ValueError(
            f"pd_efficiency must have shape [{d}] (the visibility's n_detectors), "
            f"got {tuple(pd_efficiency.shape)}"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    dev = visibility.device
    pe = photons.new_zeros((n_events, d))
    for s in range(0, n, batch_size):
        p = pos[s : s + batch_size]
        with torch.set_grad_enabled(torch.is_grad_enabled() and p.requires_grad):
            v = visibility(p.to(dev))
        if v.shape != (p.shape[0], d):
            raise ValueError(
                f"visibility returned shape {tuple(v.shape)}, expected {(p.shape[0], d)}"
            )
        v = v.to(device=photons.device, dtype=photons.dtype)
        pe = pe.index_add(0, event[s : s + batch_size], photons[s : s + batch_size, None] * v)
    if pd_efficiency is not None:
        pe = pe * pd_efficiency.to(dtype=pe.dtype, device=pe.device)
    return pe


def pe_from_visibility(
    visibility: Tensor,
    photons: Tensor,
    event: Tensor,
    n_events: int,
    pd_efficiency: Tensor | None = None,
) -> Tensor:
    """Expected photoelectrons ``[n_events, D]`` from visibilities already evaluated at the
    deposits (``[N, D]``): a fit whose deposits do not move evaluates them once."""
    n = photons.shape[0]
    if visibility.ndim != 2 or visibility.shape[0] != n:
        raise ValueError(f"visibility must have shape [{n}, D], got {tuple(visibility.shape)}")
    if event.shape != (n,):
        raise ValueError(f"event must have shape [{n}]")
    d = visibility.shape[1]
    if pd_efficiency is not None and pd_efficiency.shape != (d,):
        raise ValueError(f"pd_efficiency must have shape [{d}], got {tuple(pd_efficiency.shape)}")
    v = visibility.to(device=photons.device, dtype=photons.dtype)
    pe = photons.new_zeros((n_events, d)).index_add(0, event, photons[:, None] * v)
    if pd_efficiency is not None:
        pe = pe * pd_efficiency.to(dtype=pe.dtype, device=pe.device)
    return pe


def sample_pe(pe_expected: Tensor,
              generator: torch.Generator | Sequence[torch.Generator] | None = None) -> Tensor:
    """Observed photoelectrons: ``Poisson(pe_expected)`` drawn from ``generator`` (or row e of
    ``pe_expected [E, D]`` from ``generator[e]``)."""
    mean = pe_expected.detach().clamp_min(0.0)
    if generator is None or isinstance(generator, torch.Generator):
        return torch.poisson(mean, generator=generator)
    rows = [torch.poisson(mean[e : e + 1], generator=g) for e, g in enumerate(generator)]
    return torch.cat(rows) if rows else torch.poisson(mean)
