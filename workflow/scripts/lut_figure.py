"""Snakemake job: figure of a LUT slice (one photodetector and the sum)."""

from pathlib import Path

from larchain.core.artifacts import require
from larchain.core.jobs import run_job
from larchain.lut.build import open_lut
from larchain.lut.plots import plot_slice


def main(smk) -> None:  # noqa: ANN001
    fig = smk.params.figure
    require(Path(smk.input.lut).parent)  # refuse a truncated or modified LUT
    with open_lut(smk.input.lut) as ds:
        plot_slice(
            ds, smk.output[0], detector=fig["detector"], axis=fig["axis"], position=fig["position"]
        )


if __name__ == "__main__":
    run_job(main, snakemake)
