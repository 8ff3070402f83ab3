"""API keys: the file holds only salted hashes, verification, revocation seen without a restart,
and the `voxline keys` command run as users run it."""

import json
import os
import stat
import subprocess
import sys

import pytest
from loguru import logger

from voxline.auth import KeyFileError, KeyStore
from voxline.auth.keys import KEY_PREFIX, key_id

VOXLINE = os.path.join(os.path.dirname(sys.executable), "voxline")


@pytest.fixture
def store(tmp_path):
    return KeyStore(tmp_path / "data" / "keys.json")


def test_a_new_key_is_well_formed_and_verifies(store):
    record, key = store.create("ci")
    assert key.startswith(KEY_PREFIX) and len(key) - len(KEY_PREFIX) >= 32
    assert key.startswith(record.prefix) and key_id(key) == record.id
    assert store.verify(key).id == record.id
    assert store.verify(key).id == record.id  # the second time from the in-memory digest
    assert store.verify(key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    assert store.verify(KEY_PREFIX + record.id) is None
    assert store.verify("Bearer " + key) is None and store.verify("") is None


def test_the_file_holds_no_key_and_only_its_owner_may_read_it(store):
    _, key = store.create("ci")
    text = store.path.read_text()
    secret = key[len(KEY_PREFIX) + 8:]
    assert key not in text and secret not in text
    stored = json.loads(text)["keys"][0]
    assert len(bytes.fromhex(stored["salt"])) == 16 and len(bytes.fromhex(stored["hash"])) == 32
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    # No temporary left (the lock file is kept: deleting it would race another process).
    assert sorted(p.name for p in store.path.parent.iterdir()) == ["keys.json", "keys.json.lock"]


def test_each_key_has_its_own_salt(store):
    first, _ = store.create("a")
    second, _ = store.create("b")
    assert first.salt != second.salt and first.id != second.id


def test_revocation_is_seen_by_a_running_reader_without_a_restart(store):
    """The server's store re-reads the file when it changes (the CLI writes it)."""
    _, key = store.create("laptop")
    server_side = KeyStore(store.path)
    assert server_side.verify(key)
    KeyStore(store.path).revoke(key_id(key))
    assert server_side.verify(key) is None
    _, other = KeyStore(store.path).create("phone")
    assert server_side.verify(other)  # and a new key works at once


def test_revoke_takes_an_id_a_prefix_or_vxl_live_id(store):
    record, _ = store.create("a")
    assert store.revoke(f"{KEY_PREFIX}{record.id}").is_revoked
    again = store.revoke(record.id[:4])  # revoking twice is harmless
    assert again.revoked_at == store.records()[0].revoked_at
    with pytest.raises(KeyFileError, match="voxline keys list"):
        store.revoke("ffffffff" if not record.id.startswith("f") else "00000000")


def test_a_corrupt_file_refuses_every_key_and_names_the_fix(store):
    _, key = store.create("a")
    server_side = KeyStore(store.path)
    store.path.write_text("not json")
    assert server_side.verify(key) is None
    with pytest.raises(KeyFileError, match="voxline keys create"):
        store.records()


def test_no_log_line_holds_a_key(store):
    lines: list[str] = []
    sink = logger.add(lines.append, level="TRACE", format="{message}")
    try:
        record, key = store.create("ci")
        assert store.verify(key)
        store.revoke(record.id)
        assert store.verify(key) is None
    finally:
        logger.remove(sink)
    assert lines, "creating and revoking are logged"
    assert not any(key[len(KEY_PREFIX) + 8:] in line for line in lines), lines


def _voxline(keys_file, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOXLINE_")}
    env["VOXLINE_AUTH__KEYS_FILE"] = str(keys_file)
    return subprocess.run([VOXLINE, "keys", *args], capture_output=True, text=True, env=env,
                          timeout=60, check=False)


def test_keys_command_creates_lists_and_revokes(tmp_path):
    keys_file = tmp_path / "keys.json"
    created = _voxline(keys_file, "create", "--name", "ci runner")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert key.startswith(KEY_PREFIX) and "\n" not in key  # stdout is the key alone
    assert "shown only this once" in created.stderr and key not in created.stderr
    assert key not in keys_file.read_text()

    listed = _voxline(keys_file, "list")
    assert listed.returncode == 0 and key not in listed.stdout
    header, row = listed.stdout.splitlines()
    assert header.split() == ["id", "name", "role", "created", "revoked"]
    assert row.split()[:4] == [key_id(key), "ci", "runner", "client"] and row.split()[-1] == "-"

    revoked = _voxline(keys_file, "revoke", f"{KEY_PREFIX}{key_id(key)}")
    assert revoked.returncode == 0, revoked.stderr
    assert _voxline(keys_file, "list").stdout.splitlines()[1].split()[-1] != "-"
    assert KeyStore(keys_file).verify(key) is None


def test_revoking_an_unknown_key_is_one_clear_line(tmp_path):
    result = _voxline(tmp_path / "keys.json", "revoke", "abcdef12")
    assert result.returncode == 1
    assert result.stderr.strip().startswith("voxline: error: no key has an id starting with")
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_key_has_a_role_client_by_default(store):
    client_record, client_key = store.create("kiosk")
    operator_record, operator_key = store.create("ops", role="operator")
    assert (client_record.role, operator_record.role) == ("client", "operator")
    assert store.verify(client_key).role == "client"
    assert KeyStore(store.path).verify(operator_key).role == "operator"
    with pytest.raises(KeyFileError, match="client, operator"):
        store.create("x", role="admin")


def test_a_key_written_before_roles_still_verifies_as_a_client(store):
    """Files from before roles and HMAC keys hold scrypt hashes and no role."""
    import hashlib
    key = KEY_PREFIX + "0123abcd" + "x" * 43
    salt = bytes(range(16))
    digest = hashlib.scrypt(key.encode(), salt=salt, n=2**14, r=8, p=1, dklen=32)
    store.path.parent.mkdir(parents=True)
    store.path.write_text(json.dumps({"version": 1, "keys": [{
        "id": "0123abcd", "name": "old", "created_at": "2026-12-01T00:00:00+00:00",
        "revoked_at": None, "salt": salt.hex(), "hash": digest.hex()}]}))
    found = store.verify(key)
    assert found is not None and (found.id, found.role) == ("0123abcd", "client")
    assert store.verify(key[:-1] + "y") is None


def test_new_keys_use_a_keyed_hash_not_a_slow_one(store):
    """Keys are 256 random bits: HMAC-SHA-256 suffices, and a wrong guess costs no scrypt."""
    record, _ = store.create("a")
    assert record.scheme == "hmac-sha256"


def test_two_creates_at_once_lose_no_key(tmp_path):
    """`voxline keys create` run twice at the same moment (two terminals, a provisioning
    script): each reads, adds and replaces the file; without the lock one key was lost."""
    keys_file = tmp_path / "keys.json"
    script = ("import sys; from pathlib import Path; from voxline.auth import KeyStore; "
              "store = KeyStore(Path(sys.argv[1])); "
              "[store.create(f'{sys.argv[2]}-{i}') for i in range(15)]")
    runs = [subprocess.Popen([sys.executable, "-c", script, str(keys_file), name])
            for name in ("a", "b", "c")]
    assert [run.wait(timeout=60) for run in runs] == [0, 0, 0]
    assert len(KeyStore(keys_file).records()) == 45
