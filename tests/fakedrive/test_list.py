"""files.list: the q language, pagination, orderBy, fields, and refusals."""

from __future__ import annotations

from typing import Any

import pytest
from googleapiclient.errors import HttpError

from drivemr.testing.fakedrive import FakeDriveServer
from drivemr.testing.fakedrive.helpers import FOLDER_MIME, drive_error


@pytest.fixture
def tree(drive: Any, folder: str) -> dict[str, str]:
    """A folder with a few files chosen to tell the query operators apart."""
    specs: list[dict[str, Any]] = [
        {"name": "alpha.txt", "mimeType": "text/plain", "appProperties": {"role": "claim"}},
        {"name": "alpha beta.txt", "mimeType": "text/plain"},
        {"name": "HelloWorld", "modifiedTime": "2020-01-01T00:00:00.000Z"},
        {"name": "it's.txt", "appProperties": {"role": "result"}},
        {"name": "sub", "mimeType": FOLDER_MIME},
        {"name": "old.txt", "trashed": True},
    ]
    ids = {}
    for spec in specs:
        body = {**spec, "parents": [folder]}
        ids[spec["name"]] = drive.files().create(body=body, fields="id").execute()["id"]
    return ids


def names(drive: Any, q: str, **kw: Any) -> set[str]:
    out: set[str] = set()
    token = None
    while True:
        page = drive.files().list(q=q, pageToken=token, fields="nextPageToken,files(name)", **kw)
        res = page.execute()
        out |= {f["name"] for f in res["files"]}
        token = res.get("nextPageToken")
        if not token:
            return out


ALL = {"alpha.txt", "alpha beta.txt", "HelloWorld", "it's.txt", "sub", "old.txt"}


@pytest.mark.parametrize(
    ("term", "expected"),
    [
        ("", ALL),
        ("name = 'alpha.txt'", {"alpha.txt"}),
        ("name != 'alpha.txt'", ALL - {"alpha.txt"}),
        ("name contains 'alp'", {"alpha.txt", "alpha beta.txt"}),
        ("name contains 'beta'", {"alpha beta.txt"}),  # a word of the name
        ("name contains 'Hello'", {"HelloWorld"}),
        ("name contains 'World'", set()),  # prefix matching, not substring
        ("name contains 'lpha'", set()),
        ("name = 'it\\'s.txt'", {"it's.txt"}),
        ("mimeType = 'text/plain'", {"alpha.txt", "alpha beta.txt"}),
        (f"mimeType = '{FOLDER_MIME}'", {"sub"}),
        ("trashed = true", {"old.txt"}),
        ("trashed = false", ALL - {"old.txt"}),
        ("appProperties has { key='role' and value='claim' }", {"alpha.txt"}),
        ("modifiedTime < '2021-01-01T00:00:00'", {"HelloWorld"}),
        ("modifiedTime > '2021-01-01T00:00:00Z'", ALL - {"HelloWorld"}),
        ("name = 'sub' or name = 'HelloWorld'", {"sub", "HelloWorld"}),
        ("not name contains 'alpha' and trashed = false", {"HelloWorld", "it's.txt", "sub"}),
        (
            "(name = 'sub' or appProperties has { key='role' and value='result' }) "
            "and not mimeType = 'application/vnd.google-apps.folder'",
            {"it's.txt"},
        ),
    ],
)
def test_query_terms(
    drive: Any, folder: str, tree: dict[str, str], term: str, expected: set[str]
) -> None:
    q = f"'{folder}' in parents" + (f" and ({term})" if term else "")
    assert names(drive, q) == expected


def test_trashed_files_are_listed_unless_excluded(
    drive: Any, folder: str, tree: dict[str, str]
) -> None:
    """As documented for files.list: all files by default, trashed ones included."""
    assert "old.txt" in names(drive, f"'{folder}' in parents")
    assert "old.txt" not in names(drive, f"'{folder}' in parents and trashed = false")


@pytest.mark.parametrize(
    "bad",
    [
        "name = 'unterminated",
        "name contains",
        "bogus = 'x'",
        "(name = 'a'",
        "name > 'a'",
        "trashed = 'yes'",
        "modifiedTime > 'yesterday'",
        "appProperties has { key='k' }",
        "name = 'a' and",
    ],
)
def test_malformed_query_is_400_and_the_server_keeps_serving(drive: Any, bad: str) -> None:
    with pytest.raises(HttpError) as ei:
        drive.files().list(q=bad).execute()
    assert ei.value.status_code == 400
    err = drive_error(ei.value)
    assert err["errors"][0]["location"] == "q"
    assert drive.files().list(q="trashed = false").execute()["kind"] == "drive#fileList"


def test_unknown_query_parameter_is_400(drive: Any) -> None:
    req = drive.files().list(q="trashed = false")
    req.uri += "&noSuchParameter=1"
    with pytest.raises(HttpError) as ei:
        req.execute()
    assert ei.value.status_code == 400
    drive_error(ei.value)


