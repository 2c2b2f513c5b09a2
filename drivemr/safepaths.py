"""Path checks for names that come from a job or a manifest, i.e. from anyone who can write
to the shared folder.

A shipped file name, an input name or an output glob names something *inside* a task's
working folder (or the ``--out`` folder). The checks are deliberately stricter than any one
OS needs, because a job written on Linux runs on Windows and macOS workers too:

* refused: empty names, absolute paths (``/x``, ``\\x``), ``..`` components, drive letters
  and NTFS streams (any ``:``), UNC paths, backslashes (a separator on Windows; turning
  them into ``/`` would silently change what the job author signed), NUL, control and
  invisible format characters (bidi overrides, zero-width), Windows device names in any
  component (``CON``, ``nul.txt``, ``COM1``, ``LPT¹``, any case), components ending in a
  space or a dot (Windows strips them, so two names would alias), Windows-invalid
  characters (``<>"|``, and ``*?`` outside globs), names of 1024 characters or more and
  components over 255 UTF-8 bytes;
* each component is also checked in its NFKC form, because Windows' "best fit" code-page
  mapping and many tools fold look-alikes (fullwidth dot and solidus U+FF0E/U+FF0F, the
  two-dot leader U+2025) onto ASCII;
* a leading ``~`` is refused too: ``expanduser`` and shells read it as a home directory;
* ``.`` and empty components (``./a``, ``a//b``, ``a/``) are dropped: they cannot leave
  the folder, and the normalised result is what callers use. A name that is nothing but
  ``.`` components names the folder itself and is refused.

Lexical checks cannot see symlinks: :func:`safe_join` and :func:`is_inside` resolve them.
"""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

from drivemr.errors import SecurityError

__all__ = [
    "MAX_COMPONENT_BYTES",
    "MAX_PATH_CHARS",
    "check_output_glob",
    "check_relative_path",
    "is_inside",
    "safe_join",
]

MAX_PATH_CHARS = 1024
"""Names this long or longer are refused."""

MAX_COMPONENT_BYTES = 255
"""Longest component, in UTF-8 bytes (the common file-system limit)."""

_RESERVED = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$", "CLOCK$"}
    | {f"{dev}{n}" for dev in ("COM", "LPT") for n in "0123456789\u00b9\u00b2\u00b3"}
)
# Unicode categories refused anywhere: controls, format characters (bidi overrides,
# zero-width joiners and spaces, BOM), lone surrogates, line and paragraph separators.
_BAD_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_WINDOWS_INVALID = frozenset('<>"|')
_GLOB_CHARS = frozenset("*?")


def _fail(what: str, name: object, problem: str) -> SecurityError:
    shown = repr(name) if len(repr(name)) <= 120 else repr(name)[:117] + "..."
    return SecurityError(f"{what} {shown}: {problem}")


def _check_chars(name: str, what: str, *, glob: bool) -> None:
    for ch in name:
        if ch == "\\":
            raise _fail(what, name, "backslashes are not allowed (use '/' as the separator)")
        if ch == ":":
            raise _fail(what, name, "':' is not allowed (drive letters, NTFS streams)")
        if ch in _WINDOWS_INVALID:
            raise _fail(what, name, f"{ch!r} is not allowed in file names on Windows")
        if not glob and ch in _GLOB_CHARS:
            raise _fail(what, name, f"{ch!r} is not allowed in a file name")
        if unicodedata.category(ch) in _BAD_CATEGORIES:
            raise _fail(what, name, f"control or invisible character U+{ord(ch):04X}")


