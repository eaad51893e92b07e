"""One OpenTelemetry trace per job set: off by default, and free when off.

Tracing is on when OpenTelemetry's own variables ask for it: ``OTEL_TRACES_EXPORTER`` set
(to anything but ``none``), or ``OTEL_EXPORTER_OTLP_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` set, and ``OTEL_SDK_DISABLED`` not ``true``; or when
the process already installed an OpenTelemetry SDK tracer provider of its own, which is
then used as it is.  Otherwise nothing is imported (opentelemetry is the optional ``trace``
extra) and every hook returns a shared no-op context manager.  The OTLP/HTTP exporter is
configured by the SDK from the same ``OTEL_*`` variables (endpoint, headers, timeout,
``OTEL_SERVICE_NAME``, ``OTEL_BSP_*``); this module reads no other setting.

The trace: ``jobset.run`` (``jobset.plan``, ``jobset.submit`` with the encoding and
publishing; a child of the caller's span when there is one), then each sub-job on its
worker (``workers.tracing``), then ``jobset.result`` with ``jobset.merge``.  The run
span's context is kept in Redis under ``jobset:{id}:trace`` (:func:`trace_key`), with the
time the set was published: workers read it once per set and pool process, and a set
retrieved by id continues the same trace.
That value is unsigned input: :func:`parse_carrier` accepts only a well-formed W3C
``traceparent`` and a plausible time.  Spans carry ids, indices, names of workers and
queues, counts of experiments and shots: never a URL, a key or a payload.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import math
import os
import re
import sys
import time
from collections.abc import Iterator, Mapping
from typing import Any

logger = logging.getLogger(__name__)

_TRACEPARENT = re.compile(r"00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}")
_NULL = contextlib.nullcontext()
_INSTRUMENTATION = "jobset"

# "service": the service name a lazily set-up provider gets (workers.tracing names its own).
_state: dict[str, Any] = {"enabled": None, "tracer": None, "service": "jobset-producer"}


def wanted(env: Mapping[str, str]) -> bool:
    """Whether OpenTelemetry's variables in ``env`` ask for traces."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none":
        return False
    return bool(
        exporter
        or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def _installed_provider() -> bool:
    """True when this process already set an SDK tracer provider (checked without import)."""
    if "opentelemetry.sdk.trace" not in sys.modules:
        return False
    from opentelemetry import trace  # already imported: free

    provider = trace.get_tracer_provider()
    return type(provider).__module__.startswith("opentelemetry.sdk")


def enabled() -> bool:
    """Whether this process traces (decided once; :func:`setup` may decide it earlier)."""
    on = _state["enabled"]
    if on is None:
        on = _state["enabled"] = wanted(os.environ) or _installed_provider()
    return bool(on)


def setup(service_name: str) -> None:
    """Install an SDK tracer provider exporting over OTLP/HTTP, if tracing is wanted and the
    process has none; call it where the process starts (a pool child after its fork)."""
    if not enabled() or _installed_provider():
        return
    try:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as e:
        # Asked for by the environment, not installed: say so once and run untraced.
        logger.warning(
            "OTEL_* variables ask for traces but %s; install the `trace` extra "
            "(pip install 'qiskit-aer-jobset[trace]'); running without traces",
            e,
        )
        _state["enabled"] = False
        return

    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service_name}
    provider = TracerProvider(resource=Resource.create(attributes))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _state["tracer"] = None


def name_service(name: str) -> None:
    """The service name of a provider set up lazily (at the first span) in this process."""
    _state["service"] = name


def shutdown() -> None:
    """Export what is buffered (a pool child about to exit)."""
    if not _state["enabled"] or "opentelemetry.trace" not in sys.modules:
        return
    from opentelemetry import trace

    provider = trace.get_tracer_provider()
    flush = getattr(provider, "force_flush", None)
    if flush is not None:
        flush()


def tracer() -> Any:
    """The tracer, or None when tracing is off."""
    if not enabled():
        return None
    found = _state["tracer"]
    if found is None:
        setup(_state["service"])  # where no process start hook set it up already
        if not enabled():
            return None
        from opentelemetry import trace

        found = _state["tracer"] = trace.get_tracer(_INSTRUMENTATION)
    return found


