"""deploy/kubernetes/ validated offline: each object against Kubernetes' own schema
(``kubernetes-validate``, strict: no unknown field), KEDA's ScaledObject by hand (its CRD
is not in those schemas), and the rules the manifests keep (no secret values, secrets as
owner-only files, the gauges KEDA queries are the ones the exporter serves)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from jobset.scaling.loop import ScaleMetrics

ROOT = Path(__file__).resolve().parents[2]
FOLDER = ROOT / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.30.0"


def manifests() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(FOLDER.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                found.append((f"{path.name}:{doc['kind']}/{doc['metadata']['name']}", doc))
    return found


OBJECTS = manifests()
BUILTIN = [(name, doc) for name, doc in OBJECTS if doc["kind"] != "ScaledObject"]


def by_kind(kind: str, name: str) -> dict[str, Any]:
    return next(d for _, d in OBJECTS if d["kind"] == kind and d["metadata"]["name"] == name)


@pytest.mark.parametrize(("name", "doc"), BUILTIN, ids=[n for n, _ in BUILTIN])
def test_every_object_is_valid_for_kubernetes(name, doc):
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_kustomization_lists_every_manifest():
    listed = yaml.safe_load((FOLDER / "kustomization.yaml").read_text())["resources"]
    present = {p.name for p in FOLDER.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(listed) == sorted(present)


def test_no_secret_value_is_shipped_and_secrets_reach_the_code_as_private_files():
    assert not [n for n, d in OBJECTS if d["kind"] == "Secret"]
    for kind_name in ("jobset-worker", "jobset-metrics", "flower"):
        spec = by_kind("Deployment", kind_name)["spec"]["template"]["spec"]
        (main,) = spec["containers"]
        env = {e["name"]: e for e in main["env"]}
        files = {n: e["value"] for n, e in env.items() if n.endswith("_FILE")}
        assert files and all(v.startswith("/run/jobset/") for v in files.values())
        assert "JOBSET_BROKER_URL" not in env  # its password: only as a file
        (init,) = spec["initContainers"]
        assert init["command"][:3] == ["install", "-m", "0400"]
        private = next(v for v in spec["volumes"] if v["name"] == "private")
        assert private["emptyDir"]["medium"] == "Memory"
        assert spec["securityContext"]["runAsNonRoot"] is True


def test_the_worker_never_runs_more_aer_threads_than_its_cpus():
    (worker,) = by_kind("Deployment", "jobset-worker")["spec"]["template"]["spec"]["containers"]
    concurrency = int(next(a for a in worker["command"] if a.startswith("--concurrency="))[14:])
    threads = int(next(e["value"] for e in worker["env"] if e["name"] == "JOBSET_AER_THREADS"))
    assert concurrency * threads <= int(worker["resources"]["limits"]["cpu"])


def test_the_scaled_object_targets_the_worker_on_gauges_the_exporter_serves():
    scaled = by_kind("ScaledObject", "jobset-worker")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    spec = scaled["spec"]
    assert spec["scaleTargetRef"]["name"] == "jobset-worker"
    assert 0 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "prometheus"
    assert set(trigger["metadata"]) >= {"serverAddress", "query", "threshold"}
    served = {m.name for m in ScaleMetrics().registry.collect()}
    queried = set(re.findall(r"(jobset_[a-z_]+)\{", trigger["metadata"]["query"]))
    assert queried and queried <= served
    (worker,) = by_kind("Deployment", "jobset-worker")["spec"]["template"]["spec"]["containers"]
    concurrency = next(a for a in worker["command"] if a.startswith("--concurrency="))
    assert trigger["metadata"]["threshold"] == concurrency.split("=")[1]


def test_redis_reads_its_acl_from_a_secret_and_keeps_an_append_only_file():
    conf = by_kind("ConfigMap", "jobset-redis-config")["data"]["redis.conf"]
    assert "appendonly yes" in conf and "aclfile /etc/redis/acl/users.acl" in conf
    volumes = by_kind("StatefulSet", "redis")["spec"]["template"]["spec"]["volumes"]
    assert {"secretName": "jobset-redis-acl", "defaultMode": 0o440} in [
        v.get("secret") for v in volumes
    ]
