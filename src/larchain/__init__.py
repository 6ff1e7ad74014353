"""larchain: reproducible physics inference for liquid-argon TPCs.

Stages (one subpackage each) talk only through versioned artifacts and the small
shared core in :mod:`larchain.core` (units, geometry, config checks, artifacts, Dask).
"""

__version__ = "0.1.0"
