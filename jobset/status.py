"""Pure: Celery task states -> ``JobStatus``, and the rule that makes one status of many."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from qiskit.providers import JobStatus

FINAL = frozenset({JobStatus.DONE, JobStatus.CANCELLED, JobStatus.ERROR})

_CELERY_TO_JOB = {
    # Celery reports an id it has never seen as PENDING: a published sub-job that no
    # worker has started yet reads the same, so "unknown" is QUEUED here; the set knows
    # its own ids, and a cancelled set turns PENDING into CANCELLED (see below).
    "PENDING": JobStatus.QUEUED,
    "RECEIVED": JobStatus.QUEUED,
    "RETRY": JobStatus.QUEUED,
    "STARTED": JobStatus.RUNNING,
    "SUCCESS": JobStatus.DONE,
    "FAILURE": JobStatus.ERROR,
    "REVOKED": JobStatus.CANCELLED,
    "REJECTED": JobStatus.ERROR,
    "IGNORED": JobStatus.CANCELLED,
}


def celery_to_job_status(state: str | None, *, cancelled: bool = False) -> JobStatus:
    """The ``JobStatus`` of one sub-job whose Celery state is ``state``.

    ``cancelled`` is the set's durable cancel mark: a sub-job that has not started by
    then will never run (workers check the mark first), so it is already CANCELLED.
    Unknown states (custom ones) count as RUNNING: the task exists and is not final.
    """
    status = _CELERY_TO_JOB.get(state or "PENDING", JobStatus.RUNNING)
    if cancelled and status in (JobStatus.QUEUED, JobStatus.INITIALIZING):
        return JobStatus.CANCELLED
    return status


def aggregate_status(statuses: Iterable[JobStatus], *, cancelled: bool = False) -> JobStatus:
    """One status for a set of sub-jobs.

    Until every sub-job is final: RUNNING once any runs or has finished, else QUEUED.
    Once all are final: CANCELLED if the set was cancelled (or any sub-job was), else
    ERROR if any failed, else DONE.  So ``wait_for_final_state`` never returns while work
    is still running.
    """
    seen = list(statuses)
    if not seen:
        return JobStatus.DONE
    if all(s in FINAL for s in seen):
        if cancelled or JobStatus.CANCELLED in seen:
            return JobStatus.CANCELLED
        if JobStatus.ERROR in seen:
            return JobStatus.ERROR
        return JobStatus.DONE
    if any(s is JobStatus.RUNNING or s in FINAL for s in seen):
        return JobStatus.RUNNING
    return JobStatus.QUEUED


def aggregate_counts(
    counts: Mapping[JobStatus, int], total: int, *, cancelled: bool = False
) -> JobStatus:
    """:func:`aggregate_status` of ``total`` sub-jobs given as counts per status.

    Sub-jobs not counted have not started: QUEUED, or CANCELLED in a cancelled set.
    """
    running = counts.get(JobStatus.RUNNING, 0)
    finished = sum(n for s, n in counts.items() if s in FINAL)
    waiting = max(0, total - running - finished)
    if total <= 0:
        return JobStatus.DONE
    if running == 0 and (waiting == 0 or cancelled):
        if cancelled or counts.get(JobStatus.CANCELLED, 0):
            return JobStatus.CANCELLED
        if counts.get(JobStatus.ERROR, 0):
            return JobStatus.ERROR
        return JobStatus.DONE
    if running or finished:
        return JobStatus.RUNNING
    return JobStatus.QUEUED
