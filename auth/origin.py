"""The browser-origin rule: a page may open sessions only from the server's own origin or an
allowed one. It stops other web sites from using a visitor's browser (and its network position
or key in the URL) to talk to the server; clients that send no `Origin` (not browsers) pass."""

from collections.abc import Sequence
from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": "80", "https": "443"}


def is_origin_allowed(origin: str | None, host: str | None, allowed: Sequence[str]) -> bool:
    """`origin` (the request's Origin header) against the request's Host header and `allowed`
    (lower-case `scheme://host[:port]` entries, or `*`)."""
    if origin is None or "*" in allowed:
        return True
    origin = origin.strip().lower().rstrip("/")
    if origin in allowed:
        return True
    parts = urlsplit(origin)
    if parts.scheme not in DEFAULT_PORTS or not parts.netloc or host is None:
        return False  # e.g. "null" from a sandboxed frame or a file:// page
    return _without_default_port(parts.netloc, parts.scheme) == \
        _without_default_port(host.strip().lower(), parts.scheme)


def _without_default_port(netloc: str, scheme: str) -> str:
    return netloc.removesuffix(f":{DEFAULT_PORTS[scheme]}")
