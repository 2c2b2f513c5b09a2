"""The shared file helpers (atomic_write, sha256_file) and the one duration formatter."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivemr.durations import format_duration
from drivemr.fileio import atomic_write, sha256_file
from drivemr.spec import MAX_DURATION, parse_duration

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")


def test_atomic_write_writes_bytes_and_text_and_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    atomic_write(target, b"\x00\xffbytes")
    assert target.read_bytes() == b"\x00\xffbytes"
    atomic_write(target, "text é")
    assert target.read_bytes() == "text é".encode()
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


@posix_only
def test_atomic_write_sets_the_mode_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        atomic_write(tmp_path / "shared", b"x", mode=0o644)
    finally:
        os.umask(old)
    atomic_write(tmp_path / "private", b"x")
    assert (tmp_path / "shared").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "private").stat().st_mode & 0o777 == 0o600


def test_atomic_write_without_overwrite_keeps_the_first_content(tmp_path: Path) -> None:
    target = tmp_path / "key.pem"
    atomic_write(target, b"first", overwrite=False)
    with pytest.raises(FileExistsError):
        atomic_write(target, b"second", overwrite=False)
    assert target.read_bytes() == b"first"
    assert [p.name for p in tmp_path.iterdir()] == ["key.pem"]


def test_a_failed_atomic_write_keeps_the_old_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "token.json"
    atomic_write(target, b"old")

    def full_disk(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space"):
        atomic_write(target, b"new")
    monkeypatch.undo()
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["token.json"]


def test_readers_see_the_old_content_or_the_new_never_a_mix(tmp_path: Path) -> None:
    target = tmp_path / "big"
    versions = [bytes([n]) * 300_000 for n in range(2)]
    atomic_write(target, versions[0])
    done = threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for n in range(60):
                atomic_write(target, versions[n % 2])
        except BaseException as exc:
            errors.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    reads = 0
    while not done.is_set() or reads == 0:
        assert target.read_bytes() in versions
        reads += 1
    thread.join()
    assert errors == []


def test_sha256_file_streams_past_one_chunk(tmp_path: Path) -> None:
    data = os.urandom((1 << 20) * 2 + 5)
    (tmp_path / "big").write_bytes(data)
    (tmp_path / "empty").write_bytes(b"")
    assert sha256_file(tmp_path / "big") == hashlib.sha256(data).hexdigest()
    assert sha256_file(str(tmp_path / "empty")) == hashlib.sha256(b"").hexdigest()


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (None, "-"),
        (float("nan"), "-"),
        (0.0, "0.00s"),
        (0.25, "0.25s"),
        (12.34, "12.3s"),
        (59.9, "59.9s"),
        (60, "1m00s"),
        (245.7, "4m05s"),
        (3599, "59m59s"),
        (3600, "1h00m"),
        (7380, "2h03m"),
        (86400 * 3 + 3600 * 4 + 59, "3d04h"),
        (-1.0, "0.00s"),
    ],
)
def test_format_duration(seconds: float | None, shown: str) -> None:
    assert format_duration(seconds) == shown


@given(st.floats(min_value=0.01, max_value=MAX_DURATION - 1))
def test_a_formatted_duration_is_a_job_file_duration(seconds: float) -> None:
    back = parse_duration(format_duration(seconds))
    precision = 0.005 if seconds < 10 else 0.05 if seconds < 60 else 1 if seconds < 3600 else 60
    if seconds >= 86400:
        precision = 3600
    assert seconds - precision - 1e-9 <= back <= seconds + precision + 1e-9


def test_replacing_publishes_only_a_whole_download(tmp_path: Path) -> None:
    from drivemr.fileio import replacing

    dest = tmp_path / "out.bin"
    dest.write_bytes(b"old")
    with pytest.raises(RuntimeError), replacing(dest) as fh:
        fh.write(b"half")
        raise RuntimeError("connection lost")
    assert dest.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]  # no partial file left
    with replacing(dest) as fh:
        fh.write(b"new content")
    assert dest.read_bytes() == b"new content"
