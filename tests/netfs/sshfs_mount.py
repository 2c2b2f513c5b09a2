"""A real network file system for the folder store: one folder exported by a private sshd on
loopback and mounted twice with sshfs, as two PCs would mount one share (issue 19.4).

The sshd runs on a free port with its own host key and one authorized key, all in a
temporary folder; the mounts use ``-o dir_cache=no,entry_timeout=0,attr_timeout=0,
negative_timeout=0`` so that each mount sees the other's writes at once (see
docs/shares.md). Everything is skipped, with the reason, where sshd, sshfs or FUSE is
missing. The sshd and both mounts live for the session and are torn down at its end.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SSHFS_OPTIONS = "dir_cache=no,entry_timeout=0,attr_timeout=0,negative_timeout=0"


@dataclass(frozen=True)
class SshfsPair:
    export: Path
    """The exported folder, as the server sees it."""
    mounts: tuple[Path, Path]
    """The same folder through two independent sshfs mounts ("two PCs")."""


def _missing() -> str | None:
    if os.name == "nt":
        return "sshfs tests need Linux or macOS"
    for tool in ("sshd", "sshfs", "ssh-keygen"):
        if not (shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/usr/local/sbin")):
            return f"{tool} is not installed (Debian: apt-get install -y openssh-server sshfs)"
    if not (shutil.which("fusermount3") or shutil.which("fusermount") or shutil.which("umount")):
        return "no fusermount to unmount FUSE file systems"
    if not os.path.exists("/dev/fuse") or not os.access("/dev/fuse", os.R_OK | os.W_OK):
        return "FUSE is not available (/dev/fuse missing or not accessible)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(400):
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.025)
    raise RuntimeError("sshd did not start listening")


def _unmount(path: Path) -> None:
    for cmd in (["fusermount3", "-u", "-z"], ["fusermount", "-u", "-z"], ["umount", "-l"]):
        if (
            shutil.which(cmd[0])
            and subprocess.run([*cmd, str(path)], capture_output=True).returncode == 0
        ):
            return


@pytest.fixture(scope="session")
def sshfs_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshfsPair]:
    reason = _missing()
    if reason is not None:
        pytest.skip(reason)
    base = tmp_path_factory.mktemp("sshfs")
    sshd = shutil.which("sshd") or shutil.which("sshd", path="/usr/sbin:/usr/local/sbin")
    assert sshd is not None
    keys = base / "keys"
    keys.mkdir(mode=0o700)
    for name in ("host", "client"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / name)],
            check=True,
            capture_output=True,
        )
    (keys / "authorized_keys").write_text((keys / "client.pub").read_text())
    (keys / "authorized_keys").chmod(0o600)
    export = base / "export"
    export.mkdir()
    port = _free_port()
    config = base / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {keys / 'host'}\n"
        f"AuthorizedKeysFile {keys / 'authorized_keys'}\nPidFile {base / 'sshd.pid'}\n"
        "StrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "PubkeyAuthentication yes\nPermitRootLogin prohibit-password\n"
        "Subsystem sftp internal-sftp\nLogLevel ERROR\nMaxStartups 50\nMaxSessions 50\n"
    )
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation folder
    log = open(base / "sshd.log", "wb")  # noqa: SIM115 - closed at the end of the session
    server = subprocess.Popen([sshd, "-D", "-e", "-f", str(config)], stdout=log, stderr=log)
    mounts: list[Path] = []
    try:
        try:
            _wait_listening(port, server)
        except RuntimeError as exc:
            pytest.skip(f"could not start a private sshd: {exc}: {(base / 'sshd.log').read_text()}")
        for n in (1, 2):
            mount = base / f"pc{n}"
            mount.mkdir()
            proc = subprocess.run(
                [
                    "sshfs",
                    f"{getpass.getuser()}@127.0.0.1:{export}",
                    str(mount),
                    "-p",
                    str(port),
                    "-o",
                    f"IdentityFile={keys / 'client'},StrictHostKeyChecking=no,"
                    f"UserKnownHostsFile=/dev/null,LogLevel=ERROR,BatchMode=yes,{SSHFS_OPTIONS}",
                ],
                capture_output=True,
                text=True,
                timeout=60,
            )
            if proc.returncode != 0:
                pytest.skip(f"sshfs could not mount: {proc.stderr.strip()}")
            mounts.append(mount)
        yield SshfsPair(export, (mounts[0], mounts[1]))
    finally:
        for mount in mounts:
            _unmount(mount)
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
