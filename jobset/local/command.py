"""The local cluster command: docker-compose.yml's topology on one machine, without Docker.

``scripts/cluster [start]`` (or ``python -m jobset.local.command``) starts what compose
starts, with the same settings: a Redis-protocol server with a password and AOF
persistence, N ``celery -A workers.app worker`` processes (each serving Prometheus metrics
from its own multiprocess directory), and Flower with basic auth and persistent state.
Everything listens on loopback.  ``start --detach`` runs it in the background and returns
once it is ready; ``status`` says whether it runs and what it holds; ``stop`` stops it.

The cluster keeps its identity in ``--dir``: the signing key, the passwords and the Redis
port are drawn on the first start and kept in ``identity.json`` (:mod:`.state`), and the
AOF keeps the sets, so a restart serves every set written before it, and the sub-jobs an
interrupted set left queued run when it is back.  Once all of it answers, it writes:

``jobset.env``    the ``JOBSET_*`` variables producers need (``CeleryExecutor.from_cluster``)
``flower-auth``   Flower's ``user:password``
``cluster.json``  the URLs and process ids (written last: its presence means ready)

With ``--ha`` the one server is a primary, a replica and three sentinels
(:class:`jobset.local.ha.SentinelCluster`, whose ports are drawn at each start) and the URL
a ``sentinel://`` one.  It runs until Ctrl-C, SIGTERM or ``stop``, then names the sets
still unfinished, stops everything it started and removes those three files.  Every file
in the folder is readable by its owner only.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from ..deadline import Deadline, growing_sleep, poll
from ..errors import ConfigurationError, JobSetError
from ..executors.celery.cluster_env import DEFAULT_CLUSTER_DIR, ENV_FILE, cluster_settings
from ..settings import ENV_SENTINEL_MASTER, ENV_SENTINEL_PASSWORD, Settings, redact_url
from .cluster import LocalCluster
from .flower import FLOWER_PORT, FlowerProcess
from .ha import SentinelCluster
from .processes import RESERVED_PORT, free_port
from .report import SetsReport
from .server import RedisServer
from .state import (
    COMMAND_MODULE,
    ClusterIdentity,
    load_identity,
    private_dir,
    process_signature,
    read_private,
    remove_pid_file,
    running_pid,
    save_identity,
    write_pid_file,
    write_private,
)

# As the user typed it: the checkout's script, or the installed console script.
PROG = "jobset-cluster" if sys.argv[0].endswith("jobset-cluster") else "scripts/cluster"
_READY_FILES = ("cluster.json", ENV_FILE, "flower-auth")
_ACTIONS = ("start", "status", "stop")
NOT_RUNNING = 3  # status's exit code when nothing runs (as LSB init scripts say)


class _TimedOut(Exception):
    """A wait of this command ran past its deadline."""


def _timed_out() -> NoReturn:
    raise _TimedOut


def _env_file(settings: Settings) -> str:
    lines = ["# Producers: CeleryExecutor.from_cluster(<this folder>), or set -a; . ./jobset.env"]
    lines += [f"{name}={value}" for name, value in sorted(settings.to_env().items())]
    return "\n".join(lines) + "\n"


def _dir_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path(DEFAULT_CLUSTER_DIR),
        help=f"data, logs and connection files (default ./{DEFAULT_CLUSTER_DIR}/)",
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """``start``'s options (the action word is optional: ``scripts/cluster --workers 4``)."""
    parser = argparse.ArgumentParser(
        prog=f"{PROG} [start]",
        description="Redis, N Celery workers and Flower on this machine, as docker-compose.yml "
        "runs them; Ctrl-C stops them all (--detach: in the background). The key, the "
        "passwords and the port are kept in --dir, so a restart serves every earlier set. "
        f"Also: {PROG} status | stop [--dir DIR].",
    )
    parser.add_argument(
        "--detach", action="store_true", help="run in the background; return once ready"
    )
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument(
        "--concurrency", type=int, default=1, help="pool processes per worker (default 1)"
    )
    parser.add_argument(
        "--queues", default=None, help="comma-separated queues the workers consume (default: CPU)"
    )
    parser.add_argument(
        "--redis-port",
        type=int,
        default=0,
        help="Redis port, kept for later starts (default: the kept one, else a free one)",
    )
    parser.add_argument(
        "--flower-port", type=int, default=FLOWER_PORT, help="Flower port (0: a free one)"
    )
    parser.add_argument("--no-flower", action="store_true", help="do not start Flower")
    parser.add_argument("--no-metrics", action="store_true", help="workers serve no metrics")
    _dir_argument(parser)
    parser.add_argument("--loglevel", default="INFO", help="workers' log level (default INFO)")
    parser.add_argument(
        "--ha",
        action="store_true",
        help="a primary, a replica and three sentinels instead of one Redis (the compose "
        "HA file's topology); producers get a sentinel:// URL",
    )
    parser.add_argument(
        "--startup-timeout",
        type=float,
        default=180.0,
        help="with --detach: seconds to wait for the cluster to be ready (default 180)",
    )
    args = parser.parse_args(argv)
    if args.workers < 0 or args.concurrency < 1:
        parser.error("--workers must be at least 0 and --concurrency at least 1")
    if args.redis_port == RESERVED_PORT or not 0 <= args.redis_port < 65536:
        parser.error(f"--redis-port must be a free port other than {RESERVED_PORT}")
    return args


