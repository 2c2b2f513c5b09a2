"""Partial responses: Drive's ``fields`` selector.

Drive returns only a handful of fields unless asked (``kind, id, name, mimeType`` for a
file), and a listing without ``nextPageToken`` in ``fields`` has no next page token. Code
that forgets ``fields=`` must fail here as it fails on Drive, so the fake applies the same
defaults and validates the selector against the discovery document's schemas (an unknown
field is a 400, as on Drive).
"""

from __future__ import annotations

from typing import Any

from drivemr.testing.fakedrive.errors import ApiError

Selection = dict[str, "Selection | None"]
"""A parsed selector: field name -> sub-selection, ``None`` meaning "all of it"."""

FILE_DEFAULT: Selection = {"kind": None, "id": None, "name": None, "mimeType": None}
FILE_LIST_DEFAULT: Selection = {
    "kind": None,
    "nextPageToken": None,
    "incompleteSearch": None,
    "files": FILE_DEFAULT,
}
CHANGE_LIST_DEFAULT: Selection = {
    "kind": None,
    "nextPageToken": None,
    "newStartPageToken": None,
    "changes": {
        "kind": None,
        "type": None,
        "changeType": None,
        "time": None,
        "removed": None,
        "fileId": None,
        "file": FILE_DEFAULT,
    },
}

_SEPARATORS = ",/()"


class FieldsSyntaxError(ValueError):
    """The selector does not parse."""


def _merge(sel: Selection, key: str, sub: Selection | None) -> None:
    if key not in sel:
        sel[key] = sub
        return
    have = sel[key]
    if have is None or sub is None:
        sel[key] = None
        return
    for k, v in sub.items():
        _merge(have, k, v)


def parse_fields(text: str) -> Selection:
    """Parse ``nextPageToken, files(id,name,parents)`` into a :data:`Selection`."""
    tokens: list[str] = []
    name: list[str] = []
    for ch in text:
        if ch in _SEPARATORS:
            if name:
                tokens.append("".join(name))
                name = []
            tokens.append(ch)
        elif ch.isspace():
            if name:
                tokens.append("".join(name))
                name = []
        elif ch.isalnum() or ch in "_*.-":
            name.append(ch)
        else:
            raise FieldsSyntaxError(f"unexpected character {ch!r}")
    if name:
        tokens.append("".join(name))
    pos = 0

    def parse_list(nested: bool) -> Selection:
        nonlocal pos
        sel: Selection = {}
        while True:
            if pos >= len(tokens) or tokens[pos] in _SEPARATORS:
                raise FieldsSyntaxError("expected a field name")
            path = [tokens[pos]]
            pos += 1
            while pos < len(tokens) and tokens[pos] == "/":
                pos += 1
                if pos >= len(tokens) or tokens[pos] in _SEPARATORS:
                    raise FieldsSyntaxError("expected a field name after '/'")
                path.append(tokens[pos])
                pos += 1
            sub: Selection | None = None
            if pos < len(tokens) and tokens[pos] == "(":
                pos += 1
                sub = parse_list(True)
                if pos >= len(tokens) or tokens[pos] != ")":
                    raise FieldsSyntaxError("missing ')'")
                pos += 1
            for key in reversed(path[1:]):
                sub = {key: sub}
            _merge(sel, path[0], sub)
            if pos < len(tokens) and tokens[pos] == ",":
                pos += 1
                continue
            if pos >= len(tokens):
                if nested:
                    raise FieldsSyntaxError("missing ')'")
                return sel
            if tokens[pos] == ")" and nested:
                return sel
            raise FieldsSyntaxError(f"unexpected {tokens[pos]!r}")

    if not tokens:
        raise FieldsSyntaxError("empty selector")
    return parse_list(False)


class SchemaValidator:
    """Checks selectors against the ``schemas`` of the discovery document."""

    def __init__(self, schemas: dict[str, Any]) -> None:
        self._schemas = schemas

    def _resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            schema = self._schemas[schema["$ref"]]
        if schema.get("type") == "array" and "items" in schema:
            return self._resolve(schema["items"])
        return schema

    def validate(self, sel: Selection, schema_name: str) -> None:
        """Raise a Drive-shaped 400 when ``sel`` names a field the schema lacks."""
        self._check(sel, self._schemas[schema_name], "")

    def _check(self, sel: Selection, schema: dict[str, Any], prefix: str) -> None:
        schema = self._resolve(schema)
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, sub in sel.items():
            if key == "*":
                continue
            if key in props:
                child = props[key]
            elif extra is not None:
                child = extra
            else:
                raise ApiError(
                    400,
                    "invalidParameter",
                    f"Invalid field selection {prefix}{key}",
                    location="fields",
                    location_type="parameter",
                )
            if sub is not None:
                self._check(sub, child, f"{prefix}{key}/")


def apply_fields(value: Any, sel: Selection | None) -> Any:
    """Keep only the selected parts of a response (lists are filtered element-wise)."""
    if sel is None:
        return value
    if isinstance(value, list):
        return [apply_fields(v, sel) for v in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    if "*" in sel:
        out.update(value)
    for key, sub in sel.items():
        if key == "*" or key not in value:
            continue
        out[key] = apply_fields(value[key], sub)
    return out
