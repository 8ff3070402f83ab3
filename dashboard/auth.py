"""Who may see the dashboard: the origin rule, then its token or an API key (voxline.auth)."""

from collections.abc import Sequence

from voxline.auth import AccessGuard, KeyStore
from voxline.config.settings import DashboardSettings

DASHBOARD_HELP = "add ?token=<API key or dashboard token> to the URL"


class DashboardConfigError(ValueError):
    """The dashboard cannot start as configured; the message says what to set."""


def dashboard_access(dashboard: DashboardSettings, *, keys: KeyStore | None,
                     allowed_origins: Sequence[str]) -> AccessGuard:
    """The rule for the page and its WebSocket: `dashboard.token` (when set) and API keys (when
    `keys` is given, i.e. keys are required) are both accepted. With neither, anyone who can
    reach the address gets in, which the key rule allows only on loopback."""
    token = dashboard.token.get_secret_value() if dashboard.token else None
    return AccessGuard(keys=keys, token=token, allowed_origins=allowed_origins,
                       credential_help=DASHBOARD_HELP)
