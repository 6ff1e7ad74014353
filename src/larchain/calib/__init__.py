"""Calibration stage: fit detector physics to control samples through the differentiable
detector response of :mod:`larchain.sim.response`, with Hessian uncertainties, classic
baselines side by side, and a coverage study.

Modules: :mod:`data` (control samples as tensors), :mod:`likelihood` (censored-Gaussian
voxel charges + Poisson light), :mod:`fit` (Adam, then L-BFGS, then the Hessian),
:mod:`baselines` (exponential lifetime, modified box, hit width), :mod:`coverage` (toys),
:mod:`plots`.
"""

#: Bump when a change alters the fit result for the same inputs (part of the artifact id).
CODE_VERSION = "1"
#: Config the calibration reads (the control samples' own keys come in via their id).
CONFIG_KEYS = ("calibration",)
EXCLUDE_KEYS = ("calibration.device", "calibration.figure", "calibration.coverage")
COVERAGE_CONFIG_KEYS = ("calibration",)
COVERAGE_EXCLUDE_KEYS = ("calibration.device", "calibration.figure")
