"""Detector response of a pixel LArTPC: energy deposits -> voxel charges and light.

One physics step per module (larnd-sim style): :mod:`.recombination` (electrons escaping
recombination), :mod:`.drift` (drift time, lifetime, diffusion), :mod:`.voxelize` (charge
sharing onto voxels, pixel readout), :mod:`.light` (scintillation and photoelectrons).

The same code serves the event simulator (``mode="exact"``: hard threshold, random noise,
Poisson light) and the calibration, which fits the detector parameters by gradient descent
through it (``mode="expected"``: the mean voxel charges and PE that the likelihood of the
noisy, thresholded data is written in; ``mode="smooth"``: a sigmoid threshold instead;
everything differentiable with respect to every entry of ``params``, float64 supported).

Conventions: the anode is the plane x = 0 and a deposit drifts its x coordinate; y, z are
the pixel-plane coordinates. The reconstructed drift coordinate is
``x_reco = reco_drift_velocity * (t0 + x / drift_velocity)`` (arrival time converted with
the nominal velocity), so a wrong ``drift_velocity`` or a non-zero ``t0`` shifts and
stretches tracks along x exactly as in data. The longitudinal width is converted the same
way (``sigma_L * reco_drift_velocity / drift_velocity``). Voxel ``i`` spans
``[i pitch, (i+1) pitch)`` on each axis of (x_reco, y, z).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import torch
from torch import Tensor

from larchain.core.constants import (
    BIRKS_AB,
    BIRKS_KB,
    BOX_ALPHA,
    BOX_BETA,
    DIFFUSION_L_CM2_US,
    DIFFUSION_T_CM2_US,
    DRIFT_FIELD_KV_CM,
    ELECTRON_LIFETIME_US,
    LAR_TEMPERATURE_K,
    PIXEL_NOISE_ELECTRONS,
    PIXEL_THRESHOLD_ELECTRONS,
    W_ION_MEV,
)
from larchain.core.visibility import VisibilityModel
from larchain.sim.drift import diffusion_sigma, drift_time, drift_velocity, lifetime_attenuation
from larchain.sim.light import expected_pe, sample_pe, scintillation_photons
from larchain.sim.recombination import MODELS, recombination
from larchain.sim.voxelize import MODES, coalesce, neighbourhood_size, readout

#: Drift velocity [cm/us] at the nominal field and temperature (~0.160 cm/us).
NOMINAL_DRIFT_VELOCITY = float(drift_velocity(DRIFT_FIELD_KV_CM, LAR_TEMPERATURE_K))

#: Nominal scalar detector parameters (``pd_efficiency`` is added per detector by
#: :func:`default_params`). Units: kV/cm, cm/us, us, cm^2/us; alpha, A_B, light_yield 1.
DEFAULT_PARAMS: Mapping[str, float] = MappingProxyType(
    {
        "field": DRIFT_FIELD_KV_CM,
        "box_alpha": BOX_ALPHA,
        "box_beta": BOX_BETA,
        "birks_ab": BIRKS_AB,
        "birks_kb": BIRKS_KB,
        "drift_velocity": NOMINAL_DRIFT_VELOCITY,
        "lifetime": ELECTRON_LIFETIME_US,
        "diffusion_l": DIFFUSION_L_CM2_US,
        "diffusion_t": DIFFUSION_T_CM2_US,
        "light_yield": 1.0,
    }
)
#: Every key :func:`detector_response` accepts in ``params``.
PARAM_NAMES = (*DEFAULT_PARAMS, "pd_efficiency")


def default_params(
    recombination_model: str = "box",
    n_detectors: int = 0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> dict[str, Tensor]:
    """Fresh nominal parameters: 0-d tensors plus ``pd_efficiency`` = ones ``[n_detectors]``.

    Both models' constants are always present (one dict serves either; the unused pair gets
    zero gradient); ``recombination_model`` is validated so a typo fails here, early.
    ``drift_velocity`` is the velocity at the nominal field: in a fit it is a free
    parameter of its own (tie it to ``field`` via :func:`~larchain.sim.drift.drift_velocity`
    if wanted).
    """
    if recombination_model not in MODELS:
        raise ValueError(
            f"recombination_model must be one of {MODELS}, got {recombination_model!r}"
        )
    if n_detectors < 0:
        raise ValueError(f"n_detectors must be >= 0, got {n_detectors}")
    p = {k: torch.tensor(v, dtype=dtype, device=device) for k, v in DEFAULT_PARAMS.items()}
    p["pd_efficiency"] = torch.ones(n_detectors, dtype=dtype, device=device)
    return p


@dataclass
class Deposits:
    """Energy deposits of a batch of events (all tensors on one device).

    ``pos`` ``[N, 3]`` step midpoints [cm] in the detector frame (x = drift distance to the
    anode at x = 0), ``de`` ``[N]`` [MeV], ``dx`` ``[N]`` step length [cm], ``t0`` ``[N]``
    interaction time relative to the trigger [us], ``event`` ``[N]`` int64 index of the event
    within the batch; ``n_events`` (optional) fixes the number of events E (default
    ``max(event) + 1``) so empty trailing events still get a PE row.
    """

    pos: Tensor
    de: Tensor
    dx: Tensor
    t0: Tensor
    event: Tensor
    n_events: int | None = None

    def __len__(self) -> int:
        return int(self.pos.shape[0])

    def validate(self) -> None:
        """Raise ValueError (naming the field) on inconsistent or unphysical input."""
        pos = self.pos
        if not isinstance(pos, Tensor) or pos.ndim != 2 or pos.shape[1] != 3:
            raise ValueError(
                f"deposits.pos must be a tensor of shape [N, 3], got "
                f"{getattr(pos, 'shape', type(pos))}"
            )
        if not pos.is_floating_point():
            raise ValueError("deposits.pos must be floating point")
        n = pos.shape[0]
        for name in ("de", "dx", "t0"):
            t = getattr(self, name)
            if not isinstance(t, Tensor) or t.shape != (n,):
                raise ValueError(
                    f"deposits.{name} must be a tensor of shape [{n}], got "
                    f"{getattr(t, 'shape', type(t))}"
                )
            if t.dtype != pos.dtype or t.device != pos.device:
                raise ValueError(
                    f"deposits.{name} must have pos's dtype and device "
                    f"({pos.dtype}, {pos.device}), got ({t.dtype}, {t.device})"
                )
            if not bool(torch.isfinite(t).all()):
                raise ValueError(f"deposits.{name} must be finite")
        ev = self.event
        if not isinstance(ev, Tensor) or ev.shape != (n,) or ev.dtype != torch.int64:
            raise ValueError(f"deposits.event must be an int64 tensor of shape [{n}]")
        if ev.device != pos.device:
            raise ValueError("deposits.event must be on pos's device")
        if not bool(torch.isfinite(pos).all()):
            raise ValueError("deposits.pos must be finite")
        if bool((pos[:, 0] < 0).any()):
            raise ValueError("deposits.pos[:, 0] (drift distance to the anode at x=0) must be >= 0")
        if bool((self.de < 0).any()):
            raise ValueError("deposits.de must be >= 0")
        if bool((self.dx < 0).any()) or bool(((self.dx == 0) & (self.de > 0)).any()):
            raise ValueError("deposits.dx must be >= 0, and > 0 where de > 0 (dE/dx = de/dx)")
        if n and bool((ev < 0).any()):
            raise ValueError("deposits.event must be >= 0")
        if self.n_events is not None:
            if self.n_events < 0:
                raise ValueError(f"deposits.n_events must be >= 0, got {self.n_events}")
            if n and int(ev.max()) >= self.n_events:
                raise ValueError(
                    f"deposits.event has index {int(ev.max())} >= "
                    f"deposits.n_events = {self.n_events}"
                )

    def count_events(self) -> int:
        """E: ``n_events`` if given, else ``max(event) + 1`` (0 without deposits)."""
        if self.n_events is not None:
            return int(self.n_events)
        return int(self.event.max()) + 1 if len(self) else 0


@dataclass(frozen=True)
class ResponseSettings:
    """Fixed (non-fitted) settings of the response.

    ``pitch`` voxel size [cm]; ``recombination`` "box" | "birks"; ``reco_drift_velocity``
    [cm/us] converts arrival time to the reconstructed x (default: the velocity at the
    nominal field); ``sigma0`` initial cloud width [cm]; ``noise_electrons`` rms and
    ``threshold_electrons`` (defaults: LArPix-v2 values of larnd-sim); ``threshold_width``
    [electrons] of the smooth-mode sigmoid (default half the noise rms: the threshold is
    noise-smeared on that scale anyway); ``neighbourhood`` k of the ``(2k+1)^3`` charge
    sharing (None: from the largest width; fix it in fits so the voxel set cannot jump);
    ``mode`` "exact" (production) | "expected" (calibration likelihood) | "smooth".
    """

    pitch: float = 0.3
    recombination: str = "box"
    reco_drift_velocity: float = NOMINAL_DRIFT_VELOCITY
    sigma0: float = 0.0
    noise_electrons: float = PIXEL_NOISE_ELECTRONS
    threshold_electrons: float = PIXEL_THRESHOLD_ELECTRONS
    threshold_width: float = 0.5 * PIXEL_NOISE_ELECTRONS
    neighbourhood: int | None = None
    mode: str = "exact"

    def __post_init__(self) -> None:
        if not self.pitch > 0:
            raise ValueError(f"pitch must be > 0, got {self.pitch}")
        if self.recombination not in MODELS:
            raise ValueError(f"recombination must be one of {MODELS}, got {self.recombination!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if not self.reco_drift_velocity > 0:
            raise ValueError(f"reco_drift_velocity must be > 0, got {self.reco_drift_velocity}")
        if not self.sigma0 >= 0:
            raise ValueError(f"sigma0 must be >= 0, got {self.sigma0}")
        if not self.noise_electrons >= 0:
            raise ValueError(f"noise_electrons must be >= 0, got {self.noise_electrons}")
        if not self.threshold_width > 0:
            raise ValueError(f"threshold_width must be > 0, got {self.threshold_width}")
        if self.neighbourhood is not None and self.neighbourhood < 1:
            raise ValueError(f"neighbourhood must be >= 1 or None, got {self.neighbourhood}")


@dataclass
class Response:
    """Output of :func:`detector_response`.

    Voxels (after the readout; sorted by event, ix, iy, iz): ``coords`` ``[M, 3]`` int64,
    ``event`` ``[M]``, ``charge`` ``[M]`` electrons (differentiable), ``dominant`` ``[M]``
    index of the deposit contributing most charge (truth labels). Per deposit:
    ``drift_time`` ``[N]`` us, ``electrons`` ``[N]`` after recombination and before lifetime,
    ``photons`` ``[N]``. Light: ``pe_expected`` and ``pe`` ``[E, D]`` (Poisson draw in exact
    mode, the expectation in smooth mode; None without a visibility model). ``n_events`` E;
    ``neighbourhood`` the k used.
    """

    coords: Tensor
    event: Tensor
    charge: Tensor
    dominant: Tensor
    drift_time: Tensor
    electrons: Tensor
    photons: Tensor
    pe_expected: Tensor | None
    pe: Tensor | None
    n_events: int
    neighbourhood: int


def _check_params(params: Mapping[str, Tensor | float], like: Tensor) -> dict[str, Tensor]:
    """Params as tensors of ``like``'s dtype/device (differentiably), validated."""
    unknown = set(params) - set(PARAM_NAMES)
    if unknown:
        raise ValueError(f"params has unknown keys {sorted(unknown)}; expected {PARAM_NAMES}")
    out: dict[str, Tensor] = {}
    for name in DEFAULT_PARAMS:
        if name not in params:
            raise ValueError(f"params is missing {name!r} (see default_params())")
        v = params[name]
        t = v if isinstance(v, Tensor) else torch.tensor(float(v), dtype=like.dtype)
        t = t.to(dtype=like.dtype, device=like.device)
        if t.numel() != 1:
            raise ValueError(f"params[{name!r}] must be a scalar, got shape {tuple(t.shape)}")
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"params[{name!r}] must be finite")
        out[name] = t.reshape(())
    for name in ("field", "drift_velocity", "lifetime", "box_alpha"):
        if not bool(out[name] > 0):
            raise ValueError(f"params[{name!r}] must be > 0, got {float(out[name])}")
    for name in ("diffusion_l", "diffusion_t", "light_yield"):
        if not bool(out[name] >= 0):
            raise ValueError(f"params[{name!r}] must be >= 0, got {float(out[name])}")
    if "pd_efficiency" in params:
        v = params["pd_efficiency"]
        t = v if isinstance(v, Tensor) else torch.as_tensor(v, dtype=like.dtype)
        out["pd_efficiency"] = t.to(dtype=like.dtype, device=like.device)
    return out


