"""Pure: the MACs that prove a sub-job's end or a set's cancel (the celery executor's evidence)."""

from __future__ import annotations

import uuid

from jobset.executors.celery import evidence

KEY = b"k" * 32
OTHER = b"o" * 32


def test_an_end_token_verifies_only_for_its_own_set_index_letter_and_key():
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    token = evidence.end_token(KEY, a, 3, "D")

    def verified(keys, set_id, index, raw):
        return evidence.verified_letter([evidence._EndMacs(k, set_id) for k in keys], index, raw)

    assert verified([KEY], a, 3, token.encode()) == "D"
    assert verified([OTHER, KEY], a, 3, token) == "D"  # a previous key
    for keys, set_id, index, raw in [
        ([OTHER], a, 3, token),  # another key
        ([KEY], b, 3, token),  # copied to another set
        ([KEY], a, 4, token),  # to another sub-job
        ([KEY], a, 3, "F" + token[1:]),  # its letter changed
        ([KEY], a, 3, token[:-1]),
        ([KEY], a, 3, "D"),
        ([KEY], a, 3, b"\xff" * 40),
        ([KEY], a, 3, 7),
        ([b"x" * 32], a, 3, token),
    ]:
        assert verified(keys, set_id, index, raw) is None


def test_an_end_token_and_a_cancel_mark_never_verify_as_each_other():
    a = str(uuid.uuid4())
    mark = evidence.cancel_token(KEY, a)
    assert mark != evidence.cancel_token(KEY, str(uuid.uuid4()))
    assert mark != evidence.cancel_token(OTHER, a)
    macs = [evidence._EndMacs(KEY, a)]
    assert all(evidence.verified_letter(macs, 0, letter + mark) is None for letter in "DFC")
    assert evidence.end_token(KEY, a, 0, "C")[1:] != mark
