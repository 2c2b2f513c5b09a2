"""Drive's ``q`` search language, parsed and evaluated against the fake's files.

Supported, as documented for Drive v3 ("Search query terms and operators"):

* ``'<id>' in parents`` (``'root'`` is an alias), ``'me' in owners|writers|readers``;
* ``name = | != | contains``; ``contains`` on a name is a *prefix* match on the whole
  name or on any word of it (``HelloWorld`` matches ``'Hello'`` but not ``'World'``),
  case-insensitive, as on Drive;
* ``fullText contains`` (substring of name, description or text content);
* ``mimeType = | != | contains``;
* ``modifiedTime | createdTime | viewedByMeTime`` with ``< <= = != > >=`` and RFC 3339
  values;
* ``trashed | starred | sharedWithMe = | != true|false``;
* ``properties | appProperties has { key='k' and value='v' }``;
* ``and``, ``or``, ``not`` and parentheses; strings in single quotes with ``\\'`` and
  ``\\\\`` escapes.

Anything else raises :class:`QueryError`, which the server answers with Drive's 400.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

from drivemr.testing.fakedrive.access import email_of
from drivemr.testing.fakedrive.state import FileRecord


class QueryError(ValueError):
    """The query does not parse or uses a term the way Drive refuses."""


@dataclass(frozen=True)
class Token:
    kind: str  # "str", "word", "op", "(", ")", "{", "}", "end"
    value: str
    pos: int


_OPS = ("<=", ">=", "!=", "=", "<", ">")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")


def tokenize(text: str) -> list[Token]:
    """Split a query into tokens; strings keep their unescaped value."""
    out: list[Token] = []
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        if ch in "'\"":
            quote = ch
            j = i + 1
            buf: list[str] = []
            while True:
                if j >= n:
                    raise QueryError(f"unterminated string at {i}")
                c = text[j]
                if c == "\\":
                    if j + 1 >= n:
                        raise QueryError(f"dangling escape at {j}")
                    buf.append(text[j + 1])
                    j += 2
                    continue
                if c == quote:
                    break
                buf.append(c)
                j += 1
            out.append(Token("str", "".join(buf), i))
            i = j + 1
            continue
        if ch in "(){}":
            out.append(Token(ch, ch, i))
            i += 1
            continue
        for op in _OPS:
            if text.startswith(op, i):
                out.append(Token("op", op, i))
                i += len(op)
                break
        else:
            m = _WORD.match(text, i)
            if not m:
                raise QueryError(f"unexpected character {ch!r} at {i}")
            out.append(Token("word", m.group(0), i))
            i = m.end()
    out.append(Token("end", "", n))
    return out


@dataclass
class Context:
    """What a predicate needs besides the file: the root alias and the caller's identity."""

    root_id: str
    me_email: str


Predicate = Callable[[FileRecord, Context], bool]

_TIME_FIELDS = {
    "modifiedTime": lambda r: r.modified_ms,
    "createdTime": lambda r: r.created_ms,
    "viewedByMeTime": lambda r: r.modified_ms,
}
_BOOL_FIELDS = {
    "trashed": lambda r: r.trashed,
    "starred": lambda r: r.starred,
    "sharedWithMe": lambda r: False,
}
_COMPARE: dict[str, Callable[[object, object], bool]] = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,  # type: ignore[operator]
    "<=": lambda a, b: a <= b,  # type: ignore[operator]
    ">": lambda a, b: a > b,  # type: ignore[operator]
    ">=": lambda a, b: a >= b,  # type: ignore[operator]
}


