"""Classic calibration baselines, shown side by side with the differentiable fit.

What a physicist would do with the control samples without a simulator in the loop:

* :func:`lifetime_fit` -- crossing muons: robust dQ/dx versus drift time, fit
  ``A exp(-t / tau)``;
* :func:`box_fit` -- stopping tracks: lifetime-corrected dQ/dx versus the dE/dx that the
  range table gives at each residual range, fit the modified box model;
* :func:`diffusion_fit` -- crossing muons: "hit width versus drift time", fit
  ``var(t) = c + 2 D t`` for the transverse and the longitudinal coefficient.

:func:`run_baselines` chains them in the classic order (the lifetime corrects the dQ/dx of the
recombination fit). Every result is a plain JSON-serialisable dict with the fitted values,
1-sigma errors from the fit covariance (``absolute_sigma``: the bin errors are taken as true)
and the binned points, so a plot can draw them.

Geometry (see :mod:`larchain.sim.response`): voxel ``(ix, iy, iz)`` has its centre at
``((ix + 1/2) p, (iy + 1/2) p, (iz + 1/2) p)`` in reconstructed coordinates (x_reco, y, z);
its drift time is ``t = x_reco / v_reco - t0`` with ``t0`` the known start time of the track.
All lines and distances are computed in these coordinates. Units: cm, us, MeV, electrons.

Event dicts are those of :meth:`larchain.sim.storage.EventFile.event` (the primary track is
``particles`` row 0, its start time ``interactions["time"][0]``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy.optimize import curve_fit

from larchain.core.constants import (
    BOX_ALPHA,
    BOX_BETA,
    DRIFT_FIELD_KV_CM,
    LAR_DENSITY_G_CM3,
    W_ION_MEV,
)
from larchain.sim.stopping import RangeTable

__all__ = ["box_fit", "diffusion_fit", "lifetime_fit", "run_baselines"]

#: PDG code of the primary expected for each particle the box fit knows.
_PDG = {"proton": 2212, "muon": 13, "pion": 211}
#: Offsets [pitch] of the 3 x 3 x 3 stratified sub-points of a voxel.
_SUB_OFFSETS = np.stack(np.meshgrid(*[np.array([-1.0, 0.0, 1.0]) / 3.0] * 3, indexing="ij"),
                        axis=-1).reshape(-1, 3)


# --------------------------------------------------------------------------------------------
# helpers


def _check_settings(events: Sequence[Mapping[str, Any]], pitch: float, reco_velocity: float,
                    sample: str) -> list[Mapping[str, Any]]:
    evs = list(events)
    if not evs:
        raise ValueError(f"{sample}: no events given; expected a non-empty sequence of event "
                         "dicts (one track per event)")
    if not (pitch > 0 and math.isfinite(pitch)):
        raise ValueError(f"{sample}: pitch must be > 0 cm, got {pitch}")
    if not (reco_velocity > 0 and math.isfinite(reco_velocity)):
        raise ValueError(f"{sample}: reco_velocity must be > 0 cm/us, got {reco_velocity}")
    return evs


def _check_trim(trim: Sequence[float], what: str) -> tuple[float, float]:
    lo, hi = (float(v) for v in trim)
    if not (0 <= lo and 0 <= hi and lo + hi < 0.9):
        raise ValueError(f"{what}: trim fractions must be >= 0 and sum to < 0.9, got {trim}")
    return lo, hi


def _voxels(ev: Mapping[str, Any], pitch: float, sample: str, i: int
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(coords int [M,3], voxel centres [M,3] cm, charge [M] e, t0 us) of one event."""
    try:
        coords = np.asarray(ev["voxels"]["coords"], dtype=np.int64).reshape(-1, 3)
        charge = np.asarray(ev["voxels"]["charge"], dtype=np.float64).reshape(-1)
        t0 = float(np.asarray(ev["interactions"]["time"]).reshape(-1)[0])
    except (KeyError, IndexError, TypeError) as err:
        raise ValueError(f"{sample}: event {i} lacks voxels/coords, voxels/charge or "
                         f"interactions/time ({err!r})") from err
    if len(charge) != len(coords):
        raise ValueError(f"{sample}: event {i} has {len(coords)} voxel coords but "
                         f"{len(charge)} charges")
    return coords, (coords + 0.5) * pitch, charge, t0


