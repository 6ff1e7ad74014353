"""Training of the UResNet + PPN on simulated events (seeded; held-out events by index)."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from larchain.core.artifacts import atomic_path
from larchain.reco.data import augment_event, load_event, make_batch
from larchain.reco.uresnet import (
    UResNet,
    class_weights,
    n_parameters,
    ppn_loss,
    ppn_targets,
    segmentation_loss,
)

MODEL_KEYS = ("filters", "depth", "reps")


def split_events(n: int, holdout_fraction: float) -> tuple[list[int], list[int]]:
    """Train / held-out event indices: every k-th event is held out (deterministic, spread
    over the sample)."""
    n_hold = max(1, int(round(n * holdout_fraction))) if n > 1 else 0
    hold = sorted(set(np.linspace(0, n - 1, n_hold).round().astype(int).tolist())) if n_hold else []
    train = [i for i in range(n) if i not in set(hold)]
    return train, hold


def build_model(cfg: Mapping[str, Any]) -> UResNet:
    return UResNet(in_channels=1, num_classes=5, filters=int(cfg["filters"]),
                   depth=int(cfg["depth"]), reps=int(cfg["reps"]))


def _loss(model: UResNet, batch: dict[str, Any], weights: torch.Tensor, radius: float
          ) -> tuple[torch.Tensor, float]:
    """Segmentation + point-proposal loss of one batch, and its voxel accuracy."""
    out = model(batch["input"])
    seg = segmentation_loss(out["segmentation"], batch["semantic"], weights)
    targets = ppn_targets(batch["input"].coords, batch["points"], radius)
    ppn, _ = ppn_loss(out, targets)
    correct = (out["segmentation"].argmax(1) == batch["semantic"]).float().mean().item()
    return seg + ppn, correct


def train_uresnet(dataset: Any, cfg: Mapping[str, Any], voxel_size: float,
                  device: str = "cpu") -> tuple[UResNet, list[dict[str, float]], dict[str, Any]]:
    """Train on the dataset's events except the held-out ones. ``lr_final`` decays the rate
    along a cosine; ``keep`` returns the last epoch's weights, or those of the epoch with the
    lowest held-out loss (picked on the evaluation's events, hence not the default).
    Returns (model, per-epoch metrics, split)."""
    torch.manual_seed(int(cfg["seed"]))
    rng = np.random.default_rng(int(cfg["seed"]))
    train_idx, hold_idx = split_events(len(dataset), float(cfg["holdout_fraction"]))
    scale = float(cfg["charge_scale"])
    events = {i: load_event(dataset, i, voxel_size, scale) for i in range(len(dataset))}
    labels = torch.as_tensor(np.concatenate([events[i]["semantic"] for i in train_idx]))
    weights = class_weights(labels, 5, float(cfg.get("class_weight_power", 0.5))).to(device)
    model = build_model(cfg).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=float(cfg["lr"]))
    bs = int(cfg["batch_events"])
    epochs = int(cfg["epochs"])
    lr_final = cfg.get("lr_final")
    sched = None
    if lr_final is not None:  # cosine decay per step, from lr to lr_final at the last step
        steps = epochs * -(-len(train_idx) // bs)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, steps),
                                                           eta_min=float(lr_final))
    keep_last = cfg.get("keep", "last") == "last"
    radius = float(cfg["ppn_radius"])
    augment = bool(cfg.get("augment", False))
    history: list[dict[str, float]] = []
    best_loss, best_state, kept = float("inf"), None, epochs - 1
    for epoch in tqdm(range(epochs), desc="reco_train", unit="epoch", mininterval=1):
        t0 = time.perf_counter()
        lr_epoch = opt.param_groups[0]["lr"]
        model.train()
        order = rng.permutation(train_idx)
        tot, acc = [], []
        for k in range(0, len(order), bs):
            chunk = [events[i] for i in order[k:k + bs]]
            if augment:
                chunk = [augment_event(ev, rng) for ev in chunk]
            batch = make_batch(chunk, device)
            loss, correct = _loss(model, batch, weights, radius)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            tot.append(loss.item())
            acc.append(correct)
        model.eval()
        with torch.no_grad():
            hl, ha = [], []
            for k in range(0, len(hold_idx), bs):
                batch = make_batch([events[i] for i in hold_idx[k:k + bs]], device)
                loss, correct = _loss(model, batch, weights, radius)
                hl.append(loss.item())
                ha.append(correct)
        row = {"epoch": epoch, "train_loss": float(np.mean(tot)),
               "train_accuracy": float(np.mean(acc)),
               "holdout_loss": float(np.mean(hl)) if hl else float("nan"),
               "holdout_accuracy": float(np.mean(ha)) if ha else float("nan"),
               "lr": lr_epoch, "seconds": time.perf_counter() - t0}
        history.append(row)
        if not keep_last and row["holdout_loss"] < best_loss:  # NaN (no held-out) never is
            best_loss, kept = row["holdout_loss"], epoch
            best_state = copy.deepcopy(model.state_dict())
    if best_state is not None:  # else the last epoch's weights stay
        model.load_state_dict(best_state)
    model.eval()
    return model, history, {"train": train_idx, "holdout": hold_idx, "best_epoch": kept,
                            "class_weights": weights.tolist(), "parameters": n_parameters(model)}


def save_model(model: UResNet, cfg: Mapping[str, Any], directory: str | Path) -> None:
    """Weights as safetensors + the model config as JSON (no pickled code)."""
    directory = Path(directory)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(directory / "model.safetensors") as tmp:
        save_file(state, str(tmp))
    with atomic_path(directory / "model.json") as tmp:
        tmp.write_text(json.dumps({k: cfg[k] for k in (*MODEL_KEYS, "charge_scale")}, indent=1))


def load_model(directory: str | Path, device: str = "cpu") -> tuple[UResNet, dict[str, Any]]:
    directory = Path(directory)
    cfg = json.loads((directory / "model.json").read_text())
    model = build_model(cfg)
    model.load_state_dict(load_file(str(directory / "model.safetensors")))
    return model.to(device).eval(), cfg
