"""The likelihood of control samples given detector parameters.

Charge: the simulation adds Gaussian noise (rms sigma_n) to the mean charge mu of every voxel
the deposits reach and keeps the voxels with q >= threshold. So, with mu from the same
differentiable response (``mode="expected"``), the exact likelihood is a censored Gaussian:

* recorded voxel: ``-ln L = (q - mu)^2 / (2 sigma_n^2)`` (+ const),
* voxel reached but not recorded: ``-ln L = -ln Phi((threshold - mu) / sigma_n)``.

Light: the observed PE are Poisson with mean ``P_ej = sum_i photons_i Y Q_j vis_j(r_i)``:
``-ln L = sum (P - n ln P)`` (+ const). An exact likelihood is what makes the Hessian at the
minimum an honest covariance (checked by the coverage study).

Scalar parameters are fitted as ``theta = ln(value / start)`` (order one, and positive
whatever step an optimiser tries); the covariance is mapped back with the Jacobian at the
minimum. The light yield Y and
the per-photodetector efficiencies Q_j enter only as products Y Q_j, so Q is constrained to
mean one: ``Q = q0 + B u`` with B an orthonormal basis of the sum-zero vectors (D - 1 free
``u``); Y is then the absolute yield times the mean efficiency.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from larchain.calib.data import ControlData
from larchain.sim.light import pe_from_visibility
from larchain.sim.response import Deposits, ResponseSettings, detector_response

#: Scalar parameters a fit may free (``field`` is not: it is degenerate with beta / k_B).
SCALARS = ("lifetime", "box_alpha", "box_beta", "birks_ab", "birks_kb", "diffusion_l",
           "diffusion_t", "drift_velocity", "light_yield")
#: What moves the voxel charges (the expensive part of the likelihood) ...
CHARGE = ("lifetime", "box_alpha", "box_beta", "birks_ab", "birks_kb", "diffusion_l",
          "diffusion_t", "drift_velocity")
#: ... and what moves the light.
LIGHT = ("box_alpha", "box_beta", "birks_ab", "birks_kb", "light_yield", "pd_efficiency")


def sum_zero_basis(d: int, dtype: torch.dtype = torch.float64) -> Tensor:
    """Orthonormal basis ``[d, d - 1]`` of the vectors summing to zero (Helmert contrasts)."""
    b = torch.zeros(d, max(d - 1, 0), dtype=dtype)
    for j in range(1, d):
        b[:j, j - 1] = 1.0
        b[j, j - 1] = -float(j)
        b[:, j - 1] /= math.sqrt(j * (j + 1))
    return b


@dataclass
class Parametrisation:
    """Maps the fit vector theta (order one) to the response's parameter dict.

    ``free`` are the fitted scalar names (plus "pd_efficiency" for D - 1 contrasts); every
    other parameter stays at ``start``. ``start["pd_efficiency"]`` is normalised to mean one
    (its mean goes into ``light_yield``).
    """

    free: tuple[str, ...]
    start: dict[str, Any]
    n_detectors: int = 0

    def __post_init__(self) -> None:
        unknown = set(self.free) - set(SCALARS) - {"pd_efficiency"}
        if unknown:
            raise ValueError(f"cannot fit {sorted(unknown)}; fittable: "
                             f"{[*SCALARS, 'pd_efficiency']}")
        self.scalars = tuple(n for n in self.free if n != "pd_efficiency")
        self.fit_efficiency = "pd_efficiency" in self.free and self.n_detectors > 1
        eff = self.start.get("pd_efficiency")
        q = (torch.ones(self.n_detectors, dtype=torch.float64) if eff is None
             else torch.as_tensor(eff, dtype=torch.float64).clone())
        if self.n_detectors and q.shape != (self.n_detectors,):
            raise ValueError(f"start pd_efficiency has shape {tuple(q.shape)}, expected "
                             f"[{self.n_detectors}]")
        self.start = {k: (float(v) if k != "pd_efficiency" else v) for k, v in
                      self.start.items()}
        if self.n_detectors:
            mean = float(q.mean())
            self.start["light_yield"] = float(self.start["light_yield"]) * mean
            q = q / mean
        self.q0 = q
        self.basis = sum_zero_basis(self.n_detectors) if self.fit_efficiency else None
        for n in self.scalars:
            if not self.start[n] > 0:
                raise ValueError(f"start value of {n!r} must be > 0 (it sets the fit's scale),"
                                 f" got {self.start[n]}")

    @property
    def size(self) -> int:
        return len(self.scalars) + (self.n_detectors - 1 if self.fit_efficiency else 0)

    @property
    def labels(self) -> list[str]:
        u = [f"u{j}" for j in range(self.n_detectors - 1)] if self.fit_efficiency else []
        return [*self.scalars, *u]

    def initial(self) -> Tensor:
        return torch.zeros(self.size, dtype=torch.float64)

    def params(self, theta: Tensor) -> dict[str, Tensor]:
        """The response's parameter dict (differentiable in theta)."""
        p: dict[str, Tensor] = {
            k: torch.tensor(v, dtype=torch.float64) for k, v in self.start.items()
            if k != "pd_efficiency"}
        for i, n in enumerate(self.scalars):
            p[n] = torch.exp(theta[i]) * self.start[n]
        if self.n_detectors:
            q = self.q0
            if self.fit_efficiency:
                q = q + self.basis @ theta[len(self.scalars):]
            p["pd_efficiency"] = q
        return p

    def jacobian(self, theta: Tensor) -> tuple[list[str], Tensor]:
        """Names and d(physical)/d(theta) at ``theta`` of the reported quantities: the fitted
        scalars and, when fitted, every efficiency ``pd_efficiency[j]``."""
        ns = len(self.scalars)
        names = list(self.scalars)
        rows = [torch.eye(self.size, dtype=torch.float64)[i] * self.start[n]
                * math.exp(float(theta[i])) for i, n in enumerate(self.scalars)]
        if self.fit_efficiency:
            names += [f"pd_efficiency[{j}]" for j in range(self.n_detectors)]
            pad = torch.zeros(self.n_detectors, ns, dtype=torch.float64)
            rows += list(torch.cat([pad, self.basis], 1))
        return names, torch.stack(rows) if rows else torch.zeros(0, self.size)

    def values(self, theta: Tensor) -> dict[str, float]:
        """Physical values of the reported quantities (see :meth:`jacobian`)."""
        p = self.params(theta.detach())
        out = {n: float(p[n]) for n in self.scalars}
        if self.fit_efficiency:
            out.update({f"pd_efficiency[{j}]": float(v)
                        for j, v in enumerate(p["pd_efficiency"])})
        return out


