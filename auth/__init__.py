"""Access control: API keys, the origin rule and new-session rate limits (docs/protocol.md)."""

from voxline.auth.guard import (
    AccessGuard,
    Grant,
    Refusal,
    client_address,
    is_loopback,
    keys_required,
)
from voxline.auth.keys import KeyFileError, KeyStore

__all__ = ["AccessGuard", "Grant", "KeyFileError", "KeyStore", "Refusal", "client_address",
           "is_loopback", "keys_required"]
