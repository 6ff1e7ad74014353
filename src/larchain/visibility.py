"""Load any visibility artifact as a :class:`~larchain.core.visibility.VisibilityModel`.

Downstream stages take "a visibility artifact" and need not know whether it is the LUT or
a SIREN fit: the manifest's ``stage`` says which, and this picks the implementation.
"""

from __future__ import annotations

from pathlib import Path

import torch

from larchain.core.artifacts import require
from larchain.core.visibility import VisibilityModel


def load_visibility(
    artifact_dir: str | Path, device: str | torch.device = "cpu"
) -> VisibilityModel:
    """The visibility model stored in a verified artifact directory.

    Raises ArtifactError for a missing/incomplete/corrupt artifact, ValueError for a stage
    that holds no visibility model.
    """
    directory = Path(artifact_dir)
    manifest = require(directory)
    stage = manifest.get("stage")
    if stage == "lut":
        from larchain.lut.interp import LutVisibility

        return LutVisibility.from_file(directory / "lut.nc", device=device)
    if stage == "siren":
        from larchain.siren.model import SirenVisibility  # stage written separately

        return SirenVisibility.load(directory, device)
    raise ValueError(
        f"{directory}: artifact stage {stage!r} holds no visibility model "
        "(expected 'lut' or 'siren')"
    )
