"""docker-compose.yml, the Dockerfile and config/ have the properties a deployment needs.

These tests read the files as compose and the Docker builders would;
tests/integration/test_deployment.py runs the services' command lines as local processes, and
scripts/test-containers builds the images and runs the compose file for real.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import tomllib
import yaml
from deployment import (
    COMPOSE_FILE,
    DOCKERFILE,
    ENV_EXAMPLE,
    ROOT,
    MissingVariableError,
    compose_variables,
    dockerfile_instructions,
    dockerfile_stages,
    interpolate,
    load_compose,
    read_env_file,
)

from jobset import settings as jobset_settings
from jobset.executors.celery.config import celery_config
from jobset.local import FlowerProcess
from jobset.protocol import DEFAULT_QUEUE, GPU_QUEUE
from jobset.settings import Settings

# What an operator writes into .env (the rest keeps its defaults).
OPERATOR_ENV = {
    "REDIS_PASSWORD": "0123abcd",
    "FLOWER_REDIS_PASSWORD": "4567cdef",
    "JOBSET_SECRET_KEY": "k" * 64,
    "FLOWER_BASIC_AUTH": "ops:secret",
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return interpolate(load_compose(), OPERATOR_ENV)


def _services(compose: dict[str, Any]) -> dict[str, Any]:
    services: dict[str, Any] = compose["services"]
    return services


def _duration_s(text: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text)
    assert parts, text
    return sum(float(n) * units[u] for n, u in parts)


def _option(command: list[str], name: str) -> str | None:
    for arg in command:
        if arg.startswith(f"{name}="):
            return arg.split("=", 1)[1]
    return None


def test_compose_runs_redis_workers_and_flower_and_puts_gpu_workers_in_a_profile(
    compose: dict[str, Any],
) -> None:
    services = _services(compose)
    assert {"redis", "worker", "flower", "gpu-worker"} <= set(services)
    assert "profiles" not in services["redis"]
    assert "profiles" not in services["worker"]
    assert "profiles" not in services["flower"]
    assert services["gpu-worker"]["profiles"] == ["gpu"]


def test_compose_refuses_to_start_without_the_secrets_from_the_env_file() -> None:
    raw = load_compose()
    for missing in OPERATOR_ENV:
        env = {k: v for k, v in OPERATOR_ENV.items() if k != missing}
        with pytest.raises(MissingVariableError, match=missing):
            interpolate(raw, env)


def test_redis_keeps_an_aof_on_a_volume_needs_a_password_and_never_evicts(
    compose: dict[str, Any],
) -> None:
    redis = _services(compose)["redis"]
    assert re.fullmatch(r"redis:[89]\.\d+(-alpine)?", redis["image"]), redis["image"]
    assert redis["environment"]["REDIS_PASSWORD"] == OPERATOR_ENV["REDIS_PASSWORD"]
    script = redis["command"][-1]
    # The users' passwords reach redis-server on stdin, filled in from the environment.
    assert 'ENVIRON["REDIS_PASSWORD"]' in script and 'ENVIRON["FLOWER_REDIS_PASSWORD"]' in script
    assert OPERATOR_ENV["REDIS_PASSWORD"] not in script
    conf_mount = "./config/redis.conf:/usr/local/etc/redis/redis.conf:ro"
    assert conf_mount in redis["volumes"]
    assert "./config/redis-users.acl:/usr/local/etc/redis/users.acl:ro" in redis["volumes"]
    users = (ROOT / "config" / "redis-users.acl").read_text()
    assert "user default off" in users
    assert "@JOBSET_REDIS_PASSWORD@" in users and "@FLOWER_REDIS_PASSWORD@" in users
    assert "/usr/local/etc/redis/redis.conf -" in script
    data = [v for v in redis["volumes"] if v.endswith(":/data")]
    assert data and data[0].split(":")[0] in compose["volumes"]
    assert "ports" not in redis
    assert "redis-cli --user jobset ping" in " ".join(redis["healthcheck"]["test"])
    assert redis["user"] == "redis"

    conf = {}
    for line in (ROOT / "config" / "redis.conf").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition(" ")
            conf[key] = value.strip()
    assert conf["appendonly"] == "yes"
    assert conf["maxmemory-policy"] == "noeviction"


def test_the_default_user_is_off_yet_may_replay_every_transaction_of_the_aof() -> None:
    # Redis replays its append-only file as the default user; without the fix of
    # redis#14541 it checks that user's permissions on each MULTI/EXEC block, which is how
    # a script's writes (the sub-job tallies) are logged: with none, a restart dropped them.
    users = (ROOT / "config" / "redis-users.acl").read_text().splitlines()
    (default,) = [line.split()[2:] for line in users if line.startswith("user default ")]
    assert default[0] == "off" and not any(r.startswith((">", "#", "nopass")) for r in default)
    assert {"~*", "&*", "+@all"} <= set(default) and not any(
        r.startswith(("-", "reset", "%")) for r in default
    )


def test_workers_scale_with_no_container_name_or_host_port_and_stop_gracefully(
    compose: dict[str, Any],
) -> None:
    for name in ("worker", "gpu-worker"):
        worker = _services(compose)[name]
        assert "container_name" not in worker
        assert "ports" not in worker
        assert worker["command"][:4] == ["celery", "-A", "workers.app", "worker"]
        assert "%h" in _option(worker["command"], "--hostname")  # one name per container
        assert _duration_s(worker["stop_grace_period"]) >= 5 * 60
        assert worker["init"] is True
        assert worker["depends_on"]["redis"]["condition"] == "service_healthy"
        assert worker["environment"]["JOBSET_BROKER_URL"] == (
            f"redis://jobset:{OPERATOR_ENV['REDIS_PASSWORD']}@redis:6379/0"
        )


def test_the_worker_concurrency_and_aer_threads_fit_the_containers_cpus(
    compose: dict[str, Any],
) -> None:
    for env in ({}, read_env_file()):  # compose's defaults, then the example file's values
        worker = _services(interpolate(load_compose(), {**env, **OPERATOR_ENV}))["worker"]
        cpus = float(worker["deploy"]["resources"]["limits"]["cpus"])
        concurrency = int(_option(worker["command"], "--concurrency") or 0)
        assert 1 <= concurrency <= cpus
        # Left empty, the worker divides the CPUs its cgroup quota allows by its concurrency.
        assert worker["environment"]["JOBSET_AER_THREADS"] == ""
        threads = max(1, math.floor(cpus) // concurrency)
        assert concurrency * threads <= cpus


def test_workers_acknowledge_late_and_take_one_sub_job_at_a_time() -> None:
    conf = celery_config(Settings(secret_key="k" * 32))
    assert conf["task_acks_late"] and conf["task_reject_on_worker_lost"]
    assert conf["worker_prefetch_multiplier"] == 1
    assert conf["worker_send_task_events"] and conf["task_send_sent_event"]


def test_workers_get_every_setting_and_flower_gets_no_signing_key(
    compose: dict[str, Any],
) -> None:
    services = _services(compose)
    raw_services = load_compose()["services"]
    # Every variable of the table but the result backend (the broker, in compose).
    expected = {
        var.env
        for cls in jobset_settings.SETTINGS_CLASSES
        for _, var in jobset_settings.variables(cls)
    } - {jobset_settings.ENV_RESULT_BACKEND}
    for name in ("worker", "gpu-worker"):
        assert expected <= set(services[name]["environment"]), name
        assert "FLOWER_BASIC_AUTH" not in services[name]["environment"]
        secret = raw_services[name]["environment"]["JOBSET_SECRET_KEY"]
        assert secret.startswith("${JOBSET_SECRET_KEY:?")
        # The metrics server binds loopback by default; compose opens it to its network.
        assert services[name]["environment"]["JOBSET_METRICS_ADDR"] == "0.0.0.0"

    flower_env = services["flower"]["environment"]
    assert flower_env["JOBSET_SECRET_KEY"] != OPERATOR_ENV["JOBSET_SECRET_KEY"]
    assert flower_env["FLOWER_BASIC_AUTH"] == OPERATOR_ENV["FLOWER_BASIC_AUTH"]
    assert set(services["redis"]["environment"]) == {"REDIS_PASSWORD", "FLOWER_REDIS_PASSWORD"}


def test_the_gpu_worker_consumes_only_the_gpu_queue_from_the_gpu_image_on_a_reserved_gpu(
    compose: dict[str, Any],
) -> None:
    services = _services(compose)
    gpu = services["gpu-worker"]
    command = gpu["command"]
    assert command[command.index("-Q") + 1] == GPU_QUEUE
    assert gpu["build"]["target"] == "gpu"
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    # The CPU worker names no queue, so it consumes only the default (CPU) queue.
    cpu = services["worker"]
    assert "-Q" not in cpu["command"] and "--queues" not in " ".join(cpu["command"])
    assert cpu["build"]["target"] == "cpu"
    assert DEFAULT_QUEUE != GPU_QUEUE


def test_flower_has_basic_auth_persistent_state_on_a_volume_and_port_5555(
    compose: dict[str, Any],
) -> None:
    flower = _services(compose)["flower"]
    command = flower["command"]
    assert command[:4] == ["celery", "-A", "workers.app", "flower"]
    assert _option(command, "--port") == "5555"
    assert _option(command, "--persistent") == "True"
    assert int(_option(command, "--state_save_interval") or 0) > 0
    db = _option(command, "--db")
    mounts = {v.split(":")[1]: v.split(":")[0] for v in flower["volumes"]}
    assert db is not None and any(db.startswith(target + "/") for target in mounts)
    assert all(source in compose["volumes"] for source in mounts.values())
    assert "kwargs" in (_option(command, "--tasks_columns") or "").split(",")
    # Flower serves /metrics and /healthcheck without the login: loopback unless told.
    assert flower["ports"] == ["127.0.0.1:5555:5555"]
    assert "basic_auth" not in " ".join(command)  # the password stays off the command line


def test_every_image_the_compose_file_builds_is_a_stage_of_the_dockerfile(
    compose: dict[str, Any],
) -> None:
    stages = dockerfile_stages()
    for name, service in _services(compose).items():
        if "build" in service:
            assert service["build"]["context"] == ".", name
            assert service["build"]["target"] in stages, name
    assert list(stages)[-1] == "cpu"  # a plain "docker build ." builds the CPU image


def _stage_chain(stages: dict[str, list[tuple[str, str]]], name: str) -> list[tuple[str, str]]:
    """A stage's instructions after those of the stages it is built FROM."""
    base = stages[name][0][1].split()[0]
    parent = _stage_chain(stages, base) if base in stages else [("FROM", base)]
    return parent + stages[name][1:]


