"""Big sets stay cheap: cancel frees the queues at once, results are read in chunks."""

from __future__ import annotations

import base64
import json
import secrets
import threading

import pytest
from qiskit.providers import JobStatus
from qiskit_aer import AerSimulator

from jobset import CeleryExecutor, Settings, protocol, run
from jobset.executors.celery import run as celery_run
from jobset.executors.celery import tally
from jobset.executors.celery.publish import PUBLISH_BATCH_OPS, BulkPublisher, Publisher
from jobset.executors.celery.recovery import present_task_ids
from jobset.local import LocalCluster, RedisServer
from jobset.protocol import DEFAULT_QUEUE, queue_lists, runs_key

from .faultkit import wait_until
from .workloads import coins

pytestmark = pytest.mark.integration


def test_cancel_of_a_big_queued_set_removes_its_messages_so_the_next_set_runs_at_once():
    key = secrets.token_hex(32)
    with RedisServer() as server:
        settings = Settings(broker_url=server.url, secret_key=key)
        with CeleryExecutor(settings) as ex:
            big = run(AerSimulator(), coins(2000, "big"), executor=ex, max_job_size=1, shots=1)
            other = run(AerSimulator(), coins(3, "keep"), executor=ex, max_job_size=1, shots=4)
            queued = sum(ex.broker.llen(name) for name in queue_lists(DEFAULT_QUEUE))
            assert queued == 2003
            assert big.cancel()
            left = sum(ex.broker.llen(name) for name in queue_lists(DEFAULT_QUEUE))
            assert left == 3  # the other set's messages stay, in their order
            assert big.status() is JobStatus.CANCELLED
            one = run(AerSimulator(), coins(5, "one"), executor=ex, max_job_size=1, shots=8)
            assert one.worker_job(4).cancel()
            left = sum(ex.broker.llen(name) for name in queue_lists(DEFAULT_QUEUE))
            assert left == 3 + 4
            with LocalCluster(workers=1, settings=Settings(broker_url=server.url, secret_key=key)):
                assert other.result(timeout=60).success
                after = run(AerSimulator(), coins(4, "after"), executor=ex, max_job_size=1,
                            shots=4)  # fmt: skip
                assert after.result(timeout=30).success
                assert big.status() is JobStatus.CANCELLED
                assert not ex.redis.exists(runs_key(big.job_id()))  # none of them ever ran
                partial = one.result(timeout=60, partial=True)
                assert [e.success for e in partial.results] == [True] * 4 + [False]
                assert one.status(4) is JobStatus.CANCELLED


def _decoded(raw: bytes) -> dict:
    message = json.loads(raw)
    message["body"] = json.loads(base64.b64decode(message["body"]))
    del message["properties"]["delivery_tag"]  # a fresh uuid per message, either way
    return message


@pytest.mark.parametrize("timeout_s,priority", [(None, None), (30.0, 3), (None, 6)])
def test_bulk_messages_and_task_sent_events_are_the_ones_celery_publishes(timeout_s, priority):
    """What the workers read is field for field what ``send_task_message`` writes; the
    task-sent events are Celery's too, sent as one list, as Celery sends a buffered group."""
    set_id = "12345678-1234-4234-8234-123456789abc"
    queue = DEFAULT_QUEUE
    with (
        RedisServer() as server,
        CeleryExecutor(Settings(broker_url=server.url, secret_key="m" * 32)) as ex,
    ):
        client = server.client()
        events = client.pubsub()
        events.psubscribe("*")
        assert events.get_message(timeout=5)["type"] == "psubscribe"
        with ex.app.producer_or_acquire() as producer:
            bulk = BulkPublisher(ex.app, producer, timeout_s=timeout_s)
            assert bulk.bulk
            with producer.batch(max_size=PUBLISH_BATCH_OPS):
                Publisher(ex.app, producer).send(
                    set_id, 7, 3, queue=queue, timeout_s=timeout_s, priority=priority
                )
            pipe = ex.broker.pipeline(transaction=False)
            bulk.add(set_id, 7, 3, queue=queue, priority=priority)
            bulk.add(set_id, 8, 1, queue=queue, priority=priority)
            bulk.flush(pipe)
            pipe.execute()
        lists = [name for name in queue_lists(queue) if client.llen(name)]
        assert len(lists) == 1 and client.llen(lists[0]) == 3
        _, bulk_raw, celery_raw = client.lrange(lists[0], 0, -1)  # LPUSH: the newest first
        assert _decoded(bulk_raw) == _decoded(celery_raw)
        sent = [events.get_message(timeout=5) for _ in range(2)]
        assert [m["channel"] for m in sent] == [
            b"/0.celeryev/task.sent",
            b"/0.celeryev/task.multi",
        ]
        celery_event, bulk_events = (_decoded(m["data"]) for m in sent)
        assert bulk_events["properties"]["delivery_info"]["routing_key"] == "task.multi"
        bulk_events["properties"]["delivery_info"]["routing_key"] = "task.sent"
        first, second = bulk_events.pop("body")
        body = celery_event.pop("body")
        assert bulk_events == celery_event
        for event in (body, first, second):
            event.pop("timestamp")
            assert event.pop("clock") > 0
        assert first == body and first["uuid"] == f"{set_id}-7"
        assert second["uuid"] == f"{set_id}-8" and "'index': 8" in second["kwargs"]


