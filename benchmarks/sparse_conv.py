"""Sparse 3D convolution speed (larchain.reco.sparse) on LArTPC-like events, against dense
``conv3d`` on the events' bounding box measured in the same run.

Synthetic batch: line-like tracks (a vertex, primaries and secondaries with multiple-scattering
wiggle, ~2 voxels thick) in a 768^3 grid, ~5k active voxels per event, batch of 4.

Figures printed (median of --repeats timed runs after a warm-up; voxels/s = active voxels in
the batch / time):

* (a) one SubmanifoldConv3d 32->32: kernel-map build, forward, forward+backward;
* (b) a 3-level SparseUNet (widths 16, 32, 64; 1 input channel, 5 classes): forward and
  forward+backward, each including building every kernel map for the batch (new coordinates
  every batch, as in training), and the map-building time alone;
* the dense baseline: the same layer / the same U-Net made of nn.Conv3d on the batch's
  bounding box (the per-event boxes, padded to a common shape). When that does not fit in
  --dense-max-gib it is timed on a --dense-crop^3 box per event and scaled linearly to the
  bounding-box volume (dense convolution cost is proportional to the volume), marked
  "extrapolated"; with the dense cells/s, which puts the per-site cost of the sparse path
  (gather/scatter overhead, ~half the 27 neighbours present on tracks) in perspective;
* spconv on the same batch, if importable (an optional, benchmark-only dependency): the same
  layer and the same U-Net in spconv's layers; forward on CPU, forward+backward on CUDA only
  (spconv's backward needs CUDA); ratios ours/spconv printed (target <= 1.5).

Usage:
    python benchmarks/sparse_conv.py                      # CPU, torch's default threads
    python benchmarks/sparse_conv.py --device cuda --dense-crop 128
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from larchain.reco.sparse import SparseTensor, SparseUNet, SubmanifoldConv3d, collate_coords

#: Face neighbours: a track ~2 voxels across.
CROSS = np.array([[0, 0, 0], [1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]])


def lartpc_event(rng: np.random.Generator, n_voxels: int, grid: int) -> np.ndarray:
    """Voxel indices ``[n_voxels, 3]`` of one event: tracks from a vertex plus secondaries
    branching off them, wiggling like multiple scattering, cut at exactly ``n_voxels``."""
    vertex = rng.uniform(0.35, 0.65, 3) * grid
    paths: list[np.ndarray] = []
    while True:
        if paths and rng.random() < 0.5:  # secondary from a point on an existing track
            prev = paths[rng.integers(len(paths))]
            start = prev[rng.integers(len(prev))]
            length = rng.uniform(10, 80)
        else:
            start, length = vertex, rng.uniform(60, 350)
        n = int(length / 0.5)
        d = rng.normal(size=3)
        d = d / np.linalg.norm(d) + np.cumsum(rng.normal(0, 0.015, (n, 3)), axis=0)
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        paths.append(start + np.cumsum(0.5 * d, axis=0))
        vox = np.rint(np.concatenate(paths)[:, None, :] + CROSS).reshape(-1, 3).astype(np.int64)
        vox = vox[((vox >= 0) & (vox < grid)).all(1)]
        keys = np.ravel_multi_index(vox.T, (grid,) * 3)
        _, first = np.unique(keys, return_index=True)
        if len(first) >= n_voxels:
            return vox[np.sort(first)[:n_voxels]]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], object], device: torch.device, repeats: int) -> tuple[float, float]:
    """(median, minimum) seconds per call of ``fn`` after one warm-up call. Both are printed:
    on a shared machine the median wanders with the load, the minimum much less."""
    fn()
    times = []
    for _ in range(repeats):
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times), min(times)


def block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm3d(c_out), nn.ReLU()
    )


class DenseUNet(nn.Module):
    """The dense counterpart of SparseUNet (same layers, every cell of the box active)."""

    def __init__(self, in_channels: int, out_channels: int, widths: list[int]) -> None:
        super().__init__()
        w = widths
        self.stem = nn.Sequential(block(in_channels, w[0]), block(w[0], w[0]))
        self.down = nn.ModuleList(
            nn.Sequential(
                nn.Conv3d(w[i - 1], w[i], 2, stride=2, bias=False),
                nn.BatchNorm3d(w[i]),
                nn.ReLU(),
                block(w[i], w[i]),
                block(w[i], w[i]),
            )
            for i in range(1, len(w))
        )
        self.up = nn.ModuleList(
            nn.Sequential(
                nn.ConvTranspose3d(w[i], w[i - 1], 2, stride=2, bias=False),
                nn.BatchNorm3d(w[i - 1]),
                nn.ReLU(),
            )
            for i in range(1, len(w))
        )
        self.merge = nn.ModuleList(
            nn.Sequential(block(2 * w[i - 1], w[i - 1]), block(w[i - 1], w[i - 1]))
            for i in range(1, len(w))
        )
        self.head = nn.Conv3d(w[0], out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.stem(x)]
        for down in self.down:
            skips.append(down(skips[-1]))
        y = skips.pop()
        for up, merge in zip(reversed(self.up), reversed(self.merge), strict=True):
            y = merge(torch.cat([up(y), skips.pop()], 1))
        return self.head(y)


def dense_timings(
    make: Callable[[], nn.Module],
    c_in: int,
    box: list[int],
    batch: int,
    peak_channels: int,
    args: argparse.Namespace,
    device: torch.device,
) -> tuple[tuple[float, float], tuple[float, float], str]:
    """(median, min) seconds of forward and of forward+backward of a dense model on the
    bounding box, or on a crop scaled to the box volume when the box does not fit in
    --dense-max-gib; and how they were measured."""
    # activations kept for backward ~ (sum of channels over layers) x volume; peak_channels
    # is a rough count of float32 values per voxel that forward+backward holds at once.
    need = 4 * peak_channels * batch * float(np.prod(box)) / 2**30
    if need <= args.dense_max_gib:
        shape, scale, how = box, 1.0, f"bounding box {box} ({need:.1f} GiB est.)"
    else:
        c = args.dense_crop
        shape = [c, c, c]
        scale = float(np.prod(box)) / c**3
        how = (
            f"extrapolated x{scale:.0f} from a {c}^3 crop (box {box} needs ~{need:.0f} GiB "
            f"> --dense-max-gib {args.dense_max_gib})"
        )
    model = make().to(device).eval()
    x = torch.randn(batch, c_in, *shape, device=device)
    with torch.no_grad():
        t_fwd = timed(lambda: model(x), device, args.repeats)
    model.train()
    xg = x.clone().requires_grad_()

    def fwd_bwd() -> None:
        model(xg).square().mean().backward()

    t_fb = timed(fwd_bwd, device, args.repeats)
    cells = batch * float(np.prod(shape))
    how += f"; dense cells/s fwd {cells / t_fwd[0]:.2e}, fwd+bwd {cells / t_fb[0]:.2e}"
    return (t_fwd[0] * scale, t_fwd[1] * scale), (t_fb[0] * scale, t_fb[1] * scale), how


def spconv_unet(spconv, in_channels: int, out_channels: int, widths: list[int]) -> nn.Module:  # noqa: ANN001
    """The same U-Net as SparseUNet in spconv's layers (same blocks, kernels, strides)."""

    def blk(c_in: int, c_out: int, key: str) -> nn.Module:
        return spconv.SparseSequential(
            spconv.SubMConv3d(c_in, c_out, 3, bias=False, indice_key=key),
            nn.BatchNorm1d(c_out),
            nn.ReLU(),
        )

    class SpconvUNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            w = widths
            self.stem = spconv.SparseSequential(blk(in_channels, w[0], "s0"), blk(w[0], w[0], "s0"))
            self.down = nn.ModuleList(
                spconv.SparseSequential(
                    spconv.SparseConv3d(
                        w[i - 1], w[i], 2, stride=2, bias=False, indice_key=f"d{i}"
                    ),
                    nn.BatchNorm1d(w[i]),
                    nn.ReLU(),
                    blk(w[i], w[i], f"s{i}"),
                    blk(w[i], w[i], f"s{i}"),
                )
                for i in range(1, len(w))
            )
            self.up = nn.ModuleList(
                spconv.SparseSequential(
                    spconv.SparseInverseConv3d(w[i], w[i - 1], 2, bias=False, indice_key=f"d{i}"),
                    nn.BatchNorm1d(w[i - 1]),
                    nn.ReLU(),
                )
                for i in range(1, len(w))
            )
            self.merge = nn.ModuleList(
                spconv.SparseSequential(
                    blk(2 * w[i - 1], w[i - 1], f"s{i - 1}"), blk(w[i - 1], w[i - 1], f"s{i - 1}")
                )
                for i in range(1, len(w))
            )
            self.head = spconv.SubMConv3d(w[0], out_channels, 1, indice_key="h")

        def forward(self, x):  # noqa: ANN001, ANN202
            skips = [self.stem(x)]
            for down in self.down:
                skips.append(down(skips[-1]))
            y = skips.pop()
            for up, merge in zip(reversed(self.up), reversed(self.merge), strict=True):
                u, s = up(y), skips.pop()  # inverse conv restores the skip's indices, in order
                y = merge(u.replace_feature(torch.cat([u.features, s.features], 1)))
            return self.head(y)

    return SpconvUNet()


