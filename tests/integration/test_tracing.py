"""One trace per set, exported over OTLP/HTTP to a real receiver on loopback.

The receiver is a plain ``http.server`` that decodes each ``ExportTraceServiceRequest``
(protobuf, as the SDK's exporter sends it).  Producers run as separate processes configured
only by ``OTEL_*`` variables, as a user's would; the workers are real ``celery worker``
processes whose pool children set tracing up after their fork.  One set: submitted by one
process, a pool child killed in the middle of its first sub-job (so that sub-job is
redelivered), and its result merged by another process that retrieved it by id.
"""

from __future__ import annotations

import http.server
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from jobset import AerJobSet, CeleryExecutor
from jobset.local import LocalCluster

from .faultkit import heavy_circuits, wait_started, wait_until

pytestmark = pytest.mark.integration


@dataclass
class Span:
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    service: str
    attributes: dict[str, object]
    events: list[str] = field(default_factory=list)


class Receiver(http.server.ThreadingHTTPServer):
    """An OTLP/HTTP trace receiver: every span it was sent, decoded."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.spans: list[Span] = []
        self.lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1/traces"

    def of_trace(self, trace_id: str) -> list[Span]:
        with self.lock:
            return [s for s in self.spans if s.trace_id == trace_id]


class _Handler(http.server.BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        request = ExportTraceServiceRequest.FromString(body)
        found = []
        for resource_spans in request.resource_spans:
            service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}.get(
                "service.name", ""
            )
            for scope in resource_spans.scope_spans:
                for s in scope.spans:
                    found.append(
                        Span(
                            s.name,
                            s.trace_id.hex(),
                            s.span_id.hex(),
                            s.parent_span_id.hex(),
                            service,
                            {a.key: _value(a.value) for a in s.attributes},
                            [e.name for e in s.events],
                        )
                    )
        with self.server.lock:
            self.server.spans.extend(found)
        reply = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args: object) -> None:  # quiet
        pass


def _value(value: object) -> object:
    kind = value.WhichOneof("value")  # type: ignore[attr-defined]
    return getattr(value, kind) if kind else None


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def otel_env(receiver) -> dict[str, str]:
    return {
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }


@pytest.fixture(scope="module")
def traced_cluster(otel_env) -> Iterator[LocalCluster]:
    with LocalCluster(workers=1, concurrency=1, extra_env=otel_env) as local:
        yield local


SUBMIT = """
import sys
from qiskit import QuantumCircuit, qpy
from qiskit_aer import AerSimulator
from jobset import CeleryExecutor, Settings, run

with open(sys.argv[1], "rb") as f:
    circuits = list(qpy.load(f))
for k in range(3):
    qc = QuantumCircuit(2, name=f"small{k}")
    qc.h(0); qc.cx(0, 1); qc.measure_all()
    circuits.append(qc)
with CeleryExecutor(Settings.from_env()) as executor:
    job = run(AerSimulator(method="statevector"), circuits, executor=executor,
              max_job_size=1, shots=100, seed_simulator=5)
    print(job.job_id())
"""

MERGE = """
import sys
from jobset import AerJobSet, CeleryExecutor, Settings

with CeleryExecutor(Settings.from_env()) as executor:
    result = AerJobSet.retrieve(sys.argv[1], executor).result(timeout=240)
    print(len(result.results))