def parse_time(value: str) -> int:
    """An RFC 3339 value (UTC when no offset is given) in milliseconds."""
    v = value.strip()
    if v.endswith(("Z", "z")):
        v = v[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(v)
    except ValueError as exc:
        raise QueryError(f"invalid date-time {value!r}") from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return round(dt.timestamp() * 1000)


def name_contains(name: str, needle: str) -> bool:
    """Drive's ``name contains``: a prefix of the name or of one of its words."""
    if not needle:
        return True
    low = name.lower()
    nee = needle.lower()
    if low.startswith(nee):
        return True
    for i in range(1, len(low)):
        if low[i].isalnum() and not low[i - 1].isalnum() and low.startswith(nee, i):
            return True
    return False


def _full_text(rec: FileRecord, needle: str) -> bool:
    n = needle.lower()
    if n in rec.name.lower() or (rec.description and n in rec.description.lower()):
        return True
    if rec.content and rec.mime_type.startswith("text/"):
        return n in rec.content.decode("utf-8", "replace").lower()
    return False


@dataclass
class Query:
    """A parsed query: a predicate, plus facts the server uses to plan and to lag."""

    predicate: Predicate
    uses_name: bool
    """True when a name term takes part: such queries go through the lagging index."""
    parent: str | None
    """The folder of a top-level ``'X' in parents`` conjunct, to scan only its children."""

    def matches(self, rec: FileRecord, ctx: Context) -> bool:
        return self.predicate(rec, ctx)


class _Parser:
    def __init__(self, text: str) -> None:
        self.toks = tokenize(text)
        self.i = 0
        self.uses_name = False

    def peek(self) -> Token:
        return self.toks[self.i]

    def take(self) -> Token:
        t = self.toks[self.i]
        self.i += 1
        return t

    def is_word(self, word: str) -> bool:
        t = self.peek()
        return t.kind == "word" and t.value.lower() == word

    def expect(self, kind: str, value: str | None = None) -> Token:
        t = self.take()
        if t.kind != kind or (value is not None and t.value.lower() != value):
            want = value or kind
            raise QueryError(f"expected {want!r} at {t.pos}, found {t.value or t.kind!r}")
        return t

    # Grammar: or_expr := and_expr ('or' and_expr)*; and_expr := unary ('and' unary)*;
    # unary := 'not' unary | '(' or_expr ')' | term
    def parse(self) -> tuple[Predicate, list[tuple[str, str]]]:
        pred, conj = self.or_expr()
        if self.peek().kind != "end":
            t = self.peek()
            raise QueryError(f"unexpected {t.value or t.kind!r} at {t.pos}")
        return pred, conj

    def or_expr(self) -> tuple[Predicate, list[tuple[str, str]]]:
        first, conj = self.and_expr()
        parts = [first]
        while self.is_word("or"):
            self.take()
            nxt, _ = self.and_expr()
            parts.append(nxt)
        if len(parts) == 1:
            return first, conj
        return (lambda r, c: any(p(r, c) for p in parts)), []

    def and_expr(self) -> tuple[Predicate, list[tuple[str, str]]]:
        first, conj = self.unary()
        parts = [first]
        conjuncts = list(conj)
        while self.is_word("and"):
            self.take()
            nxt, c2 = self.unary()
            parts.append(nxt)
            conjuncts.extend(c2)
        if len(parts) == 1:
            return first, conjuncts
        return (lambda r, c: all(p(r, c) for p in parts)), conjuncts

    def unary(self) -> tuple[Predicate, list[tuple[str, str]]]:
        if self.is_word("not"):
            self.take()
            inner, _ = self.unary()
            return (lambda r, c: not inner(r, c)), []
        if self.peek().kind == "(":
            self.take()
            pred, conj = self.or_expr()
            self.expect(")")
            return pred, conj
        return self.term()

    def term(self) -> tuple[Predicate, list[tuple[str, str]]]:
        t = self.take()
        if t.kind == "str":
            value = t.value
            self.expect("word", "in")
            fld = self.expect("word").value
            if fld == "parents":
                return (lambda r, c: (c.root_id if value == "root" else value) in r.parents), [
                    ("parent", value)
                ]
            if fld == "owners":  # shared-drive items have no owner
                return (
                    lambda r, c: (
                        r.drive_id is None
                        and email_of(r.owner) == (c.me_email if value == "me" else value)
                    )
                ), []
            if fld in ("writers", "readers"):
                return (lambda r, c: value in ("me", c.me_email)), []
            raise QueryError(f"'in' is not supported for {fld!r}")
        if t.kind != "word":
            raise QueryError(f"expected a search term at {t.pos}, found {t.value or t.kind!r}")
        fld = t.value
        if fld == "sharedWithMe" and self.peek().kind != "op":
            return (lambda r, c: False), []
        if fld in ("properties", "appProperties"):
            return self.has_term(fld), []
        op_tok = self.take()
        if op_tok.kind == "word" and op_tok.value.lower() == "contains":
            op = "contains"
        elif op_tok.kind == "op":
            op = op_tok.value
        else:
            raise QueryError(f"expected an operator after {fld!r} at {op_tok.pos}")
        val_tok = self.take()
        if fld in _BOOL_FIELDS:
            if (
                op not in ("=", "!=")
                or val_tok.kind != "word"
                or val_tok.value
                not in (
                    "true",
                    "false",
                )
            ):
                raise QueryError(f"{fld} takes = or != with true or false")
            want = val_tok.value == "true"
            getb = _BOOL_FIELDS[fld]
            if op == "=":
                return (lambda r, c: getb(r) == want), []
            return (lambda r, c: getb(r) != want), []
        if val_tok.kind != "str":
            raise QueryError(f"expected a quoted value at {val_tok.pos}")
        value = val_tok.value
        if fld == "name":
            self.uses_name = True
            if op == "contains":
                return (lambda r, c: name_contains(r.name, value)), []
            if op in ("=", "!="):
                cmp = _COMPARE[op]
                return (lambda r, c: cmp(r.name, value)), []
            raise QueryError(f"name does not take {op!r}")
        if fld == "fullText":
            if op != "contains":
                raise QueryError("fullText takes only 'contains'")
            return (lambda r, c: _full_text(r, value)), []
        if fld == "mimeType":
            if op == "contains":
                low = value.lower()
                return (lambda r, c: low in r.mime_type.lower()), []
            if op in ("=", "!="):
                cmp = _COMPARE[op]
                return (lambda r, c: cmp(r.mime_type, value)), []
            raise QueryError(f"mimeType does not take {op!r}")
        if fld in _TIME_FIELDS:
            if op == "contains":
                raise QueryError(f"{fld} does not take 'contains'")
            ms = parse_time(value)
            gett = _TIME_FIELDS[fld]
            cmp = _COMPARE[op]
            return (lambda r, c: cmp(gett(r), ms)), []
        if fld == "description":
            raise QueryError("description is not a searchable field")
        raise QueryError(f"unknown search field {fld!r}")

    def has_term(self, fld: str) -> Predicate:
        self.expect("word", "has")
        self.expect("{")
        got: dict[str, str] = {}
        while True:
            k = self.expect("word").value
            if k not in ("key", "value") or k in got:
                raise QueryError(f"expected key= and value= inside {{ }} for {fld}")
            self.expect("op", "=")
            got[k] = self.expect("str").value
            if self.is_word("and"):
                self.take()
                continue
            break
        self.expect("}")
        if set(got) != {"key", "value"}:
            raise QueryError(f"{fld} has {{ }} needs both key and value")
        key, value = got["key"], got["value"]
        if fld == "appProperties":
            return lambda r, c: r.app_properties.get(key) == value
        return lambda r, c: r.properties.get(key) == value


def parse_query(text: str) -> Query:
    """Parse ``q``; an empty query matches every file."""
    if not text.strip():
        return Query(lambda r, c: True, False, None)
    p = _Parser(text)
    pred, conj = p.parse()
    parent = next((v for k, v in conj if k == "parent"), None)
    return Query(pred, p.uses_name, parent)
