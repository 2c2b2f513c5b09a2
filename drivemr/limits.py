"""Hardened parsing of untrusted JSON (job.json, result manifests, heartbeats, key lists).

Anyone who can write to the shared folder can put any bytes there, so every document read
from it is parsed as *data only* (``json``; never pickle, eval or ``yaml.load``) and within
limits: a size cap checked before parsing (and, via :func:`check_size`, before downloading),
a nesting-depth cap and a total-item cap, so that a hostile file costs a worker one refused
job, never its memory, its stack or its life. Every failure is a :class:`SecurityError`
naming the document.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from typing import Any, NoReturn

from drivemr.errors import SecurityError

__all__ = [
    "MAX_DEPTH",
    "MAX_ITEMS",
    "MAX_JOB_BYTES",
    "MAX_MANIFEST_BYTES",
    "MAX_SMALL_BYTES",
    "check_size",
    "finite_number",
    "load_json_limited",
]

MAX_JOB_BYTES = 64 * 1024 * 1024
"""Default cap for job.json: it carries every task, so it may be large, but not unbounded."""

MAX_MANIFEST_BYTES = 16 * 1024 * 1024
"""Default cap for one result manifest (exit code, times, output names and digests)."""

MAX_SMALL_BYTES = 1024 * 1024
"""Default cap for small documents: heartbeats, claims, markers, trusted-key lists."""

MAX_DEPTH = 32
"""Default nesting cap: drivemr's own documents nest a handful of levels deep."""

MAX_ITEMS = 200_000
"""Default cap on the number of JSON values in one document."""

# JSON strings once their escapes are gone (see _prescan). The closing quote is optional:
# an unterminated string then runs to the end of the data (invalid JSON, refused by the
# parser) instead of failing and being retried from every later quote.
_STRING_RE = re.compile(rb'"[^"]*"?')
_EMPTY_CONTAINER_RE = re.compile(rb"\[[ \t\r\n]*\]|\{[ \t\r\n]*\}")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def _refuse(what: str, problem: str) -> NoReturn:
    raise SecurityError(f"{what}: {problem}")


def check_size(size: int | None, *, max_bytes: int, what: str) -> None:
    """Refuse a document by its reported size, before downloading it.

    Drive reports ``size`` and the folder store stats the file; checking that first means a
    hostile 10 GB "job.json" is never fetched. An unknown size is refused too: a store that
    cannot say how big a file is cannot promise the download is bounded.
    """
    if size is None:
        _refuse(what, "size unknown; refusing to download a document of unbounded size")
    if size < 0 or size > max_bytes:
        _refuse(what, f"is {size} bytes, over the limit of {max_bytes} bytes")


def _prescan(data: bytes, *, max_depth: int, max_items: int, what: str) -> None:
    """Count values and nesting on the raw bytes, so hostile input is refused unparsed.

    Parsing first would let a 64 MiB ``[[],[],...]`` allocate gigabytes, or
    ``[[[[...`` exhaust the parser's recursion. Strings are blanked out first (their
    brackets and commas are text); for valid JSON the counts below are exact, and invalid
    JSON is refused by the parser anyway.
    """
    # Inside a JSON string every backslash starts a two-character escape, and escapes
    # pair up from the left exactly as bytes.replace scans. So dropping every escaped
    # backslash (two backslash bytes), then every escaped quote (backslash, quote), leaves
    # strings without escapes, in linear C time; a regex that understood escapes would be
    # ten times slower on a hostile 64 MiB of them.
    unescaped = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    # Every string is a key or a value, and an object member has one key per value: valid
    # JSON has at most 4 quotes per value. Bounding this first keeps the per-string regex
    # work below small.
    quotes = unescaped.count(b'"')
    if quotes > 4 * max_items + 2:
        _refuse(what, f"has about {quotes // 2} strings, over the limit of {2 * max_items}")
    skeleton = _STRING_RE.sub(b'""', unescaped)
    opens = skeleton.count(b"[") + skeleton.count(b"{")
    closes = skeleton.count(b"]") + skeleton.count(b"}")
    if closes != opens:
        _refuse(what, "is not valid JSON: unbalanced brackets")
    commas = skeleton.count(b",")
    if 1 + commas > max_items:
        _refuse(what, f"has about {1 + commas} values, over the limit of {max_items}")
    _, empties = _EMPTY_CONTAINER_RE.subn(b"", skeleton)
    items = 1 + commas + opens - empties
    if items > max_items:
        _refuse(what, f"has about {items} values, over the limit of {max_items}")
    # Each bracket is +1 or -1; the running maximum is the nesting depth. The checks above
    # leave at most 4 * max_items brackets (empty containers are separated by commas).
    brackets = skeleton.translate(None, _NOT_BRACKETS)
    steps = (1 if b in (0x5B, 0x7B) else -1 for b in brackets)
    depth = max(itertools.accumulate(steps, initial=0))
    if depth > max_depth:
        _refuse(what, f"nests {depth} levels deep, over the limit of {max_depth}")