def _global_args() -> dict[str, str]:
    """The Dockerfile's ARGs before its first FROM, with their defaults."""
    out = {}
    for word, rest in dockerfile_instructions():
        if word == "FROM":
            break
        if word == "ARG":
            name, _, default = rest.partition("=")
            out[name] = default
    return out


def test_the_dockerfile_builds_slim_non_root_images_and_bakes_in_no_secret() -> None:
    stages = dockerfile_stages()
    args = _global_args()
    # Online by default: the official slim image; BASE_IMAGE names a local one offline.
    assert re.fullmatch(r"python:\$\{PYTHON_VERSION\}-slim-\w+", args["BASE_IMAGE"])
    for target in ("cpu", "gpu"):
        chain = _stage_chain(stages, target)
        assert chain[0] == ("FROM", "${BASE_IMAGE}"), target
        users = [rest for word, rest in chain if word == "USER"]
        assert users and users[-1] not in ("root", "0"), target
        cmd = [rest for word, rest in chain if word == "CMD"][-1]
        assert cmd.startswith('["celery", "-A", "workers.app", "worker"')
        # Only the virtual environment comes from the deps stage (no wheelhouse, no pip
        # work files), then the project's own files.
        copies = [rest for word, rest in stages[target] if word == "COPY"]
        assert copies[0] == "--from=deps /opt/venv /opt/venv", target
        assert all("--from" not in c and "wheelhouse" not in c for c in copies[1:]), target
    for word, rest in dockerfile_instructions():
        if word in ("ENV", "ARG"):
            assert not re.search(r"SECRET|PASSWORD|TOKEN|BASIC_AUTH", rest, re.I), rest
        if word in ("COPY", "ADD"):
            assert not re.search(r"\.env\b|config/", rest), rest
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".env", "config/", ".git", ".venv/"} <= set(ignored)


