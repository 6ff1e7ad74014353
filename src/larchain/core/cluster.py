"""Dask clusters for stages that shard work: local by default, or an existing scheduler.

A stage never depends on how many workers it gets: work is split into canonical blocks,
each with its own seed, and results are assembled by block index.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from tqdm.auto import tqdm

# Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536, which also freezes glibc's
# mmap threshold at 128 KiB: every larger numpy/torch temporary is then mmap'd and unmapped,
# and page faults made the simulation's worker tasks ~1.7x slower than the same code in
# process (benchmarks/sim_event_rate.py). A 32 MiB mmap threshold keeps Dask's eager trimming
# and restores the in-process speed.
WORKER_ENV = {"MALLOC_MMAP_THRESHOLD_": str(32 * 2**20)}


@contextlib.contextmanager
def dask_client(
    dask_cfg: Mapping[str, Any] | None, threads: int, *, gpu: bool = False
) -> Iterator[Any]:
    """A ``distributed.Client`` for this job.

    ``dask_cfg`` is the config's ``dask`` section: ``scheduler_address`` or
    ``scheduler_file`` connect to a running scheduler; ``cluster: slurm`` starts a
    dask-jobqueue ``SLURMCluster`` of ``slurm.jobs`` batch jobs (queue, account and other site
    settings come from dask's own ``jobqueue.slurm`` configuration, not from this config);
    otherwise a LocalCluster with one single-threaded worker process per thread of the job
    (one worker for a GPU job). Workers this function starts get ``WORKER_ENV``; workers of an
    existing scheduler should export it themselves.
    """
    import dask
    from distributed import Client, LocalCluster

    dask_cfg = dict(dask_cfg or {})
    address = dask_cfg.get("scheduler_address")
    sched_file = dask_cfg.get("scheduler_file")
    if dask_cfg.get("cluster") == "slurm" and not (address or sched_file):
        from dask_jobqueue import SLURMCluster

        slurm = dict(dask_cfg.get("slurm") or {})
        prologue = list(dask.config.get("jobqueue.slurm.job-script-prologue", None) or [])
        cluster = SLURMCluster(
            job_script_prologue=prologue + [f"export {k}={v}" for k, v in WORKER_ENV.items()],
            cores=int(slurm.get("cores", 1)),
            processes=int(slurm.get("cores", 1)),
            memory=str(slurm.get("memory", "2GB")),
            walltime=str(slurm.get("walltime", "01:00:00")),
            silence_logs=logging.WARNING,
        )
        cluster.scale(jobs=int(slurm.get("jobs", 1)))
        client = Client(cluster)
        try:
            client.wait_for_workers(1, timeout=float(slurm.get("start_timeout", 600)))
            yield client
        finally:
            client.close()
            cluster.close()
        return
    if address or sched_file:
        client = Client(address) if address else Client(scheduler_file=sched_file)
        try:
            yield client
        finally:
            client.close()
        return
    n_workers = 1 if gpu else max(1, int(threads))
    environ = {f"distributed.nanny.pre-spawn-environ.{k}": v for k, v in WORKER_ENV.items()}
    with dask.config.set(environ):
        cluster = LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=dask_cfg.get("processes", True),
            dashboard_address=None,
            silence_logs=logging.WARNING,
        )
    client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def map_blocks(
    client: Any,
    func: Callable[..., Any],
    blocks: Sequence[Any],
    *,
    desc: str,
    on_result: Callable[[int, Any], None],
    **kwargs: Any,
) -> None:
    """Run ``func(block, **kwargs)`` for every block, calling ``on_result(i, result)`` as each
    finishes, with a progress bar. Dask retries a block whose worker died."""
    from distributed import as_completed

    futures = [
        client.submit(func, b, **kwargs, key=f"{desc}-{i}", pure=False, retries=2)
        for i, b in enumerate(blocks)
    ]
    index = {f.key: i for i, f in enumerate(futures)}
    with tqdm(total=len(futures), desc=desc, unit="block", mininterval=1.0) as bar:
        for fut in as_completed(futures):
            on_result(index[fut.key], fut.result())
            fut.release()
            bar.update(1)
