"""Text from the store, made safe to show.

Worker names, host names, task names, rejection reasons and log tails are written by whoever
can write the shared folder. Printed raw, an escape sequence can rewrite the operator's
terminal (move the cursor, hide lines, set the window title, fake a prompt) and a bidi
override can make text read backwards. Every CLI and HTML surface passes such text through
:func:`safe` first: control characters (C0, DEL, C1), bidi controls and other invisible
format characters become visible ``\\x1b``-style escapes, and overlong text is cut.
"""

from __future__ import annotations

import unicodedata

__all__ = ["safe", "safe_multiline"]

_KEEP_IN_MULTILINE = frozenset("\n\t")


def _escape(ch: str) -> str:
    code = ord(ch)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _unsafe(ch: str) -> bool:
    # Cc: C0, DEL and C1 controls; Cf: format characters (bidi overrides, zero-width
    # joiners, ...); Cs: lone surrogates; Co/Cn: private use and unassigned.
    return unicodedata.category(ch) in {"Cc", "Cf", "Cs", "Co", "Cn"}


def safe(text: object, *, max_len: int = 200) -> str:
    """One line of store text, every control or invisible character escaped, cut to
    ``max_len`` characters (with an ellipsis)."""
    s = text if isinstance(text, str) else str(text)
    if len(s) > max_len * 4:
        s = s[: max_len * 4]
    out = "".join(_escape(ch) if _unsafe(ch) else ch for ch in s)
    return out if len(out) <= max_len else out[: max(0, max_len - 3)] + "..."


def safe_multiline(text: object, *, max_len: int = 64 * 1024) -> str:
    """Like :func:`safe`, but keeps newlines and tabs (for log tails)."""
    s = text if isinstance(text, str) else str(text)
    if len(s) > max_len:
        s = s[:max_len]
    return "".join(ch if ch in _KEEP_IN_MULTILINE or not _unsafe(ch) else _escape(ch) for ch in s)
