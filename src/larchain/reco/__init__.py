"""Reconstruction stage: networks on voxelised LArTPC events.

``sparse`` holds the sparse 3D convolution layers (plain PyTorch, CPU and CUDA); ``uresnet``
the UResNet with point-proposal heads; ``train``, ``infer`` and ``evaluate`` the three rules'
work (artifacts ``results/reco``, ``results/reco_infer``, ``results/reco_eval``).

Stages 2-3 (particles and interactions): ``graph`` builds graphs and cluster features, ``gnn``
holds the edge scorer and the message-passing network, ``particles`` the chain (train and
reconstruct), ``baseline`` the classical DBSCAN + heuristics chain, ``metrics`` the clustering
and particle-ID scores (artifacts ``results/particles``, ``results/particle_infer``,
``results/particle_eval``).
"""

#: Bump when a change alters the trained model or predictions for the same config.
CODE_VERSION = "1"
#: Bump when inference output changes (2: decoder features stored per voxel).
INFER_CODE_VERSION = "2"
#: Bump when the particle-level chain (fragments, particles, interactions) changes (3: dQ/dx
#: node features, particle types restricted by semantic class; 4: end-activity node features;
#: 5: charge profile from the Bragg end; 6: track fragments cut where their spine bends; 7:
#: touching particles grouped before the interaction GNN, ``interaction_touch``; 8:
#: interactions linked by the mean score over voxel pairs, ``interaction_linkage``, and
#: pointing features on the touching groups' edges, ``interaction_pointing``).
PARTICLES_CODE_VERSION = "8"
#: ``particle_eval``'s: the chain's, plus a suffix bumped when only the scores change (1: PID
#: over mutual matches, ``pid_mutual``).
PARTICLE_EVAL_CODE_VERSION = f"{PARTICLES_CODE_VERSION}.1"
#: The model artifact reads the whole ``reco`` section ...
CONFIG_KEYS = ("reco",)
#: ... except where it trains and the options of the later rules.
EXCLUDE_KEYS = ("reco.device", "reco.infer", "reco.eval")
