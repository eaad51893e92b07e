"""The checks that scripts/test-containers runs against the compose deployment it started.

The producer is this machine's ``jobset`` (``CeleryExecutor`` and ``run``) talking to the
containers' Redis on a loopback port; every wait polls for an event with a deadline.  In order:
three worker containers share a set exactly; one killed mid sub-job; a scale-down to one while
a set runs; a Redis restart; ``jobset scale``'s compose backend adding containers for a
backlog and draining the idle ones back to its minimum; Flower's login and its list of
sub-jobs; Prometheus scraping the workers; the images' user and secrets; and ``down -v``
leaving nothing behind.  The summary goes to ``--summary``.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import redis
from qiskit import QuantumCircuit, transpile
from qiskit.circuit.random import random_circuit
from qiskit_aer import AerSimulator

from jobset import AerJobSet, CeleryExecutor, Settings, run
from jobset.deadline import wait_for
from jobset.protocol import DEFAULT_QUEUE, WORKER_KEY_PREFIX
from jobset.scaling.backends import ComposeBackend
from jobset.scaling.backlog import BacklogReader
from jobset.scaling.loop import Scaler
from jobset.scaling.reconcile import ScalePolicy

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


STARTED = time.monotonic()


def log(message: str) -> None:
    print(f"check: {message} ({time.monotonic() - STARTED:.0f} s)", file=sys.stderr, flush=True)


def wait_until(probe: Callable[[], T | None], timeout_s: float, what: str) -> T:
    """``probe()``'s first truthy value, polled until ``timeout_s`` has passed."""
    return wait_for(probe, timeout_s, what, pause_s=0.2)


def sh(*argv: str, check: bool = True) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return done.stdout


class Deployment:
    """The compose project: its containers, its Redis, its Flower."""

    def __init__(self, project: str, env_file: Path) -> None:
        self.project = project
        self.env_file = env_file
        self.env = dict(
            line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line
        )
        # The workers' own Redis URL (user and password as compose builds them), pointed at
        # the port published on this machine's loopback.
        config = json.loads(self.compose("config", "--format", "json"))
        url = config["services"]["worker"]["environment"]["JOBSET_BROKER_URL"]
        assert "@redis:6379/" in url, "the workers' broker URL names no redis:6379"
        self.broker_url = url.replace("@redis:6379/", f"@127.0.0.1:{self.env['TEST_REDIS_PORT']}/")
        self.redis = redis.Redis.from_url(self.broker_url)

    def compose(self, *args: str) -> str:
        return sh(
            *("docker-compose", "--project-name", self.project, "--project-directory", str(ROOT)),
            *("--env-file", str(self.env_file), "-f", str(ROOT / "docker-compose.yml")),
            *("-f", str(ROOT / "tests" / "containers" / "compose.test.yml"), *args),
        )

    def containers(self, service: str, *, all_states: bool = False) -> list[str]:
        """Full ids of the service's containers (running ones unless ``all_states``)."""
        argv = ["docker", "ps", "--no-trunc", "-q"]
        argv += ["--filter", f"label=com.docker.compose.project={self.project}"]
        argv += ["--filter", f"label=com.docker.compose.service={service}"]
        return sh(*argv, *(["-a"] if all_states else [])).split()

    def settings(self) -> Settings:
        return Settings(broker_url=self.broker_url, secret_key=self.env["JOBSET_SECRET_KEY"])

    def heartbeats(self) -> dict[str, dict[str, Any]]:
        """The live workers' heartbeat records, by Celery hostname."""
        out = {}
        try:
            for key in self.redis.scan_iter(match=f"{WORKER_KEY_PREFIX}*"):
                raw = self.redis.get(key)
                if raw:
                    record = json.loads(raw)
                    out[record["hostname"]] = record
        except redis.ConnectionError:
            pass
        return out

    def worker_hostnames(self, count: int, timeout_s: float = 180) -> dict[str, str]:
        """Wait until exactly the running worker containers beat; container id by hostname."""

        def ready() -> dict[str, str] | None:
            ids = self.containers("worker")
            beating = self.heartbeats()
            # A container's hostname is its id's first 12 characters (--hostname=worker@%h).
            names = {f"worker@{cid[:12]}": cid for cid in ids}
            if len(ids) == count and set(names) <= set(beating):
                return names
            return None

        return wait_until(ready, timeout_s, f"{count} worker containers to beat")

    # Flower
    @property
    def flower_url(self) -> str:
        return f"http://127.0.0.1:{self.env['TEST_FLOWER_PORT']}"

    def flower(self, path: str, *, auth: bool = True) -> Any:
        headers = {}
        if auth:
            login = base64.b64encode(self.env["FLOWER_BASIC_AUTH"].encode()).decode()
            headers["Authorization"] = "Basic " + login
        request = urllib.request.Request(self.flower_url + path, headers=headers)
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read().decode()
        return json.loads(body) if path.startswith("/api/") else body

    def flower_status(self, path: str) -> int:
        try:
            with urllib.request.urlopen(self.flower_url + path, timeout=10) as response:
                return int(response.status)
        except urllib.error.HTTPError as e:
            return e.code

    def flower_tasks(self, jobset_id: str) -> dict[str, Any]:
        try:
            tasks: dict[str, Any] = self.flower(f"/api/tasks?search={jobset_id}")
        except OSError:
            return {}
        return tasks

    def flower_online(self, hostnames: Sequence[str]) -> bool:
        try:
            metrics = self.flower("/metrics", auth=False)
        except OSError:
            return False
        return all(f'flower_worker_online{{worker="{h}"}} 1.0' in metrics for h in hostnames)


