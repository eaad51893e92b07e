"""Local executors shared by the parity tests: a thread pool and a real Dask cluster."""

from __future__ import annotations

import concurrent.futures as cf
from collections.abc import Iterator

import pytest
from distributed import Client, LocalCluster


@pytest.fixture(scope="session")
def thread_pool() -> Iterator[cf.ThreadPoolExecutor]:
    with cf.ThreadPoolExecutor(max_workers=2) as pool:
        yield pool


@pytest.fixture(scope="session")
def dask_client() -> Iterator[Client]:
    """A ``dask.distributed`` cluster of one worker with 2 threads, in this process.

    Threads, because the 2 cores are shared with the Celery workers; its dashboard on a
    free port, so that two clusters never compete for 8787.
    """
    with (
        LocalCluster(
            n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client
