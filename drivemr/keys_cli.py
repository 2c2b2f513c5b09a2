"""``drivemr keys``: manage the signing key of this user and the keys this worker trusts.

Kept apart from the main CLI so it can be tested alone; the main CLI adds the group with
``cli.add_command(keys)``. The config directory is ``$DRIVEMR_CONFIG_DIR`` or the
platform's user config directory (see :func:`drivemr.signing.config_dir`).
"""

from __future__ import annotations

import click

from drivemr import signing
from drivemr.errors import SecurityError

__all__ = ["keys"]


def _fail(exc: SecurityError) -> click.ClickException:
    return click.ClickException(str(exc))


@click.group("keys")
def keys() -> None:
    """Keys: each PC's key signs its jobs and seals its worker's claims, heartbeats and
    markers; workers run only jobs, and believe only files, sealed by a key they trust.

    One PC needs nothing (it trusts itself). A cluster: on each PC run `keys show`, and
    on every other PC `keys trust <that line> --name NAME`, once. Running workers re-read
    the trusted list without a restart."""


@keys.command("generate")
@click.option("--force", is_flag=True, help="Replace an existing key (workers must re-trust).")
def generate_cmd(force: bool) -> None:
    """Create this user's signing key (and trust it on this machine as 'self')."""
    try:
        info = signing.generate_key(signing.config_dir(), overwrite=force)
    except SecurityError as exc:
        raise _fail(exc) from exc
    click.echo(f"signing key {info.key_id} written to {signing.signing_key_path()}")
    click.echo(
        "to let another PC's worker run your jobs and believe this PC's workers, run this on"
        " that PC:"
    )
    click.echo(f"  drivemr keys trust {info.line} --name NAME")


@keys.command("show")
def show_cmd() -> None:
    """Print this user's public key as one line (to paste into 'keys trust' elsewhere)."""
    try:
        click.echo(signing.show_public_key(signing.config_dir()))
    except SecurityError as exc:
        raise _fail(exc) from exc


@keys.command("trust")
@click.argument("pubkey")
@click.option("--name", default=None, help="Local name for the key (default: key-<id>).")
def trust_cmd(pubkey: str, name: str | None) -> None:
    """Trust PUBKEY (drivemr-ed25519:<base64>, from 'keys show' on another PC): run its
    jobs and believe its workers' claims, heartbeats and markers."""
    try:
        info = signing.trust_key(signing.config_dir(), pubkey, name)
    except SecurityError as exc:
        raise _fail(exc) from exc
    click.echo(f"trusted {info.name} ({info.key_id})")
    click.echo("running workers on this PC pick the change up within a few seconds")


@keys.command("list")
def list_cmd() -> None:
    """List the trusted keys: name, key id, public key."""
    try:
        infos = signing.list_trusted(signing.config_dir())
    except SecurityError as exc:
        raise _fail(exc) from exc
    if not infos:
        click.echo(f"no trusted keys in {signing.trusted_keys_path()}")
        return
    width = max(len(i.name) for i in infos)
    for info in infos:
        click.echo(f"{info.name:<{width}}  {info.key_id}  {info.line}")


@keys.command("revoke")
@click.argument("name")
def revoke_cmd(name: str) -> None:
    """Stop trusting the key called NAME: its jobs are refused from now on."""
    try:
        signing.revoke(signing.config_dir(), name)
    except SecurityError as exc:
        raise _fail(exc) from exc
    click.echo(f"revoked {name}")
