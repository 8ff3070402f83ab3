"""`voxline keys`: create, list and revoke API keys."""

import argparse
import sys

from voxline.cli_support import UserFacingError, settings_from

DESCRIPTION = (
    "Manage the API keys that /ws, /api/offer and the dashboard require when auth is on "
    "(auth.enabled, or any bind beyond loopback). A client key talks; an operator key also "
    "opens the dashboard and sends its commands. Keys are stored only as salted hashes in "
    "auth.keys_file; a running server sees changes at its next connection."
)


def add_keys_parser(sub) -> None:
    keys = sub.add_parser("keys", help="create, list and revoke API keys",
                          description=DESCRIPTION)
    actions = keys.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="make a key and print it (shown only once)")
    create.add_argument("--name", default="", help="a label for the key (who or what uses it)")
    create.add_argument("--role", choices=["client", "operator"], default="client",
                        help="client (default): talks to the agent; operator: also opens the "
                             "dashboard and sends its commands")
    actions.add_parser("list", help="list keys: id, name, role, created, revoked (never the key)")
    revoke = actions.add_parser("revoke", help="revoke a key; new connections with it are refused")
    revoke.add_argument("key_id", metavar="ID_OR_PREFIX", help="its id, or vxl_live_<id>")
    keys.set_defaults(run=_keys)


def _keys(args: argparse.Namespace) -> int:
    from voxline.auth import KeyFileError, KeyStore

    store = KeyStore(settings_from(args).auth.keys_file)
    try:
        if args.action == "create":
            record, key = store.create(args.name, args.role)
            print(key)
            print(f"voxline: {record.role} key {record.prefix} created in {store.path}; it is "
                  "shown only this once. Clients send `Authorization: Bearer <key>` or "
                  "?token=<key>.", file=sys.stderr)
        elif args.action == "revoke":
            record = store.revoke(args.key_id)
            print(f"{record.prefix} revoked at {record.revoked_at}")
        else:
            print(f"{'id':<10} {'name':<20} {'role':<9} {'created':<26} revoked")
            for record in store.records():
                print(f"{record.id:<10} {record.name[:20]:<20} {record.role:<9} "
                      f"{record.created_at:<26} {record.revoked_at or '-'}")
    except KeyFileError as e:
        raise UserFacingError(str(e)) from None
    return 0
