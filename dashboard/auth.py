"""Who may see the dashboard: the origin rule, then its token or an API key (voxline.auth)."""

from collections.abc import Sequence

from voxline.auth import AccessGuard, KeyStore
from voxline.config.settings import DashboardSettings, LimitsSettings

DASHBOARD_HELP = ("open the page as …/?token=<dashboard token or operator API key>, or send "
                  "`Authorization: Bearer <it>`")


class DashboardConfigError(ValueError):
    """The dashboard cannot start as configured; the message says what to set."""


def dashboard_access(dashboard: DashboardSettings, *, keys: KeyStore | None,
                     allowed_origins: Sequence[str],
                     limits: LimitsSettings | None = None) -> AccessGuard:
    """The rule for the dashboard's feed: operator credentials only, `dashboard.token` (when
    set) or an operator API key (when `keys` is given, i.e. keys are required); a client key is
    refused (403 / 4403). With neither set, anyone who can reach the address gets in, which the
    key rule allows only on loopback."""
    token = dashboard.token.get_secret_value() if dashboard.token else None
    return AccessGuard(keys=keys, token=token, allowed_origins=allowed_origins, limits=limits,
                       credential_help=DASHBOARD_HELP, required_role="operator")