def _check_component(comp: str, name: str, what: str, *, glob: bool) -> None:
    """Check one component, as written and as NFKC would fold it."""
    if len(comp.encode("utf-8")) > MAX_COMPONENT_BYTES:
        raise _fail(what, name, f"a component is longer than {MAX_COMPONENT_BYTES} bytes")
    folded = unicodedata.normalize("NFKC", comp)
    forms = (comp,) if folded == comp else (comp, folded)
    for form in forms:
        how = "" if form is comp else f" (it reads as {form!r} once look-alikes are folded)"
        if "/" in form or "\\" in form or ":" in form:
            raise _fail(what, name, f"a component contains a separator or ':'{how}")
        if form == "..":
            raise _fail(what, name, f"'..' components are not allowed{how}")
        if form.endswith((" ", ".")):
            raise _fail(what, name, f"a component ends with a space or a dot{how}")
        if form.split(".", 1)[0].rstrip(" ").upper() in _RESERVED:
            raise _fail(what, name, f"{comp!r} is a reserved device name on Windows{how}")
        if glob and "**" in form and form != "**":
            raise _fail(what, name, "'**' must be a whole component")
    if folded != comp:
        _check_chars(folded, what, glob=glob)


def _check(name: object, what: str, *, glob: bool) -> str:
    if not isinstance(name, str):
        raise _fail(what, name, f"must be a string, not {type(name).__name__}")
    if not name:
        raise _fail(what, name, "is empty")
    if len(name) >= MAX_PATH_CHARS:
        raise _fail(what, name, f"is {len(name)} characters long (limit {MAX_PATH_CHARS - 1})")
    _check_chars(name, what, glob=glob)
    if name.startswith("/"):
        raise _fail(what, name, "absolute paths are not allowed")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts:
        raise _fail(what, name, "names the working folder itself, not a file in it")
    if parts[0].startswith("~"):
        raise _fail(what, name, "a leading '~' would read as a home directory to shells")
    for comp in parts:
        _check_component(comp, name, what, glob=glob)
    return "/".join(parts)


def check_relative_path(name: str, *, what: str) -> str:
    """Return ``name`` normalised (``a/b``) if it safely names a file inside a folder.

    Raises :class:`SecurityError` naming ``what`` (e.g. "shipped file") and the problem.
    """
    return _check(name, what, glob=False)


def check_output_glob(pattern: str, *, what: str = "output glob") -> str:
    """Like :func:`check_relative_path`, for output globs: ``*``, ``?``, ``[...]``, ``**``.

    A glob that passes cannot name anything outside the folder lexically; files it matches
    may still be symlinks, so callers check each match with :func:`is_inside`.
    """
    return _check(pattern, what, glob=True)


def _normcase(path: Path) -> str:
    return os.path.normcase(str(path))


def _within(base: Path, path: Path) -> bool:
    """``path`` is ``base`` or below it; both already resolved."""
    b, p = _normcase(base), _normcase(path)
    if p == b:
        return True
    prefix = b if b.endswith(os.sep) else b + os.sep
    return p.startswith(prefix)


def is_inside(base: Path, path: Path) -> bool:
    """True if ``path``, symlinks resolved, is ``base`` or lies below it.

    Used on every file found by an output glob or written while staging: a symlink
    planted by a task or a job pointing out of the folder makes this False.
    """
    try:
        return _within(Path(base).resolve(), Path(path).resolve())
    except (OSError, RuntimeError, ValueError):  # symlink loops, NUL bytes, odd paths
        return False


def safe_join(base: Path, rel: str, *, what: str = "path") -> Path:
    """Return ``base / rel`` resolved, refusing any way out of ``base``.

    ``rel`` is checked with :func:`check_relative_path`; then the joined path is resolved
    (following symlinks that exist now, e.g. a staged directory that is a link to ``/etc``)
    and must lie strictly inside ``base``. The check is as of this call: a caller writing
    into a folder that untrusted code can change concurrently must check again after.
    """
    clean = check_relative_path(rel, what=what)
    try:
        root = Path(base).resolve()
        target = (root / clean).resolve()
    except (OSError, RuntimeError, ValueError) as exc:  # RuntimeError: symlink loop (< 3.13)
        raise _fail(what, rel, f"cannot be resolved safely: {exc}") from exc
    if not _within(root, target) or _normcase(target) == _normcase(root):
        raise _fail(what, rel, f"leads outside {str(root)!r} (through a symlink)")
    return target
