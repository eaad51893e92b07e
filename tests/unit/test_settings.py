"""Settings built from an explicit environment mapping; os.environ is never touched."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from jobset.errors import ConfigurationError, JobSetError
from jobset.settings import (
    DEFAULT_BROKER_URL,
    DEFAULT_MAX_RESULT_BYTES,
    INTEGER,
    SETTINGS_CLASSES,
    MetricsSettings,
    Settings,
    redact_url,
    variables,
    variables_table,
)

README = Path(__file__).resolve().parents[2] / "README.md"

SECRET = "s3cret-signing-key-of-32-bytes-at-least"


def env(**values: str) -> dict[str, str]:
    return {"JOBSET_SECRET_KEY": SECRET, **{f"JOBSET_{k.upper()}": v for k, v in values.items()}}


def test_from_env_reads_every_jobset_variable():
    settings = Settings.from_env(
        env(
            broker_url="redis://broker:6380/1",
            result_backend="rediss://results:6390/2",
            result_ttl_s="600",
            visibility_timeout_s="7200",
            aer_threads="4",
        )
    )
    assert settings.broker_url == "redis://broker:6380/1"
    assert settings.result_backend == "rediss://results:6390/2"
    assert settings.backend_url == "rediss://results:6390/2"
    assert settings.secret_key == SECRET.encode()
    assert settings.result_ttl_s == 600
    assert settings.visibility_timeout_s == 7200
    assert settings.aer_threads == 4


def test_from_env_defaults_to_the_local_redis_and_results_on_the_broker():
    settings = Settings.from_env(env())
    assert settings.broker_url == DEFAULT_BROKER_URL
    assert settings.result_backend is None
    assert settings.backend_url == DEFAULT_BROKER_URL
    assert settings.aer_threads is None
    assert settings.result_ttl_s == Settings.result_ttl_s
    assert settings.visibility_timeout_s == Settings.visibility_timeout_s


def test_empty_variables_count_as_unset():
    settings = Settings.from_env(env(broker_url="", result_backend="", aer_threads=""))
    assert settings.broker_url == DEFAULT_BROKER_URL
    assert settings.result_backend is None
    assert settings.aer_threads is None


def test_variables_of_other_programs_are_ignored():
    settings = Settings.from_env({**env(), "BROKER_URL": "amqp://x", "CELERY_BROKER_URL": "x"})
    assert settings.broker_url == DEFAULT_BROKER_URL


def test_keyword_overrides_win_over_the_environment_unless_none():
    settings = Settings.from_env(
        env(broker_url="redis://env:6379/0", aer_threads="2"),
        broker_url="redis://override:6379/0",
        aer_threads=None,
        secret_key="other-key" * 4,
    )
    assert settings.broker_url == "redis://override:6379/0"
    assert settings.aer_threads == 2
    assert settings.secret_key == b"other-key" * 4


@pytest.mark.parametrize("length", [1, 16, 31])
def test_a_secret_key_under_32_bytes_is_refused_with_how_to_make_one(length):
    with pytest.raises(ConfigurationError, match=r"at least 32.*secrets\.token_hex\(32\)"):
        Settings(secret_key=b"k" * length)
    with pytest.raises(ConfigurationError, match="JOBSET_PREVIOUS_SECRET_KEYS"):
        Settings(secret_key=b"k" * 32, previous_secret_keys=(b"p" * length,))


def test_previous_secret_keys_come_from_a_comma_separated_variable_and_only_verify():
    settings = Settings.from_env(
        {"JOBSET_SECRET_KEY": "n" * 32, "JOBSET_PREVIOUS_SECRET_KEYS": f"{'a' * 32}, {'b' * 40}"}
    )
    assert settings.secret_key == b"n" * 32
    assert settings.verify_keys == (b"n" * 32, b"a" * 32, b"b" * 40)
    assert Settings.from_env(settings.to_env()).verify_keys == settings.verify_keys
    assert "a" * 32 not in repr(settings)


@pytest.mark.parametrize("environ", [{}, {"JOBSET_SECRET_KEY": ""}])
def test_a_missing_secret_key_is_a_configuration_error(environ):
    with pytest.raises(ConfigurationError, match="JOBSET_SECRET_KEY"):
        Settings.from_env(environ)


def test_a_secret_key_given_as_text_is_stored_as_bytes():
    assert Settings(secret_key="abc" * 11).secret_key == b"abc" * 11  # type: ignore[arg-type]
    assert Settings(secret_key=b"abc" * 11).secret_key == b"abc" * 11


@pytest.mark.parametrize(
    "url", ["amqp://guest@localhost//", "http://localhost:6379", "localhost:6379", "sqs://"]
)
@pytest.mark.parametrize("variable", ["broker_url", "result_backend"])
def test_a_url_that_is_not_redis_is_refused(variable, url):
    with pytest.raises(ConfigurationError, match=f"{variable} must be a Redis URL"):
        Settings.from_env(env(**{variable: url}))
    with pytest.raises(ConfigurationError, match=f"{variable} must be a Redis URL"):
        Settings(secret_key=b"k" * 32, **{variable: url})


@pytest.mark.parametrize(
    "url",
    [
        "redis://localhost:6379/0",
        "rediss://:pw@cache.example.com:6380/1?ssl_cert_reqs=required",
        "unix:///run/redis.sock",
        "valkey://localhost:6379/0",
        "valkeys://localhost:6379/0",
    ],
)
def test_redis_and_valkey_urls_are_accepted(url):
    assert Settings.from_env(env(broker_url=url)).broker_url == url


def test_a_refused_url_does_not_show_its_password():
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env(env(broker_url="amqp://user:hunter2@rabbit:5672//"))
    assert "hunter2" not in str(info.value)
    assert "***" in str(info.value)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("result_ttl_s", "ten"),
        ("visibility_timeout_s", "1.5"),
        ("aer_threads", "many"),
    ],
)
def test_a_non_integer_duration_or_count_is_a_configuration_error(variable, value):
    with pytest.raises(ConfigurationError, match=f"JOBSET_{variable.upper()}"):
        Settings.from_env(env(**{variable: value}))


@pytest.mark.parametrize(
    ("variable", "value"),
    [("result_ttl_s", "0"), ("visibility_timeout_s", "-5"), ("aer_threads", "0")],
)
def test_a_non_positive_duration_or_count_is_a_configuration_error(variable, value):
    with pytest.raises(ConfigurationError):
        Settings.from_env(env(**{variable: value}))


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://:hunter2@host:6379/0", "redis://:***@host:6379/0"),
        ("redis://user:hunter2@host:6379/0", "redis://user:***@host:6379/0"),
        ("rediss://user:p%40ss@host/1", "rediss://user:***@host/1"),
        ("redis://user:p@ss@host:6379", "redis://user:***@host:6379"),
        ("redis://host:6379/0", "redis://host:6379/0"),
        ("redis://user@host:6379/0", "redis://user@host:6379/0"),
        ("unix:///run/redis.sock", "unix:///run/redis.sock"),
    ],
)
def test_redact_url_hides_passwords_and_keeps_the_rest(url, expected):
    assert redact_url(url) == expected
    assert "hunter2" not in redact_url(url)


@pytest.mark.parametrize(
    "settings",
    [
        Settings(secret_key=b"k" * 32),
        Settings(
            broker_url="redis://:pw@broker:6379/0",
            result_backend="redis://results:6379/1",
            secret_key=b"k2" * 16,
            result_ttl_s=60,
            visibility_timeout_s=120,
            aer_threads=3,
        ),
    ],
    ids=["defaults", "everything-set"],
)
def test_to_env_and_from_env_round_trip(settings):
    variables = settings.to_env()
    assert all(k.startswith("JOBSET_") and isinstance(v, str) for k, v in variables.items())
    back = Settings.from_env(variables)
    # Results on the broker come back written out; everything else is the same value.
    assert back.backend_url == settings.backend_url
    assert dataclasses.replace(back, result_backend=settings.result_backend) == settings


def test_the_secret_key_is_not_in_the_repr():
    settings = Settings(secret_key=SECRET.encode())
    assert SECRET not in repr(settings)
    assert SECRET not in str(settings)


def test_settings_are_frozen():
    settings = Settings(secret_key=b"k" * 32)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.broker_url = "redis://other"  # type: ignore[misc]


def test_configuration_errors_belong_to_the_error_tree():
    assert issubclass(ConfigurationError, JobSetError)


@pytest.mark.parametrize("cls", SETTINGS_CLASSES, ids=lambda c: c.__name__)
def test_every_field_of_the_settings_is_a_row_of_the_variable_table(cls):
    rows = {f.name for f, _ in variables(cls)}
    assert rows == {f.name for f in dataclasses.fields(cls)}


def test_the_readme_shows_the_variable_table_as_the_settings_render_it():
    # A field added without updating the README fails here: paste variables_table() there.
    assert variables_table() in README.read_text()


def test_the_repr_names_every_field_and_redacts_urls_and_keys():
    settings = Settings(
        broker_url="redis://:hunter2@host:6379/0",
        secret_key=SECRET,
        previous_secret_keys=(b"p" * 32,),
    )
    text = repr(settings)
    assert all(f"{f.name}=" in text for f in dataclasses.fields(Settings))
    assert "hunter2" not in text and SECRET not in text and "p" * 32 not in text
    assert "broker_url='redis://:***@host:6379/0'" in text


def test_a_local_cluster_takes_settings_not_their_variables():
    from jobset.local import LocalCluster

    with pytest.raises(ConfigurationError, match="JOBSET_VISIBILITY_TIMEOUT_S: pass settings="):
        LocalCluster(workers=1, extra_env={"JOBSET_VISIBILITY_TIMEOUT_S": "3"})


def test_the_readme_is_a_guide_of_at_most_300_lines_whose_links_all_resolve():
    text = README.read_text()
    assert len(text.splitlines()) <= 300
    targets = re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text)
    missing = [t for t in targets if not (README.parent / t).exists()]
    assert targets and missing == []


def test_bounds_are_declared_per_field_and_checked_however_settings_are_built():
    """Every integer setting declares its bounds on its row; none is left unbounded."""
    for cls in SETTINGS_CLASSES:
        for f, var in variables(cls):
            if var.parse is INTEGER:
                assert var.minimum is not None, f.name
    refused = r"JOBSET_AER_THREADS \(aer_threads\) must be at least 1, got 0"
    with pytest.raises(ConfigurationError, match=refused):
        Settings.from_env({"JOBSET_SECRET_KEY": "k" * 64, "JOBSET_AER_THREADS": "0"})
    with pytest.raises(ConfigurationError, match="from 1 to 65535"):
        MetricsSettings(port=65536)
    assert MetricsSettings(port=65535).port == 65535


def test_the_reliability_variables_are_read_from_the_environment():
    settings = Settings.from_env(
        {
            "JOBSET_SECRET_KEY": SECRET,
            "JOBSET_CONNECT_TIMEOUT_S": "2",
            "JOBSET_MAX_WORKER_LOSSES": "5",
            "JOBSET_MAX_RESULT_BYTES": "1000",
            "JOBSET_MAX_MEMORY_MB": "4096",
        }
    )
    assert settings.connect_timeout_s == 2
    assert settings.max_worker_losses == 5
    assert settings.max_result_bytes == 1000
    assert settings.max_memory_mb == 4096
    again = Settings.from_env(settings.to_env())
    assert (again.connect_timeout_s, again.max_worker_losses) == (2, 5)
    assert (again.max_result_bytes, again.max_memory_mb) == (1000, 4096)


def test_the_reliability_defaults_are_documented_values():
    settings = Settings(secret_key=SECRET)
    assert settings.visibility_timeout_s == 60
    assert settings.connect_timeout_s == 5
    assert settings.max_worker_losses == 3
    assert settings.max_result_bytes == DEFAULT_MAX_RESULT_BYTES == 256 * 2**20
    assert settings.max_memory_mb is None
    assert "JOBSET_MAX_MEMORY_MB" not in settings.to_env()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("connect_timeout_s", 0),
        ("max_worker_losses", 0),
        ("max_result_bytes", -1),
        ("max_memory_mb", 0),
    ],
)
def test_limits_that_are_not_positive_are_refused(field, value):
    with pytest.raises(ConfigurationError, match=field):
        Settings(secret_key=SECRET, **{field: value})


def test_the_repr_of_settings_shows_the_limits_but_no_secret():
    settings = Settings(
        broker_url="redis://:pw-123@host:6379/0", secret_key=SECRET, max_memory_mb=9
    )
    text = repr(settings)
    assert "max_memory_mb=9" in text and "max_worker_losses=3" in text
    assert SECRET not in text and "pw-123" not in text


def test_the_readme_links_every_example():
    examples = sorted((README.parent / "docs" / "examples").glob("*.py"))
    text = README.read_text()
    assert examples
    assert [p.name for p in examples if f"](docs/examples/{p.name})" not in text] == []
