"""Operator commands: API keys.

    python -m services.admin keys create alice --name laptop [--service] [--rate-limit 60]
    python -m services.admin keys list [--user alice]
    python -m services.admin keys revoke <key id>

The secret of a new key is printed once; only its hash is stored.
"""

from __future__ import annotations

import argparse
import sys

from services.auth import ApiKeyStore
from services.config import ConfigError, Settings
from services.db import open_pool
from services.embeddings import embedding_spec
from services.errors import AppError
from services.migrate import migrate

EPILOG = """\
Examples:
  .venv/bin/python -m services.admin keys create alice --name laptop
  .venv/bin/python -m services.admin keys list --user alice
  .venv/bin/python -m services.admin keys revoke 3f2c...

Uses the configured database (DATABASE_URL, or the embedded one under DATA_DIR)."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.admin",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="area", required=True)
    keys = commands.add_parser("keys", help="API keys").add_subparsers(dest="action", required=True)
    create = keys.add_parser("create", help="create a key and print its secret once")
    create.add_argument("user_id")
    create.add_argument("--name", default="")
    create.add_argument("--service", action="store_true", help="may act for its own users")
    create.add_argument("--rate-limit", type=int, help="requests per minute for this key")
    listing = keys.add_parser("list", help="list keys (never their secrets)")
    listing.add_argument("--user")
    revoke = keys.add_parser("revoke", help="revoke a key at once")
    revoke.add_argument("key_id")
    args = parser.parse_args(argv)

    try:
        settings = Settings.from_env()
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    pool = open_pool(settings)
    try:
        migrate(pool, *embedding_spec(settings), settings.hnsw_index)
        store = ApiKeyStore(pool)
        if args.action == "create":
            key, secret = store.create(
                args.user_id,
                name=args.name,
                service=args.service,
                rate_limit_per_minute=args.rate_limit,
            )
            print(f"key {key.id} for {key.user_id}{' (service)' if key.service else ''}")
            print(f"secret (shown once): {secret}")
        elif args.action == "list":
            for key in store.list(args.user):
                state = f"revoked {key.revoked_at:%Y-%m-%d}" if key.revoked_at else "active"
                print(f"{key.id}  {key.user_id}  {key.name or '-'}  {state}")
        else:
            key = store.revoke(args.key_id)
            print(f"revoked {key.id} of {key.user_id}")
    except AppError as error:
        print(f"error: {error.message}", file=sys.stderr)
        return 1
    finally:
        pool.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