def detector_response(
    deposits: Deposits,
    params: Mapping[str, Tensor | float],
    settings: ResponseSettings | None = None,
    visibility: VisibilityModel | None = None,
    generator: torch.Generator | Sequence[torch.Generator] | None = None,
    charge: bool = True,
) -> Response:
    """Simulate the charge and light response of a batch of events.

    Steps: R = recombination(de/dx, field); electrons = R de / W_ion; drift time x / v;
    lifetime exp(-t / tau); diffusion sigma_L, sigma_T; Gaussian charge sharing onto voxels
    of the reconstructed coordinates; pixel noise + threshold (see
    :func:`~larchain.sim.voxelize.readout`); photons = light_yield (de / W_ph - electrons);
    PE = sum photons x visibility x pd_efficiency per event (Poisson in exact mode).
    ``generator`` drives every random draw (noise first, then Poisson), so a seeded one makes
    the output reproducible. A sequence of E generators gives each event its own (the noise
    of event e's voxels, then its Poisson light, from ``generator[e]``): a batch of events
    then equals the same events simulated one by one with those generators, so a simulator
    can batch them without making an event depend on its batch. ``charge=False`` skips the
    drift and voxels (no voxels are returned): the light alone, for a fit that needs its
    derivatives separately.
    """
    s = settings if settings is not None else ResponseSettings()
    deposits.validate()
    pos = deposits.pos
    p = _check_params(params, pos)
    n_events = deposits.count_events()
    if generator is not None and not isinstance(generator, torch.Generator):
        generator = list(generator)
        if len(generator) != n_events:
            raise ValueError(f"generator: got {len(generator)} generators for {n_events} "
                             "events (one per event, or a single one)")

    # charge: recombination, lifetime, diffusion
    dedx = deposits.de / torch.where(deposits.dx > 0, deposits.dx, torch.ones_like(deposits.dx))
    r = recombination(dedx, p["field"], p, s.recombination)
    electrons = r * deposits.de / W_ION_MEV
    t_drift = drift_time(pos[:, 0], p["drift_velocity"])
    if not charge:
        return _light_only(deposits, p, s, visibility, generator, electrons, t_drift, n_events)
    at_anode = electrons * lifetime_attenuation(t_drift, p["lifetime"])
    stretch = s.reco_drift_velocity / p["drift_velocity"]
    sigma_l = diffusion_sigma(t_drift, p["diffusion_l"], s.sigma0) * stretch
    sigma_t = diffusion_sigma(t_drift, p["diffusion_t"], s.sigma0)
    x_reco = s.reco_drift_velocity * (deposits.t0 + t_drift)
    centre = torch.stack([x_reco, pos[:, 1], pos[:, 2]], dim=1)
    sigma = torch.stack([sigma_l, sigma_t, sigma_t], dim=1)
    k = s.neighbourhood
    if k is None:
        k = neighbourhood_size(float(sigma.detach().max()), s.pitch) if len(deposits) else 1
    # the truth label of each voxel (its dominant deposit) is not needed by a likelihood
    vox = coalesce(centre, sigma, at_anode, deposits.event, s.pitch, k,
                   with_dominant=s.mode != "expected")
    z = None
    if isinstance(generator, list) and s.noise_electrons > 0 and s.mode != "expected":
        # per-event noise: the voxel keys are sorted by event
        n_vox = torch.bincount(vox.event_of_keys(), minlength=n_events).tolist()
        z = torch.cat([torch.randn(m, generator=g, dtype=vox.charge.dtype)
                       for m, g in zip(n_vox, generator, strict=True)]).to(vox.charge.device)
    q, keep = readout(
        vox.charge,
        s.threshold_electrons,
        s.noise_electrons,
        s.mode,
        s.threshold_width,
        None if isinstance(generator, list) else generator,
        noise=z,
    )
    coords, event = vox.decode(keep)
    dominant = vox.dominant if keep is None else vox.dominant[keep]

    photons, pe_expected, pe = _light(deposits, p, s, visibility, generator, electrons,
                                      n_events)
    return Response(
        coords=coords,
        event=event,
        charge=q,
        dominant=dominant,
        drift_time=t_drift,
        electrons=electrons,
        photons=photons,
        pe_expected=pe_expected,
        pe=pe,
        n_events=n_events,
        neighbourhood=k,
    )