def _parse_other(action: str, argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=f"{PROG} {action}",
        description={
            "status": "Whether the local cluster in --dir runs, and what it holds "
            f"(exit {NOT_RUNNING} when it does not run).",
            "stop": "Stop the local cluster that runs in --dir (its sets stay for the next start).",
        }[action],
    )
    _dir_argument(parser)
    if action == "stop":
        parser.add_argument(
            "--timeout", type=float, default=60.0, help="seconds to wait for it (default 60)"
        )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    action = words.pop(0) if words and words[0] in _ACTIONS else "start"
    try:
        if action == "status":
            return _status(_parse_other(action, words).dir.resolve())
        if action == "stop":
            args = _parse_other(action, words)
            return _stop(args.dir.resolve(), args.timeout)
        args = parse_args(words)
        return _detach(args, words) if args.detach else _serve(args)
    except ConfigurationError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 1


# --------------------------------------------------------------------------- start


def _serve(args: argparse.Namespace) -> int:
    directory = private_dir(args.dir.resolve())
    for sub in ("logs", "redis"):
        # The AOF holds every payload and result, the logs name the sets: owner only.
        private_dir(directory / sub)
    other = running_pid(directory)
    if other is not None:
        raise ConfigurationError(
            f"a local cluster already runs in {directory} (pid {other}): "
            f"`{PROG} status --dir {directory}`"
        )
    for stale in _READY_FILES:  # left by a cluster that was killed
        (directory / stale).unlink(missing_ok=True)
    write_pid_file(directory, os.getpid())
    try:
        return _run(args, directory)
    finally:
        remove_pid_file(directory, os.getpid())


def _identity(directory: Path, port_arg: int) -> ClusterIdentity:
    identity, _new = load_identity(directory, new_port=port_arg or free_port())
    if port_arg and port_arg != identity.redis_port:
        identity = dataclasses.replace(identity, redis_port=port_arg)
        save_identity(directory, identity)
    return identity


def _start_server(
    args: argparse.Namespace, directory: Path, identity: ClusterIdentity
) -> RedisServer | SentinelCluster:
    if args.ha:
        return SentinelCluster(
            data_dir=directory / "redis",
            password=identity.redis_password,
            sentinel_password=identity.sentinel_password,
        ).start()
    port = identity.redis_port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            raise ConfigurationError(
                f"port {port}, this cluster's Redis port (kept in {directory}/identity.json), "
                "is taken by another process; free it, or move the cluster with "
                "--redis-port PORT (producers then read the new jobset.env)"
            ) from None
    server = RedisServer(
        appendonly=True, requirepass=identity.redis_password, data_dir=directory / "redis"
    )
    server.port = port
    server.up()
    return server


