"""The local cluster command: docker-compose.yml's topology on one machine, without Docker.

``scripts/cluster`` (or ``python -m jobset.local.command``) starts what compose starts, with the
same settings: a Redis-protocol server with a password and AOF persistence, N
``celery -A workers.app worker`` processes (each serving Prometheus metrics from its own
multiprocess directory), and Flower with basic auth and persistent state.  Everything
listens on loopback.  Once all of it answers, it writes into ``--dir``:

``jobset.env``    the ``JOBSET_*`` variables producers need (``set -a; . jobset.env``)
``flower-auth``   Flower's ``user:password``
``cluster.json``  the URLs and process ids (written last: its presence means ready)

With ``--ha`` the one server is a primary, a replica and three sentinels
(:class:`jobset.local.ha.SentinelCluster`) and the URL a ``sentinel://`` one.  It runs until
Ctrl-C or SIGTERM, then stops everything it started and removes those three files; the
Redis data (AOF) and Flower's state stay for the next run, like compose's volumes.  The
files that hold secrets are readable by their owner only.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from ..errors import ConfigurationError
from ..settings import ENV_SENTINEL_MASTER, ENV_SENTINEL_PASSWORD, Settings, redact_url
from .cluster import LocalCluster
from .flower import FLOWER_PORT, FlowerProcess
from .ha import SentinelCluster
from .server import RedisServer


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` readable by its owner only, replacing ``path`` at once.

    The temporary file gets a fresh random name and is created with ``O_EXCL`` and
    ``O_NOFOLLOW``: a file or link planted at a guessable name is never written through.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(tmp, flags, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def private_dir(directory: Path) -> Path:
    """``directory`` and its parts made owner-only: it holds the key, the data, the logs."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory.chmod(0o700)
    for sub in ("logs", "redis"):
        (directory / sub).mkdir(mode=0o700, exist_ok=True)
        (directory / sub).chmod(0o700)
    return directory


def _env_file(settings: Settings) -> str:
    lines = ["# Producers: set -a; . ./jobset.env; set +a"]
    lines += [f"{name}={value}" for name, value in sorted(settings.to_env().items())]
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/cluster",
        description="Redis, N Celery workers and Flower on this machine, as docker-compose.yml "
        "runs them; Ctrl-C stops them all.",
    )
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument(
        "--concurrency", type=int, default=1, help="pool processes per worker (default 1)"
    )
    parser.add_argument(
        "--queues", default=None, help="comma-separated queues the workers consume (default: CPU)"
    )
    parser.add_argument(
        "--redis-port", type=int, default=0, help="Redis port (default: a free one, never 6379)"
    )
    parser.add_argument(
        "--flower-port", type=int, default=FLOWER_PORT, help="Flower port (0: a free one)"
    )
    parser.add_argument("--no-flower", action="store_true", help="do not start Flower")
    parser.add_argument("--no-metrics", action="store_true", help="workers serve no metrics")
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path(".local-cluster"),
        help="data, logs and connection files (default ./.local-cluster/)",
    )
    parser.add_argument("--loglevel", default="INFO", help="workers' log level (default INFO)")
    parser.add_argument(
        "--ha",
        action="store_true",
        help="a primary, a replica and three sentinels instead of one Redis (the compose "
        "HA file's topology); producers get a sentinel:// URL",
    )
    args = parser.parse_args(argv)
    if args.workers < 1 or args.concurrency < 1:
        parser.error("--workers and --concurrency must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # The key file, the AOF (every payload and result) and the logs: owner only.
    directory = private_dir(args.dir.resolve())

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())

    server: RedisServer | SentinelCluster
    if args.ha:
        server = SentinelCluster(data_dir=directory / "redis")
    else:
        server = RedisServer(
            appendonly=True, requirepass=secrets.token_hex(16), data_dir=directory / "redis"
        )
        server.port = args.redis_port
    cluster: LocalCluster | None = None
    flower: FlowerProcess | None = None
    try:
        server.start()
        sentinel = _sentinel_env(server)
        cluster = LocalCluster(
            workers=args.workers,
            concurrency=args.concurrency,
            queues=args.queues.split(",") if args.queues else None,
            settings=Settings(
                broker_url=server.url,
                secret_key=secrets.token_hex(32).encode(),
                sentinel_master=sentinel.get(ENV_SENTINEL_MASTER),
                sentinel_password=sentinel.get(ENV_SENTINEL_PASSWORD),
            ),
            log_dir=directory / "logs",
            loglevel=args.loglevel,
            metrics=not args.no_metrics,
        ).start()
        if not args.no_flower:
            auth = os.environ.get("FLOWER_BASIC_AUTH") or f"admin:{secrets.token_urlsafe(12)}"
            flower = FlowerProcess(
                server.url,
                basic_auth=auth,
                db_path=directory / "flower.db",
                log_path=directory / "logs" / "flower.log",
                port=args.flower_port,
                sentinel=sentinel,
            ).start()
            _write_private(directory / "flower-auth", auth + "\n")
        _write_private(directory / "jobset.env", _env_file(cluster.settings))
        _write_private(
            directory / "cluster.json", json.dumps(_info(cluster, server, flower), indent=2) + "\n"
        )
        _print_summary(directory, cluster, server, flower)
        reported: set[int] = set()
        while not stop.wait(1.0):
            for w in cluster.workers:
                if not w.running() and w.index not in reported:
                    print(f"worker {w.index} exited; its log: {w.log_path}", file=sys.stderr)
                    reported.add(w.index)
    except ConfigurationError as e:
        print(f"scripts/cluster: {e}", file=sys.stderr)
        return 1
    finally:
        print("stopping the local cluster ...", file=sys.stderr)
        for done in ("cluster.json", "jobset.env", "flower-auth"):
            (directory / done).unlink(missing_ok=True)
        if flower is not None:
            flower.stop()
        if cluster is not None:
            cluster.stop()
        server.stop()  # keeps the data dir: the AOF outlives a restart, as compose's volume
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
    print(f"  Producers set -a; . {directory / 'jobset.env'}; set +a")
    print(f"  Logs      {cluster.log_dir}  (Aer threads per task: {settings.aer_threads})")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
