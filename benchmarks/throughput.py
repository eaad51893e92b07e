"""Fine-grained sets: what one sub-job costs, against Celery itself and Aer alone.

Run: ``./scripts/bench throughput [--sizes 2000,20000] [--reps 1]``.

One private Redis; two job-set workers and two plain Celery workers
(``benchmarks/baseline_tasks.py``), each a process of concurrency 1 with one Aer thread,
all started before the first measurement and idle while the others run.  For each size N
of two-qubit one-shot circuits, side by side in one run (the order turns with each
repetition, so a loaded machine hurts every row alike):

- ``aer``: Aer alone, one ``AerSimulator(max_parallel_experiments=0).run()`` of all N;
- ``noop``: a Celery no-op task per circuit (the circuit's QPY as its argument);
- ``task``: the minimal Celery task per circuit: QPY in, ``AerSimulator.run``, counts out;
- ``jobset-1``: this job set with ``max_job_size=1``, submit to merged ``Result``;
- ``jobset-auto``: the same with ``max_job_size=None``.

Each row is the wall time from the first publish (or ``run()``) to the last result in
this process, divided by N; the ratios are to the minimal task and to Aer alone.
Then each system runs ``--count`` circuits once more under Redis's ``MONITOR`` (not timed:
it slows the server), and a second table gives the commands each sent Redis per circuit
(a pipeline's or a transaction's each count; EVALSHA is one) and the commands its scripts
ran inside Redis, beside the most frequent ones sent.  The idle workers' polls and
heartbeats fall in every row alike.
``--task-events each`` runs the job-set workers with Celery's own event sending
(``JOBSET_TASK_EVENTS``, see ``workers.events``) instead of the default batches.
"""

from __future__ import annotations

import argparse
import base64
import gc
import io
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import redis
from celery import Celery, group
from qiskit import QuantumCircuit, qpy
from qiskit_aer import AerSimulator

from jobset import CeleryExecutor, Settings, run
from jobset.local import LocalCluster
from jobset.settings import TASK_EVENTS_BATCHED, TASK_EVENTS_CHOICES

HERE = Path(__file__).resolve().parent
SYSTEMS = ("aer", "noop", "task", "jobset-1", "jobset-auto")
SEED = 11


def bell_pairs(n: int) -> list[QuantumCircuit]:
    base = QuantumCircuit(2, name="bell")
    base.h(0)
    base.cx(0, 1)
    base.measure_all()
    return [base.copy(name=f"bell{i}") for i in range(n)]


def qpy_text(circuit: QuantumCircuit) -> str:
    buffer = io.BytesIO()
    qpy.dump(circuit, buffer)
    return base64.b64encode(buffer.getvalue()).decode()


class BaselineWorkers:
    """Two ``celery worker`` processes of the baseline app, started and stopped by pid."""

    def __init__(self, url: str, count: int = 2) -> None:
        self.url, self.count = url, count
        self.processes: list[subprocess.Popen[bytes]] = []
        self.log_dir = Path(tempfile.mkdtemp(prefix="bench-baseline-"))
        self.app = Celery("baseline_producer", broker=url, backend=url)
        self.app.conf.update(
            task_serializer="json", accept_content=["json"], task_default_queue="bench.baseline"
        )

    def __enter__(self) -> BaselineWorkers:
        env = {
            **os.environ,
            "BASELINE_BROKER_URL": self.url,
            "BASELINE_READY_DIR": str(self.log_dir),
            "OMP_NUM_THREADS": "1",
        }
        for i in range(self.count):
            log = (self.log_dir / f"worker{i}.log").open("ab")
            self.processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "celery", "-A", "baseline_tasks", "worker",
                     "-c", "1", "-Q", "bench.baseline", "-n", f"baseline{i}@%h",
                     "--loglevel", "WARNING", "--without-gossip", "--without-mingle"],
                    cwd=HERE, env=env, stdout=log, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL, start_new_session=True,
                )
            )  # fmt: skip
        deadline = time.monotonic() + 120
        while len(list(self.log_dir.glob("*.ready"))) < self.count:
            if time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError(f"baseline workers did not start; logs in {self.log_dir}")
            time.sleep(0.2)
        return self

    def __exit__(self, *_: object) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def time_aer(n: int) -> float:
    circuits = bell_pairs(n)
    start = time.perf_counter()
    result = (
        AerSimulator(max_parallel_experiments=0)
        .run(circuits, shots=1, seed_simulator=SEED)
        .result()
    )
    assert result.success
    return time.perf_counter() - start


def time_celery(app: Celery, task: str, n: int) -> float:
    circuits = bell_pairs(n)
    start = time.perf_counter()
    # The circuit is serialised in the timed part, as a job set's submit does.
    if task == "bench.noop":
        sigs = [app.signature(task, (qpy_text(c),)) for c in circuits]
    else:
        sigs = [
            app.signature(task, (qpy_text(c), 1, SEED + 2113 * i)) for i, c in enumerate(circuits)
        ]
    pending = group(sigs).apply_async()
    outcome = pending.get(timeout=3600)
    elapsed = time.perf_counter() - start
    assert len(outcome) == n
    del pending  # its results unsubscribe now, while the server is up
    gc.collect()
    return elapsed