def circuits(count: int, qubits: int, depth: int, seed: int) -> list[QuantumCircuit]:
    sim = AerSimulator()
    made = []
    for i in range(count):
        qc = random_circuit(qubits, depth, measure=True, seed=seed + i)
        qc.name = f"c{seed}-{i}"
        made.append(transpile(qc, sim, seed_transpiler=seed))
    return made


SHOTS = 256


def submit(
    dep: Deployment,
    executor: CeleryExecutor,
    cs: list[QuantumCircuit],
    seed: int,
    max_job_size: int,
) -> AerJobSet:
    return run(
        AerSimulator(),
        cs,
        executor=executor,
        max_job_size=max_job_size,
        shots=SHOTS,
        seed_simulator=seed,
        memory=True,
    )


def assert_exact(job: AerJobSet, cs: list[QuantumCircuit], seed: int, timeout_s: float) -> None:
    """The set's result equals one AerSimulator.run of all the circuits, count for count."""
    got = job.result(timeout=timeout_s)
    want = AerSimulator().run(cs, shots=SHOTS, seed_simulator=seed, memory=True).result()
    assert len(got.results) == len(cs), (len(got.results), len(cs))
    for i in range(len(cs)):
        assert got.get_counts(i) == want.get_counts(i), f"experiment {i}: counts differ"
        assert got.get_memory(i) == want.get_memory(i), f"experiment {i}: memory differs"


def started_sub_job(dep: Deployment, job: AerJobSet) -> tuple[str, str] | None:
    """(task id, worker hostname) of a sub-job that a worker runs now, as Flower saw it."""
    for task_id, task in dep.flower_tasks(job.job_id()).items():
        if task.get("state") == "STARTED" and task.get("worker"):
            return task_id, str(task["worker"])
    return None


def finished_sub_jobs(dep: Deployment, job: AerJobSet, count: int) -> dict[str, Any] | None:
    """Flower's tasks of the set once it lists ``count`` of them, all succeeded."""
    tasks = dep.flower_tasks(job.job_id())
    done = [t for t in tasks.values() if t.get("state") == "SUCCESS"]
    return tasks if len(tasks) == len(done) == count else None


def running_sub_jobs(dep: Deployment, job: AerJobSet) -> int:
    return sum(t.get("state") == "STARTED" for t in dep.flower_tasks(job.job_id()).values())


