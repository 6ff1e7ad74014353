"""Reconstruction stages 2-3: voxels -> fragments -> particles -> interactions, with particle ID.

Three learned steps, each trained on the output of the step before, so that it learns from the
mistakes it will see at inference (the GrapPA pattern, in plain PyTorch):

1. **Dense clustering** (:class:`~larchain.reco.gnn.EdgeScorer`): the radius graph of voxels
   of the same *predicted* semantic class (``radius`` voxels; 1.75 links the 26 neighbours),
   or of any class with ``voxel_cross_class`` (the scorer, which sees the class
   probabilities, then decides where a mis-segmented voxel belongs).
   Voxel features: the UResNet's last decoder features, its five class probabilities and
   ``log1p(charge / 1e4)``; edge features ``|dx|, |dy|, |dz|, distance``. An edge is "same
   true fragment". Fragments are the connected components of the edges scored above
   ``edge_threshold``, or above ``track_edge_threshold`` between track voxels: there 98% of
   the edges are "same fragment", so at 0.5 the scorer cut only 17% of the edges
   joining two tracks (a short proton on the muon it leaves), though it ranks them well
   (ROC AUC 0.97). A stricter bar (0.9) also cuts some tracks into pieces, which the fragment
   GNN joins again: with true classes that gains, with the UResNet's classes it loses
   (BENCHMARKS.md), so it is off (``null``) by default. Then (``break_tracks``) track
   fragments are split at kinks and vertices, where the local neighbourhood stops being a line
   (:func:`larchain.reco.baseline.break_tracks`): at 0.5 the scorer alone kept almost every
   edge between touching voxels of one class (its fragments were the same as DBSCAN's on the
   default sample), so tracks that share a vertex would stay one fragment. Last
   (``break_tracks.kink_angle``), track fragments are cut where their spine bends
   (:func:`larchain.reco.baseline.split_kinks`): a particle that ends where another begins
   stays linear in every small neighbourhood.
2. **Fragment -> particle** (:class:`~larchain.reco.gnn.GraphNet`): complete graph of the
   event's fragments; node features :func:`~larchain.reco.graph.cluster_features` (size,
   charge, centroid, covariance, principal axis, start/end points, charge per length overall
   and at the two ends, the other clusters touching each end, charge per length against
   distance from the Bragg end, mean class probabilities),
   edge features :func:`~larchain.reco.graph.edge_features` (closest points, angles). An edge
   is "same true particle"; particles are formed by average-linkage agglomeration on the
   edge scores (groups merge while their mean pair score exceeds ``edge_threshold``).
3. **Particle -> interaction** (GraphNet): complete graph of the particles with the same
   features; an edge is "same true interaction" (grouped the same way); node heads give the
   particle type (photon, electron, muon, pion, proton) and the primary flag. With
   ``interaction_touch`` (voxels) the grouping is done one level up instead: particles whose
   closest voxels are that close are joined first (:func:`larchain.reco.graph.touching`: a
   Michel and the muon it ends, a delta ray and its muon, the tracks of one vertex), and a
   second GraphNet groups these touching groups (same features, computed on the groups'
   voxels; an edge is "same true interaction"), so that it learns only what does not touch
   (a photon shower converting away from its vertex), not that two far-apart delta rays of
   one cosmic muon belong together. With ``interaction_pointing`` the groups' edges also
   carry :func:`larchain.reco.graph.pointing_features` (does one group's axis pass through
   the other; do the two axes meet behind both, as a pi0's photons do). The first network's
   edge scores are then not used (it is still trained on them: they shape the node states
   its type head reads). With ``interaction_linkage: voxels`` interactions are linked by the
   mean score over voxel pairs, not node pairs (the interaction ARI counts voxel pairs too):
   a small particle that scores high with two big groups cannot bridge them. With
   ``pid_by_shape`` the type is chosen among those the particle's predicted semantic class
   allows (:data:`ALLOWED_TYPES`: a shower is a photon or an electron, a track a muon, pion or
   proton, a Michel or delta an electron), in training as in use: left free, the head spent
   its few training examples relearning the class and typed half the delta rays as muons.

Step 2 aggregates the fragments of the ``group_classes`` (default shower and track), and
only fragments of the same predicted class unless ``cross_class``; the other fragments
(default Michel and delta) are particles as they are. With the UResNet's classes the
one-class rule caps the particle ARI (perfect grouping of the chain's fragments: 0.67; across
classes 0.83), but crossing classes costs PID: the delta rays the UResNet calls shower or
track sit in fragments made mostly of their muon's voxels, which then join the muon
(BENCHMARKS.md). The same holds, milder, for ``voxel_cross_class``. Fragments predicted
low-energy (de-excitation photons' Compton electrons) skip steps 2-3: each is its own particle
(photon, not primary), attached to the interaction of the nearest particle.

A cluster's truth (for training) is the label most of its voxels carry.

Per particle, the reconstructed kinematics: start/end points are the extremes along the
principal axis, the start being the one nearer the interaction vertex; the vertex is the
primary particles' end point with the smallest summed distance to the other particles (a
lone particle's start); deposited energy is the collected charge times a constant fitted on
the training events (``MeV_per_electron``: true deposited energy / collected charge, median
over particles); ``energy`` is range-based (CSDA table of the predicted type) for muons, pions
and protons, calorimetric (the deposited energy) otherwise.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial import cKDTree
from tqdm.auto import tqdm

from larchain.core.artifacts import atomic_path
from larchain.reco import baseline as B
from larchain.reco import graph as G
from larchain.reco.gnn import EdgeScorer, GraphNet
from larchain.sim import truth as T
from larchain.sim.stopping import RangeTable

N_TYPES = len(T.PARTICLE_TYPES)
TRACK_TYPES = {2: "muon", 3: "pion", 4: "proton"}  # type index -> CSDA table
VOXEL_EDGE_FEATURES = 4
#: Default of ``group_classes`` (chains saved before it existed): the classes whose fragments
#: the fragment GNN aggregates (as GrapPA: showers; here also the pieces of a track broken at
#: a mis-segmented voxel). Michel and delta fragments are particles as they are.
AGGREGATED = (T.SHOWER, T.TRACK)
#: Classes whose particles the interaction GNN groups and identifies.
GROUPED = (T.SHOWER, T.TRACK, T.MICHEL, T.DELTA)
#: Particle types a cluster of each semantic class can be ``[class, type]`` (``pid_by_shape``):
#: showers are photons or electrons, tracks muons, pions or protons, Michel and delta
#: electrons are electrons, low-energy blobs photons' Compton electrons (typed photon).
ALLOWED_TYPES = torch.zeros(5, N_TYPES, dtype=torch.bool)
for _cls, _types in ((T.SHOWER, (0, 1)), (T.TRACK, (2, 3, 4)), (T.MICHEL, (1,)),
                     (T.DELTA, (1,)), (T.LOW_ENERGY, (0,))):
    ALLOWED_TYPES[_cls, list(_types)] = True


# ------------------------------------------------------------------------------------------
# per-event inputs


@dataclass
class EventInput:
    """One event as the chain sees it: the simulation's voxels plus stage 1's predictions."""

    index: int
    coords: torch.Tensor  # [N, 3] float32, voxel units
    charge: torch.Tensor  # [N] electrons
    prob: torch.Tensor  # [N, 5] semantic class probabilities
    features: torch.Tensor  # [N, F] UResNet decoder features
    truth: dict[str, np.ndarray] | None = None  # per-voxel true labels (training, evaluation)
    particles: dict[str, np.ndarray] | None = None  # true particle table (energy constant)

    @property
    def semantic(self) -> torch.Tensor:
        return self.prob.argmax(1)

    def voxel_features(self) -> torch.Tensor:
        return torch.cat([self.features, self.prob,
                          torch.log1p(self.charge / 1e4)[:, None]], 1)


def event_input(sim_event: Mapping[str, Any], prediction: Mapping[str, Any],
                with_truth: bool = True) -> EventInput:
    """Join a simulated event (:meth:`EventDataset.raw`) and its stage-1 prediction."""
    vox, pred = sim_event["voxels"], prediction["voxels"]
    if "features" not in pred:
        raise KeyError("stage-1 predictions carry no decoder 'features': re-run reco_infer "
                       "with this version of larchain")
    if len(pred["prob"]) != len(vox["coords"]):
        raise ValueError(f"event {sim_event['index']}: {len(pred['prob'])} predicted voxels, "
                         f"{len(vox['coords'])} simulated")
    truth = ({k: np.asarray(vox[k]) for k in ("semantic", "fragment", "particle",
                                               "interaction", "particle_type", "primary")}
             if with_truth else None)
    return EventInput(
        index=int(sim_event["index"]),
        coords=torch.as_tensor(vox["coords"].astype(np.float32)),
        charge=torch.as_tensor(vox["charge"].astype(np.float32)),
        prob=torch.as_tensor(pred["prob"].astype(np.float32)),
        features=torch.as_tensor(pred["features"].astype(np.float32)),
        truth=truth,
        particles=sim_event.get("particles") if with_truth else None,
    )


def majority(cluster: np.ndarray, label: np.ndarray, n_clusters: int) -> np.ndarray:
    """The label most voxels of each cluster carry (ties: the smallest label)."""
    if len(label) == 0:
        return np.zeros(n_clusters, dtype=np.asarray(label).dtype)
    lab, inv = np.unique(label, return_inverse=True)
    counts = np.zeros((n_clusters, len(lab)), np.int64)
    np.add.at(counts, (cluster, inv), 1)
    return lab[counts.argmax(1)]


def _relabel(labels: np.ndarray) -> np.ndarray:
    """Labels 0..K-1 in order of first appearance (deterministic ids)."""
    _, first, inv = np.unique(labels, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))
    return order[inv].astype(np.int64)


# ------------------------------------------------------------------------------------------
# graphs of the three steps


@dataclass
class Graph:
    """One event's graph: node features, undirected edges (i < j), edge features, targets."""

    x: torch.Tensor
    edges: torch.Tensor
    e: torch.Tensor
    edge_target: torch.Tensor | None = None
    node_targets: list[torch.Tensor] = field(default_factory=list)
    node_class: torch.Tensor | None = None  # predicted semantic class per node (interactions)


