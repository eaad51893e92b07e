"""What tracing costs: the same sets with OpenTelemetry off and on, side by side.

Run: ``.venv/bin/python benchmarks/tracing_cost.py [--reps 5]``.  Starts two local clusters
of the same size, one whose workers trace (exporting over OTLP/HTTP to a receiver on
loopback in this process, which decodes every request) and one whose workers do not, and
times each workload from ``run()`` to the merged ``Result`` in a fresh producer process per
repetition, configured the same way (``OTEL_*`` variables or none).  Repetitions alternate
off and on, so a noisy machine hurts both alike; prints medians and the on/off ratio.

Workloads: W1 (1000 GHZ-5 circuits, 1000 shots, the automatic split) and S400, 400
one-circuit sub-jobs of 10 shots, where the per-sub-job cost of the spans shows most.
"""

from __future__ import annotations

import argparse
import http.server
import os
import statistics
import subprocess
import sys
import threading
from pathlib import Path

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from jobset.executors.machine import available_cores
from jobset.local import LocalCluster

PRODUCER = """
import sys, time
sys.path.insert(0, {here!r})
from circuits import ghz
from qiskit_aer import AerSimulator
from jobset import CeleryExecutor, Settings, run

name = sys.argv[1]
if name == "W1":
    circuits, options = [ghz(5, f"ghz{{i}}") for i in range(1000)], dict(shots=1000)
else:
    circuits, options = [ghz(3, f"s{{i}}") for i in range(400)], dict(shots=10, max_job_size=1)
with CeleryExecutor(Settings.from_env()) as executor:
    started = time.perf_counter()
    result = run(AerSimulator(), circuits, executor=executor, seed_simulator=1, **options).result(
        timeout=600
    )
    took = time.perf_counter() - started
    assert len(result.results) == len(circuits)
print(took)
"""


class _Receiver(http.server.ThreadingHTTPServer):
    spans = 0


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Receiver

    def do_POST(self) -> None:
        request = ExportTraceServiceRequest.FromString(
            self.rfile.read(int(self.headers["Content-Length"]))
        )
        self.server.spans += sum(
            len(scope.spans) for rs in request.resource_spans for scope in rs.scope_spans
        )
        reply = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args: object) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--workloads", default="W1,S400")
    args = parser.parse_args()

    receiver = _Receiver(("127.0.0.1", 0), _Handler)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    otel = {
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": (
            f"http://127.0.0.1:{receiver.server_address[1]}/v1/traces"
        )
    }
    cores = available_cores()
    here = str(Path(__file__).resolve().parent)
    code = PRODUCER.format(here=here)
    base = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    times: dict[tuple[str, str], list[float]] = {}
    with (
        LocalCluster(workers=cores) as off,
        LocalCluster(workers=cores, extra_env=otel) as on,
    ):
        clusters = {"off": (off, {}), "on": (on, otel)}
        for rep in range(args.reps):
            for name in args.workloads.split(","):
                for mode in ("off", "on") if rep % 2 == 0 else ("on", "off"):
                    cluster, extra = clusters[mode]
                    env = {**base, **cluster.settings.to_env(), **extra}
                    done = subprocess.run(
                        [sys.executable, "-c", code, name],
                        env=env,
                        capture_output=True,
                        text=True,
                        check=True,
                    )
                    times.setdefault((name, mode), []).append(float(done.stdout.split()[-1]))
    print(
        f"{cores} worker process(es), {args.reps} repetition(s), spans received: {receiver.spans}"
    )
    print(f"{'workload':10} {'off (s)':>9} {'on (s)':>9} {'on/off':>7}")
    for name in args.workloads.split(","):
        t_off = statistics.median(times[(name, "off")])
        t_on = statistics.median(times[(name, "on")])
        print(f"{name:10} {t_off:9.3f} {t_on:9.3f} {t_on / t_off:7.2f}")


if __name__ == "__main__":
    main()
