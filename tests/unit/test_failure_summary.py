"""A failed or cancelled set's error is a summary; the full list is on ``.failures``."""

from __future__ import annotations

from jobset import JobSetCancelledError, JobSetFailedError, SubJobFailure


def _failures(cancelled: int, timeouts: int, simulation: int) -> list[SubJobFailure]:
    out = [
        SubJobFailure(
            i,
            f"task-{i}",
            "ERROR",
            f"SubJobTimeoutError: sub-job {i} ran past",
            "SubJobTimeoutError",
        )
        for i in range(timeouts)
    ]
    out += [
        SubJobFailure(
            timeouts + i,
            f"task-{timeouts + i}",
            "ERROR",
            "SimulationFailedError: Insufficient memory " + "x" * 2000,
            "SimulationFailedError",
        )
        for i in range(simulation)
    ]
    start = timeouts + simulation
    out += [
        SubJobFailure(start + i, f"task-{start + i}", "CANCELLED", "cancelled")
        for i in range(cancelled)
    ]
    return out


def test_a_set_with_thousands_of_failures_is_told_in_a_few_lines():
    failures = _failures(cancelled=0, timeouts=2, simulation=2729)
    error = JobSetFailedError("set-1", failures, sub_jobs=3000)
    message = str(error)
    lines = message.splitlines()
    assert lines[0] == "job set set-1: 2731 sub-job(s) of 3000 failed"
    assert lines[1] == "  by type: SimulationFailedError 2729, SubJobTimeoutError 2"
    assert lines[2].startswith("  sub-job 0 (task task-0) ERROR: SubJobTimeoutError")
    assert lines[-1] == "  ... 2728 more: the error's .failures lists every one"
    assert len(lines) == 6 and len(message) < 1200, message
    assert len(error.failures) == 2731  # the whole list is still there


def test_cancelled_sub_jobs_are_not_counted_as_failed():
    message = str(JobSetFailedError("set-1", _failures(cancelled=5, timeouts=1, simulation=0)))
    assert message.splitlines()[0] == "job set set-1: 1 sub-job(s) failed, 5 cancelled"
    assert "by type: SubJobTimeoutError 1" in message and "CANCELLED" not in message


def test_a_cancelled_set_says_so_and_how_to_get_what_finished():
    failures = _failures(cancelled=2731, timeouts=0, simulation=0)
    error = JobSetCancelledError("set-1", failures, sub_jobs=3000)
    assert isinstance(error, JobSetFailedError)
    assert str(error) == (
        "job set set-1 was cancelled: 269 of 3000 sub-job(s) had finished, 2731 cancelled; "
        "result(partial=True) returns the finished ones (the others success=False), "
        ".failures lists the rest"
    )
    mixed = str(JobSetCancelledError("set-1", _failures(3, 0, 1), sub_jobs=10))
    assert "6 of 10 sub-job(s) had finished, 3 cancelled, 1 failed" in mixed
    assert "by type: SimulationFailedError 1" in mixed
