"""The one interface downstream stages use to ask "how much light reaches each photodetector
from here?".

Every visibility source (the LUT's trilinear interpolation, the SIREN fit, anything later)
is a :class:`VisibilityModel`: a ``torch.nn.Module`` mapping points ``[N, 3]`` in cm (the
detector frame: the active volume spans ``[0, size]`` on each axis) to visibilities
``[N, D]`` (linear, >= 0), differentiable in the points. Reconstruction and calibration
code is written against this class only, so swapping the LUT for SIREN is a config change.

This module imports no stage (``larchain.lut``, ``larchain.siren``, ...); the loader that
picks an implementation from an artifact lives in :mod:`larchain.visibility`.
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod

import torch
from torch import Tensor, nn


class _ModuleABCMeta(ABCMeta, type(nn.Module)):  # type: ignore[misc]
    """ABCMeta combined with nn.Module's metaclass, so abstract members are enforced at
    instantiation whatever metaclass a torch version gives ``nn.Module``."""


class VisibilityModel(nn.Module, metaclass=_ModuleABCMeta):
    """points ``[N, 3]`` in cm (detector frame) -> visibility ``[N, D]`` (linear, >= 0),
    differentiable in points.

    Subclasses implement :attr:`n_detectors` and :meth:`forward`; :meth:`evaluate` is the
    no-grad, batched entry point for bulk evaluation (e.g. every step of a track).
    """

    @property
    @abstractmethod
    def n_detectors(self) -> int:
        """Number of photodetectors D (the last dimension of the output)."""

    @abstractmethod
    def forward(self, points: Tensor) -> Tensor:
        """Visibility ``[N, D]`` at ``points`` ``[N, 3]`` (cm), on the model's device, with
        autograd through the points (used by fits that move a vertex)."""

    @property
    def device(self) -> torch.device:
        """Where the model's tensors live (first parameter or buffer; CPU if it has none)."""
        for t in self.parameters():
            return t.device
        for t in self.buffers():
            return t.device
        return torch.device("cpu")

    @torch.no_grad()
    def evaluate(self, points: Tensor, batch_size: int = 65536) -> Tensor:
        """No-grad visibility ``[N, D]`` computed in batches of ``batch_size`` points on the
        model's device (bounding memory for large N), returned on the points' device."""
        if points.ndim != 2 or points.shape[-1] != 3:
            raise ValueError(f"expected points of shape [N, 3], got {tuple(points.shape)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        n = points.shape[0]
        if n == 0:
            dtype = points.dtype if points.is_floating_point() else torch.float32
            return torch.zeros((0, self.n_detectors), dtype=dtype, device=points.device)
        dev = self.device
        out = [
            self(points[i : i + batch_size].to(dev)).to(points.device)
            for i in range(0, n, batch_size)
        ]
        return out[0] if len(out) == 1 else torch.cat(out)
