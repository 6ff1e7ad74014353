"""Shared core: units and constants, detector geometry, config checks, artifacts, Dask."""
