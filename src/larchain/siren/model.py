"""SIREN surrogate of the photon visibility table (Sitzmann et al. 2020, arXiv:2006.09661).

The network maps a position in the detector to the visibility of every photodetector:
``points [N, 3]`` (cm, detector frame) -> ``visibility [N, D]``. It is smooth and
differentiable in position, which the LUT (a voxel table) is not.

Input: positions are scaled to ``[-1, 1]^3`` with ``2 (p - lo) / (hi - lo) - 1``, where
``lo = 0`` and ``hi`` is the detector size (the volume spans ``[0, size]``).

Output (target transform): visibilities span many decades, so the network predicts a
scaled logarithm instead,

    y = 2 (log10(v + floor) - log10(floor)) / (log10(1 + floor) - log10(floor)) - 1,

which maps ``v in [0, 1]`` onto ``y in [-1, 1]`` (``v = 0 -> -1``, ``v = 1 -> +1``), the
range a sine network's last linear layer reaches comfortably. ``floor`` (default 1e-7)
anchors the logarithm: visibilities well below it are all "zero" to the fit. The inverse
is clamped at 0, so the model's visibility is never negative.

Checkpoints are a directory holding ``model.safetensors`` (the state dict) and
``model.json`` (the constructor arguments): no pickled code is ever loaded.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from larchain.core.artifacts import atomic_path
from larchain.core.visibility import VisibilityModel

__all__ = [
    "DEFAULT_FLOOR",
    "SineLayer",
    "Siren",
    "SirenVisibility",
    "from_target",
    "n_parameters",
    "to_target",
]

DEFAULT_FLOOR = 1e-7
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "model.json"


def _log_range(floor: float) -> tuple[float, float]:
    lo = math.log10(floor)
    return lo, math.log10(1.0 + floor) - lo


def to_target(v: Tensor, floor: float = DEFAULT_FLOOR) -> Tensor:
    """Visibility (linear, in [0, 1]) -> network target in [-1, 1] (see module docstring)."""
    lo, span = _log_range(floor)
    return 2.0 * (torch.log10(v + floor) - lo) / span - 1.0


def from_target(y: Tensor, floor: float = DEFAULT_FLOOR) -> Tensor:
    """Inverse of :func:`to_target`, clamped at 0 (the network's y may fall below -1)."""
    lo, span = _log_range(floor)
    return torch.clamp(torch.pow(10.0, (y + 1.0) * (0.5 * span) + lo) - floor, min=0.0)


def _siren_uniform_(linear: nn.Linear, bound: float) -> None:
    with torch.no_grad():
        linear.weight.uniform_(-bound, bound)


class SineLayer(nn.Module):
    """``sin(omega_0 * (W x + b))``.

    SIREN initialisation of W: the first layer U(-1/in, 1/in), so that ``omega_0 W x``
    spans several periods over the input cube; hidden layers U(-sqrt(6/in)/omega_0,
    +sqrt(6/in)/omega_0), so that ``omega_0 W x`` has unit standard deviation when x is
    the (arcsine-distributed) output of the previous sine layer, and that distribution
    repeats layer after layer. The bias keeps torch's default init (a random phase), as in
    the reference implementation.
    """

    def __init__(self, in_f: int, out_f: int, omega_0: float = 30.0, is_first: bool = False):
        super().__init__()
        self.omega_0 = float(omega_0)
        self.is_first = is_first
        self.linear = nn.Linear(in_f, out_f)
        bound = 1.0 / in_f if is_first else math.sqrt(6.0 / in_f) / self.omega_0
        _siren_uniform_(self.linear, bound)

    def forward(self, x: Tensor) -> Tensor:
        return torch.sin(self.omega_0 * self.linear(x))


class Siren(nn.Module):
    """Sine layers (one input, ``hidden_layers`` hidden) then a linear output layer."""

    def __init__(
        self,
        in_features: int = 3,
        hidden_features: int = 256,
        hidden_layers: int = 3,
        out_features: int = 1,
        omega_0: float = 30.0,
        hidden_omega_0: float = 30.0,
    ):
        super().__init__()
        layers: list[nn.Module] = [SineLayer(in_features, hidden_features, omega_0, True)]
        for _ in range(hidden_layers):
            layers.append(SineLayer(hidden_features, hidden_features, hidden_omega_0))
        last = nn.Linear(hidden_features, out_features)
        _siren_uniform_(last, math.sqrt(6.0 / hidden_features) / hidden_omega_0)
        layers.append(last)
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class SirenVisibility(VisibilityModel):
    """Visibility model: points [N, 3] in cm -> visibility [N, D] (linear, >= 0).

    Differentiable in ``points``; :meth:`evaluate` (inherited) is the batched, no-grad
    version. Points are cast to the model's dtype (float32 unless converted).
    """

    def __init__(
        self,
        n_detectors: int,
        size: list[float] | tuple[float, float, float],
        hidden_features: int = 256,
        hidden_layers: int = 3,
        omega_0: float = 30.0,
        hidden_omega_0: float = 30.0,
        floor: float = DEFAULT_FLOOR,
    ):
        super().__init__()
        if len(size) != 3 or min(size) <= 0:
            raise ValueError(f"size must be 3 positive lengths (cm), got {size!r}")
        self.hidden_features = int(hidden_features)
        self.hidden_layers = int(hidden_layers)
        self.omega_0 = float(omega_0)
        self.hidden_omega_0 = float(hidden_omega_0)
        self.floor = float(floor)
        self.net = Siren(
            3, self.hidden_features, self.hidden_layers, int(n_detectors), omega_0, hidden_omega_0
        )
        self.register_buffer("lo", torch.zeros(3))
        self.register_buffer("hi", torch.tensor([float(s) for s in size]))

    @property
    def n_detectors(self) -> int:
        return self.net.net[-1].out_features

    @property
    def config(self) -> dict[str, Any]:
        """Constructor arguments (JSON-serialisable): ``SirenVisibility(**config)``."""
        return {
            "hidden_features": self.hidden_features,
            "hidden_layers": self.hidden_layers,
            "omega_0": self.omega_0,
            "hidden_omega_0": self.hidden_omega_0,
            "n_detectors": self.n_detectors,
            "size": [float(s) for s in self.hi.tolist()],
            "floor": self.floor,
        }

    def normalise(self, points: Tensor) -> Tensor:
        """Positions (cm) -> network input in [-1, 1]^3."""
        return 2.0 * (points - self.lo) / (self.hi - self.lo) - 1.0

    def forward_target(self, points: Tensor) -> Tensor:
        """Raw network output (the target scale y), for training."""
        return self.net(self.normalise(points.to(self.hi.dtype)))

    def forward(self, points: Tensor) -> Tensor:
        return from_target(self.forward_target(points), self.floor)

    def save(self, directory: str | Path) -> None:
        """Write ``model.safetensors`` and ``model.json`` into ``directory`` (atomically)."""
        directory = Path(directory)
        tensors = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        with atomic_path(directory / WEIGHTS_FILE) as tmp:
            save_file(tensors, str(tmp), metadata={"format": "pt"})
        with atomic_path(directory / CONFIG_FILE) as tmp:
            tmp.write_text(json.dumps(self.config, indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, directory: str | Path, device: str | torch.device = "cpu") -> SirenVisibility:
        """Rebuild a model written by :meth:`save` (JSON + safetensors, no pickle)."""
        directory = Path(directory)
        config = json.loads((directory / CONFIG_FILE).read_text())
        model = cls(**config)
        model.load_state_dict(load_file(directory / WEIGHTS_FILE, device="cpu"))
        return model.to(device).eval()


def n_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
