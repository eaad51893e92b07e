"""Which versions a producer and a worker must share (pure)."""

from __future__ import annotations

import json
import uuid

import pytest

from jobset.errors import VersionMismatchError
from jobset.executors.versions import PACKAGES, runtime_versions, version_mismatch
from jobset.protocol import SubJobRef

AER_18 = {"qiskit": "2.6.2", "qiskit-aer": "0.18.2", "qiskit-aer-jobset": "0.1.0"}


def test_the_same_versions_match_and_this_process_knows_its_own():
    assert version_mismatch(AER_18, dict(AER_18)) is None
    assert set(runtime_versions()) == set(PACKAGES)


@pytest.mark.parametrize(
    ("worker", "named"),
    [
        ({"qiskit-aer": "0.18.1"}, "qiskit-aer 0.18.2 on the producer, 0.18.1 on the worker"),
        ({"qiskit-aer": "0.17.0"}, "qiskit-aer"),
        ({"qiskit": "2.5.0"}, "qiskit 2.6.2 on the producer, 2.5.0 on the worker"),
        ({"qiskit-aer-jobset": "0.2.0"}, "qiskit-aer-jobset"),
    ],
)
def test_a_version_that_would_change_results_is_a_mismatch_that_names_it(worker, named):
    assert named in (version_mismatch(AER_18, {**AER_18, **worker}) or "")


@pytest.mark.parametrize(
    "worker",
    [
        {"qiskit": "2.6.3"},  # a qiskit patch release keeps the pickle layout
        {"qiskit-aer-jobset": "0.1.7"},
        {"qiskit-aer": "0.18.2+local"},
    ],
)
def test_releases_that_give_the_same_results_match(worker):
    assert version_mismatch(AER_18, {**AER_18, **worker}) is None


def test_a_side_that_does_not_say_its_versions_is_not_compared():
    assert version_mismatch({}, AER_18) is None
    assert version_mismatch(AER_18, {}) is None


def test_a_message_carries_the_producer_versions_and_one_of_an_older_protocol_is_refused():
    set_id = str(uuid.UUID(int=7))
    ref = SubJobRef(set_id, 3, 7, versions=tuple(sorted(AER_18.items())))
    kwargs = json.loads(json.dumps(ref.to_kwargs()))
    assert kwargs["versions"] == AER_18
    assert SubJobRef.from_kwargs(kwargs) == ref
    with pytest.raises(VersionMismatchError, match="protocol version 1"):
        SubJobRef.from_kwargs({"jobset_id": set_id, "index": 3, "experiments": 7, "version": 1})
    bare = SubJobRef.from_kwargs({"jobset_id": set_id, "index": 3, "experiments": 7, "version": 2})
    assert bare.versions == ()
    assert "versions" not in bare.to_kwargs()
