"""The scaler's pure parts: how many workers a backlog wants, which idle ones go, and the
commands the compose backend runs (no Docker here: the commands are recorded)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from jobset.errors import ConfigurationError
from jobset.protocol import owner_queue
from jobset.scaling.backends import ComposeBackend
from jobset.scaling.backlog import LiveWorker, QueueBacklog
from jobset.scaling.loop import Scaler
from jobset.scaling.reconcile import ScaledWorker, ScalePolicy, decide, wanted_workers

POLICY = ScalePolicy(min_workers=0, max_workers=10, target_drain_s=60, idle_grace_s=30)


def backlog(queued=0, work_s=0.0, running=0, slots=0) -> QueueBacklog:
    workers = tuple(LiveWorker(f"w{i}@h", "h", ("jobset.cpu",), 1, 0) for i in range(slots))
    return QueueBacklog("jobset.cpu", queued, work_s, running, workers)


def worker(member: str, active: int | None = 0) -> ScaledWorker:
    return ScaledWorker(member, f"{member}@h", active)


@pytest.mark.parametrize(
    ("queued", "work_s", "running", "wanted"),
    [
        (0, 0.0, 0, 0),  # nothing to do
        (5, 1.0, 0, 1),  # a little work wants one worker
        (100, 600.0, 0, 10),  # 600 s of work within 60 s: 10 slots
        (100, 6000.0, 0, 10),  # capped by --max
        (3, 6000.0, 0, 3),  # never more slots than queued sub-jobs
        (0, 0.0, 4, 4),  # running sub-jobs keep their workers
        (10, 120.0, 2, 4),  # running plus the drain's need
    ],
)
def test_the_wanted_workers_follow_the_estimated_work_not_the_count(
    queued, work_s, running, wanted
):
    assert wanted_workers(backlog(queued, work_s, running), POLICY) == wanted


def test_workers_of_several_slots_and_the_minimum():
    policy = ScalePolicy(min_workers=2, max_workers=10, slots_per_worker=4, target_drain_s=60)
    assert wanted_workers(backlog(100, 600.0), policy) == math.ceil(10 / 4)
    assert wanted_workers(backlog(), policy) == 2


def test_a_backlog_with_no_live_worker_adds_one_and_counts_those_starting():
    first = decide(backlog(4, 1.0), [], 0, POLICY, idle_for_s={})
    assert first.add == 1 and "add 1" in first.reason
    again = decide(backlog(4, 1.0), [], 1, POLICY, idle_for_s={})
    assert again.add == 0 and again.drain == ()


def test_idle_workers_are_drained_after_the_grace_only_when_nothing_is_queued():
    live = [worker("1"), worker("2"), worker("3", active=1)]
    idle = {"1": 45.0, "2": 10.0}
    decision = decide(backlog(running=1, slots=3), live, 0, POLICY, idle_for_s=idle)
    assert decision.drain == ("1",)  # "2" is within its grace, "3" runs a sub-job
    queued = decide(backlog(1, 0.1, running=1, slots=3), live, 0, POLICY, idle_for_s=idle)
    assert queued.drain == ()


def test_the_minimum_is_kept_and_a_worker_of_unknown_load_is_not_drained():
    policy = ScalePolicy(min_workers=1, max_workers=4, idle_grace_s=0)
    live = [worker("1"), worker("2"), worker("3", active=None)]
    decision = decide(backlog(slots=3), live, 0, policy, idle_for_s={"1": 5, "2": 9, "3": 99})
    assert decision.wanted == 1 and decision.drain == ("2", "1")


def test_a_policy_out_of_bounds_is_refused():
    with pytest.raises(ConfigurationError):
        ScalePolicy(min_workers=3, max_workers=2)
    with pytest.raises(ConfigurationError):
        ScalePolicy(target_drain_s=0)


def test_a_heartbeat_is_validated_before_it_counts():
    good = {"hostname": "slurm-7@n1", "host": "n1", "queues": ["jobset.cpu"], "concurrency": 2}
    assert LiveWorker.from_heartbeat({**good, "active": 1}).active == 1
    assert LiveWorker.from_heartbeat(good).active is None
    for bad in ({"concurrency": 0}, {"active": -1}, {"queues": "jobset.cpu"}, {"hostname": 3}):
        with pytest.raises(ValueError):
            LiveWorker.from_heartbeat({**good, **bad})
    owner = LiveWorker.from_heartbeat({**good, "queues": [owner_queue("jobset.cpu", "alice")]})
    assert owner.serves("jobset.cpu") and not owner.serves("jobset.gpu")


class Recorder:
    def __init__(self, outputs: list[str]) -> None:
        self.calls: list[list[str]] = []
        self.outputs = outputs

    def __call__(self, args):
        self.calls.append(list(args))
        return self.outputs.pop(0) if self.outputs else ""


A, B, C = "a" * 64, "b" * 64, "c" * 64


def test_compose_scales_the_worker_service_up_without_recreating_the_others(tmp_path):
    runner = Recorder([f"{A}\n{B}\n", "", f"{A}\n{B}\n{C}\n"])
    compose = ComposeBackend(
        project_dir=tmp_path, files=(Path("docker-compose.yml"),), runner=runner
    )
    assert compose.add(1) == [C]
    base = [
        "docker",
        "compose",
        "--project-directory",
        str(tmp_path),
        "--file",
        "docker-compose.yml",
    ]
    assert runner.calls == [
        [*base, "ps", "--quiet", "--status", "running", "worker"],
        [*base, "up", "--detach", "--no-recreate", "--no-deps", "--scale", "worker=3", "worker"],
        [*base, "ps", "--quiet", "--status", "running", "worker"],
    ]


def test_compose_drains_one_container_by_a_warm_stop_then_removes_it(tmp_path):
    runner = Recorder([])
    compose = ComposeBackend(project_dir=tmp_path, stop_timeout_s=300, runner=runner)
    compose.drain(A)
    assert runner.calls == [["docker", "stop", "--time", "300", A], ["docker", "rm", A]]
    with pytest.raises(ConfigurationError):
        compose.drain("worker; rm -rf /")


def test_compose_knows_its_workers_by_their_container_hostname(tmp_path):
    compose = ComposeBackend(project_dir=tmp_path, runner=Recorder([f"{A}\n{B}\n"] * 3))
    beat = {"hostname": "celery@aaaaaaaaaaaa", "host": "a" * 12, "concurrency": 2}
    assert compose.member_of(LiveWorker.from_heartbeat(beat)) == A
    other = {**beat, "host": "laptop"}
    assert compose.member_of(LiveWorker.from_heartbeat(other)) is None


class StubReader:
    """What the Redis reader would return, set by the test."""

    def __init__(self, backlog: QueueBacklog) -> None:
        self.backlog = backlog

    def read(self, queues):
        return {self.backlog.queue: self.backlog}


class StubBackend:
    name = "stub"

    def __init__(self) -> None:
        self.started: list[str] = []
        self.drained: list[str] = []

    def members(self):
        return {m: "live" for m in self.started if m not in self.drained}

    def member_of(self, worker):
        return worker.hostname.split("@")[0]

    def add(self, count):
        new = [f"w{len(self.started) + i}" for i in range(count)]
        self.started += new
        return new

    def drain(self, member):
        self.drained.append(member)


def test_the_loop_adds_for_a_backlog_then_drains_the_worker_once_idle_past_the_grace():
    now = [0.0]
    reader = StubReader(backlog(queued=3, work_s=1.0))
    backend = StubBackend()
    policy = ScalePolicy(min_workers=0, max_workers=2, idle_grace_s=30)
    scaler = Scaler(reader, backend, policy, "jobset.cpu", clock=lambda: now[0])
    assert scaler.reconcile().add == 1 and backend.started == ["w0"]
    assert scaler.reconcile().add == 0  # w0 is starting: not added twice

    live = (LiveWorker("w0@h", "h", ("jobset.cpu",), 1, 0),)
    reader.backlog = QueueBacklog("jobset.cpu", 0, 0.0, 0, live)
    assert scaler.reconcile().drain == ()  # idle from now on
    now[0] = 31.0
    assert scaler.reconcile().drain == ("w0",) and backend.drained == ["w0"]
    wanted = scaler.metrics.registry.get_sample_value(
        "jobset_scale_workers_wanted", {"queue": "jobset.cpu"}
    )
    assert wanted == 0


def test_without_a_backend_the_loop_only_exports_the_gauges():
    reader = StubReader(backlog(queued=7, work_s=42.0, running=2, slots=3))
    scaler = Scaler(reader, None, POLICY, "jobset.cpu")
    assert scaler.reconcile() is None
    sample = {
        m.name: m.samples[0].value
        for m in scaler.metrics.registry.collect()
        if m.samples and m.name.startswith("jobset_queue")
    }
    assert sample == {
        "jobset_queue_sub_jobs_queued": 7,
        "jobset_queue_work_queued_seconds": 42.0,
        "jobset_queue_sub_jobs_running": 2,
        "jobset_queue_worker_slots": 3,
    }