def span(name: str, *, parent: str | None = None, **attributes: Any) -> Any:
    """A context manager: a span named ``name`` (the current span's child, or the child of
    the ``parent`` traceparent), yielding it; a no-op yielding None when tracing is off."""
    found = tracer()
    if found is None:
        return _NULL
    return found.start_as_current_span(
        name, context=context_of(parent), attributes=span_attributes(attributes)
    )


# True inside a set's run span in this context: a nested submit does not open another.
_in_run: contextvars.ContextVar[bool] = contextvars.ContextVar("jobset_in_run", default=False)


def run_span(name: str, **attributes: Any) -> Any:
    """The root span of one set: :func:`span`, unless this context is already inside one
    (``run()`` opens it around planning; a primitive's submit opens it itself)."""
    if not enabled() or _in_run.get():
        return _NULL
    return _run_span(name, attributes)


@contextlib.contextmanager
def _run_span(name: str, attributes: dict[str, Any]) -> Iterator[Any]:
    token = _in_run.set(True)
    try:
        with span(name, **attributes) as opened:
            yield opened
    finally:
        _in_run.reset(token)


def annotate(**attributes: Any) -> None:
    """Set attributes on the current span (no-op when off)."""
    if not enabled():
        return
    from opentelemetry import trace

    trace.get_current_span().set_attributes(span_attributes(attributes))


def event(name: str, **attributes: Any) -> None:
    """Add an event to the current span (no-op when off)."""
    if not enabled():
        return
    from opentelemetry import trace

    trace.get_current_span().add_event(name, span_attributes(attributes))


def current_traceparent() -> str | None:
    """The current span's W3C ``traceparent``, or None (off, or no span)."""
    if not enabled():
        return None
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    value = carrier.get("traceparent")
    return value if value and _TRACEPARENT.fullmatch(value) else None


def context_of(traceparent: str | None) -> Any:
    """The OpenTelemetry context whose span is ``traceparent`` (None: the current one)."""
    if traceparent is None:
        return None
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator().extract({"traceparent": traceparent})


def span_attributes(values: Mapping[str, Any]) -> dict[str, Any]:
    """``jobset_id=...`` as ``jobset.id``: keyword names, dotted; None values dropped."""
    out = {}
    for key, value in values.items():
        if value is None:
            continue
        name = ATTRIBUTE_NAMES.get(key, key)
        out[name] = value if isinstance(value, (bool, int, float, str)) else str(value)
    return out


# Keyword -> span attribute (OpenTelemetry's messaging names where one fits).
ATTRIBUTE_NAMES = {
    "jobset_id": "jobset.id",
    "index": "jobset.sub_job.index",
    "sub_jobs": "jobset.sub_jobs",
    "experiments": "jobset.experiments",
    "shots": "jobset.shots",
    "worker": "jobset.worker",
    "queue": "messaging.destination.name",
    "task_id": "messaging.message.id",
    "state": "jobset.state",
    "backend": "jobset.backend",
    "partial": "jobset.partial",
    "failed": "jobset.failed",
    "worker_losses": "jobset.worker_losses",
    "retries": "jobset.retries",
    "result_bytes": "jobset.result_bytes",
}


# ---------------------------------------------------------------------- in Redis


def carrier(traceparent: str, published_at: float) -> str:
    """What is stored under :func:`trace_key`."""
    return json.dumps({"traceparent": traceparent, "published_at": published_at})


def parse_carrier(raw: object) -> tuple[str, float] | None:
    """``(traceparent, published_at)`` from a stored value, or None when it is not one.

    Whoever can write to Redis can write this value: a bad one means no parent, never an
    error (the sub-job then starts a trace of its own).
    """
    if not isinstance(raw, (bytes, str)) or len(raw) > 512:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(value, dict):
        return None
    parent, at = value.get("traceparent"), value.get("published_at")
    if not isinstance(parent, str) or not _TRACEPARENT.fullmatch(parent):
        return None
    if isinstance(at, bool) or not isinstance(at, (int, float)) or not math.isfinite(at):
        return None
    if not 0 < at <= time.time() + 3600:
        return None
    return parent, float(at)
