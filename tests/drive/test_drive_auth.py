"""Sign-in: token storage and modes, refresh and invalid_grant (Google's token endpoint
mocked with `responses`), service accounts, status/logout and the `auth` commands."""

from __future__ import annotations

import json
import os
import stat
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
from click.testing import CliRunner
from google.oauth2.credentials import Credentials

from drivemr import auth
from drivemr.auth_cli import auth as auth_group
from drivemr.errors import AuthError, ConfigError, TransientStoreError

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")


@pytest.fixture
def cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "cfg"
    monkeypatch.setenv("DRIVEMR_CONFIG_DIR", str(directory))
    monkeypatch.delenv("DRIVEMR_SERVICE_ACCOUNT", raising=False)
    monkeypatch.delenv("DRIVEMR_CLIENT_SECRETS", raising=False)
    return directory


def _token(expired: bool = True, **extra: Any) -> dict[str, Any]:
    when = datetime.now(timezone.utc).replace(tzinfo=None) + timedelta(hours=-1 if expired else 1)
    info = {
        "token": "old-access",
        "refresh_token": "refresh-1",
        "token_uri": auth.TOKEN_URI,
        "client_id": "cid.apps.googleusercontent.com",
        "client_secret": "csecret",
        "scopes": [auth.SCOPE_DRIVE_FILE],
        "expiry": when.isoformat() + "Z",
    }
    info.update(extra)
    return info


def _store_token(cfg: Path, info: dict[str, Any]) -> Path:
    creds = Credentials.from_authorized_user_info(info)
    return auth.save_credentials(creds)


# -- storage --


@posix_only
def test_token_file_is_private_and_atomic(cfg: Path) -> None:
    path = _store_token(cfg, _token(expired=False))
    assert path == cfg / "token.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(cfg.stat().st_mode) == 0o700
    assert [p.name for p in cfg.iterdir()] == ["token.json"]  # no temporary left behind
    assert json.loads(path.read_text())["refresh_token"] == "refresh-1"


@posix_only
def test_token_readable_by_others_is_refused(cfg: Path) -> None:
    path = _store_token(cfg, _token(expired=False))
    os.chmod(path, 0o644)
    with pytest.raises(AuthError, match="chmod 600"):
        auth.load_credentials()
    assert auth.status()["problem"] and "chmod 600" in auth.status()["problem"]


def test_not_signed_in(cfg: Path) -> None:
    with pytest.raises(AuthError, match="drivemr auth login"):
        auth.load_credentials()
    info = auth.status()
    assert info["signed_in"] is False and info["token_path"] == str(cfg / "token.json")


def test_valid_token_is_used_without_network(cfg: Path) -> None:
    _store_token(cfg, _token(expired=False))
    with responses.RequestsMock():  # any request would fail the test
        creds = auth.load_credentials()
    assert creds.token == "old-access" and creds.valid


# -- refresh --


@responses.activate
def test_expired_token_is_refreshed_and_saved(cfg: Path) -> None:
    responses.add(
        responses.POST,
        auth.TOKEN_URI,
        json={"access_token": "new-access", "expires_in": 3600, "token_type": "Bearer"},
    )
    path = _store_token(cfg, _token(expired=True))
    creds = auth.load_credentials()
    assert creds.token == "new-access" and creds.valid
    assert len(responses.calls) == 1
    body = responses.calls[0].request.body
    sent = body.decode() if isinstance(body, bytes) else str(body)
    assert "grant_type=refresh_token" in sent and "refresh_token=refresh-1" in sent
    saved = json.loads(path.read_text())
    assert saved["token"] == "new-access" and saved["refresh_token"] == "refresh-1"
    if os.name == "posix":
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


@responses.activate
def test_invalid_grant_means_sign_in_again(cfg: Path) -> None:
    responses.add(
        responses.POST,
        auth.TOKEN_URI,
        status=400,
        json={"error": "invalid_grant", "error_description": "Token has been expired or revoked."},
    )
    path = _store_token(cfg, _token(expired=True))
    with pytest.raises(AuthError) as info:
        auth.load_credentials()
    assert str(info.value) == "sign-in expired or revoked; run `drivemr auth login` again"
    assert json.loads(path.read_text())["token"] == "old-access"  # untouched


@responses.activate
def test_token_endpoint_unreachable_is_transient(cfg: Path) -> None:
    responses.add(
        responses.POST,
        auth.TOKEN_URI,
        body=requests.exceptions.ConnectionError("network is unreachable"),
    )
    _store_token(cfg, _token(expired=True))
    with pytest.raises(TransientStoreError, match="refresh"):
        auth.load_credentials()


def test_refresh_error_translation() -> None:
    from google.auth.exceptions import RefreshError

    err = RefreshError("invalid_grant: Bad Request", {"error": "invalid_grant"})
    assert isinstance(auth.refresh_error(err), AuthError)
    retry = RefreshError("internal_failure", {"error": "internal_failure"}, retryable=True)
    assert isinstance(auth.refresh_error(retry), TransientStoreError)


# -- login / status / logout --


