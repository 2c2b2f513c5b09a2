"""The store contract: one suite every store must pass (huey's StorageTests, for drivemr).

Subclass :class:`StoreContract` and provide two fixtures:

* ``store``: a fresh, empty store (its root folder exists);
* ``store_factory``: a callable returning another, independent client of the *same*
  store (a second PC, in effect). Clients of it may be used from other processes via
  ``store_url`` and ``store_env``.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from drivemr.errors import AlreadyExists, DrivemrError, NotFound, StoreError
from drivemr.stores import open_store
from drivemr.stores.base import Store


def _race_worker(args: tuple[str, dict[str, str], str, list[str], int, bool]) -> list[bool]:
    """Runs in a child process: try to create every id (under a name of our own, or the
    name every contender uses); report which ones we won."""
    url, env, parent, ids, who, own_name = args
    os.environ.update(env)
    store = open_store(url, write_rate=None)
    won = []
    for fid in ids:
        try:
            name = f"claim-by-{who}" if own_name else "claim"
            store.create(parent, name, fid, str(who).encode())
            won.append(True)
        except AlreadyExists:
            won.append(False)
    store.close()
    return won


class StoreContract:
    """Behaviour the protocol relies on. Names are labels; ids are the only keys."""

    race_count = 200
    update_rounds = 20
    coarse_change_times = False
    """The store's folder times have whole seconds only (see test_changes_report_new_files)."""

    # -- create once --

    def test_create_and_read_back(self, store: Store) -> None:
        (fid,) = store.mint_ids(1)
        info = store.create(store.root_id, "hello.txt", fid, b"hello")
        assert info.id == fid and info.name == "hello.txt" and info.parent == store.root_id
        assert info.size == 5
        assert store.read(fid) == b"hello"
        got = store.get(fid)
        assert got.id == fid and got.name == "hello.txt" and not got.is_folder
        assert got.md5 in (None, hashlib.md5(b"hello").hexdigest())

    def test_second_create_with_same_id_fails(self, store: Store) -> None:
        (fid,) = store.mint_ids(1)
        store.create(store.root_id, "a", fid, b"first")
        with pytest.raises(AlreadyExists):
            store.create(store.root_id, "a", fid, b"second")
        if store.create_once_any_name:
            with pytest.raises(AlreadyExists):
                store.create(store.root_id, "other-name", fid, b"third")
        assert store.read(fid) == b"first"

    def test_a_second_name_at_a_taken_id_is_one_file_to_every_reader(
        self, store: Store, store_factory: Callable[[], Store]
    ) -> None:
        """A store whose create-once holds per name (S3): a create of a taken id under
        another name (only a forger does that: drivemr fixes names by the id's role) may
        land, but every reader, by listing or by id, sees one and the same file."""
        if store.create_once_any_name:
            pytest.skip("this store refuses a taken id whatever the name")
        (fid,) = store.mint_ids(1)
        store.create(store.root_id, "real", fid, b"first")
        try:
            store.create(store.root_id, "planted", fid, b"second")
        except AlreadyExists:
            pass
        readers = [store_factory(), store_factory()]
        seen = []
        for reader in readers:
            listed = [i for i in reader.list(reader.root_id) if i.id == fid]
            assert len(listed) == 1
            seen.append((listed[0].name, reader.read(fid, parent=reader.root_id)))
        fresh = store_factory()
        got = fresh.get(fid, parent=fresh.root_id)
        seen.append((got.name, fresh.read(fid, parent=fresh.root_id)))
        assert len(set(seen)) == 1, seen

    def test_same_id_in_another_folder_fails(self, store: Store) -> None:
        if not store.create_once_any_name:
            pytest.skip("this store's create-once holds per parent and name")
        f1, f2, fid = store.mint_ids(3)
        store.create(store.root_id, "one", f1, folder=True)
        store.create(store.root_id, "two", f2, folder=True)
        store.create(f1, "x", fid, b"1")
        with pytest.raises(AlreadyExists):
            store.create(f2, "x", fid, b"2")

    def test_duplicate_names_are_allowed(self, store: Store) -> None:
        a, b = store.mint_ids(2)
        store.create(store.root_id, "same", a, b"a")
        store.create(store.root_id, "same", b, b"b")
        names = [(i.name, i.id) for i in store.list(store.root_id)]
        assert sorted(names) == sorted([("same", a), ("same", b)])

    def test_ids_are_unique(self, store: Store) -> None:
        ids = store.mint_ids(1000)
        assert len(set(ids)) == 1000

    def test_missing_parent(self, store: Store) -> None:
        ghost, fid = store.mint_ids(2)
        with pytest.raises((NotFound, StoreError)):
            store.create(ghost, "x", fid, b"")

    def test_create_from_source_file(self, store: Store, tmp_path: Path) -> None:
        src = tmp_path / "src.bin"
        payload = os.urandom(300_000)
        src.write_bytes(payload)
        (fid,) = store.mint_ids(1)
        store.create(store.root_id, "blob", fid, source=src)
        dest = tmp_path / "out.bin"
        store.download(fid, dest)
        assert dest.read_bytes() == payload

    def test_empty_file(self, store: Store) -> None:
        (fid,) = store.mint_ids(1)
        store.create(store.root_id, "empty", fid, b"")
        assert store.read(fid) == b""

    # -- folders and listing --

    def test_folders_and_listing(self, store: Store) -> None:
        folder, f1, f2, sub = store.mint_ids(4)
        info = store.create(store.root_id, "jobs", folder, folder=True)
        assert info.is_folder
        store.create(folder, "one", f1, b"1")
        store.create(folder, "two", f2, b"22")
        store.create(folder, "sub", sub, folder=True)
        listed = {i.id: i for i in store.list(folder)}
        assert set(listed) == {f1, f2, sub}
        assert listed[f2].size == 2 and listed[f2].name == "two"
        assert listed[sub].is_folder and listed[f1].parent == folder
        assert store.list(sub) == []

    def test_folder_create_once(self, store: Store) -> None:
        (folder,) = store.mint_ids(1)
        store.create(store.root_id, "f", folder, folder=True)
        with pytest.raises(AlreadyExists):
            store.create(store.root_id, "f", folder, folder=True)

    def test_failed_listing_raises(self, store: Store) -> None:
        (ghost,) = store.mint_ids(1)
        with pytest.raises(DrivemrError):
            store.list(ghost)

    def test_listing_is_immediately_consistent(
        self, store: Store, store_factory: Callable[[], Store]
    ) -> None:
        other = store_factory()
        (folder,) = store.mint_ids(1)
        store.create(store.root_id, "f", folder, folder=True)
        ids = store.mint_ids(25)
        for n, fid in enumerate(ids):
            store.create(folder, f"n{n}", fid, b"x")
            assert fid in {i.id for i in other.list(folder)}
            assert other.get(fid).name == f"n{n}"

    def test_the_same_store_lists_what_it_just_created_in_the_root(self, store: Store) -> None:
        """A submitter lists the root right after creating its job folder there (sshfs once
        answered from a descriptor kept open since the previous listing)."""
        store.list(store.root_id)
        for n, fid in enumerate(store.mint_ids(3)):
            store.create(store.root_id, f"job-{n}", fid, folder=True)
            assert fid in {i.id for i in store.list(store.root_id)}

    # -- get, read, update, delete --

    def test_get_missing(self, store: Store) -> None:
        (ghost,) = store.mint_ids(1)
        with pytest.raises(NotFound):
            store.get(ghost, parent=store.root_id)
        with pytest.raises(NotFound):
            store.read(ghost, parent=store.root_id)
        # Without its folder: NotFound only from a store that finds ids anywhere; the
        # others must not claim an absence they cannot know.
        absent = NotFound if store.create_once_any_name else StoreError
        with pytest.raises(absent):
            store.get(ghost)
        with pytest.raises(absent):
            store.read(ghost)

    def test_by_id_with_and_without_the_folder(
        self, store: Store, store_factory: Callable[[], Store]
    ) -> None:
        """Another client reads a file by id, told its folder or not (a folder it listed)."""
        folder, fid = store.mint_ids(2)
        store.create(store.root_id, "f", folder, folder=True)
        store.create(folder, "x", fid, b"xyz")
        other = store_factory()
        assert other.get(fid, parent=folder).name == "x"
        assert store_factory().read(fid, parent=folder) == b"xyz"
        third = store_factory()
        third.list(store.root_id)  # it knows the folder: found without the hint
        assert third.get(folder).is_folder
        assert third.read(fid) == b"xyz"
        if not store.create_once_any_name:  # (the others may ignore the hint)
            with pytest.raises(NotFound):
                store_factory().get(fid, parent=store.root_id)  # not in that folder

    def test_read_limit(self, store: Store) -> None:
        (fid,) = store.mint_ids(1)
        store.create(store.root_id, "big", fid, b"x" * 1000)
        assert store.read(fid, max_bytes=1000) == b"x" * 1000
        with pytest.raises(StoreError):
            store.read(fid, max_bytes=999)

    def test_update_replaces_content(self, store: Store) -> None:
        (fid,) = store.mint_ids(1)
        first = store.create(store.root_id, "hb", fid, b"one")
        second = store.update(fid, b"two-two")
        assert store.read(fid) == b"two-two"
        assert second.size == 7 and second.id == fid
        assert second.modified >= first.modified

    def test_update_missing(self, store: Store) -> None:
        (ghost,) = store.mint_ids(1)
        with pytest.raises(NotFound):
            store.update(ghost, b"x", parent=store.root_id)

    def test_delete(self, store: Store) -> None:
        folder, child = store.mint_ids(2)
        store.create(store.root_id, "f", folder, folder=True)
        store.create(folder, "c", child, b"c")
        store.delete(child)
        assert store.list(folder) == []
        with pytest.raises(NotFound):
            store.get(child)
        store.delete(folder)
        assert folder not in {i.id for i in store.list(store.root_id)}
        store.delete(folder)  # missing is not an error

    def test_readers_never_see_partial_content(
        self, store: Store, store_factory: Callable[[], Store]
    ) -> None:
        (fid,) = store.mint_ids(1)
        payloads = [bytes([n]) * 200_000 for n in range(1, 6)]
        store.create(store.root_id, "hb", fid, payloads[0])
        other = store_factory()
        seen: list[bytes] = []
        errors: list[BaseException] = []
        stop = threading.Event()

        def reader() -> None:
            # A published file stays readable by id while it is replaced: any error here
            # (NotFound "not published" included) breaks the atomic-publish promise.
            try:
                while not stop.is_set():
                    seen.append(other.read(fid))
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=reader)
        thread.start()
        try:
            for payload in payloads[1:]:
                for _ in range(self.update_rounds):
                    store.update(fid, payload)
        finally:
            stop.set()
            thread.join()
        assert errors == []
        assert seen and all(s in payloads for s in seen)

    # -- change feed --

    def test_changes_report_new_files(self, store: Store) -> None:
        folder, f1 = store.mint_ids(2)
        store.create(store.root_id, "watched", folder, folder=True)
        cursor = store.changes_cursor()
        quiet = store.poll_changes(cursor)
        # Shares with whole-second times (sshfs) report a just-made folder as changed until
        # its second is surely over: for them, quiet is awaited (short polls), else required.
        deadline = time.monotonic() + (10 if self.coarse_change_times else 0)
        while quiet.folders is not None and folder in quiet.folders:
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
            quiet = store.poll_changes(quiet.cursor)
        assert quiet.folders is not None and folder not in quiet.folders
        store.create(folder, "new", f1, b"1")
        seen = store.poll_changes(quiet.cursor)
        assert seen.folders is None or folder in seen.folders

    def test_changes_with_unknown_cursor_mean_anything(self, store: Store) -> None:
        store.changes_cursor()
        result = store.poll_changes(self.bogus_cursor)
        assert result.anything

    bogus_cursor = "not-a-cursor"

    # -- create-once across processes --

    def test_exclusive_create_race_across_processes(
        self, store: Store, store_url: str, store_env: dict[str, str]
    ) -> None:
        (folder,) = store.mint_ids(1)
        store.create(store.root_id, "races", folder, folder=True)
        ids: list[str] = []
        while len(ids) < self.race_count:
            ids += store.mint_ids(min(1000, self.race_count - len(ids)))
        contenders = 3
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(contenders) as pool:
            results = pool.map(
                _race_worker,
                [
                    (store_url, store_env, folder, ids, who, store.create_once_any_name)
                    for who in range(contenders)
                ],
            )
        winners_per_race = [sum(r[i] for r in results) for i in range(len(ids))]
        assert winners_per_race == [1] * len(ids)
        listed = store.list(folder)
        assert len(listed) == len(ids)
        assert {i.id for i in listed} == set(ids)
