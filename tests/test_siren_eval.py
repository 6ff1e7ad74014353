"""The surrogate evaluation: the bias metric, its noise floor, compression and speed."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import xarray as xr

from larchain.lut.interp import LutVisibility
from larchain.siren.evaluate import evaluate_surrogate, relative_bias

CFG = {"threshold": 1e-3, "distance_bins": 5, "throughput_points": 2048}


def table(seed=0) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    nx, ny, nz, nd = 4, 5, 6, 2
    vis = rng.uniform(1e-4, 1e-2, (nx, ny, nz, nd)).astype(np.float32)
    return xr.Dataset(
        {
            "visibility": (("x", "y", "z", "detector"), vis),
            "visibility_error": (("x", "y", "z", "detector"), 0.1 * vis),
        },
        coords={
            "x": np.arange(nx) * 2.0 + 1.0,
            "y": np.arange(ny) * 2.0 + 1.0,
            "z": np.arange(nz) * 2.0 + 1.0,
            "detector": np.arange(nd),
            "detector_name": ("detector", ["a", "b"]),
            "detector_center": (("detector", "xyz"), [[0.0, 5.0, 6.0], [8.0, 5.0, 6.0]]),
        },
        attrs={"geometry": json.dumps({"size": [8.0, 10.0, 12.0]})},
    )


class Scaled(LutVisibility):
    """The table times a constant: a surrogate with a known, uniform bias."""

    def __init__(self, lut: LutVisibility, factor: float) -> None:
        torch.nn.Module.__init__(self)
        self.lut, self.factor = lut, factor

    @property
    def n_detectors(self) -> int:
        return self.lut.n_detectors

    def forward(self, points):
        return self.factor * self.lut(points)


def test_relative_bias_values():
    assert relative_bias(np.array([1.0]), np.array([1.0]))[0] == 0.0
    assert relative_bias(np.array([3.0]), np.array([1.0]))[0] == pytest.approx(1.0)
    assert relative_bias(np.array([0.0]), np.array([1.0]))[0] == pytest.approx(2.0)
    assert relative_bias(np.array([0.0]), np.array([0.0]))[0] == 0.0


def test_the_table_itself_has_zero_bias():
    ds = table()
    lut = LutVisibility.from_dataset(ds, dtype=torch.float64)
    summary, evald = evaluate_surrogate(lut, lut, ds, CFG, n_parameters=10)
    assert summary["bias_mean"] < 1e-6 and summary["bias_p99"] < 1e-6
    assert summary["compression"] == pytest.approx(ds["visibility"].size / 10)
    assert summary["entries_above_threshold"] == int((ds["visibility"].values > 1e-3).sum())
    assert (
        sum(r["entries"] for r in summary["bias_by_distance"]) == summary["entries_above_threshold"]
    )
    # noise floor: sqrt(2/pi) x 10% relative error
    assert summary["table_noise_floor_mean"] == pytest.approx(np.sqrt(2 / np.pi) * 0.1, rel=1e-5)
    assert summary["throughput_points_x_detectors_per_s"] > 0
    assert evald["relative_bias"].dims == ("x", "y", "z", "detector")


def test_a_uniformly_scaled_surrogate_has_the_expected_bias():
    """p = 1.2 t gives 2 x 0.2 / 2.2 = 0.1818... for every entry."""
    ds = table()
    lut = LutVisibility.from_dataset(ds, dtype=torch.float64)
    summary, _ = evaluate_surrogate(Scaled(lut, 1.2), lut, ds, CFG, n_parameters=10)
    assert summary["bias_mean"] == pytest.approx(0.4 / 2.2, rel=1e-5)
    assert summary["bias_median"] == pytest.approx(0.4 / 2.2, rel=1e-5)


def test_no_entry_above_threshold_is_a_clear_error():
    ds = table()
    lut = LutVisibility.from_dataset(ds)
    with pytest.raises(ValueError, match="threshold"):
        evaluate_surrogate(lut, lut, ds, {**CFG, "threshold": 1.0}, n_parameters=10)
