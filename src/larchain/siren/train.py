"""Fit a :class:`SirenVisibility` to a visibility table (the LUT Dataset).

Data: one sample per voxel, input its centre (cm), target ``to_target(visibility)`` for all
D detectors at once ([V, D]). A seeded permutation holds out the last
``holdout_fraction`` of the voxels (at least one); early stopping watches their loss.

Loss: mean over entries of ``w (y_pred - y_true)^2`` on the target (scaled log) scale, with
``w = 1 + weight_gamma (y_true + 1) / 2``. The log scale makes the fit relative, which is
what the faint far field needs, but then every decade weighs the same and the many dim
voxel/detector pairs would dominate the loss; the weight puts the bright entries (where
most light, hence most of the likelihood in reconstruction, comes from) up to
``1 + weight_gamma`` times higher. ``weight_gamma = 0`` is plain MSE.

Optimiser: Adam, cosine-annealed from ``lr`` to ``lr_min`` over ``epochs`` epochs; stops
after ``patience`` epochs without a held-out improvement and returns the best model seen.

Reproducible on CPU: the initial weights come from ``torch.manual_seed(seed)`` inside a
forked RNG (the caller's global RNG state is untouched), the split and the shuffles from
seeded ``torch.Generator``s, so the same data, config and seed give the same weights.
"""

from __future__ import annotations

import copy
import json
import sys
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import xarray as xr
from tqdm.auto import tqdm

from larchain.core.visibility import VisibilityModel
from larchain.siren.model import SirenVisibility, to_target

__all__ = ["predict_dataset", "train_siren", "volume_size", "voxel_centres"]

DEFAULTS: dict[str, Any] = {"weight_gamma": 1.0, "omega_0": 30.0, "hidden_omega_0": 30.0}


def volume_size(ds: xr.Dataset) -> list[float]:
    """Detector size (cm): ``geometry["size"]`` from the attrs, else inferred from the
    voxel centres (last centre plus half a voxel)."""
    if "geometry" in ds.attrs:
        return [float(s) for s in json.loads(ds.attrs["geometry"])["size"]]
    size = []
    for axis in ("x", "y", "z"):
        c = np.asarray(ds[axis].values, dtype=np.float64)
        step = c[1] - c[0] if c.size > 1 else 2 * c[0]
        size.append(float(c[-1] + step / 2))
    return size


def voxel_centres(ds: xr.Dataset) -> np.ndarray:
    """Voxel centres [V, 3] (cm), x-major (the order of ``visibility.reshape(-1, D)``)."""
    axes = [np.asarray(ds[a].values, dtype=np.float32) for a in ("x", "y", "z")]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)


def _visibility(ds: xr.Dataset) -> np.ndarray:
    vis = ds["visibility"].transpose("x", "y", "z", "detector").values
    return np.asarray(vis, dtype=np.float32).reshape(-1, vis.shape[-1])


def _weighted_mse(pred: torch.Tensor, y: torch.Tensor, gamma: float) -> torch.Tensor:
    w = 1.0 + gamma * (y + 1.0) * 0.5
    return (w * (pred - y).square()).mean()


def train_siren(
    ds: xr.Dataset, cfg: Mapping[str, Any], *, device: str | torch.device = "cpu", progress=True
) -> tuple[SirenVisibility, list[dict]]:
    """Train a SIREN on ``ds["visibility"]``; returns (best model, per-epoch metrics).

    ``cfg`` keys: hidden_features, hidden_layers, omega_0, hidden_omega_0, floor,
    weight_gamma (default 1), lr, lr_min, epochs (maximum), batch_voxels (voxels per step),
    holdout_fraction, patience (epochs), seed. Metrics: one dict per epoch with epoch,
    train_loss, holdout_loss, lr (the rate used in that epoch) and seconds.
    """
    cfg = {**DEFAULTS, **cfg}
    device = torch.device(device)
    seed = int(cfg["seed"])
    floor = float(cfg["floor"])
    gamma = float(cfg["weight_gamma"])

    x_all = torch.from_numpy(voxel_centres(ds))
    y_all = to_target(torch.from_numpy(_visibility(ds)), floor)
    n_vox, n_det = y_all.shape
    n_hold = max(1, round(float(cfg["holdout_fraction"]) * n_vox))
    if n_hold >= n_vox:
        raise ValueError(f"holdout_fraction leaves no training voxels ({n_vox} voxels)")
    perm = torch.randperm(n_vox, generator=torch.Generator().manual_seed(seed))
    train_idx, hold_idx = perm[: n_vox - n_hold], perm[n_vox - n_hold :]
    x_train, y_train = x_all[train_idx].to(device), y_all[train_idx].to(device)
    x_hold, y_hold = x_all[hold_idx].to(device), y_all[hold_idx].to(device)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SirenVisibility(
            n_det,
            volume_size(ds),
            hidden_features=int(cfg["hidden_features"]),
            hidden_layers=int(cfg["hidden_layers"]),
            omega_0=float(cfg["omega_0"]),
            hidden_omega_0=float(cfg["hidden_omega_0"]),
            floor=floor,
        )
    model.to(device)

    epochs = int(cfg["epochs"])
    batch = max(1, int(cfg["batch_voxels"]))
    patience = int(cfg["patience"])
    opt = torch.optim.Adam(model.parameters(), lr=float(cfg["lr"]))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(
        opt, T_max=epochs, eta_min=float(cfg["lr_min"])
    )
    shuffle = torch.Generator().manual_seed(seed + 1)

    best_loss, best_state, since_best = float("inf"), None, 0
    metrics: list[dict] = []
    bar = tqdm(range(epochs), desc="siren", file=sys.stderr, disable=not progress, leave=False)
    for epoch in bar:
        t0 = time.perf_counter()
        model.train()
        lr = opt.param_groups[0]["lr"]
        order = torch.randperm(len(x_train), generator=shuffle).to(device)
        total = torch.zeros((), device=device)
        for idx in torch.split(order, batch):
            loss = _weighted_mse(model.forward_target(x_train[idx]), y_train[idx], gamma)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach() * len(idx)  # no per-step host sync
        sched.step()
        model.eval()
        with torch.no_grad():
            hold_loss = _weighted_mse(model.forward_target(x_hold), y_hold, gamma).item()
        train_loss = total.item() / len(x_train)
        metrics.append(
            dict(
                epoch=epoch,
                train_loss=train_loss,
                holdout_loss=hold_loss,
                lr=lr,
                seconds=time.perf_counter() - t0,
            )
        )
        bar.set_postfix(train=f"{train_loss:.3g}", holdout=f"{hold_loss:.3g}")
        if hold_loss < best_loss:
            best_loss, since_best = hold_loss, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            since_best += 1
            if since_best >= patience:
                break
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    return model.eval(), metrics


def predict_dataset(model: VisibilityModel, ds: xr.Dataset, batch_size: int = 65536) -> np.ndarray:
    """The model's visibility at the voxel centres of ``ds``: array [x, y, z, D] (float32)."""
    pts = torch.from_numpy(voxel_centres(ds))
    vis = model.evaluate(pts, batch_size=batch_size).cpu().numpy()
    return vis.reshape(ds.sizes["x"], ds.sizes["y"], ds.sizes["z"], -1).astype(np.float32)
