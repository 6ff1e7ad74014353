"""UResNet + PPN (larchain.reco.uresnet): shapes, order and batch invariance, parameter counts
in closed form, hand-made cases for the PPN targets / loss / point prediction and the class
weights, and a small network that must learn to segment and find points on held-out scenes.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from larchain.reco.sparse import SparseTensor, collate_coords
from larchain.reco.uresnet import (
    SHOWER_START,
    TRACK_END,
    ResidualBlock,
    UResNet,
    class_weights,
    n_parameters,
    ppn_loss,
    ppn_targets,
    predict_points,
    segmentation_loss,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.one_thread


def random_events(size: int, occupancy: float, seed: int, batch: int = 2) -> torch.Tensor:
    """Active sites ``[N, 4]`` of ``batch`` random events, in shuffled order."""
    g = torch.Generator().manual_seed(seed)
    coords = (torch.rand(batch, size, size, size, generator=g) < occupancy).nonzero()
    return coords[torch.randperm(len(coords), generator=g)]


# --------------------------------------------------------------------------------------------
# 1. Outputs: shapes, dtypes, gradients, row-order and batch invariance
# --------------------------------------------------------------------------------------------

OUTPUT_SHAPES = {
    "segmentation": (5,),
    "features": (16,),
    "point_score": (),
    "point_offset": (3,),
    "point_type": (2,),
}


def test_output_shapes_dtypes_and_gradients():
    torch.manual_seed(0)
    coords = random_events(12, 0.08, seed=1)
    x = SparseTensor.from_batch(coords, torch.rand(len(coords), 1))
    net = UResNet()  # defaults: 1 input channel, 5 classes, 16 filters, depth 3, 2 reps
    out = net(x)
    n = len(coords)
    assert set(out) == {*OUTPUT_SHAPES, "coords"}
    for key, shape in OUTPUT_SHAPES.items():
        assert out[key].shape == (n, *shape), key
        assert out[key].dtype == torch.float32, key
        assert bool(out[key].isfinite().all()), key
    assert torch.equal(out["coords"], x.coords)
    assert set(x.coords[:, 0].tolist()) == {0, 1}

    # every parameter takes part in the losses
    labels = torch.randint(0, 5, (n,))
    points = torch.tensor([[0, 3.2, 4.0, 5.5, 0], [1, 6.0, 6.0, 6.0, 1]])
    targets = ppn_targets(x.coords, points)
    assert 0 < int(targets["positive"].sum()) < n
    loss = segmentation_loss(out["segmentation"], labels) + ppn_loss(out, targets)[0]
    loss.backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and bool(p.grad.isfinite().all()), name
        assert float(p.grad.abs().sum()) > 0, name


def test_outputs_do_not_depend_on_row_order_or_other_events():
    torch.manual_seed(0)
    coords = random_events(12, 0.1, seed=2)
    feats = torch.rand(len(coords), 1)
    net = UResNet(filters=8, depth=3, reps=1)
    with torch.no_grad():  # give batch norm non-trivial running statistics, then freeze
        for _ in range(3):
            net(SparseTensor.from_batch(coords, feats))
    net.eval()
    perm = torch.randperm(len(coords), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        xa = SparseTensor.from_batch(coords, feats)
        xb = SparseTensor.from_batch(coords[perm], feats[perm])
        a, b = net(xa), net(xb)
        assert torch.equal(a["coords"], b["coords"])
        for key in OUTPUT_SHAPES:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)
            # and back in each input's order, row i of b is input row perm[i] of a
            a_in = xa.to_input_order(a[key])
            b_in = xb.to_input_order(b[key])
            torch.testing.assert_close(a_in[perm], b_in, rtol=0, atol=1e-6)

        # event 0 alone gives the same outputs as event 0 inside the batch
        alone = coords[:, 0] == 0
        xc = SparseTensor.from_batch(coords[alone], feats[alone])
        c = net(xc)
        in_batch = a["coords"][:, 0] == 0
        assert torch.equal(c["coords"], a["coords"][in_batch])
        for key in OUTPUT_SHAPES:
            torch.testing.assert_close(c[key], a[key][in_batch], rtol=0, atol=1e-5)


# --------------------------------------------------------------------------------------------
# 2. Parameter counts in closed form
# --------------------------------------------------------------------------------------------


def block_params(c_in: int, c_out: int) -> int:
    """Two bias-free 3^3 convs, two batch norms (weight + bias), 1x1 projection if needed."""
    return (
        27 * c_in * c_out + 27 * c_out * c_out + 4 * c_out + (c_in * c_out if c_in != c_out else 0)
    )


def uresnet_params(c_in: int, classes: int, f: int, depth: int, reps: int) -> int:
    """The architecture written out: stem, levels, down / up, decoder, heads."""
    planes = [f * (level + 1) for level in range(depth)]
    n = 27 * c_in * f + 2 * f  # stem conv + BN
    n += sum(reps * block_params(c, c) for c in planes)  # encoder
    for lo, hi in zip(planes[:-1], planes[1:], strict=True):
        n += 8 * lo * hi + 2 * hi  # strided conv 2^3 + BN
        n += 8 * hi * lo + 2 * lo  # transposed conv 2^3 + BN
        n += block_params(2 * lo, lo) + (reps - 1) * block_params(lo, lo)  # decoder
    n += f * classes + classes  # segmentation head
    n += 27 * f * f + 2 * f + f * (1 + 3 + 2) + (1 + 3 + 2)  # PPN block + three heads
    return n


def test_parameter_counts():
    assert n_parameters(ResidualBlock(8, 8)) == 54 * 8 * 8 + 4 * 8 == 3488
    assert n_parameters(ResidualBlock(16, 8)) == 27 * 16 * 8 + 27 * 64 + 32 + 16 * 8
    for cfg in [(1, 5, 16, 3, 2), (1, 5, 8, 1, 1), (2, 3, 4, 4, 3), (1, 5, 32, 5, 2)]:
        assert n_parameters(UResNet(*cfg)) == uresnet_params(*cfg), cfg

    def count(**kw: int) -> int:
        return n_parameters(UResNet(**{"filters": 8, "depth": 3, "reps": 2, **kw}))

    # one more rep adds one block per encoder level and per decoder level
    planes = [8, 16, 24]
    added = sum(block_params(c, c) for c in planes) + sum(block_params(c, c) for c in planes[:2])
    assert count(reps=3) - count(reps=2) == added
    assert count(filters=16) > count() and count(depth=4) > count() and count(reps=3) > count()
    # frozen parameters do not count
    net = UResNet(filters=4, depth=2, reps=1)
    total = n_parameters(net)
    net.segmentation.weight.requires_grad_(False)
    assert n_parameters(net) == total - 4 * 5


def test_bad_arguments_raise():
    for kw in ({"filters": 0}, {"depth": 0}, {"reps": 0}, {"num_classes": 1.5}):
        with pytest.raises(ValueError, match="positive int"):
            UResNet(**kw)
    with pytest.raises(ValueError, match="points must have shape"):
        ppn_targets(torch.zeros(1, 4, dtype=torch.long), torch.zeros(2, 4))


# --------------------------------------------------------------------------------------------
# 3. PPN targets, loss and point prediction on hand-made cases
# --------------------------------------------------------------------------------------------


def test_ppn_targets_hand_made():
    coords = torch.tensor(
        [
            [0, 5, 5, 5],  # centre (5.5, 5.5, 5.5) = point A: offset 0
            [0, 7, 5, 5],  # 2 from A, 3 from B: A
            [0, 9, 5, 5],  # 4 from A, 1 from B: B
            [0, 5, 5, 8],  # exactly 3 from A: positive (radius inclusive)
            [0, 5, 9, 5],  # 4 from A: negative
            [0, 1, 1, 1],  # next to C, but C is in event 1: negative
            [1, 1, 1, 1],  # event 1, 0.3 from C
            [1, 5, 5, 5],  # event 1: A and B are in event 0; > 3 from C: negative
            [2, 5, 5, 5],  # event 2 has no points
        ]
    )
    points = torch.tensor(
        [
            [1, 1.2, 1.5, 1.5, SHOWER_START],  # C
            [0, 5.5, 5.5, 5.5, TRACK_END],  # A
            [0, 10.5, 5.5, 5.5, SHOWER_START],  # B
        ]
    )
    t = ppn_targets(coords, points, radius=3.0)
    assert t["positive"].tolist() == [True, True, True, True, False, False, True, False, False]
    expected_offset = torch.tensor(
        [
            [0.0, 0.0, 0.0],
            [-2.0, 0.0, 0.0],
            [1.0, 0.0, 0.0],
            [0.0, 0.0, -3.0],
            [0.0, 0.0, 0.0],
            [0.0, 0.0, 0.0],
            [-0.3, 0.0, 0.0],
            [0.0, 0.0, 0.0],
            [0.0, 0.0, 0.0],
        ]
    )
    torch.testing.assert_close(t["offset"], expected_offset)
    assert t["type"].tolist() == [0, 0, 1, 0, -1, -1, 1, -1, -1]
    expected_distance = [0, 2, 1, 3, 4, math.sqrt(3 * 4**2), 0.3, math.sqrt(4.3**2 + 2 * 4**2)]
    torch.testing.assert_close(t["distance"][:8], torch.tensor(expected_distance))
    assert math.isinf(float(t["distance"][8]))

    # rows follow the coords (any order), a smaller radius drops the far ones, chunks agree
    perm = torch.tensor([8, 3, 0, 6, 1, 7, 2, 5, 4])
    tp = ppn_targets(coords[perm], points, radius=3.0, chunk=2)
    for key in t:
        torch.testing.assert_close(tp[key], t[key][perm])
    assert ppn_targets(coords, points, radius=1.5)["positive"].tolist() == [
        True, False, True, False, False, False, True, False, False
    ]  # fmt: skip


def sigmoid(v: float) -> float:
    return 1 / (1 + math.exp(-v))


def test_ppn_loss_hand_made():
    score = torch.tensor([2.0, -1.0, 0.5, -3.0], requires_grad=True)
    offset = torch.tensor([[0.2, 0, 0], [3, 0, 0], [0, -2.0, 0], [9, 9, 9]], requires_grad=True)
    ptype = torch.tensor([[1.0, 0.0], [0, 0], [0.0, 2.0], [5, 5]], requires_grad=True)
    outputs = {"point_score": score, "point_offset": offset, "point_type": ptype}
    targets = {
        "positive": torch.tensor([True, False, True, False]),
        "offset": torch.tensor([[0.0, 0, 0], [0, 0, 0], [0, 0.5, 0], [0, 0, 0]]),
        "type": torch.tensor([0, -1, 1, -1]),
    }
    total, parts = ppn_loss(outputs, targets)
    # pos_weight = n_neg / n_pos = 1 here: plain BCE
    bce = -(math.log(sigmoid(2.0)) + math.log(1 - sigmoid(-1.0)))
    bce -= math.log(sigmoid(0.5)) + math.log(1 - sigmoid(-3.0))
    assert parts["score"].item() == pytest.approx(bce / 4, rel=1e-6)
    # smooth-L1 (beta 1): 0.5 * 0.2^2 for the first, |2.5| - 0.5 for the second
    assert parts["offset"].item() == pytest.approx((0.02 + 2.0) / 2, rel=1e-6)
    ce = (math.log(1 + math.exp(-1)) + math.log(1 + math.exp(-2))) / 2
    assert parts["type"].item() == pytest.approx(ce, rel=1e-6)
    assert total.item() == pytest.approx(sum(p.item() for p in parts.values()), rel=1e-6)

    # one positive in four: pos_weight = 3
    targets["positive"] = torch.tensor([True, False, False, False])
    targets["type"] = torch.tensor([0, -1, -1, -1])
    _, parts = ppn_loss(outputs, targets)
    manual = F.binary_cross_entropy_with_logits(
        score, torch.tensor([1.0, 0, 0, 0]), pos_weight=torch.tensor(3.0)
    )
    assert parts["score"].item() == pytest.approx(manual.item(), rel=1e-6)

    # no positives: offset and type terms are zero but keep the graph
    targets["positive"] = torch.zeros(4, dtype=torch.bool)
    total, parts = ppn_loss(outputs, targets)
    assert parts["offset"].item() == 0 and parts["type"].item() == 0
    total.backward()
    assert offset.grad is not None and float(offset.grad.abs().sum()) == 0


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def test_predict_points_nms_hand_made():
    rows = [  # (b, x, y, z), score, offset, type logits
        ((0, 0, 0, 0), 0.9, (0.0, 0.0, 0.0), (2.0, 0.0)),  # P1 at (0.5, 0.5, 0.5): kept
        ((0, 1, 0, 0), 0.8, (0.0, 0.0, 0.0), (2.0, 0.0)),  # 1.0 from P1: suppressed
        ((0, 3, 0, 0), 0.7, (-1.5, 0.0, 0.0), (2.0, 0.0)),  # at (2.0, .5, .5): 1.5 from P1
        ((0, 3, 5, 0), 0.6, (0.0, 0.0, 0.0), (0.0, 2.0)),  # (3.5, 5.5, .5), type 1
        ((0, 3, 1, 0), 0.7, (0.0, 2.1, 0.0), (0.0, 2.0)),  # (3.5, 3.6, .5): 1.9 from the 0.6 one
        ((0, 9, 9, 9), 0.4, (0.0, 0.0, 0.0), (2.0, 0.0)),  # below threshold
        ((0, 6, 0, 0), 0.85, (0.0, 0.0, 0.0), (2.0, 0.0)),  # (6.5, .5, .5): kept
        ((0, 8, 0, 0), 0.8, (0.0, 0.0, 0.0), (2.0, 0.0)),  # 2.0 from it: within, suppressed
        ((0, 10, 0, 0), 0.75, (0.0, 0.0, 0.0), (2.0, 0.0)),  # 2.0 from the suppressed one only
        ((1, 0, 0, 0), 0.55, (0.0, 0.0, 0.0), (0.0, 2.0)),  # same place as P1, other event
    ]
    coords = torch.tensor([r[0] for r in rows])
    outputs = {
        "point_score": torch.tensor([logit(r[1]) for r in rows]),
        "point_offset": torch.tensor([r[2] for r in rows]),
        "point_type": torch.tensor([r[3] for r in rows]),
    }
    pts = predict_points(coords, outputs, score_threshold=0.5, nms_radius=2.0)
    expected = torch.tensor(
        [  # event 0 by decreasing score, then event 1
            [0, 0.5, 0.5, 0.5, 0, 0.9],
            [0, 6.5, 0.5, 0.5, 0, 0.85],
            [0, 10.5, 0.5, 0.5, 0, 0.75],  # greedy: its only neighbour within 2 was dropped
            [0, 3.5, 3.6, 0.5, 1, 0.7],  # (and the 0.6 proposal 1.9 from it is dropped)
            [1, 0.5, 0.5, 0.5, 1, 0.55],
        ]
    )
    torch.testing.assert_close(pts, expected)

    # a radius of 1 only drops the proposal 1.0 from P1; threshold 0.95 keeps nothing
    pts = predict_points(coords, outputs, score_threshold=0.5, nms_radius=1.0)
    assert len(pts) == 9 - 1
    assert predict_points(coords, outputs, score_threshold=0.95).shape == (0, 6)


# --------------------------------------------------------------------------------------------
# 4. Class weights and segmentation loss
# --------------------------------------------------------------------------------------------


def test_class_weights_closed_form_and_weighted_loss():
    counts = [8, 2, 0, 32]  # class 2 absent; plus two ignored voxels
    labels = torch.cat(
        [torch.full((c,), k) for k, c in enumerate(counts)] + [torch.tensor([-1, -1])]
    )
    labels = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))]
    w = class_weights(labels, 4)
    raw = [1 / math.sqrt(8), 1 / math.sqrt(2), 1 / math.sqrt(32)]  # ~ 1/sqrt(frequency)
    mean = sum(raw) / 3
    expected = torch.tensor([raw[0] / mean, raw[1] / mean, 0.0, raw[2] / mean])
    torch.testing.assert_close(w, expected)
    assert w.dtype == torch.float32
    assert float(w[[0, 1, 3]].mean()) == pytest.approx(1.0)
    assert w[1] / w[3] == pytest.approx(4.0)  # 16x rarer -> 4x the weight
    torch.testing.assert_close(
        class_weights(torch.zeros(5, dtype=torch.long), 3), torch.tensor([1.0, 0, 0])
    )
    # reco.class_weight_power: 1 is plain inverse frequency, 0 no weighting
    assert class_weights(labels, 4, power=1.0)[1] / class_weights(labels, 4, power=1.0)[3] == (
        pytest.approx(16.0))
    torch.testing.assert_close(class_weights(labels, 4, power=0.0),
                               torch.tensor([1.0, 1.0, 0.0, 1.0]))

    logits = torch.randn(len(labels), 4, generator=torch.Generator().manual_seed(1))
    loss = segmentation_loss(logits, labels, w)
    keep = labels >= 0
    nll = -torch.log_softmax(logits[keep], 1)[torch.arange(int(keep.sum())), labels[keep]]
    wy = w[labels[keep]]
    assert loss.item() == pytest.approx(float((wy * nll).sum() / wy.sum()), rel=1e-6)
    assert segmentation_loss(logits, labels).item() == pytest.approx(float(nll.mean()), rel=1e-6)


# --------------------------------------------------------------------------------------------
# 5. Learning: tracks vs showers and their points, on held-out scenes
# --------------------------------------------------------------------------------------------

SIZE = 20
SHOWER, TRACK = 0, 1


def _track(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A straight segment 7-12 voxels long inside the grid; its voxels and end points."""
    while True:
        p0 = rng.uniform(2, SIZE - 2, 3)
        d = rng.normal(size=3)
        p1 = p0 + rng.uniform(7, 12) * d / np.linalg.norm(d)
        if ((p1 > 1.5) & (p1 < SIZE - 1.5)).all():
            t = np.linspace(0, 1, 100)[:, None]
            return np.unique(np.floor(p0 + t * (p1 - p0)).astype(int), axis=0), p0, p1


