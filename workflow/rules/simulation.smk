# Simulation stage: labelled events for reconstruction and control samples for calibration.


rule simulate:
    input:
        unpack(visibility_input),
    output:
        index=f"{SIM.path}/index.json",
        manifest=f"{SIM.path}/manifest.json",
    log:
        f"logs/simulation/{SIM.id}/simulate.log",
    benchmark:
        f"logs/simulation/{SIM.id}/simulate.benchmark.tsv"
    conda:
        "../../envs/larchain.yaml"
    threads: 2
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=lambda wc, attempt: 60 * attempt,
    params:
        artifact=SIM.to_dict(),
        section="simulation",
    script:
        "../scripts/simulate.py"


rule simulate_control:
    input:
        unpack(visibility_input),
    output:
        index=f"{CONTROL.path}/index.json",
        manifest=f"{CONTROL.path}/manifest.json",
    log:
        f"logs/control/{CONTROL.id}/simulate_control.log",
    benchmark:
        f"logs/control/{CONTROL.id}/simulate_control.benchmark.tsv"
    conda:
        "../../envs/larchain.yaml"
    threads: 2
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=lambda wc, attempt: 60 * attempt,
    params:
        artifact=CONTROL.to_dict(),
        section="control",
    script:
        "../scripts/simulate.py"


rule simulation_figures:
    input:
        events=rules.simulate.output.index,
        control=rules.simulate_control.output.index,
    output:
        display=report(
            f"{SIM.path}/figures/event_display.png",
            caption="../report/sim_event_display.rst",
            category="3. Simulation",
        ),
        classes=report(
            f"{SIM.path}/figures/class_fractions.png",
            caption="../report/sim_class_fractions.rst",
            category="3. Simulation",
        ),
        dedx=report(
            f"{SIM.path}/figures/dedx_residual_range.png",
            caption="../report/sim_dedx.rst",
            category="3. Simulation",
        ),
        recombination=report(
            f"{SIM.path}/figures/recombination.png",
            caption="../report/sim_recombination.rst",
            category="3. Simulation",
        ),
        summary=f"{SIM.path}/figures/summary.json",
    log:
        f"logs/simulation/{SIM.id}/simulation_figures.log",
    conda:
        "../../envs/larchain.yaml"
    params:
        figure=canonical(config["simulation"]["figure"]),
        tpc=canonical(config["tpc"]),
    script:
        "../scripts/simulation_figures.py"
