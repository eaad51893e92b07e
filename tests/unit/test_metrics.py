"""Worker metrics: settings, the expiry of per-set series, and the multiprocess files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.metrics_core import Metric

from jobset.errors import ConfigurationError
from jobset.settings import MetricsSettings
from workers.metrics import (
    SET_LAST_ACTIVITY_NAME,
    SET_RUNNING_NAME,
    drop_expired_sets,
    mark_dead_processes,
    remove_metric_files,
)


def test_metrics_are_off_unless_a_port_is_set() -> None:
    assert MetricsSettings.from_env({}).port is None
    settings = MetricsSettings.from_env(
        {
            "JOBSET_METRICS_PORT": "9808",
            "JOBSET_METRICS_ADDR": "127.0.0.1",
            "JOBSET_METRICS_SET_TTL_S": "60",
            "PROMETHEUS_MULTIPROC_DIR": "/tmp/m",
        }
    )
    assert settings == MetricsSettings(
        port=9808, addr="127.0.0.1", set_ttl_s=60, multiproc_dir="/tmp/m"
    )


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("JOBSET_METRICS_PORT", "nine", "must be an integer"),
        ("JOBSET_METRICS_PORT", "70000", "must be from 1 to 65535"),
        ("JOBSET_METRICS_SET_TTL_S", "0", "must be at least 1"),
    ],
)
def test_bad_metrics_settings_are_refused_with_the_variable_named(
    variable: str, value: str, message: str
) -> None:
    with pytest.raises(ConfigurationError, match=f"{variable}.*{message}|{message}"):
        MetricsSettings.from_env({variable: value})


def _family(name: str, typ: str, samples: list[tuple[dict[str, str], float]]) -> Metric:
    family = Metric(name, name, typ)
    for labels, value in samples:
        family.add_sample(name + ("_total" if typ == "counter" else ""), labels, value)
    return family


def test_idle_sets_drop_out_while_running_and_recent_sets_and_worker_series_stay() -> None:
    w = {"worker": "w@h"}
    families = [
        _family(
            SET_LAST_ACTIVITY_NAME,
            "gauge",
            [
                ({**w, "jobset": "old"}, 100.0),
                ({**w, "jobset": "new"}, 900.0),
                ({**w, "jobset": "busy"}, 50.0),
            ],
        ),
        _family(SET_RUNNING_NAME, "gauge", [({**w, "jobset": "busy"}, 1.0)]),
        _family(
            "jobset_set_shots",
            "counter",
            [({**w, "jobset": "old"}, 10.0), ({**w, "jobset": "new"}, 20.0)],
        ),
        _family("jobset_worker_shots", "counter", [(w, 30.0)]),
    ]

    kept = {f.name: f for f in drop_expired_sets(families, cutoff=500.0)}

    def sets(name: str) -> set[str]:
        return {s.labels["jobset"] for s in kept[name].samples}

    assert sets(SET_LAST_ACTIVITY_NAME) == {"new", "busy"}
    assert sets(SET_RUNNING_NAME) == {"busy"}
    assert sets("jobset_set_shots") == {"new"}
    assert kept["jobset_worker_shots"].samples[0].value == 30.0


def test_a_family_left_without_samples_is_not_exported() -> None:
    families = [
        _family(SET_LAST_ACTIVITY_NAME, "gauge", [({"worker": "w", "jobset": "a"}, 1.0)]),
        _family("jobset_set_shots", "counter", [({"worker": "w", "jobset": "a"}, 5.0)]),
    ]
    assert list(drop_expired_sets(families, cutoff=2.0)) == []


def test_worker_start_removes_only_the_files_prometheus_client_wrote(tmp_path: Path) -> None:
    metric_files = ["counter_12.db", "histogram_7.db", "gauge_livesum_3.db", "gauge_max_9.db"]
    others = ["notes.db", "counter.txt", "gauge_livesum_x.db"]
    for name in metric_files + others:
        (tmp_path / name).write_bytes(b"")
    remove_metric_files(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(others)


def test_the_live_gauges_of_a_process_that_died_unannounced_are_dropped(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    try:
        for pid in (dead.pid, live.pid):
            (tmp_path / f"gauge_livesum_{pid}.db").write_bytes(b"")
        (tmp_path / f"counter_{dead.pid}.db").write_bytes(b"")
        mark_dead_processes(tmp_path)
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
            [f"gauge_livesum_{live.pid}.db", f"counter_{dead.pid}.db"]
        )
    finally:
        live.communicate(b"")


def test_set_labels_come_only_from_valid_set_ids():
    from workers.metrics import INVALID_SET_LABEL, set_label

    good = "0f0e3c2a-5b7d-4c1e-9a8b-112233445566"
    assert set_label({"jobset_id": good}) == good
    for bad in ({"jobset_id": "x" * 10_000}, {"jobset_id": "../x"}, {}, None, ["a"]):
        assert set_label(bad) == INVALID_SET_LABEL


def test_fresh_set_ids_past_the_cap_share_one_label(monkeypatch):
    import uuid

    from workers import metrics

    monkeypatch.setattr(metrics, "_labelled", set())
    monkeypatch.setattr(metrics, "MAX_SET_LABELS", 3)
    first = [str(uuid.uuid4()) for _ in range(3)]
    assert [metrics.set_label({"jobset_id": i}) for i in first] == first
    later = {metrics.set_label({"jobset_id": str(uuid.uuid4())}) for _ in range(50)}
    assert later == {metrics.OTHER_SETS_LABEL}
    assert metrics.set_label({"jobset_id": first[0]}) == first[0]  # known ones keep theirs
