"""SIREN stage: a sine-activated network fitted to the LUT, a smooth and differentiable
visibility model ``points [N, 3] (cm) -> visibility [N, D]``.

Artifacts: ``results/siren/<id>/`` (``model.safetensors``, ``model.json``, ``metrics.csv``) and
``results/siren_eval/<id>/`` (bias and speed metrics, figures).
"""

from larchain.siren.model import (
    SineLayer,
    Siren,
    SirenVisibility,
    from_target,
    n_parameters,
    to_target,
)
from larchain.siren.train import predict_dataset, train_siren

#: Bump when a change alters the trained model for the same config (part of the artifact id).
CODE_VERSION = "1"
CONFIG_KEYS = ("siren",)
#: Where it trains is not part of what it is (recorded in the manifest instead).
EXCLUDE_KEYS = ("siren.device",)
EVAL_CODE_VERSION = "1"
EVAL_CONFIG_KEYS = ("siren_eval",)

__all__ = [
    "SineLayer",
    "Siren",
    "SirenVisibility",
    "from_target",
    "n_parameters",
    "predict_dataset",
    "to_target",
    "train_siren",
]
