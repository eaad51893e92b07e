"""docker-compose.yml's services, run as local processes from their parsed command lines.

No Docker engine runs here.  So the Redis, worker, GPU-worker and Flower command lines are
taken from the parsed compose file (interpolated as compose does, with an operator's .env)
and started as processes, changed only where a container differs from this machine: the
``redis`` host name becomes 127.0.0.1 and a free port, container paths become temporary
directories, and ports bind to loopback.  Then a job set runs through them.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
import redis
from deployment import ROOT, interpolate, load_compose, local_argv, replace_option
from qiskit import QuantumCircuit
from qiskit.providers import JobStatus
from qiskit_aer import AerSimulator
from redis.backoff import NoBackoff
from redis.retry import Retry

from jobset import AerJobSet, CeleryExecutor, JobSetFailedError, Settings, protocol, run
from jobset.executors.celery import tally
from jobset.local import find_server_binary, free_port
from jobset.protocol import GPU_QUEUE, WORKER_KEY_PREFIX

from .faultkit import wait_until

pytestmark = pytest.mark.integration

ARTIFACTS = ROOT / "tests" / "artifacts"
CONTAINER_REDIS = "@redis:6379/"
CONTAINER_REDIS_CONF = "/usr/local/etc/redis/redis.conf"
CONTAINER_REDIS_USERS = "/usr/local/etc/redis/users.acl"


@dataclass
class Service:
    """One compose service, run here as a process in its own process group."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def start(self) -> Service:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env=self.env,
                start_new_session=True,
            )
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def stop(self, timeout_s: float = 20.0) -> int | None:
        process, self.process = self.process, None
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=timeout_s)
        # The group holds the prefork pool children too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        return process.wait()


def _base_env() -> dict[str, str]:
    """This machine's environment without settings that would leak into the services."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("JOBSET_", "FLOWER_")) and k != "PROMETHEUS_MULTIPROC_DIR"
    }
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _localize(environment: Mapping[str, str], redis_port: int) -> dict[str, str]:
    """A service's compose environment, its Redis URL pointed at the private server."""
    env = dict(environment)
    url = env["JOBSET_BROKER_URL"]
    assert CONTAINER_REDIS in url
    env["JOBSET_BROKER_URL"] = url.replace(CONTAINER_REDIS, f"@127.0.0.1:{redis_port}/")
    return env


@pytest.fixture(scope="module")
def operator_env() -> dict[str, str]:
    """What an operator writes into .env."""
    return {
        "REDIS_PASSWORD": secrets.token_hex(16),
        "FLOWER_REDIS_PASSWORD": secrets.token_hex(16),
        "JOBSET_SECRET_KEY": secrets.token_hex(32),
        "FLOWER_BASIC_AUTH": f"ops:{secrets.token_urlsafe(12)}",
    }


@pytest.fixture(scope="module")
def services(operator_env: dict[str, str]) -> dict[str, Any]:
    compose: dict[str, Any] = interpolate(load_compose(), operator_env)
    return dict(compose["services"])


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("compose")


