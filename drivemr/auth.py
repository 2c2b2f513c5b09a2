"""Signing in to Google Drive: OAuth installed-app flow, stored tokens, service accounts.

Why it is built this way:

* The installed-app flow (``InstalledAppFlow.run_local_server``) is the only desktop flow
  Google still offers (the copy-paste out-of-band flow is gone). ``--no-browser`` prints
  the URL instead of opening a browser, for a PC without one.
* The token (a refresh token: lasting access to the user's Drive) is stored as JSON in
  the user's config directory, ``token.json``, mode 0600 inside a 0700 directory, written
  atomically; a token file other users can read is refused rather than used.
* Access tokens are refreshed automatically and the refreshed token saved; a revoked or
  expired grant (``invalid_grant``) becomes :class:`AuthError` telling the user to sign in
  again.
* A service-account key (``DRIVEMR_SERVICE_ACCOUNT=path`` or ``auth login
  --service-account FILE``, which records the path) is supported for shared drives:
  service accounts have no storage of their own.
* Default scope ``drive.file`` (only files drivemr itself created); the full ``drive``
  scope is needed when workers are signed in with different Google accounts.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from drivemr.errors import AuthError, ConfigError, StoreError, TransientStoreError
from drivemr.fileio import atomic_write

__all__ = [
    "CONFIG_DIR_ENV",
    "SCOPES",
    "SCOPE_DRIVE",
    "SCOPE_DRIVE_FILE",
    "SERVICE_ACCOUNT_ENV",
    "config_dir",
    "load_credentials",
    "login",
    "logout",
    "refresh_error",
    "status",
    "token_path",
]

SCOPE_DRIVE_FILE = "https://www.googleapis.com/auth/drive.file"
SCOPE_DRIVE = "https://www.googleapis.com/auth/drive"
SCOPES = {"drive.file": SCOPE_DRIVE_FILE, "drive": SCOPE_DRIVE}
"""Short names accepted by ``drivemr auth login --scope``."""

CONFIG_DIR_ENV = "DRIVEMR_CONFIG_DIR"
SERVICE_ACCOUNT_ENV = "DRIVEMR_SERVICE_ACCOUNT"
CLIENT_SECRETS_ENV = "DRIVEMR_CLIENT_SECRETS"
TOKEN_FILE = "token.json"
META_FILE = "auth.json"
CLIENT_SECRETS_FILE = "client_secret.json"
TOKEN_URI = "https://oauth2.googleapis.com/token"
REVOKE_URI = "https://oauth2.googleapis.com/revoke"
ABOUT_URI = "https://www.googleapis.com/drive/v3/about"

SIGN_IN_AGAIN = "sign-in expired or revoked; run `drivemr auth login` again"
NOT_SIGNED_IN = (
    "not signed in to Google Drive: run `drivemr auth login` on this PC "
    "(or set DRIVEMR_SERVICE_ACCOUNT to a service-account key file)"
)
NO_CLIENT_SECRETS = (
    "no OAuth client: create one in the Google Cloud console (APIs & Services > "
    "Credentials > Create credentials > OAuth client ID > Desktop app, with the Google "
    "Drive API enabled), download its JSON, and pass it with "
    "`drivemr auth login --client-secrets FILE` (or save it as {path})"
)
NO_BROWSER_PROMPT = (
    "Open this URL in a browser (on any device) and allow access:\n\n    {url}\n\n"
    "After you allow it, the browser is sent to a http://localhost:... address. If that "
    "page does not load (because you used another device), copy the whole address from "
    "the browser's address bar and run, on this PC:\n\n    curl '<that address>'\n"
)

_POSIX = os.name == "posix"


# --------------------------------------------------------------------------- files


def config_dir(override: Path | None = None) -> Path:
    """drivemr's per-user config directory (``DRIVEMR_CONFIG_DIR`` or the platform's)."""
    if override is not None:
        return Path(override)
    env = os.environ.get(CONFIG_DIR_ENV)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_config_dir("drivemr", appauthor=False))


def token_path(directory: Path | None = None) -> Path:
    return config_dir(directory) / TOKEN_FILE


def _meta_path(directory: Path | None) -> Path:
    return config_dir(directory) / META_FILE


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, readable by the owner only.

    The directory is made 0700 and the temporary file 0600 *before* anything is written,
    so the secret is never readable by others, not even briefly."""
    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    if _POSIX:
        os.chmod(directory, 0o700)
    atomic_write(path, text, mode=0o600)