def test_the_dockerfile_needs_no_buildkit_and_installs_offline_from_a_wheelhouse() -> None:
    text = DOCKERFILE.read_text()
    # The classic builder (an engine with no buildx, no registry for a frontend) reads it too.
    assert not re.search(r"^#\s*syntax=", text, re.M | re.I)
    for word, rest in dockerfile_instructions():
        assert "<<" not in rest, (word, rest)
        assert not re.search(r"--(mount|link|chmod|parents|exclude)\b", rest), (word, rest)
    deps = dockerfile_stages()["deps"]
    runs = " ".join(rest for word, rest in deps if word == "RUN")
    assert ("ARG", 'WHEELHOUSE=""') in deps
    assert ("COPY", "${WHEELHOUSE:-wheelhouse}/ /wheelhouse/") in deps
    assert "--no-index --find-links /wheelhouse" in runs
    assert '"setuptools>=77"' in runs
    for target in ("cpu", "gpu"):  # with the setuptools of the deps stage, no index needed
        assert any(
            "pip install --no-deps --no-build-isolation ." in rest
            for word, rest in dockerfile_stages()[target]
            if word == "RUN"
        ), target
    # The folder is in the build context (so a plain build finds it) but only its README is
    # in git, and .dockerignore keeps it in the context.
    assert (ROOT / "wheelhouse" / "README.md").is_file()
    assert "wheelhouse" not in " ".join((ROOT / ".dockerignore").read_text().split())