@contextlib.contextmanager
def _compose_redis(
    services: dict[str, Any], folder: Path, port: int, binary: str | None = None
) -> Iterator[Service]:
    """The redis service's command with this machine's server binary (or ``binary``) on
    ``port``, its data (the append-only file) in ``folder``: a second start there finds the
    first one's."""
    spec = services["redis"]
    data = folder / "redis-data"
    data.mkdir(exist_ok=True)
    conf = folder / "redis.conf"
    # config/redis.conf as compose mounts it, plus what differs on this machine.
    conf.write_text(
        (ROOT / "config" / "redis.conf").read_text()
        + f"\nport {port}\nbind 127.0.0.1\ndir {data}\n"
    )
    script = spec["command"][-1]
    assert "exec redis-server " in script and CONTAINER_REDIS_CONF in script
    script = script.replace("redis-server", binary or find_server_binary(), 1)
    script = script.replace(CONTAINER_REDIS_CONF, str(conf))
    assert CONTAINER_REDIS_USERS in script
    script = script.replace(CONTAINER_REDIS_USERS, str(ROOT / "config" / "redis-users.acl"))
    env = {**_base_env(), **spec["environment"]}
    service = Service("redis", [*spec["command"][:-1], script], env, folder / "redis.log")
    service.extra.update(port=port, password=spec["environment"]["REDIS_PASSWORD"])
    service.start()
    client = redis.Redis(
        port=port,
        username="jobset",
        password=service.extra["password"],
        retry=Retry(NoBackoff(), 0),
    )

    def answers() -> bool:
        assert service.alive(), service.log()
        try:
            return bool(client.ping())
        except redis.ConnectionError:  # BusyLoadingError too, while it reads the file
            return False

    try:
        wait_until(answers, 60, "the compose Redis to answer PING")
        service.extra["client"] = client
        yield service
    finally:
        client.close()
        service.stop()


@pytest.fixture(scope="module")
def compose_redis(services: dict[str, Any], workdir: Path) -> Iterator[Service]:
    with _compose_redis(services, workdir, free_port()) as service:
        yield service


def _start_worker(
    spec: dict[str, Any], redis_port: int, workdir: Path, name: str, client: redis.Redis
) -> Service:
    metrics_dir = workdir / f"{name}-metrics"
    metrics_port = free_port()
    env = {
        **_base_env(),
        **_localize(spec["environment"], redis_port),
        "JOBSET_METRICS_PORT": str(metrics_port),
        "JOBSET_METRICS_ADDR": "127.0.0.1",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }
    service = Service(name, local_argv(spec["command"]), env, workdir / f"{name}.log").start()
    prefix = spec["command"][[a.startswith("--hostname=") for a in spec["command"]].index(True)]
    node = prefix.split("=", 1)[1].split("@")[0]

    def heartbeat() -> str | None:
        assert service.alive(), service.log()
        for key in client.scan_iter(match=f"{WORKER_KEY_PREFIX}{node}@*"):
            return str(json.loads(client.get(key) or b"{}")["hostname"])
        return None

    try:
        hostname = wait_until(heartbeat, 60, f"the {name} heartbeat")
    except BaseException:
        service.stop(timeout_s=1)
        raise
    service.extra.update(
        hostname=hostname,
        metrics_url=f"http://127.0.0.1:{metrics_port}/metrics",
        metrics_dir=metrics_dir,
    )
    return service


@pytest.fixture(scope="module")
def compose_worker(
    services: dict[str, Any], compose_redis: Service, workdir: Path
) -> Iterator[Service]:
    worker = _start_worker(
        services["worker"],
        compose_redis.extra["port"],
        workdir,
        "worker",
        compose_redis.extra["client"],
    )
    yield worker
    worker.stop()


class Flower:
    """Flower from the compose command line, with its HTTP API at hand."""

    def __init__(self, service: Service, auth: str) -> None:
        self.service = service
        self.auth = auth
        self.url = f"http://127.0.0.1:{service.extra['port']}"

    def get(self, path: str, *, auth: bool = True) -> Any:
        headers = {}
        if auth:
            headers["Authorization"] = "Basic " + base64.b64encode(self.auth.encode()).decode()
        request = urllib.request.Request(self.url + path, headers=headers)
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read().decode()
        return json.loads(body) if path.startswith("/api/") else body

    def wait_ready(self, worker_hostname: str) -> None:
        def serving() -> bool:
            assert self.service.alive(), self.service.log()
            try:
                return self.get("/healthcheck", auth=False) == "OK"
            except OSError:
                return False

        wait_until(serving, 30, "Flower to serve HTTP")
        # Flower counts a worker online once it has received its events: it listens.
        online = f'flower_worker_online{{worker="{worker_hostname}"}} 1.0'
        wait_until(lambda: online in self.get("/metrics", auth=False), 30, "Flower's events")

    def tasks_of(self, jobset_id: str, count: int, states: set[str]) -> dict[str, Any]:
        def listed() -> dict[str, Any] | None:
            tasks: dict[str, Any] = self.get(f"/api/tasks?search={jobset_id}")
            done = {k: t for k, t in tasks.items() if t["state"] in states}
            return done if len(done) == count else None

        found: dict[str, Any] = wait_until(listed, 20, f"Flower to list {count} sub-jobs")
        return found