def voxel_graph(ev: EventInput, radius: float, same_class: bool = True) -> Graph:
    """The radius graph of the event's voxels, between voxels of one predicted class only
    when ``same_class``; an edge's truth is "same true fragment"."""
    edges = G.radius_graph(ev.coords, radius, ev.semantic if same_class else None)
    d = ev.coords[edges[1]] - ev.coords[edges[0]]
    e = torch.cat([d.abs(), d.norm(dim=1, keepdim=True)], 1)
    target = None
    if ev.truth is not None:
        frag = torch.as_tensor(ev.truth["fragment"].astype(np.int64))
        target = (frag[edges[0]] == frag[edges[1]]).float()
    return Graph(ev.voxel_features(), edges, e, target)


def cluster_graph(ev: EventInput, cluster: np.ndarray, level: str, same_class: bool = True
                  ) -> Graph:
    """Complete graph of the clusters (``cluster``: per-voxel ids 0..C-1) of one event.
    ``level`` names the truth of an edge: ``"particle"`` (with ``same_class``, edges only
    between clusters of the same predicted class) or ``"interaction"`` (which also gets the
    type and primary targets per node)."""
    c = torch.as_tensor(cluster)
    n = int(cluster.max()) + 1 if len(cluster) else 0
    x = G.cluster_features(ev.coords, ev.charge, c, ev.prob)
    edges = G.complete_graph(torch.zeros(n, dtype=torch.int64))
    cls = torch.as_tensor(majority(cluster, ev.semantic.numpy(), n)).long()
    if level == "particle" and same_class:  # fragments of one particle share its class
        edges = edges[:, cls[edges[0]] == cls[edges[1]]]
    e = G.edge_features(ev.coords, c, x, edges)
    g = Graph(x, edges, e)
    if ev.truth is not None:
        owner = torch.as_tensor(majority(cluster, ev.truth[level], n))
        g.edge_target = (owner[edges[0]] == owner[edges[1]]).float()
        if level == "interaction":
            g.node_class = cls
            g.node_targets = [
                torch.as_tensor(majority(cluster, ev.truth["particle_type"], n)).long(),
                torch.as_tensor(majority(cluster, ev.truth["primary"], n)).long()]
    return g


