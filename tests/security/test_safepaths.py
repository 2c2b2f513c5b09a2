"""Hostile and legitimate path names: shipped files, inputs, outputs and output globs."""

from __future__ import annotations

import os
import posixpath
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivemr.errors import SecurityError
from drivemr.safepaths import check_output_glob, check_relative_path, is_inside, safe_join

# --------------------------------------------------------------------------- corpus

HOSTILE: list[str] = [
    # empty and "the folder itself"
    "",
    ".",
    "./",
    "./.",
    "/",
    "//",
    # absolute, POSIX and Windows
    "/etc/passwd",
    "/tmp/x",
    "//server/share/x",
    "///x",
    "\\x",
    "\\windows\\system32",
    "\\\\server\\share",
    "\\\\?\\C:\\",
    "\\\\?\\UNC\\server\\share",
    "\\\\.\\PhysicalDrive0",
    "\\\\.\\pipe\\x",
    # parent traversal
    "..",
    "../",
    "../x",
    "../../etc/passwd",
    "a/..",
    "a/../..",
    "a/../../b",
    "a/b/../../../c",
    "./../x",
    "x/./../../y",
    "..\\..",
    "..\\..\\windows",
    "a\\..\\..\\b",
    "../" * 40 + "etc/passwd",
    # drive letters, streams
    "C:",
    "C:\\",
    "C:/x",
    "c:foo",
    "C:foo\\bar",
    "z:",
    "a/C:/b",
    "file.txt:stream",
    "file.txt::$DATA",
    "a:b",
    # Windows device names, any case, with extensions, in any component
    "CON",
    "con",
    "Con",
    "PRN",
    "AUX",
    "NUL",
    "nul.txt",
    "NUL.tar.gz",
    "NUL .txt",
    "nul ",
    "COM1",
    "com9.log",
    "COM0",
    "LPT1",
    "lpt9.txt",
    "LPT0",
    "COM\u00b9",
    "LPT\u00b2.txt",
    "CONIN$",
    "conout$",
    "CLOCK$",
    "dir/CON",
    "dir/aux.c",
    "a/b/prn/c",
    # trailing dots and spaces
    "a.",
    "a..",
    "...",
    "a ",
    "dir /x",
    "dir./x",
    "a/b. ",
    " ",
    "x/ /y",
    # NUL and control characters
    "a\x00b",
    "\x00",
    "a.txt\x00.png",
    "a\nb",
    "a\rb",
    "a\tb",
    "\x1b[31mred",
    "a\x7fb",
    "a\x85b",
    "a\x9fb",
    "a\x07b",
    # unicode tricks
    "evil\u202etxt.exe",
    "a\u200bb",
    "a\u200db",
    "\ufeffa",
    "a\u2028b",
    "a\u2029b",
    "a\u2066b",
    "\ud800",
    "\uff0e\uff0e/x",
    "\uff0e\uff0e",
    "a/\uff0e\uff0e/\uff0e\uff0e/b",
    "\u2025/x",
    "x\uff0fy",
    "x\uff3cy",
    "x\uff1ay",
    "\uff23\uff2f\uff2e",
    "\uff4e\uff55\uff4c.txt",
    "a\u00a0",
    "a\uff0e",
    "a\u3000",
    # Windows-invalid characters and globs in plain names
    "a<b",
    "a>b",
    'a"b',
    "a|b",
    "a*b",
    "a?b",
    "*",
    # home-directory expansion
    "~",
    "~/.ssh/id_rsa",
    "~root/x",
    # too long
    "a" * 256,
    "\u00e9" * 128,
    "\U0001f600" * 64,
    "d/" * 512 + "f",
    "a" * 1024,
    "a/" * 600,
]

LEGIT: list[tuple[str, str]] = [
    ("a", "a"),
    ("a.txt", "a.txt"),
    ("data/part-00001.csv", "data/part-00001.csv"),
    ("./a.txt", "a.txt"),
    ("a//b", "a/b"),
    ("a/./b", "a/b"),
    ("dir/", "dir"),
    (".hidden", ".hidden"),
    (".config/x.toml", ".config/x.toml"),
    ("..a", "..a"),
    ("a..b", "a..b"),
    ("a b.txt", "a b.txt"),
    (" leading-space", " leading-space"),
    ("x~1", "x~1"),
    ("a/~b", "a/~b"),
    ("con_file.txt", "con_file.txt"),
    ("console.log", "console.log"),
    ("nullable", "nullable"),
    ("COM10", "COM10"),
    ("LPT", "LPT"),
    ("auxiliary.py", "auxiliary.py"),
    ("[brackets]", "[brackets]"),
    ("$HOME", "$HOME"),
    ("名前.txt", "名前.txt"),
    ("résumé.pdf", "résumé.pdf"),
    ("emoji-\U0001f600.bin", "emoji-\U0001f600.bin"),
    ("a" * 255, "a" * 255),
    ("\u00e9" * 127, "\u00e9" * 127),
    ("d/" * 400 + "f", "d/" * 400 + "f"),
]