def _check_private(path: Path) -> None:
    """Refuse a secret file that other users could read or change (POSIX only)."""
    if not _POSIX:
        return
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise AuthError(
            f"{path} is accessible by other users (mode {mode:04o}); it holds your Google "
            f"sign-in, so drivemr will not use it. Fix it with `chmod 600 {path}` (and sign "
            "in again with `drivemr auth login` if others may have read it)."
        )


def _read_meta(directory: Path | None) -> dict[str, Any]:
    path = _meta_path(directory)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise AuthError(f"cannot read {path}: {exc}") from exc
    return data if isinstance(data, dict) else {}


def _write_meta(directory: Path | None, meta: dict[str, Any]) -> None:
    _write_private(_meta_path(directory), json.dumps(meta, indent=2, sort_keys=True))


def save_credentials(creds: Any, directory: Path | None = None) -> Path:
    """Store user credentials (``google.oauth2.credentials.Credentials``) as token.json."""
    path = token_path(directory)
    _write_private(path, creds.to_json())
    return path


# --------------------------------------------------------------------------- errors


def _is_invalid_grant(exc: BaseException) -> bool:
    args = getattr(exc, "args", ())
    for arg in args:
        if isinstance(arg, dict) and arg.get("error") == "invalid_grant":
            return True
        if isinstance(arg, str) and "invalid_grant" in arg:
            return True
    return False


def refresh_error(exc: BaseException) -> StoreError:
    """Translate a google-auth ``RefreshError`` into a drivemr error."""
    if _is_invalid_grant(exc):
        return AuthError(SIGN_IN_AGAIN)
    if getattr(exc, "retryable", False):
        return TransientStoreError(f"could not refresh the Google sign-in (will retry): {exc}")
    return AuthError(f"could not refresh the Google sign-in: {exc}; run `drivemr auth login` again")


def _refresh(creds: Any) -> None:
    from google.auth import exceptions as gexc
    from google.auth.transport.requests import Request

    try:
        creds.refresh(Request())
    except gexc.RefreshError as exc:
        raise refresh_error(exc) from exc
    except gexc.TransportError as exc:
        raise TransientStoreError(f"could not reach Google to refresh the sign-in: {exc}") from exc


# --------------------------------------------------------------------------- credentials


def _scopes_or_default(scopes: Sequence[str] | None, meta: dict[str, Any]) -> list[str]:
    if scopes:
        return [SCOPES.get(s, s) for s in scopes]
    stored = meta.get("scopes")
    if isinstance(stored, list) and stored:
        return [str(s) for s in stored]
    return [SCOPE_DRIVE_FILE]


def _service_account_credentials(key_file: Path, scopes: list[str]) -> Any:
    from google.oauth2 import service_account

    try:
        _check_private(key_file)  # a key file is a credential, checked like the token
        return service_account.Credentials.from_service_account_file(str(key_file), scopes=scopes)
    except FileNotFoundError as exc:
        raise AuthError(f"service-account key file {key_file} does not exist") from exc
    except (OSError, ValueError, KeyError) as exc:
        raise AuthError(f"cannot use service-account key file {key_file}: {exc}") from exc


def _service_account_path(directory: Path | None, meta: dict[str, Any]) -> Path | None:
    env = os.environ.get(SERVICE_ACCOUNT_ENV)
    if env:
        return Path(env).expanduser()
    recorded = meta.get("service_account")
    return Path(recorded) if recorded else None


