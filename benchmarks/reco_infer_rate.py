"""Stage-1 reconstruction (UResNet) throughput: inference events/s and training step time on
CPU and, when present, CUDA, on the default run's events and trained model.

Baseline measured in the same run: one CPU thread. For each device: inference over all
events in batches of --batch (``larchain.reco.infer.predict_events``, the code the
``reco_infer`` rule runs, output copied back to the host included) and one training step
(forward + cross-entropy + backward) per batch. On CUDA the predicted classes are compared
with the CPU's (fraction of voxels with the same class): the same model gives the same answer.

Needs the default run's artifacts (``snakemake --cores 2``): the newest ``results/reco`` model
and the simulation it was trained on.

    python benchmarks/reco_infer_rate.py [--batch 8] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--results", default=str(ROOT / "results"))
    ap.add_argument("--batch", type=int, default=8, help="events per batch")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    from larchain.reco.data import load_event, make_batch
    from larchain.reco.infer import predict_events
    from larchain.reco.train import load_model
    from larchain.sim.storage import EventDataset

    models = sorted(
        Path(args.results, "reco").glob("*/manifest.json"), key=lambda p: p.stat().st_mtime
    )
    if not models:
        raise SystemExit(f"no reco artifact under {args.results}: run snakemake first")
    model_dir = models[-1].parent
    sim = Path(
        args.results, "simulation", json.loads(models[-1].read_text())["upstream"]["simulation"]
    )
    ds = EventDataset(sim)
    voxel_size = float(ds.files[0].attrs["voxel_size"])
    _, cfg = load_model(model_dir)
    events = [load_event(ds, i, voxel_size, float(cfg["charge_scale"])) for i in range(len(ds))]
    batches = [events[k : k + args.batch] for k in range(0, len(events), args.batch)]
    n_vox = sum(len(e["coords"]) for e in events)
    print(
        f"{len(events)} events, {n_vox / len(events):.0f} voxels/event, batches of "
        f"{args.batch}; model {model_dir.name}"
    )

    runs = [("cpu, 1 thread", torch.device("cpu"), 1)]
    if torch.get_num_threads() > 1:
        runs.append(
            (
                f"cpu, {torch.get_num_threads()} threads",
                torch.device("cpu"),
                torch.get_num_threads(),
            )
        )
    if torch.cuda.is_available():
        runs.append((f"cuda ({torch.cuda.get_device_name()})", torch.device("cuda"), 1))
    reference = None
    base: dict[str, float] = {}
    for name, device, threads in runs:
        torch.set_num_threads(threads)
        model, _ = load_model(model_dir, str(device))

        def infer(model=model) -> list:  # noqa: ANN001
            return [r for b in batches for r in predict_events(model, b, 0.5)]

        infer()  # warm-up
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            records = infer()
            times.append(time.perf_counter() - t0)
        t_inf = statistics.median(times)
        pred = np.concatenate([r["voxels"]["pred"] for r in records])
        agree = (
            ""
            if reference is None
            else f"; classes same as CPU for {np.mean(pred == reference):.4%} of voxels"
        )
        reference = pred if reference is None else reference

        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: timing only, weights kept

        def step(b: list, model=model, opt=opt, device=device) -> None:  # noqa: ANN001
            batch = make_batch(b, device)
            loss = F.cross_entropy(model(batch["input"])["segmentation"], batch["semantic"])
            opt.zero_grad()
            loss.backward()
            opt.step()

        step(batches[0])
        sync(device)
        t0 = time.perf_counter()
        for b in batches:
            step(b)
        sync(device)
        t_step = (time.perf_counter() - t0) / len(batches)
        rate = len(events) / t_inf
        base.setdefault("rate", rate)
        base.setdefault("step", t_step)
        print(
            f"{name:40s} inference {rate:8.1f} events/s ({n_vox / t_inf:.3g} voxels/s, "
            f"x{rate / base['rate']:.1f} vs 1 CPU thread); training step {t_step * 1e3:7.1f} "
            f"ms/batch (x{base['step'] / t_step:.1f}){agree}"
        )


if __name__ == "__main__":
    main()