def touch_graph(ev: EventInput, cluster: np.ndarray, touch: float, pointing: bool = False
                ) -> tuple[Graph, np.ndarray]:
    """The interaction-level graph whose nodes are the groups of clusters touching within
    ``touch`` voxels (:func:`larchain.reco.graph.touching`), and each cluster's group. With
    truth, edges are "same true interaction" of the groups' majority; no node targets (the
    particle-level network types the particles). ``pointing``: the edges also get
    :func:`larchain.reco.graph.pointing_features`."""
    group = G.touching(ev.coords, torch.as_tensor(cluster), touch).numpy()
    g = cluster_graph(ev, group[cluster], "interaction")
    g.node_targets, g.node_class = [], None
    if pointing:
        extra = G.pointing_features(ev.coords, torch.as_tensor(group[cluster]), g.x, g.edges)
        g.e = torch.cat([g.e, extra], 1)
    return g, group


def collate(graphs: Sequence[Graph]) -> Graph:
    """Disjoint union of graphs (node indices offset)."""
    xs, es, fs, ts, nts, off = [], [], [], [], [[] for _ in graphs[0].node_targets], 0
    for g in graphs:
        xs.append(g.x)
        es.append(g.edges + off)
        fs.append(g.e)
        if g.edge_target is not None:
            ts.append(g.edge_target)
        for k, t in enumerate(g.node_targets):
            nts[k].append(t)
        off += len(g.x)
    classes = [g.node_class for g in graphs]
    return Graph(torch.cat(xs), torch.cat(es, 1), torch.cat(fs),
                 torch.cat(ts) if ts else None, [torch.cat(t) for t in nts],
                 torch.cat(classes) if all(c is not None for c in classes) else None)


def type_logits(logits: torch.Tensor, node_class: torch.Tensor) -> torch.Tensor:
    """Particle-type logits with the types the cluster's semantic class rules out set to
    -inf (:data:`ALLOWED_TYPES`)."""
    return logits.masked_fill(~ALLOWED_TYPES[node_class], float("-inf"))


# ------------------------------------------------------------------------------------------
# the chain


