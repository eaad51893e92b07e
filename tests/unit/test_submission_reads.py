"""Publishing in growing chunks, and how a sub-job's failure record reads."""

from __future__ import annotations

import pytest

from jobset.executors.celery.executor import growing_chunks


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 7, 100, 5000])
def test_chunks_cover_every_item_once_in_order_starting_with_one(n):
    items = list(range(n))
    chunks = [list(c) for c in growing_chunks(items)]
    assert [i for c in chunks for i in c] == items
    if n:
        assert len(chunks[0]) == 1
    assert all(len(c) <= 256 for c in chunks)
    # Doubling: a set of 5000 sub-jobs needs no more than a few dozen chunks.
    assert len(chunks) <= 8 + n // 256 + 1


def test_chunk_sizes_double_up_to_the_cap():
    sizes = [len(c) for c in growing_chunks(range(1000), first=1, most=64)]
    assert sizes[:8] == [1, 2, 4, 8, 16, 32, 64, 64]
    assert sum(sizes) == 1000


def test_celerys_own_hard_time_limit_record_reads_as_the_sets_timeout():
    from jobset.executors.celery.run import _failure

    meta = {"status": "FAILURE", "result": {"exc_type": "TimeLimitExceeded", "exc_message": [3.0]}}
    error_type, message = _failure(meta, 4, "set-1", 2)
    assert error_type == "SubJobTimeoutError"
    assert message == (
        "SubJobTimeoutError: sub-job 4 of set-1 ran past its time limit of 2 s (the set's "
        "timeout_s) and was stopped"
    )
    other = {"status": "FAILURE", "result": {"exc_type": "ValueError", "exc_message": ["bad"]}}
    assert _failure(other, 0, "set-1", 2) == ("ValueError", "ValueError: bad")