"""


def _python(code: str, env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def traced_set(traced_cluster, otel_env, receiver, tmp_path_factory):
    from qiskit import qpy

    path = tmp_path_factory.mktemp("tracing") / "heavy.qpy"
    with path.open("wb") as f:
        qpy.dump(heavy_circuits(20, [2]), f)
    env = dict(os.environ, **traced_cluster.settings.to_env(), **otel_env)
    jobset_id = _python(SUBMIT, env, str(path))
    with CeleryExecutor(traced_cluster.settings) as executor:
        job = AerJobSet.retrieve(jobset_id, executor)
        where = wait_started(executor, job, 0)
        os.kill(where["pid"], signal.SIGKILL)  # the pool child: sub-job 0 is redelivered
        assert _python(MERGE, env, jobset_id) == "4"

    def whole() -> list[Span] | None:
        with receiver.lock:
            runs = [s for s in receiver.spans if s.name == "jobset.run"]
        run = next((s for s in runs if s.attributes.get("jobset.id") == jobset_id), None)
        if run is None:
            return None
        spans = receiver.of_trace(run.trace_id)
        names = Counter(s.name for s in spans)
        ended = {
            s.attributes.get("jobset.sub_job.index") for s in spans if s.name == "jobset.sub_job"
        }
        return spans if ended == {0, 1, 2, 3} and names["jobset.merge"] == 1 else None

    spans = wait_until(whole, 60, "every span of the set at the receiver")
    return jobset_id, spans, traced_cluster


def _one(spans: list[Span], name: str, **attributes: object) -> Span:
    found = [
        s
        for s in spans
        if s.name == name and all(s.attributes.get(k) == v for k, v in attributes.items())
    ]
    assert len(found) == 1, (name, attributes, found)
    return found[0]


def test_a_set_is_one_trace_from_run_through_each_sub_job_to_the_merge(traced_set):
    jobset_id, spans, cluster = traced_set
    run = _one(spans, "jobset.run", **{"jobset.id": jobset_id})
    assert run.parent_id == "" and run.service == "jobset-producer"
    assert run.attributes["jobset.sub_jobs"] == 4 and run.attributes["jobset.experiments"] == 4
    assert _one(spans, "jobset.plan").parent_id == run.span_id
    submit = _one(spans, "jobset.submit")
    assert submit.parent_id == run.span_id
    publishes = [s for s in spans if s.name == "jobset.encode_publish"]
    assert publishes and all(s.parent_id == submit.span_id for s in publishes)
    assert sum(s.attributes["jobset.sub_jobs"] for s in publishes) == 4

    for index in range(4):
        sub_job = _one(spans, "jobset.sub_job", **{"jobset.sub_job.index": index})
        assert sub_job.parent_id == run.span_id and sub_job.service == "jobset-worker"
        assert sub_job.attributes["jobset.id"] == jobset_id
        assert sub_job.attributes["jobset.worker"] in cluster.worker_hostnames
        assert sub_job.attributes["messaging.destination.name"] == "jobset.cpu"
        assert sub_job.attributes["jobset.experiments"] == 1
        assert sub_job.attributes["jobset.shots"] == 100
        assert sub_job.attributes["jobset.state"] == "SUCCESS"
        children = [s.name for s in spans if s.parent_id == sub_job.span_id]
        assert sorted(children) == [
            "jobset.payload_read",
            "jobset.queued",
            "jobset.simulate",
            "jobset.store_result",
        ]


def test_a_redelivered_sub_job_carries_the_event_on_its_run_that_completed(traced_set):
    _, spans, _ = traced_set
    again = _one(spans, "jobset.sub_job", **{"jobset.sub_job.index": 0})
    assert "redelivered" in again.events
    for index in (1, 2, 3):
        assert (
            "redelivered"
            not in _one(spans, "jobset.sub_job", **{"jobset.sub_job.index": index}).events
        )


def test_a_set_retrieved_in_another_process_continues_its_trace(traced_set):
    jobset_id, spans, _ = traced_set
    run = _one(spans, "jobset.run")
    result = _one(spans, "jobset.result")
    assert result.parent_id == run.span_id and result.attributes["jobset.id"] == jobset_id
    assert _one(spans, "jobset.merge").parent_id == result.span_id


def test_no_span_carries_a_secret_or_a_url(traced_set):
    _, spans, cluster = traced_set
    password = urlsplit(cluster.settings.broker_url).password
    assert password  # the local cluster's server has one
    secrets = [cluster.settings.secret_key.decode(errors="replace"), password, "redis://"]
    for s in spans:
        for value in s.attributes.values():
            assert not any(str(secret) in str(value) for secret in secrets), (s.name, value)
