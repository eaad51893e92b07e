"""Sentinel URLs read one way by the project's client, kombu's transport and Celery's backend."""

from __future__ import annotations

import json
import ssl

import pytest
from celery import Celery
from celery.backends.redis import SentinelBackend
from kombu import Connection
from kombu.utils.json import JSONEncoder

from jobset import urls
from jobset.errors import ConfigurationError
from jobset.executors.celery.config import celery_config
from jobset.executors.celery.connect import redis_client
from jobset.settings import Settings, redact_url

SECRET = "s" * 32
ISSUE_FORM = "sentinel://:pw@127.0.0.1:26399;sentinel://127.0.0.1:26398/3"


def sentinel_settings(url: str = ISSUE_FORM, **extra: object) -> Settings:
    return Settings(broker_url=url, secret_key=SECRET, sentinel_master="jobset", **extra)


def test_the_database_and_credentials_written_once_reach_every_part_for_kombu_and_celery():
    parsed = urls.parse_sentinel(ISSUE_FORM)
    assert parsed.sentinels == (("127.0.0.1", 26399), ("127.0.0.1", 26398))
    assert (parsed.db, parsed.username, parsed.password) == (3, None, "pw")
    celery = urls.celery_url(ISSUE_FORM)
    assert celery == "sentinel://:pw@127.0.0.1:26399/3;sentinel://:pw@127.0.0.1:26398/3"
    # kombu fails over part by part, each part with its own credentials and database.
    for part in Connection(celery).alt:
        alt = Connection(part)
        assert (alt.password, alt.virtual_host) == ("pw", "3")
    app = Celery(set_as_current=False)
    app.config_from_object(celery_config(sentinel_settings()))
    backend = app.backend
    assert isinstance(backend, SentinelBackend)
    params = backend.connparams
    assert [(h["host"], h["port"]) for h in params["hosts"]] == list(parsed.sentinels)
    assert (params["db"], params["password"]) == (3, "pw")


def test_celery_gets_the_master_name_and_the_sentinels_password_on_both_sides():
    conf = celery_config(sentinel_settings(sentinel_password="sp"))
    for options in (conf["broker_transport_options"], conf["result_backend_transport_options"]):
        assert options["master_name"] == "jobset"
        credentials = options["sentinel_kwargs"]["credential_provider"]
        assert credentials.get_credentials() == ("sp",) and "password" not in options
        assert "sp" not in repr(options) and "sp" not in json.dumps(options, cls=JSONEncoder)
    assert conf["broker_url"].startswith("sentinel://:pw@127.0.0.1:26399/3;")
    assert "broker_use_ssl" not in conf


def test_tls_options_in_a_sentinel_url_become_celerys_ssl_settings_and_the_clients():
    url = (
        "sentinel://:pw@h1:26379;sentinel://h2:26379/0?ssl_cert_reqs=required&ssl_ca_certs=/ca.pem"
    )
    conf = celery_config(sentinel_settings(url))
    want = {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": "/ca.pem"}
    assert conf["broker_use_ssl"] == want and conf["redis_backend_use_ssl"] == want
    assert "?" not in conf["broker_url"]
    assert conf["broker_transport_options"]["sentinel_kwargs"]["ssl"] is True
    client = redis_client(url, sentinel_settings(url))
    kwargs = client.connection_pool.connection_kwargs
    assert kwargs["ssl_ca_certs"] == "/ca.pem" and kwargs["db"] == 0


def test_the_projects_client_asks_the_sentinels_for_the_named_primary():
    settings = sentinel_settings(sentinel_password="sp")
    client = redis_client(settings.broker_url, settings)
    pool = client.connection_pool
    assert pool.service_name == "jobset"
    assert pool.connection_kwargs["db"] == 3 and pool.connection_kwargs["password"] == "pw"
    manager = pool.sentinel_manager
    assert [s.connection_pool.connection_kwargs["port"] for s in manager.sentinels] == [
        26399,
        26398,
    ]
    sentinel_kwargs = manager.sentinels[0].connection_pool.connection_kwargs
    assert sentinel_kwargs["credential_provider"].get_credentials() == ("sp",)


@pytest.mark.parametrize(
    "url, why",
    [
        ("sentinel://h1:26379/1;sentinel://h2:26379/2", "different databases"),
        ("sentinel://:a@h1:26379;sentinel://:b@h2:26379", "different credentials"),
        ("sentinel://h1:26379;redis://h2:6379", "every part"),
        ("sentinel://h1:26379/x", "is a number"),
        ("sentinel://h1:26379/0?socket_timeout=1", "unknown option"),
    ],
)
def test_a_sentinel_url_that_kombu_and_celery_would_read_apart_is_refused(url, why):
    with pytest.raises(ConfigurationError, match=why):
        sentinel_settings(url)


def test_a_sentinel_url_needs_the_master_name_and_its_settings_round_trip_redacted():
    with pytest.raises(ConfigurationError, match="JOBSET_SENTINEL_MASTER"):
        Settings(broker_url=ISSUE_FORM, secret_key=SECRET)
    settings = sentinel_settings(sentinel_password="sentinel-secret")
    again = Settings.from_env(settings.to_env())
    assert (again.sentinel_master, again.sentinel_password) == ("jobset", "sentinel-secret")
    shown = repr(settings)
    assert "pw" not in shown.replace("sentinel_password", "") and "sentinel-secret" not in shown
    assert redact_url("sentinel://u:a@h1:1;sentinel://v:b@h2:2/0") == (
        "sentinel://u:***@h1:1;sentinel://v:***@h2:2/0"
    )
