"""The store contract against the folder store, plus folder-specific behaviour: the layout,
the marker, the file-system probe, synced folders refused, and hostile files in the folder."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from store_contract import StoreContract

from drivemr.cli import main
from drivemr.errors import AlreadyExists, ConfigError, NotFound, StoreError
from drivemr.stores import open_store, store_kind
from drivemr.stores.folder import INDEX_DIR, MARKER, RECORD_HEADER, STORE_ID, FolderStore
from drivemr.stores.folder import dirs as folder_dirs
from drivemr.stores.retrying import RetryingFolderStore
from drivemr.stores.synced import ALLOW_ENV, synced_folder_reason

posix_only = pytest.mark.skipif(os.name == "nt", reason="symlinks and FIFOs: POSIX")


class TestFolderStoreContract(StoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> FolderStore:
        return FolderStore(tmp_path / "store", create=True)

    @pytest.fixture
    def store_factory(self, store: FolderStore) -> Callable[[], FolderStore]:
        return lambda: FolderStore(store.path)

    @pytest.fixture
    def store_url(self, store: FolderStore) -> str:
        return store.url

    @pytest.fixture
    def store_env(self) -> dict[str, str]:
        return {}


class TestRetryingFolderStoreContract(StoreContract):
    """What ``open_store`` really returns for a folder: the folder store in its retry layer."""

    @pytest.fixture
    def store(self, tmp_path: Path) -> RetryingFolderStore:
        store = open_store(str(tmp_path / "store"), create=True)
        assert isinstance(store, RetryingFolderStore)
        return store

    @pytest.fixture
    def store_factory(self, store: RetryingFolderStore) -> Callable[[], RetryingFolderStore]:
        return lambda: RetryingFolderStore(store.path)

    @pytest.fixture
    def store_url(self, store: RetryingFolderStore) -> str:
        return store.url

    @pytest.fixture
    def store_env(self) -> dict[str, str]:
        return {}


def index_entry(store: FolderStore, fid: str) -> Path:
    return store.path / INDEX_DIR / fid[0] / fid


def test_url_forms(tmp_path: Path) -> None:
    assert store_kind(str(tmp_path)) == "folder"
    assert store_kind(tmp_path.as_uri()) == "folder"
    assert store_kind("drive://abc") == "drive"
    assert store_kind("s3://bucket/prefix") == "s3"
    with pytest.raises(ConfigError):
        store_kind("ftp://host/share")
    FolderStore(tmp_path, create=True)
    via_uri = open_store(tmp_path.as_uri())
    assert isinstance(via_uri, RetryingFolderStore) and via_uri.path == tmp_path
    assert isinstance(via_uri.inner, FolderStore)


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="does not exist"):
        open_store(str(tmp_path / "nope"))


def test_layout_is_readable(tmp_path: Path) -> None:
    store = FolderStore(tmp_path, create=True)
    folder, fid = store.mint_ids(2)
    store.create(store.root_id, "jobs", folder, folder=True)
    store.create(folder, "job.json", fid, b"{}")
    visible = tmp_path / f"jobs~{folder}" / f"job.json~{fid}"
    assert visible.read_bytes() == b"{}"
    # one name per file: nothing depends on link counts (sshfs reports 1 for every file)
    assert visible.stat().st_nlink == 1
    assert index_entry(store, fid).read_bytes() == RECORD_HEADER + (
        f"f jobs~{folder}/job.json~{fid}\n".encode()
    )
    # a second client resolves ids through the index, not through its memory
    assert FolderStore(tmp_path).get(fid).parent == folder
    assert FolderStore(tmp_path).read(fid) == b"{}"


def test_temporary_files_are_never_listed(tmp_path: Path) -> None:
    store = FolderStore(tmp_path, create=True)
    (tmp_path / ".tmp-123").write_bytes(b"half")
    (tmp_path / "stray-file").write_bytes(b"not ours")
    assert store.list(store.root_id) == []


def test_a_create_caught_halfway_reads_as_absent(tmp_path: Path) -> None:
    """The index entry is the commit point; the rename to the visible name publishes. In
    between (or after a crash there) readers by id must not see the file, whole or half."""
    store = FolderStore(tmp_path, create=True)
    half, torn = store.mint_ids(2)
    for fid, record in (
        (half, RECORD_HEADER + f"f x~{half}\n".encode()),  # crashed before the rename
        (torn, RECORD_HEADER + b"f x~"),  # caught while writing the record
    ):
        entry = index_entry(store, fid)
        entry.parent.mkdir(parents=True, exist_ok=True)
        entry.write_bytes(record)
        other = FolderStore(tmp_path)
        with pytest.raises(NotFound):
            other.read(fid)
        with pytest.raises(NotFound):
            other.get(fid)
        with pytest.raises(AlreadyExists):  # the id is taken all the same: exactly one winner
            store.create(store.root_id, "x", fid, b"{}")


def test_stores_of_the_first_layout_keep_working(tmp_path: Path) -> None:
    """Before layout 2 an index entry was a hard link to the data (folders: ``<id>.dir``
    holding the path) and there was no marker: such a store opens and reads as before."""
    root = tmp_path / "old"
    folder_id, file_id, half_id = "F" * 28, "f" * 28, "h" * 28
    (root / f"jobs~{folder_id}").mkdir(parents=True)
    (root / INDEX_DIR / "F").mkdir(parents=True)
    (root / INDEX_DIR / "f").mkdir(parents=True)
    (root / INDEX_DIR / "h").mkdir(parents=True)
    (root / INDEX_DIR / "F" / f"{folder_id}.dir").write_text(f"jobs~{folder_id}")
    data = root / INDEX_DIR / "f" / file_id
    data.write_bytes(b"old data")
    os.link(data, root / f"jobs~{folder_id}" / f"job.json~{file_id}")
    (root / INDEX_DIR / "h" / half_id).write_bytes(b"never linked")
    store = FolderStore(root)
    assert store.read(file_id) == b"old data"
    assert store.get(file_id).parent == folder_id
    assert [i.id for i in store.list(folder_id)] == [file_id]
    with pytest.raises(NotFound):
        store.read(half_id)
    with pytest.raises(AlreadyExists):
        store.create(store.root_id, "again", folder_id, folder=True)
    with pytest.raises(AlreadyExists):
        store.create(folder_id, "again", file_id, b"x")
    (new_id,) = store.mint_ids(1)
    store.create(folder_id, "new", new_id, b"new")
    assert FolderStore(root).read(new_id) == b"new"
    inited = FolderStore(root, create=True)  # `drivemr init` on it: still both layouts
    assert (root / MARKER).is_file()
    with pytest.raises(AlreadyExists):
        FolderStore(root).create(inited.root_id, "again", folder_id, folder=True)


# -- only `drivemr init` makes a folder a store (issue 18.5) --


def test_a_plain_folder_is_not_a_store(tmp_path: Path) -> None:
    (tmp_path / "my-files").mkdir()
    (tmp_path / "my-files" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="drivemr init"):
        open_store(str(tmp_path / "my-files"))
    code = CliRunner().invoke(main, ["status", "--store", str(tmp_path / "my-files")])
    assert code.exit_code == 1
    assert "not a drivemr store" in code.stderr and "drivemr init --store" in code.stderr
    assert sorted(p.name for p in (tmp_path / "my-files").iterdir()) == ["notes.txt"]


def test_init_marks_the_folder(tmp_path: Path) -> None:
    target = tmp_path / "shared" / "store"
    result = CliRunner().invoke(main, ["init", "--store", str(target)])
    assert result.exit_code == 0, result.stderr
    assert (target / MARKER).is_file()
    assert result.stdout.strip().splitlines()[-1] == target.as_uri()
    open_store(str(target))  # now a store
    again = CliRunner().invoke(main, ["init", "--store", str(target)])  # idempotent
    assert again.exit_code == 0


# -- the file system must offer what create-once needs (issue 19.2) --


def test_a_file_system_without_exclusive_create_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The probe at open makes the store's own create twice; a file system (or a share
    set-up) on which the second one succeeds cannot give one winner per claim."""
    monkeypatch.setattr(folder_dirs, "_O_CREATE_EXCL", os.O_WRONLY | os.O_CREAT)
    with pytest.raises(ConfigError, match=r"exclusive create \(O_EXCL\)"):
        FolderStore(tmp_path / "s", create=True)
    result = CliRunner().invoke(main, ["init", "--store", str(tmp_path / "t")])
    assert result.exit_code == 1
    assert "cannot hold a drivemr store" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_the_probe_leaves_nothing_behind(tmp_path: Path) -> None:
    FolderStore(tmp_path / "s", create=True)
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == sorted([MARKER, STORE_ID])


