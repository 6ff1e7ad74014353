"""Simulation stage: labelled LArTPC events and calibration control samples.

Physics, one step per module: :mod:`generator` (primaries), :mod:`stopping` (energy loss,
ranges), :mod:`transport` (stepping, secondaries, EM cascade; the charged-particle steps in
the compiled kernel :mod:`stepping`), :mod:`recombination`,
:mod:`drift`, :mod:`voxelize` (its no-gradient CPU loops compiled in :mod:`voxel_kernels`),
:mod:`light`, :mod:`hadronic` (pion and proton interactions with nuclei, Geant4 tables),
:mod:`capture` (stopped mu- and pi-: nuclear capture, decay in orbit; Geant4 tables),
composed in :mod:`response` (differentiable in
every detector parameter; calibration fits through the same code). Files: :mod:`storage`.

Artifacts: ``results/simulation/<id>/`` and ``results/control/<id>/`` (``index.json`` and
HDF5 shards).
"""

#: Bump when a change alters the simulated events for the same config (part of the id).
CODE_VERSION = "6"
#: Config sections the main sample reads (all go into its artifact id) ...
CONFIG_KEYS = ("detector", "tpc", "readout", "simulation")
#: ... except these (figures only).
EXCLUDE_KEYS = ("simulation.figure",)
#: The control samples read the transport settings, their own section and the physics.
CONTROL_CONFIG_KEYS = ("detector", "tpc", "readout", "simulation.transport", "control")
CONTROL_CODE_VERSION = "5"