@pytest.fixture(scope="module")
def compose_flower(
    services: dict[str, Any],
    compose_redis: Service,
    compose_worker: Service,
    workdir: Path,
) -> Iterator[Flower]:
    spec = services["flower"]
    port = free_port()
    argv = local_argv(spec["command"])
    argv = replace_option(argv, "--port", str(port))
    db = spec["command"][[a.startswith("--db=") for a in spec["command"]].index(True)]
    argv = replace_option(argv, "--db", str(workdir / Path(db.split("=", 1)[1]).name))
    argv.append("--address=127.0.0.1")
    env = {**_base_env(), **_localize(spec["environment"], compose_redis.extra["port"])}
    service = Service("flower", argv, env, workdir / "flower.log")
    service.extra["port"] = port
    flower = Flower(service.start(), spec["environment"]["FLOWER_BASIC_AUTH"])
    try:
        flower.wait_ready(compose_worker.extra["hostname"])
        yield flower
    finally:
        flower.service.stop()


@pytest.fixture(scope="module")
def executor(compose_redis: Service, operator_env: dict[str, str]) -> Iterator[CeleryExecutor]:
    url = (
        f"redis://jobset:{compose_redis.extra['password']}@127.0.0.1:"
        f"{compose_redis.extra['port']}/0"
    )
    settings = Settings(broker_url=url, secret_key=operator_env["JOBSET_SECRET_KEY"])
    with CeleryExecutor(settings) as ex:
        yield ex


def bell_circuits(n: int, name: str = "bell") -> list[QuantumCircuit]:
    circuits = []
    for i in range(n):
        qc = QuantumCircuit(2, name=f"{name}{i}")
        qc.h(0)
        if i % 2:
            qc.x(1)
        qc.cx(0, 1)
        qc.measure_all()
        circuits.append(qc)
    return circuits


@pytest.fixture(scope="module")
def finished_set(compose_flower: Flower, executor: CeleryExecutor) -> AerJobSet:
    """A set of 4 sub-jobs run on the compose worker while Flower watched."""
    job = run(
        AerSimulator(),
        bell_circuits(4),
        executor=executor,
        max_job_size=1,
        shots=64,
        seed_simulator=5,
    )
    job.result(timeout=60)
    return job


def test_the_compose_redis_needs_its_password_keeps_an_aof_and_never_evicts(
    compose_redis: Service,
) -> None:
    anonymous = redis.Redis(port=compose_redis.extra["port"], retry=Retry(NoBackoff(), 0))
    default = redis.Redis(
        port=compose_redis.extra["port"],
        password=compose_redis.extra["password"],
        retry=Retry(NoBackoff(), 0),
    )
    try:
        with pytest.raises(redis.AuthenticationError):
            anonymous.ping()
        with pytest.raises((redis.AuthenticationError, redis.ResponseError)):
            default.ping()  # the default user is off, whatever its password
    finally:
        anonymous.close()
        default.close()
    client: redis.Redis = compose_redis.extra["client"]
    assert client.config_get("appendonly") == {"appendonly": "yes"}
    assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
    # The password came in on stdin: it is not on the server's command line.
    assert compose_redis.process is not None
    cmdline = Path(f"/proc/{compose_redis.process.pid}/cmdline").read_bytes()
    assert compose_redis.extra["password"].encode() not in cmdline


