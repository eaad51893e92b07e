"""Reading the broker's lists for lost sub-jobs: task ids found in messages, every priority list."""

from __future__ import annotations

import json

from jobset.executors.celery.recovery import task_id_of
from jobset.protocol import queue_lists


def test_a_message_is_found_by_its_task_id_in_a_queue_and_in_the_unacked_hash():
    message = {"body": "e30=", "headers": {"id": "set-3", "task": "jobset.run_sub_job"}}
    assert task_id_of(json.dumps(message).encode()) == "set-3"
    assert task_id_of(json.dumps([message, "jobset.cpu", "jobset.cpu"])) == "set-3"
    assert task_id_of(b"not json") is None
    assert task_id_of(json.dumps({"headers": "odd"})) is None


def test_every_priority_list_of_a_queue_is_scanned():
    assert queue_lists("jobset.cpu") == [
        "jobset.cpu",
        "jobset.cpu\x06\x163",
        "jobset.cpu\x06\x166",
        "jobset.cpu\x06\x169",
    ]
