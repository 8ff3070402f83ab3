"""API keys: made by `voxline keys create`, stored only as salted hashes, checked per
connection. The server only reads the file, and re-reads it when it changes, so a key revoked
with `voxline keys revoke` is refused from the next connection on, without a restart.

A key is a client's (it talks to the agent) or an operator's (it also opens the dashboard and
sends its commands)."""

import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import tempfile
import threading
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from loguru import logger

KEY_PREFIX = "vxl_live_"
ID_CHARS = 8  # hex: the public part that names a key in `keys list` and finds its record
SECRET_CHARS = 43  # secrets.token_urlsafe(32): 256 random bits
# Keys are 256 random bits: a salted HMAC-SHA-256 cannot be reversed or guessed, and costs
# microseconds (a slow hash made each failed attempt cost the server ~50 ms of CPU). Files
# written before keep verifying their scrypt hashes.
HASH_SCHEME = "hmac-sha256"
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
FILE_VERSION = 1
Role = Literal["client", "operator"]
ROLES: tuple[Role, ...] = ("client", "operator")


class KeyFileError(ValueError):
    """The keys file cannot be used, or no key matches; the message names the file and the fix."""


@dataclass(frozen=True)
class KeyRecord:
    """One key as stored: never the key itself, only its salted hash."""

    id: str
    name: str
    created_at: str
    revoked_at: str | None
    salt: str
    hash: str
    scheme: str = "scrypt"  # files written before roles and HMAC keys have neither field
    role: Role = "client"

    @property
    def prefix(self) -> str:
        """What a key starts with: enough to recognise it, not to use it."""
        return KEY_PREFIX + self.id

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None


def key_id(key: str) -> str | None:
    """The id inside a well-formed key, or None (not a voxline key)."""
    if not key.startswith(KEY_PREFIX):
        return None
    rest = key[len(KEY_PREFIX):]
    found = rest[:ID_CHARS]
    if len(rest) != ID_CHARS + SECRET_CHARS or not all(c in "0123456789abcdef" for c in found):
        return None
    return found


def _hash(key: str, salt: bytes, scheme: str) -> bytes:
    if scheme == "scrypt":
        return hashlib.scrypt(key.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P,
                              dklen=32)
    return hmac.new(salt, key.encode(), hashlib.sha256).digest()