# -- synced folders are refused (issue 19.3) --


@pytest.mark.parametrize(
    "parts",
    [
        ("Dropbox", "work"),
        ("Dropbox (Acme)", "work"),
        ("OneDrive - Acme", "x"),
        ("OneDrive",),
        ("Google Drive", "My Drive", "mr"),
        ("Library", "CloudStorage", "GoogleDrive-me@example.com", "mr"),
        ("Library", "Mobile Documents", "com~apple~CloudDocs", "mr"),
        ("iCloudDrive", "mr"),
    ],
)
def test_sync_client_paths_are_recognised(tmp_path: Path, parts: tuple[str, ...]) -> None:
    assert synced_folder_reason(tmp_path.joinpath(*parts)) is not None


@pytest.mark.parametrize("marker", [".dropbox", ".dropbox.cache", ".stfolder"])
def test_sync_client_markers_in_ancestors_are_recognised(tmp_path: Path, marker: str) -> None:
    (tmp_path / "synced").mkdir()
    (tmp_path / "synced" / marker).mkdir()
    target = tmp_path / "synced" / "deep" / "store"
    assert synced_folder_reason(target) is not None
    assert synced_folder_reason(tmp_path / "elsewhere") is None


def test_synced_folders_are_refused_unless_overridden(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "Dropbox" / "store"
    result = CliRunner().invoke(main, ["init", "--store", str(target)])
    assert result.exit_code == 1
    assert "Dropbox" in result.stderr and "drive://" in result.stderr and ALLOW_ENV in result.stderr
    assert not target.exists()
    result = CliRunner().invoke(main, ["init", "--store", str(target), "--allow-synced-folder"])
    assert result.exit_code == 0, result.stderr
    # every other command (a worker included) refuses it too, unless the variable says so
    with pytest.raises(ConfigError, match="Dropbox"):
        open_store(str(target))
    monkeypatch.setenv(ALLOW_ENV, "1")
    open_store(str(target))


def test_a_worker_refuses_a_synced_folder(tmp_path: Path) -> None:
    target = tmp_path / "sync" / "store"
    FolderStore(target, create=True)
    (tmp_path / "sync" / ".stfolder").mkdir()
    result = CliRunner().invoke(
        main, ["worker", "--store", str(target), "--exit-when-idle", "--workdir", str(tmp_path)]
    )
    assert result.exit_code == 1
    assert "Syncthing" in result.stderr


# -- hostile files in the folder (issue 12.3) --


@posix_only
def test_a_symlinked_job_folder_is_never_followed(tmp_path: Path) -> None:
    store = FolderStore(tmp_path / "s", create=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    folder, sub, fid = store.mint_ids(3)
    store.create(store.root_id, "job", folder, folder=True)
    store.create(folder, "results", sub, folder=True)
    victim = store.path / f"job~{folder}" / f"results~{sub}"
    victim.rmdir()
    victim.symlink_to(outside)
    other = FolderStore(store.path)
    with pytest.raises(StoreError):
        other.create(sub, "r", fid, b"attacker-chosen text")
    with pytest.raises(StoreError):
        other.list(sub)
    assert list(outside.iterdir()) == []
    # the listing of the job folder skips the link
    assert [i.id for i in other.list(folder)] == []


@posix_only
def test_a_symlinked_index_shard_is_never_followed(tmp_path: Path) -> None:
    store = FolderStore(tmp_path / "s", create=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (fid,) = store.mint_ids(1)
    (store.path / INDEX_DIR).mkdir(exist_ok=True)
    (store.path / INDEX_DIR / fid[0]).symlink_to(outside)
    with pytest.raises(StoreError):
        store.create(store.root_id, "x", fid, b"x")
    assert list(outside.iterdir()) == []


@posix_only
def test_an_index_entry_pointing_outside_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    store = FolderStore(tmp_path / "s", create=True)
    (fid,) = store.mint_ids(1)
    entry = index_entry(store, fid)
    entry.parent.mkdir(parents=True, exist_ok=True)
    entry.write_bytes(RECORD_HEADER + f"f ../secret.txt~{fid}\n".encode())
    with pytest.raises(StoreError, match="invalid path"):
        store.read(fid)
    (store.path / f"x~{fid}").symlink_to(secret)
    entry.write_bytes(RECORD_HEADER + f"f x~{fid}\n".encode())
    with pytest.raises(StoreError):
        FolderStore(store.path).read(fid)
    assert [i.id for i in store.list(store.root_id)] == []


@posix_only
def test_a_fifo_never_blocks_a_reader(tmp_path: Path) -> None:
    store = FolderStore(tmp_path / "s", create=True)
    (fid,) = store.mint_ids(1)
    store.create(store.root_id, "worker-x.json", fid, b"{}")
    visible = store.path / f"worker-x.json~{fid}"
    visible.unlink()
    os.mkfifo(visible)
    outcome: list[BaseException | bytes] = []
    done = threading.Event()

    def read() -> None:
        try:
            outcome.append(FolderStore(store.path).read(fid))
        except BaseException as exc:
            outcome.append(exc)
        done.set()

    threading.Thread(target=read, daemon=True).start()
    if not done.wait(30):  # a blocked open() would never return: unblock it and fail
        with open(visible, "wb"):
            pass
        pytest.fail("reading a FIFO blocked")
    assert isinstance(outcome[0], StoreError) and "not a regular file" in str(outcome[0])
    assert store.list(store.root_id) == []


@posix_only
def test_a_symlink_loop_in_the_root_is_a_store_error(tmp_path: Path) -> None:
    store = FolderStore(tmp_path / "s", create=True)
    (folder,) = store.mint_ids(1)
    loop = store.path / f"job-x~{folder}"
    loop.symlink_to(loop)
    assert store.list(store.root_id) == []  # skipped, not an OSError
    with pytest.raises(StoreError):
        FolderStore(store.path).list(folder)
    store.poll_changes(store.changes_cursor())


@posix_only
def test_an_unreadable_folder_is_a_store_error(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads every folder")
    store = FolderStore(tmp_path / "s", create=True)
    (folder,) = store.mint_ids(1)
    store.create(store.root_id, "job", folder, folder=True)
    (store.path / f"job~{folder}").chmod(0)
    try:
        with pytest.raises(StoreError):
            store.list(folder)
    finally:
        (store.path / f"job~{folder}").chmod(0o755)
