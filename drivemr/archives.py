"""Packed inputs: one zip archive per task instead of one upload per input file.

On Google Drive every upload is a write and the account allows about three a second, so a
job over 1,790 files spent ten minutes in ``submit``. A packed job uploads one archive per
task, or per few consecutive tasks (at most MAX_ARCHIVES writes); job.json keeps each input's name, size and SHA-256 next to the
archive's own digest, so the signature covers every byte a command will see.

A worker stages each item's ``{input}`` from the archive exactly where an unpacked job would
have put it. The archive is untrusted input even with a matching digest (a signer's
mistake, a hostile submitter): every member must be a plain file under a safe relative
name, no link, no duplicate, at most the size job.json says; a member is copied with a
bounded read (no zip bomb) and checked against its digest before the command runs.
"""

from __future__ import annotations

import hashlib
import stat
import tempfile
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from drivemr.errors import DrivemrError, SecurityError
from drivemr.safepaths import safe_join
from drivemr.spec import TaskSpec
from drivemr.stores.base import Store

CHUNK = 1024 * 1024
MAX_MEMBERS = 100_000
MAX_ARCHIVES = 8
"""Input archives per job at most: on Drive each is a write at submit (3 a second)."""
_EPOCH = (1980, 1, 1, 0, 0, 0)
"""Fixed member timestamps: an archive's bytes depend on its inputs only."""


@dataclass(frozen=True)
class Member:
    """An input as job.json records it: where it is staged, its size and digest."""

    name: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Archive:
    """An uploaded pack archive and the members it holds."""

    name: str
    id: str
    sha256: str
    size: int
    members: tuple[Member, ...]


def write_archive(inputs: Sequence[tuple[str, Path]], target: Path) -> list[Member]:
    """Zip ``(name, path)`` inputs into ``target``, hashing each as it is read (once)."""
    members = []
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name, path in inputs:
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (stat.S_IFREG | 0o644) << 16
            digest, size = hashlib.sha256(), 0
            with open(path, "rb") as src, zf.open(info, "w", force_zip64=True) as dst:
                while chunk := src.read(CHUNK):
                    digest.update(chunk)
                    dst.write(chunk)
                    size += len(chunk)
            members.append(Member(name, digest.hexdigest(), size))
    return members


def archive_groups(packs: int) -> int:
    """Consecutive packs per archive: one each, or a few when there are more than
    MAX_ARCHIVES packs, so a submit costs at most MAX_ARCHIVES uploads of inputs."""
    return max(1, -(-packs // MAX_ARCHIVES))


def upload_archives(
    store: Store,
    parent: str,
    take_id: Callable[[], str],
    tasks: Sequence[TaskSpec],
    packs: Sequence[Sequence[int]],
    pack_ids: Sequence[str],
    *,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Archive]:
    """Zip and upload the packs' inputs: one write per archive, each holding the inputs of
    one pack or of a few consecutive ones (see archive_groups). By pack id."""
    from drivemr.fileio import sha256_file

    out: dict[str, Archive] = {}
    per = archive_groups(len(packs))
    with tempfile.TemporaryDirectory(prefix="drivemr-pack-") as tmp:
        for start in range(0, len(packs), per):
            group = list(
                zip(pack_ids[start : start + per], packs[start : start + per], strict=True)
            )
            inputs = [
                (t.input, t.input_path)
                for _pid, indexes in group
                for t in (tasks[i] for i in indexes)
                if t.input is not None and t.input_path is not None
            ]
            name = f"{group[0][0]}.zip"
            path = Path(tmp, name)
            members = write_archive(inputs, path)
            info = store.create(parent, name, take_id(), source=path)
            archive = Archive(name, info.id, sha256_file(path), path.stat().st_size, tuple(members))
            for pid, _indexes in group:
                out[pid] = archive
            path.unlink()
            if progress and (start // per + 1) % 4 == 0:
                progress(f"uploaded {start // per + 1} input archives")
    return out


def check_archive(zf: zipfile.ZipFile, members: Mapping[str, Member]) -> None:
    """Refuse an archive holding anything but the plain files job.json names, each at
    most its recorded size: no traversal, no link, no folder trick, no duplicate."""
    infos = zf.infolist()
    if len(infos) > MAX_MEMBERS:
        raise SecurityError(f"input archive has {len(infos)} members, over {MAX_MEMBERS}")
    seen: set[str] = set()
    for info in infos:
        name = info.filename
        if name not in members:
            raise SecurityError(f"input archive holds {name!r}, which job.json does not name")
        if name in seen:
            raise SecurityError(f"input archive holds {name!r} twice")
        seen.add(name)
        kind = stat.S_IFMT(info.external_attr >> 16)
        if info.is_dir() or kind not in (0, stat.S_IFREG):
            raise SecurityError(f"input archive member {name!r} is not a plain file (a link?)")
        if info.file_size > members[name].size:
            raise SecurityError(
                f"input archive member {name!r} is {info.file_size} bytes; "
                f"job.json says {members[name].size}"
            )


def extract_member(zf: zipfile.ZipFile, member: Member, dest: Path) -> Path:
    """Copy one checked member to ``dest/<name>`` with a bounded read; its digest must
    match job.json's, else nothing is left behind."""
    target = safe_join(dest, member.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    digest, size = hashlib.sha256(), 0
    try:
        with zf.open(member.name) as src, open(target, "xb") as out:
            while chunk := src.read(min(CHUNK, member.size - size + 1)):
                size += len(chunk)
                if size > member.size:
                    raise SecurityError(f"input {member.name!r} is larger than job.json says")
                digest.update(chunk)
                out.write(chunk)
        if size != member.size or digest.hexdigest() != member.sha256:
            raise SecurityError(f"input {member.name!r} does not match its digest in job.json")
    except KeyError:
        target.unlink(missing_ok=True)
        raise SecurityError(f"input archive lacks {member.name!r}") from None
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, RuntimeError) as exc:
        target.unlink(missing_ok=True)
        if isinstance(exc, FileExistsError):
            raise DrivemrError(f"input {member.name!r} is staged twice") from exc
        raise SecurityError(f"input archive: cannot read {member.name!r}: {exc}") from exc
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return target


class PackInputs:
    """A downloaded pack archive, opened and checked once for all of the pack's items."""

    def __init__(self, path: Path, members: Sequence[Member]) -> None:
        self.members = {m.name: m for m in members}
        try:
            self._zf = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise SecurityError(f"input archive does not open: {exc}") from exc
        try:
            check_archive(self._zf, self.members)
        except BaseException:
            self._zf.close()
            raise

    def stage(self, name: str, dest: Path) -> Path:
        return extract_member(self._zf, self.members[name], dest)

    def close(self) -> None:
        self._zf.close()
