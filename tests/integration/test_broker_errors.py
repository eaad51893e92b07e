"""Redis gone or frozen under every call on a submitted set: the project's error, in bounded time.

A running cluster holds a submitted set (its first sub-job held mid-run, so the set stays
RUNNING for the whole module).  Each test takes Redis away under one call of the job set
or of the command line, in one of two ways, and puts it back afterwards:

- ``gone``: the server is stopped (connections reset, new ones refused), then started
  again on the same port and data;
- ``frozen``: the server is stopped with SIGSTOP (connections accepted by the kernel, never
  answered), then continued with SIGCONT.

Every call must raise :class:`~jobset.BrokerUnavailableError` (chained from the third-party
error, naming the server with its password redacted) or, on the command line, print one
``error: ...`` line and exit non-zero; and it must do so within the bound documented for
``JOBSET_CONNECT_TIMEOUT_S`` (README, docs/reliability.md), plus a generous margin for a
busy machine: before this bound a frozen Redis held ``status()`` for 95 s and ``jobset ls``
for good.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest

from jobset import AerJobSet, BrokerUnavailableError, CeleryExecutor, Settings
from jobset.local import LocalCluster, RedisServer
from jobset.protocol import counts_key

from .faultkit import heavy_circuits, held, submit_exact, wait_until

pytestmark = pytest.mark.integration
logger = logging.getLogger(__name__)

SECRET = "b" * 32
PASSWORD = "frozen-pass-7"
CONNECT_TIMEOUT_S = 2
# The bounds as README and docs/reliability.md state them for JOBSET_CONNECT_TIMEOUT_S = C.
CALL_BOUND_S = 3 * CONNECT_TIMEOUT_S
WAIT_BOUND_S = 9 * CONNECT_TIMEOUT_S + 2
# For a busy machine (two cores shared with other test runs), not for the product.
MARGIN_S = 15.0
# Longer than any bound: a wait that ends with its own timeout has failed this test.
WAIT_TIMEOUT_S = 300


@dataclass
class Site:
    server: RedisServer
    executor: CeleryExecutor
    job: AerJobSet
    env: dict[str, str]


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    with RedisServer(appendonly=True, requirepass=PASSWORD) as server:
        settings = Settings(
            broker_url=server.url, secret_key=SECRET, connect_timeout_s=CONNECT_TIMEOUT_S
        )
        with (
            LocalCluster(workers=1, settings=settings) as cluster,
            CeleryExecutor(cluster.settings) as executor,
        ):
            job = submit_exact(executor, heavy_circuits(18, range(3)), shots=10, seed=3)
            env = {**os.environ, **cluster.settings.to_env()}
            with held(executor, job, 0):
                yield Site(server, executor, job, env)


@contextlib.contextmanager
def redis_away(server: RedisServer, how: str) -> Iterator[None]:
    """Redis gone (stopped) or frozen (SIGSTOP) inside the block; back afterwards."""
    if how == "gone":
        server.down()
        try:
            yield
        finally:
            server.up()
        return
    pid = server.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def assert_mapped(error: BaseException, server: RedisServer) -> None:
    """The project's error, chained from the third-party one, naming the server safely."""
    assert isinstance(error, BrokerUnavailableError), repr(error)
    cause = error.__cause__
    assert cause is not None
    assert type(cause).__module__.split(".")[0] in {"redis", "kombu", "celery", "builtins"}
    message = str(error)
    assert message.startswith("cannot reach Redis at redis://:***@127.0.0.1:"), message
    assert f":{server.port}/" in message and PASSWORD not in message + repr(error)


CALLS: dict[str, Callable[[Site], Any]] = {
    "status": lambda s: s.job.status(),
    "progress": lambda s: s.job.progress(),
    "cancel": lambda s: s.job.cancel(),
    "result": lambda s: s.job.result(timeout=WAIT_TIMEOUT_S),
    "retrieve": lambda s: AerJobSet.retrieve(s.job.job_id(), s.executor),
    "list_sets": lambda s: AerJobSet.list_sets(s.executor),
    "delete": lambda s: s.job.delete(),
}
WAITS: dict[str, Callable[[Site], Any]] = {
    "result": lambda s: s.job.result(timeout=WAIT_TIMEOUT_S),
    "wait_for_final_state": lambda s: s.job.wait_for_final_state(timeout=WAIT_TIMEOUT_S),
}
COMMANDS = {"ls": ["ls"], "status": ["status"], "cancel": ["cancel"], "rm": ["delete"]}


@pytest.mark.parametrize("how", ["gone", "frozen"])
@pytest.mark.parametrize("call", list(CALLS))
def test_a_call_on_a_set_raises_broker_unavailable_within_the_bound_when_redis_is_away(
    site, call, how
):
    bound_s = WAIT_BOUND_S if call == "result" else CALL_BOUND_S
    with redis_away(site.server, how):
        started = time.monotonic()
        with pytest.raises(BrokerUnavailableError) as caught:
            CALLS[call](site)
        elapsed = time.monotonic() - started
    assert_mapped(caught.value, site.server)
    logger.info("%s with Redis %s: %.2f s (bound %g s)", call, how, elapsed, bound_s)
    assert elapsed < bound_s + MARGIN_S, (call, how, elapsed)


@pytest.mark.parametrize("how", ["gone", "frozen"])
@pytest.mark.parametrize("wait", list(WAITS))
def test_a_wait_raises_broker_unavailable_within_the_bound_when_redis_goes_away_under_it(
    site, wait, how
):
    key = counts_key(site.job.job_id())
    with ThreadPoolExecutor(1) as pool, contextlib.closing(site.server.client()) as client:
        waiting = pool.submit(WAITS[wait], site)
        # Subscribed to the set's notices: the wait is under way.
        wait_until(
            lambda: dict(client.pubsub_numsub(key)).get(key.encode(), 0) >= 1,
            60,
            "the wait to subscribe",
        )
        client.close()  # its connection would not outlive the outage
        with redis_away(site.server, how):
            started = time.monotonic()
            with pytest.raises(BrokerUnavailableError) as caught:
                waiting.result(timeout=WAIT_BOUND_S + MARGIN_S + 60)
            elapsed = time.monotonic() - started
    assert_mapped(caught.value, site.server)
    logger.info("%s waiting, Redis %s: %.2f s (bound %g s)", wait, how, elapsed, WAIT_BOUND_S)
    assert elapsed < WAIT_BOUND_S + MARGIN_S, (wait, how, elapsed)


def _cli(env: dict[str, str], *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "jobset.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done, time.monotonic() - started


@pytest.mark.parametrize("how", ["gone", "frozen"])
@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_command_prints_one_error_line_within_the_bound_when_redis_is_away(site, command, how):
    args = COMMANDS[command] + ([] if command == "ls" else [site.job.job_id()])
    # What starting the command costs on this machine now, apart from reaching Redis.
    startup_s = _cli(site.env, "--help")[1]
    with redis_away(site.server, how):
        done, elapsed = _cli(site.env, *args)
    assert done.returncode == 2, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith("error: cannot reach Redis at redis://:***@127.0.0.1:"), lines
    assert PASSWORD not in done.stderr + done.stdout
    logger.info(
        "jobset %s with Redis %s: %.2f s, %.2f s of it starting (bound %g s)",
        command,
        how,
        elapsed,
        startup_s,
        CALL_BOUND_S,
    )
    assert elapsed - startup_s < CALL_BOUND_S + MARGIN_S, (command, how, elapsed, startup_s)
