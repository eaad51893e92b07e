"""Publishing sub-job messages: the one path every submit and every rerun takes.

Celery's ``send_task`` costs about a millisecond a message here, most of it for things a
job set never uses: it subscribes the producer's result backend to the task's channel and
builds an ``AsyncResult`` whose finalizer unsubscribes again, two Redis round trips per
message that no pipeline can batch.  A set reads its states from the result backend's
keys (:class:`jobset.celery_run.CeleryRun`), so :class:`Publisher` builds the same task
message with Celery's own ``create_task_message`` and sends it with Celery's
``send_task_message`` on a producer whose Redis commands a caller may batch: the message
on the wire is the one ``send_task`` would publish (protocol 2, the same headers, the
same task-sent event).
"""

from __future__ import annotations

from typing import Any

from . import compat
from .protocol import DEFAULT_QUEUE, GPU_QUEUE, RUN_SUB_JOB_TASK, SubJobRef

# Redis commands kombu may buffer while publishing one chunk (a message and its task-sent
# event take a few each); a chunk never reaches it, so each is flushed once, at its end.
PUBLISH_BATCH_OPS = 4096
# The hard limit follows the soft one by this much, or 5 % of the limit if that is more.
# Aer holds the GIL while it simulates, so the soft limit cannot interrupt a simulation:
# the hard limit (SIGKILL of the pool child) is what stops it (see workers.request).
HARD_LIMIT_GRACE_S = 1.0


def queue_for(backend: Any) -> str:
    """The size-class queue of a backend: GPU backends go to the GPU queue."""
    return GPU_QUEUE if backend.options.get("device", "CPU") == "GPU" else DEFAULT_QUEUE


def time_limits(timeout_s: float | None) -> dict[str, float]:
    """Celery's soft and hard limits for a set's ``timeout_s`` (nothing when it is None)."""
    if timeout_s is None:
        return {}
    return {
        "soft_time_limit": timeout_s,
        "time_limit": timeout_s + max(HARD_LIMIT_GRACE_S, 0.05 * timeout_s),
    }


class Publisher:
    """Sends sub-job messages with ``producer`` (a kombu producer of ``app``'s pool).

    Routing and declaring a queue is done once per queue; the rest is per message.
    """

    def __init__(self, app: Any, producer: Any) -> None:
        self.app = app
        self.producer = producer
        self._routes: dict[str, dict[str, Any]] = {}
        self._send = app.amqp.send_task_message
        self._sent_event = bool(app.conf.task_send_sent_event)
        self._versions = compat.producer_versions()

    def _route(self, queue: str) -> dict[str, Any]:
        route = self._routes.get(queue)
        if route is None:
            route = self.app.amqp.router.route({"queue": queue}, RUN_SUB_JOB_TASK, (), {}, None)
            # Declared (bound to its exchange) once here, not once per message.
            self.producer.maybe_declare(route["queue"])
            route["declare"] = []
            self._routes[queue] = route
        return route

    def send(
        self,
        jobset_id: str,
        index: int,
        experiments: int,
        *,
        queue: str,
        timeout_s: float | None,
        priority: int | None = None,
    ) -> None:
        """Publish sub-job ``index``'s message: its ids, the producer's versions, limits.

        ``priority`` is the broker's message priority (:class:`jobset.protocol.Dispatch`);
        None publishes without one.
        """
        ref = SubJobRef(jobset_id, index, experiments, versions=self._versions)
        kwargs = ref.to_kwargs()
        message = self.app.amqp.create_task_message(
            ref.task_id,
            RUN_SUB_JOB_TASK,
            (),
            kwargs,
            reply_to=self.app.thread_oid,
            create_sent_event=self._sent_event,
            # What Flower shows; Celery's own saferepr of it costs more than the rest.
            argsrepr="()",
            kwargsrepr=repr(kwargs),
            **time_limits(timeout_s),
        )
        options = self._route(queue)
        if priority is not None:
            options = {**options, "priority": priority}
        self._send(self.producer, RUN_SUB_JOB_TASK, message, **options)
