"""Keys, trusted keys, job signatures, file digests, private files and ``drivemr keys``."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from drivemr import signing
from drivemr.errors import SecurityError
from drivemr.fileio import sha256_file
from drivemr.keys_cli import keys
from drivemr.limits import MAX_JOB_BYTES, load_json_limited
from drivemr.signing import (
    PUBKEY_PREFIX,
    PublicKeyInfo,
    canonical_bytes,
    check_private_file,
    generate_key,
    list_trusted,
    load_or_create_signing_key,
    load_signing_key,
    load_trusted,
    revoke,
    show_public_key,
    sign_document,
    trust_key,
    verify_document,
    verify_file_digest,
    write_private_file,
)

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    return tmp_path / "cfg"


def make_job(job_id: str = "job-1", digest: str | None = None) -> dict[str, Any]:
    return {
        "id": job_id,
        "created": "2024-05-01T12:00:00Z",
        "tasks": [
            {"id": "t0", "argv": ["python", "map.py", "0"], "timeout": 60.5},
            {"id": "t1", "argv": ["python", "map.py", "1"], "timeout": 60.5},
        ],
        "reduce": {"argv": ["python", "reduce.py"]},
        "files": {"map.py": digest or "0" * 64},
        "env": {"LANG": "C.UTF-8", "NOTE": "é ✓"},
    }


def other_key_info(name: str = "mallory") -> tuple[Ed25519PrivateKey, PublicKeyInfo]:
    key = Ed25519PrivateKey.generate()
    signed = sign_document({"id": "x"}, key)["signature"]
    return key, PublicKeyInfo(name, signed["key_id"], signed["public_key"])


# --------------------------------------------------------------------------- keys


@posix_only
def test_generate_key_modes_and_self_trust(cfg: Path) -> None:
    info = generate_key(cfg)
    key_file = cfg / "keys" / "signing_key.pem"
    assert mode(key_file) == 0o600
    assert mode(key_file.parent) == 0o700
    assert mode(cfg / "trusted_keys.json") == 0o600
    assert info.name == "self" and len(info.key_id) == 16
    raw = base64.b64decode(info.public_b64)
    assert info.key_id == hashlib.sha256(raw).hexdigest()[:16]
    assert load_trusted(cfg) == {info.key_id: info}
    assert not [p for p in key_file.parent.iterdir() if p.name.endswith(".tmp")]


def test_generate_refuses_to_overwrite_unless_asked(cfg: Path) -> None:
    first = generate_key(cfg)
    with pytest.raises(SecurityError, match="already exists"):
        generate_key(cfg)
    assert load_signing_key(cfg)[1].key_id == first.key_id
    second = generate_key(cfg, overwrite=True)
    assert second.key_id != first.key_id
    assert [i.key_id for i in list_trusted(cfg)] == [second.key_id]


def test_load_or_create_creates_once(cfg: Path) -> None:
    _, info1 = load_or_create_signing_key(cfg)
    key2, info2 = load_or_create_signing_key(cfg)
    assert info1 == info2
    assert load_trusted(cfg)[info1.key_id].name == "self"
    doc = sign_document(make_job(), key2)
    assert verify_document(doc, load_trusted(cfg), expected_job_id="job-1").name == "self"


def test_load_or_create_race_yields_one_key(cfg: Path) -> None:
    barrier = threading.Barrier(6)
    ids: list[str] = []

    def run() -> None:
        barrier.wait()
        ids.append(load_or_create_signing_key(cfg)[1].key_id)

    threads = [threading.Thread(target=run) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids)) == 1
    assert load_signing_key(cfg)[1].key_id == ids[0]


def test_config_dir_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DRIVEMR_CONFIG_DIR", str(tmp_path / "elsewhere"))
    assert signing.config_dir() == tmp_path / "elsewhere"
    info = generate_key()
    assert (tmp_path / "elsewhere" / "keys" / "signing_key.pem").exists()
    assert show_public_key() == PUBKEY_PREFIX + info.public_b64
    monkeypatch.delenv("DRIVEMR_CONFIG_DIR")
    assert signing.config_dir().name == "drivemr"


def test_show_public_key_is_one_line(cfg: Path) -> None:
    info = generate_key(cfg)
    line = show_public_key(cfg)
    assert line == info.line and "\n" not in line and line.startswith("drivemr-ed25519:")


def test_show_without_key_explains(cfg: Path) -> None:
    with pytest.raises(SecurityError, match="keys generate"):
        show_public_key(cfg)


@posix_only
def test_loose_signing_key_refused(cfg: Path) -> None:
    generate_key(cfg)
    key_file = cfg / "keys" / "signing_key.pem"
    key_file.chmod(0o644)
    with pytest.raises(SecurityError, match="chmod 600"):
        load_signing_key(cfg)


def test_trust_list_revoke(cfg: Path) -> None:
    _, alice = other_key_info()
    _, bob = other_key_info()
    a = trust_key(cfg, alice.line, "alice")
    b = trust_key(cfg, "  " + bob.public_b64 + "\n")  # bare base64, default name
    assert a.name == "alice" and a.key_id == alice.key_id
    assert b.name == f"key-{bob.key_id}"
    assert trust_key(cfg, alice.line, "alice") == a  # idempotent
    assert [i.name for i in list_trusted(cfg)] == sorted(["alice", b.name])
    assert set(load_trusted(cfg)) == {alice.key_id, bob.key_id}
    revoke(cfg, "alice")
    assert set(load_trusted(cfg)) == {bob.key_id}
    with pytest.raises(SecurityError, match="no trusted key named 'alice'"):
        revoke(cfg, "alice")


def test_trust_refuses_silent_replacement(cfg: Path) -> None:
    _, alice = other_key_info()
    _, bob = other_key_info()
    trust_key(cfg, alice.line, "alice")
    with pytest.raises(SecurityError, match="already trusted as 'alice'"):
        trust_key(cfg, alice.line, "alice2")
    with pytest.raises(SecurityError, match="different key is already trusted"):
        trust_key(cfg, bob.line, "alice")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "drivemr-ed25519:",
        "drivemr-ed25519:not base64!",
        "drivemr-ed25519:" + base64.b64encode(b"short").decode(),
        "drivemr-ed25519:" + base64.b64encode(b"x" * 33).decode(),
        "ssh-ed25519:" + base64.b64encode(b"x" * 32).decode(),
        "drivemr-rsa:AAAA",
        "drivemr-ed25519:é",
    ],
)
def test_trust_refuses_garbage(cfg: Path, text: str) -> None:
    with pytest.raises(SecurityError):
        trust_key(cfg, text, "x")
    assert list_trusted(cfg) == []


@pytest.mark.parametrize("name", ["", "-x", "a b", "a/b", "x" * 65, "ü", "../x"])
def test_trust_refuses_bad_names(cfg: Path, name: str) -> None:
    _, alice = other_key_info()
    with pytest.raises(SecurityError, match="invalid key name"):
        trust_key(cfg, alice.line, name)


@posix_only
def test_group_writable_trusted_list_refused(cfg: Path) -> None:
    _, alice = other_key_info()
    trust_key(cfg, alice.line, "alice")
    (cfg / "trusted_keys.json").chmod(0o666)
    with pytest.raises(SecurityError, match="writable by group or others"):
        load_trusted(cfg)


@pytest.mark.parametrize(
    "content",
    [
        b"not json",
        b"[]",
        b'{"version": 2, "keys": {}}',
        b'{"version": 1, "keys": []}',
        b'{"version": 1, "keys": {"a": "AAAA"}}',
        b'{"version": 1, "keys": {"bad name": "' + base64.b64encode(b"k" * 32) + b'"}}',
        b'{"version": 1, "keys": {"a": 1}}',
    ],
)
def test_damaged_trusted_list_fails_closed(cfg: Path, content: bytes) -> None:
    write_private_file(cfg / "trusted_keys.json", content)
    with pytest.raises(SecurityError):
        load_trusted(cfg)


# --------------------------------------------------------------------------- documents


@pytest.fixture
def signer(cfg: Path) -> tuple[Ed25519PrivateKey, dict[str, PublicKeyInfo]]:
    key, _ = load_or_create_signing_key(cfg)
    return key, load_trusted(cfg)


def test_round_trip(signer: tuple[Ed25519PrivateKey, dict[str, PublicKeyInfo]]) -> None:
    key, trusted = signer
    job = make_job()
    doc = sign_document(job, key)
    assert "signature" not in job  # the input is not modified
    assert set(doc["signature"]) == {"alg", "key_id", "public_key", "sig"}
    assert verify_document(doc, trusted, expected_job_id="job-1").name == "self"
    assert verify_document(doc, trusted).name == "self"


def test_round_trip_through_json_file(
    signer: tuple[Ed25519PrivateKey, dict[str, PublicKeyInfo]], tmp_path: Path
) -> None:
    key, trusted = signer
    path = tmp_path / "job.json"
    path.write_text(json.dumps(sign_document(make_job(), key), indent=2), encoding="utf-8")
    doc = load_json_limited(path.read_bytes(), max_bytes=MAX_JOB_BYTES, what="job.json")
    verify_document(doc, trusted, expected_job_id="job-1")


def test_resigning_replaces_signature(
    signer: tuple[Ed25519PrivateKey, dict[str, PublicKeyInfo]],
) -> None:
    key, trusted = signer
    doc = sign_document(sign_document(make_job(), key), key)
    verify_document(doc, trusted)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda d: d["tasks"][0]["argv"].append("--evil"),
        lambda d: d["tasks"][0].__setitem__("argv", ["sh", "-c", "curl x | sh"]),
        lambda d: d["tasks"].append({"id": "t2", "argv": ["rm", "-rf", "~"]}),
        lambda d: d["reduce"].__setitem__("argv", ["evil"]),
        lambda d: d["env"].__setitem__("LD_PRELOAD", "/tmp/x.so"),
        lambda d: d.__setitem__("created", "2030-01-01T00:00:00Z"),
        lambda d: d["files"].__setitem__("map.py", "f" * 64),  # shipped file digest swapped
        lambda d: d["files"].__setitem__("extra.py", "0" * 64),
        lambda d: d.__setitem__("id", "job-2"),
        lambda d: d["tasks"][0].__setitem__("timeout", 60.50000001),
        lambda d: d.__setitem__("unknown", None),
        lambda d: d["tasks"].reverse(),
    ],
)
def test_modified_document_refused(
    signer: tuple[Ed25519PrivateKey, dict[str, PublicKeyInfo]], tamper: Any
) -> None:
    key, trusted = signer
    doc = sign_document(make_job(), key)
    tamper(doc)
    with pytest.raises(SecurityError, match="does not match"):
        verify_document(doc, trusted)


def test_shipped_file_digest_is_covered(
    signer: tuple[Ed25519PrivateKey, dict[str, PublicKeyInfo]], tmp_path: Path
) -> None:
    key, trusted = signer
    shipped = tmp_path / "map.py"
    shipped.write_bytes(b"print('map')\n")
    doc = sign_document(make_job(digest=sha256_file(shipped)), key)
    verify_document(doc, trusted, expected_job_id="job-1")
    verify_file_digest(shipped, doc["files"]["map.py"])
    shipped.write_bytes(b"import os; os.system('evil')\n")  # file swapped after signing
    with pytest.raises(SecurityError, match="does not match its signed digest"):
        verify_file_digest(shipped, doc["files"]["map.py"])
    doc["files"]["map.py"] = sha256_file(shipped)  # ... and the digest too
    with pytest.raises(SecurityError, match="does not match"):
        verify_document(doc, trusted)


def test_unsigned_refused(signer: tuple[Ed25519PrivateKey, dict[str, PublicKeyInfo]]) -> None:
    _, trusted = signer
    with pytest.raises(SecurityError, match="job 'job-1' is unsigned"):
        verify_document(make_job(), trusted, expected_job_id="job-1")


def test_untrusted_key_refused_with_hint(
    signer: tuple[Ed25519PrivateKey, dict[str, PublicKeyInfo]],
) -> None:
    _, trusted = signer
    mallory_key, mallory = other_key_info()
    doc = sign_document(make_job(), mallory_key)
    with pytest.raises(SecurityError) as err:
        verify_document(doc, trusted, expected_job_id="job-1")
    msg = str(err.value)
    assert "does not trust" in msg and mallory.key_id in msg
    assert f"drivemr keys trust {mallory.line} --name NAME" in msg
    assert "\n" not in msg


def test_empty_trust_list_refuses_everything() -> None:
    key = Ed25519PrivateKey.generate()
    with pytest.raises(SecurityError, match="does not trust"):
        verify_document(sign_document(make_job(), key), {})


def test_revoked_key_refused(
    cfg: Path, signer: tuple[Ed25519PrivateKey, dict[str, PublicKeyInfo]]
) -> None:
    key, _ = signer
    doc = sign_document(make_job(), key)
    verify_document(doc, load_trusted(cfg))
    revoke(cfg, "self")
    with pytest.raises(SecurityError, match="does not trust"):
        verify_document(doc, load_trusted(cfg))


def test_replay_under_another_job_id_refused(
    signer: tuple[Ed25519PrivateKey, dict[str, PublicKeyInfo]],
) -> None:
    key, trusted = signer
    doc = sign_document(make_job("job-1"), key)
    with pytest.raises(SecurityError, match="replayed under another id"):
        verify_document(doc, trusted, expected_job_id="job-1-copy")
    no_id = sign_document({k: v for k, v in make_job().items() if k != "id"}, key)
    with pytest.raises(SecurityError, match="signed job id is None"):
        verify_document(no_id, trusted, expected_job_id="job-1")


def test_key_substitution_refused(
    signer: tuple[Ed25519PrivateKey, dict[str, PublicKeyInfo]],
) -> None:
    """Mallory signs with her key but claims a trusted key in the signature block."""
    key, trusted = signer
    (mine,) = trusted.values()
    mallory_key, _ = other_key_info()
    doc = sign_document(make_job(), mallory_key)
    doc["signature"]["public_key"] = mine.public_b64
    doc["signature"]["key_id"] = mine.key_id
    with pytest.raises(SecurityError, match="does not match"):
        verify_document(doc, trusted)
    good = sign_document(make_job(), key)
    doc["signature"]["sig"] = good["signature"]["sig"]
    doc["tasks"][0]["argv"] = ["evil"]
    with pytest.raises(SecurityError, match="does not match"):
        verify_document(doc, trusted)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda s: "sig",
        lambda s: 42,
        lambda s: [s],
        lambda s: {k: v for k, v in s.items() if k != "sig"},
        lambda s: {**s, "extra": 1},
        lambda s: {**s, "alg": "none"},
        lambda s: {**s, "alg": "rsa"},
        lambda s: {**s, "sig": "!!!"},
        lambda s: {**s, "sig": base64.b64encode(b"x" * 63).decode()},
        lambda s: {**s, "sig": 5},
        lambda s: {**s, "public_key": base64.b64encode(b"x" * 31).decode()},
        lambda s: {**s, "public_key": None},
        lambda s: {**s, "key_id": "0" * 16},
        lambda s: {**s, "key_id": None},
    ],
)
def test_malformed_signature_block_refused(
    signer: tuple[Ed25519PrivateKey, dict[str, PublicKeyInfo]], mangle: Any
) -> None:
    key, trusted = signer
    doc = sign_document(make_job(), key)
    doc["signature"] = mangle(doc["signature"])
    with pytest.raises(SecurityError, match=r"malformed|unsupported"):
        verify_document(doc, trusted)


def test_not_an_object_refused() -> None:
    doc: Any
    for doc in ([], "job", None, 3):
        with pytest.raises(SecurityError):
            verify_document(doc, {})


@settings(max_examples=150, deadline=None)
@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
        max_leaves=20,
    )
)
def test_forged_documents_only_raise_security_error(value: Any) -> None:
    """Arbitrary JSON, with or without a signature-shaped block: refused cleanly."""
    key = Ed25519PrivateKey.generate()
    trusted = {"0" * 16: PublicKeyInfo("x", "0" * 16, base64.b64encode(b"k" * 32).decode())}
    docs: list[Any] = [value, {"id": "j", "signature": value}]
    if isinstance(value, dict):
        signed = sign_document(value, key)
        signed["signature"]["sig"] = base64.b64encode(b"\0" * 64).decode()
        docs.append(signed)
    for doc in docs:
        with pytest.raises(SecurityError):
            verify_document(doc, trusted, expected_job_id="j")


# --------------------------------------------------------------------------- canonical form


def test_canonical_bytes_shape() -> None:
    doc = {"b": 1, "a": [1.5, "é", None, True], "signature": {"sig": "x"}}
    assert canonical_bytes(doc) == '{"a":[1.5,"é",null,true],"b":1}'.encode()
    assert canonical_bytes({"a": [1.5, "é", None, True], "b": 1}) == canonical_bytes(doc)


def test_canonical_ignores_only_top_level_signature() -> None:
    assert b"signature" in canonical_bytes({"x": {"signature": 1}})


@pytest.mark.parametrize(
    "doc",
    [
        {"x": float("nan")},
        {"x": [float("inf")]},
        {"x": -float("inf")},
        {"x": {1: "int key"}},
        {"x": {"a", "set"}},
        {"x": b"bytes"},
        {"x": object()},
        {"x": "\ud800"},
    ],
)
def test_canonical_refuses_non_json(doc: dict[str, Any]) -> None:
    with pytest.raises(SecurityError):
        canonical_bytes(doc)


def test_canonical_refuses_cycles() -> None:
    doc: dict[str, Any] = {"x": []}
    doc["x"].append(doc["x"])
    with pytest.raises(SecurityError):
        canonical_bytes(doc)


# --------------------------------------------------------------------------- digests


def test_file_digest_and_verify(tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    data = os.urandom(3 * (1 << 20) + 17)
    path.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    assert sha256_file(path) == digest
    verify_file_digest(path, digest)
    verify_file_digest(path, digest.upper())
    with pytest.raises(SecurityError, match="malformed"):
        verify_file_digest(path, "abc")
    with pytest.raises(SecurityError, match="malformed"):
        verify_file_digest(path, None)  # type: ignore[arg-type]
    with pytest.raises(SecurityError, match="cannot be read"):
        verify_file_digest(tmp_path / "missing", digest)
    with pytest.raises(SecurityError, match="does not match"):
        verify_file_digest(path, "0" * 64)


# --------------------------------------------------------------------------- private files


@posix_only
def test_write_private_file_modes(tmp_path: Path) -> None:
    path = tmp_path / "tokens" / "token.json"
    write_private_file(path, b"secret")
    assert path.read_bytes() == b"secret"
    assert mode(path) == 0o600 and mode(path.parent) == 0o700
    check_private_file(path)


@posix_only
def test_write_private_file_tightens_loose_parent_and_ignores_umask(tmp_path: Path) -> None:
    parent = tmp_path / "loose"
    parent.mkdir(mode=0o755)
    parent.chmod(0o755)
    old = os.umask(0)
    try:
        write_private_file(parent / "t", b"x")
    finally:
        os.umask(old)
    assert mode(parent / "t") == 0o600 and mode(parent) == 0o700


@posix_only
def test_private_file_mode_is_set_before_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[int] = []
    real_fdopen = os.fdopen

    def spy(fd: int, *args: Any, **kwargs: Any) -> Any:
        st_ = os.fstat(fd)
        seen.append(stat.S_IMODE(st_.st_mode) if st_.st_size == 0 else -1)
        return real_fdopen(fd, *args, **kwargs)

    monkeypatch.setattr(os, "fdopen", spy)
    write_private_file(tmp_path / "d" / "t", b"secret")
    assert seen == [0o600]


def test_write_private_file_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "d" / "token"
    write_private_file(path, b"old")

    def boom(src: Any, dst: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        write_private_file(path, b"new")
    monkeypatch.undo()
    assert path.read_bytes() == b"old"
    assert [p.name for p in path.parent.iterdir()] == ["token"]  # no temp file left
    write_private_file(path, b"new")
    assert path.read_bytes() == b"new"
    assert [p.name for p in path.parent.iterdir()] == ["token"]


@posix_only
@pytest.mark.parametrize("bad", [0o644, 0o640, 0o604, 0o660, 0o700 | 0o007])
def test_check_private_file_refuses_loose_modes(tmp_path: Path, bad: int) -> None:
    path = tmp_path / "token.json"
    path.write_bytes(b"{}")
    path.chmod(bad)
    with pytest.raises(SecurityError) as err:
        check_private_file(path)
    assert str(err.value) == (
        f"token file {path} is readable by group or others; run chmod 600 {path}"
    )
    path.chmod(0o600)
    check_private_file(path)
    path.chmod(0o400)
    check_private_file(path)


def test_check_private_file_missing_propagates(tmp_path: Path) -> None:
    if os.name != "posix":
        pytest.skip("no-op on Windows")
    with pytest.raises(FileNotFoundError):
        check_private_file(tmp_path / "nope")


@pytest.mark.skipif(os.name == "posix", reason="Windows behaviour")
def test_check_private_file_is_noop_on_windows(tmp_path: Path) -> None:  # pragma: no cover
    path = tmp_path / "t"
    path.write_bytes(b"x")
    check_private_file(path)


# --------------------------------------------------------------------------- CLI


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("DRIVEMR_CONFIG_DIR", str(tmp_path / "clicfg"))
    runner = CliRunner()

    def run(*args: str) -> Any:
        return runner.invoke(keys, list(args), catch_exceptions=False)

    return run


def test_cli_full_cycle(cli: Any, tmp_path: Path) -> None:
    res = cli("list")
    assert res.exit_code == 0 and "no trusted keys" in res.output

    res = cli("show")
    assert res.exit_code == 1 and "keys generate" in res.output

    res = cli("generate")
    assert res.exit_code == 0, res.output
    assert "drivemr keys trust drivemr-ed25519:" in res.output
    res = cli("generate")
    assert res.exit_code == 1 and "already exists" in res.output

    line = cli("show").output.strip()
    assert line.startswith("drivemr-ed25519:") and len(line.splitlines()) == 1
    assert cli("generate", "--force").exit_code == 0
    new_line = cli("show").output.strip()
    assert new_line != line

    res = cli("trust", line, "--name", "old-laptop")
    assert res.exit_code == 0 and "trusted old-laptop" in res.output
    listing = cli("list").output.splitlines()
    assert [row.split()[0] for row in listing] == ["old-laptop", "self"]
    assert any(new_line in row for row in listing)

    assert cli("revoke", "old-laptop").exit_code == 0
    res = cli("revoke", "old-laptop")
    assert res.exit_code == 1 and "no trusted key named" in res.output
    res = cli("trust", "garbage")
    assert res.exit_code == 1 and "Error" in res.output
    assert [row.split()[0] for row in cli("list").output.splitlines()] == ["self"]
    if sys.platform != "win32":
        assert mode(tmp_path / "clicfg" / "keys" / "signing_key.pem") == 0o600


def test_cli_trust_default_name(cli: Any) -> None:
    _, alice = other_key_info()
    res = cli("trust", alice.line)
    assert res.exit_code == 0 and f"key-{alice.key_id}" in res.output
