"""The store contract against the folder store, plus folder-specific behaviour."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from store_contract import StoreContract

from drivemr.errors import AlreadyExists, ConfigError, NotFound
from drivemr.stores import open_store, store_kind
from drivemr.stores.folder import FolderStore


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


def test_url_forms(tmp_path: Path) -> None:
    assert store_kind(str(tmp_path)) == "folder"
    assert store_kind(tmp_path.as_uri()) == "folder"
    assert store_kind("drive://abc") == "drive"
    assert store_kind("s3://bucket/prefix") == "s3"
    with pytest.raises(ConfigError):
        store_kind("ftp://host/share")
    via_uri = open_store(tmp_path.as_uri())
    assert isinstance(via_uri, FolderStore) and via_uri.path == tmp_path


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="does not exist"):
        open_store(str(tmp_path / "nope"))


def test_layout_is_readable(tmp_path: Path) -> None:
    store = FolderStore(tmp_path, create=True)
    folder, fid = store.mint_ids(2)
    store.create(store.root_id, "jobs", folder, folder=True)
    store.create(folder, "job.json", fid, b"{}")
    assert (tmp_path / f"jobs~{folder}" / f"job.json~{fid}").read_bytes() == b"{}"
    # a second client resolves ids through the index, not through its memory
    assert FolderStore(tmp_path).get(fid).parent == folder


def test_temporary_files_are_never_listed(tmp_path: Path) -> None:
    store = FolderStore(tmp_path, create=True)
    (tmp_path / ".tmp-123").write_bytes(b"half")
    (tmp_path / "stray-file").write_bytes(b"not ours")
    assert store.list(store.root_id) == []


def test_a_create_caught_halfway_reads_as_absent(tmp_path: Path) -> None:
    """The index entry is the commit point; the visible name comes second. In between (or
    after a crash there) readers by id must not see the file, whole or half."""
    store = FolderStore(tmp_path, create=True)
    (fid,) = store.mint_ids(1)
    index = store._index_path(fid)
    index.parent.mkdir(parents=True, exist_ok=True)
    index.write_bytes(b'{"half": ')
    with pytest.raises(NotFound):
        store.read(fid)
    with pytest.raises(NotFound):
        store.get(fid)
    with pytest.raises(AlreadyExists):  # the id is taken all the same: exactly one winner
        store.create(store.root_id, "x", fid, b"{}")
