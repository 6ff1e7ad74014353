# Shared helpers: cross-key config checks and artifact ids for every stage.

from larchain.core.artifacts import ArtifactSpec, canonical, select
from larchain.core.config import check_config
import larchain.lut
import larchain.siren
import larchain.sim
import larchain.reco
import larchain.calib

check_config(config)


def artifact(stage, keys, exclude, code_version, upstream=None):
    """The artifact a stage produces for the current config: its id hashes the config keys
    it reads, its code version and its upstream artifacts' ids."""
    return ArtifactSpec(
        stage=stage,
        config=select(config, keys, exclude),
        code_version=code_version,
        upstream={k: v.id for k, v in (upstream or {}).items()},
    )


lut, siren = larchain.lut, larchain.siren
LUT = artifact("lut", lut.CONFIG_KEYS, lut.EXCLUDE_KEYS, lut.CODE_VERSION)
SIREN = artifact(
    "siren", siren.CONFIG_KEYS, siren.EXCLUDE_KEYS, siren.CODE_VERSION, {"lut": LUT}
)
SIREN_EVAL = artifact(
    "siren_eval",
    siren.EVAL_CONFIG_KEYS,
    (),
    siren.EVAL_CODE_VERSION,
    {"siren": SIREN, "lut": LUT},
)


# the simulation takes its light from the SIREN (default), the LUT, or none
sim = larchain.sim
VISIBILITY = {"siren": SIREN, "lut": LUT, "none": None}[
    config["simulation"]["visibility"]
]
SIM = artifact(
    "simulation",
    sim.CONFIG_KEYS,
    sim.EXCLUDE_KEYS,
    sim.CODE_VERSION,
    {"visibility": VISIBILITY} if VISIBILITY else {},
)
CONTROL = artifact(
    "control",
    sim.CONTROL_CONFIG_KEYS,
    (),
    sim.CONTROL_CODE_VERSION,
    {"visibility": VISIBILITY} if VISIBILITY else {},
)


def visibility_input(wildcards):
    """The visibility artifact's manifest (its directory holds the model), if any."""
    return {"visibility": f"{VISIBILITY.path}/manifest.json"} if VISIBILITY else {}


reco = larchain.reco
RECO = artifact(
    "reco", reco.CONFIG_KEYS, reco.EXCLUDE_KEYS, reco.CODE_VERSION, {"simulation": SIM}
)
RECO_INFER = artifact(
    "reco_infer",
    ("reco.infer",),
    (),
    reco.INFER_CODE_VERSION,
    {"reco": RECO, "simulation": SIM},
)
RECO_EVAL = artifact(
    "reco_eval",
    ("reco.eval",),
    (),
    reco.CODE_VERSION,
    {"predictions": RECO_INFER, "simulation": SIM},
)

# reconstruction 2-3: the particle chain trains on stage 1's predictions of the same events
PARTICLES = artifact(
    "particles",
    ("particles",),
    ("particles.infer", "particles.eval"),
    reco.PARTICLES_CODE_VERSION,
    {"predictions": RECO_INFER, "simulation": SIM},
)
PARTICLE_INFER = artifact(
    "particle_infer",
    ("particles.infer",),
    (),
    reco.PARTICLES_CODE_VERSION,
    {"particles": PARTICLES, "predictions": RECO_INFER, "simulation": SIM},
)
PARTICLE_EVAL = artifact(
    "particle_eval",
    ("particles.eval",),
    (),
    reco.PARTICLE_EVAL_CODE_VERSION,
    {"reconstruction": PARTICLE_INFER, "predictions": RECO_INFER, "simulation": SIM},
)


# calibration: fits the control samples (light through the same visibility model)
calib = larchain.calib
CONTROL_UPSTREAM = {
    "control": CONTROL,
    **({"visibility": VISIBILITY} if VISIBILITY else {}),
}
CALIB = artifact(
    "calibration",
    calib.CONFIG_KEYS,
    calib.EXCLUDE_KEYS,
    calib.CODE_VERSION,
    CONTROL_UPSTREAM,
)
COVERAGE = artifact(
    "calibration_coverage",
    calib.COVERAGE_CONFIG_KEYS,
    calib.COVERAGE_EXCLUDE_KEYS,
    calib.CODE_VERSION,
    CONTROL_UPSTREAM,
)