def test_the_compose_file_takes_its_images_and_build_base_from_variables_with_defaults(
    compose: dict[str, Any],
) -> None:
    services = _services(compose)
    assert services["redis"]["image"] == "redis:8.2-alpine"
    assert services["prometheus"]["image"] == "prom/prometheus:v3.5.0"
    base_default = _global_args()["BASE_IMAGE"].replace(
        "${PYTHON_VERSION}", _global_args()["PYTHON_VERSION"]
    )
    for name in ("worker", "flower", "gpu-worker"):
        args = services[name]["build"]["args"]
        assert args["BASE_IMAGE"] == base_default, name  # the Dockerfile's own default
        assert args["WHEELHOUSE"] == "", name  # the package index
    offline = {
        **OPERATOR_ENV,
        "REDIS_IMAGE": "local/redis:1",
        "PROMETHEUS_IMAGE": "local/prometheus:1",
        "BASE_IMAGE": "local/python:1",
        "WHEELHOUSE": "wheelhouse",
    }
    services = _services(interpolate(load_compose(), offline))
    assert services["redis"]["image"] == "local/redis:1"
    assert services["prometheus"]["image"] == "local/prometheus:1"
    for name in ("worker", "flower", "gpu-worker"):
        assert services[name]["build"]["args"]["BASE_IMAGE"] == "local/python:1"
        assert services[name]["build"]["args"]["WHEELHOUSE"] == "wheelhouse"