def spconv_timings(
    spconv,  # noqa: ANN001
    coords: torch.Tensor,
    charge: torch.Tensor,
    widths: list[int],
    args: argparse.Namespace,
    device: torch.device,
    report: Callable[..., None],
    results: dict,
) -> None:
    """spconv on the same batch: (a) one SubMConv3d 32->32, (b) the same U-Net; forward on
    any device, forward+backward only on CUDA (spconv's backward needs CUDA streams)."""
    n = len(coords)
    shape = [args.grid] * 3
    idx = coords.to(torch.int32).contiguous()
    c = args.channels

    def tensor(f: torch.Tensor):  # noqa: ANN202
        return spconv.SparseConvTensor(f, idx, shape, args.events)

    conv = spconv.SubMConv3d(c, c, 3, indice_key="a").to(device)
    feats = torch.randn(n, c, device=device)
    x = tensor(feats)
    with torch.no_grad():
        conv(x)  # builds and caches the map in x.indice_dict
        report("(a) spconv subm forward (cached map)", timed(lambda: conv(x), device, args.repeats))
    if device.type == "cuda":
        xf = tensor(feats.clone().requires_grad_())
        conv(xf)

        def fb() -> None:
            conv(xf).features.square().mean().backward()

        report("(a) spconv subm forward+backward (cached map)", timed(fb, device, args.repeats))
    unet = spconv_unet(spconv, 1, 5, widths).to(device)
    unet.eval()
    with torch.no_grad():
        report(
            "(b) spconv U-Net forward (eval, incl. maps)",
            timed(lambda: unet(tensor(charge)), device, args.repeats),
        )
    if device.type == "cuda":
        unet.train()

        def unet_fb() -> None:
            unet(tensor(charge)).features.square().mean().backward()

        report(
            "(b) spconv U-Net forward+backward (train, incl. maps)",
            timed(unet_fb, device, args.repeats),
        )
    for ours, theirs in [
        ("(a) subm forward (cached map)", "(a) spconv subm forward (cached map)"),
        ("(a) subm forward+backward (cached map)", "(a) spconv subm forward+backward (cached map)"),
        ("(b) U-Net forward (eval, incl. maps)", "(b) spconv U-Net forward (eval, incl. maps)"),
        (
            "(b) U-Net forward+backward (train, incl. maps)",
            "(b) spconv U-Net forward+backward (train, incl. maps)",
        ),
    ]:
        if ours in results and theirs in results:
            r = results[ours]["s"] / results[theirs]["s"]
            print(f"time ratio ours/spconv {ours[4:]:40s} {r:6.2f} (target <= 1.5)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--events", type=int, default=4)
    ap.add_argument("--voxels", type=int, default=5000, help="active voxels per event")
    ap.add_argument("--grid", type=int, default=768)
    ap.add_argument("--channels", type=int, default=32, help="(a): C_in = C_out")
    ap.add_argument("--widths", default="16,32,64", help="(b): U-Net widths per level")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--dense-max-gib", type=float, default=4.0)
    ap.add_argument("--dense-crop", type=int, default=64, help="crop side (multiple of 4)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    widths = [int(w) for w in args.widths.split(",")]
    torch.manual_seed(args.seed)

    rng = np.random.default_rng(args.seed)
    events = [lartpc_event(rng, args.voxels, args.grid) for _ in range(args.events)]
    coords = collate_coords([torch.from_numpy(e) for e in events]).to(device)
    n = len(coords)
    extent = np.array([e.max(0) - e.min(0) + 1 for e in events])
    box = [int(v) for v in extent.max(0)]
    info = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "events": args.events,
        "voxels": n,
        "grid": args.grid,
        "bounding_box": box,
        "occupancy_of_box": n / (args.events * float(np.prod(box))),
    }
    print(json.dumps(info))
    results: dict[str, dict[str, float | str]] = {}

    def report(name: str, t: tuple[float, float], extra: str = "") -> None:
        seconds, fastest = t
        results[name] = {"s": seconds, "min_s": fastest, "voxels_per_s": n / seconds, "note": extra}
        print(
            f"{name:46s} {seconds * 1e3:10.1f} ms (min {fastest * 1e3:9.1f})"
            f"  {n / seconds:9.3e} voxels/s  {extra}"
        )

    # (a) one submanifold conv 32 -> 32 -----------------------------------------------------
    c = args.channels
    conv = SubmanifoldConv3d(c, c).to(device)
    feats = torch.randn(n, c, device=device)

    def build() -> SparseTensor:
        x = SparseTensor.from_batch(coords, feats)
        x.cache.submanifold(1, 3)
        return x

    x = build()
    pairs = sum(x.cache.submanifold(1, 3).counts) + n
    print(f"(a) kernel map: {pairs} pairs, {pairs / n:.2f} per voxel (of 27)")
    report("(a) subm 3^3 map build (from_batch + map)", timed(build, device, args.repeats))
    xf = x.replace(feats.clone().requires_grad_())
    with torch.no_grad():
        t_fwd = timed(lambda: conv(x), device, args.repeats)
    report("(a) subm forward (cached map)", t_fwd)
    t_fb = timed(lambda: conv(xf).features.square().mean().backward(), device, args.repeats)
    report("(a) subm forward+backward (cached map)", t_fb)
    d_fwd, d_fb, how = dense_timings(
        lambda: nn.Conv3d(c, c, 3, padding=1), c, box, args.events, 3 * c, args, device
    )
    report("(a) dense conv3d forward", d_fwd, how)
    report("(a) dense conv3d forward+backward", d_fb, how)
    print(
        f"(a) speed-up vs dense: forward x{d_fwd[0] / t_fwd[0]:.0f}, forward+backward "
        f"x{d_fb[0] / t_fb[0]:.0f} (medians)"
    )

    # (b) 3-level U-Net, maps built for every batch -----------------------------------------
    unet = SparseUNet(1, 5, widths).to(device)
    charge = torch.rand(n, 1, device=device)

    def unet_maps() -> None:
        x = SparseTensor.from_batch(coords, charge)
        for level in range(len(widths)):
            s = 2**level
            x.cache.submanifold(s, 3)
            if level + 1 < len(widths):
                x.cache.downsample(s, 2)
        x.cache.submanifold(1, 1)

    report("(b) U-Net kernel maps only", timed(unet_maps, device, args.repeats))
    unet.eval()
    with torch.no_grad():
        t_fwd = timed(lambda: unet(SparseTensor.from_batch(coords, charge)), device, args.repeats)
    report("(b) U-Net forward (eval, incl. maps)", t_fwd)
    unet.train()

    def unet_fb() -> None:
        unet(SparseTensor.from_batch(coords, charge)).features.square().mean().backward()

    t_fb = timed(unet_fb, device, args.repeats)
    report("(b) U-Net forward+backward (train, incl. maps)", t_fb)
    peak = 4 * sum(widths) * 2 + 8  # activations of every block, both ways
    m = 2 ** (len(widths) - 1)  # the box must halve evenly at every level
    box_unet = [-(-b // m) * m for b in box]
    d_fwd, d_fb, how = dense_timings(
        lambda: DenseUNet(1, 5, widths), 1, box_unet, args.events, peak, args, device
    )
    report("(b) dense U-Net forward", d_fwd, how)
    report("(b) dense U-Net forward+backward", d_fb, how)
    print(
        f"(b) speed-up vs dense: forward x{d_fwd[0] / t_fwd[0]:.0f}, forward+backward "
        f"x{d_fb[0] / t_fb[0]:.0f} (medians)"
    )

    try:
        import spconv.pytorch as spconv
    except ImportError as err:
        print(f"spconv: not importable ({err}); skipped")
    else:
        spconv_timings(spconv, coords, charge, widths, args, device, report, results)

    if args.json:
        with open(args.json, "w") as f:
            json.dump({"info": info, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
