"""LUT stage: the photon visibility look-up table ("photon library") by optical Monte Carlo.

Artifact: ``results/lut/<id>/lut.nc``, an xarray Dataset with dims (x, y, z, detector).
"""

#: Bump when a change alters the LUT's content for the same config (part of the artifact id).
CODE_VERSION = "2"  # 2: face cubature between 2.5 and 5 sizes; voxel-averaged emission
#: Config sections the LUT reads (all of them go into its artifact id) ...
CONFIG_KEYS = ("detector", "optics", "lut")
#: ... except these, which change how it runs, not what it computes.
EXCLUDE_KEYS = ("lut.device", "lut.figure")