class WorkerLogs:
    """Each worker container's log, followed until the container stops: who simulated what."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="worker-logs-"))
        self.followers: dict[str, subprocess.Popen[bytes]] = {}

    def follow(self, dep: Deployment) -> None:
        """Follow each running worker container not followed yet, from its first line."""
        for cid in dep.containers("worker"):
            if cid in self.followers:
                continue
            with (self.folder / cid).open("w") as out:
                self.followers[cid] = subprocess.Popen(
                    ["docker", "logs", "--follow", cid],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )

    def close(self) -> dict[str, str]:
        """Stop following; each container's log by its id."""
        for follower in self.followers.values():
            follower.kill()
            follower.wait()
        logs = {path.name: path.read_text(errors="replace") for path in self.folder.iterdir()}
        shutil.rmtree(self.folder)
        return logs


def assert_simulated_once(logs: dict[str, str], job: AerJobSet, count: int) -> None:
    """Every sub-job of ``job`` was simulated, each exactly once, in any of the containers."""
    simulated = Counter(
        int(m.group(1))
        for out in logs.values()
        for m in re.finditer(rf"sub-job (\d+) of {job.job_id()} simulated", out)
    )
    assert sorted(simulated) == list(range(count)), f"simulated: {simulated}"
    assert set(simulated.values()) == {1}, f"a sub-job ran twice: {simulated}"


def check_three_workers(dep: Deployment, executor: CeleryExecutor) -> tuple[str, set[str]]:
    names = dep.worker_hostnames(3)
    for name in names:
        beat = dep.heartbeats()[name]
        # WORKER_CPUS=1, concurrency 1: the cgroup quota says 1 CPU of this machine's 2.
        assert beat["cores"] == 1 and beat["aer_threads"] == 1, (name, beat)
    wait_until(lambda: dep.flower_online(list(names)), 90, "Flower to see the 3 workers")
    cs = circuits(60, 15, 16, seed=100)
    job = submit(dep, executor, cs, seed=7, max_job_size=2)
    assert_exact(job, cs, 7, timeout_s=300)
    tasks = wait_until(lambda: finished_sub_jobs(dep, job, 30), 30, "Flower to list 30 sub-jobs")
    ran_on = {str(t["worker"]) for t in tasks.values()}
    assert ran_on == set(names), f"sub-jobs ran on {sorted(ran_on)}, containers {sorted(names)}"
    log(f"60 circuits in 30 sub-jobs on {len(ran_on)} worker containers: exact")
    return job.job_id(), ran_on


def check_kill(dep: Deployment, executor: CeleryExecutor) -> str:
    cs = circuits(4, 20, 16, seed=200)
    job = submit(dep, executor, cs, seed=8, max_job_size=1)
    _, hostname = wait_until(lambda: started_sub_job(dep, job), 120, "a sub-job to start")
    victim = dep.worker_hostnames(3)[hostname]
    sh("docker", "kill", victim)
    log(f"killed {hostname} while it ran a sub-job")
    assert_exact(job, cs, 8, timeout_s=300)
    log("the set with a killed worker: exact")
    return victim


def check_scale_down(dep: Deployment, executor: CeleryExecutor) -> None:
    # Back to three (the killed container starts again), then down to one mid-set.
    dep.compose("up", "-d", "--no-build", "--scale", "worker=3")
    dep.worker_hostnames(3)
    logs = WorkerLogs()
    logs.follow(dep)
    try:
        cs = circuits(6, 19, 16, seed=300)
        job = submit(dep, executor, cs, seed=9, max_job_size=1)
        wait_until(lambda: running_sub_jobs(dep, job) >= 2, 120, "two sub-jobs to run")
        dep.compose("up", "-d", "--no-build", "--scale", "worker=1")
        assert len(dep.containers("worker")) == 1
        log("scaled to 1 worker while the set ran")
        assert_exact(job, cs, 9, timeout_s=300)
    finally:
        out = logs.close()
    assert_simulated_once(out, job, len(cs))
    log("scale-down mid-set: exact, each sub-job simulated once")


