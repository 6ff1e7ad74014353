"""Reconstruction stage: networks on voxelised LArTPC events.

``sparse`` holds the sparse 3D convolution layers (plain PyTorch, CPU and CUDA); ``uresnet``
the UResNet with point-proposal heads; ``train``, ``infer`` and ``evaluate`` the three rules'
work (artifacts ``results/reco``, ``results/reco_infer``, ``results/reco_eval``).
"""

#: Bump when a change alters the trained model or predictions for the same config.
CODE_VERSION = "1"
#: The model artifact reads the whole ``reco`` section ...
CONFIG_KEYS = ("reco",)
#: ... except where it trains and the options of the later rules.
EXCLUDE_KEYS = ("reco.device", "reco.infer", "reco.eval")