class FakeFlow:
    def __init__(self, creds: Credentials) -> None:
        self.creds = creds
        self.kwargs: dict[str, Any] = {}

    def run_local_server(self, **kwargs: Any) -> Credentials:
        self.kwargs = kwargs
        return self.creds


@responses.activate
def test_login_no_browser_stores_token(cfg: Path, tmp_path: Path) -> None:
    responses.add(
        responses.GET,
        auth.ABOUT_URI,
        json={"user": {"emailAddress": "me@example.com"}},
    )
    secrets = tmp_path / "client.json"
    secrets.write_text("{}")
    creds = Credentials.from_authorized_user_info(_token(expired=False))
    flow = FakeFlow(creds)
    got: list[tuple[Path, list[str]]] = []

    def factory(path: Path, scopes: list[str]) -> FakeFlow:
        got.append((path, scopes))
        return flow

    info = auth.login(
        secrets, no_browser=True, scopes=["drive"], flow_factory=factory, echo=lambda _: None
    )
    assert got == [(secrets, [auth.SCOPE_DRIVE])]
    assert flow.kwargs["open_browser"] is False and flow.kwargs["port"] == 0
    assert "{url}" in flow.kwargs["authorization_prompt_message"]
    assert flow.kwargs["prompt"] == "consent"
    assert info["signed_in"] and info["method"] == "oauth" and info["account"] == "me@example.com"
    assert (cfg / "token.json").exists()


def test_login_without_client_secrets_explains_setup(cfg: Path) -> None:
    with pytest.raises(ConfigError, match="Desktop app"):
        auth.login(None, flow_factory=lambda *_: None)


def _service_account_key(path: Path) -> Path:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "p",
                "private_key_id": "k1",
                "private_key": pem,
                "client_email": "robot@p.iam.gserviceaccount.com",
                "client_id": "1",
                "token_uri": auth.TOKEN_URI,
            }
        )
    )
    path.chmod(0o600)
    return path


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_service_account_key_readable_by_others_is_refused(
    cfg: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = _service_account_key(tmp_path / "sa.json")
    key.chmod(0o644)
    monkeypatch.setenv("DRIVEMR_SERVICE_ACCOUNT", str(key))
    with pytest.raises(AuthError, match="chmod 600"):
        auth.load_credentials()
    with pytest.raises(AuthError, match="accessible by other users"):
        auth.login(service_account=key)
    key.chmod(0o600)
    assert auth.load_credentials().service_account_email.startswith("robot@")


def test_service_account_by_env_and_by_login(
    cfg: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = _service_account_key(tmp_path / "sa.json")
    monkeypatch.setenv("DRIVEMR_SERVICE_ACCOUNT", str(key))
    creds = auth.load_credentials()
    assert creds.service_account_email == "robot@p.iam.gserviceaccount.com"
    monkeypatch.delenv("DRIVEMR_SERVICE_ACCOUNT")
    with pytest.raises(AuthError):
        auth.load_credentials()
    info = auth.login(service_account=key)
    assert info["method"] == "service_account" and info["account"].startswith("robot@")
    assert auth.load_credentials().service_account_email.startswith("robot@")
    assert auth.logout() is True
    assert key.exists()  # forgotten, never deleted
    with pytest.raises(AuthError):
        auth.load_credentials()


@responses.activate
def test_logout_revokes_and_forgets(cfg: Path) -> None:
    responses.add(responses.POST, auth.REVOKE_URI, status=200)
    _store_token(cfg, _token(expired=False))
    assert auth.logout() is True
    assert not (cfg / "token.json").exists()
    url = responses.calls[0].request.url
    assert url is not None and "token=refresh-1" in url
    assert auth.logout() is False


@responses.activate
def test_logout_offline_still_forgets(cfg: Path) -> None:
    responses.add(
        responses.POST, auth.REVOKE_URI, body=requests.exceptions.ConnectionError("offline")
    )
    _store_token(cfg, _token(expired=False))
    assert auth.logout() is True and not (cfg / "token.json").exists()


def test_status_reports_expiry_and_scopes(cfg: Path) -> None:
    _store_token(cfg, _token(expired=False))
    info = auth.status()
    assert info["signed_in"] and info["refreshable"]
    assert info["scopes"] == [auth.SCOPE_DRIVE_FILE]
    assert info["expiry"] and info["expiry"].endswith("+00:00")


def test_cli_status_and_logout(cfg: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(auth_group, ["status"])
    assert result.exit_code == 1 and "signed in: no" in result.output
    _store_token(cfg, _token(expired=False))
    result = runner.invoke(auth_group, ["status", "--json"])
    assert result.exit_code == 0 and json.loads(result.output)["signed_in"] is True
    with responses.RequestsMock() as mock:
        mock.add(responses.POST, auth.REVOKE_URI, status=200)
        result = runner.invoke(auth_group, ["logout"])
    assert result.exit_code == 0 and "Signed out" in result.output
    result = runner.invoke(auth_group, ["login", "--scope", "everything"])
    assert result.exit_code == 2
    result = runner.invoke(auth_group, ["login"])
    assert result.exit_code == 1 and "Desktop app" in result.output