def _requirements(aer: str, extras: str) -> list[str]:
    """Run the Dockerfile's requirements script on pyproject.toml, as the build does."""
    copy = next(rest for word, rest in dockerfile_instructions() if "jobset-requirements" in rest)
    script = ROOT / copy.split()[0]
    env = {**os.environ, "AER_PACKAGE": aer, "EXTRAS": extras}
    out = subprocess.run(
        [sys.executable, str(script)], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_the_images_install_pyprojects_dependencies_with_the_right_aer_package(
    compose: dict[str, Any],
) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    aer = next(r for r in project["dependencies"] if r.startswith("qiskit-aer"))
    others = [r for r in project["dependencies"] if r != aer]
    aer_range = aer[len("qiskit-aer") :]

    gpu = _requirements("qiskit-aer-gpu", "")
    assert gpu == [r if r != aer else f"qiskit-aer-gpu{aer_range}" for r in project["dependencies"]]
    assert not any(re.match(r"qiskit-aer[<>=!~ ]", r) for r in gpu)

    cpu = _requirements("qiskit-aer", "flower")
    assert cpu == [*project["dependencies"], *project["optional-dependencies"]["flower"]]
    assert set(others) <= set(gpu)
    # One deps stage whose defaults make the CPU image; the GPU build names its package.
    deps = dockerfile_stages()["deps"]
    assert ("ARG", "AER_PACKAGE=qiskit-aer") in deps
    assert ("ARG", 'EXTRAS="flower"') in deps
    gpu_args = _services(compose)["gpu-worker"]["build"]["args"]
    assert gpu_args["AER_PACKAGE"] == "qiskit-aer-gpu" and gpu_args["EXTRAS"] == ""
    assert "AER_PACKAGE" not in _services(compose)["worker"]["build"]["args"]


def _variables_read_by_the_code() -> set[str]:
    names = set()
    for package in ("jobset", "workers"):
        for path in (ROOT / package).rglob("*.py"):
            names |= set(re.findall(r"\"((?:JOBSET|PROMETHEUS)_[A-Z0-9_]+)\"", path.read_text()))
    return names


def test_the_example_env_file_and_the_readme_list_every_variable() -> None:
    code_vars = _variables_read_by_the_code()
    assert {"JOBSET_SECRET_KEY", "JOBSET_METRICS_PORT", "PROMETHEUS_MULTIPROC_DIR"} <= code_vars
    example = read_env_file(ENV_EXAMPLE)
    readme_rows = set(
        re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \|", (ROOT / "README.md").read_text(), re.M)
    )
    wanted = code_vars | compose_variables()
    assert wanted - set(example) == set(), "missing from config/jobset.env.example"
    assert wanted - readme_rows == set(), "missing from the README's variable tables"


def test_prometheus_scrapes_every_worker_container_on_the_workers_metrics_port(
    compose: dict[str, Any],
) -> None:
    config = yaml.safe_load((ROOT / "config" / "prometheus.yml").read_text())
    services = _services(compose)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    for job_name, service in (("jobset-workers", "worker"), ("jobset-gpu-workers", "gpu-worker")):
        (sd,) = jobs[job_name]["dns_sd_configs"]
        port = services[service]["environment"]["JOBSET_METRICS_PORT"]
        assert sd["names"] == [service] and str(sd["port"]) == port
        assert services[service]["expose"] == [port]
    prometheus = services["prometheus"]
    assert prometheus["profiles"] == ["monitoring"]
    assert "./config/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in prometheus["volumes"]


def test_the_compose_file_is_the_one_the_readme_deploys() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "## Deploy" in readme
    for phrase in ("docker compose up", "--scale worker=", "--profile gpu", COMPOSE_FILE.name):
        assert phrase in readme, phrase
    assert Path(ROOT / "scripts" / "cluster").stat().st_mode & 0o111


def test_the_local_cluster_command_runs_flower_with_the_compose_options(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    compose_options = set(_services(compose)["flower"]["command"][4:])
    local = FlowerProcess(
        "redis://127.0.0.1:1/0", basic_auth="a:b", db_path="/x/f.db", log_path=tmp_path / "log"
    )
    local_options = set(local.argv()[local.argv().index("flower") + 1 :])
    # The same options, but for where it listens and where it keeps its state.
    differ = {"--port=", "--db=", "--address="}
    assert {o for o in compose_options if not o.startswith(tuple(differ))} == {
        o for o in local_options if not o.startswith(tuple(differ))
    }