def check_redis_restart(dep: Deployment, executor: CeleryExecutor) -> None:
    cs = circuits(6, 18, 16, seed=400)
    job = submit(dep, executor, cs, seed=10, max_job_size=1)
    wait_until(lambda: job.status(0).name == "DONE", 120, "the first sub-job to finish")
    (redis_id,) = dep.containers("redis")
    sh("docker", "restart", redis_id)
    log("restarted Redis while the set ran")
    assert_exact(job, cs, 10, timeout_s=300)
    log("the set across a Redis restart: exact")


# How long a worker of the scaler runs nothing before it is drained, in check_autoscale.
IDLE_GRACE_S = 5.0


def check_autoscale(dep: Deployment, executor: CeleryExecutor) -> None:
    """The compose backend of ``jobset scale``: containers added for a backlog, the set exact
    on them, then, once it ended, the idle containers drained (Celery's warm shutdown) and
    removed until --min are left, each sub-job simulated once."""
    dep.worker_hostnames(1)  # as the scale-down left it
    backend = ComposeBackend(
        project_dir=ROOT,
        files=(ROOT / "docker-compose.yml", ROOT / "tests" / "containers" / "compose.test.yml"),
        compose=("docker-compose", "--project-name", dep.project, "--env-file", str(dep.env_file)),
        stop_timeout_s=60,
    )
    # A rate of one work unit a second makes any backlog "too long to drain": up to --max.
    reader = BacklogReader(executor, work_rate=1.0)
    policy = ScalePolicy(1, 3, 1, target_drain_s=1, idle_grace_s=IDLE_GRACE_S)
    scaler = Scaler(reader, backend, policy, DEFAULT_QUEUE)
    cs = circuits(12, 19, 16, seed=500)
    logs = WorkerLogs()
    drained: list[str] = []
    try:
        job = submit(dep, executor, cs, seed=11, max_job_size=1)
        decision = scaler.reconcile()
        assert decision is not None and decision.add == 2, decision
        started = set(dep.worker_hostnames(3).values())
        logs.follow(dep)
        log("jobset scale (compose): 1 -> 3 worker containers for a backlog")
        assert_exact(job, cs, 11, timeout_s=300)
        ended = time.monotonic()
        log("jobset scale (compose): the set on the added containers exact")

        reasons = [""]

        def back_to_min() -> list[str] | None:
            decision = scaler.reconcile()
            assert decision is not None and decision.add == 0, decision
            drained.extend(decision.drain)
            reasons[0] = decision.reason
            left = dep.containers("worker", all_states=True)  # stopped ones too
            return left if len(left) == policy.min_workers else None

        # A worker is idle once its heartbeat (every 10 s) says so, then for the grace.
        try:
            left = wait_until(back_to_min, 120, "the scaler to drain the idle containers")
        except TimeoutError as e:
            raise AssertionError(f"{e}; the scaler's last decision: {reasons[0]}") from None
        back_s = time.monotonic() - ended
    finally:
        out = logs.close()
    assert set(left) < started and sorted(drained) == sorted(started - set(left)), drained
    dep.worker_hostnames(policy.min_workers)
    for cid in drained:
        assert "Warm shutdown" in out[cid], f"{cid[:12]} was not drained by a warm shutdown"
    assert_simulated_once(out, job, len(cs))
    log(
        f"jobset scale (compose): {len(drained)} idle worker containers drained and removed, "
        f"back to {policy.min_workers} {back_s:.1f} s after the set's end "
        f"(idle grace {IDLE_GRACE_S:g} s); each sub-job simulated once"
    )


def check_flower(dep: Deployment, jobset_id: str, hostnames: set[str]) -> None:
    for path in ("/", "/api/tasks", f"/api/tasks?search={jobset_id}"):
        assert dep.flower_status(path) == 401, path
    tasks = dep.flower_tasks(jobset_id)
    assert len(tasks) == 30 and {t["worker"] for t in tasks.values()} == hostnames
    log("Flower: 401 without the login, the 30 sub-jobs with it")