def scenes(n_events: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Events of one shower and two tracks: coords ``[N, 4]``, labels ``[N]``, points
    ``[P, 5]``. A shower fans out from its start (type-1 point) in five branches whose scatter
    grows with the distance: narrow at the start, wide at the far end. Tracks (ends: type-0
    points) keep >= 3 voxels from everything placed before, so that every label is decidable.
    """
    rng = np.random.default_rng(seed)
    coords, labels, points = [], [], []
    for b in range(n_events):
        start = rng.uniform(4, SIZE - 4, 3)
        axis = rng.normal(size=3)
        axis /= np.linalg.norm(axis)
        samples = []
        for _ in range(5):
            d = axis + 0.5 * rng.normal(size=3)
            d /= np.linalg.norm(d)
            t = rng.uniform(0, 1, (40, 1)) ** 0.7 * rng.uniform(5, 9)
            samples.append(start + t * d + rng.normal(size=(40, 3)) * 0.12 * t)
        shower = np.unique(np.floor(np.clip(np.concatenate(samples), 0, SIZE - 1e-3)), axis=0)
        voxels = {tuple(v): SHOWER for v in shower.astype(int)}
        pts = [(b, *start, SHOWER_START)]
        for _ in range(2):
            occupied = np.array(list(voxels))
            for _ in range(400):
                track, p0, p1 = _track(rng)
                if np.abs(track[:, None] - occupied[None]).max(-1).min() >= 3:
                    break
            voxels.update({tuple(v): TRACK for v in track})
            pts += [(b, *p0, TRACK_END), (b, *p1, TRACK_END)]
        sites = sorted(voxels)
        coords.append(torch.tensor(sites))
        labels.append(torch.tensor([voxels[s] for s in sites]))
        points.append(torch.tensor(pts, dtype=torch.float32))
    return collate_coords(coords), torch.cat(labels), torch.cat(points)


def point_matches(pred: torch.Tensor, true: torch.Tensor, within: float = 3.0):
    """Fraction of true points with a prediction of their event within ``within`` voxels,
    how many of those have the nearest prediction's type right, and the fraction of
    predictions within ``within`` of a true point of their event."""
    found = typed = 0
    for p in true:
        q = pred[pred[:, 0] == p[0]]
        if len(q):
            d = (q[:, 1:4] - p[1:4]).norm(dim=1)
            if float(d.min()) <= within:
                found += 1
                typed += int(q[d.argmin(), 4] == p[4])
    near = sum(
        bool(((true[true[:, 0] == q[0], 1:4] - q[1:4]).norm(dim=1) <= within).any()) for q in pred
    )
    return found / len(true), typed / max(found, 1), near / max(len(pred), 1)


def test_uresnet_learns_segmentation_and_points():
    """Fresh random scenes every step (250 steps of 4 events), evaluated on 8 held-out events:
    > 90% voxel accuracy, >= 80% of the true points found within 3 voxels."""
    torch.manual_seed(0)
    steps = 250
    net = UResNet(in_channels=1, num_classes=2, filters=8, depth=3, reps=1)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-2, total_steps=steps, pct_start=0.2)
    for step in range(steps):
        coords, labels, points = scenes(4, seed=1000 + step)
        x = SparseTensor.from_batch(coords, torch.ones(len(coords), 1))
        labels = labels[x.perm]  # the outputs are in the sorted site order
        out = net(x)
        loss = segmentation_loss(out["segmentation"], labels, class_weights(labels, 2))
        loss = loss + ppn_loss(out, ppn_targets(x.coords, points, radius=3.0))[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()

    coords, labels, points = scenes(8, seed=0)  # not among the training seeds
    net.eval()
    with torch.no_grad():
        x = SparseTensor.from_batch(coords, torch.ones(len(coords), 1))
        out = net(x)
    pred = out["segmentation"].argmax(1)
    labels = labels[x.perm]
    acc = float((pred == labels).float().mean())
    acc_class = [float((pred[labels == c] == c).float().mean()) for c in (SHOWER, TRACK)]
    found, typed, near = point_matches(predict_points(x.coords, out), points)
    summary = {"acc": acc, "per_class": acc_class, "found": found, "typed": typed, "near": near}
    assert acc > 0.9 and min(acc_class) > 0.8, summary
    assert found >= 0.8 and typed >= 0.8, summary
    assert near >= 0.5, summary  # most proposals are real points, not noise


def test_augmentation_is_a_grid_symmetry_that_moves_points_with_voxels():
    """Mirrors and axis permutations: labels and features untouched, sites distinct and
    non-negative, pairwise distances kept (an isometry), and a point at a voxel's centre is
    still at the centre of that voxel's image; all 8 mirrors and 6 orders occur."""
    from larchain.reco.data import augment_event

    rng = np.random.default_rng(0)
    coords = np.unique(rng.integers(0, [20, 30, 40], size=(50, 3)), axis=0)
    pick = rng.choice(len(coords), 6, replace=False)
    event = {
        "coords": coords,
        "features": rng.random((len(coords), 1)).astype(np.float32),
        "semantic": rng.integers(0, 5, len(coords)),
        "points": np.c_[coords[pick] + 0.5, rng.integers(0, 2, 6)].astype(np.float64),
    }
    d0 = np.linalg.norm(coords[:, None] - coords[None], axis=2)
    seen = set()
    aug_rng = np.random.default_rng(1)
    for _ in range(400):
        out = augment_event(event, aug_rng)
        c = out["coords"]
        assert c.min() >= 0 and len(np.unique(c, axis=0)) == len(c)
        np.testing.assert_allclose(np.linalg.norm(c[:, None] - c[None], axis=2), d0)
        assert out["semantic"] is event["semantic"] and out["features"] is event["features"]
        np.testing.assert_array_equal(out["points"][:, :3], c[pick] + 0.5)
        np.testing.assert_array_equal(out["points"][:, 3], event["points"][:, 3])
        seen.add(c.tobytes())  # each of the 8 x 6 symmetries gives a different site list
    np.testing.assert_array_equal(event["coords"], coords)  # the input is not modified
    again = augment_event(event, np.random.default_rng(1))
    first = augment_event(event, np.random.default_rng(1))
    np.testing.assert_array_equal(again["coords"], first["coords"])
    assert len(seen) == 48
