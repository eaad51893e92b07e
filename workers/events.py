"""How a worker sends Celery's task events (``JOBSET_TASK_EVENTS``), which Flower shows.

Each sub-job makes three task events (received, started, succeeded or failed), and
Celery's own worker publishes each as soon as its event loop turns: three Redis round
trips a sub-job in the worker's main process, which also delivers and acknowledges the
messages, so for sub-jobs of a few milliseconds the events cost more than the queue
itself (measured in docs/benchmarks.md, "Fine-grained sets").

- ``batched`` (the default): events are on, and :class:`BatchedEvents` sends what a
  worker buffered at most every :data:`EVENT_BATCH_S` seconds, or at once when
  :data:`EVENT_BATCH_LIMIT` are waiting, as one message of a list of events: the
  ``task-multi`` message that Celery's own dispatcher sends when its buffer fills, which
  every event receiver (Flower, ``celery events``) reads as the events it holds, each
  with the time it happened.  A monitor sees a sub-job at most that much later.
- ``each``: Celery's own behaviour, every event published as it happens.
- ``off``: no task events (worker heartbeats still go out: Flower lists the workers, not
  their tasks).
"""

from __future__ import annotations

import logging
from typing import Any

from celery import bootsteps

from jobset.settings import TASK_EVENTS_BATCHED

logger = logging.getLogger(__name__)

# At most this long between an event and its publication.
EVENT_BATCH_S = 0.5
# A batch this long goes out at once (about 170 sub-jobs' events: a few tens of kB).
EVENT_BATCH_LIMIT = 512


class BatchedEvents(bootsteps.StartStopStep):
    """Send the buffered task events on a timer instead of at each turn of the event loop.

    Celery buffers task events when the worker has an event loop (the prefork and solo
    pools on Redis) and asks for a flush at the next turn; this step replaces that request
    with one timer per batch.  It runs after Celery's ``Events`` step, which makes a new
    dispatcher whenever the connection is made again, and sends what is buffered when the
    consumer stops, so a worker that shuts down keeps its last events.
    """

    requires = {"celery.worker.consumer.events:Events"}

    def __init__(self, consumer: Any, **kwargs: Any) -> None:
        super().__init__(consumer, **kwargs)
        self.consumer = consumer
        self.tref: Any = None

    def include_if(self, consumer: Any) -> bool:
        return bool(consumer.app.conf.jobset_settings.task_events == TASK_EVENTS_BATCHED)

    def start(self, consumer: Any) -> None:
        dispatcher = consumer.event_dispatcher
        # Without an event loop Celery does not buffer: every event goes out as it is sent.
        if dispatcher is None or not dispatcher.buffer_group or consumer.hub is None:
            return
        dispatcher.buffer_limit = EVENT_BATCH_LIMIT
        dispatcher.on_send_buffered = self._schedule

    def stop(self, consumer: Any) -> None:
        self._cancel()
        self._flush()

    def shutdown(self, consumer: Any) -> None:
        self.stop(consumer)

    def _schedule(self) -> None:
        if self.tref is None:
            self.tref = self.consumer.timer.call_after(EVENT_BATCH_S, self._on_timer)

    def _on_timer(self) -> None:
        self.tref = None
        self._flush()

    def _cancel(self) -> None:
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None

    def _flush(self) -> None:
        dispatcher = self.consumer.event_dispatcher
        if dispatcher is None:
            return
        try:
            dispatcher.flush()
        except Exception:  # a monitor's detail: never the worker's failure
            logger.warning("could not send the buffered task events", exc_info=True)