def check_prometheus(dep: Deployment, count: int) -> None:
    dep.compose("--profile", "monitoring", "up", "-d", "--no-build", "prometheus")
    url = f"http://127.0.0.1:{dep.env['TEST_PROMETHEUS_PORT']}"

    def scraped() -> list[dict[str, Any]] | None:
        try:
            with urllib.request.urlopen(f"{url}/api/v1/targets?state=active", timeout=10) as r:
                targets = json.load(r)["data"]["activeTargets"]
        except (OSError, ValueError):
            return None
        up = [t for t in targets if t["labels"]["job"] == "jobset-workers" and t["health"] == "up"]
        return up if len(up) == count else None

    wait_until(scraped, 120, f"Prometheus to scrape {count} workers")
    query = urllib.parse.quote("jobset_worker_aer_threads")
    with urllib.request.urlopen(f"{url}/api/v1/query?query={query}", timeout=10) as r:
        series = json.load(r)["data"]["result"]
    assert len(series) == count and all(s["value"][1] == "1" for s in series), series
    log(f"Prometheus scraped {count} workers (1 Aer thread each)")


def check_images(dep: Deployment, image: str) -> None:
    secrets = [dep.env[k] for k in ("REDIS_PASSWORD", "FLOWER_REDIS_PASSWORD", "JOBSET_SECRET_KEY")]
    secrets.append(dep.env["FLOWER_BASIC_AUTH"].split(":", 1)[1])
    config = json.loads(sh("docker", "image", "inspect", image))[0]["Config"]
    assert config["User"] == "jobset", config["User"]
    env_names = [e.split("=", 1)[0] for e in config.get("Env") or []]
    assert not [n for n in env_names if re.search(r"SECRET|PASSWORD|TOKEN|AUTH", n)], env_names
    history = sh("docker", "history", "--no-trunc", "--format", "{{.CreatedBy}}", image)
    inspect = sh("docker", "image", "inspect", image)
    for secret in secrets:
        assert secret not in history and secret not in inspect
    assert not re.search(r"(SECRET_KEY|PASSWORD|BASIC_AUTH)=\S", history), history
    for service in ("worker", "flower"):
        for cid in dep.containers(service):
            rows = sh("docker", "top", cid, "-eo", "pid,uid").splitlines()[1:]
            uids = [row.split()[1] for row in rows]
            assert uids and set(uids) == {"10001"}, (service, uids)
    log("images: user jobset (uid 10001) in every process, no secret in history or config")


def check_down(dep: Deployment) -> None:
    dep.compose("--profile", "monitoring", "down", "-v", "--remove-orphans", "--timeout", "30")
    label = f"label=com.docker.compose.project={dep.project}"
    left = {
        kind: sh("docker", kind, "ls", "-q", "--filter", label).split()
        for kind in ("network", "volume")
    }
    left["container"] = sh("docker", "ps", "-aq", "--filter", label).split()
    assert not any(left.values()), left
    log("down -v: no container, network or volume left")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--project", required=True)
    parser.add_argument("--env-file", type=Path, required=True)
    parser.add_argument("--image", required=True)
    parser.add_argument("--summary", type=Path, required=True)
    args = parser.parse_args(argv)

    dep = Deployment(args.project, args.env_file)
    with CeleryExecutor(dep.settings()) as executor:
        jobset_id, hostnames = check_three_workers(dep, executor)
        check_flower(dep, jobset_id, hostnames)
        check_prometheus(dep, 3)
        check_images(dep, args.image)
        check_kill(dep, executor)
        check_scale_down(dep, executor)
        check_redis_restart(dep, executor)
        check_autoscale(dep, executor)
    dep.redis.close()
    check_down(dep)
    args.summary.write_text(
        f"{len(hostnames)} worker containers, set exact, kill/scale/restart survived, "
        "jobset scale 1 -> 3 -> 1 containers, "
        "Flower auth ok, Prometheus scraped 3 workers"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
