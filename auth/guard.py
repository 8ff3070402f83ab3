"""Who may connect and open a session: the origin rule, an API key (or the dashboard token), the
role the app needs, and the new-session rate limits, checked in that order. Refusals carry an
HTTP status, a WebSocket close code and a stable error code (docs/protocol.md)."""

import asyncio
import hmac
import ipaddress
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from loguru import logger
from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse

from voxline.auth.keys import KeyStore, Role
from voxline.auth.origin import is_origin_allowed
from voxline.auth.ratelimit import RateLimiter
from voxline.config.settings import AuthSettings, LimitsSettings

CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403  # the origin, or a client key where an operator's is needed
CLOSE_ORIGIN_NOT_ALLOWED = 4403
CLOSE_RATE_LIMITED = 4429
REFUSALS_LOGGED_PER_MINUTE = 6  # per address, at INFO
KEY_HELP = ("send `Authorization: Bearer <key>` or add ?token=<key> to the URL; the operator "
            "makes keys with `voxline keys create`")


@dataclass(frozen=True)
class Refusal:
    """Why a request is refused: `status` for HTTP, `close_code` for a WebSocket."""

    status: int
    close_code: int
    code: str
    message: str
    reason: str  # short enough for a WebSocket close frame (123 bytes)
    retry_after_secs: int | None = None

    def response(self) -> JSONResponse:
        """The HTTP answer, in the shape of every signalling error (docs/protocol.md)."""
        headers = {"Retry-After": str(self.retry_after_secs)} if self.retry_after_secs else None
        return JSONResponse({"error": self.code, "message": self.message},
                            status_code=self.status, headers=headers)


@dataclass(frozen=True)
class Grant:
    """A request let in. `key_id` names its API key (None: keys are off, or a dashboard
    token); `role` is the key's, "operator" for the dashboard token, and "operator" too where
    no credential is required (loopback without keys: everyone on the machine is trusted)."""

    key_id: str | None = None
    role: Role = "operator"
    credential: Literal["none", "token", "key"] = "none"

    @property
    def holder(self) -> str:
        """Who this is, for an audit line: key:<id>, token, or local (no credential needed)."""
        if self.key_id:
            return f"key:{self.key_id}"
        return "token" if self.credential == "token" else "local"


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def keys_required(auth: AuthSettings, bind_host: str) -> tuple[bool, str]:
    """Whether API keys are required, and why: `auth.enabled`, or any bind beyond loopback."""
    if auth.enabled:
        return True, "auth.enabled is true"
    if not is_loopback(bind_host):
        return True, f"bound to {bind_host}, beyond loopback"
    return False, f"bound to loopback ({bind_host}) and auth.enabled is false"


def offered_credential(connection: HTTPConnection) -> str | None:
    """`Authorization: Bearer <key>`, else `?token=<key>` (browsers cannot set WebSocket
    headers), else None."""
    header = connection.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    return connection.query_params.get("token")


