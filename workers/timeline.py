"""Each run of a sub-job, appended to its set's timeline (:mod:`jobset.observe.timeline`).

Signal handlers only, apart from the task: the start is noted in the pool child when the
task starts, and one pipelined ``RPUSH`` + ``EXPIRE`` records the run when it ends, in any
state but success, whose entry the task writes with the rest of its end
(:func:`run_entry_of`, ``workers.steps.end``).  A failure to record is logged, never the
sub-job's failure.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery.signals import task_postrun, task_prerun

from jobset.errors import SecurityError
from jobset.executors.celery import tally
from jobset.observe.timeline import run_entry
from jobset.protocol import RUN_SUB_JOB_TASK, timeline_key

logger = logging.getLogger(__name__)

_started: dict[str, float] = {}  # task id -> Unix time, in this pool child


@task_prerun.connect
def _note_start(task_id: str = "", task: Any = None, **_: Any) -> None:
    if getattr(task, "name", None) == RUN_SUB_JOB_TASK:
        _started[task_id] = time.time()


def run_entry_of(task: Any, ref: Any, state: str) -> str | None:
    """The entry of this run of ``task`` (sub-job ``ref``) ending now in ``state``, taken
    from what the postrun handler would record (None: its start was not noted)."""
    started = _started.pop(task.request.id, None)
    if started is None:
        return None
    return _entry(task, ref, started, state)


def _entry(task: Any, ref: Any, started: float, state: str) -> str:
    request = task.request
    queue = (getattr(request, "delivery_info", None) or {}).get("routing_key") or ""
    return run_entry(
        ref.index, str(request.hostname or ""), str(queue), started, time.time(), state or ""
    )


@task_postrun.connect
def _record_run(
    task_id: str = "",
    task: Any = None,
    kwargs: Any = None,
    retval: Any = None,
    state: str | None = None,
    **_: Any,
) -> None:
    if getattr(task, "name", None) != RUN_SUB_JOB_TASK:
        return
    started = _started.pop(task_id, None)
    ref = tally.ref_of(task_id, kwargs)
    # A refused message (no such set, a forged field) is no run: it writes nothing of a set.
    if started is None or ref is None or isinstance(retval, SecurityError):
        return
    entry = _entry(task, ref, started, state or "")
    try:
        key = timeline_key(ref.jobset_id)
        pipe = task.app.backend.client.pipeline(transaction=False)
        pipe.rpush(key, entry)
        pipe.expire(key, task.app.conf.jobset_settings.result_ttl_s)
        pipe.execute()
    except Exception:
        logger.warning(
            "could not record the run of sub-job %d of %s", ref.index, ref.jobset_id, exc_info=True
        )