def _measure(value: Any, *, max_depth: int, max_items: int, what: str) -> None:
    """The authoritative depth and item count, on the parsed value (iterative: no recursion)."""
    items = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        items += 1
        if items > max_items:
            _refuse(what, f"has more than {max_items} values")
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        depth += 1
        if depth > max_depth:
            _refuse(what, f"nests more than {max_depth} levels deep")
        stack.extend((child, depth) for child in children)


def load_json_limited(
    data: bytes | bytearray | memoryview | str,
    *,
    max_bytes: int,
    max_depth: int = MAX_DEPTH,
    max_items: int = MAX_ITEMS,
    what: str,
) -> Any:
    """Parse untrusted JSON, refusing anything oversized, too deep, too wide or ambiguous.

    Beyond plain ``json.loads`` this refuses: more than ``max_bytes`` bytes (checked first);
    anything but UTF-8; NaN, Infinity and numbers that overflow to infinity (they break
    canonical signing and comparisons); duplicate object keys (two readers could disagree
    on which one counts); more than ``max_depth`` nested containers; more than ``max_items``
    values in all. Only :class:`SecurityError` leaves this function, naming ``what``.
    """
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    if len(raw) > max_bytes:
        _refuse(what, f"is {len(raw)} bytes, over the limit of {max_bytes} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        _refuse(what, f"is not valid UTF-8 (byte {exc.start})")
    _prescan(raw, max_depth=max_depth, max_items=max_items, what=what)

    def no_constant(name: str) -> NoReturn:
        _refuse(what, f"contains {name}, which is not a JSON number")

    def finite_float(literal: str) -> float:
        value = float(literal)
        if not math.isfinite(value):
            _refuse(what, f"number {literal[:40]} overflows to infinity")
        return value

    def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj: dict[str, Any] = {}
        for key, value in pairs:
            if key in obj:
                _refuse(what, f"has the key {key[:80]!r} twice in one object")
            obj[key] = value
        return obj

    try:
        value = json.loads(
            text,
            parse_constant=no_constant,
            parse_float=finite_float,
            object_pairs_hook=unique_keys,
        )
    except SecurityError:
        raise
    except json.JSONDecodeError as exc:
        _refuse(what, f"is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})")
    except RecursionError:
        _refuse(what, "nests too deeply to parse")
    except ValueError as exc:  # e.g. an integer with more digits than Python converts
        _refuse(what, f"is not acceptable JSON: {exc}")
    _measure(value, max_depth=max_depth, max_items=max_items, what=what)
    return value


def finite_number(value: object) -> float | None:
    """``value`` as a float if it is a plain finite JSON number, else None: a bool is not a
    number, and a 400-digit integer (which would overflow ``float()``) or a NaN is none."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None