def _primary_ends(ev: Mapping[str, Any], sample: str, i: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        start = np.array(ev["particles"]["start"], dtype=np.float64).reshape(-1, 3)[0]
        end = np.array(ev["particles"]["end"], dtype=np.float64).reshape(-1, 3)[0]
    except (KeyError, IndexError, TypeError) as err:
        raise ValueError(f"{sample}: event {i} lacks particles/start or particles/end of the "
                         f"primary (row 0) ({err!r})") from err
    return start, end


def _line(points: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Charge-weighted PCA line: (centroid, unit direction with d_x >= 0)."""
    centre = (w[:, None] * points).sum(0) / w.sum()
    d = points - centre
    cov = (d * w[:, None]).T @ d / w.sum()
    direction = np.linalg.eigh(cov)[1][:, -1]
    return centre, direction if direction[0] >= 0 else -direction


def _distance(points: np.ndarray, centre: np.ndarray, direction: np.ndarray) -> np.ndarray:
    d = points - centre
    return np.linalg.norm(d - np.outer(d @ direction, direction), axis=1)


def _robust_line(points: np.ndarray, q: np.ndarray, radius: float
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Line through a track's voxels, refitted without voxels farther than ``radius`` (delta
    rays, noise): first at 3x the radius, then at the radius. Returns centre, direction, mask.
    """
    w = np.clip(q, 0.0, None)
    keep = w > 0
    for r in (3.0 * radius, radius):
        if keep.sum() < 3:
            break
        centre, direction = _line(points[keep], w[keep])
        keep = (_distance(points, centre, direction) <= r) & (w > 0)
    if keep.sum() < 3:
        return np.zeros(3), np.array([1.0, 0.0, 0.0]), keep
    centre, direction = _line(points[keep], w[keep])
    return centre, direction, keep


def _trimmed_mean(values: np.ndarray, trim: tuple[float, float]) -> tuple[float, float]:
    """Mean of the values between the ``trim`` quantiles and its standard error.

    The error is the Tukey-McLaughlin one: std of the winsorised sample / (kept fraction
    sqrt(n)) -- valid for trimmed means of skewed (Landau-like) distributions, no resampling.
    """
    v = np.sort(np.asarray(values, dtype=np.float64))
    n = len(v)
    a = int(math.floor(trim[0] * n))
    b = n - int(math.floor(trim[1] * n))
    kept = v[a:b]
    g = (b - a) / n
    s_w = np.clip(v, kept[0], kept[-1]).std(ddof=1)
    return float(kept.mean()), float(s_w / (g * math.sqrt(n)))


def _binned(x: np.ndarray, y: np.ndarray, edges: np.ndarray, trim: tuple[float, float],
            min_entries: int) -> dict[str, np.ndarray]:
    """Robust (trimmed) mean of ``y`` in bins of ``x``; bins with < min_entries are dropped."""
    idx = np.digitize(x, edges) - 1
    rows = []
    for b in range(len(edges) - 1):
        sel = idx == b
        if sel.sum() >= max(min_entries, 3):
            m, e = _trimmed_mean(y[sel], trim)
            rows.append((float(x[sel].mean()), m, e, int(sel.sum()), b))
    if not rows:
        return {k: np.zeros(0) for k in ("x", "y", "err", "n", "bin")}
    x_, y_, e_, n_, b_ = (np.array(c) for c in zip(*rows, strict=True))
    return {"x": x_, "y": y_, "err": e_, "n": n_.astype(int), "bin": b_.astype(int)}


def _fit(f: Callable[..., np.ndarray], x: np.ndarray, y: np.ndarray, err: np.ndarray,
         p0: Sequence[float], what: str, **kw: Any) -> dict[str, Any]:
    """curve_fit with absolute sigma; raises ValueError on a degenerate fit."""
    n_par = len(p0)
    if len(x) < n_par + 1:
        raise ValueError(f"{what}: only {len(x)} usable bins, need at least {n_par + 1} to fit "
                         f"{n_par} parameters with a goodness of fit (a bin needs min_entries "
                         "track segments: give more events)")
    if np.any(~np.isfinite(err)) or np.any(err <= 0):
        raise ValueError(f"{what}: a bin has a non-positive or non-finite error (identical "
                         "entries?); more events are needed")
    try:
        popt, pcov = curve_fit(f, x, y, p0=list(p0), sigma=err, absolute_sigma=True,
                               maxfev=20000, **kw)
    except RuntimeError as exc:
        raise ValueError(f"{what}: the fit did not converge ({exc})") from exc
    if not np.all(np.isfinite(pcov)):
        raise ValueError(f"{what}: the fit covariance is not finite (parameters unconstrained "
                         "by the points)")
    perr = np.sqrt(np.diag(pcov))
    resid = (y - f(x, *popt)) / err
    return {"popt": popt, "perr": perr, "cov": pcov, "chi2": float(resid @ resid),
            "ndf": int(len(x) - n_par),
            "corr": (pcov / np.outer(perr, perr)).tolist() if np.all(perr > 0) else None}


def _tolist(a: np.ndarray) -> list[float]:
    return [float(v) for v in np.asarray(a, dtype=np.float64)]


# --------------------------------------------------------------------------------------------
# lifetime


def lifetime_fit(
    events: Sequence[Mapping[str, Any]],
    *,
    pitch: float,
    reco_velocity: float,
    t_bin_us: float = 25.0,
    edge_cm: float = 5.0,
    radius_cm: float = 1.5,
    trim: Sequence[float] = (0.0, 0.2),
    min_entries: int = 10,
    sample: str = "crossing_muons",
) -> dict[str, Any]:
    """Electron lifetime from crossing muons: robust dQ/dx versus drift time, ``A e^{-t/tau}``.

    Method: per track, a charge-weighted PCA line of the voxel centres (refitted without
    voxels farther than ``radius_cm``: delta rays) gives the direction d; the direction comes
    from the voxels (no truth), so a wrong drift velocity cannot enter through it. The voxel
    x-columns of the track are grouped by drift time (``t_bin_us``); the track's dQ/dx in a
    bin is the charge of its voxels there over the path length, n_columns * pitch / |d_x|,
    which is exact for columns wholly in the track. Bins reaching within ``edge_cm`` (in x)
    of the track's first or last column are dropped: partly covered, and near the entry
    point the delta-ray flux from upstream has not built up yet (dQ/dx is a few % low there).
    One value per track and bin keeps the tracks independent; each bin gets the trimmed mean
    over tracks (default: lowest 80%, removing the Landau / delta-ray tail) with a
    Tukey-McLaughlin error and the mean drift time of its entries. Bins share tracks, and the
    fit treats them as independent (per-track dQ/dx offsets are common to all bins, so this
    overstates the lifetime error somewhat; chi2/ndf comes out ~0.7).

    Known bias, left in on purpose (it is what the simulator-based fit is for): voxels below
    threshold are absent, and diffusion pushes more charge into sub-threshold neighbours at
    long drift, so dQ/dx falls faster than exp(-t / tau) and the lifetime comes out ~40% low
    (simulated control muons: 2000 e threshold, 3 mm voxels, D_T = 9.5 cm^2/s, tau = 2.6 ms
    -> 1590 us). Without threshold 1/tau came out 0.008 +- 0.002 /ms high (1600 simulated
    muons, i.e. tau ~2% low at 2.6 ms; cause not isolated: MCS or delta rays leaving the
    ``radius_cm`` cylinder); without diffusion the threshold bias is ~2% at tau = 1.5 ms.
    """
    evs = _check_settings(events, pitch, reco_velocity, sample)
    if t_bin_us <= 0 or edge_cm < 0:
        raise ValueError(f"{sample}: need t_bin_us > 0 and edge_cm >= 0")
    tr = _check_trim(trim, sample)
    ts, vals = [], []
    n_tracks = 0
    for i, ev in enumerate(evs):
        coords, pts, q, t0 = _voxels(ev, pitch, sample, i)
        if len(q) < 10:
            continue
        _, d, keep = _robust_line(pts, q, radius_cm)
        if keep.sum() < 10 or abs(d[0]) < 0.1:  # ~parallel to the anode: no drift lever arm
            continue
        ix, q_k = coords[keep, 0], q[keep]
        edge = max(int(math.ceil(edge_cm / pitch)), 1)
        cols = np.arange(int(ix.min()) + edge, int(ix.max()) - edge + 1)
        t_col = (cols + 0.5) * pitch / reco_velocity - t0
        b_col = np.floor(t_col / t_bin_us).astype(np.int64)
        inner = (ix >= cols[0]) & (ix <= cols[-1]) if len(cols) else np.zeros_like(ix, bool)
        full = np.unique(b_col)[1:-1]  # the first and last bins may be partly covered
        if not len(full):
            continue
        b0 = int(b_col[0])
        n_col = np.bincount(b_col - b0)
        charge = np.bincount(b_col[ix[inner] - cols[0]] - b0, weights=q_k[inner],
                             minlength=len(n_col))
        t_sum = np.bincount(b_col - b0, weights=t_col)
        k = full - b0
        n_tracks += 1
        ts.append(t_sum[k] / n_col[k])
        vals.append(charge[k] * abs(d[0]) / (n_col[k] * pitch))
    if not ts:
        raise ValueError(f"{sample}: no usable track (need crossing tracks with >= 10 voxels "
                         f"spanning a drift-time bin more than {edge_cm} cm from their ends)")
    t, v = np.concatenate(ts), np.concatenate(vals)
    edges = np.arange(0.0, t.max() + t_bin_us, t_bin_us)
    pts_ = _binned(t, v, edges, tr, min_entries)
    what = f"{sample}: lifetime fit"
    if len(pts_["x"]) >= 2:
        slope = np.polyfit(pts_["x"], np.log(np.clip(pts_["y"], 1e-12, None)), 1)[0]
        tau0 = -1.0 / slope if slope < -1e-7 else 1e5
    else:
        tau0 = 1e4
    amp0 = float(pts_["y"][0]) if len(pts_["y"]) else 1.0

    def model(x: np.ndarray, amp: float, tau: float) -> np.ndarray:
        return amp * np.exp(-x / tau)

    fit = _fit(model, pts_["x"], pts_["y"], pts_["err"], (amp0, tau0), what)
    (amp, tau), (amp_e, tau_e) = fit["popt"], fit["perr"]
    return {
        "lifetime": float(tau), "lifetime_error": float(tau_e),
        "amplitude": float(amp), "amplitude_error": float(amp_e),
        "correlation": float(fit["corr"][0][1]) if fit["corr"] else None,
        "chi2": fit["chi2"], "ndf": fit["ndf"],
        "n_tracks": n_tracks, "n_entries": int(len(v)), "sample": sample,
        "points": {"t": _tolist(pts_["x"]), "dqdx": _tolist(pts_["y"]),
                   "dqdx_error": _tolist(pts_["err"]), "n": [int(n) for n in pts_["n"]]},
        "units": {"lifetime": "us", "amplitude": "electrons/cm", "t": "us",
                  "dqdx": "electrons/cm"},
    }


# --------------------------------------------------------------------------------------------
# recombination (modified box)


def box_fit(
    events: Sequence[Mapping[str, Any]],
    *,
    pitch: float,
    reco_velocity: float,
    lifetime: float,
    field: float = DRIFT_FIELD_KV_CM,
    particle: str = "proton",
    rr_bin_cm: float = 1.0,
    rr_min_cm: float = 1.5,
    rr_max_cm: float = 26.5,
    radius_cm: float = 2.0,
    trim: Sequence[float] = (0.1, 0.1),
    size: Sequence[float] | None = None,
    end_point: str = "voxels",
    end_fraction: float = 0.15,
    end_window_cm: float = 3.0,
    min_entries: int = 5,
    sample: str | None = None,
    p0: Sequence[float] = (BOX_ALPHA, BOX_BETA),
) -> dict[str, Any]:
    """Modified box (alpha, beta) from stopping tracks: dQ/dx versus table dE/dx.

    Method: the primary's true start and end are put in reconstructed coordinates with the
    nominal velocity, ``x_reco = v_reco (t0 + x / v_reco) = v_reco t0 + x`` (the analysis
    does not know the true velocity). Voxels within ``radius_cm`` of the start-end chord
    belong to the track. The end point: with ``end_point="truth"`` the converted true end;
    with ``"voxels"`` (default) it is re-found in the data, as a reconstruction would: a
    charge-weighted line through the track voxels within ``end_window_cm`` of the converted
    end, and on it the farthest projection of a voxel holding >= ``end_fraction`` of the
    largest voxel charge there (offset from the true end -0.005 cm median, 10-90% within
    +-0.14 cm on simulated protons, with or without threshold). This matters: with v_true
    1.3% below v_reco the converted true end is off by up to ~1.2 cm in x; on simulated
    protons the first bin then came out ~5% high and alpha ~4% low (chi2 100/23), against
    ~2% with the re-found end. A voxel's charge is spread over 27 sub-points of its volume
    and each sub-point's residual range is its distance to the end point (signed by the side
    of the end it lies on; on a slightly curved track the chord/arc difference is second
    order): binning voxel centres instead would alias with the lattice (the re-found end
    sits on it) and is noisier. Charges are corrected for attenuation voxel by voxel,
    ``q exp(t / lifetime)``. Residual-range bins
    ``[rr_min + k w, rr_min + (k+1) w)`` are common to all tracks, so each is one dE/dx
    point: per track dQ/dx = bin charge / w, for bins that end at least w/2 before the track
    start and (when ``size`` [cm], the readout volume in reco coordinates, is given) lie at
    least a pitch inside it. Pooled over tracks, each bin gets a trimmed mean (default 10% on
    each side). The model is averaged over each bin (16 sub-points of the range table), so
    the curvature of dE/dx near the Bragg peak does not bias the fit; ``points.dedx`` is the
    exact bin mean ``(T(hi) - T(lo)) / w``. Fitted: ``dQ/dx = ln(alpha + xi)/xi dE/dx / W``,
    ``xi = beta (dE/dx) / (rho field)``. The last ``rr_min_cm`` = 1.5 cm are skipped: on
    simulated protons (no threshold) bins from 0.5 cm gave chi2 ~150/24 and alpha, beta ~2%
    low, from 1.5 cm chi2 ~25/23 and both within 1%. Known bias, left in: voxels below
    threshold are lost (2000 e: alpha ~8% low, beta ~2% high).
    """
    sample = sample or f"stopping_{particle}s"
    evs = _check_settings(events, pitch, reco_velocity, sample)
    if particle not in _PDG:
        raise ValueError(f"{sample}: particle must be one of {tuple(_PDG)}, got {particle!r}")
    if not lifetime > 0:
        raise ValueError(f"{sample}: lifetime must be > 0 us, got {lifetime}")
    if not field > 0:
        raise ValueError(f"{sample}: field must be > 0 kV/cm, got {field}")
    if not (rr_bin_cm > 0 and rr_max_cm >= rr_min_cm + rr_bin_cm and rr_min_cm >= 0):
        raise ValueError(f"{sample}: need rr_bin_cm > 0 and rr_max_cm >= rr_min_cm + rr_bin_cm")
    if end_point not in ("voxels", "truth"):
        raise ValueError(f"{sample}: end_point must be 'voxels' or 'truth', got {end_point!r}")
    tr = _check_trim(trim, sample)
    box = None if size is None else np.asarray(size, dtype=np.float64).reshape(3)
    n_bins = int(math.floor((rr_max_cm - rr_min_cm) / rr_bin_cm + 1e-9))
    edges = rr_min_cm + rr_bin_cm * np.arange(n_bins + 1)
    per_bin: list[list[float]] = [[] for _ in range(n_bins)]
    n_tracks = 0
    for i, ev in enumerate(evs):
        try:
            pdg = int(abs(np.asarray(ev["particles"]["pdg"]).reshape(-1)[0]))
        except (KeyError, IndexError, TypeError) as err:
            raise ValueError(f"{sample}: event {i} lacks particles/pdg ({err!r})") from err
        if pdg != _PDG[particle]:
            raise ValueError(f"{sample}: event {i} has a primary with pdg {pdg}, expected "
                             f"{_PDG[particle]} ({particle})")
        _, pts, q, t0 = _voxels(ev, pitch, sample, i)
        start, end = _primary_ends(ev, sample, i)
        start[0] += reco_velocity * t0
        end[0] += reco_velocity * t0
        length = float(np.linalg.norm(end - start))
        if length < rr_min_cm + rr_bin_cm or len(q) == 0:
            continue
        d = (end - start) / length
        keep = _distance(pts, start, d) <= radius_cm
        along = (pts - start) @ d
        keep &= (along >= -radius_cm) & (along <= length + radius_cm)
        if not keep.any():
            continue
        if end_point == "voxels":
            near = keep & (np.linalg.norm(pts - end, axis=1) <= end_window_cm)
            if near.sum() < 3:
                continue
            centre, d_end = _line(pts[near], q[near])
            d_end = d_end if d_end @ d >= 0 else -d_end
            s_end = (pts[near] - centre) @ d_end
            end = centre + float(s_end[q[near] >= end_fraction * q[near].max()].max()) * d_end
            length = float(np.linalg.norm(end - start))
        p, t = pts[keep], pts[keep, 0] / reco_velocity - t0
        qc = q[keep] * np.exp(t / lifetime)
        # each voxel's charge is spread over its volume (27 sub-points): binning voxel
        # centres would alias with the voxel lattice when the end comes from the voxels
        sub = (p[:, None, :] + _SUB_OFFSETS[None] * pitch).reshape(-1, 3)
        rr = np.linalg.norm(sub - end, axis=1) * np.sign((end - sub) @ d)
        charge = np.histogram(rr, bins=edges, weights=np.repeat(qc / len(_SUB_OFFSETS),
                                                                 len(_SUB_OFFSETS)))[0]
        ok = edges[1:] <= length - 0.5 * rr_bin_cm
        if box is not None:
            for e in (edges[:-1], edges[1:]):
                pos = end[None, :] - e[:, None] * d[None, :]
                ok &= np.all((pos >= pitch) & (pos <= box - pitch), axis=1)
        if not ok.any():
            continue
        n_tracks += 1
        for k in np.flatnonzero(ok):
            per_bin[k].append(charge[k] / rr_bin_cm)
    table = RangeTable.for_particle(particle)
    rows = []
    for k, vals in enumerate(per_bin):
        if len(vals) >= max(min_entries, 3):
            m, e = _trimmed_mean(np.array(vals), tr)
            rows.append((k, m, e, len(vals)))
    if len(rows) < 3:
        raise ValueError(f"{sample}: only {len(rows)} residual-range bins with >= "
                         f"{max(min_entries, 3)} contained tracks ({n_tracks} tracks used); "
                         f"expected >= 3 stopping {particle} tracks ending inside the volume")
    k_used = np.array([r[0] for r in rows])
    y = np.array([r[1] for r in rows])
    err = np.array([r[2] for r in rows])
    lo, hi = edges[k_used], edges[k_used + 1]
    n_sub = 16
    sub = lo[:, None] + (np.arange(n_sub) + 0.5)[None, :] / n_sub * (hi - lo)[:, None]
    dedx_sub = np.asarray(table.dedx_at_residual_range(sub), dtype=np.float64)
    dedx_mean = (np.asarray(table.kinetic_at_range(hi)) - np.asarray(table.kinetic_at_range(lo))
                 ) / rr_bin_cm
    scale = 1.0 / (LAR_DENSITY_G_CM3 * field)

    def model(x: np.ndarray, alpha: float, beta: float) -> np.ndarray:
        j = np.asarray(x, dtype=np.int64)
        s = dedx_sub[j]
        xi = beta * s * scale
        return (np.log(alpha + xi) / xi * s).mean(axis=1) / W_ION_MEV

    x_idx = np.arange(len(rows), dtype=np.float64)
    fit = _fit(model, x_idx, y, err, p0, f"{sample}: box fit",
               bounds=([1e-3, 1e-4], [20.0, 20.0]))
    (alpha, beta), (alpha_e, beta_e) = fit["popt"], fit["perr"]
    return {
        "alpha": float(alpha), "alpha_error": float(alpha_e),
        "beta": float(beta), "beta_error": float(beta_e),
        "covariance": fit["cov"].tolist(), "correlation": fit["corr"],
        "chi2": fit["chi2"], "ndf": fit["ndf"],
        "lifetime_used": float(lifetime), "field": float(field), "particle": particle,
        "end_point": end_point,
        "n_tracks": n_tracks, "sample": sample,
        "points": {"residual_range": _tolist(0.5 * (lo + hi)), "dedx": _tolist(dedx_mean),
                   "dqdx": _tolist(y), "dqdx_error": _tolist(err),
                   "dqdx_fit": _tolist(model(x_idx, alpha, beta)),
                   "n": [int(r[3]) for r in rows]},
        "units": {"beta": "(kV/cm)(g/cm^2)/MeV", "dedx": "MeV/cm", "dqdx": "electrons/cm",
                  "residual_range": "cm"},
    }


# --------------------------------------------------------------------------------------------
# diffusion


def diffusion_fit(
    events: Sequence[Mapping[str, Any]],
    *,
    pitch: float,
    reco_velocity: float,
    t_bin_us: float = 62.5,
    track_radius_cm: float = 1.5,
    radius_cm: float = 0.75,
    min_voxels: int = 12,
    min_sin2: float = 0.3,
    trim: Sequence[float] = (0.0, 0.1),
    min_entries: int = 10,
    sample: str = "crossing_muons",
) -> dict[str, Any]:
    """Transverse and longitudinal diffusion from the width of crossing tracks vs drift time.

    Geometry: each track is cut into drift-time bins (x-slabs). Within a slab (skipped unless
    the track extends a voxel beyond it on both sides, or with < ``min_voxels`` voxels) a
    local charge-weighted PCA line is fitted (multiple scattering of GeV muons bends a 1 m
    track by ~0.3 cm, more than sigma_T, so one global line would not do), refitted without
    voxels farther than ``radius_cm``. With d = (a, b, c) the local direction, two unit vectors
    perpendicular to it are used:

    * ``u = (0, -c, b) / n`` (n^2 = 1 - a^2), in the pixel plane: the smearing along u is
      sigma_T^2 exactly;
    * ``w = d x u = (n, -ab/n, -ac/n)``: smearing n^2 sigma_L^2 + a^2 sigma_T^2.

    Per slab the charge-weighted variances of the voxel-centre displacements along u and w are
    corrected for the two fitted line parameters per direction (x n_eff / (n_eff - 2), n_eff the
    Kish effective count), then var_T = var_u and, where n^2 >= ``min_sin2`` (otherwise the
    x smearing is nearly along the track and invisible), var_L = (var_w - a^2 var_u) / n^2.
    Per drift-time bin the trimmed mean over slabs (default: highest 10% dropped, delta rays)
    is fitted with ``c + 2 D t``. The voxelisation adds ~pitch^2/12 (for a uniform grid offset
    exactly that) to c. sigma_L is measured in reco x, so ``diffusion_l`` is D_L
    (v_reco / v_true)^2. Known bias, left in: the threshold removes the low-charge voxels in
    the tails of the cloud, so both slopes come out low, a "visible" D (simulated control
    muons, 2000 e threshold: D_T ~50% low, D_L ~40% low with a 50% error; without threshold
    D_T within ~5%, D_L within its error).
    """
    evs = _check_settings(events, pitch, reco_velocity, sample)
    if t_bin_us <= 0 or not 0 < min_sin2 < 1:
        raise ValueError(f"{sample}: need t_bin_us > 0 and 0 < min_sin2 < 1")
    tr = _check_trim(trim, sample)
    rows_t, rows_l = [], []
    n_tracks = 0
    for i, ev in enumerate(evs):
        _, pts, q, t0 = _voxels(ev, pitch, sample, i)
        if len(q) < min_voxels:
            continue
        _, _, keep = _robust_line(pts, q, track_radius_cm)
        if keep.sum() < min_voxels:
            continue
        p, w8 = pts[keep], np.clip(q[keep], 0.0, None)
        t = p[:, 0] / reco_velocity - t0
        margin = pitch / reco_velocity
        b_lo = int(math.ceil((t.min() + margin) / t_bin_us))
        b_hi = int(math.floor((t.max() - margin) / t_bin_us))
        used = False
        for b in range(max(b_lo, 0), b_hi):
            sel = (t >= b * t_bin_us) & (t < (b + 1) * t_bin_us)
            if sel.sum() < min_voxels:
                continue
            ps, ws = p[sel], w8[sel]
            centre, d = _line(ps, ws)
            near = _distance(ps, centre, d) <= radius_cm
            if near.sum() < min_voxels:
                continue
            ps, ws = ps[near], ws[near]
            centre, d = _line(ps, ws)
            a = float(d[0])
            n = math.sqrt(max(1.0 - a * a, 0.0))
            if n < 1e-6:
                continue
            u = np.array([0.0, -d[2], d[1]]) / n
            wv = np.cross(d, u)
            rel = ps - centre
            n_eff = ws.sum() ** 2 / (ws**2).sum()
            if n_eff <= 3:
                continue
            corr = n_eff / (n_eff - 2.0)
            var_u = float((ws * (rel @ u) ** 2).sum() / ws.sum()) * corr
            var_w = float((ws * (rel @ wv) ** 2).sum() / ws.sum()) * corr
            tm = float((ws * (ps[:, 0] / reco_velocity - t0)).sum() / ws.sum())
            rows_t.append((tm, var_u))
            if n * n >= min_sin2:
                rows_l.append((tm, (var_w - a * a * var_u) / (n * n)))
            used = True
        n_tracks += used
    if not rows_t:
        raise ValueError(f"{sample}: no usable track segment (need crossing tracks with >= "
                         f"{min_voxels} voxels per {t_bin_us} us drift-time bin)")

    def model(x: np.ndarray, c: float, dcoef: float) -> np.ndarray:
        return c + 2.0 * dcoef * x

    out: dict[str, Any] = {"n_tracks": n_tracks, "sample": sample,
                           "quantisation_variance": pitch**2 / 12.0}
    points: dict[str, list[float] | list[int]] = {}
    for key, rows in (("t", rows_t), ("l", rows_l)):
        if not rows:
            raise ValueError(f"{sample}: no segment with sin^2(angle to the drift axis) >= "
                             f"{min_sin2} for the longitudinal diffusion")
        arr = np.array(rows)
        edges = np.arange(0.0, arr[:, 0].max() + t_bin_us, t_bin_us)
        bp = _binned(arr[:, 0], arr[:, 1], edges, tr, min_entries)
        fit = _fit(model, bp["x"], bp["y"], bp["err"], (pitch**2 / 12.0, 5e-6),
                   f"{sample}: diffusion_{key} fit")
        (c, dc), (c_e, dc_e) = fit["popt"], fit["perr"]
        out.update({f"diffusion_{key}": float(dc), f"diffusion_{key}_error": float(dc_e),
                    f"offset_{key}": float(c), f"offset_{key}_error": float(c_e),
                    f"chi2_{key}": fit["chi2"], f"ndf_{key}": fit["ndf"],
                    f"n_segments_{key}": int(len(arr))})
        points[f"t_{key}"] = _tolist(bp["x"])
        points[f"var_{key}"] = _tolist(bp["y"])
        points[f"var_{key}_error"] = _tolist(bp["err"])
    out["points"] = points
    out["units"] = {"diffusion": "cm^2/us", "offset": "cm^2", "t": "us", "var": "cm^2"}
    return out


# --------------------------------------------------------------------------------------------
# all three


def run_baselines(events_by_sample: Mapping[str, Sequence[Mapping[str, Any]]],
                  settings: Mapping[str, Any]) -> dict[str, Any]:
    """The three baselines in the classic order: lifetime, then recombination corrected with
    the fitted lifetime, then diffusion.

    ``settings``: ``pitch`` [cm] and ``reco_velocity`` [cm/us] (required), optional ``field``
    [kV/cm], ``size`` (readout volume [cm], for the box fit's containment), ``lifetime``
    [us] (used by the box fit only when the lifetime baseline is skipped), and optional
    keyword dicts ``lifetime_fit``, ``box_fit``, ``diffusion_fit`` passed to each function
    (``sample`` there picks the sample; defaults crossing_muons, stopping_protons,
    crossing_muons). A baseline whose sample is missing or empty, or whose fit fails (too
    few points), is reported as ``{"skipped": reason}``: the classic fits accompany the
    calibration, they must not stop it. Bad settings raise ValueError.
    """
    for key in ("pitch", "reco_velocity"):
        if key not in settings:
            raise ValueError(f"run_baselines: settings lacks {key!r}")
    common = {"pitch": float(settings["pitch"]), "reco_velocity": float(settings["reco_velocity"])}
    kw_life = dict(settings.get("lifetime_fit") or {})
    kw_box = dict(settings.get("box_fit") or {})
    kw_diff = dict(settings.get("diffusion_fit") or {})
    s_life = kw_life.pop("sample", "crossing_muons")
    s_box = kw_box.pop("sample", f"stopping_{kw_box.get('particle', 'proton')}s")
    s_diff = kw_diff.pop("sample", "crossing_muons")

    def missing(name: str) -> str | None:
        evs = events_by_sample.get(name)
        if evs is None:
            return f"sample {name!r} not given"
        return f"sample {name!r} has no events" if len(evs) == 0 else None

    out: dict[str, Any] = {"order": ["lifetime", "box", "diffusion"]}
    reason = missing(s_life)
    out["lifetime"] = ({"skipped": reason} if reason else _attempt(
        lifetime_fit, events_by_sample[s_life], sample=s_life, **common, **kw_life))
    lifetime = out["lifetime"].get("lifetime", settings.get("lifetime"))
    reason = missing(s_box)
    if reason is None and lifetime is None:
        reason = (f"no lifetime: the lifetime baseline was skipped ({out['lifetime']['skipped']}) "
                  "and settings has no 'lifetime'")
    if reason:
        out["box"] = {"skipped": reason}
    else:
        if "field" in settings:
            kw_box.setdefault("field", float(settings["field"]))
        if settings.get("size") is not None:
            kw_box.setdefault("size", [float(s) for s in settings["size"]])
        out["box"] = _attempt(box_fit, events_by_sample[s_box], sample=s_box,
                              lifetime=float(lifetime), **common, **kw_box)
    reason = missing(s_diff)
    out["diffusion"] = ({"skipped": reason} if reason else _attempt(
        diffusion_fit, events_by_sample[s_diff], sample=s_diff, **common, **kw_diff))
    return out


def _attempt(fn: Callable[..., dict[str, Any]], *args: Any, **kwargs: Any) -> dict[str, Any]:
    """``fn(...)``, or ``{"skipped": "fit failed: <why>"}`` when it raises ValueError."""
    try:
        return fn(*args, **kwargs)
    except ValueError as err:
        return {"skipped": f"fit failed: {err}"}
