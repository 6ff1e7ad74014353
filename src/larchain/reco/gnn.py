"""Learned models of the particle-level reconstruction, in plain PyTorch message passing.

* :class:`EdgeScorer`: dense clustering. Scores voxel- or fragment-graph edges ("same
  fragment?") from the two endpoints' features and the edge's own; an MLP on symmetric
  combinations, so the score of an undirected edge cannot depend on which end is listed first.
* :class:`GraphNet`: GrapPA-style (as in SPINE) graph network on the cluster graph. Each
  layer updates every directed edge from ``[h_src, h_dst, e]`` and every node from
  ``[h, mean of incoming edge states, max of incoming edge states]``, with residual
  connections and LayerNorm. Outputs one logit per undirected edge ("same particle?") and any
  number of per-node heads (e.g. particle type and primary flag).

Edges are undirected ``[2, E]`` with ``i < j`` as built by :mod:`larchain.reco.graph`; both
directions share the edge's feature vector. Inputs are standardised by buffers that
``fit_normalisation`` sets from training data, so features in voxels, voxels^2 and
fractions need no hand scaling; the buffers are saved with the ``state_dict``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["EdgeScorer", "GraphNet", "Standardise", "mlp"]


class Standardise(nn.Module):
    """``(x - mean) / std`` with ``mean`` and ``std`` buffers fitted to data by :meth:`fit`.

    Why buffers: the statistics belong to the trained model (saved and moved with it) but
    are not learned by gradient descent. Until fitted, it is the identity.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    @torch.no_grad()
    def fit(self, x: Tensor) -> Standardise:
        """Set ``mean`` and ``std`` (population, floored at 1e-6) from the rows of ``x``."""
        if x.ndim != 2 or x.shape[1] != self.mean.shape[0]:
            raise ValueError(f"expected [N, {self.mean.shape[0]}], got {tuple(x.shape)}")
        if x.shape[0] == 0:
            return self
        x = x.to(self.mean.dtype)
        self.mean.copy_(x.mean(0))
        self.std.copy_(x.std(0, correction=0).clamp_min(1e-6))
        return self

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


def mlp(c_in: int, hidden: int, c_out: int, layers: int = 2) -> nn.Sequential:
    """``layers`` Linear+ReLU blocks of width ``hidden``, then a Linear to ``c_out``."""
    mods: list[nn.Module] = []
    width = c_in
    for _ in range(layers):
        mods += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    mods.append(nn.Linear(width, c_out))
    return nn.Sequential(*mods)


def _rows(h: Tensor, index: Tensor) -> Tensor:
    """``h[index]`` for an index vector, through ``index_select``. Why: the backward of
    ``h[index]`` is ``index_put_(accumulate=True)``, which on CPU adds rows in parallel in
    no fixed order, so two trainings with the same seed and two threads gave different
    weights; ``index_select``'s backward (``index_add_``) adds in a fixed order."""
    return h.index_select(0, index)


def _check_edges(x: Tensor, edges: Tensor, e: Tensor) -> None:
    if edges.ndim != 2 or edges.shape[0] != 2:
        raise ValueError(f"edges must be [2, E], got {tuple(edges.shape)}")
    if e.shape[0] != edges.shape[1]:
        raise ValueError(f"e has {e.shape[0]} rows for {edges.shape[1]} edges")
    if edges.numel() and (int(edges.min()) < 0 or int(edges.max()) >= x.shape[0]):
        raise ValueError("edge index out of range")


class EdgeScorer(nn.Module):
    """Edge classifier for dense clustering: logit ``[E]`` from ``x_i + x_j``,
    ``|x_i - x_j|`` and the edge features ``e``.

    Why symmetric combinations: swapping the endpoints of an edge gives bit-identical input,
    so the score is exactly symmetric without averaging two passes.
    """

    def __init__(self, node_in: int, edge_in: int, hidden: int = 32, layers: int = 2) -> None:
        super().__init__()
        self.norm_x = Standardise(node_in)
        self.norm_e = Standardise(edge_in)
        self.net = mlp(2 * node_in + edge_in, hidden, 1, layers)

    def fit_normalisation(self, x: Tensor, e: Tensor) -> None:
        """Fit the input standardisation to training node and edge features."""
        self.norm_x.fit(x)
        self.norm_e.fit(e)

    def forward(self, x: Tensor, edges: Tensor, e: Tensor) -> Tensor:
        _check_edges(x, edges, e)
        h = self.norm_x(x)
        hi, hj = _rows(h, edges[0]), _rows(h, edges[1])
        z = torch.cat([hi + hj, (hi - hj).abs(), self.norm_e(e)], 1)
        return self.net(z).squeeze(1)


