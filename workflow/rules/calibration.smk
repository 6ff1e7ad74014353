# Calibration stage: fit the detector physics to the control samples, with classic
# baselines, a coverage study and the fitted detector config for the simulation.


rule calibrate:
    input:
        unpack(visibility_input),
        control=rules.simulate_control.output.index,
    output:
        summary=f"{CALIB.path}/calibration.json",
        table=f"{CALIB.path}/calibration.nc",
        detector_config=f"{CALIB.path}/tpc.yaml",
        manifest=f"{CALIB.path}/manifest.json",
    log:
        f"logs/calibration/{CALIB.id}/calibrate.log",
    benchmark:
        f"logs/calibration/{CALIB.id}/calibrate.benchmark.tsv"
    conda:
        "../../envs/larchain.yaml"
    threads: 2
    resources:
        mem_mb=lambda wc, attempt: 6000 * attempt,
        runtime=lambda wc, attempt: 60 * attempt,
        gpu=0,
    params:
        # calibration.device is read from the config by the script (not part of the id)
        artifact=CALIB.to_dict(),
    script:
        "../scripts/calibrate.py"


rule calibration_coverage:
    input:
        unpack(visibility_input),
        control=rules.simulate_control.output.index,
    output:
        toys=f"{COVERAGE.path}/toys.json",
        manifest=f"{COVERAGE.path}/manifest.json",
    log:
        f"logs/calibration_coverage/{COVERAGE.id}/calibration_coverage.log",
    benchmark:
        f"logs/calibration_coverage/{COVERAGE.id}/calibration_coverage.benchmark.tsv"
    conda:
        "../../envs/larchain.yaml"
    threads: 2
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=lambda wc, attempt: 60 * attempt,
    params:
        artifact=COVERAGE.to_dict(),
    script:
        "../scripts/calibration_coverage.py"


rule calibration_figures:
    input:
        unpack(visibility_input),
        calibration=rules.calibrate.output.summary,
        toys=rules.calibration_coverage.output.toys,
        control=rules.simulate_control.output.index,
    output:
        convergence=report(
            f"{COVERAGE.path}/figures/convergence.png",
            caption="../report/calib_convergence.rst",
            category="5. Calibration",
        ),
        pulls=report(
            f"{COVERAGE.path}/figures/pulls.png",
            caption="../report/calib_pulls.rst",
            category="5. Calibration",
        ),
        correlation=report(
            f"{COVERAGE.path}/figures/correlation.png",
            caption="../report/calib_correlation.rst",
            category="5. Calibration",
        ),
        lifetime=report(
            f"{COVERAGE.path}/figures/dqdx_drift_time.png",
            caption="../report/calib_lifetime.rst",
            category="5. Calibration",
        ),
        light=report(
            f"{COVERAGE.path}/figures/pe_per_detector.png",
            caption="../report/calib_light.rst",
            category="5. Calibration",
        ),
        closed_loop=report(
            f"{COVERAGE.path}/figures/closed_loop.png",
            caption="../report/calib_closed_loop.rst",
            category="5. Calibration",
        ),
        summary=f"{COVERAGE.path}/figures/summary.json",
    log:
        f"logs/calibration_coverage/{COVERAGE.id}/calibration_figures.log",
    conda:
        "../../envs/larchain.yaml"
    params:
        figure=canonical(config["calibration"]["figure"]),
    script:
        "../scripts/calibration_figures.py"
