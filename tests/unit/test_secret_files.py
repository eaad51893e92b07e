"""Secrets and URLs read from files named by ``_FILE`` variables (Docker/Kubernetes secrets)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from jobset.errors import ConfigurationError
from jobset.settings import FILE_SUFFIX, Settings, read_secret_file, variables

SECRET = "s3cret-signing-key-of-32-bytes-at-least"


def secret_file(tmp_path: Path, text: str, *, mode: int = 0o600, name: str = "secret") -> str:
    path = tmp_path / name
    path.write_text(text)
    path.chmod(mode)
    return str(path)


def test_every_secret_and_url_variable_has_a_file_form_and_no_other_does():
    forms = {var.env: var.file_env for cls in (Settings,) for _, var in variables(cls)}
    assert {env for env, file_env in forms.items() if file_env} == {
        "JOBSET_BROKER_URL",
        "JOBSET_RESULT_BACKEND",
        "JOBSET_SECRET_KEY",
        "JOBSET_PREVIOUS_SECRET_KEYS",
        "JOBSET_SENTINEL_PASSWORD",
    }
    assert all(f == f"{env}{FILE_SUFFIX}" for env, f in forms.items() if f)


def test_the_secret_key_is_read_from_a_file_of_mode_0600_without_its_newline(tmp_path):
    path = secret_file(tmp_path, SECRET + "\n")
    settings = Settings.from_env({"JOBSET_SECRET_KEY_FILE": path})
    assert settings.secret_key == SECRET.encode()


def test_every_file_form_reads_its_setting(tmp_path):
    environ = {
        "JOBSET_SECRET_KEY_FILE": secret_file(tmp_path, SECRET, name="key"),
        "JOBSET_PREVIOUS_SECRET_KEYS_FILE": secret_file(tmp_path, "p" * 32 + ",q" * 1, name="p"),
        "JOBSET_BROKER_URL_FILE": secret_file(tmp_path, "redis://:pw@b:6379/0", name="b"),
        "JOBSET_RESULT_BACKEND_FILE": secret_file(tmp_path, "redis://:pw@r:6379/1", name="r"),
        "JOBSET_SENTINEL_PASSWORD_FILE": secret_file(tmp_path, "sentinel-pw", name="s"),
    }
    with pytest.raises(ConfigurationError, match="PREVIOUS_SECRET_KEYS is 1 bytes"):
        Settings.from_env(environ)
    environ["JOBSET_PREVIOUS_SECRET_KEYS_FILE"] = secret_file(tmp_path, "p" * 32, name="p2")
    settings = Settings.from_env(environ)
    assert settings.previous_secret_keys == (b"p" * 32,)
    assert settings.broker_url == "redis://:pw@b:6379/0"
    assert settings.backend_url == "redis://:pw@r:6379/1"
    assert settings.sentinel_password == "sentinel-pw"
    assert "pw@" not in repr(settings)


@pytest.mark.parametrize("mode", [0o640, 0o644, 0o604, 0o660, 0o666, 0o610])
def test_a_secret_file_that_group_or_others_can_access_is_refused(tmp_path, mode):
    path = secret_file(tmp_path, SECRET, mode=mode)
    with pytest.raises(ConfigurationError, match=rf"JOBSET_SECRET_KEY_FILE.*{mode:04o}.*chmod 600"):
        Settings.from_env({"JOBSET_SECRET_KEY_FILE": path})


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_a_secret_file_only_its_owner_can_read_is_accepted(tmp_path, mode):
    path = secret_file(tmp_path, SECRET, mode=mode)
    assert Settings.from_env({"JOBSET_SECRET_KEY_FILE": path}).secret_key == SECRET.encode()


def test_a_link_to_a_private_file_is_followed_as_kubernetes_mounts_secrets(tmp_path):
    target = secret_file(tmp_path, SECRET)
    link = tmp_path / "link"
    link.symlink_to(target)
    assert Settings.from_env({"JOBSET_SECRET_KEY_FILE": str(link)}).secret_key == SECRET.encode()


def test_a_variable_and_its_file_form_together_are_refused(tmp_path):
    path = secret_file(tmp_path, SECRET)
    with pytest.raises(ConfigurationError, match="JOBSET_SECRET_KEY or JOBSET_SECRET_KEY_FILE"):
        Settings.from_env({"JOBSET_SECRET_KEY": SECRET, "JOBSET_SECRET_KEY_FILE": path})


def test_an_empty_file_form_counts_as_unset():
    settings = Settings.from_env({"JOBSET_SECRET_KEY": SECRET, "JOBSET_SECRET_KEY_FILE": ""})
    assert settings.secret_key == SECRET.encode()


def test_a_missing_empty_or_odd_secret_file_is_a_clear_error_without_the_secret(tmp_path):
    with pytest.raises(ConfigurationError, match="JOBSET_SECRET_KEY_FILE: cannot open"):
        read_secret_file(str(tmp_path / "absent"), variable="JOBSET_SECRET_KEY_FILE")
    with pytest.raises(ConfigurationError, match="is empty"):
        read_secret_file(secret_file(tmp_path, "\n"), variable="V_FILE")
    with pytest.raises(ConfigurationError, match="not a regular file"):
        read_secret_file(str(tmp_path), variable="V_FILE")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(ConfigurationError, match="not a regular file"):
        read_secret_file(str(fifo), variable="V_FILE")
    path = secret_file(tmp_path, SECRET, mode=0o644, name="open")
    with pytest.raises(ConfigurationError) as raised:
        read_secret_file(path, variable="V_FILE")
    assert SECRET not in str(raised.value)


def test_a_file_form_is_not_offered_for_plain_settings(tmp_path):
    path = secret_file(tmp_path, "4")
    settings = Settings.from_env({"JOBSET_SECRET_KEY": SECRET, "JOBSET_AER_THREADS_FILE": path})
    assert settings.aer_threads is None