def comparable_truth(truth: Mapping[str, Any], n_detectors: int) -> dict[str, float]:
    """The true parameters in the fit's convention (efficiencies normalised to mean one,
    their mean moved into the light yield)."""
    out = {k: float(v) for k, v in truth.items() if k in SCALARS}
    if n_detectors:
        eff = truth.get("pd_efficiency")
        q = torch.ones(n_detectors, dtype=torch.float64) if eff is None else torch.as_tensor(
            [float(v) for v in eff], dtype=torch.float64)
        if "light_yield" in out:
            out["light_yield"] *= float(q.mean())
        out.update({f"pd_efficiency[{j}]": float(v / q.mean()) for j, v in enumerate(q)})
    return out


class Likelihood:
    """Negative log-likelihood of control data; evaluated per group of events that share a
    charge-sharing neighbourhood k (the voxelisation needs one k per call).

    ``device``: where the groups' data live and the response is evaluated (e.g. "cuda");
    parameters come in and -ln L goes out on the host, so the fit itself does not change.
    """

    def __init__(self, data: ControlData, settings: ResponseSettings, use_light: bool = True,
                 device: torch.device | str | None = None) -> None:
        self.data = data
        self.device = torch.device(device) if device is not None else data.pos.device
        self.settings = replace(settings, mode="expected")
        self.noise = float(settings.noise_electrons)
        self.threshold = float(settings.threshold_electrons)
        if not self.noise > 0:
            raise ValueError("the charge likelihood needs readout noise > 0 (it is the "
                             "Gaussian width of every voxel's charge)")
        self.use_light = bool(use_light and data.pe is not None)
        if self.use_light and data.visibility is None:
            raise ValueError("light in the likelihood needs data.with_visibility(model)")
        self.groups = self.split(torch.arange(data.n_events))

    def split(self, events: Tensor) -> list[tuple[int, ControlData]]:
        """``events`` of the data grouped by their neighbourhood k."""
        ks = self.data.neighbourhood[events]
        return [(int(k), self.data.subset(events[ks == k]).to(self.device))
                for k in torch.unique(ks)]

    def group_nll(self, d: ControlData, k: int, params: Mapping[str, Tensor],
                  parts: Sequence[str] = ("charge", "light")) -> Tensor:
        """-ln L of one group, up to parameter-free constants: its ``parts`` ("charge": the
        voxels, "light": the PE; the Hessian takes them separately, since only the charge
        part is expensive)."""
        with_charge = "charge" in parts
        host = next(iter(params.values())).device
        params = {n: v.to(d.pos.device) for n, v in params.items()}
        resp = self._response(d, k, params, with_charge)
        nll = torch.zeros((), dtype=torch.float64, device=d.pos.device)
        if with_charge:
            nll = nll + self._charge_nll(d, resp.coords, resp.event, resp.charge)
        if "light" in parts and self.use_light:
            assert d.pe is not None
            lam = self._pe(d, resp.photons, params).clamp_min(1e-300)
            nll = nll + (lam - d.pe * torch.log(lam)).sum()
        return nll.to(host)

    def expected_pe(self, d: ControlData, params: Mapping[str, Tensor]) -> Tensor:
        """Expected photoelectrons ``[E, D]`` of the events ``d`` (light only: no voxels)."""
        return self._pe(d, self._response(d, 1, params, charge=False).photons, params)

    def _response(self, d: ControlData, k: int, params: Mapping[str, Tensor], charge: bool
                  ) -> Any:
        deposits = Deposits(pos=d.pos, de=d.de, dx=d.dx, t0=d.t0, event=d.event,
                            n_events=d.n_events)
        return detector_response(deposits, params, replace(self.settings, neighbourhood=k),
                                 charge=charge)

    @staticmethod
    def _pe(d: ControlData, photons: Tensor, params: Mapping[str, Tensor]) -> Tensor:
        if d.visibility is None:
            raise ValueError("expected PE need the deposits' visibility "
                             "(data.with_visibility(model))")
        return pe_from_visibility(d.visibility, photons, d.event, d.n_events,
                                  params.get("pd_efficiency"))

    def _charge_nll(self, d: ControlData, coords: Tensor, event: Tensor, charge: Tensor
                    ) -> Tensor:
        gx, gy, gz = d.grid
        inside = ((coords >= 0) & (coords < torch.tensor(d.grid, device=coords.device))).all(1)
        c, mu = coords[inside], charge[inside]
        keys = ((event[inside] * gx + c[:, 0]) * gy + c[:, 1]) * gz + c[:, 2]
        dc = d.vox_coords
        dkeys = ((d.vox_event * gx + dc[:, 0]) * gy + dc[:, 1]) * gz + dc[:, 2]
        if len(keys) == 0:
            return 0.5 * ((d.vox_charge / self.noise) ** 2).sum()
        at = torch.searchsorted(keys, dkeys).clamp_max(len(keys) - 1)
        found = keys[at] == dkeys
        mu_obs = torch.where(found, mu[at], mu.new_zeros(()))
        recorded = 0.5 * (((d.vox_charge - mu_obs) / self.noise) ** 2).sum()
        missed = torch.ones(len(keys), dtype=torch.bool, device=keys.device)
        missed[at[found]] = False
        z = (self.threshold - mu[missed]) / self.noise
        return recorded - torch.special.log_ndtr(z).sum()

    def nll(self, params: Mapping[str, Tensor],
            groups: Sequence[tuple[int, ControlData]] | None = None) -> Tensor:
        """-ln L of the groups (default: all events)."""
        total = torch.zeros((), dtype=torch.float64)
        for k, d in groups if groups is not None else self.groups:
            total = total + self.group_nll(d, k, params)
        return total
