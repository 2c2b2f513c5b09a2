"""Sealed files: only a trusted key's document, for the place it was found, opens."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from drivemr.safetext import safe, safe_multiline
from drivemr.sealed import Sealer, UntrustedFile, WarnOnce, open_sealed
from drivemr.signing import PublicKeyInfo, _info, _raw_public
from drivemr.taskenv import denied, task_base_env


def _trust(*keys: Ed25519PrivateKey) -> dict[str, PublicKeyInfo]:
    infos = [_info(f"k{i}", _raw_public(k)) for i, k in enumerate(keys)]
    return {i.key_id: i for i in infos}


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def test_round_trip(key: Ed25519PrivateKey) -> None:
    data = Sealer(key).seal("claim", {"job": "j1", "task": "t0001", "attempt": 2})
    opened = open_sealed(data, "claim", _trust(key), expect={"job": "j1", "attempt": 2})
    assert opened.body["task"] == "t0001"
    assert opened.signer.name == "k0"


def test_untrusted_key_is_refused_without_advice(key: Ed25519PrivateKey) -> None:
    other = Ed25519PrivateKey.generate()
    data = Sealer(other).seal("result", {"job": "j1"})
    with pytest.raises(UntrustedFile) as info:
        open_sealed(data, "result", _trust(key), what="results/t0001")
    assert "does not trust" in str(info.value)
    assert "keys trust" not in str(info.value)  # no instructions an attacker could write


def test_edit_after_sealing_is_refused(key: Ed25519PrivateKey) -> None:
    doc = json.loads(Sealer(key).seal("result", {"job": "j1", "exit": 0}))
    doc["body"]["exit"] = 1
    with pytest.raises(UntrustedFile, match="does not match"):
        open_sealed(json.dumps(doc).encode(), "result", _trust(key))


def test_kind_and_place_are_bound(key: Ed25519PrivateKey) -> None:
    data = Sealer(key).seal("marker", {"job": "j1", "marker": "cancel"})
    with pytest.raises(UntrustedFile, match="not as claim"):
        open_sealed(data, "claim", _trust(key))
    with pytest.raises(UntrustedFile, match="found under"):
        open_sealed(data, "marker", _trust(key), expect={"job": "j2"})


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not json",
        b"[]",
        b'{"sealed": 1}',
        b'{"sealed": 1, "kind": "claim", "body": []}',
        b'{"sealed": 1, "kind": "claim", "body": {}}',
        b'{"sealed": 1, "kind": "claim", "body": {}, "signature": {"alg": "x"}}',
        b"[" * 100_000,
        b'{"a": "' + b"x" * 2_000_000 + b'"}',
    ],
)
def test_junk_never_raises_anything_else(key: Ed25519PrivateKey, data: bytes) -> None:
    with pytest.raises(UntrustedFile):
        open_sealed(data, "claim", _trust(key))


def test_warn_once_is_bounded() -> None:
    lines: list[str] = []
    warn = WarnOnce(lines.append, capacity=10)
    assert warn("a", "first")
    assert not warn("a", "again")
    for i in range(100):
        warn(f"f{i}", f"forged {i}")
    assert len(warn) == 10
    assert lines[:2] == ["first", "forged 0"]


def test_safe_escapes_terminal_controls() -> None:
    assert safe("host\x1b]0;pwned\x07") == "host\\x1b]0;pwned\\x07"
    assert safe("a\u202eb") == "a\\u202eb"
    assert safe("x" * 500, max_len=10) == "xxxxxxx..."
    assert safe_multiline("line1\nline2\r\x1b[2J") == "line1\nline2\\x0d\\x1b[2J"


def test_task_env_denies_secrets() -> None:
    env = {
        "PATH": "/bin",
        "AWS_SECRET_ACCESS_KEY": "s",
        "GITHUB_TOKEN": "t",
        "MY_SERVICE_PASSWORD": "p",
        "DRIVEMR_STORE": "/x",
        "HOME": "/home/u",
        "aws_profile": "x",
        "OMP_NUM_THREADS": "1",
    }
    assert task_base_env(env) == {"PATH": "/bin", "HOME": "/home/u", "OMP_NUM_THREADS": "1"}
    assert task_base_env(env, passed=["GITHUB_TOKEN"])["GITHUB_TOKEN"] == "t"
    assert denied("SSH_AUTH_SOCK") and not denied("LANG")
