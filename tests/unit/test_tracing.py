"""Tracing's switches and its one value read from Redis: pure, no server, no exporter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from jobset.observe import tracing

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.mark.parametrize(
    ("env", "on"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, False),
        ({"OTEL_SERVICE_NAME": "mine"}, False),
    ],
)
def test_tracing_is_on_only_when_opentelemetry_variables_ask_for_it(env, on):
    assert tracing.wanted(env) is on


def test_off_imports_nothing_and_every_hook_is_the_same_no_op():
    # redis-py imports parts of opentelemetry itself where it is installed: count ours only.
    code = (
        "import sys\n"
        "import jobset.cli.commands, jobset.simulator\n"
        "from jobset.observe import tracing\n"
        "before = {m for m in sys.modules if m.startswith('opentelemetry')}\n"
        "assert tracing.span('x') is tracing.span('y', parent=None, index=1)\n"
        "with tracing.span('x') as s: assert s is None\n"
        "tracing.annotate(index=1); tracing.event('e')\n"
        "assert tracing.current_traceparent() is None and not tracing.enabled()\n"
        "after = {m for m in sys.modules if m.startswith('opentelemetry')}\n"
        "assert after == before, after - before\n"
        "assert 'opentelemetry.exporter.otlp.proto.http' not in sys.modules\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_a_stored_trace_context_is_read_back():
    at = time.time()
    assert tracing.parse_carrier(tracing.carrier(PARENT, at).encode()) == (PARENT, at)


@pytest.mark.parametrize(
    "raw",
    [
        None,
        b"",
        b"not json",
        b"[]",
        json.dumps({"traceparent": PARENT}).encode(),
        json.dumps({"traceparent": PARENT.upper(), "published_at": 1.0}).encode(),
        json.dumps({"traceparent": "00-" + "0" * 32 + "-b7ad6b7169203331-01", "published_at": 1}),
        json.dumps({"traceparent": PARENT + "-extra", "published_at": 1.0}),
        json.dumps({"traceparent": PARENT, "published_at": "1"}),
        json.dumps({"traceparent": PARENT, "published_at": True}),
        json.dumps({"traceparent": PARENT, "published_at": 1e300}),
        json.dumps({"traceparent": PARENT, "published_at": 1.0, "pad": "x" * 600}),
    ],
)
def test_anything_but_a_well_formed_context_means_no_parent(raw):
    assert tracing.parse_carrier(raw) is None


def test_attribute_names_are_dotted_and_values_plain():
    given = {"jobset_id": "s", "index": 3, "worker": None, "other": [1]}
    assert tracing.span_attributes(given) == {
        "jobset.id": "s",
        "jobset.sub_job.index": 3,
        "other": "[1]",
    }


def test_asked_for_but_not_installed_runs_untraced_with_one_warning():
    code = (
        "import sys, logging\n"
        "sys.modules['opentelemetry.exporter.otlp.proto.http.trace_exporter'] = None\n"
        "from jobset.observe import tracing\n"
        "with tracing.span('x') as s: assert s is None\n"
        "assert not tracing.enabled() and tracing.current_traceparent() is None\n"
    )
    env = dict(os.environ, OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "install the `trace` extra" in done.stderr


def test_a_set_is_one_run_span_under_the_callers_span_with_the_processs_own_provider():
    code = (
        "from opentelemetry import trace\n"
        "from opentelemetry.sdk.trace import TracerProvider\n"
        "from opentelemetry.sdk.trace.export import SimpleSpanProcessor\n"
        "from opentelemetry.sdk.trace.export.in_memory_span_exporter import (\n"
        "    InMemorySpanExporter)\n"
        "exporter = InMemorySpanExporter()\n"
        "provider = TracerProvider()\n"
        "provider.add_span_processor(SimpleSpanProcessor(exporter))\n"
        "trace.set_tracer_provider(provider)\n"
        "from jobset.observe import tracing\n"
        "with trace.get_tracer('user').start_as_current_span('notebook cell'):\n"
        "    with tracing.run_span('jobset.run', jobset_id='s'):\n"
        "        with tracing.run_span('jobset.run'):  # a nested submit: no second root\n"
        "            with tracing.span('jobset.submit'):\n"
        "                parent = tracing.current_traceparent()\n"
        "spans = {s.name: s for s in exporter.get_finished_spans()}\n"
        "assert sorted(spans) == ['jobset.run', 'jobset.submit', 'notebook cell'], spans\n"
        "assert spans['jobset.run'].parent.span_id == spans['notebook cell'].context.span_id\n"
        "assert spans['jobset.submit'].parent.span_id == spans['jobset.run'].context.span_id\n"
        "assert spans['jobset.run'].attributes['jobset.id'] == 's'\n"
        "assert parent.split('-')[2] == format(spans['jobset.submit'].context.span_id, '016x')\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
