"""Who may see the dashboard: anyone on loopback, a token holder otherwise."""

import hmac
import ipaddress

from starlette.requests import HTTPConnection

from voxline.config.settings import DashboardSettings


class DashboardAuthError(ValueError):
    """The dashboard cannot start safely as configured; the message says what to set."""


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def required_token(settings: DashboardSettings, bind_host: str) -> str | None:
    """The token requests must carry, or None when none is needed (loopback, none set).

    Binding beyond loopback without a token is refused: the dashboard shows transcripts.
    """
    token = settings.token.get_secret_value() if settings.token else None
    if token is None and not is_loopback(bind_host):
        raise DashboardAuthError(
            f"the dashboard would listen on {bind_host} without a token; set dashboard.token "
            "(VOXLINE_DASHBOARD__TOKEN) or bind it to 127.0.0.1"
        )
    return token


def is_authorised(connection: HTTPConnection, token: str | None) -> bool:
    """`?token=` (browsers, WebSocket) or `Authorization: Bearer`, compared in constant time."""
    if token is None:
        return True
    offered = connection.query_params.get("token", "")
    header = connection.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        offered = header[7:].strip()
    return hmac.compare_digest(offered.encode(), token.encode())
