"""docker-compose.ha.yml on top of docker-compose.yml: a replica, three sentinels, and every
client pointed at them, read as compose merges an override file."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from deployment import ROOT, MissingVariableError, interpolate, load_compose, read_env_file

from jobset import urls
from jobset.executors.celery.config import celery_config
from jobset.settings import Settings

HA_FILE = ROOT / "docker-compose.ha.yml"
HA_ACL = ROOT / "config" / "redis-ha-users.acl"
OPERATOR_ENV = {
    "REDIS_PASSWORD": "0123abcd",
    "FLOWER_REDIS_PASSWORD": "4567cdef",
    "JOBSET_SECRET_KEY": "k" * 64,
    "FLOWER_BASIC_AUTH": "ops:secret",
    "REDIS_REPLICA_PASSWORD": "89ab0123",
    "SENTINEL_PASSWORD": "cdef4567",
}
SENTINELS = ("sentinel-1", "sentinel-2", "sentinel-3")


def merge(base: Any, override: Any) -> Any:
    """Compose's merge of an override file: mappings key by key, the rest replaced (lists of
    volumes by their target, which this file never has to rely on)."""
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for key, value in override.items():
            out[key] = merge(base[key], value) if key in base else value
        return out
    return override


def load_ha() -> dict[str, Any]:
    data = yaml.safe_load(HA_FILE.read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    merged = interpolate(merge(load_compose(), load_ha()), OPERATOR_ENV)
    return {k: v for k, v in merged["services"].items()}


def _script(service: dict[str, Any]) -> str:
    command = service["command"]
    assert command[:2] == ["sh", "-c"]
    return str(command[2])


def test_the_ha_file_adds_a_replica_and_three_sentinels_with_a_quorum_of_two(services) -> None:
    replica = services["redis-replica"]
    assert replica["environment"]["REPLICA_OF"] == "replicaof redis 6379"
    assert services["redis"]["environment"]["REPLICA_OF"] == ""
    for name in ("redis", "redis-replica"):
        script = _script(services[name])
        # Either may be a replica after a failover: both authenticate as user replica.
        assert "masteruser replica" in script and "masterauth $REDIS_REPLICA_PASSWORD" in script
        assert services[name]["environment"]["ANNOUNCE_NAME"] == name
        assert "replica-announce-ip $ANNOUNCE_NAME" in script
        assert any(v.endswith(":/data") for v in services[name]["volumes"])
    for name in SENTINELS:
        script = _script(services[name])
        assert "sentinel monitor jobset redis 6379 2" in script
        assert "--sentinel" in script and "requirepass $SENTINEL_PASSWORD" in script
        assert "sentinel auth-user jobset sentinel" in script
        assert services[name]["environment"]["ANNOUNCE_NAME"] == name
        assert services[name]["volumes"] == [f"{name}-data:/data"]
    volumes = load_ha()["volumes"]
    assert {"redis-replica-data", *(f"{n}-data" for n in SENTINELS)} <= set(volumes)


def test_workers_and_flower_reach_redis_through_the_sentinels_with_their_own_users(
    services,
) -> None:
    for name, user, password in (
        ("worker", "jobset", OPERATOR_ENV["REDIS_PASSWORD"]),
        ("gpu-worker", "jobset", OPERATOR_ENV["REDIS_PASSWORD"]),
        ("flower", "flower", OPERATOR_ENV["FLOWER_REDIS_PASSWORD"]),
    ):
        env = services[name]["environment"]
        parsed = urls.parse_sentinel(env["JOBSET_BROKER_URL"])
        assert parsed.sentinels == tuple((n, 26379) for n in SENTINELS)
        assert (parsed.username, parsed.password, parsed.db) == (user, password, 0)
        assert env["JOBSET_SENTINEL_MASTER"] == "jobset"
        assert env["JOBSET_SENTINEL_PASSWORD"] == OPERATOR_ENV["SENTINEL_PASSWORD"]
        assert set(services[name]["depends_on"]) >= set(SENTINELS)
        settings = Settings.from_env(
            {**{k: str(v) for k, v in env.items()}, "JOBSET_SECRET_KEY": "s" * 32}
        )
        conf = celery_config(settings)
        assert conf["broker_transport_options"]["master_name"] == "jobset"
        credentials = conf["result_backend_transport_options"]["sentinel_kwargs"]
        assert credentials["credential_provider"].get_credentials() == (
            OPERATOR_ENV["SENTINEL_PASSWORD"],
        )
        assert password not in repr(settings)


def test_the_ha_file_refuses_to_start_without_its_passwords() -> None:
    merged = merge(load_compose(), load_ha())
    for missing in ("REDIS_REPLICA_PASSWORD", "SENTINEL_PASSWORD"):
        env = {k: v for k, v in OPERATOR_ENV.items() if k != missing}
        with pytest.raises(MissingVariableError, match=missing):
            interpolate(merged, env)
    text = HA_FILE.read_text()
    for secret in OPERATOR_ENV.values():
        assert secret not in text
    assert {"REDIS_REPLICA_PASSWORD", "SENTINEL_PASSWORD", "SENTINEL_DOWN_AFTER_MS"} <= set(
        read_env_file()
    )


def test_the_replica_and_sentinel_users_can_touch_no_key() -> None:
    users = {}
    for line in HA_ACL.read_text().splitlines():
        if line.startswith("user "):
            name, *rules = line.split()[1:]
            users[name] = rules
    assert set(users) == {"replica", "sentinel"}
    for name, rules in users.items():
        assert "resetkeys" in rules and "-@all" in rules, name
        assert not any(r.startswith(("~", "%")) for r in rules), name
        assert not any(re.fullmatch(r"\+@\w+", r) for r in rules), name
    assert set(users["replica"]) >= {"+psync", "+replconf"}
    assert set(users["sentinel"]) >= {"+slaveof", "+info", "+role", "+config|rewrite"}
    # The servers' command fills both passwords in from the environment.
    script = load_ha()["x-ha-server"]["command"][2]
    assert "@REDIS_REPLICA_PASSWORD@" in script and "@SENTINEL_PASSWORD@" in script