def _run(args: argparse.Namespace, directory: Path) -> int:
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())

    identity = _identity(directory, args.redis_port)
    server: RedisServer | SentinelCluster | None = None
    cluster: LocalCluster | None = None
    flower: FlowerProcess | None = None
    try:
        server = _start_server(args, directory, identity)
        sentinel = _sentinel_env(server)
        settings = Settings(
            broker_url=server.url,
            secret_key=identity.secret_key.encode(),
            sentinel_master=sentinel.get(ENV_SENTINEL_MASTER),
            sentinel_password=sentinel.get(ENV_SENTINEL_PASSWORD),
        )
        held = _sets_lines(settings, directory, starting=True)  # before a worker takes any
        cluster = LocalCluster(
            workers=args.workers,
            concurrency=args.concurrency,
            queues=args.queues.split(",") if args.queues else None,
            settings=settings,
            log_dir=directory / "logs",
            loglevel=args.loglevel,
            metrics=not args.no_metrics,
        ).start()
        if not args.no_flower and importlib.util.find_spec("flower") is None:
            print("Flower is not installed (its extra: qiskit-aer-jobset[flower]): not started")
        elif not args.no_flower:
            auth = os.environ.get("FLOWER_BASIC_AUTH") or identity.flower_auth
            flower = FlowerProcess(
                server.url,
                basic_auth=auth,
                db_path=directory / "flower.db",
                log_path=directory / "logs" / "flower.log",
                port=args.flower_port,
                sentinel=sentinel,
            ).start()
            write_private(directory / "flower-auth", auth + "\n")
        write_private(directory / ENV_FILE, _env_file(cluster.settings))
        _print_summary(directory, cluster, server, flower)
        for line in held:
            print(line)
        sys.stdout.flush()
        write_private(
            directory / "cluster.json", json.dumps(_info(cluster, server, flower), indent=2) + "\n"
        )
        reported: set[int] = set()
        while not stop.wait(1.0):
            for w in cluster.workers:
                if not w.running() and w.index not in reported:
                    print(f"worker {w.index} exited; its log: {w.log_path}", file=sys.stderr)
                    reported.add(w.index)
    finally:
        print("stopping the local cluster ...", file=sys.stderr)
        for done in _READY_FILES:
            (directory / done).unlink(missing_ok=True)
        if cluster is not None and server is not None:
            for line in _sets_lines(cluster.settings, directory, starting=False):
                print(line, file=sys.stderr)
        if flower is not None:
            flower.stop()
        if cluster is not None:
            cluster.stop()
        if server is not None:
            server.stop()  # keeps the data dir: the AOF outlives a restart, as compose's volume
    return 0


def _sets_lines(settings: Settings, directory: Path, *, starting: bool) -> list[str]:
    """On start, records this key cannot read (once, not per set) and the sets that resume;
    on stop, the sets that will resume on the next start."""
    try:
        report = SetsReport.read(settings)
    except (JobSetError, OSError) as e:
        return [f"could not list the job sets: {e}"]
    if not starting:
        return report.unfinished_lines(
            f"they are kept in {directory / 'redis'} and resume on the next start "
            f"(`{PROG} start --dir {directory}`)"
        )
    foreign = report.foreign_line()
    resumed = report.unfinished_lines(
        "their queued sub-jobs run now; `jobset watch ID` follows one"
    )
    return ([foreign] if foreign else []) + resumed


def _launcher() -> list[str]:
    """How to run this command again, so that the child names itself as the user did."""
    if PROG == "jobset-cluster":
        return [sys.executable, sys.argv[0]]
    return [sys.executable, "-m", COMMAND_MODULE]


