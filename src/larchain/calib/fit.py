"""Fit detector parameters: Adam on random event batches, L-BFGS on all events, then the
Hessian of -ln L at the minimum (autograd) for the covariance.

Adam gets near the minimum cheaply (each step sees ``batch_events`` events, the gradient
rescaled to the whole sample); L-BFGS with a strong-Wolfe line search then converges on
the full likelihood, where the Hessian is meaningful. Rows of the Hessian are Hessian-vector
products, so a parameter that only touches the light (cheap) costs little.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from larchain.calib.likelihood import CHARGE, Likelihood, Parametrisation


@dataclass(frozen=True)
class FitSettings:
    """``adam_steps`` (0 skips Adam), ``adam_lr`` (relative step), ``adam_lr_final`` (the lr
    decays exponentially to it), ``batch_events`` per Adam step, ``clip`` on the gradient
    norm (in units of theta), ``lbfgs_iterations`` (max), ``tolerance`` on the change of
    -ln L between L-BFGS iterations and on the Newton decrement at the end,
    ``newton_iterations`` (max) to reach the minimum, ``precondition_events`` whose Hessian
    preconditions L-BFGS, ``seed`` for the batches."""

    adam_steps: int = 100
    adam_lr: float = 0.01
    adam_lr_final: float = 0.001
    batch_events: int = 64
    clip: float = 1.0
    lbfgs_iterations: int = 40
    tolerance: float = 1e-4
    newton_iterations: int = 4
    precondition_events: int = 128
    seed: int = 0

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], seed: int) -> FitSettings:
        return cls(adam_steps=int(cfg["adam"]["steps"]), adam_lr=float(cfg["adam"]["lr"]),
                   adam_lr_final=float(cfg["adam"]["lr_final"]),
                   batch_events=int(cfg["adam"]["batch_events"]),
                   clip=float(cfg["adam"]["clip"]),
                   lbfgs_iterations=int(cfg["lbfgs"]["iterations"]),
                   tolerance=float(cfg["lbfgs"]["tolerance"]), seed=int(seed))


@dataclass
class FitResult:
    """Best fit (theta and physical values), covariance and correlation of the reported
    quantities, -ln L at the minimum, fit history and timings."""

    names: list[str]
    values: dict[str, float]
    errors: dict[str, float]
    covariance: Tensor
    correlation: Tensor
    theta: Tensor
    nll: float
    history: list[dict[str, Any]] = field(default_factory=list)
    timing: dict[str, float] = field(default_factory=dict)


def hessian(fn: Callable[[Tensor], Tensor], theta: Tensor, rows: Sequence[int] | None = None,
            with_gradient: bool = False) -> Tensor | tuple[Tensor, Tensor, float]:
    """d^2 fn / d theta^2 restricted to ``rows`` (default all; the others are zero): one
    gradient with ``create_graph``, then one Hessian-vector product per row (a loop: on CPU
    faster than ``is_grads_batched``). Symmetrised. ``with_gradient``: also return the
    gradient (zero outside ``rows``) and the value of ``fn`` at ``theta``."""
    n = len(theta)
    idx = list(range(n)) if rows is None else list(rows)
    out = torch.zeros(n, n, dtype=theta.dtype)
    gout = torch.zeros(n, dtype=theta.dtype)
    if not idx:
        if not with_gradient:
            return out
        with torch.no_grad():
            return out, gout, float(fn(theta.detach()))
    sub = theta.detach()[idx].clone().requires_grad_(True)
    ii = torch.tensor(idx)
    value = fn(theta.detach().index_put((ii,), sub))
    grad = torch.autograd.grad(value, sub, create_graph=True)[0]
    gout[ii] = grad.detach()
    if grad.requires_grad:
        h = torch.stack([torch.autograd.grad(grad[i], sub, retain_graph=i < len(idx) - 1)[0]
                         for i in range(len(idx))])
        out[ii[:, None], ii[None, :]] = (0.5 * (h + h.T)).detach()
    return (out, gout, float(value.detach())) if with_gradient else out


def covariance_from_hessian(h: Tensor) -> Tensor:
    """Inverse Hessian; raises with the offending direction if it is not positive definite
    (a parameter the data do not constrain, or not a minimum)."""
    evals, evecs = torch.linalg.eigh(h)
    if not bool((evals > 0).all()):
        worst = int(torch.argmin(evals))
        raise ValueError(f"Hessian not positive definite (eigenvalue {float(evals[worst]):.3g} "
                         f"along {evecs[:, worst].tolist()}): a parameter is unconstrained or "
                         "the fit did not converge")
    return (evecs / evals) @ evecs.T


def full_hessian(likelihood: Likelihood, param: Parametrisation, theta: Tensor,
                 groups: Sequence[tuple[int, Any]] | None = None
                 ) -> tuple[Tensor, Tensor, float]:
    """Hessian, gradient and value of -ln L in theta (default: all events), one
    neighbourhood group at a time; the charge part only in the rows of the parameters that
    move the charge."""
    h = torch.zeros(param.size, param.size, dtype=torch.float64)
    g = torch.zeros(param.size, dtype=torch.float64)
    value = 0.0
    labels = param.labels
    charge_rows = [i for i, n in enumerate(labels) if n in CHARGE]
    parts: list[tuple[tuple[str, ...], list[int] | None]] = [(("charge",), charge_rows)]
    if likelihood.use_light:
        parts.append((("light",), None))
    for k, d in likelihood.groups if groups is None else groups:
        for what, rows in parts:
            hh, gg, v = hessian(lambda x, k=k, d=d, what=what: likelihood.group_nll(
                d, k, param.params(x), what), theta, rows, with_gradient=True)
            h += hh
            g += gg
            value += v
    return h, g, value


def _preconditioner(h: Tensor) -> Tensor:
    """``T`` with ``T^T H T ~ 1``: eigenvectors over the square roots of the eigenvalues
    (floored, so directions of negative or no curvature get a bounded step)."""
    evals, evecs = torch.linalg.eigh(h)
    floor = max(float(evals.abs().max()) * 1e-12, 1e-12)
    return evecs / torch.sqrt(evals.abs().clamp_min(floor))


def fit(likelihood: Likelihood, param: Parametrisation, settings: FitSettings,
        progress: bool = True) -> FitResult:
    """Minimise -ln L over ``param``'s free parameters (see the module docstring)."""
    if param.size == 0:
        raise ValueError("nothing to fit: calibration.parameters is empty")
    history: list[dict[str, Any]] = []
    timing: dict[str, float] = {}
    theta = param.initial().requires_grad_(True)
    n_events = likelihood.data.n_events

    def record(phase: str, step: int, nll: float) -> None:
        history.append({"phase": phase, "step": step, "nll": nll,
                        **param.values(theta.detach())})

    t0 = time.perf_counter()
    if settings.adam_steps > 0:
        gen = torch.Generator().manual_seed(settings.seed)
        opt = torch.optim.Adam([theta], lr=settings.adam_lr)
        gamma = (settings.adam_lr_final / settings.adam_lr) ** (1.0 / settings.adam_steps)
        sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma)
        batch = min(settings.batch_events, n_events)
        bar = tqdm(range(settings.adam_steps), desc="calibration: Adam", disable=not progress)
        for step in bar:
            events = torch.randperm(n_events, generator=gen)[:batch]
            opt.zero_grad()
            loss = likelihood.nll(param.params(theta), likelihood.split(events))
            (loss * (n_events / batch)).backward()
            torch.nn.utils.clip_grad_norm_([theta], settings.clip)
            opt.step()
            sched.step()
            record("adam", step, float(loss.detach()) * n_events / batch)
            bar.set_postfix(nll=f"{history[-1]['nll']:.6g}")
    timing["adam"] = time.perf_counter() - t0

    # quasi-Newton polish, preconditioned by the Hessian where Adam stopped: in
    # phi = L^T (theta - theta_adam), with H = L L^T, -ln L is close to isotropic, so the
    # line search is well scaled even though the parameters' curvatures span ~8 decades
    t0 = time.perf_counter()
    start = theta.detach().clone()
    # a preconditioner need not be exact: the Hessian of a random subset, scaled up
    n_sub = min(n_events, settings.precondition_events)
    sub = torch.randperm(n_events, generator=torch.Generator().manual_seed(settings.seed))
    h0, _, _ = full_hessian(likelihood, param, start, likelihood.split(sub[:n_sub]))
    h0 *= n_events / n_sub
    transform = _preconditioner(h0)
    phi = torch.zeros(param.size, dtype=torch.float64, requires_grad=True)
    lbfgs = torch.optim.LBFGS([phi], lr=1.0, max_iter=1, history_size=20,
                              line_search_fn="strong_wolfe", tolerance_grad=1e-12,
                              tolerance_change=0.0)

    def closure() -> Tensor:
        timing["evaluations"] = timing.get("evaluations", 0) + 1
        lbfgs.zero_grad()
        total = torch.zeros((), dtype=torch.float64)
        for k, d in likelihood.groups:  # one graph per group: bounded memory
            loss = likelihood.group_nll(d, k, param.params(start + transform @ phi))
            loss.backward()
            total = total + loss.detach()
        return total

    previous = math.inf
    bar = tqdm(range(settings.lbfgs_iterations), desc="calibration: L-BFGS",
               disable=not progress)
    for step in bar:
        nll = float(lbfgs.step(closure))
        with torch.no_grad():
            theta.copy_(start + transform @ phi)
        record("lbfgs", step, nll)
        bar.set_postfix(nll=f"{nll:.10g}")
        if abs(previous - nll) < settings.tolerance:
            break
        previous = nll
    timing["lbfgs"] = time.perf_counter() - t0

    # the covariance needs the minimum itself: Newton steps with the exact Hessian until the
    # expected decrease g^T H^-1 g / 2 is below the tolerance (usually none is needed)
    t0 = time.perf_counter()
    best = theta.detach().clone()
    for step in range(settings.newton_iterations + 1):
        h, g, nll_min = full_hessian(likelihood, param, best)
        try:
            newton = torch.linalg.solve(h, g)
            decrement = 0.5 * float(g @ newton)
        except RuntimeError:
            newton, decrement = None, math.inf
        history.append({"phase": "newton", "step": step, "nll": nll_min,
                        "decrement": decrement, **param.values(best)})
        if decrement < settings.tolerance or newton is None or decrement < 0:
            break
        if step and decrement > 0.5 * history[-2]["decrement"]:
            break  # not converging quadratically: at the gradient's noise floor
        if step == settings.newton_iterations:
            break
        scale = 1.0
        with torch.no_grad():
            for _ in range(20):
                trial = best - scale * newton
                if float(likelihood.nll(param.params(trial))) < nll_min:
                    best = trial
                    break
                scale *= 0.5
            else:
                break
    timing["newton"] = time.perf_counter() - t0
    timing["newton_steps"] = step
    cov_theta = covariance_from_hessian(h)
    timing["total"] = sum(v for k, v in timing.items() if k in ("adam", "lbfgs", "newton"))
    names, jac = param.jacobian(best)
    cov = jac @ cov_theta @ jac.T
    err = torch.sqrt(torch.clamp(torch.diagonal(cov), min=0.0))
    corr = cov / torch.outer(err, err).clamp_min(1e-300)
    values = param.values(best)
    return FitResult(names=names, values=values,
                     errors={n: float(e) for n, e in zip(names, err, strict=True)},
                     covariance=cov, correlation=corr, theta=best, nll=nll_min,
                     history=history, timing=timing)

