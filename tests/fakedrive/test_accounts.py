"""Several accounts on one fake: the bearer token names the account, visibility, sharing,
and who may create with a minted id (``minted_ids``)."""

from __future__ import annotations

from typing import Any

import pytest
from googleapiclient.errors import HttpError
from googleapiclient.http import MediaInMemoryUpload

from drivemr.testing.fakedrive import FakeDriveServer
from drivemr.testing.fakedrive.helpers import FOLDER_MIME, drive_error, error_reason, mint


def _names(drive: Any, q: str) -> list[str]:
    got = drive.files().list(q=q, fields="files(name)").execute()["files"]
    return sorted(f["name"] for f in got)


def test_an_account_sees_only_what_it_owns_or_was_shared(alice: Any, bob: Any, drive: Any) -> None:
    box = alice.files().create(body={"name": "box", "mimeType": FOLDER_MIME}).execute()["id"]
    inner = alice.files().create(body={"name": "in", "parents": [box]}).execute()["id"]
    for other in (bob, drive):  # another token, and no Authorization header at all
        for fid in (box, inner):
            with pytest.raises(HttpError) as ei:
                other.files().get(fileId=fid).execute()
            assert ei.value.status_code == 404 and error_reason(ei.value) == "notFound"
        assert _names(other, "trashed = false") == []
    assert _names(alice, "'root' in parents") == ["box"]
    assert _names(bob, "'root' in parents") == []
    who = bob.about().get(fields="user(emailAddress,me)").execute()["user"]
    assert who == {"emailAddress": "bob@example.com", "me": True}


def test_sharing_a_folder_shows_its_content_and_lets_a_writer_add(alice: Any, bob: Any) -> None:
    box = alice.files().create(body={"name": "box", "mimeType": FOLDER_MIME}).execute()["id"]
    inner = alice.files().create(body={"name": "in", "parents": [box]}).execute()["id"]
    perm = (
        alice.permissions()
        .create(
            fileId=box,
            body={"type": "user", "role": "writer", "emailAddress": "bob@example.com"},
            fields="type,role,emailAddress",
        )
        .execute()
    )
    assert perm == {"type": "user", "role": "writer", "emailAddress": "bob@example.com"}
    assert _names(bob, f"'{box}' in parents") == ["in"]
    got = bob.files().get(fileId=inner, fields="ownedByMe,owners(emailAddress)").execute()
    assert got == {"ownedByMe": False, "owners": [{"emailAddress": "alice@example.com"}]}
    bob.files().create(body={"name": "from-bob", "parents": [box]}).execute()
    assert _names(alice, f"'{box}' in parents") == ["from-bob", "in"]
    with pytest.raises(HttpError) as ei:  # in My Drive only the owner deletes
        bob.files().delete(fileId=inner).execute()
    assert ei.value.status_code == 403 and error_reason(ei.value) == "insufficientFilePermissions"


def test_a_reader_may_look_but_not_write(alice: Any, bob: Any) -> None:
    box = alice.files().create(body={"name": "box", "mimeType": FOLDER_MIME}).execute()["id"]
    alice.permissions().create(
        fileId=box, body={"type": "user", "role": "reader", "emailAddress": "bob@example.com"}
    ).execute()
    assert bob.files().get(fileId=box, fields="name").execute() == {"name": "box"}
    with pytest.raises(HttpError) as ei:
        bob.files().create(body={"name": "x", "parents": [box]}).execute()
    assert ei.value.status_code == 403 and error_reason(ei.value) == "insufficientFilePermissions"
    with pytest.raises(HttpError) as ei:
        bob.files().update(fileId=box, body={"name": "renamed"}).execute()
    assert ei.value.status_code == 403


