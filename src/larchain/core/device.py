"""Torch device selection from config: ``auto`` takes CUDA when torch sees a GPU."""

from __future__ import annotations

import torch


def resolve_device(device: str, key: str = "device") -> torch.device:
    """``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` -> a torch device; a clear error if CUDA is
    asked for and absent (``key`` names the config key in the message)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"{key} is {device!r} but torch sees no CUDA device")
    return torch.device(device)
