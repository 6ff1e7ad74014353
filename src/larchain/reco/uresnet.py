"""UResNet semantic segmentation with PPN-style point proposals, on sparse voxelised events.

The network follows SPINE's (formerly lartpc_mlreco3d) UResNet: a U-Net whose every level has
``reps`` residual blocks of submanifold 3^3 convolutions, ``filters * (level + 1)`` channels at
``level`` (linear growth keeps the deep levels affordable: a voxel count that shrinks ~4x per
level cannot pay for doubling channels), 2x strided convolutions down, transposed
convolutions up and skip concatenation. Submanifold convolutions keep tracks thin: the active
sites never dilate, so the cost scales with the number of charged voxels, not the volume.

Point proposals (end points of tracks, start points of showers) use the simplest honest
version of SPINE's PPN: per voxel, on the last full-resolution decoder features, a score
("a true point is within ``radius`` voxels of this voxel"), an offset to that point and its
type. SPINE's PPN also scores the coarse levels and masks finer levels with them (an attention
cascade that saves work on large events); here every voxel is scored at stride 1, which is
what the coarse-to-fine cascade approximates, at the price of a little more compute.
Proposals are turned into points by thresholding and greedy non-maximum suppression.

Conventions: voxel ``i`` covers ``[i, i + 1)`` along each axis, so its centre is ``i + 0.5``;
points and offsets are in voxel units. All per-voxel outputs are in the
:class:`~larchain.reco.sparse.SparseTensor`'s sorted site order (``x.coords``); use
``x.to_input_order`` to go back to the order given to ``SparseTensor.from_batch``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from larchain.reco.sparse import (
    SparseBatchNorm,
    SparseConv3d,
    SparseConvTranspose3d,
    SparseReLU,
    SparseTensor,
    SubmanifoldConv3d,
    sparse_cat,
)

__all__ = [
    "IGNORE_LABEL",
    "SHOWER_START",
    "TRACK_END",
    "ResidualBlock",
    "UResNet",
    "class_weights",
    "n_parameters",
    "ppn_loss",
    "ppn_targets",
    "predict_points",
    "segmentation_loss",
]

#: Point types (the last column of the ``points`` rows and the point-type logits).
TRACK_END, SHOWER_START = 0, 1
#: Voxel labels below zero (e.g. this value) are ignored by the segmentation loss and weights.
IGNORE_LABEL = -1


# --------------------------------------------------------------------------------------------
# Network
# --------------------------------------------------------------------------------------------


def _conv_bn_relu(c_in: int, c_out: int, kernel_size: int = 3) -> nn.Sequential:
    return nn.Sequential(
        SubmanifoldConv3d(c_in, c_out, kernel_size, bias=False),
        SparseBatchNorm(c_out),
        SparseReLU(),
    )


class ResidualBlock(nn.Module):
    """``relu(bn(conv(relu(bn(conv(x))))) + skip(x))`` with submanifold 3^3 convolutions.

    ``skip`` is the identity, or a bias-free 1x1x1 projection when the channel count changes
    (as SPINE's ``NetworkInNetwork`` shortcut). Convolutions are bias-free: batch norm follows.
    Parameters: ``27 (C_in C_out + C_out^2) + 4 C_out (+ C_in C_out with the projection)``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.conv1 = SubmanifoldConv3d(in_channels, out_channels, kernel_size, bias=False)
        self.bn1 = SparseBatchNorm(out_channels)
        self.conv2 = SubmanifoldConv3d(out_channels, out_channels, kernel_size, bias=False)
        self.bn2 = SparseBatchNorm(out_channels)
        self.relu = SparseReLU()
        self.project = (
            SubmanifoldConv3d(in_channels, out_channels, 1, bias=False)
            if in_channels != out_channels
            else None
        )

    def forward(self, x: SparseTensor) -> SparseTensor:
        skip = x.features if self.project is None else self.project(x).features
        y = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return y.replace(F.relu(y.features + skip))


class UResNet(nn.Module):
    """Sparse U-Net with residual levels, a segmentation head and per-voxel PPN heads.

    Args:
        in_channels: input features per voxel (e.g. 1: the charge).
        num_classes: semantic classes of the segmentation head.
        filters: channels of the first level; level ``l`` has ``filters * (l + 1)``.
        depth: number of levels (strides 1, 2, ..., 2^(depth - 1)).
        reps: residual blocks per level, on the way down and on the way up.

    ``forward(x)`` returns a dict of per-site tensors, rows in ``x.coords`` order:

    * ``"segmentation"``: class logits ``[N, num_classes]``;
    * ``"features"``: the last decoder features ``[N, filters]``;
    * ``"point_score"``: logit ``[N]`` of "a true point lies within the target radius";
    * ``"point_offset"``: ``[N, 3]`` regressed point position minus voxel centre (voxels);
    * ``"point_type"``: logits ``[N, 2]`` (:data:`TRACK_END`, :data:`SHOWER_START`);
    * ``"coords"``: ``x.coords`` ``[N, 4]``, the sites the rows belong to.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 5,
        filters: int = 16,
        depth: int = 3,
        reps: int = 2,
    ) -> None:
        super().__init__()
        for name, v in (
            ("in_channels", in_channels),
            ("num_classes", num_classes),
            ("filters", filters),
            ("depth", depth),
            ("reps", reps),
        ):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        self.in_channels, self.num_classes = in_channels, num_classes
        self.filters, self.depth, self.reps = filters, depth, reps
        planes = [filters * (level + 1) for level in range(depth)]
        self.planes = planes

        self.stem = _conv_bn_relu(in_channels, planes[0])
        self.encoder = nn.ModuleList(
            nn.Sequential(*(ResidualBlock(c, c) for _ in range(reps))) for c in planes
        )
        self.down = nn.ModuleList(
            nn.Sequential(
                SparseConv3d(planes[i], planes[i + 1], bias=False),
                SparseBatchNorm(planes[i + 1]),
                SparseReLU(),
            )
            for i in range(depth - 1)
        )
        self.up = nn.ModuleList(
            nn.Sequential(
                SparseConvTranspose3d(planes[i + 1], planes[i], bias=False),
                SparseBatchNorm(planes[i]),
                SparseReLU(),
            )
            for i in range(depth - 1)
        )
        # first block of each decoder level takes [upsampled, skip] = 2 * planes[i] channels
        self.decoder = nn.ModuleList(
            nn.Sequential(
                ResidualBlock(2 * planes[i], planes[i]),
                *(ResidualBlock(planes[i], planes[i]) for _ in range(reps - 1)),
            )
            for i in range(depth - 1)
        )
        self.segmentation = nn.Linear(filters, num_classes)
        # PPN: one conv block of its own (end points are a local-shape question the
        # segmentation features need not encode), then three per-voxel linear heads.
        self.ppn = _conv_bn_relu(filters, filters)
        self.point_score = nn.Linear(filters, 1)
        self.point_offset = nn.Linear(filters, 3)
        self.point_type = nn.Linear(filters, 2)

    def forward(self, x: SparseTensor) -> dict[str, Tensor]:
        if not isinstance(x, SparseTensor) or x.stride != 1:
            raise ValueError("x must be a stride-1 SparseTensor (SparseTensor.from_batch)")
        y = self.stem(x)
        skips = []
        for level, blocks in enumerate(self.encoder):
            if level:
                y = self.down[level - 1](y)
            y = blocks(y)
            skips.append(y)
        skips.pop()  # the deepest level has no skip: y is it
        for level in reversed(range(self.depth - 1)):
            y = self.decoder[level](sparse_cat(self.up[level](y), skips.pop()))
        p = self.ppn(y).features
        return {
            "segmentation": self.segmentation(y.features),
            "features": y.features,
            "point_score": self.point_score(p).squeeze(1),
            "point_offset": self.point_offset(p),
            "point_type": self.point_type(p),
            "coords": y.coords,
        }


def n_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# --------------------------------------------------------------------------------------------
# Segmentation loss
# --------------------------------------------------------------------------------------------


def class_weights(labels: Tensor, num_classes: int, power: float = 0.5) -> Tensor:
    """Per-class weights ``~ 1 / frequency**power`` (default ``1/sqrt``), mean 1 over the
    classes present.

    Why the square root: in neutrino events Michel and delta electrons are ~0.1-1% of the
    voxels. Plain inverse frequency would weight them 100-1000x, making their few voxels
    dominate the gradient (noisy steps, over-predicted rare classes); no weighting lets the
    network ignore them. ``1/sqrt`` is the usual compromise. Classes absent from ``labels``
    get weight 0 (they add nothing to the loss anyway); labels outside ``[0, num_classes)``
    (e.g. :data:`IGNORE_LABEL`) are not counted.
    """
    labels = labels.reshape(-1).long()
    valid = (labels >= 0) & (labels < num_classes)
    counts = torch.bincount(labels[valid], minlength=num_classes).double()
    present = counts > 0
    w = torch.zeros(num_classes, dtype=torch.float64, device=labels.device)
    if bool(present.any()):
        w[present] = counts[present].pow(-float(power))  # ~ 1/frequency**power up to a constant
        w[present] /= w[present].mean()
    return w.float()


def segmentation_loss(logits: Tensor, labels: Tensor, weights: Tensor | None = None) -> Tensor:
    """Weighted cross-entropy over the voxels (``sum w_y CE / sum w_y``); labels < 0 ignored."""
    labels = torch.where(labels >= 0, labels.long(), IGNORE_LABEL)
    w = None if weights is None else weights.to(logits.dtype)
    return F.cross_entropy(logits, labels, weight=w, ignore_index=IGNORE_LABEL)


# --------------------------------------------------------------------------------------------
# Point proposals: targets, loss, prediction
# --------------------------------------------------------------------------------------------


def _check_points(points: Tensor) -> Tensor:
    if points.ndim != 2 or points.shape[1] != 5:
        raise ValueError(
            f"points must have shape [P, 5] = (batch, x, y, z, type), got {tuple(points.shape)}"
        )
    return points


def ppn_targets(
    coords: Tensor, points: Tensor, radius: float = 3.0, chunk: int = 32768
) -> dict[str, Tensor]:
    """Per-voxel PPN targets from true points ``[P, 5]`` = (batch, x, y, z, type), voxel units.

    A voxel is positive if a point of its own batch entry lies within ``radius`` (inclusive)
    of its centre ``coord + 0.5``; its offset target is that nearest point minus the centre and
    its type target the nearest point's type. Returns ``"positive"`` bool ``[N]``,
    ``"offset"`` ``[N, 3]`` (0 for negatives), ``"type"`` long ``[N]`` (-1 for negatives) and
    ``"distance"`` ``[N]`` to the nearest point of the event (inf without points). Rows follow
    ``coords``. Distances are exact (no matmul shortcut), one ``cdist`` per batch entry and
    ``chunk`` voxels, so memory stays ``chunk * P``.
    """
    points = _check_points(points)
    coords = coords.long()
    dtype = points.dtype if points.dtype.is_floating_point else torch.float32
    n = coords.shape[0]
    centres = coords[:, 1:].to(dtype) + 0.5
    distance = torch.full((n,), float("inf"), dtype=dtype, device=coords.device)
    nearest = torch.zeros(n, dtype=torch.long, device=coords.device)  # row in `points`
    p_batch = points[:, 0].long()
    for b in torch.unique(p_batch).tolist():
        rows = (coords[:, 0] == b).nonzero().squeeze(1)
        if rows.numel() == 0:
            continue
        prow = (p_batch == b).nonzero().squeeze(1)
        pxyz = points[prow, 1:4].to(dtype)
        for s in range(0, rows.numel(), chunk):
            r = rows[s : s + chunk]
            d = torch.cdist(centres[r], pxyz, compute_mode="donot_use_mm_for_euclid_dist")
            dmin, j = d.min(1)
            distance[r], nearest[r] = dmin, prow[j]
    positive = distance <= radius
    offset = torch.where(positive[:, None], points[nearest, 1:4].to(dtype) - centres, 0.0)
    ptype = torch.where(positive, points[nearest, 4].long(), -1)
    return {"positive": positive, "offset": offset, "type": ptype, "distance": distance}


def ppn_loss(
    outputs: dict[str, Tensor], targets: dict[str, Tensor]
) -> tuple[Tensor, dict[str, Tensor]]:
    """PPN loss = score BCE + offset smooth-L1 + type CE; returns (total, parts).

    * ``"score"``: BCE with logits over all voxels, ``pos_weight = n_neg / n_pos`` so that the
      few voxels near points weigh as much as all the others together.
    * ``"offset"``: smooth-L1 (beta 1 voxel) of the offsets of the positive voxels, summed
      over x, y, z and averaged over positives.
    * ``"type"``: cross-entropy of the point type over the positive voxels.

    Offset and type terms are 0 (with a gradient path) when there are no positives.
    """
    score = outputs["point_score"]
    pos = targets["positive"]
    n_pos = pos.sum()
    n_neg = pos.numel() - n_pos
    pos_weight = (n_neg.clamp(min=1) / n_pos.clamp(min=1)).to(score.dtype)
    l_score = F.binary_cross_entropy_with_logits(score, pos.to(score.dtype), pos_weight=pos_weight)
    if bool(n_pos > 0):
        off = outputs["point_offset"][pos]
        l_offset = F.smooth_l1_loss(off, targets["offset"][pos].to(off.dtype), reduction="none")
        l_offset = l_offset.sum(1).mean()
        l_type = F.cross_entropy(outputs["point_type"][pos], targets["type"][pos])
    else:
        l_offset = outputs["point_offset"].sum() * 0.0
        l_type = outputs["point_type"].sum() * 0.0
    total = l_score + l_offset + l_type
    return total, {"score": l_score, "offset": l_offset, "type": l_type}


@torch.no_grad()
def predict_points(
    coords: Tensor,
    outputs: dict[str, Tensor],
    score_threshold: float = 0.5,
    nms_radius: float = 2.0,
) -> Tensor:
    """Points ``[K, 6]`` = (batch, x, y, z, type, score) from the per-voxel PPN outputs.

    Every voxel with ``sigmoid(score) > score_threshold`` proposes ``centre + offset`` with the
    argmax type. Greedy non-maximum suppression per batch entry: keep the highest-scoring
    proposal, drop every proposal within ``nms_radius`` voxels of it (any type), repeat. Rows
    are ordered by batch entry, then by decreasing score. ``coords`` must be the sites the
    output rows belong to (``outputs["coords"]`` / ``x.coords``).
    """
    prob = torch.sigmoid(outputs["point_score"].float())
    if coords.shape[0] != prob.shape[0]:
        raise ValueError(f"coords has {coords.shape[0]} rows, outputs {prob.shape[0]}")
    keep = prob > score_threshold
    batch = coords[keep, 0].long()
    pos = coords[keep, 1:].float() + 0.5 + outputs["point_offset"][keep].float()
    ptype = outputs["point_type"][keep].argmax(1).float()
    prob = prob[keep]
    rows: list[Tensor] = []
    for b in torch.unique(batch).tolist():
        idx = (batch == b).nonzero().squeeze(1)
        alive = idx[torch.argsort(prob[idx], descending=True, stable=True)]
        while alive.numel():
            top = alive[0]
            rows.append(top)
            alive = alive[(pos[alive] - pos[top]).norm(dim=1) > nms_radius]
    if not rows:
        return prob.new_zeros(0, 6)
    k = torch.stack(rows)
    return torch.cat([batch[k, None].float(), pos[k], ptype[k, None], prob[k, None]], dim=1)