def test_minted_ids_belong_to_the_minting_account_by_default(
    alice: Any, bob: Any, server: FakeDriveServer
) -> None:
    first, second = mint(alice, 2)
    with pytest.raises(HttpError) as ei:
        bob.files().create(body={"id": first, "name": "claim"}).execute()
    err = drive_error(ei.value)
    assert err["code"] == 400 and err["errors"][0]["reason"] == "invalid"
    assert "another account" in ei.value.resp["x-fake-drive-detail"]
    media = MediaInMemoryUpload(b"r", mimetype="text/plain", resumable=True)
    with pytest.raises(HttpError) as ei:  # a resumable upload is refused when it starts
        bob.files().create(body={"id": first, "name": "result"}, media_body=media).execute()
    assert ei.value.status_code == 400
    alice.files().create(body={"id": first, "name": "claim"}).execute()
    server.configure(minted_ids="anyone")
    made = bob.files().create(body={"id": second, "name": "claim"}, fields="id,ownedByMe")
    assert made.execute() == {"id": second, "ownedByMe": True}
    with pytest.raises(HttpError) as ei:  # used once: a second create is still a 409
        alice.files().create(body={"id": second, "name": "again"}).execute()
    assert ei.value.status_code == 409


def test_minted_id_policy_over_the_control_endpoint(server: FakeDriveServer) -> None:
    from drivemr.testing.fakedrive.helpers import control

    status, cfg = control(server.url, "/_fake/config", {"minted_ids": "anyone"})
    assert status == 200 and cfg["minted_ids"] == "anyone"
    status, body = control(server.url, "/_fake/config", {"minted_ids": "nobody"})
    assert status == 400 and "minted_ids" in body["error"]["message"]


def test_a_batch_acts_as_its_account(alice: Any, bob: Any) -> None:
    mine = alice.files().create(body={"name": "mine"}).execute()["id"]
    answers: dict[str, Any] = {}

    def collect(request_id: str, response: Any, exception: Any) -> None:
        answers[request_id] = exception.status_code if exception else response["id"]

    for who, client in (("alice", alice), ("bob", bob)):
        batch = client.new_batch_http_request(callback=collect)
        batch.add(client.files().get(fileId=mine), request_id=who)
        batch.execute()
    assert answers == {"alice": mine, "bob": 404}


def test_owners_query_names_the_owner(alice: Any, bob: Any) -> None:
    box = alice.files().create(body={"name": "box", "mimeType": FOLDER_MIME}).execute()["id"]
    alice.permissions().create(
        fileId=box, body={"type": "user", "role": "writer", "emailAddress": "bob@example.com"}
    ).execute()
    bob.files().create(body={"name": "bobs", "parents": [box]}).execute()
    assert _names(bob, "'me' in owners") == ["bobs"]
    assert _names(bob, "'alice@example.com' in owners") == ["box"]
    assert _names(alice, "'me' in owners") == ["box"]


def test_every_token_refreshed_from_a_grant_acts_as_its_account(
    server: FakeDriveServer, alice: Any
) -> None:
    """Real Drive maps every access token issued for one sign-in to the same user: a token
    the fake's endpoint refreshed still acts as the grant's account, a revoked grant's
    refresh answers invalid_grant, and any other bearer string still names an account."""
    from google.auth.exceptions import RefreshError
    from google.auth.transport.requests import Request as AuthRequest
    from google.oauth2.credentials import Credentials

    from drivemr.testing.fakedrive import build_client

    box = alice.files().create(body={"name": "box"}).execute()["id"]
    grant = server.issue_grant("alice")
    creds = Credentials(
        token=grant.access_token,
        refresh_token=grant.refresh_token,
        token_uri=server.token_url,
        client_id="cid",
        client_secret="secret",
    )
    tokens = [grant.access_token]
    for _ in range(2):
        creds.refresh(AuthRequest())
        tokens.append(str(creds.token))
    assert len(set(tokens)) == 3  # each refresh is a new access token...
    for token in tokens:  # ...acting as alice, who sees her file
        as_alice = build_client(server.url, token=token)
        assert as_alice.files().get(fileId=box, fields="name").execute() == {"name": "box"}
        me = as_alice.about().get(fields="user(emailAddress)").execute()["user"]
        assert me == {"emailAddress": "alice@example.com"}
    with pytest.raises(HttpError) as ei:  # a token the endpoint never issued: its own account
        build_client(server.url, token="ya29.someone-else").files().get(fileId=box).execute()
    assert ei.value.status_code == 404
    server.revoke_grant(grant.refresh_token)
    with pytest.raises(RefreshError, match="invalid_grant"):
        creds.refresh(AuthRequest())
