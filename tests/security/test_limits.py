"""Hardened JSON parsing: size, depth and item caps, no NaN, no duplicate keys, no crashes."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from drivemr.errors import SecurityError
from drivemr.limits import (
    MAX_JOB_BYTES,
    MAX_MANIFEST_BYTES,
    check_size,
    load_json_limited,
)


def load(data: bytes | str, **kw: Any) -> Any:
    kw.setdefault("max_bytes", MAX_JOB_BYTES)
    return load_json_limited(data, what="job.json", **kw)


def depth_of(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((depth_of(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth_of(v) for v in value), default=0)
    return 0


def items_of(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + sum(items_of(v) for v in value.values())
    if isinstance(value, list):
        return 1 + sum(items_of(v) for v in value)
    return 1


def test_defaults() -> None:
    assert MAX_JOB_BYTES == 64 * 1024 * 1024
    assert MAX_MANIFEST_BYTES == 16 * 1024 * 1024


@pytest.mark.parametrize(
    ("text", "value"),
    [
        (b"{}", {}),
        (b"[]", []),
        (b"0", 0),
        (b'"x"', "x"),
        (b' {"a": [1, 2.5, "\\u00e9", null, true]} ', {"a": [1, 2.5, "é", None, True]}),
        (b'{"s": "[[[{{{,,,\\"]]]"}', {"s": '[[[{{{,,,"]]]'}),
        (b'{"s": "\\\\", "t": ["\\\\\\""]}', {"s": "\\", "t": ['\\"']}),
        ('{"é": "✓"}'.encode(), {"é": "✓"}),
        ("[1]", [1]),
    ],
)
def test_accepts_plain_json(text: bytes | str, value: Any) -> None:
    assert load(text) == value


def test_size_cap_checked_first() -> None:
    with pytest.raises(SecurityError, match=r"^manifest t0: is 11 bytes, over the limit of 10"):
        load_json_limited(b"[" * 11, max_bytes=10, what="manifest t0")
    assert load(b"[1,2,3]", max_bytes=7) == [1, 2, 3]


@pytest.mark.parametrize(
    "text",
    [
        b"NaN",
        b"[NaN]",
        b"Infinity",
        b"-Infinity",
        b'{"a": Infinity}',
        b"1e999",
        b"[-1e400]",
    ],
)
def test_refuses_non_finite_numbers(text: bytes) -> None:
    with pytest.raises(SecurityError, match=r"job\.json"):
        load(text)


@pytest.mark.parametrize(
    "text",
    [
        b"",
        b"{",
        b"[1,]",
        b"{'a': 1}",
        b'{"a": 1,}',
        b"\xff\xfe[]",
        b"\xef\xbb\xbf[]",
        b'"\xc3"',
        b"[1] [2]",
        b'{"a": 1, "a": 2}',
        b'{"x": {"k": 1, "k": 1}}',
        b"1" * 5000,
        b'"unterminated',
        b'"\\',
        b"]]]][[[[",
        b"\x00",
        b"undefined",
        b"__import__('os')",
    ],
)
def test_refuses_invalid_or_ambiguous(text: bytes) -> None:
    with pytest.raises(SecurityError, match=r"^job\.json: "):
        load(text)


def test_depth_limit() -> None:
    assert depth_of(load(b"[" * 32 + b"]" * 32)) == 32
    with pytest.raises(SecurityError, match="33 levels deep"):
        load(b"[" * 33 + b"]" * 33)
    assert load(b'{"a":' * 5 + b"1" + b"}" * 5, max_depth=5) is not None
    with pytest.raises(SecurityError, match="levels deep"):
        load(b'{"a":' * 6 + b"1" + b"}" * 6, max_depth=5)
    assert load(b'["[[[[[[[["]', max_depth=1) == ["[[[[[[[["]


def test_item_limit() -> None:
    assert len(load(b"[" + b"0," * 99 + b"0]", max_items=101)) == 100
    with pytest.raises(SecurityError, match="values"):
        load(b"[" + b"0," * 100 + b"0]", max_items=101)
    obj = b"{" + b",".join(b'"k%d": {}' % i for i in range(50)) + b"}"
    assert len(load(obj, max_items=51)) == 50
    with pytest.raises(SecurityError):
        load(obj, max_items=50)


@pytest.mark.parametrize(
    "blob",
    [
        pytest.param(lambda n: b"[" * n + b"]" * n, id="deep"),
        pytest.param(lambda n: b"[" + b"[]," * (n // 3 - 2) + b"[]]", id="many-empty-lists"),
        pytest.param(lambda n: b'"' * (2 * n), id="many-strings"),
        pytest.param(lambda n: b'"' + b'\\"' * n, id="escaped-quotes"),
        pytest.param(lambda n: b'{"a":' * n, id="deep-objects"),
    ],
)
def test_hostile_blobs_are_refused_quickly(blob: Any) -> None:
    data = blob(4 * 1024 * 1024)
    start = time.monotonic()
    with pytest.raises(SecurityError):
        load(data)
    assert time.monotonic() - start < 5


def test_check_size() -> None:
    check_size(10, max_bytes=10, what="job.json")
    with pytest.raises(SecurityError, match="over the limit"):
        check_size(11, max_bytes=10, what="job.json")
    with pytest.raises(SecurityError, match="size unknown"):
        check_size(None, max_bytes=10, what="job.json")
    with pytest.raises(SecurityError):
        check_size(-1, max_bytes=10, what="job.json")


# --------------------------------------------------------------------------- fuzzing

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=40,
)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
@example(b"[" * 40 + b"]" * 40)
@example(b'"\\')
@example(b"\xed\xa0\x80")
@example(b'"\\ud800"')
@example(b"-")
@example(b"1" * 5000)
def test_arbitrary_bytes_only_security_error(data: bytes) -> None:
    try:
        value = load(data, max_bytes=200, max_depth=8, max_items=50)
    except SecurityError:
        return
    assert depth_of(value) <= 8
    assert items_of(value) <= 50


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values, st.integers(min_value=1, max_value=6), st.integers(min_value=1, max_value=40))
def test_valid_json_accepted_exactly_within_limits(
    value: Any, max_depth: int, max_items: int
) -> None:
    text = json.dumps(value, ensure_ascii=False)
    within = depth_of(value) <= max_depth and items_of(value) <= max_items
    try:
        parsed = load(text.encode("utf-8"), max_depth=max_depth, max_items=max_items)
    except SecurityError:
        assert not within
        return
    assert within
    assert parsed == value


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values, st.data())
def test_mutated_json_only_security_error(value: Any, data: st.DataObject) -> None:
    raw = bytearray(json.dumps(value, indent=data.draw(st.sampled_from([None, 1]))).encode())
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        op = data.draw(st.sampled_from(["insert", "delete", "replace"]))
        pos = data.draw(st.integers(min_value=0, max_value=len(raw)))
        byte = data.draw(st.sampled_from(list(b'[]{},:"\\0e-.ntfNI \xff\xc3')))
        if op == "insert":
            raw.insert(pos, byte)
        elif raw and pos < len(raw):
            if op == "delete":
                del raw[pos]
            else:
                raw[pos] = byte
    try:
        parsed = load(bytes(raw), max_depth=6, max_items=60)
    except SecurityError:
        return
    assert depth_of(parsed) <= 6 and items_of(parsed) <= 60