def test_celerys_event_receiver_sees_every_sub_job_of_a_big_set_as_sent():
    """What Flower runs: Celery's event receiver feeding Celery's task state."""
    with (
        RedisServer() as server,
        CeleryExecutor(Settings(broker_url=server.url, secret_key="e" * 32)) as ex,
    ):
        client = server.client()
        state = ex.app.events.State()
        stop = threading.Event()
        with ex.app.connection_for_read() as connection:
            receiver = ex.app.events.Receiver(connection, handlers={"*": state.event})

            def consume() -> None:
                for _ in receiver.itercapture(limit=None, timeout=None, wakeup=False):
                    if stop.is_set():
                        return

            watcher = threading.Thread(target=consume, daemon=True)
            watcher.start()
            try:
                wait_until(lambda: client.execute_command("PUBSUB", "NUMPAT") >= 1, 60,
                           "the receiver subscribed")  # fmt: skip
                job = run(AerSimulator(), coins(1500, "seen"), executor=ex, max_job_size=1,
                          shots=1)  # fmt: skip
                want = set(job._require_submitted().task_ids)
                wait_until(lambda: want <= set(state.tasks), 30.0, "every task seen as sent")
            finally:
                stop.set()
                ex.app.events.Dispatcher(connection).send("worker-heartbeat")  # wakes it
                watcher.join(10)
        assert all(state.tasks[t].state == "PENDING" and state.tasks[t].sent for t in want)
        assert {state.tasks[t].name for t in want} == {"jobset.run_sub_job"}
        job.cancel()


def _lranges(client) -> int:
    return int(client.info("commandstats").get("cmdstat_lrange", {}).get("calls", 0))


def _sent_bytes(client) -> int:
    return int(client.info("stats")["total_net_output_bytes"])


def test_the_lost_check_of_a_set_behind_a_backlog_reads_the_set_not_the_queue():
    """Counted by the server itself: what Redis sent, and how many list reads it served."""
    with (
        RedisServer() as server,
        CeleryExecutor(Settings(broker_url=server.url, secret_key="l" * 32)) as ex,
    ):
        client = server.client()
        backlog = run(AerSimulator(), coins(3000, "backlog"), executor=ex, max_job_size=1,
                      shots=1)  # fmt: skip
        small = run(AerSimulator(), coins(3, "small"), executor=ex, max_job_size=1, shots=1,
                    priority="low")  # fmt: skip
        queued = sum(client.llen(name) for name in queue_lists(DEFAULT_QUEUE))
        assert queued == 3003
        reads, sent = _lranges(client), _sent_bytes(client)
        assert small.lost() == []
        assert _lranges(client) == reads  # not one message read
        assert _sent_bytes(client) - sent < 20_000  # the backlog's messages are 4 MB
        assert backlog.lost() == []  # the backlog itself: its own size, no message either
        assert _lranges(client) == reads
        # What the check replaces: reading every message of the set's queues.
        sent = _sent_bytes(client)
        task_ids = [sub_job.job_id() for sub_job in small.worker_job()]
        assert present_task_ids(ex.broker, small.job_id(), task_ids, [DEFAULT_QUEUE])
        assert _sent_bytes(client) - sent > 3000 * 1000
        # A queue that lost its messages is read, and the set's sub-jobs are found lost.
        client.delete(*queue_lists(DEFAULT_QUEUE))
        assert small.lost() == [0, 1, 2]
        backlog.cancel()


def _count_mgets(monkeypatch, client) -> list[int]:
    """The number of keys of every MGET sent through ``client``'s pipelines."""
    sizes: list[int] = []
    pipeline = client.pipeline

    def counting(*args, **kwargs):
        pipe = pipeline(*args, **kwargs)
        execute = pipe.execute

        def counted(*a, **k):
            sizes.extend(len(c[0]) - 1 for c in pipe.command_stack if c[0][0] == "MGET")
            return execute(*a, **k)

        pipe.execute = counted
        return pipe

    monkeypatch.setattr(client, "pipeline", counting)
    return sizes


def test_as_completed_reads_a_chunk_of_states_per_poll_however_big_the_set(monkeypatch):
    # Chunks of 4 stand for the real 1000, so that 30 sub-jobs are many chunks.
    monkeypatch.setattr(tally, "ENDED_CHUNK", 4)
    monkeypatch.setattr(celery_run, "_RESULT_CHUNK", 4)
    key = secrets.token_hex(32)
    with (
        RedisServer() as server,
        CeleryExecutor(Settings(broker_url=server.url, secret_key=key)) as ex,
    ):
        with LocalCluster(workers=2, concurrency=1, settings=ex.settings):
            job = run(AerSimulator(), coins(30, "stream"), executor=ex, max_job_size=1, shots=5)
            mgets = _count_mgets(monkeypatch, ex.redis)
            seen = [sub.index for sub in job.as_completed(timeout=120)]
            assert sorted(seen) == list(range(30))  # each once
            assert mgets and max(mgets) <= 8  # the log's chunk and a window at most
            assert [sum(job.worker_results(k).get_counts().values()) for k in seen] == [5] * 30
        # A log that lost its entries: once the tally stands still, windows of states, one
        # after the other while they find some.
        ex.redis.delete(protocol.ended_key(job.job_id()))
        mgets.clear()
        assert sorted(sub.index for sub in job.as_completed(timeout=60)) == list(range(30))
        assert mgets and max(mgets) <= 8
        # A cancelled set's queued sub-jobs end by the mark, not the log: read by windows.
        queued = run(AerSimulator(), coins(20, "halted"), executor=ex, max_job_size=1, shots=1)
        assert queued.cancel()
        mgets.clear()
        assert sorted(sub.index for sub in queued.as_completed(timeout=30)) == list(range(20))
        assert mgets and max(mgets) <= 8
