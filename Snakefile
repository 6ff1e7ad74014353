# larchain: LArTPC physics inference as one DAG. Read this file as the table of contents.
#
#   lut     photon visibility look-up table (optical Monte Carlo)  workflow/rules/lut.smk
#   siren   neural surrogate of the LUT, and its evaluation        workflow/rules/siren.smk
#   sim     labelled events and calibration control samples        workflow/rules/simulation.smk
#   reco    UResNet segmentation + point proposals: train, infer, eval workflow/rules/reco.smk
#           particles and interactions (clustering, GNNs, PID)      workflow/rules/reco.smk
#   calib   detector-physics fit, classic baselines, coverage toys workflow/rules/calibration.smk
#
# Every stage writes results/<stage>/<id>/ where <id> hashes the config keys it reads,
# its upstream ids and its code version (see src/larchain/core/artifacts.py).


from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config/config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/lut.smk"
include: "workflow/rules/siren.smk"
include: "workflow/rules/simulation.smk"
include: "workflow/rules/reco.smk"
include: "workflow/rules/calibration.smk"


rule all:
    default_target: True
    input:
        LUT_OUTPUTS,
        rules.siren_eval.output,
        rules.simulation_figures.output,
        rules.reco_eval.output,
        rules.particle_eval.output,
        rules.calibration_figures.output,