HOSTILE_GLOBS: list[str] = [
    "",
    "/*",
    "/**/*.txt",
    "../*",
    "**/../*",
    "a/../../*",
    "..\\*",
    "C:*",
    "c:/*",
    "\\\\server\\*",
    "nul.*",
    "CON",
    "a**",
    "**b",
    "*.",
    "* ",
    "a\x00*",
    "*\n",
    "\uff0e\uff0e/*",
    "~/*",
    "a|*",
    "<*>",
    "*" * 1024,
]

LEGIT_GLOBS: list[tuple[str, str]] = [
    ("*", "*"),
    ("*.txt", "*.txt"),
    ("out/**/*.csv", "out/**/*.csv"),
    ("**", "**"),
    ("**/*", "**/*"),
    ("part-?????", "part-?????"),
    ("[ab]*.json", "[ab]*.json"),
    ("[!.]*", "[!.]*"),
    ("./out/*", "out/*"),
    (".*", ".*"),
    ("result.json", "result.json"),
]


def test_corpus_is_large_enough() -> None:
    assert len(set(HOSTILE)) >= 100
    assert len(set(HOSTILE)) == len(HOSTILE), "duplicates in the hostile corpus"


@pytest.mark.parametrize("name", HOSTILE, ids=[ascii(n)[:40] for n in HOSTILE])
def test_hostile_names_refused(name: str) -> None:
    with pytest.raises(SecurityError, match=r"^shipped file "):
        check_relative_path(name, what="shipped file")


@pytest.mark.parametrize("name", HOSTILE, ids=[ascii(n)[:40] for n in HOSTILE])
def test_hostile_names_refused_by_safe_join(name: str, tmp_path: Path) -> None:
    base = tmp_path / "work"
    base.mkdir()
    with pytest.raises(SecurityError):
        safe_join(base, name)
    assert sorted(tmp_path.iterdir()) == [base]
    assert list(base.iterdir()) == []


@pytest.mark.parametrize(("name", "expected"), LEGIT, ids=[ascii(n)[:40] for n, _ in LEGIT])
def test_legit_names_pass(name: str, expected: str, tmp_path: Path) -> None:
    assert check_relative_path(name, what="input") == expected
    joined = safe_join(tmp_path, name)
    assert joined == tmp_path.resolve() / expected
    assert is_inside(tmp_path, joined)


@pytest.mark.parametrize("pattern", HOSTILE_GLOBS, ids=[ascii(p)[:40] for p in HOSTILE_GLOBS])
def test_hostile_globs_refused(pattern: str) -> None:
    with pytest.raises(SecurityError, match=r"^output glob "):
        check_output_glob(pattern)


@pytest.mark.parametrize(("pattern", "expected"), LEGIT_GLOBS)
def test_legit_globs_pass(pattern: str, expected: str) -> None:
    assert check_output_glob(pattern) == expected


@pytest.mark.parametrize("pattern", ["*", "a?b", "?"])
def test_glob_characters_only_in_globs(pattern: str) -> None:
    with pytest.raises(SecurityError):
        check_relative_path(pattern, what="output")


def test_message_names_what_and_problem() -> None:
    with pytest.raises(SecurityError) as err:
        check_relative_path("../x", what="input name")
    assert str(err.value).startswith("input name '../x': ")
    assert "'..'" in str(err.value)


def test_non_string_refused() -> None:
    with pytest.raises(SecurityError, match="must be a string"):
        check_relative_path(b"a", what="x")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- symlinks

symlinks = pytest.mark.skipif(sys.platform == "win32", reason="symlinks need privileges on Windows")


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path]:
    base = tmp_path / "work"
    outside = tmp_path / "outside"
    base.mkdir()
    outside.mkdir()
    (outside / "secret").write_text("s")
    return base, outside