def time_jobset(executor: CeleryExecutor, n: int, max_job_size: int | None) -> float:
    circuits = bell_pairs(n)
    start = time.perf_counter()
    job = run(
        AerSimulator(), circuits, executor=executor, max_job_size=max_job_size,
        shots=1, seed_simulator=SEED,
    )  # fmt: skip
    result = job.result(timeout=3600)
    elapsed = time.perf_counter() - start
    assert result.success and len(result.results) == n
    return elapsed


def monitored(url: str, work: Callable[[], object]) -> tuple[Counter[str], Counter[str]]:
    """The commands clients sent Redis while ``work`` ran, and those scripts ran in it."""
    sent: Counter[str] = Counter()
    in_scripts: Counter[str] = Counter()
    started, done = threading.Event(), threading.Event()

    def listen() -> None:
        with redis.Redis.from_url(url).monitor() as monitor:
            started.set()
            for command in monitor.listen():
                if done.is_set():
                    return
                name = command["command"].split(" ", 1)[0].upper()
                if command.get("client_type") == "lua":
                    in_scripts[name] += 1
                else:
                    sent[name] += 1

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    started.wait(10)
    client = redis.Redis.from_url(url)
    client.ping()  # the monitor sees commands from here on
    work()
    done.set()
    client.ping()  # wakes the monitor to see that it is done
    listener.join(10)
    client.close()
    return sent, in_scripts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", default="2000,20000", help="numbers of circuits, comma-separated"
    )
    parser.add_argument("--reps", type=int, default=1)
    parser.add_argument(
        "--count", type=int, default=200,
        help="circuits each system runs under MONITOR to count its Redis commands (0: none)",
    )  # fmt: skip
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument(
        "--task-events", default=TASK_EVENTS_BATCHED, choices=TASK_EVENTS_CHOICES,
        help="JOBSET_TASK_EVENTS of the job-set workers",
    )  # fmt: skip
    args = parser.parse_args()
    systems = tuple(s for s in SYSTEMS if s in args.systems.split(","))
    sys.path.insert(0, str(HERE))
    # The cluster points these settings at its private server.
    settings = Settings(
        broker_url="redis://127.0.0.1:6379/0",
        secret_key=secrets.token_hex(32),
        task_events=args.task_events,
    )
    with (
        LocalCluster(workers=2, concurrency=1, settings=settings, private_server=True) as cluster,
        CeleryExecutor(cluster.settings) as executor,
        BaselineWorkers(cluster.redis_url) as baseline,
    ):
        timers: dict[str, Callable[[int], float]] = {
            "aer": time_aer,
            "noop": lambda n: time_celery(baseline.app, "bench.noop", n),
            "task": lambda n: time_celery(baseline.app, "bench.simulate", n),
            "jobset-1": lambda n: time_jobset(executor, n, 1),
            "jobset-auto": lambda n: time_jobset(executor, n, None),
        }
        for system in systems:  # warm-up: imports, connections, pool children
            timers[system](20)
        for n in (int(s) for s in args.sizes.split(",")):
            times: dict[str, list[float]] = {s: [] for s in systems}
            for rep in range(args.reps):
                order = systems[rep % len(systems) :] + systems[: rep % len(systems)]
                for system in order:
                    times[system].append(timers[system](n))
                    print(f"  N={n} rep {rep + 1} {system}: {times[system][-1]:.2f} s", flush=True)
            report(n, {s: statistics.median(t) for s, t in times.items()}, args.reps)
        if args.count > 0:
            report_commands(
                args.count,
                {
                    system: monitored(cluster.redis_url, lambda s=system: timers[s](args.count))
                    for system in systems
                    if system != "aer"
                },
            )


def report(n: int, seconds: dict[str, float], reps: int) -> None:
    per = {s: t * 1000 / n for s, t in seconds.items()}
    print(f"\nN = {n} two-qubit one-shot circuits, 2 workers x concurrency 1, median of {reps}")
    print("| system | total | per circuit | / minimal task | / Aer alone |")
    print("|---|---|---|---|---|")
    for system, ms in per.items():
        to_task = f"{ms / per['task']:.2f}x" if "task" in per else "-"
        to_aer = f"{ms / per['aer']:.2f}x" if "aer" in per else "-"
        print(f"| {system} | {seconds[system]:.2f} s | {ms:.3f} ms | {to_task} | {to_aer} |")
    print(flush=True)


def report_commands(
    n: int, commands: dict[str, tuple[Counter[str], Counter[str]]], shown: int = 8
) -> None:
    print(f"Redis commands per circuit, N = {n}, under MONITOR")
    print("| system | sent | ran in scripts | most sent |")
    print("|---|---|---|---|")
    for system, (sent, in_scripts) in commands.items():
        top = ", ".join(f"{name} {count / n:.2f}" for name, count in sent.most_common(shown))
        print(
            f"| {system} | {sum(sent.values()) / n:.2f} | {sum(in_scripts.values()) / n:.2f} "
            f"| {top} |"
        )
    print(flush=True)


if __name__ == "__main__":
    main()
