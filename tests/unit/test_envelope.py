"""Pure: a sub-job message's headers and body beyond its kwargs (protocol.check_envelope)."""

from __future__ import annotations

import pytest
from celery import Celery

from jobset.errors import SecurityError
from jobset.protocol import RUN_SUB_JOB_TASK, check_envelope


@pytest.fixture(scope="module")
def message() -> tuple[dict, tuple]:
    """What Celery's create_task_message writes for the producer (the publisher uses it)."""
    app = Celery(broker="memory://")
    proto = app.amqp.create_task_message(
        "tid", RUN_SUB_JOB_TASK, (), {"index": 0}, reply_to="x", create_sent_event=True,
        argsrepr="()", kwargsrepr="{'index': 0}", time_limit=3, soft_time_limit=2,
    )  # fmt: skip
    app.close()
    return dict(proto.headers), proto.body


def test_the_message_celery_builds_for_the_producer_passes(message):
    headers, body = message
    check_envelope(headers, body)
    check_envelope({**headers, "retries": 3, "eta": "2026-12-04T21:00:00+00:00"}, body)
    check_envelope({**headers, "redelivered": True}, body)  # kombu put it back in its queue


WORKFLOW = [
    ("callbacks", [{"task": "x", "options": {"queue": "jobset:v:cancelled"}}]),
    ("errbacks", [{"task": "x", "options": {"queue": "jobset:v:cancelled"}}]),
    ("chain", [{"task": "x"}]),
    ("chord", {"task": "x"}),
    ("group", None),  # a field the producer never puts in the embed
]


@pytest.mark.parametrize(("field", "value"), WORKFLOW, ids=[f for f, _ in WORKFLOW])
def test_a_body_that_carries_a_workflow_field_is_refused(message, field, value):
    headers, (args, kwargs, embed) = message
    with pytest.raises(SecurityError, match=field):
        check_envelope(headers, (args, kwargs, {**embed, field: value}))


HEADERS = [
    ("group", "a-group"),
    ("group_index", 1),
    ("shadow", "other"),
    ("expires", "2020-01-01T00:00:00"),
    ("replaced_task_nesting", 1),
    ("stamped_headers", ["x"]),
    ("stamps", {"x": 1}),
    ("retries", -1),
    ("retries", 10**6),
    ("timelimit", "x"),
    ("timelimit", [1, 2, 3]),
    ("chord", {"task": "x"}),
    ("callbacks", []),
    ("x-anything", 1),
    ("task", "celery.chord_unlock"),
    ("lang", "js"),
    ("id", "x" * 65),
    ("parent_id", 7),
    ("eta", "a\x00b"),
    ("redelivered", "yes"),
    ("kwargsrepr", "x" * 5000),
]


@pytest.mark.parametrize(("field", "value"), HEADERS, ids=[f"{f}={v!r}"[:40] for f, v in HEADERS])
def test_a_header_the_producer_never_sends_is_refused(message, field, value):
    headers, body = message
    with pytest.raises(SecurityError):
        check_envelope({**headers, field: value}, body)


@pytest.mark.parametrize(
    "body", [None, [], ((), {}), (("a",), {}, {}), ((), {}, [1]), "x", ((), {}, {}, {})]
)
def test_a_body_that_is_not_empty_args_kwargs_and_an_empty_embed_is_refused(message, body):
    with pytest.raises(SecurityError):
        check_envelope(message[0], body)


def test_headers_that_are_not_a_mapping_are_refused(message):
    with pytest.raises(SecurityError):
        check_envelope([("task", RUN_SUB_JOB_TASK)], message[1])