def load_credentials(config_dir: Path | None = None, *, scopes: Sequence[str] | None = None) -> Any:
    """Credentials for the Drive store, refreshed if expired (and the refresh saved).

    Service account (``DRIVEMR_SERVICE_ACCOUNT`` or recorded by ``auth login
    --service-account``) first, else the stored user token. Raises :class:`AuthError`
    when not signed in, when the sign-in was revoked, or when the token file is exposed."""
    directory = config_dir
    meta = _read_meta(directory)
    sa_path = _service_account_path(directory, meta)
    if sa_path is not None:
        return _service_account_credentials(sa_path, _scopes_or_default(scopes, meta))
    path = token_path(directory)
    if not path.exists():
        raise AuthError(NOT_SIGNED_IN)
    _check_private(path)
    from google.oauth2.credentials import Credentials

    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        creds = Credentials.from_authorized_user_info(info)
    except (OSError, ValueError) as exc:
        raise AuthError(
            f"cannot read the stored sign-in {path}: {exc}; run `drivemr auth login`"
        ) from exc
    if not creds.valid:
        if not creds.refresh_token:
            raise AuthError(SIGN_IN_AGAIN)
        _refresh(creds)
        save_credentials(creds, directory)
    return creds


# --------------------------------------------------------------------------- commands


def _find_client_secrets(client_secrets: Path | None, directory: Path | None) -> Path:
    if client_secrets is not None:
        path = Path(client_secrets).expanduser()
        if not path.is_file():
            raise ConfigError(f"client secrets file {path} does not exist")
        return path
    env = os.environ.get(CLIENT_SECRETS_ENV)
    if env and Path(env).expanduser().is_file():
        return Path(env).expanduser()
    default = config_dir(directory) / CLIENT_SECRETS_FILE
    if default.is_file():
        return default
    raise ConfigError(NO_CLIENT_SECRETS.format(path=default))


def _account_email(creds: Any) -> str | None:
    """The signed-in account's address, best effort (for ``auth status``)."""
    try:
        from google.auth.transport.requests import AuthorizedSession

        resp = AuthorizedSession(creds).get(
            ABOUT_URI, params={"fields": "user(emailAddress)"}, timeout=15
        )
        if resp.status_code == 200:
            email = resp.json().get("user", {}).get("emailAddress")
            return str(email) if email else None
    except Exception:
        return None
    return None


def login(
    client_secrets: Path | None = None,
    *,
    no_browser: bool = False,
    scopes: Sequence[str] = (SCOPE_DRIVE_FILE,),
    service_account: Path | None = None,
    config_dir: Path | None = None,
    echo: Callable[[str], None] = print,
    flow_factory: Callable[[Path, list[str]], Any] | None = None,
) -> dict[str, Any]:
    """Sign in and store the result; returns :func:`status`.

    With ``service_account`` the key file is checked and its path recorded (the key is
    not copied). Otherwise runs the installed-app flow on a local port."""
    directory = config_dir
    wanted = [SCOPES.get(s, s) for s in scopes] or [SCOPE_DRIVE_FILE]
    meta = _read_meta(directory)
    if service_account is not None:
        key = Path(service_account).expanduser().resolve()
        creds = _service_account_credentials(key, wanted)
        meta.update(
            {
                "service_account": str(key),
                "scopes": wanted,
                "email": getattr(creds, "service_account_email", None),
            }
        )
        _write_meta(directory, meta)
        with contextlib.suppress(FileNotFoundError):
            token_path(directory).unlink()
        return status(directory)

    secrets = _find_client_secrets(client_secrets, directory)
    if flow_factory is None:
        from google_auth_oauthlib.flow import InstalledAppFlow

        def flow_factory(path: Path, scope_list: list[str]) -> Any:
            return InstalledAppFlow.from_client_secrets_file(str(path), scopes=scope_list)

    flow = flow_factory(secrets, wanted)
    if no_browser:
        prompt = NO_BROWSER_PROMPT
    else:
        prompt = (
            "Your browser has been opened to sign in. If it did not open, visit:\n\n    {url}\n"
        )
    try:
        creds = flow.run_local_server(
            host="localhost",
            port=0,
            open_browser=not no_browser,
            authorization_prompt_message=prompt,
            success_message="drivemr is signed in. You may close this window.",
            prompt="consent",
            access_type="offline",
        )
    except Exception as exc:
        raise AuthError(f"sign-in failed: {exc}") from exc
    if not getattr(creds, "refresh_token", None):
        raise AuthError(
            "Google returned no refresh token; remove drivemr's access at "
            "https://myaccount.google.com/permissions and run `drivemr auth login` again"
        )
    save_credentials(creds, directory)
    meta.pop("service_account", None)
    meta.update({"scopes": list(creds.scopes or wanted), "email": _account_email(creds)})
    _write_meta(directory, meta)
    echo(f"Signed in; token saved to {token_path(directory)}")
    return status(directory)


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)  # google-auth keeps naive UTC
    return value.isoformat()


