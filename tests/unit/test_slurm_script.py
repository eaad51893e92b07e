"""The Slurm worker's batch script: resources, threads, queues, and no secret in it."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobset.errors import ConfigurationError
from jobset.scaling.sbatch import SlurmWorkerSpec, batch_script, job_id_of, worker_exports

KEY = "k" * 40


def private(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    path.chmod(0o600)
    return str(path)


def directives(script: str) -> dict[str, str]:
    found = {}
    for line in script.splitlines():
        if line.startswith("#SBATCH --"):
            name, _, value = line[len("#SBATCH --") :].partition("=")
            found[name] = value
    return found


def test_the_script_asks_for_the_allocation_and_signals_the_worker_before_the_limit(tmp_path):
    spec = SlurmWorkerSpec(
        partition="short", time_limit="2:00:00", cpus=8, memory_mb=16000, concurrency=2,
        signal_lead_s=90, workdir=tmp_path,
    )  # fmt: skip
    env = {"JOBSET_SECRET_KEY_FILE": private(tmp_path, "key", KEY)}
    script = batch_script(spec, worker_exports(env, spec))
    found = directives(script)
    assert found["partition"] == "short" and found["time"] == "2:00:00"
    assert found["cpus-per-task"] == "8" and found["mem"] == "16000M"
    assert found["signal"] == "B:TERM@90"
    assert found["export"] == "PATH,HOME,LANG"
    assert "export JOBSET_AER_THREADS=4" in script  # 2 processes x 4 threads = 8 CPUs
    assert "export JOBSET_WORKER_MEMORY_MB=8000" in script
    assert "export REMAP_SIGTERM=SIGQUIT" in script
    last = script.splitlines()[-1]
    assert last.startswith("exec ") and "--concurrency=2" in last
    assert "--queues=jobset.cpu" in last and '--hostname=slurm-"${SLURM_JOB_ID}"@%h' in last


def test_no_secret_is_written_only_the_paths_of_private_files(tmp_path):
    spec = SlurmWorkerSpec(workdir=tmp_path)
    env = {
        "JOBSET_SECRET_KEY_FILE": private(tmp_path, "key", KEY),
        "JOBSET_BROKER_URL_FILE": private(tmp_path, "url", "redis://:hunter2@h:6379/0"),
        "JOBSET_RESULT_TTL_S": "600",
    }
    script = batch_script(spec, worker_exports(env, spec))
    assert KEY not in script and "hunter2" not in script
    assert f"export JOBSET_SECRET_KEY_FILE={tmp_path / 'key'}" in script
    assert "export JOBSET_RESULT_TTL_S=600" in script


@pytest.mark.parametrize(
    "variable, value",
    [
        ("JOBSET_SECRET_KEY", KEY),
        ("JOBSET_PREVIOUS_SECRET_KEYS", KEY),
        ("JOBSET_SENTINEL_PASSWORD", "pw"),
        ("JOBSET_BROKER_URL", "redis://:hunter2@h:6379/0"),
        ("JOBSET_RESULT_BACKEND", "redis://user:hunter2@h:6379/1"),
    ],
)
def test_a_secret_given_as_a_value_is_refused_with_its_file_form(variable, value):
    with pytest.raises(ConfigurationError, match=f"set {variable}_FILE") as raised:
        worker_exports({variable: value}, SlurmWorkerSpec())
    assert value not in str(raised.value)


def test_a_url_without_a_password_is_passed_as_a_value():
    exports = worker_exports({"JOBSET_BROKER_URL": "redis://h:6379/0"}, SlurmWorkerSpec())
    assert exports["JOBSET_BROKER_URL"] == "redis://h:6379/0"


def test_a_secret_file_others_can_read_is_refused_before_anything_is_submitted(tmp_path):
    path = tmp_path / "key"
    path.write_text(KEY)
    path.chmod(0o644)
    with pytest.raises(ConfigurationError, match="chmod 600"):
        worker_exports({"JOBSET_SECRET_KEY_FILE": str(path)}, SlurmWorkerSpec())


def test_concurrency_and_threads_never_exceed_the_allocation():
    with pytest.raises(ConfigurationError, match="exceeds the 2 CPU"):
        SlurmWorkerSpec(cpus=2, concurrency=3)
    with pytest.raises(ConfigurationError, match="exceeds the 4 CPU"):
        SlurmWorkerSpec(cpus=4, concurrency=2, aer_threads=3)
    with pytest.raises(ConfigurationError, match="exceeds the 4 CPU"):
        worker_exports({"JOBSET_AER_THREADS": "3"}, SlurmWorkerSpec(cpus=4, concurrency=2))
    assert SlurmWorkerSpec(cpus=7, concurrency=2).threads == 3


def test_gpu_workers_ask_for_gpus_and_consume_the_gpu_queue(tmp_path):
    spec = SlurmWorkerSpec(partition="gpu", gpus=1, cpus=4, workdir=tmp_path)
    script = batch_script(spec, {})
    assert directives(script)["gres"] == "gpu:1"
    assert "--queues=jobset.gpu" in script.splitlines()[-1]


@pytest.mark.parametrize(
    "bad", [{"time_limit": "soon"}, {"partition": "a b"}, {"queues": ("q;rm",)}]
)
def test_names_and_times_that_would_break_the_script_are_refused(bad):
    with pytest.raises(ConfigurationError):
        SlurmWorkerSpec(**bad)


def test_a_slurm_workers_job_id_is_read_from_its_celery_hostname():
    assert job_id_of("slurm-4711@node17") == "4711"
    assert job_id_of("local0-abc@vm") is None
    assert job_id_of("slurm-x@node") is None


def test_setup_lines_run_in_the_workdir_before_the_worker(tmp_path):
    spec = SlurmWorkerSpec(workdir=tmp_path, setup=("module load cuda/12", "source env.sh"))
    lines = batch_script(spec, {}).splitlines()
    cd = lines.index(f"cd {tmp_path}")
    assert lines[cd + 1 : cd + 3] == ["module load cuda/12", "source env.sh"]
    assert lines[cd + 3].startswith("exec ")