@dataclass
class Chain:
    """The three trained models and the constants inference needs."""

    scorer: EdgeScorer
    fragment_gnn: GraphNet
    particle_gnn: GraphNet
    cfg: dict[str, Any]
    mev_per_electron: float
    voxel_size: float
    scorer_inputs: int  # voxel features per voxel (decoder features + 5 probabilities + 1)
    group_gnn: GraphNet | None = None  # touching groups -> interactions (interaction_touch)

    @property
    def threshold(self) -> float:
        return float(self.cfg["edge_threshold"])

    # -- the three steps, one event each -----------------------------------------------------

    def voxel_graph(self, ev: EventInput) -> Graph:
        """The scorer's graph of one event, the same in training and in use."""
        return voxel_graph(ev, float(self.cfg["radius"]), same_class=not self.voxel_cross_class)

    @torch.no_grad()
    def fragments(self, ev: EventInput) -> np.ndarray:
        """Per-voxel fragment ids (0..F-1)."""
        g = self.voxel_graph(ev)
        sem = ev.semantic
        score = torch.sigmoid(self.scorer(g.x, g.edges, g.e))
        threshold = torch.full_like(score, self.threshold)
        track_cut = self.cfg.get("track_edge_threshold")  # absent in chains saved before
        if track_cut is not None:  # edges between two track voxels
            both = (sem[g.edges[0]] == T.TRACK) & (sem[g.edges[1]] == T.TRACK)
            threshold[both] = float(track_cut)
        keep = score > threshold
        frag = _relabel(G.components(len(ev.coords), g.edges[:, keep]).numpy())
        brk = self.cfg.get("break_tracks") or {}  # absent in chains saved before it existed
        if not len(frag):
            return frag
        coords, semantic = ev.coords.numpy().astype(np.float64), sem.numpy()
        eps = float(self.cfg["radius"])
        if brk.get("linearity") is not None:
            frag = B.break_tracks(coords, semantic, frag, radius=float(brk["radius"]),
                                  linearity=float(brk["linearity"]), eps=eps)
        if brk.get("kink_angle") is not None:  # absent in chains saved before it existed
            frag = B.split_kinks(coords, semantic, frag, angle=float(brk["kink_angle"]),
                                 tolerance=float(brk["kink_tolerance"]),
                                 min_segment=float(brk["kink_min_segment"]), eps=eps)
        return _relabel(frag)

    @property
    def pointing(self) -> bool:
        """``interaction_pointing``: the touching groups' edges carry pointing features."""
        return bool(self.cfg.get("interaction_pointing"))  # absent in chains saved before

    @property
    def aggregated(self) -> tuple[int, ...]:
        """``group_classes``: the predicted classes whose fragments the fragment GNN groups."""
        names = self.cfg.get("group_classes")  # absent in chains saved before it existed
        if names is None:
            return AGGREGATED
        return tuple(T.SEMANTIC_CLASSES.index(n) for n in names)

    @property
    def voxel_cross_class(self) -> bool:
        """``voxel_cross_class``: the dense clustering's voxel graph links voxels of different
        predicted classes."""
        return bool(self.cfg.get("voxel_cross_class"))  # absent in chains saved before

    @property
    def cross_class(self) -> bool:
        """``cross_class``: the fragment GNN may join fragments of different predicted
        classes."""
        return bool(self.cfg.get("cross_class"))  # absent in chains saved before it existed

    @property
    def touch(self) -> float | None:
        """``interaction_touch`` (voxels), or None: the particle GNN groups interactions."""
        t = self.cfg.get("interaction_touch")  # absent in chains saved before it existed
        return None if t is None else float(t)

    def _group(self, model: GraphNet, ev: EventInput, cluster: np.ndarray, active: np.ndarray,
               level: str, touch: float | None = None, link: bool = True
               ) -> tuple[np.ndarray, list[torch.Tensor]]:
        """Merge the active clusters (a boolean per cluster) by the model's edge scores;
        inactive ones stay alone. Returns per-cluster group ids and the node outputs (rows:
        the active clusters in order). With ``touch`` the model's nodes are the groups of
        active clusters touching within ``touch`` voxels (:func:`touch_graph`), and its node
        outputs are per group. ``link=False``: node outputs only, every cluster alone.
        Interactions are linked by the mean score over voxel pairs when
        ``interaction_linkage`` is ``"voxels"`` (:func:`average_linkage`)."""
        n = int(cluster.max()) + 1 if len(cluster) else 0
        group = np.arange(n)
        idx = np.flatnonzero(active)
        if len(idx) == 0:
            return group, []
        local = np.full(n, -1)
        local[idx] = np.arange(len(idx))
        sel = np.isin(cluster, idx)
        sub = EventInput(ev.index, ev.coords[sel], ev.charge[sel], ev.prob[sel],
                         ev.features[sel])
        if touch is None:
            g = cluster_graph(sub, local[cluster[sel]], level, same_class=not self.cross_class)
            node_group = np.arange(len(idx))
        else:
            g, node_group = touch_graph(sub, local[cluster[sel]], touch, self.pointing)
        with torch.no_grad():
            logit, heads = model(g.x, g.edges, g.e)
        if not link:
            return group, heads
        weight = None
        if level == "interaction" and self.cfg.get("interaction_linkage") == "voxels":
            weight = np.bincount(node_group[local[cluster[sel]]], minlength=len(g.x))
        comp = average_linkage(len(g.x), g.edges, torch.sigmoid(logit), self.threshold,
                               weight)[node_group]
        group[idx] = idx[np.unique(comp, return_index=True)[1]][comp]  # lowest member's id
        return _relabel(group), heads

    def reconstruct(self, ev: EventInput) -> dict[str, dict[str, np.ndarray]]:
        """One event -> ``{"voxels", "particles", "interactions"}`` tables (see
        :mod:`larchain.reco.particle_stage` for the schema)."""
        frag = self.fragments(ev)
        n_frag = int(frag.max()) + 1 if len(frag) else 0
        frag_class = majority(frag, ev.semantic.numpy(), n_frag)
        active = np.isin(frag_class, self.aggregated)
        frag_particle, _ = self._group(self.fragment_gnn, ev, frag, active, "particle")
        particle = frag_particle[frag]
        n_part = int(particle.max()) + 1 if len(particle) else 0
        part_class = majority(particle, ev.semantic.numpy(), n_part)
        active_p = np.isin(part_class, GROUPED)
        by_groups = self.touch is not None and self.group_gnn is not None
        part_inter, heads = self._group(self.particle_gnn, ev, particle, active_p,
                                        "interaction", link=not by_groups)
        if by_groups:
            part_inter, _ = self._group(self.group_gnn, ev, particle, active_p, "interaction",
                                        touch=self.touch)
        ptype = np.zeros(n_part, np.int64)  # low energy: photon
        type_score = np.ones(n_part, np.float32)
        primary = np.zeros(n_part, np.int64)
        primary_score = np.zeros(n_part, np.float32)
        if heads:
            logits = heads[0]
            if self.cfg.get("pid_by_shape", False):  # absent in chains saved before it existed
                logits = type_logits(logits, torch.as_tensor(part_class[active_p]).long())
            pt = torch.softmax(logits, 1)
            pp = torch.softmax(heads[1], 1)[:, 1]
            ptype[active_p] = pt.argmax(1).numpy()
            type_score[active_p] = pt.max(1).values.numpy()
            primary_score[active_p] = pp.numpy()
            primary[active_p] = (pp > 0.5).long().numpy()
        part_inter = self._attach_low_energy(ev, particle, part_inter, active_p)
        interaction = part_inter[particle]
        return self._tables(ev, frag, particle, interaction, part_inter, ptype, type_score,
                            primary, primary_score, part_class)

    def _attach_low_energy(self, ev: EventInput, particle: np.ndarray, part_inter: np.ndarray,
                           active: np.ndarray) -> np.ndarray:
        """Low-energy particles join the interaction of the nearest active particle."""
        out = part_inter.copy()
        lone = np.flatnonzero(~active)
        if len(lone) == 0 or not active.any():
            return _relabel(out)
        act_vox = np.isin(particle, np.flatnonzero(active))
        coords = ev.coords.numpy().astype(np.float64)
        # one tree query for every low-energy voxel, then each particle's closest pair
        dist, nearest = cKDTree(coords[act_vox]).query(coords[~act_vox])
        owner = particle[~act_vox]
        order = np.lexsort((dist, owner))  # by particle, then distance
        first = order[np.unique(owner[order], return_index=True)[1]]
        out[owner[first]] = out[particle[act_vox][nearest[first]]]
        return _relabel(out)

    def _tables(self, ev: EventInput, frag: np.ndarray, particle: np.ndarray,
                interaction: np.ndarray, part_inter: np.ndarray, ptype: np.ndarray,
                type_score: np.ndarray, primary: np.ndarray, primary_score: np.ndarray,
                part_class: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
        vs = self.voxel_size
        n_part = len(ptype)
        pc = torch.as_tensor(particle)
        feats = G.cluster_features(ev.coords, ev.charge, pc) if n_part else torch.zeros(0, 0)
        start = (feats[:, G.START].double().numpy() + 0.5) * vs if n_part else np.zeros((0, 3))
        end = (feats[:, G.END].double().numpy() + 0.5) * vs if n_part else np.zeros((0, 3))
        n_vox = np.bincount(particle, minlength=n_part)
        n_fr = np.array([len(np.unique(frag[particle == p])) for p in range(n_part)])
        charge = np.bincount(particle, weights=ev.charge.numpy().astype(np.float64),
                             minlength=n_part)
        n_int = int(part_inter.max()) + 1 if n_part else 0
        vertex = np.zeros((n_int, 3))
        for i in range(n_int):
            members = np.flatnonzero(part_inter == i)
            grouped = members[np.isin(part_class[members], GROUPED)]
            members = grouped if len(grouped) else members  # low-energy blobs: no vertex
            vertex[i] = _vertex(start[members], end[members], primary[members].astype(bool))
        # orient each particle away from its interaction's vertex
        v = vertex[part_inter] if n_part else np.zeros((0, 3))
        flip = np.linalg.norm(end - v, axis=1) < np.linalg.norm(start - v, axis=1)
        start, end = np.where(flip[:, None], end, start), np.where(flip[:, None], start, end)
        length = np.linalg.norm(end - start, axis=1)
        direction = np.divide(end - start, np.maximum(length, 1e-9)[:, None])
        dep = charge * self.mev_per_electron
        energy, by_range = dep.copy(), np.zeros(n_part, np.int8)
        for t, name in TRACK_TYPES.items():
            m = ptype == t
            if m.any():
                energy[m] = RangeTable.for_particle(name).kinetic_at_range(length[m])
                by_range[m] = 1
        return {
            "voxels": {"fragment": frag.astype(np.int32), "particle": particle.astype(np.int32),
                       "interaction": interaction.astype(np.int32)},
            "particles": {
                "id": np.arange(n_part, dtype=np.int32),
                "interaction": part_inter.astype(np.int32),
                "type": ptype.astype(np.int8), "type_score": type_score.astype(np.float32),
                "primary": primary.astype(np.int8),
                "primary_score": primary_score.astype(np.float32),
                "semantic": part_class.astype(np.int8),
                "n_voxels": n_vox.astype(np.int32), "n_fragments": n_fr.astype(np.int32),
                "start": start.astype(np.float32), "end": end.astype(np.float32),
                "direction": direction.astype(np.float32), "length": length.astype(np.float32),
                "deposited_energy": dep.astype(np.float32), "energy": energy.astype(np.float32),
                "energy_from_range": by_range,
            },
            "interactions": {
                "id": np.arange(n_int, dtype=np.int32), "vertex": vertex.astype(np.float32),
                "n_particles": np.bincount(part_inter, minlength=n_int).astype(np.int32),
                "n_primaries": np.bincount(part_inter, weights=primary,
                                           minlength=n_int).astype(np.int32),
            },
        }


def average_linkage(n: int, edges: torch.Tensor, prob: torch.Tensor, threshold: float,
                    weight: np.ndarray | None = None) -> np.ndarray:
    """Group ``n`` nodes by average-linkage agglomeration on the edge scores: two groups merge
    while the mean score over all their node pairs exceeds ``threshold`` (pairs without an
    edge count as 0). Unlike connected components of the thresholded edges, one wrong edge
    cannot join two large groups.

    With ``weight`` (one positive number per node, e.g. its voxel count) the mean is over
    pairs of weight units, so a big node's scores outweigh a small one's: a small cluster
    that scores high with two big groups cannot bridge them. scipy's ``linkage`` takes no
    observation weights, hence the loop (fine for the ~10-200 nodes of one event)."""
    if n <= 1:
        return np.zeros(n, np.int64)
    i, j = edges.numpy()
    p = prob.double().numpy()
    if weight is None:
        dist = np.ones(n * (n - 1) // 2)
        dist[n * i - i * (i + 1) // 2 + (j - i - 1)] = 1.0 - p
        labels = fcluster(linkage(dist, "average"), t=1.0 - threshold, criterion="distance")
        return _relabel(labels)
    w = np.asarray(weight, np.float64)
    total = np.zeros((n, n))  # summed weight-unit pair scores between current groups
    total[i, j] = total[j, i] = p * w[i] * w[j]
    labels = np.arange(n)
    dead = np.zeros(n, bool)
    while True:
        mean = total / np.outer(w, w)
        mean[dead] = mean[:, dead] = -1.0
        np.fill_diagonal(mean, -1.0)
        a, b = np.unravel_index(int(mean.argmax()), mean.shape)
        if mean[a, b] <= threshold:
            return _relabel(labels)
        total[a] += total[b]
        total[:, a] += total[:, b]
        total[a, a] = 0.0
        w[a] += w[b]
        dead[b] = True
        labels[labels == b] = a


def _vertex(start: np.ndarray, end: np.ndarray, primary: np.ndarray) -> np.ndarray:
    """The candidate end point (of primaries, or of all particles if none is primary) with the
    smallest summed distance to the nearest end of every other particle."""
    if len(start) == 1:
        return start[0]
    owners = np.flatnonzero(primary) if primary.any() else np.arange(len(start))
    cand = np.concatenate([start[owners], end[owners]])
    cand_owner = np.concatenate([owners, owners])
    ends = np.stack([start, end], 1)  # [P, 2, 3]
    d = np.linalg.norm(cand[:, None, None] - ends[None], axis=3).min(2)  # [K, P]
    d[np.arange(len(cand)), cand_owner] = 0.0
    return cand[int(d.sum(1).argmin())]


# ------------------------------------------------------------------------------------------
# training


def _fit(model: torch.nn.Module, graphs: list[Graph], epochs: int, lr: float, batch: int,
         rng: np.random.Generator, desc: str, by_shape: bool = False
         ) -> list[dict[str, float]]:
    """Adam on the edge (and node) losses; returns per-epoch loss and edge accuracy.

    ``by_shape``: the type head is trained on the types its node's predicted semantic class
    allows (:func:`type_logits`), as it is used; nodes whose true type that class rules out
    (a mis-segmented cluster) cannot be typed right and are left out of the type loss."""
    graphs = [g for g in graphs if len(g.x)]
    if not graphs:
        return []
    allg = collate(graphs)
    model.fit_normalisation(allg.x, allg.e)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    history = []
    for epoch in tqdm(range(epochs), desc=desc, unit="epoch", mininterval=1):
        model.train()
        losses, correct, total = [], 0, 0
        order = rng.permutation(len(graphs))
        for k in range(0, len(order), batch):
            g = collate([graphs[i] for i in order[k:k + batch]])
            out = model(g.x, g.edges, g.e)
            logit, heads = out if isinstance(out, tuple) else (out, [])
            loss = torch.zeros(())
            if len(logit):
                loss = loss + F.binary_cross_entropy_with_logits(logit, g.edge_target)
                correct += int(((logit > 0).float() == g.edge_target).sum())
                total += len(logit)
            for k, (h, t) in enumerate(zip(heads, g.node_targets, strict=True)):
                if k == 0 and by_shape:
                    ok = ALLOWED_TYPES[g.node_class, t]
                    if not ok.any():
                        continue
                    h, t = type_logits(h[ok], g.node_class[ok]), t[ok]
                loss = loss + F.cross_entropy(h, t)
            if loss.requires_grad:
                opt.zero_grad()
                loss.backward()
                opt.step()
            losses.append(float(loss.detach()))
        history.append({"step": desc, "epoch": epoch, "loss": float(np.mean(losses)),
                        "edge_accuracy": correct / total if total else float("nan")})
    model.eval()
    return history


def _energy_constant(events: Sequence[EventInput]) -> float:
    """Median over true particles (>= 10 voxels) of deposited energy / collected charge."""
    ratios = []
    for ev in events:
        part = ev.truth["particle"]
        q = np.bincount(part, weights=ev.charge.numpy().astype(np.float64),
                        minlength=len(ev.particles["id"]))
        n = np.bincount(part, minlength=len(ev.particles["id"]))
        dep = np.asarray(ev.particles["deposited_energy"], np.float64)
        ok = (n >= 10) & (q > 0)
        ratios.append(dep[ok] / q[ok])
    r = np.concatenate(ratios) if ratios else np.zeros(0)
    if not len(r):
        raise ValueError("no true particle with >= 10 voxels in the training events: cannot "
                         "fit the charge-to-energy constant")
    return float(np.median(r))


def train_chain(events: Sequence[EventInput], cfg: Mapping[str, Any], voxel_size: float
                ) -> tuple[Chain, list[dict[str, float]]]:
    """Train the three steps in order on ``events`` (with truth). Seeded by ``cfg['seed']``.
    Events without voxels (nothing deposited in the active volume) teach nothing and are
    left out."""
    events = [ev for ev in events if len(ev.coords)]
    if not events:
        raise ValueError("no training event has any voxel: nothing to train the particle "
                         "chain on")
    cfg = copy.deepcopy(dict(cfg))
    torch.manual_seed(int(cfg["seed"]))
    rng = np.random.default_rng(int(cfg["seed"]))
    hidden, layers, lr = int(cfg["hidden"]), int(cfg["layers"]), float(cfg["lr"])
    epochs, batch = cfg["epochs"], int(cfg["batch_events"])
    n_vox = events[0].voxel_features().shape[1]
    n_node = G.N_GEOMETRY + 5
    chain = Chain(
        scorer=EdgeScorer(n_vox, VOXEL_EDGE_FEATURES, hidden=hidden, layers=2),
        fragment_gnn=GraphNet(n_node, G.N_EDGE, hidden=hidden, layers=layers),
        particle_gnn=GraphNet(n_node, G.N_EDGE, hidden=hidden, layers=layers,
                              node_out=(N_TYPES, 2)),
        cfg=cfg, mev_per_electron=_energy_constant(events), voxel_size=voxel_size,
        scorer_inputs=n_vox)
    graphs = [chain.voxel_graph(ev) for ev in events]
    history = _fit(chain.scorer, graphs, int(epochs["fragments"]), lr, batch, rng, "fragments")
    # step 2 learns on the fragments step 1 makes
    frag_graphs, part_graphs, particle_sets = [], [], []
    frags = [chain.fragments(ev) for ev in events]
    for ev, frag in zip(events, frags, strict=True):
        sel, local = _active(ev, frag, chain.aggregated)
        if sel is not None:
            frag_graphs.append(cluster_graph(_subset(ev, sel), local, "particle",
                                             same_class=not chain.cross_class))
    history += _fit(chain.fragment_gnn, frag_graphs, int(epochs["particles"]), lr, batch, rng,
                    "particles")
    # step 3 on the particles step 2 makes
    for ev, frag in zip(events, frags, strict=True):
        n_frag = int(frag.max()) + 1
        active = np.isin(majority(frag, ev.semantic.numpy(), n_frag), chain.aggregated)
        fp, _ = chain._group(chain.fragment_gnn, ev, frag, active, "particle")
        particle = fp[frag]
        sel, local = _active(ev, particle, GROUPED)
        if sel is not None:
            particle_sets.append((_subset(ev, sel), local))
            part_graphs.append(cluster_graph(*particle_sets[-1], "interaction"))
    history += _fit(chain.particle_gnn, part_graphs, int(epochs["interactions"]), lr, batch,
                    rng, "interactions", by_shape=bool(cfg.get("pid_by_shape", False)))
    if chain.touch is not None:  # the same particles, joined where they touch
        n_edge = G.N_EDGE + (G.N_POINTING if chain.pointing else 0)
        chain.group_gnn = GraphNet(n_node, n_edge, hidden=hidden, layers=layers)
        group_graphs = [touch_graph(sub, local, chain.touch, chain.pointing)[0]
                        for sub, local in particle_sets]
        history += _fit(chain.group_gnn, group_graphs, int(epochs["interactions"]), lr, batch,
                        rng, "interaction groups")
    return chain, history


def _active(ev: EventInput, cluster: np.ndarray, classes: Sequence[int]
            ) -> tuple[np.ndarray | None, np.ndarray]:
    """Voxels of the clusters whose predicted class is one of ``classes``, and their clusters
    renumbered."""
    n = int(cluster.max()) + 1
    active = np.isin(majority(cluster, ev.semantic.numpy(), n), classes)
    sel = active[cluster]
    if not sel.any():
        return None, cluster
    return sel, _relabel(cluster[sel])


def _subset(ev: EventInput, sel: np.ndarray) -> EventInput:
    s = torch.as_tensor(sel)
    truth = {k: v[sel] for k, v in ev.truth.items()} if ev.truth is not None else None
    return EventInput(ev.index, ev.coords[s], ev.charge[s], ev.prob[s], ev.features[s], truth)


# ------------------------------------------------------------------------------------------
# saving and loading


_MODELS = ("scorer", "fragment_gnn", "particle_gnn", "group_gnn")


def save_chain(chain: Chain, directory: str | Path) -> None:
    """Weights as one safetensors file + the config and constants as JSON."""
    directory = Path(directory)
    state = {f"{m}.{k}": v.detach().cpu().contiguous()
             for m in _MODELS if getattr(chain, m) is not None
             for k, v in getattr(chain, m).state_dict().items()}
    with atomic_path(directory / "chain.safetensors") as tmp:
        save_file(state, str(tmp))
    meta = {"cfg": chain.cfg, "mev_per_electron": chain.mev_per_electron,
            "voxel_size": chain.voxel_size,
            "shapes": {"voxel_features": chain.scorer_inputs, "node_features": G.N_GEOMETRY + 5,
                       "edge_features": G.N_EDGE},
            "feature_names": G.feature_names(5)}
    with atomic_path(directory / "chain.json") as tmp:
        tmp.write_text(json.dumps(meta, indent=1))


def load_chain(directory: str | Path) -> Chain:
    directory = Path(directory)
    meta = json.loads((directory / "chain.json").read_text())
    cfg, sh = meta["cfg"], meta["shapes"]
    if sh["node_features"] != G.N_GEOMETRY + 5:
        raise ValueError(
            f"{directory / 'chain.json'}: the chain reads {sh['node_features']} node features, "
            f"this larchain computes {G.N_GEOMETRY + 5}; it was trained by an older version: "
            "re-run the particle_train rule")
    hidden, layers = int(cfg["hidden"]), int(cfg["layers"])
    chain = Chain(
        scorer=EdgeScorer(sh["voxel_features"], VOXEL_EDGE_FEATURES, hidden=hidden, layers=2),
        fragment_gnn=GraphNet(sh["node_features"], sh["edge_features"], hidden=hidden,
                              layers=layers),
        particle_gnn=GraphNet(sh["node_features"], sh["edge_features"], hidden=hidden,
                              layers=layers, node_out=(N_TYPES, 2)),
        cfg=cfg, mev_per_electron=float(meta["mev_per_electron"]),
        voxel_size=float(meta["voxel_size"]), scorer_inputs=int(sh["voxel_features"]))
    if chain.touch is not None:
        n_edge = sh["edge_features"] + (G.N_POINTING if chain.pointing else 0)
        chain.group_gnn = GraphNet(sh["node_features"], n_edge, hidden=hidden, layers=layers)
    state = load_file(str(directory / "chain.safetensors"))
    for m in _MODELS:
        if getattr(chain, m) is None:
            continue
        getattr(chain, m).load_state_dict(
            {k[len(m) + 1:]: v for k, v in state.items() if k.startswith(m + ".")})
        getattr(chain, m).eval()
    return chain
