# Shared helpers: cross-key config checks and artifact ids for every stage.

from larchain.core.artifacts import ArtifactSpec, canonical, select
from larchain.core.config import check_config
import larchain.lut

check_config(config)


def artifact(stage, module, upstream=None):
    """The artifact a stage produces for the current config (id = hash of its inputs)."""
    return ArtifactSpec(
        stage=stage,
        config=select(config, module.CONFIG_KEYS, module.EXCLUDE_KEYS),
        code_version=module.CODE_VERSION,
        upstream={k: v.id for k, v in (upstream or {}).items()},
    )


LUT = artifact("lut", larchain.lut)
