"""LUT stage: the photon visibility look-up table ("photon library") by optical Monte Carlo.

Artifact: ``results/lut/<id>/lut.nc``, an xarray Dataset with dims (x, y, z, detector).
"""

#: Bump when a change alters the LUT's content for the same config (part of the artifact id).
CODE_VERSION = "3"  # 3: the walk as rows, one fused flight kernel; cell lookup for landing
#: Config sections the LUT reads (all of them go into its artifact id) ...
CONFIG_KEYS = ("detector", "optics", "lut")
#: ... except these, which change how it runs, not what it computes.
EXCLUDE_KEYS = ("lut.device", "lut.figure")
