"""Config loading and the checks a JSON schema cannot express.

The Snakefile validates the config with Snakemake's ``validate()`` against
``workflow/schemas/config.schema.yaml`` and then calls :func:`check_config`; Python users
call :func:`load_config`, which does both with the same schema. Either way, a bad config
fails before any job runs, with the offending key named.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

SCHEMA_PATH = Path(__file__).resolve().parents[3] / "workflow" / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """An invalid config value; ``key`` is the dotted path of the offending entry."""

    def __init__(self, key: str, message: str, source: str | None = None) -> None:
        self.key = key
        self.detail = message
        self.source = source
        where = f" in {source}" if source else ""
        super().__init__(f"invalid config key '{key}'{where}: {message}")


def key_path(path: Any) -> str:
    """``['detector', 'size', 0]`` -> ``'detector.size[0]'``."""
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "<top level>"


def _schema(schema_path: Path | None) -> dict[str, Any]:
    path = Path(schema_path) if schema_path else SCHEMA_PATH
    if not path.exists():
        raise FileNotFoundError(f"config schema not found: {path}")
    with open(path) as f:
        return yaml.safe_load(f)


def validate_schema(
    config: dict[str, Any], schema_path: Path | None = None, source: str | None = None
) -> dict[str, Any]:
    """Validate against the schema, filling defaults in place (as Snakemake's validate does)."""
    import jsonschema

    base = jsonschema.Draft202012Validator

    def set_defaults(validator, properties, instance, schema):  # noqa: ANN001
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from base.VALIDATORS["properties"](validator, properties, instance, schema)

    filling = jsonschema.validators.extend(base, {"properties": set_defaults})
    validator = filling(_schema(schema_path))
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        err = min(errors, key=lambda e: len(list(e.absolute_path)))
        raise ConfigError(key_path(err.absolute_path), err.message, source)
    return config


def check_config(config: Mapping[str, Any]) -> None:
    """Cross-key checks: photodetectors on walls, voxel grids dividing the volume, ..."""
    from larchain.core.geometry import Detector, VoxelGrid

    det = Detector.from_config(config["detector"])
    VoxelGrid.from_config(det.size, config["lut"]["voxel_size"], "lut.voxel_size")
    sched_file = (config.get("dask") or {}).get("scheduler_file")
    if sched_file and not Path(sched_file).exists():
        raise ConfigError(
            "dask.scheduler_file",
            f"file {sched_file!r} does not exist (expected the JSON "
            "written by `dask scheduler --scheduler-file`)",
        )
    truth = (config.get("control") or {}).get("truth") or {}
    tpc_keys = set(config.get("tpc") or {})
    for k, v in truth.items():
        if k not in tpc_keys:
            raise ConfigError(f"control.truth.{k}",
                              f"not a tpc key (expected one of {sorted(tpc_keys)})")
        if k in ("recombination", "pd_efficiency", "drift_velocity"):
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
            raise ConfigError(f"control.truth.{k}", f"expected a number > 0, got {v!r}")
    fig = (config["lut"].get("figure") or {}).get("detector", 0)
    if fig >= det.n_photodetectors:
        raise ConfigError(
            "lut.figure.detector",
            f"photodetector index {fig} out of range: the detector has "
            f"{det.n_photodetectors} photodetectors (indices from 0)",
        )


def load_config(path: str | Path, schema_path: Path | None = None) -> dict[str, Any]:
    """Read a YAML config, validate it (schema + cross-key checks) and fill defaults."""
    path = Path(path)
    try:
        with open(path) as f:
            config = yaml.safe_load(f) or {}
    except FileNotFoundError:
        raise FileNotFoundError(f"config file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise ConfigError("<file>", f"not valid YAML: {exc}", str(path)) from None
    if not isinstance(config, dict):
        raise ConfigError("<top level>", "expected a mapping of sections", str(path))
    validate_schema(config, schema_path, source=str(path))
    try:
        check_config(config)
    except ConfigError as exc:
        raise ConfigError(exc.key, exc.detail, str(path)) from None
    return config
