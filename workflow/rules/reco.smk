# Reconstruction stage 1: UResNet semantic segmentation + point proposals on the events.


rule reco_train:
    input:
        events=rules.simulate.output.index,
    output:
        model=f"{RECO.path}/model.safetensors",
        model_config=f"{RECO.path}/model.json",
        metrics=f"{RECO.path}/metrics.csv",
        split=f"{RECO.path}/split.json",
        manifest=f"{RECO.path}/manifest.json",
    log:
        f"logs/reco/{RECO.id}/reco_train.log",
    benchmark:
        f"logs/reco/{RECO.id}/reco_train.benchmark.tsv"
    conda:
        "../../envs/larchain.yaml"
    threads: 1  # one torch thread: the trained weights do not depend on the core count
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=lambda wc, attempt: 120 * attempt,
        gpu=0,
    params:
        # reco.device is read from the config by the script: where it trains is not part
        # of what it is (recorded in the manifest)
        artifact=RECO.to_dict(),
    script:
        "../scripts/reco_train.py"


rule reco_infer:
    input:
        model=rules.reco_train.output.manifest,
        events=rules.simulate.output.index,
    output:
        index=f"{RECO_INFER.path}/index.json",
        manifest=f"{RECO_INFER.path}/manifest.json",
    log:
        f"logs/reco_infer/{RECO_INFER.id}/reco_infer.log",
    benchmark:
        f"logs/reco_infer/{RECO_INFER.id}/reco_infer.benchmark.tsv"
    conda:
        "../../envs/larchain.yaml"
    threads: 2
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=lambda wc, attempt: 60 * attempt,
    params:
        artifact=RECO_INFER.to_dict(),
    script:
        "../scripts/reco_infer.py"


rule reco_eval:
    input:
        predictions=rules.reco_infer.output.index,
        events=rules.simulate.output.index,
        split=rules.reco_train.output.split,
    output:
        metrics=f"{RECO_EVAL.path}/metrics.json",
        confusion=report(
            f"{RECO_EVAL.path}/figures/confusion.png",
            caption="../report/reco_confusion.rst",
            category="4. Reconstruction",
        ),
        display=report(
            f"{RECO_EVAL.path}/figures/prediction_display.png",
            caption="../report/reco_display.rst",
            category="4. Reconstruction",
        ),
        points=report(
            f"{RECO_EVAL.path}/figures/point_residuals.png",
            caption="../report/reco_points.rst",
            category="4. Reconstruction",
        ),
        manifest=f"{RECO_EVAL.path}/manifest.json",
    log:
        f"logs/reco_eval/{RECO_EVAL.id}/reco_eval.log",
    conda:
        "../../envs/larchain.yaml"
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=lambda wc, attempt: 30 * attempt,
    params:
        artifact=RECO_EVAL.to_dict(),
    script:
        "../scripts/reco_eval.py"


# Reconstruction stages 2-3: fragments -> particles -> interactions, particle ID.


rule particle_train:
    input:
        events=rules.simulate.output.index,
        predictions=rules.reco_infer.output.index,
        split=rules.reco_train.output.split,
    output:
        model=f"{PARTICLES.path}/chain.safetensors",
        chain=f"{PARTICLES.path}/chain.json",
        history=f"{PARTICLES.path}/history.csv",
        manifest=f"{PARTICLES.path}/manifest.json",
    log:
        f"logs/particles/{PARTICLES.id}/particle_train.log",
    benchmark:
        f"logs/particles/{PARTICLES.id}/particle_train.benchmark.tsv"
    conda:
        "../../envs/larchain.yaml"
    threads: 1  # one torch thread: the trained weights do not depend on the core count
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=lambda wc, attempt: 60 * attempt,
    params:
        artifact=PARTICLES.to_dict(),
    script:
        "../scripts/particle_train.py"


rule particle_infer:
    input:
        model=rules.particle_train.output.manifest,
        events=rules.simulate.output.index,
        predictions=rules.reco_infer.output.index,
    output:
        index=f"{PARTICLE_INFER.path}/index.json",
        manifest=f"{PARTICLE_INFER.path}/manifest.json",
    log:
        f"logs/particle_infer/{PARTICLE_INFER.id}/particle_infer.log",
    benchmark:
        f"logs/particle_infer/{PARTICLE_INFER.id}/particle_infer.benchmark.tsv"
    conda:
        "../../envs/larchain.yaml"
    threads: 2
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=lambda wc, attempt: 60 * attempt,
    params:
        artifact=PARTICLE_INFER.to_dict(),
    script:
        "../scripts/particle_infer.py"


rule particle_eval:
    input:
        particles=rules.particle_infer.output.index,
        predictions=rules.reco_infer.output.index,
        events=rules.simulate.output.index,
        split=rules.reco_train.output.split,
    output:
        metrics=f"{PARTICLE_EVAL.path}/metrics.json",
        display=report(
            f"{PARTICLE_EVAL.path}/figures/particle_display.png",
            caption="../report/particle_display.rst",
            category="4. Reconstruction",
        ),
        pid=report(
            f"{PARTICLE_EVAL.path}/figures/pid_confusion.png",
            caption="../report/particle_pid.rst",
            category="4. Reconstruction",
        ),
        scores=report(
            f"{PARTICLE_EVAL.path}/figures/clustering_scores.png",
            caption="../report/particle_scores.rst",
            category="4. Reconstruction",
        ),
        manifest=f"{PARTICLE_EVAL.path}/manifest.json",
    log:
        f"logs/particle_eval/{PARTICLE_EVAL.id}/particle_eval.log",
    conda:
        "../../envs/larchain.yaml"
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=lambda wc, attempt: 30 * attempt,
    params:
        artifact=PARTICLE_EVAL.to_dict(),
    script:
        "../scripts/particle_eval.py"
