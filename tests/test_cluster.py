"""Workers started by larchain.core.cluster: their environment and their speed-relevant
settings."""

from __future__ import annotations

import os

from larchain.core.cluster import WORKER_ENV, dask_client


def _worker_env() -> dict[str, str | None]:
    return {k: os.environ.get(k) for k in (*WORKER_ENV, "MALLOC_TRIM_THRESHOLD_")}


def test_local_workers_get_the_mmap_threshold():
    """Dask's nanny sets MALLOC_TRIM_THRESHOLD_ (which freezes glibc's mmap threshold at
    128 KiB); our workers must also get WORKER_ENV, or every large temporary is mmap'd."""
    with dask_client({}, 2) as client:
        envs = client.run(_worker_env)
    assert len(envs) == 2
    for env in envs.values():
        for k, v in WORKER_ENV.items():
            assert env[k] == v
        assert env["MALLOC_TRIM_THRESHOLD_"] is not None  # Dask's own setting is kept