@dataclass(frozen=True)
class VerifiedKey:
    """A live key that matched: its id and role."""

    id: str
    role: Role


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class KeyStore:
    """The keys file at `path`. `verify` is thread-safe (an old scrypt key costs ~50 ms the
    first time: call it through `asyncio.to_thread`); `create` and `revoke` are for the CLI,
    and hold a lock on the file so that two at once lose nothing."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self._signature: tuple | None = None
        self._records: dict[str, KeyRecord] = {}
        self._verified: dict[str, bytes] = {}  # key id -> sha256 of its key, once scrypt agreed

    def create(self, name: str = "", role: Role = "client") -> tuple[KeyRecord, str]:
        """Add a new key; return its record and the key, which is never stored or shown again."""
        if role not in ROLES:
            raise KeyFileError(f"role {role!r} is not one of {', '.join(ROLES)}")
        with self._file_locked():
            records = self._read()
            while (new_id := secrets.token_hex(ID_CHARS // 2)) in records:
                pass
            key = KEY_PREFIX + new_id + secrets.token_urlsafe(32)
            salt = secrets.token_bytes(16)
            record = KeyRecord(id=new_id, name=name, created_at=_now(), revoked_at=None,
                               salt=salt.hex(), hash=_hash(key, salt, HASH_SCHEME).hex(),
                               scheme=HASH_SCHEME, role=role)
            self._write([*records.values(), record])
        logger.debug("API key {} ({}) created in {}", record.prefix, role, self.path)
        return record, key

    def records(self) -> list[KeyRecord]:
        """Every key, revoked ones included, oldest first."""
        return sorted(self._read().values(), key=lambda r: r.created_at)

    def revoke(self, id_or_prefix: str) -> KeyRecord:
        """Revoke the key whose id starts with `id_or_prefix` (`vxl_live_` optional)."""
        wanted = id_or_prefix.strip().removeprefix(KEY_PREFIX)[:ID_CHARS].lower()
        with self._file_locked():
            records = self._read()
            matches = [r for r in records.values() if wanted and r.id.startswith(wanted)]
            if len(matches) != 1:
                problem = "no key has" if not matches else f"{len(matches)} keys have"
                raise KeyFileError(f"{problem} an id starting with {wanted!r} in {self.path}; "
                                   "see `voxline keys list` for the ids")
            record = matches[0]
            if not record.is_revoked:
                records[record.id] = record = KeyRecord(**{**asdict(record),
                                                           "revoked_at": _now()})
                self._write(list(records.values()))
                logger.debug("API key {} revoked", record.prefix)
        return record

    def active_count(self) -> int:
        """How many keys are not revoked (0 when the file does not exist yet)."""
        with self._lock:
            self._reload_if_changed()
            return sum(not r.is_revoked for r in self._records.values())

    def verify(self, key: str) -> VerifiedKey | None:
        """`key`'s id and role if it is a live key of this file, else None. Compares in
        constant time; an unreadable file refuses every key (and says why in the log)."""
        found = key_id(key)
        if found is None:
            return None
        with self._lock:
            self._reload_if_changed()
            record = self._records.get(found)
            if record is None or record.is_revoked:
                return None
            digest = hashlib.sha256(key.encode()).digest()
            if (known := self._verified.get(found)) is not None:
                return VerifiedKey(found, record.role) \
                    if hmac.compare_digest(digest, known) else None
        # Hashed outside the lock: an old scrypt key does not hold up other connections.
        expected = bytes.fromhex(record.hash)
        if not hmac.compare_digest(_hash(key, bytes.fromhex(record.salt), record.scheme),
                                   expected):
            return None
        with self._lock:
            if self._records.get(found) == record:  # not revoked meanwhile
                self._verified[found] = digest
                return VerifiedKey(found, record.role)
        return None

    @contextlib.contextmanager
    def _file_locked(self):
        """An exclusive lock on `<keys file>.lock` across processes, for a read-modify-write."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            lock = open(self.path.with_name(self.path.name + ".lock"), "a")  # noqa: SIM115
        except OSError as e:
            raise KeyFileError(f"cannot lock the keys file {self.path}: {e.strerror}; "
                               "set auth.keys_file to a writable path") from None
        with lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _reload_if_changed(self) -> None:
        try:
            stat = self.path.stat()
            signature = (stat.st_mtime_ns, stat.st_ino, stat.st_size)
        except FileNotFoundError:
            signature = None
        if signature == self._signature and self._signature is not None:
            return
        self._verified.clear()
        try:
            self._records = self._read()
        except KeyFileError as e:
            logger.error("API keys: {}; every key is refused until it is fixed", e)
            self._records = {}
        self._signature = signature

    def _read(self) -> dict[str, KeyRecord]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return {r["id"]: KeyRecord(**r) for r in data["keys"]}
        except FileNotFoundError:
            return {}
        except OSError as e:
            raise KeyFileError(f"cannot read the keys file {self.path}: {e.strerror}") from None
        except (ValueError, KeyError, TypeError):
            raise KeyFileError(
                f"the keys file {self.path} is not a voxline keys file; move it away and "
                "create keys again with `voxline keys create`"
            ) from None

    def _write(self, records: list[KeyRecord]) -> None:
        """Replace the file atomically (readers see the old or the new one), mode 0600."""
        text = json.dumps({"version": FILE_VERSION, "keys": [asdict(r) for r in records]},
                          indent=2)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=".keys-",
                                             suffix=".tmp")  # created with mode 0600
        except OSError as e:
            raise KeyFileError(f"cannot write the keys file {self.path}: {e.strerror}; "
                               "set auth.keys_file to a writable path") from None
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                file.write(text + "\n")
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, self.path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
