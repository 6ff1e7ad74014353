"""Snakemake job: simulation figures and a small summary (class fractions, voxels/event)."""

import json
from pathlib import Path

import numpy as np

from larchain.core.artifacts import atomic_path, require
from larchain.core.jobs import run_job
from larchain.sim import plots
from larchain.sim.storage import EventDataset


def main(smk) -> None:  # noqa: ANN001
    sim_dir, control_dir = Path(smk.input.events).parent, Path(smk.input.control).parent
    require(sim_dir)
    require(control_dir)
    events = EventDataset(sim_dir)
    voxel_size = float(events.files[0].attrs["voxel_size"])
    shown = [events.raw(i) for i in range(min(smk.params.figure["events"], len(events)))]
    plots.event_display(shown, smk.output.display, voxel_size)
    sem = np.concatenate([f.column("voxels", "semantic") for f in events.files])
    counts = np.bincount(sem, minlength=5)
    plots.class_fractions(counts, smk.output.classes, len(events))
    stopping = {}
    for sample in ("stopping_muons", "stopping_protons"):
        try:
            ds = EventDataset(control_dir, sample)
        except KeyError:
            continue
        stopping[sample] = [ds.raw(i)["deposits"] for i in range(len(ds))]
    plots.dedx_residual_range(stopping, smk.output.dedx)
    steps = [d for v in stopping.values() for d in v]
    deposits = ({k: np.concatenate([d[k] for d in steps]) for k in ("de", "dx")}
                if steps else None)
    plots.recombination_curve(smk.params.tpc, smk.output.recombination, deposits)
    summary = {
        "events": len(events),
        "voxels_per_event": float(counts.sum() / max(1, len(events))),
        "class_fractions": dict(zip(("shower", "track", "michel", "delta", "low_energy"),
                                    (counts / max(1, counts.sum())).round(4).tolist(),
                                    strict=True)),
    }
    with atomic_path(smk.output.summary) as tmp:
        tmp.write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    run_job(main, snakemake)
