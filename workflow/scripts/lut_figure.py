"""Snakemake job: figure of a LUT slice (one photodetector and the sum)."""

import contextlib

from larchain.lut.build import open_lut
from larchain.lut.plots import plot_slice


def main(smk) -> None:  # noqa: ANN001
    fig = smk.params.figure
    with open_lut(smk.input.lut) as ds:
        plot_slice(
            ds, smk.output[0], detector=fig["detector"], axis=fig["axis"], position=fig["position"]
        )


if __name__ == "__main__":
    with open(snakemake.log[0], "w") as log, contextlib.redirect_stderr(log):
        main(snakemake)