def _light(deposits: Deposits, p: Mapping[str, Tensor], s: ResponseSettings,
           visibility: VisibilityModel | None, generator: torch.Generator | None,
           electrons: Tensor, n_events: int) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """Photons per deposit and (with a visibility) expected and observed PE per event."""
    photons = scintillation_photons(deposits.de, electrons, p["light_yield"])
    pe_expected = pe = None
    if visibility is not None:
        eff = p.get("pd_efficiency")
        d = visibility.n_detectors
        if eff is not None and eff.shape != (d,):
            raise ValueError(
                f"params['pd_efficiency'] has shape {tuple(eff.shape)}, expected "
                f"[{d}] (visibility.n_detectors; default_params(n_detectors={d}))"
            )
        pe_expected = expected_pe(deposits.pos, photons, deposits.event, n_events, visibility,
                                  eff)
        pe = sample_pe(pe_expected, generator) if s.mode == "exact" else pe_expected
    return photons, pe_expected, pe


def _light_only(deposits: Deposits, p: Mapping[str, Tensor], s: ResponseSettings,
                visibility: VisibilityModel | None, generator: torch.Generator | None,
                electrons: Tensor, t_drift: Tensor, n_events: int) -> Response:
    photons, pe_expected, pe = _light(deposits, p, s, visibility, generator, electrons,
                                      n_events)
    none = torch.zeros(0, dtype=torch.int64, device=electrons.device)
    return Response(coords=none.view(0, 3), event=none, charge=electrons.new_zeros(0),
                    dominant=none, drift_time=t_drift, electrons=electrons, photons=photons,
                    pe_expected=pe_expected, pe=pe, n_events=n_events, neighbourhood=0)
