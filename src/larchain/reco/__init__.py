"""Reconstruction stage: networks on voxelised LArTPC events.

``larchain.reco.sparse`` holds the sparse 3D convolution layers (plain PyTorch, CPU and CUDA)
that the reconstruction networks are built from.
"""
