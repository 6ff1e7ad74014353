# SIREN stage: a sine-activated network fitted to the LUT, and its evaluation.


rule siren_train:
    input:
        lut=f"{LUT.path}/lut.nc",
        lut_manifest=f"{LUT.path}/manifest.json",
    output:
        model=f"{SIREN.path}/model.safetensors",
        model_config=f"{SIREN.path}/model.json",
        metrics=f"{SIREN.path}/metrics.csv",
        manifest=f"{SIREN.path}/manifest.json",
    log:
        f"logs/siren/{SIREN.id}/siren_train.log",
    benchmark:
        f"logs/siren/{SIREN.id}/siren_train.benchmark.tsv"
    conda:
        "../../envs/larchain.yaml"
    threads: 1  # tiny networks: more threads only add synchronisation
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=lambda wc, attempt: 60 * attempt,
        gpu=0,
    params:
        # siren.device is read from the config by the script: where it trains is not
        # part of what it is (recorded in the manifest)
        artifact=SIREN.to_dict(),
    script:
        "../scripts/siren_train.py"


rule siren_eval:
    input:
        siren_manifest=rules.siren_train.output.manifest,
        lut=f"{LUT.path}/lut.nc",
        lut_manifest=f"{LUT.path}/manifest.json",
    output:
        metrics=f"{SIREN_EVAL.path}/metrics.json",
        evaluation=f"{SIREN_EVAL.path}/evaluation.nc",
        comparison=report(
            f"{SIREN_EVAL.path}/figures/comparison.png",
            caption="../report/siren_comparison.rst",
            category="2. SIREN surrogate",
        ),
        bias=report(
            f"{SIREN_EVAL.path}/figures/bias.png",
            caption="../report/siren_bias.rst",
            category="2. SIREN surrogate",
        ),
        training=report(
            f"{SIREN_EVAL.path}/figures/training.png",
            caption="../report/siren_training.rst",
            category="2. SIREN surrogate",
        ),
        manifest=f"{SIREN_EVAL.path}/manifest.json",
    log:
        f"logs/siren_eval/{SIREN_EVAL.id}/siren_eval.log",
    conda:
        "../../envs/larchain.yaml"
    threads: 1  # tiny networks: more threads only add synchronisation
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=lambda wc, attempt: 30 * attempt,
    params:
        artifact=SIREN_EVAL.to_dict(),
    script:
        "../scripts/siren_eval.py"
