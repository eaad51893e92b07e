"""Celery states -> JobStatus, and the rule that makes one status of many."""

from __future__ import annotations

import itertools

import pytest
from qiskit.providers import JobStatus

from jobset.status import FINAL, aggregate_status, celery_to_job_status

QUEUED, RUNNING, DONE = JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.DONE
ERROR, CANCELLED, INITIALIZING = JobStatus.ERROR, JobStatus.CANCELLED, JobStatus.INITIALIZING

CELERY_STATES = {
    "PENDING": QUEUED,
    "RECEIVED": QUEUED,
    "RETRY": QUEUED,
    "STARTED": RUNNING,
    "SUCCESS": DONE,
    "FAILURE": ERROR,
    "REVOKED": CANCELLED,
    "REJECTED": ERROR,
    "IGNORED": CANCELLED,
}


@pytest.mark.parametrize(("state", "expected"), CELERY_STATES.items())
def test_every_celery_state_maps_to_its_job_status(state, expected):
    assert celery_to_job_status(state) is expected


def test_an_unknown_task_id_reads_as_queued():
    # Celery reports an id it has never seen as PENDING; None stands for "no state at all".
    assert celery_to_job_status(None) is QUEUED
    assert celery_to_job_status("") is QUEUED


@pytest.mark.parametrize("state", ["PROGRESS", "CUSTOM", "pending"])
def test_a_custom_celery_state_counts_as_running(state):
    assert celery_to_job_status(state) is RUNNING


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("PENDING", CANCELLED),
        (None, CANCELLED),
        ("RECEIVED", CANCELLED),
        ("RETRY", CANCELLED),
        ("STARTED", RUNNING),
        ("PROGRESS", RUNNING),
        ("SUCCESS", DONE),
        ("FAILURE", ERROR),
        ("REVOKED", CANCELLED),
        ("REJECTED", ERROR),
    ],
)
def test_a_cancelled_set_turns_only_not_started_sub_jobs_into_cancelled(state, expected):
    assert celery_to_job_status(state, cancelled=True) is expected


def test_final_holds_exactly_the_three_final_statuses():
    assert frozenset({DONE, CANCELLED, ERROR}) == FINAL


def expected_aggregate(statuses: list[JobStatus], cancelled: bool) -> JobStatus:
    """The rule of aggregate_status's docstring, written out independently."""
    if all(s in (DONE, ERROR, CANCELLED) for s in statuses):
        if cancelled or CANCELLED in statuses:
            return CANCELLED
        if ERROR in statuses:
            return ERROR
        return DONE
    if any(s in (RUNNING, DONE, ERROR, CANCELLED) for s in statuses):
        return RUNNING
    return QUEUED


ALL = [QUEUED, INITIALIZING, RUNNING, DONE, ERROR, CANCELLED]


@pytest.mark.parametrize("cancelled", [False, True])
@pytest.mark.parametrize(
    "statuses",
    [list(c) for n in (1, 2, 3) for c in itertools.combinations_with_replacement(ALL, n)],
    ids=lambda ss: "+".join(s.name for s in ss),
)
def test_aggregate_status_follows_its_rule_for_every_combination(statuses, cancelled):
    expected = expected_aggregate(statuses, cancelled)
    for order in {tuple(p) for p in itertools.permutations(statuses)}:
        assert aggregate_status(order, cancelled=cancelled) is expected


@pytest.mark.parametrize(
    ("statuses", "cancelled", "expected"),
    [
        ([QUEUED, QUEUED], False, QUEUED),
        ([INITIALIZING, QUEUED], False, QUEUED),
        ([QUEUED, RUNNING], False, RUNNING),
        ([QUEUED, DONE], False, RUNNING),  # some finished: the set is under way
        ([QUEUED, ERROR], False, RUNNING),  # an error is not final while work remains
        ([RUNNING, ERROR], False, RUNNING),
        ([RUNNING, CANCELLED], False, RUNNING),
        ([DONE, DONE], False, DONE),
        ([DONE, ERROR], False, ERROR),
        ([ERROR, ERROR], False, ERROR),
        ([DONE, CANCELLED], False, CANCELLED),
        ([ERROR, CANCELLED], False, CANCELLED),  # cancelled wins over error
        ([DONE, DONE], True, CANCELLED),
        ([DONE, ERROR], True, CANCELLED),
        ([RUNNING, DONE], True, RUNNING),  # cancelled, but still running: not final
        ([QUEUED], True, QUEUED),
    ],
)
def test_aggregate_status_examples(statuses, cancelled, expected):
    assert aggregate_status(statuses, cancelled=cancelled) is expected


def test_an_empty_set_is_done():
    assert aggregate_status([]) is DONE


def test_aggregate_status_accepts_any_iterable_once():
    assert aggregate_status(s for s in [DONE, RUNNING]) is RUNNING
    assert aggregate_status(iter([DONE, ERROR])) is ERROR


def test_a_cancelled_set_of_never_started_sub_jobs_is_cancelled():
    statuses = [celery_to_job_status("PENDING", cancelled=True) for _ in range(3)]
    assert aggregate_status(statuses, cancelled=True) is CANCELLED


def test_a_cancelled_set_waits_for_its_running_sub_job():
    statuses = [
        celery_to_job_status("PENDING", cancelled=True),
        celery_to_job_status("STARTED", cancelled=True),
        celery_to_job_status("SUCCESS", cancelled=True),
    ]
    assert aggregate_status(statuses, cancelled=True) is RUNNING


def test_the_aggregate_of_counts_is_the_aggregate_of_the_statuses_they_count():
    import itertools

    from jobset.status import aggregate_counts

    kinds = [
        JobStatus.QUEUED,
        JobStatus.RUNNING,
        JobStatus.DONE,
        JobStatus.ERROR,
        JobStatus.CANCELLED,
    ]
    for combo in itertools.product(range(3), repeat=len(kinds)):
        statuses = [k for k, n in zip(kinds, combo, strict=True) for _ in range(n)]
        counts = {k: n for k, n in zip(kinds, combo, strict=True) if k is not JobStatus.QUEUED}
        for cancelled in (False, True):
            seen = [
                JobStatus.CANCELLED if cancelled and s is JobStatus.QUEUED else s for s in statuses
            ]
            assert aggregate_counts(counts, len(statuses), cancelled=cancelled) == aggregate_status(
                seen, cancelled=cancelled
            ), (combo, cancelled)


def test_a_tally_read_ignores_fields_that_are_not_letters_with_integer_counts():
    from jobset.executors.celery.tally import counts

    raw = {b"D": b"3", b"R": b"x", b"\xff": b"1", b"F": b"-2", b"Z": b"5"}
    assert counts(raw) == {JobStatus.DONE: 3, JobStatus.ERROR: 0}