class AccessGuard:
    """One app's rule. `keys`: API keys accepted (None: keys off); `token`: another accepted
    secret (the dashboard token); when neither is set anyone gets in. `limits`: new-session
    rate limits (None: no limits). `credential_help` ends a 401's message: how to send one."""

    def __init__(self, *, keys: KeyStore | None = None, token: str | None = None,
                 allowed_origins: Sequence[str] = (), limits: LimitsSettings | None = None,
                 credential_help: str = KEY_HELP, required_role: Role = "client"):
        self._keys = keys
        self._help = credential_help
        self._token = token
        self._required_role = required_role
        self._allowed_origins = tuple(allowed_origins)
        self._per_ip = RateLimiter(limits.sessions_per_minute_per_ip if limits else 0)
        self._per_key = RateLimiter(limits.sessions_per_minute_per_key if limits else 0)
        self._refusals_logged = RateLimiter(REFUSALS_LOGGED_PER_MINUTE)
        self._failures = RateLimiter((limits or LimitsSettings()).auth_failures_per_minute_per_ip)

    async def admit(self, connection: HTTPConnection) -> Grant | Refusal:
        """Check the origin, the credential and its role. An address with too many failed
        credentials is refused before any key is looked at."""
        origin = connection.headers.get("origin")
        if not is_origin_allowed(origin, connection.headers.get("host"), self._allowed_origins):
            return self._refuse(connection, Refusal(
                403, CLOSE_ORIGIN_NOT_ALLOWED, "origin_not_allowed",
                f"pages from {origin[:100]!r} may not use this server; add that origin to "
                "server.allowed_origins (VOXLINE_SERVER__ALLOWED_ORIGINS), or open the page "
                "from this server", "origin not allowed"))
        if self._keys is None and self._token is None:
            return Grant()
        offered = offered_credential(connection)
        if not offered:
            return self._refuse(connection, Refusal(
                401, CLOSE_UNAUTHORIZED, "unauthorized", f"an API key is required: {self._help}",
                "API key required"))
        ip = client_address(connection)
        if wait := self._failures.retry_after_secs(ip):
            seconds = math.ceil(wait)
            return self._refuse(connection, Refusal(
                429, CLOSE_RATE_LIMITED, "too_many_failures",
                f"too many invalid credentials from this address; retry in {seconds} s",
                f"too many invalid credentials; retry in {seconds} s",
                retry_after_secs=seconds))
        grant = await self._check(offered)
        if grant is None:
            self._failures.take(ip)
            return self._refuse(connection, Refusal(
                401, CLOSE_UNAUTHORIZED, "unauthorized",
                f"the API key is not valid (mistyped, unknown or revoked): {self._help}",
                "API key not valid"))
        if self._required_role == "operator" and grant.role != "operator":
            return self._refuse(connection, Refusal(
                403, CLOSE_FORBIDDEN, "operator_only",
                "this needs an operator credential: dashboard.token, or a key made with "
                "`voxline keys create --role operator`; a client key may only talk",
                "operator credential required"))
        return grant

    async def _check(self, offered: str) -> Grant | None:
        if self._token is not None and hmac.compare_digest(offered.encode(), self._token.encode()):
            return Grant(credential="token")
        if self._keys is not None and (found := await asyncio.to_thread(self._keys.verify,
                                                                         offered)):
            return Grant(key_id=found.id, role=found.role, credential="key")
        return None

    def sessions_left(self, connection: HTTPConnection) -> tuple[int, int, float]:
        """This client address's new-session limit a minute (0: none), how many it has left now,
        and seconds until it has them all again."""
        left, refill = self._per_ip.remaining(client_address(connection))
        return self._per_ip.per_minute, left, refill

    def take_session(self, connection: HTTPConnection, grant: Grant) -> Refusal | None:
        """Count a new session against its client IP and key, or refuse it if either has used
        up its sessions for now (then nothing is counted)."""
        ip = client_address(connection)
        waits = [(self._per_ip.retry_after_secs(ip), "address", self._per_ip.per_minute)]
        if grant.key_id is not None:
            waits.append((self._per_key.retry_after_secs(grant.key_id), "API key",
                          self._per_key.per_minute))
        wait, who, per_minute = max(waits)
        if wait > 0:
            seconds = math.ceil(wait)
            return self._refuse(connection, Refusal(
                429, CLOSE_RATE_LIMITED, "rate_limited",
                f"too many new sessions from this {who}: at most {per_minute} a minute; "
                f"retry in {seconds} s", f"too many new sessions; retry in {seconds} s",
                retry_after_secs=seconds))
        self._per_ip.take(ip)
        if grant.key_id is not None:
            self._per_key.take(grant.key_id)
        return None

    def _refuse(self, connection: HTTPConnection, refusal: Refusal) -> Refusal:
        """Log it (the first few a minute per address at INFO, the rest at DEBUG: a client
        retrying in a loop must not flood the log and every dashboard), and return it."""
        client = client_address(connection) or "?"
        quiet = self._refusals_logged.retry_after_secs(client) > 0
        if not quiet:
            self._refusals_logged.take(client)
        logger.log("DEBUG" if quiet else "INFO", "Refused {} from {}: {}", connection.url.path,
                   client, refusal.code)
        return refusal

def client_address(connection: HTTPConnection) -> str:
    """The client's IP address ("" when the server does not know it): the peer's, or what a
    proxy in `server.forwarded_allow_ips` said (uvicorn rewrites the scope), never a header a
    client set itself."""
    return connection.client.host if connection.client else ""
