"""Calibration figures: convergence, pulls, correlations, dQ/dx versus drift time with both
fits, photoelectrons per detector, and the closed-loop comparison."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

_PARAM_TEX = {"lifetime": r"$\tau$", "box_alpha": r"$\alpha$", "box_beta": r"$\beta$",
              "birks_ab": r"$A_B$", "birks_kb": r"$k_B$", "diffusion_l": r"$D_L$",
              "diffusion_t": r"$D_T$", "drift_velocity": r"$v_d$", "light_yield": r"$Y$"}


def _label(name: str) -> str:
    if name.startswith("pd_efficiency["):
        return "$Q_{" + name[len("pd_efficiency["):-1] + "}$"
    return _PARAM_TEX.get(name, name)


def _save(fig: Any, path: str | Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def convergence_figure(history: Sequence[Mapping[str, Any]], truth: Mapping[str, Any],
                       names: Sequence[str], path: str | Path) -> Path:
    """-ln L of the full-sample phases (L-BFGS, Newton) above its final value, and every
    parameter's relative deviation from the truth along the whole fit (Adam included)."""
    steps = np.arange(len(history))
    nll = np.array([h["nll"] for h in history])
    phase = np.array([h["phase"] for h in history])
    fig, (a0, a1) = plt.subplots(1, 2, figsize=(12, 4.4))
    full = phase != "adam"
    if full.any():
        a0.semilogy(steps[full], nll[full] - nll[full].min() + 1e-3, "k.-", lw=1)
    a0.set_xlabel("step")
    a0.set_ylabel(r"$-\ln L - \min(-\ln L) + 10^{-3}$ (all events)")
    a0.set_title("L-BFGS, then Newton steps to the minimum")
    for ph, c in (("adam", "tab:blue"), ("lbfgs", "tab:red"), ("newton", "tab:green")):
        m = phase == ph
        if m.any():
            for ax in (a0, a1):
                ax.axvspan(steps[m].min() - 0.5, steps[m].max() + 0.5, color=c, alpha=0.08,
                           label=ph if ax is a1 else None)
    for n in names:
        if n not in history[0] or not truth.get(n):
            continue
        v = np.array([h[n] for h in history])
        eff = n.startswith("pd_efficiency[")
        a1.plot(steps, 100 * (v - truth[n]) / truth[n], lw=0.6 if eff else 1.2,
                color="0.7" if eff else None, label=None if eff else _label(n),
                zorder=1 if eff else 2)
    a1.axhline(0, color="k", lw=0.5)
    a1.set_yscale("symlog", linthresh=0.1)
    a1.set_xlabel("step (Adam: one event batch per step)")
    a1.set_ylabel("(fit - truth) / truth [%]")
    a1.legend(fontsize=7, ncol=3, loc="upper right")
    a1.set_title("start: nominal detector config (grey: efficiencies)")
    return _save(fig, path)


