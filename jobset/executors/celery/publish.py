"""Publishing sub-job messages: the one path every submit and every rerun takes.

Celery's ``send_task`` costs about a millisecond a message here, most of it for things a
job set never uses: it subscribes the producer's result backend to the task's channel and
builds an ``AsyncResult`` whose finalizer unsubscribes again, two Redis round trips per
message that no pipeline can batch.  A set reads its states from the result backend's
keys (:class:`.run.CeleryRun`), so :class:`Publisher` builds the same task
message with Celery's own ``create_task_message`` and sends it with Celery's
``send_task_message`` on a producer whose Redis commands a caller may batch: the message
on the wire is the one ``send_task`` would publish (protocol 2, the same headers, the
same task-sent event).
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import time
from collections.abc import Callable, Sequence
from typing import Any

from celery.utils.time import utcoffset

from ...protocol import (
    DEFAULT_QUEUE,
    GPU_QUEUE,
    RUN_SUB_JOB_TASK,
    Dispatch,
    SubJobRef,
    check_index,
    check_jobset_id,
    task_id,
)
from .. import versions as compat
from . import tally

# Redis commands kombu may buffer while publishing one chunk (a message and its task-sent
# event take a few each); a chunk never reaches it, so each is flushed once, at its end.
PUBLISH_BATCH_OPS = 4096
# kombu's delivery modes: a task message is persistent, an event transient.
_PERSISTENT = 2
_SENT_EVENT = "task-sent"
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


def _b64(text: str) -> str:
    # kombu's Redis transport stores every body base64-encoded (its ``body_encoding``).
    return base64.b64encode(text.encode()).decode()


_json_str = json.encoder.encode_basestring_ascii  # what json.dumps writes for a str
# Markers no real value contains: a fresh token per process.
_TOKEN = secrets.token_hex(8)
_HOLE = re.compile(f"""["']@{_TOKEN}@(\\w+)@["']""")


def _hole(name: str) -> str:
    return f"@{_TOKEN}@{name}@"


class _Holes:
    """Text serialised once (JSON or repr) from a prototype whose varying values are
    markers (:func:`_hole`); :meth:`fill` puts each value's own serialised form there."""

    def __init__(self, text: str) -> None:
        self._parts: list[str] = []
        self._names: list[str] = []
        cursor = 0
        for found in _HOLE.finditer(text):
            self._parts.append(text[cursor : found.start()])
            self._names.append(found.group(1))
            cursor = found.end()
        self._tail = text[cursor:]

    def fill(self, values: dict[str, str]) -> str:
        out: list[str] = []
        for part, name in zip(self._parts, self._names, strict=True):
            out += (part, values[name])
        out.append(self._tail)
        return "".join(out)


class BulkPublisher(Publisher):
    """The same messages as :meth:`Publisher.send`, written as Redis commands on a pipeline.

    Celery and kombu spend about 0.2 ms building and routing each message and its
    task-sent event, one call chain per message (routing, declaring, four JSON
    encodings, retry wrappers).  A job set publishes thousands of messages that differ
    only in a few fields, so this serialises, once, a prototype that Celery itself made
    (:meth:`~celery.app.amqp.AMQP.create_task_message`, the event dispatcher's fields) in
    the envelope kombu's Redis transport writes, with markers where the ids, kwargs,
    queue, priority, delivery tag, clock and time go; each message is then that text
    with those values filled in.  Per chunk it adds to the caller's pipeline one ``LPUSH``
    of the chunk's messages per queue list and one ``PUBLISH`` of their task-sent events
    (what Flower shows) as a list, as Celery's dispatcher sends a buffered group; the
    pipeline may carry the payloads of the same sub-jobs: one round trip for all.
    ``tests/integration/test_scale.py`` pins what it writes to what Celery writes.

    :attr:`bulk` is False for a transport this does not know how to write for (kombu's
    global key prefix, queues that expire): :meth:`Publisher.send` is the path then.
    """

    def __init__(self, app: Any, producer: Any, *, timeout_s: float | None) -> None:
        super().__init__(app, producer)
        self.timeout_s = timeout_s
        channel = producer.channel
        self.bulk = (
            type(channel).__module__ == "kombu.transport.redis"
            and not getattr(channel, "global_keyprefix", "")
            and not getattr(channel, "_expires", None)
        )
        self._channel = channel
        self._lists: dict[tuple[str, int], str] = {}
        self._topics: list[str] | None = None
        self._checked = ""  # the set id last validated
        kwargs = SubJobRef(
            "00000000-0000-0000-0000-000000000000", 0, 1, versions=self._versions
        ).to_kwargs()
        kwargs.update(jobset_id=_hole("set"), index=_hole("index"), experiments=_hole("n"))
        proto = app.amqp.create_task_message(
            _hole("tid"),
            RUN_SUB_JOB_TASK,
            (),
            kwargs,
            reply_to=app.thread_oid,
            create_sent_event=True,
            argsrepr="()",
            kwargsrepr=_hole("kwargsrepr"),
            **time_limits(timeout_s),
        )
        self._kwargsrepr = _Holes(repr(kwargs))
        self._body = _Holes(json.dumps([list(proto.body[0]), proto.body[1], proto.body[2]]))
        properties = {
            **proto.properties,
            "delivery_mode": _PERSISTENT,
            "delivery_info": {"exchange": "", "routing_key": _hole("queue")},
            "priority": _hole("priority"),
            "body_encoding": "base64",
            "delivery_tag": _hole("tag"),
        }
        self._message = _Holes(json.dumps(_envelope(proto.headers, properties)))
        dispatcher = app.amqp._event_dispatcher
        self._event_exchange = dispatcher.exchange.name
        # Celery's routing key for a list of events of one group ("task"): "task.multi".
        self._event_key = f"{_SENT_EVENT.partition('-')[0]}.multi"
        self._events: list[str] = []
        self._messages: dict[str, list[str]] = {}
        event = {
            "hostname": dispatcher.hostname,
            # Read once per publisher: the hours to UTC change only at a DST switch.
            "utcoffset": utcoffset(),
            "pid": dispatcher.pid,
            "clock": _hole("clock"),
            **proto.sent_event,
            "queue": _hole("queue"),
            "exchange": "",
            "routing_key": _hole("queue"),
            "timestamp": _hole("time"),
            "type": _SENT_EVENT,
        }
        self._event = _Holes(json.dumps(event))
        event_properties = {
            "delivery_mode": dispatcher.delivery_mode,
            "delivery_info": {"exchange": self._event_exchange, "routing_key": self._event_key},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": _hole("tag"),
        }
        self._event_envelope = _Holes(json.dumps(_envelope(dispatcher.headers, event_properties)))

    def _list(self, queue: str, priority: int) -> str:
        key = self._lists.get((queue, priority))
        if key is None:
            self._route(queue)  # declared once, by kombu
            key = self._lists[(queue, priority)] = self._channel._q_for_pri(queue, priority)
        return key

    def add(
        self,
        jobset_id: str,
        index: int,
        experiments: int,
        *,
        queue: str,
        priority: int | None = None,
    ) -> None:
        """Add sub-job ``index``'s message and its task-sent event to the next :meth:`flush`."""
        set_id = jobset_id if jobset_id == self._checked else check_jobset_id(jobset_id)
        self._checked = set_id
        tid = task_id(set_id, check_index(index))
        level = max(0, min(9, priority or 0))
        number = {"set": repr(set_id), "index": str(index), "n": str(int(experiments))}
        kwargsrepr = _json_str(self._kwargsrepr.fill(number))
        values = {
            "set": _json_str(set_id),
            "index": str(index),
            "n": str(int(experiments)),
            "tid": _json_str(tid),
            "kwargsrepr": kwargsrepr,
            "queue": _json_str(queue),
            "priority": str(level),
            "tag": _delivery_tag(),
        }
        values["body"] = _json_str(_b64(self._body.fill(values)))
        self._messages.setdefault(self._list(queue, level), []).append(self._message.fill(values))
        if not self._sent_event:
            return
        values["clock"] = str(int(self.app.clock.forward()))
        values["time"] = repr(time.time())
        self._events.append(self._event.fill(values))

    def flush(self, pipe: Any) -> None:
        """Add to ``pipe`` the messages of the sub-jobs added since the last call, one
        ``LPUSH`` per list (in the order they were added: the first is taken first), then
        their task-sent events as one message: a list of events, what Celery's own
        dispatcher sends for a buffered group and its event receivers (Flower's) read."""
        for key, messages in self._messages.items():
            pipe.lpush(key, *messages)
        self._messages.clear()
        if not self._events:
            return
        body = _b64("[" + ", ".join(self._events) + "]")
        self._events.clear()
        envelope = self._event_envelope.fill({"body": _json_str(body), "tag": _delivery_tag()})
        if self._topics is None:
            self._topics = list(
                self._channel._get_publish_topics(self._event_exchange, self._event_key)
            )
        for topic in self._topics:
            pipe.publish(topic, envelope)


def _delivery_tag() -> str:
    """A random (version 4) UUID in JSON, as kombu tags each message, without ``uuid.UUID``."""
    h = os.urandom(16).hex()
    variant = "89ab"[int(h[16], 16) & 3]
    return f'"{h[:8]}-{h[8:12]}-4{h[13:16]}-{variant}{h[17:20]}-{h[20:]}"'


def _envelope(headers: Any, properties: dict[str, Any]) -> dict[str, Any]:
    """A message as kombu's Redis transport stores it (its body a marker, base64 later)."""
    return {
        "body": _hole("body"),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": dict(headers),
        "properties": properties,
    }


def publish_chunk(
    publisher: BulkPublisher,
    client: Any,
    broker: Any,
    jobset_id: str,
    sub_jobs: Sequence[tuple[int, int]],
    *,
    dispatch: Dispatch,
    ttl_s: int,
    writes: Callable[[Any], None] | None = None,
    execute: Callable[[Any], Any] | None = None,
) -> None:
    """Publish ``sub_jobs`` (``(index, experiments)`` pairs) of a set, with what they need.

    On ``client``'s pipeline, in this order: ``writes`` (the sub-jobs' payloads), their
    pending bits (:func:`.tally.mark_pending`), then their messages; when the
    broker is that same client (one Redis for both) it is a single round trip, and a
    worker can never pop a message whose payload is not written yet.  A pipeline that
    meets a connection error is sent again by the client's retries, so a message may be
    published twice: a sub-job that runs twice is stored and tallied once.  ``execute``
    sends the pipeline that holds the payloads (on a replicated Redis, it waits for a
    replica: :func:`.connect.execute_replicated`).
    """
    execute = _execute if execute is None else execute
    pipe = client.pipeline(transaction=False)
    if writes is not None:
        writes(pipe)
    tally.mark_pending(pipe, jobset_id, [index for index, _ in sub_jobs], ttl_s=ttl_s)
    priority = dispatch.broker_priority
    if not publisher.bulk:
        execute(pipe)
        with publisher.producer.batch(max_size=PUBLISH_BATCH_OPS):
            for index, experiments in sub_jobs:
                publisher.send(
                    jobset_id,
                    index,
                    experiments,
                    queue=dispatch.queue_of(index),
                    priority=priority,
                    timeout_s=publisher.timeout_s,
                )
        return
    if broker is not client:
        execute(pipe)
        pipe = broker.pipeline(transaction=False)
        execute = _execute
    for index, experiments in sub_jobs:
        publisher.add(
            jobset_id, index, experiments, queue=dispatch.queue_of(index), priority=priority
        )
    publisher.flush(pipe)
    execute(pipe)


def _execute(pipe: Any) -> Any:
    return pipe.execute()