@symlinks
def test_symlinked_parent_pointing_out_is_refused(layout: tuple[Path, Path]) -> None:
    base, outside = layout
    (base / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(SecurityError, match="outside"):
        safe_join(base, "link/new-file")
    with pytest.raises(SecurityError):
        safe_join(base, "link/secret")
    assert not is_inside(base, base / "link" / "secret")


@symlinks
def test_symlinked_file_pointing_out_is_refused(layout: tuple[Path, Path]) -> None:
    base, outside = layout
    (base / "out.txt").symlink_to(outside / "secret")
    with pytest.raises(SecurityError):
        safe_join(base, "out.txt")
    assert not is_inside(base, base / "out.txt")


@symlinks
def test_absolute_symlink_to_root_is_refused(layout: tuple[Path, Path]) -> None:
    base, _ = layout
    (base / "root").symlink_to("/", target_is_directory=True)
    with pytest.raises(SecurityError):
        safe_join(base, "root/etc/passwd")


@symlinks
def test_relative_symlink_climbing_out_is_refused(layout: tuple[Path, Path]) -> None:
    base, _ = layout
    (base / "sub").mkdir()
    (base / "sub" / "up").symlink_to("../../outside", target_is_directory=True)
    with pytest.raises(SecurityError):
        safe_join(base, "sub/up/secret")


@symlinks
def test_dangling_symlink_pointing_out_is_refused(layout: tuple[Path, Path]) -> None:
    base, outside = layout
    (base / "dangling").symlink_to(outside / "does-not-exist-yet")
    with pytest.raises(SecurityError):
        safe_join(base, "dangling")


@symlinks
def test_symlink_to_base_itself_is_refused(layout: tuple[Path, Path]) -> None:
    base, _ = layout
    (base / "self").symlink_to(base, target_is_directory=True)
    with pytest.raises(SecurityError):
        safe_join(base, "self")
    assert safe_join(base, "self/x") == base.resolve() / "x"


@symlinks
def test_symlink_loop_is_refused(layout: tuple[Path, Path]) -> None:
    base, _ = layout
    (base / "a").symlink_to(base / "b")
    (base / "b").symlink_to(base / "a")
    with pytest.raises(SecurityError):
        safe_join(base, "a/x")
    assert not is_inside(base, base / "a" / "x")


@symlinks
def test_symlink_staying_inside_is_fine(layout: tuple[Path, Path]) -> None:
    base, _ = layout
    (base / "real").mkdir()
    (base / "alias").symlink_to(base / "real", target_is_directory=True)
    assert safe_join(base, "alias/f.txt") == base.resolve() / "real" / "f.txt"


@symlinks
def test_symlinked_base_is_fine(layout: tuple[Path, Path], tmp_path: Path) -> None:
    base, _ = layout
    alias = tmp_path / "alias-of-work"
    alias.symlink_to(base, target_is_directory=True)
    assert safe_join(alias, "f") == base.resolve() / "f"
    assert is_inside(alias, base / "f")


def test_is_inside_basics(tmp_path: Path) -> None:
    base = tmp_path / "work"
    base.mkdir()
    assert is_inside(base, base)
    assert is_inside(base, base / "a" / "b")
    assert not is_inside(base, tmp_path)
    assert not is_inside(base, tmp_path / "work2" / "x")  # a shared prefix is not inside
    assert not is_inside(base, base / ".." / "x")
    assert not is_inside(base, Path("/"))


def test_is_inside_never_raises_on_bad_paths(tmp_path: Path) -> None:
    assert not is_inside(tmp_path, Path("bad\x00path"))


# --------------------------------------------------------------------------- properties

_alphabet = st.sampled_from(
    [*'ab./\\:*?<>|" ~$', "..", "CON", "nul", "\x00", "\n", "\u202e", "\uff0e", "\u00e9"]
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_alphabet, max_size=12).map("".join) | st.text(max_size=40))
def test_accepted_names_never_leave_the_folder(name: str) -> None:
    try:
        clean = check_relative_path(name, what="name")
    except SecurityError:
        return
    parts = clean.split("/")
    assert ".." not in parts and "" not in parts and "." not in parts
    assert not clean.startswith(("/", "~"))
    assert "\\" not in clean and ":" not in clean and "\x00" not in clean
    base = "/base/work"
    assert posixpath.normpath(posixpath.join(base, clean)).startswith(base + "/")
    assert os.path.normpath(os.path.join(base, clean)) != os.path.normpath(base)


@settings(max_examples=200, deadline=None)
@given(st.lists(_alphabet, max_size=12).map("".join))
def test_globs_accept_what_names_accept(name: str) -> None:
    try:
        clean = check_relative_path(name, what="name")
    except SecurityError:
        return
    assert check_output_glob(name) == clean
