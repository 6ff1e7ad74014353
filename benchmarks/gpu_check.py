"""On a GPU: the same physics checks as the CPU tests, quickly (solid angle fraction of a
disk, analog vs NEE agreement), so GPU numbers in BENCHMARKS.md come from code shown to be
right on that device."""

from __future__ import annotations

import math
import sys

import numpy as np
import torch

from larchain.core.geometry import Detector
from larchain.lut.transport import Optics, PhotodetectorSet, simulate


def main() -> int:
    dev = torch.device("cuda")
    det = Detector.from_config(
        {
            "size": [100.0, 100.0, 100.0],
            "photodetectors": [
                {
                    "wall": "z+",
                    "center": [50, 50, 100],
                    "shape": "disk",
                    "radius": 10.16,
                    "efficiency": 1.0,
                }
            ],
        }
    )
    pd = PhotodetectorSet(det, dev, torch.float32, 4)
    h, r = 15.0, 10.16
    truth = (1 - h / math.sqrt(h * h + r * r)) / 2
    o = torch.tensor([[50.0, 50.0, 85.0]], device=dev) - 5e-5
    vs = torch.full((3,), 1e-4, device=dev)
    n = 2_000_000
    ok = True
    for method in ("analog", "nee"):
        t = simulate(o, vs, n, pd, Optics(None, None), method=method, seed=1)
        vis = t.score[0, 0] / n
        pull = (vis - truth) / math.sqrt(truth * (1 - truth) / n)
        good = abs(pull) < 4 if method == "analog" else abs(vis / truth - 1) < 2e-3
        ok &= good
        print(
            f"disk solid angle, {method}: {vis:.6f} vs {truth:.6f} (pull {pull:+.2f}) "
            f"{'ok' if good else 'FAIL'}"
        )
    o = torch.tensor([[10.0, 20.0, 30.0], [60.0, 70.0, 80.0]], device=dev)
    vs = torch.full((3,), 10.0, device=dev)
    kw = dict(reflectivity=0.0, batch_photons=1 << 22)
    ta = simulate(o, vs, 4_000_000, pd, Optics(50.0, 300.0), method="analog", seed=2, **kw)
    tn = simulate(o, vs, 200_000, pd, Optics(50.0, 300.0), method="nee", seed=3, **kw)
    va, vn = ta.score / 4e6, tn.score / 2e5
    ea = np.sqrt((ta.score_sq / 4e6 - va**2) / 4e6)
    en = np.sqrt((tn.score_sq / 2e5 - vn**2) / 2e5)
    pull = (vn - va) / np.hypot(ea, en)
    good = bool(np.abs(pull).max() < 4)
    ok &= good
    print(
        f"analog vs NEE with scattering+absorption, pulls {pull.ravel()} {'ok' if good else 'FAIL'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
