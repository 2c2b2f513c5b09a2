"""``drivemr auth login|status|logout``: sign this PC in to Google Drive.

A separate click group so the main CLI only has to register it
(``cli.add_command(auth_cli.auth)``).
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from drivemr import auth as auth_mod
from drivemr.errors import DrivemrError

SCOPE_HELP = (
    "drive.file (default): drivemr only sees files it created itself; enough when every "
    "worker signs in with the same Google account. drive: full access, needed when "
    "workers use different accounts sharing one folder."
)


@click.group("auth")
def auth() -> None:
    """Sign this PC in to Google Drive (once per PC and user)."""


@auth.command("login")
@click.option(
    "--client-secrets",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="OAuth client JSON (Google Cloud console: OAuth client ID, type Desktop app).",
)
@click.option(
    "--no-browser", is_flag=True, help="Print the sign-in URL instead of opening a browser."
)
@click.option(
    "--scope",
    type=click.Choice(sorted(auth_mod.SCOPES)),
    default="drive.file",
    show_default=True,
    help=SCOPE_HELP,
)
@click.option(
    "--service-account",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Use this service-account key file instead (shared drives only: service "
    "accounts have no storage of their own). The path is recorded, the key not copied.",
)
def login(
    client_secrets: Path | None, no_browser: bool, scope: str, service_account: Path | None
) -> None:
    """Sign in with your Google account and store the token (mode 0600)."""
    try:
        info = auth_mod.login(
            client_secrets,
            no_browser=no_browser,
            scopes=[auth_mod.SCOPES[scope]],
            service_account=service_account,
            echo=click.echo,
        )
    except DrivemrError as exc:
        raise click.ClickException(str(exc)) from exc
    who = info.get("account") or "(account unknown)"
    click.echo(f"Signed in as {who} ({info.get('method')}).")


@auth.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status(as_json: bool) -> None:
    """Show whether this PC is signed in, as whom and with which scopes.

    Exits with status 1 when not signed in."""
    info = auth_mod.status()
    if as_json:
        click.echo(json.dumps(info, indent=2, sort_keys=True))
    else:
        click.echo(f"signed in: {'yes' if info['signed_in'] else 'no'}")
        if info["method"]:
            click.echo(f"method:    {info['method']}")
        if info["account"]:
            click.echo(f"account:   {info['account']}")
        if info["scopes"]:
            click.echo(f"scopes:    {' '.join(info['scopes'])}")
        click.echo(f"token:     {info['token_path']}")
        if info["expiry"]:
            click.echo(f"expiry:    {info['expiry']} (refreshed automatically)")
        if info["problem"]:
            click.echo(f"problem:   {info['problem']}")
    if not info["signed_in"]:
        raise SystemExit(1)


@auth.command("logout")
def logout() -> None:
    """Forget the sign-in on this PC and revoke it at Google (best effort)."""
    try:
        removed = auth_mod.logout()
    except (DrivemrError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo("Signed out." if removed else "Not signed in; nothing to do.")