class _Layer(nn.Module):
    """One message-passing step on directed edges (see :class:`GraphNet`)."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.edge = mlp(3 * hidden, hidden, hidden, 1)
        self.node = mlp(3 * hidden, hidden, hidden, 1)
        self.edge_norm = nn.LayerNorm(hidden)
        self.node_norm = nn.LayerNorm(hidden)

    def forward(self, h: Tensor, m: Tensor, src: Tensor, dst: Tensor) -> tuple[Tensor, Tensor]:
        m = self.edge_norm(m + self.edge(torch.cat([_rows(h, src), _rows(h, dst), m], 1)))
        n, width = h.shape
        total = h.new_zeros(n, width).index_add_(0, dst, m)
        degree = h.new_zeros(n).index_add_(0, dst, torch.ones_like(dst, dtype=h.dtype))
        mean = total / degree.clamp_min(1)[:, None]
        # include_self=False: nodes without incoming edges keep the zeros
        biggest = h.new_zeros(n, width).scatter_reduce(
            0, dst[:, None].expand(-1, width), m, "amax", include_self=False
        )
        h = self.node_norm(h + self.node(torch.cat([h, mean, biggest], 1)))
        return h, m


class GraphNet(nn.Module):
    """GrapPA-style node and edge classifier on undirected graphs.

    Args:
        node_in, edge_in: input feature widths.
        hidden: width of node and edge states.
        layers: message-passing steps (a node sees ``layers`` hops).
        node_out: class counts of the per-node heads, e.g. ``(5, 2)`` for particle type and
            primary flag.

    ``forward(x, edges, e)`` returns the edge logits ``[E]`` (mean of the two directions'
    logits, so exactly symmetric) and a list of ``[N, k]`` logits, one per ``node_out``.
    Node order does not matter: permuting nodes (and relabelling ``edges``) permutes the
    node outputs and leaves the edge logits unchanged, up to float summation order.
    """

    def __init__(
        self,
        node_in: int,
        edge_in: int,
        hidden: int = 64,
        layers: int = 3,
        node_out: Sequence[int] = (),
    ) -> None:
        super().__init__()
        self.norm_x = Standardise(node_in)
        self.norm_e = Standardise(edge_in)
        self.encode_x = nn.Sequential(nn.Linear(node_in, hidden), nn.LayerNorm(hidden))
        self.encode_e = nn.Sequential(nn.Linear(edge_in, hidden), nn.LayerNorm(hidden))
        self.layers = nn.ModuleList(_Layer(hidden) for _ in range(layers))
        self.edge_head = mlp(3 * hidden, hidden, 1, 1)
        self.node_heads = nn.ModuleList(mlp(hidden, hidden, k, 1) for k in node_out)

    def fit_normalisation(self, x: Tensor, e: Tensor) -> None:
        """Fit the input standardisation to training node and edge features."""
        self.norm_x.fit(x)
        self.norm_e.fit(e)

    def forward(self, x: Tensor, edges: Tensor, e: Tensor) -> tuple[Tensor, list[Tensor]]:
        _check_edges(x, edges, e)
        n_edges = edges.shape[1]
        src = torch.cat([edges[0], edges[1]])
        dst = torch.cat([edges[1], edges[0]])
        h = self.encode_x(self.norm_x(x))
        m = self.encode_e(self.norm_e(e)).repeat(2, 1)
        for layer in self.layers:
            h, m = layer(h, m, src, dst)
        logit = self.edge_head(torch.cat([_rows(h, src), _rows(h, dst), m], 1)).squeeze(1)
        edge_logit = 0.5 * (logit[:n_edges] + logit[n_edges:])
        return edge_logit, [head(h) for head in self.node_heads]