@pytest.mark.parametrize("server", ["bundled", "redis-server"])
def test_the_compose_redis_keeps_the_writes_of_scripts_and_transactions_across_a_restart(
    services: dict[str, Any], tmp_path: Path, server: str
) -> None:
    # Redis logs a script's writes (the tally's moves) and a transaction as MULTI/EXEC
    # blocks in its append-only file, and replays the file as the default user, which is
    # off: it must hold the permissions all the same (config/redis-users.acl), or a server
    # without the fix of redis#14541 (Debian's Redis 7.0, say) drops those blocks and keeps
    # the rest.
    binary = find_server_binary() if server == "bundled" else shutil.which(server)
    if binary is None:
        pytest.skip(f"no {server} on the PATH")
    jobset_id, port = str(uuid4()), free_port()
    with _compose_redis(services, tmp_path, port, binary) as first:
        client: redis.Redis = first.extra["client"]
        tally.move(client, jobset_id, 0, tally.RUNNING, ttl_s=3600, start=True)
        tally.move(client, jobset_id, 0, tally.DONE, ttl_s=3600)
        with client.pipeline(transaction=True) as pipe:
            pipe.set("probe:multi:1", "1").set("probe:multi:2", "2").execute()
        client.set("probe:plain", "3")
    with _compose_redis(services, tmp_path, port, binary) as second:
        client = second.extra["client"]
        assert client.hgetall(protocol.counts_key(jobset_id)) == {b"R": b"0", b"D": b"1"}
        assert client.hget(protocol.states_key(jobset_id), "0") == b"D"
        assert client.ttl(protocol.counts_key(jobset_id)) > 0
        assert client.mget("probe:multi:1", "probe:multi:2", "probe:plain") == [b"1", b"2", b"3"]
    assert "NOPERM" not in (tmp_path / "redis.log").read_text(errors="replace")


def test_the_flower_redis_user_reads_but_writes_none_of_the_projects_keys(
    finished_set: AerJobSet, compose_redis: Service, operator_env: dict[str, str]
) -> None:
    flower = redis.Redis(
        port=compose_redis.extra["port"],
        username="flower",
        password=operator_env["FLOWER_REDIS_PASSWORD"],
        retry=Retry(NoBackoff(), 0),
    )
    jobset_id = finished_set.job_id()
    try:
        result = flower.get(f"jobset:{jobset_id}:result:0")
        assert result is not None  # it reads (payloads are signed, not encrypted)
        writes = [
            lambda: flower.set(f"jobset:{jobset_id}:result:0", b"forged"),
            lambda: flower.delete(f"jobset:{jobset_id}:record"),
            lambda: flower.lpush("jobset.cpu", b"{}"),
            lambda: flower.hset("unacked", "tag", b"[]"),
            lambda: flower.zadd("unacked_index", {"tag": 0}),
            lambda: flower.set(f"celery-task-meta-{jobset_id}-0", b"{}"),
            lambda: flower.zadd("jobset:index", {"x": 1}),
            lambda: flower.publish("jobset.cpu", b"x"),
            lambda: flower.config_set("dir", "/tmp"),
            lambda: flower.flushall(),
        ]
        for write in writes:
            with pytest.raises(redis.exceptions.NoPermissionError):
                write()
        assert flower.get(f"jobset:{jobset_id}:result:0") == result
    finally:
        flower.close()
    worker_user: redis.Redis = compose_redis.extra["client"]
    for dangerous in (
        lambda: worker_user.config_set("dir", "/tmp"),
        lambda: worker_user.flushall(),
        lambda: worker_user.keys("*"),
    ):
        with pytest.raises(redis.exceptions.NoPermissionError):
            dangerous()