def status(config_dir: Path | None = None) -> dict[str, Any]:
    """What this PC is signed in as, without touching the network.

    Keys: signed_in, method ("oauth", "service_account" or None), account, scopes,
    token_path, expiry (ISO 8601 or None), refreshable, problem (why not usable, or None).
    """
    directory = config_dir
    path = token_path(directory)
    result: dict[str, Any] = {
        "signed_in": False,
        "method": None,
        "account": None,
        "scopes": [],
        "token_path": str(path),
        "expiry": None,
        "refreshable": False,
        "problem": None,
    }
    try:
        meta = _read_meta(directory)
    except AuthError as exc:
        result["problem"] = str(exc)
        return result
    sa_path = _service_account_path(directory, meta)
    if sa_path is not None:
        result.update(method="service_account", token_path=str(sa_path))
        try:
            creds = _service_account_credentials(sa_path, _scopes_or_default(None, meta))
        except AuthError as exc:
            result["problem"] = str(exc)
            return result
        result.update(
            signed_in=True,
            account=getattr(creds, "service_account_email", None),
            scopes=list(getattr(creds, "scopes", None) or _scopes_or_default(None, meta)),
            refreshable=True,
        )
        return result
    if not path.exists():
        result["problem"] = NOT_SIGNED_IN
        return result
    result["method"] = "oauth"
    try:
        _check_private(path)
        info = json.loads(path.read_text(encoding="utf-8"))
    except (AuthError, OSError, ValueError) as exc:
        result["problem"] = str(exc)
        return result
    from google.oauth2.credentials import Credentials

    try:
        creds = Credentials.from_authorized_user_info(info)
    except ValueError as exc:
        result["problem"] = f"the stored sign-in is incomplete: {exc}"
        return result
    result.update(
        signed_in=bool(creds.refresh_token or creds.valid),
        account=meta.get("email") or info.get("account") or None,
        scopes=list(creds.scopes or meta.get("scopes") or []),
        expiry=_iso(creds.expiry),
        refreshable=bool(creds.refresh_token),
    )
    return result


def logout(config_dir: Path | None = None, *, revoke: bool = True) -> bool:
    """Forget the sign-in on this PC (and try to revoke it at Google; offline is fine).

    Returns whether anything was removed. A service-account key file is never deleted,
    only forgotten."""
    directory = config_dir
    removed = False
    path = token_path(directory)
    if path.exists():
        if revoke:
            _revoke(path)
        path.unlink()
        removed = True
    meta_path = _meta_path(directory)
    if meta_path.exists():
        meta_path.unlink()
        removed = True
    return removed


def _revoke(path: Path) -> None:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        token = info.get("refresh_token") or info.get("token")
        if not token:
            return
        import requests

        requests.post(
            REVOKE_URI,
            params={"token": token},
            headers={"content-type": "application/x-www-form-urlencoded"},
            timeout=10,
        )
    except Exception:
        return  # offline, or already revoked: forgetting locally is what matters