def test_pagination_page_sizes_and_tokens(drive: Any, server: FakeDriveServer, folder: str) -> None:
    batch = None
    for n in range(1005):
        if batch is None:
            batch = drive.new_batch_http_request()
        batch.add(drive.files().create(body={"name": f"f{n:04d}", "parents": [folder]}))
        if len(batch._order) == 100:
            batch.execute()
            batch = None
    assert batch is not None
    batch.execute()
    q = f"'{folder}' in parents"
    default = drive.files().list(q=q, fields="nextPageToken,files(id)").execute()
    assert len(default["files"]) == 100 and default["nextPageToken"]
    big = drive.files().list(q=q, pageSize=5000, fields="nextPageToken,files(id)").execute()
    assert len(big["files"]) == 1000 and big["nextPageToken"]
    rest = (
        drive.files()
        .list(q=q, pageSize=5000, pageToken=big["nextPageToken"], fields="nextPageToken,files(id)")
        .execute()
    )
    assert len(rest["files"]) == 5 and "nextPageToken" not in rest
    seen = [f["id"] for f in big["files"] + rest["files"]]
    assert len(set(seen)) == 1005
    one = drive.files().list(q=q, pageSize=1, fields="nextPageToken,files(id)").execute()
    assert len(one["files"]) == 1
    for bad in ({"pageSize": 0}, {"pageToken": "garbage!"}):
        with pytest.raises(HttpError) as ei:
            drive.files().list(q=q, **bad).execute()
        assert ei.value.status_code == 400


def test_order_by(drive: Any, folder: str) -> None:
    made = [
        ("b", "2021-03-01", "2021-04-03"),
        ("a", "2021-03-03", "2021-04-01"),
        ("C", "2021-03-02", "2021-04-02"),
    ]
    for name, created, modified in made:
        body = {
            "name": name,
            "parents": [folder],
            "createdTime": f"{created}T00:00:00.000Z",
            "modifiedTime": f"{modified}T00:00:00.000Z",
        }
        drive.files().create(body=body).execute()

    def order(by: str) -> list[str]:
        res = drive.files().list(q=f"'{folder}' in parents", orderBy=by, fields="files(name)")
        return [f["name"] for f in res.execute()["files"]]

    assert order("name") == ["a", "b", "C"]
    assert order("name desc") == ["C", "b", "a"]
    assert order("createdTime") == ["b", "C", "a"]
    assert order("modifiedTime desc") == ["b", "C", "a"]
    assert order("folder,name") == ["a", "b", "C"]
    with pytest.raises(HttpError) as ei:
        order("size")
    assert ei.value.status_code == 400


def test_fields_selection_on_lists(drive: Any, folder: str) -> None:
    for n in range(3):
        drive.files().create(body={"name": f"x{n}", "parents": [folder]}).execute()
    q = f"'{folder}' in parents"
    default = drive.files().list(q=q, pageSize=2).execute()
    assert set(default) == {"kind", "incompleteSearch", "nextPageToken", "files"}
    assert set(default["files"][0]) == {"kind", "id", "name", "mimeType"}
    only = drive.files().list(q=q, pageSize=2, fields="files(id,parents)").execute()
    assert set(only) == {"files"}  # no nextPageToken unless asked for, as on Drive
    assert set(only["files"][0]) == {"id", "parents"}
    spaced = "nextPageToken, files(id,name,parents,md5Checksum,size,modifiedTime)"
    res = drive.files().list(q=q, pageSize=2, fields=spaced).execute()
    assert res["nextPageToken"] and set(res["files"][0]) == {
        "id",
        "name",
        "parents",
        "md5Checksum",
        "size",
        "modifiedTime",
    }
    with pytest.raises(HttpError) as ei:
        drive.files().list(q=q, fields="files(nope)").execute()
    assert ei.value.status_code == 400


def test_long_query_goes_through_method_override(drive: Any, folder: str) -> None:
    """googleapiclient turns a GET with a URI over 2048 bytes into a POST with
    X-HTTP-Method-Override: GET; the fake answers it like the GET."""
    drive.files().create(body={"name": "needle", "parents": [folder]}).execute()
    terms = " or ".join(f"name = 'hay-{n:03d}-{'x' * 20}'" for n in range(80))
    q = f"'{folder}' in parents and ({terms} or name = 'needle')"
    assert len(q) > 2048
    assert names(drive, q) == {"needle"}


def test_short_and_empty_pages_still_carry_a_next_page_token(
    drive: Any, server: FakeDriveServer, folder: str
) -> None:
    for n in range(30):
        drive.files().create(body={"name": f"s{n}", "parents": [folder]}).execute()
    server.configure(short_page_rate=0.7, seed=3)
    seen: list[str] = []
    sizes = []
    token = None
    while True:
        res = (
            drive.files()
            .list(
                q=f"'{folder}' in parents",
                pageSize=8,
                pageToken=token,
                fields="nextPageToken,files(id)",
            )
            .execute()
        )
        sizes.append(len(res["files"]))
        seen += [f["id"] for f in res["files"]]
        token = res.get("nextPageToken")
        if not token:
            break
    assert len(seen) == len(set(seen)) == 30
    assert any(s < 8 for s in sizes[:-1])  # a short page that was not the last