def test_flowers_api_lists_a_sets_sub_jobs_by_its_id_behind_basic_auth(
    finished_set: AerJobSet, compose_flower: Flower, compose_worker: Service
) -> None:
    jobset_id = finished_set.job_id()
    tasks = compose_flower.tasks_of(jobset_id, 4, {"SUCCESS"})

    assert sorted(tasks) == [f"{jobset_id}-{k}" for k in range(4)]
    for uuid, task in tasks.items():
        index = int(uuid.rsplit("-", 1)[1])
        assert task["name"] == "jobset.run_sub_job"
        assert task["worker"] == compose_worker.extra["hostname"]
        assert f"'jobset_id': '{jobset_id}'" in task["kwargs"]
        assert f"'index': {index}" in task["kwargs"]
        assert "'experiments': 1" in task["kwargs"]
        assert len(task["kwargs"]) < 300  # ids and counts, never a payload
        assert task["args"] == "()"
    with pytest.raises(urllib.error.HTTPError) as refused:
        compose_flower.get(f"/api/tasks?search={jobset_id}", auth=False)
    refused.value.close()
    assert refused.value.code == 401


def _samples(text: str, name: str, **labels: str) -> list[float]:
    found = []
    for line in text.splitlines():
        m = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
        if m is None:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        if all(have.get(k) == v for k, v in labels.items()):
            found.append(float(m.group(2)))
    return found


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


def test_the_worker_metrics_add_up_to_the_sets_sub_jobs_experiments_and_shots(
    compose_worker: Service, executor: CeleryExecutor
) -> None:
    url, worker = compose_worker.extra["metrics_url"], compose_worker.extra["hostname"]
    before = _scrape(url)

    def worker_total(text: str, name: str, **labels: str) -> float:
        return sum(_samples(text, f"jobset_worker_{name}", worker=worker, **labels))

    job = run(
        AerSimulator(),
        bell_circuits(5),
        executor=executor,
        max_job_size=2,
        shots=300,
        seed_simulator=9,
    )
    result = job.result(timeout=60)
    assert len(result.results) == 5
    after = _scrape(url)
    set_id = job.job_id()

    def of_set(name: str, **labels: str) -> float:
        (value,) = _samples(after, f"jobset_set_{name}", worker=worker, jobset=set_id, **labels)
        return value

    # The set: 3 sub-jobs (2 + 2 + 1 circuits), 5 experiments, 5 x 300 shots.
    assert of_set("sub_jobs_total", state="succeeded") == 3
    assert of_set("experiments_total") == 5
    assert of_set("shots_total") == 1500
    assert of_set("sub_jobs_running") == 0
    assert of_set("simulation_seconds_total") > 0
    for name, want in (("experiments_total", 5), ("shots_total", 1500)):
        assert worker_total(after, name) - worker_total(before, name) == want
    succeeded = "sub_jobs_total"
    delta = worker_total(after, succeeded, state="succeeded") - worker_total(
        before, succeeded, state="succeeded"
    )
    assert delta == 3
    assert worker_total(after, "sub_job_seconds_count") >= 3
    # concurrency 2 from the compose command; the counts came from the pool children's files.
    assert worker_total(after, "concurrency") == 2
    assert compose_worker.process is not None
    counter_files = compose_worker.extra["metrics_dir"].glob("counter_*.db")
    writers = {int(p.stem.rsplit("_", 1)[1]) for p in counter_files}
    assert writers and compose_worker.process.pid not in writers


def _chromium() -> str:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        reason = "Debian's chromium is not installed (scripts/test installs it when it can)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return binary