def pulls_figure(summary: Mapping[str, Any], path: str | Path) -> Path:
    """Pull histograms of the scalar parameters (efficiencies pooled) with N(0, 1)."""
    scalars = [n for n in summary if n in _PARAM_TEX and "pulls" in summary[n]]
    effs = [n for n in summary if n.startswith("pd_efficiency[")]
    panels: list[tuple[str, np.ndarray, str]] = [
        (_label(n), np.asarray(summary[n]["pulls"]),
         f"mean {summary[n]['mean']:+.2f}$\\pm${summary[n]['mean_error']:.2f}\n"
         f"width {summary[n]['width']:.2f}$\\pm${summary[n]['width_error']:.2f}")
        for n in scalars]
    if effs:
        pooled = np.concatenate([summary[n]["pulls"] for n in effs])
        panels.append((f"all $Q_j$ ({len(effs)})", pooled,
                       f"mean {pooled.mean():+.2f}\nwidth {pooled.std(ddof=1):.2f}"))
    cols = 4
    rows = max(1, -(-len(panels) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    x = np.linspace(-4, 4, 200)
    for ax, (title, p, text) in zip(axes.flat, panels, strict=False):
        ax.hist(p, bins=np.linspace(-4, 4, 17), density=True, color="tab:blue", alpha=0.6)
        ax.plot(x, np.exp(-x**2 / 2) / np.sqrt(2 * np.pi), "k-", lw=1)
        ax.set_title(title)
        ax.text(0.02, 0.97, text, transform=ax.transAxes, va="top", fontsize=7)
        ax.set_xlabel("(fit - truth) / $\\sigma$")
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    return _save(fig, path)


def correlation_figure(names: Sequence[str], corr: np.ndarray, path: str | Path) -> Path:
    """Correlation matrix of the fitted quantities (from the Hessian)."""
    n = len(names)
    fig, ax = plt.subplots(figsize=(max(5, 0.35 * n + 2), max(4.2, 0.35 * n + 1.5)))
    im = ax.imshow(corr, vmin=-1, vmax=1, cmap="RdBu_r")
    ax.set_xticks(range(n), [_label(x) for x in names], rotation=90, fontsize=7)
    ax.set_yticks(range(n), [_label(x) for x in names], fontsize=7)
    if n <= 10:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, f"{corr[i, j]:.2f}", ha="center", va="center", fontsize=7)
    fig.colorbar(im, ax=ax, label="correlation")
    ax.set_title("correlations at the minimum (inverse Hessian)")
    return _save(fig, path)


def lifetime_figure(points: Mapping[str, Any], classic: Mapping[str, Any],
                    tau_fit: float, tau_fit_err: float, tau_true: float | None,
                    path: str | Path, model: Mapping[str, Any] | None = None) -> Path:
    """Crossing-muon dQ/dx versus drift time with the classic exponential fit, the
    differentiable fit's prediction of the same measured profile (``model``: the tracks
    re-simulated with the fitted parameters, threshold included) and its lifetime as a pure
    exponential (normalised to the classic amplitude)."""
    t = np.asarray(points["t"])
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.errorbar(t, points["dqdx"], yerr=points["dqdx_error"], fmt="o", ms=3, color="k",
                label="control data (truncated mean per bin)")
    tt = np.linspace(0, t.max() * 1.05, 200)
    amp = classic["amplitude"]
    ax.plot(tt, amp * np.exp(-tt / classic["lifetime"]), "tab:blue",
            label=f"classic exp fit: $\\tau$ = {classic['lifetime']:.0f} $\\pm$ "
                  f"{classic['lifetime_error']:.0f} us")
    if model is not None:
        ax.plot(model["t"], model["dqdx"], "-", color="tab:red", lw=1.5,
                label="differentiable fit: the same profile predicted (threshold included)")
    ax.plot(tt, amp * np.exp(-tt / tau_fit), color="tab:red", ls=":",
            label=f"differentiable fit: exp(-t/$\\tau$), $\\tau$ = {tau_fit:.0f} $\\pm$ "
                  f"{tau_fit_err:.0f} us")
    if tau_true:
        ax.plot(tt, amp * np.exp(-tt / tau_true), "k--", lw=0.8,
                label=f"truth: $\\tau$ = {tau_true:.0f} us")
    ax.set_xlabel("drift time [us]")
    ax.set_ylabel("dQ/dx [electrons/cm]")
    ax.legend(fontsize=8)
    ax.set_title("lifetime: crossing muons (exponentials share the classic amplitude)")
    return _save(fig, path)


def light_figure(observed: np.ndarray, predicted: np.ndarray, nominal: np.ndarray,
                 path: str | Path) -> Path:
    """Total photoelectrons per detector: observed versus predicted (fit and nominal)."""
    d = np.arange(len(observed))
    fig, (a0, a1) = plt.subplots(2, 1, figsize=(8, 5.5), sharex=True,
                                 gridspec_kw={"height_ratios": [2, 1]})
    a0.errorbar(d, observed, yerr=np.sqrt(observed), fmt="o", color="k", ms=4,
                label="observed")
    a0.step(d, predicted, where="mid", color="tab:red", label="predicted, fitted parameters")
    a0.step(d, nominal, where="mid", color="tab:gray", ls="--",
            label="predicted, nominal parameters")
    a0.set_ylabel("PE summed over events")
    a0.legend(fontsize=8)
    with np.errstate(divide="ignore", invalid="ignore"):
        a1.errorbar(d, observed / predicted, yerr=np.sqrt(observed) / predicted, fmt="o",
                    color="tab:red", ms=3, label="observed / fitted")
        a1.plot(d, observed / nominal, "s", color="tab:gray", ms=3, label="observed / nominal")
    a1.axhline(1, color="k", lw=0.5)
    a1.set_xlabel("photodetector")
    a1.set_ylabel("ratio")
    a1.legend(fontsize=8)
    return _save(fig, path)


def closed_loop_figure(profiles: Mapping[str, Mapping[str, Any]],
                       pe: Mapping[str, np.ndarray], path: str | Path) -> Path:
    """Control-sample distributions simulated with nominal, fitted and true parameters
    against the observed ones: dQ/dx versus drift time and PE per detector."""
    style = {"observed": dict(fmt="o", color="k", ms=3),
             "nominal": dict(fmt="s--", color="tab:gray", ms=3),
             "fitted": dict(fmt="^-", color="tab:red", ms=3),
             "true": dict(fmt="v:", color="tab:green", ms=3)}
    fig, (a0, a1) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, prof in profiles.items():
        a0.errorbar(prof["t"], prof["dqdx"], yerr=prof["dqdx_error"], label=name,
                    **style.get(name, {}))
    a0.set_xlabel("drift time [us]")
    a0.set_ylabel("dQ/dx [electrons/cm] (truncated mean)")
    a0.set_title("crossing muons")
    a0.legend(fontsize=8)
    for name, v in pe.items():
        a1.errorbar(np.arange(len(v)), v, yerr=np.sqrt(np.maximum(v, 0)) if name == "observed"
                    else None, label=name, **style.get(name, {}))
    a1.set_xlabel("photodetector")
    a1.set_ylabel("PE summed over events")
    a1.set_title("light")
    a1.legend(fontsize=8)
    return _save(fig, path)
