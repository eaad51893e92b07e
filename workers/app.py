"""The Celery app that workers run: ``celery -A workers.app worker``.

Settings come from the ``JOBSET_*`` environment variables (this module is an edge).  The
prefork parent only imports; simulators are warmed up and run in the pool children
(``worker_process_init``), because Aer can hang in a child forked from a parent that
already simulated (qiskit-aer #1385, #425, #1315).  With ``JOBSET_METRICS_PORT`` set, the
main process serves Prometheus metrics (:mod:`workers.metrics`).  Remote control commands
that steer a worker are ignored unless enabled (:mod:`workers.control`).
"""

from __future__ import annotations

from celery import Celery

from jobset.executors.celery.config import celery_config
from jobset.settings import MetricsSettings, Settings

from .control import KombuScripts, drop_steering_commands, enabled_commands
from .events import BatchedEvents
from .lifecycle import Heartbeat, OwnerQueues
from .metrics import MetricsServer

settings = Settings.from_env()
metrics_settings = MetricsSettings.from_env()

app = Celery("workers", include=["workers.tasks", "workers.timeline"])
app.config_from_object(celery_config(settings))
app.conf.jobset_settings = settings
app.conf.jobset_metrics = metrics_settings
app.steps["worker"].add(Heartbeat)
app.steps["worker"].add(MetricsServer)
app.steps["worker"].add(KombuScripts)
app.steps["consumer"].add(OwnerQueues)
app.steps["consumer"].add(BatchedEvents)
drop_steering_commands(enabled_commands(settings.worker_control))