def _headless(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=10000",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def test_flowers_tasks_page_in_headless_chromium_shows_the_sets_id(
    finished_set: AerJobSet, compose_flower: Flower, tmp_path: Path
) -> None:
    binary = _chromium()
    jobset_id = finished_set.job_id()
    compose_flower.tasks_of(jobset_id, 4, {"SUCCESS"})
    user, password = compose_flower.auth.split(":", 1)
    page = compose_flower.url.replace("http://", f"http://{user}:{password}@") + "/tasks"

    dom = _headless(binary, tmp_path / "profile-dom", "--dump-dom", page)
    assert dom.returncode == 0, dom.stderr[-2000:]
    # The rows come from an XHR the page's scripts make: they ran, with the login.
    rows = re.findall(r"<tr[^>]*>.*?</tr>", dom.stdout, re.S)
    assert sum(f"{jobset_id}-" in row for row in rows) == 4, dom.stdout[-3000:]
    assert f"'jobset_id': '{jobset_id}'" in dom.stdout.replace("&#39;", "'")

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "flower-tasks.png"
    shot.unlink(missing_ok=True)
    done = _headless(
        binary,
        tmp_path / "profile-shot",
        "--window-size=1600,900",
        "--hide-scrollbars",
        f"--screenshot={shot}",
        page,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 20_000  # a page with a table, not a blank one


def test_gpu_sets_reach_only_the_gpu_queue_worker_and_cpu_sets_never_do(
    services: dict[str, Any],
    compose_redis: Service,
    compose_worker: Service,
    compose_flower: Flower,
    executor: CeleryExecutor,
    workdir: Path,
) -> None:
    client: redis.Redis = compose_redis.extra["client"]
    gpu_set = run(
        AerSimulator(device="GPU"),
        bell_circuits(2, "gpu"),
        executor=executor,
        max_job_size=1,
        shots=16,
        seed_simulator=1,
    )
    cpu_set = run(
        AerSimulator(),
        bell_circuits(2, "cpu"),
        executor=executor,
        max_job_size=1,
        shots=16,
        seed_simulator=1,
    )
    cpu_set.result(timeout=60)
    # The CPU worker ran the later CPU set and left the GPU set's messages in their queue.
    assert client.llen(GPU_QUEUE) == 2
    assert gpu_set.status([0, 1]) == [JobStatus.QUEUED, JobStatus.QUEUED]

    # A CPU machine stands in for a GPU one: the gpu-worker command consumes the queue, and
    # this machine's Aer (no GPU) refuses the device, which shows where each sub-job ran.
    gpu_worker = _start_worker(
        services["gpu-worker"], compose_redis.extra["port"], workdir, "gpu-worker", client
    )
    try:
        with pytest.raises(JobSetFailedError, match='device "GPU" is not supported'):
            gpu_set.result(timeout=60)
        gpu_tasks = compose_flower.tasks_of(gpu_set.job_id(), 2, {"FAILURE"})
        cpu_tasks = compose_flower.tasks_of(cpu_set.job_id(), 2, {"SUCCESS"})
        assert {t["worker"] for t in gpu_tasks.values()} == {gpu_worker.extra["hostname"]}
        assert {t["routing_key"] for t in gpu_tasks.values()} == {GPU_QUEUE}
        assert {t["worker"] for t in cpu_tasks.values()} == {compose_worker.extra["hostname"]}
        failed = _samples(
            _scrape(gpu_worker.extra["metrics_url"]),
            "jobset_set_sub_jobs_total",
            jobset=gpu_set.job_id(),
            state="failed",
        )
        assert failed == [2.0]
    finally:
        assert gpu_worker.stop() == 0, gpu_worker.log()


def test_flower_keeps_its_task_history_across_a_restart(
    finished_set: AerJobSet, compose_flower: Flower, compose_worker: Service
) -> None:
    jobset_id = finished_set.job_id()
    compose_flower.tasks_of(jobset_id, 4, {"SUCCESS"})
    service = compose_flower.service
    assert service.stop() == 0, service.log()  # SIGTERM: Flower saves its state
    service.start()
    compose_flower.wait_ready(compose_worker.extra["hostname"])
    # No event of that finished set is sent again: what Flower lists, it read from its db.
    tasks = compose_flower.get(f"/api/tasks?search={jobset_id}")
    assert sorted(tasks) == [f"{jobset_id}-{k}" for k in range(4)]
