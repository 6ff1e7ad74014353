# LUT stage: the photon library, computed block by block on a Dask cluster.

LUT_OUTPUTS = [
    f"{LUT.path}/lut.nc",
    f"{LUT.path}/manifest.json",
    f"{LUT.path}/figures/visibility_slice.png",
]


rule lut_build:
    output:
        lut=f"{LUT.path}/lut.nc",
        manifest=f"{LUT.path}/manifest.json",
    log:
        f"logs/lut/{LUT.id}/lut_build.log",
    benchmark:
        f"logs/lut/{LUT.id}/lut_build.benchmark.tsv"
    conda:
        "../../envs/larchain.yaml"
    threads: 2
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=lambda wc, attempt: 60 * attempt,
        gpu=0,
    params:
        # only what the LUT *is*; where it runs (lut.device, dask) is read from the
        # config by the script, so changing it triggers no re-run
        artifact=LUT.to_dict(),
    script:
        "../scripts/lut_build.py"


rule lut_figure:
    input:
        lut=rules.lut_build.output.lut,
    output:
        report(
            f"{LUT.path}/figures/visibility_slice.png",
            caption="../report/lut_slice.rst",
            category="1. Photon library",
        ),
    log:
        f"logs/lut/{LUT.id}/lut_figure.log",
    conda:
        "../../envs/larchain.yaml"
    params:
        figure=canonical(config["lut"]["figure"]),
    script:
        "../scripts/lut_figure.py"