def _detach(args: argparse.Namespace, words: Sequence[str]) -> int:
    """Start the cluster in a session of its own, its output in logs/cluster.log; return
    once it is ready (or say why it is not)."""
    directory = private_dir(args.dir.resolve())
    other = running_pid(directory)
    if other is not None:
        raise ConfigurationError(
            f"a local cluster already runs in {directory} (pid {other}): "
            f"`{PROG} status --dir {directory}`"
        )
    log_path = private_dir(directory / "logs") / "cluster.log"
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
    offset = os.fstat(fd).st_size
    rest = [w for w in words if w != "--detach"]
    with os.fdopen(fd, "ab") as log:
        child = subprocess.Popen(
            [*_launcher(), "start", *rest, "--dir", str(directory)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def ready() -> bool | None:
        if child.poll() is not None:
            return False
        if running_pid(directory) == child.pid and (directory / "cluster.json").exists():
            return True
        return None

    try:
        pause = growing_sleep(0.1, 0.2)
        started = poll(ready, Deadline(args.startup_timeout), _timed_out, pause=pause)
    except _TimedOut:
        child.terminate()  # it stops what it started
        started = False
    with log_path.open("rb") as f:
        f.seek(offset)
        said = f.read().decode(errors="replace")
    if not started:
        print(said, end="", file=sys.stderr)
        why = "exited" if child.poll() is not None else f"was not ready in {args.startup_timeout} s"
        print(f"{PROG}: the cluster {why}; its log: {log_path}", file=sys.stderr)
        return 1
    print(said.replace("(Ctrl-C stops it)", f"(pid {child.pid}; `{PROG} stop` stops it)"), end="")
    print(f"  Its log   {log_path}")
    return 0


# --------------------------------------------------------------------------- status, stop


def _status(directory: Path) -> int:
    pid = running_pid(directory)
    if pid is None:
        kept = (directory / "identity.json").exists()
        print(
            f"no local cluster runs in {directory}"
            + (
                f"; its sets are kept there: `{PROG} start --detach --dir {directory}`"
                if kept
                else ""
            )
        )
        return NOT_RUNNING
    text = read_private(directory / "cluster.json")
    if text is None:
        print(f"local cluster in {directory}: starting (pid {pid})")
        return 0
    info = json.loads(text)
    print(f"local cluster in {directory}: running (pid {pid})")
    print(f"  Redis     {redact_url(str(info['redis_url']))}")
    for w in info["workers"]:
        alive = process_signature(int(w["pid"])) is not None
        print(f"  worker    {w['hostname']}  pid {w['pid']}  {'up' if alive else 'EXITED'}")
    if info.get("flower_url"):
        print(f"  Flower    {info['flower_url']}  (login in {directory / 'flower-auth'})")
    print(f"  Notebook  CeleryExecutor.from_cluster({str(directory)!r})")
    with contextlib.suppress(ConfigurationError):
        report = SetsReport.read(cluster_settings(directory))
        print(f"  Job sets  {report.total} kept, {len(report.unfinished)} unfinished")
        for line in (report.foreign_line(), *report.unfinished_lines("")):
            if line:
                print(f"  {line}")
    return 0


def _stop(directory: Path, timeout_s: float) -> int:
    pid = running_pid(directory)
    if pid is None:
        print(f"no local cluster runs in {directory}")
        return 0
    resume = f"they resume on the next start (`{PROG} start --detach --dir {directory}`)"
    try:
        lines = SetsReport.read(cluster_settings(directory)).unfinished_lines(resume)
    except (JobSetError, OSError) as e:
        lines = [f"could not list the job sets: {e}"]
    signature = process_signature(pid)
    os.kill(pid, signal.SIGTERM)
    print(f"stopping the local cluster in {directory} (pid {pid}) ...")
    for line in lines:
        print(line)
    sys.stdout.flush()

    def gone() -> bool | None:
        return True if process_signature(pid) != signature else None

    try:
        poll(gone, Deadline(timeout_s), _timed_out, pause=growing_sleep(0.1, 0.2))
    except _TimedOut:
        print(f"{PROG}: pid {pid} still runs after {timeout_s} s", file=sys.stderr)
        return 1
    print("stopped")
    return 0


def _sentinel_env(server: RedisServer | SentinelCluster) -> dict[str, str]:
    if not isinstance(server, SentinelCluster):
        return {}
    return {
        ENV_SENTINEL_MASTER: server.master_name,
        ENV_SENTINEL_PASSWORD: server.sentinel_password,
    }


def _info(
    cluster: LocalCluster, server: RedisServer | SentinelCluster, flower: FlowerProcess | None
) -> dict[str, object]:
    redis: dict[str, object] = {"redis_url": server.url}
    if isinstance(server, SentinelCluster):
        redis["redis_pids"] = [s.pid for s in server.servers]
        redis["sentinel_ports"] = list(server.sentinel_ports)
        redis["sentinel_pids"] = server.sentinel_pids
    else:
        redis["redis_pid"] = server.pid
    return {
        **redis,
        "workers": [
            {
                "hostname": w.hostname,
                "pid": w.pid,
                "metrics_url": (
                    f"http://127.0.0.1:{w.metrics_port}/metrics" if w.metrics_port else None
                ),
            }
            for w in cluster.workers
        ],
        "flower_url": flower.url if flower else None,
        "flower_pid": flower.process.pid if flower and flower.process else None,
        "logs": str(cluster.log_dir),
    }


def _print_summary(
    directory: Path,
    cluster: LocalCluster,
    server: RedisServer | SentinelCluster,
    flower: FlowerProcess | None,
) -> None:
    settings = cluster.settings
    print(f"Local cluster ready (Ctrl-C stops it). Files in {directory}:")
    print(f"  Redis     {redact_url(server.url)}  (AOF in {server.data_dir})")
    if isinstance(server, SentinelCluster):
        ports = ", ".join(str(s.port) for s in server.servers)
        print(f"  servers   127.0.0.1 ports {ports}, master name {server.master_name!r}")
    for w in cluster.workers:
        metrics = f"  metrics http://127.0.0.1:{w.metrics_port}/metrics" if w.metrics_port else ""
        print(f"  worker    {w.hostname}  pid {w.pid}{metrics}")
    if flower is not None:
        print(f"  Flower    {flower.url}  (login in {directory / 'flower-auth'})")
    print(f"  Notebook  CeleryExecutor.from_cluster({str(directory)!r})")
    print(f"  Shell     set -a; . {directory / ENV_FILE}; set +a")
    print(f"  Logs      {cluster.log_dir}  (Aer threads per task: {settings.aer_threads})")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
