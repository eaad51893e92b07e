"""Which objects a job set takes as a local executor; Dask clients are recognised by shape.

A real ``dask.distributed`` client is exercised in ``tests/integration/test_parity.py``.
"""

from __future__ import annotations

import concurrent.futures as cf

import pytest

from jobset import InvalidInputError
from jobset.pools import (
    check_executor,
    futures_executor,
    is_dask_client,
    local_executor,
    local_slots,
)


class LooksLikeAClient:
    """Has ``get_executor`` but is not from the ``distributed`` package."""

    def get_executor(self, **kwargs):
        return cf.ThreadPoolExecutor(1)


def test_a_concurrent_futures_executor_is_taken_as_it_is():
    with cf.ThreadPoolExecutor(3) as pool:
        assert futures_executor(pool) is pool
        assert check_executor(pool) is pool
        assert local_executor(pool) is pool
        assert local_slots(pool) == 3


@pytest.mark.parametrize("executor", [object(), LooksLikeAClient(), None, "redis://x"])
def test_anything_else_is_refused_naming_what_would_do(executor):
    assert not is_dask_client(executor)
    assert futures_executor(executor) is None
    with pytest.raises(InvalidInputError, match=r"CeleryExecutor, a concurrent\.futures"):
        check_executor(executor)
    with pytest.raises(InvalidInputError, match=r"dask\.distributed\.Client"):
        local_executor(executor)
