"""Sub-job spans on the workers, for the set's one trace (:mod:`jobset.observe.tracing`).

Set up in each pool child after the fork (``worker_process_init``): an exporter's thread
made in the prefork parent would not survive into the children, which is how spans of
fanned-out tasks go missing.  Each sub-job is a ``jobset.sub_job`` span, a child of the
set's ``jobset.run`` span (its context read from Redis once per set and pool child), from
the time the set was published to the end of the run: ``jobset.queued`` until a worker took
it, then the task's phases (:func:`phase`: payload read, simulation, result store).
A sub-job that runs again after its worker died carries a ``redelivered`` event, a retry a
``retry`` event.  Off (the default), every hook returns at its first line.

The task calls only :func:`phase` and :func:`event`; everything else hangs on Celery's
signals here, apart from the task's code.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import Any

from celery.signals import (
    task_postrun,
    task_prerun,
    worker_process_init,
    worker_process_shutdown,
)

from jobset import protocol
from jobset.executors.celery import tally
from jobset.observe import tracing
from jobset.protocol import RUN_SUB_JOB_TASK

logger = logging.getLogger(__name__)

# Sets whose trace context this pool child remembers (one Redis read per set and child).
PARENTS_KEPT = 256
_parents: OrderedDict[str, tuple[str, float] | None] = OrderedDict()
_open: dict[str, tuple[Any, Any]] = {}  # task id -> (span, context token)

# The task's hooks: the same no-op when tracing is off.
phase = tracing.span
event = tracing.event


SERVICE_NAME = "jobset-worker"
# A pool without children (solo, threads) sets tracing up at its first sub-job instead.
tracing.name_service(SERVICE_NAME)


@worker_process_init.connect
def _set_up(**_: Any) -> None:
    tracing.setup(SERVICE_NAME)


@worker_process_shutdown.connect
def _flush(**_: Any) -> None:
    tracing.shutdown()


def _parent_of(client: Any, jobset_id: str) -> tuple[str, float] | None:
    if jobset_id in _parents:
        _parents.move_to_end(jobset_id)
        return _parents[jobset_id]
    try:
        found = tracing.parse_carrier(client.get(protocol.trace_key(jobset_id)))
    except Exception:
        logger.warning("could not read the trace context of %s", jobset_id, exc_info=True)
        return None  # not remembered: the next sub-job tries again
    _parents[jobset_id] = found
    if len(_parents) > PARENTS_KEPT:
        _parents.popitem(last=False)
    return found


@task_prerun.connect
def _start(task_id: str = "", task: Any = None, kwargs: Any = None, **_: Any) -> None:
    if not tracing.enabled() or getattr(task, "name", None) != RUN_SUB_JOB_TASK:
        return
    ref = tally.ref_of(task_id, kwargs)
    if ref is None:
        return
    from opentelemetry import context, trace

    found = _parent_of(task.app.backend.client, ref.jobset_id)
    parent = tracing.context_of(found[0]) if found is not None else None
    now_ns = time.time_ns()
    start_ns = min(now_ns, int(found[1] * 1e9)) if found is not None else now_ns
    request = task.request
    queue = (getattr(request, "delivery_info", None) or {}).get("routing_key")
    tracer = tracing.tracer()
    if tracer is None:  # asked for, but not installed (logged once)
        return
    span = tracer.start_span(
        "jobset.sub_job",
        context=parent,
        kind=trace.SpanKind.CONSUMER,
        start_time=start_ns,
        attributes=tracing.span_attributes(
            {
                "jobset_id": ref.jobset_id,
                "index": ref.index,
                "task_id": task_id,
                "experiments": ref.experiments,
                "worker": request.hostname,
                "queue": queue,
                "retries": request.retries or 0,
            }
        ),
    )
    inside = trace.set_span_in_context(span)
    tracer.start_span("jobset.queued", context=inside, start_time=start_ns).end(end_time=now_ns)
    if request.retries:
        span.add_event("retry", {"jobset.retries": int(request.retries)})
    _open[task_id] = (span, context.attach(inside))


@task_postrun.connect
def _end(task_id: str = "", retval: Any = None, state: str | None = None, **_: Any) -> None:
    opened = _open.pop(task_id, None)
    if opened is None:
        return
    from opentelemetry import context
    from opentelemetry.trace import Status, StatusCode

    span, token = opened
    span.set_attribute("jobset.state", state or "")
    if isinstance(retval, dict) and isinstance(retval.get("shots"), int):
        span.set_attribute("jobset.shots", retval["shots"])
    if state == "FAILURE":
        name = type(retval).__name__ if isinstance(retval, BaseException) else "failed"
        span.set_status(Status(StatusCode.ERROR, name))
    span.end()
    context.detach(token)
