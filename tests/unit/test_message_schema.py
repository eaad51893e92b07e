"""The sub-job message schema and the key builders refuse anything but validated parts."""

from __future__ import annotations

import uuid

import pytest

from jobset.errors import InvalidInputError, SecurityError
from jobset.protocol import (
    PROTOCOL_VERSION,
    Kind,
    SubJobRef,
    batch_key,
    cache_key,
    check_jobset_id,
    is_owner_queue,
    record_key,
    signed_key,
    worker_names,
)

SET = str(uuid.UUID(int=42))
GOOD = {"jobset_id": SET, "index": 3, "experiments": 2, "version": PROTOCOL_VERSION}


def test_a_valid_message_reads_back_as_its_ref():
    ref = SubJobRef.from_kwargs({**GOOD, "versions": {"qiskit": "2.2.0"}})
    assert (ref.jobset_id, ref.index, ref.experiments) == (SET, 3, 2)
    assert ref.versions == (("qiskit", "2.2.0"),)
    assert ref.task_id == f"{SET}-3"


BAD_IDS = [
    "",
    "set",
    "../../x",
    "*",
    "a\x00b",
    SET.upper(),
    SET.replace("-", ""),
    "{" + SET + "}",
    SET + "\x00",
    "x" * 100_000,
    42,
    None,
    ["a"],
]


@pytest.mark.parametrize("bad", BAD_IDS, ids=range(len(BAD_IDS)))
def test_a_message_whose_set_id_is_not_a_canonical_uuid_is_refused(bad):
    with pytest.raises(SecurityError, match="canonical UUID"):
        SubJobRef.from_kwargs({**GOOD, "jobset_id": bad})


@pytest.mark.parametrize("field", ["index", "experiments"])
@pytest.mark.parametrize("bad", [-1, 10**12, True, 1.5, "3", None, [1]])
def test_a_message_whose_numbers_are_not_small_non_negative_ints_is_refused(field, bad):
    with pytest.raises(SecurityError, match="integer"):
        SubJobRef.from_kwargs({**GOOD, field: bad})


@pytest.mark.parametrize(
    "versions",
    [
        "qiskit",
        ["qiskit"],
        {"qiskit": 2},
        {"q" * 65: "1"},
        {"qiskit": "1" * 65},
        {"qiskit": "a\x00b"},
        {str(i): "1" for i in range(17)},
    ],
    ids=["text", "list", "int-value", "long-key", "long-value", "nul", "many"],
)
def test_a_message_whose_versions_are_not_a_small_dict_of_short_strings_is_refused(versions):
    with pytest.raises(SecurityError, match="versions"):
        SubJobRef.from_kwargs({**GOOD, "versions": versions})


@pytest.mark.parametrize(
    "extra", [{"cache_digest": "a" * 64}, {"cache_ttl_s": 5}, {"payload": "x"}, {"../": 1}]
)
def test_a_message_with_an_unknown_field_is_refused(extra):
    with pytest.raises(SecurityError, match="unknown fields"):
        SubJobRef.from_kwargs({**GOOD, **extra})


@pytest.mark.parametrize("version", [None, "2", True, 10**9, -1])
def test_a_message_without_a_valid_version_is_refused(version):
    with pytest.raises(SecurityError, match="version"):
        SubJobRef.from_kwargs({**GOOD, "version": version})


def test_arguments_that_are_not_a_mapping_are_refused():
    with pytest.raises(SecurityError):
        SubJobRef.from_kwargs(["jobset_id", SET])  # type: ignore[arg-type]


def test_every_signed_key_is_built_from_validated_parts_only():
    assert signed_key(Kind.BATCH, (SET, 1)) == batch_key(SET, 1) == f"jobset:{SET}:batch:1"
    assert signed_key(Kind.RECORD, SET) == record_key(SET)
    digest = "0f" * 32
    assert signed_key(Kind.CACHE, digest) == cache_key(digest) == f"jobset:cache:{digest}"
    for kind, ref in [
        (Kind.BATCH, SET),
        (Kind.BATCH, ("../x", 1)),
        (Kind.RESULT, (SET, -1)),
        (Kind.RESULT, (SET, "1")),
        (Kind.RECORD, "x*"),
        (Kind.BACKEND, (SET, 1)),
        (Kind.CACHE, "d\x00\x00"),
        (Kind.CACHE, "A" * 64),
        (Kind.CACHE, "a" * 63),
    ]:
        with pytest.raises(InvalidInputError):
            signed_key(kind, ref)


def test_a_canonical_uuid_is_the_only_set_id():
    assert check_jobset_id(SET) == SET
    with pytest.raises(InvalidInputError):
        check_jobset_id(str(uuid.UUID(int=1)).replace("-", "-" * 1, 1)[:-1] + "g")


def test_only_well_formed_owner_queues_of_served_classes_are_consumed():
    bases = {"jobset.cpu"}
    assert is_owner_queue("jobset.cpu.owner.alice", bases)
    for name in (
        "jobset.cpu",
        "jobset.gpu.owner.alice",
        "jobset.cpu.owner.",
        "jobset.cpu.owner.a*b",
        "jobset.cpu.owner.a.owner.b",
        "celery",
        "jobset.cpu.owner." + "a" * 65,
    ):
        assert not is_owner_queue(name, bases), name


def test_only_well_formed_worker_names_from_the_index_become_keys():
    raw = [
        b"local0-1a2b@vm",
        "celery@host.example",
        b"*",
        b"../x",
        b"a b",
        b"\xff@x",
        b"",
        b"x" * 300,
    ]
    assert worker_names(raw) == ["local0-1a2b@vm", "celery@host.example"]
