"""Operator commands: API keys.

    python -m services.admin keys create alice --name laptop [--service] [--rate-limit 60]
    python -m services.admin keys generate
    python -m services.admin keys add-hash alice <key id>:<sha256> [--name ...] [--service]
    python -m services.admin keys list [--user alice]
    python -m services.admin keys revoke <key id>

"create" prints the secret of a new key once; only its hash is stored. Where the database
is out of reach and whatever a command prints is logged (Cloud SQL on a private IP, reached
by a Cloud Run job), split it in two: "generate" makes a key on your own machine without
touching any database and prints it with its hash; "add-hash" stores the hash, so the
secret never leaves your machine. Inside a Cloud Run job, "create" and "generate" refuse to
run, because their output would put the secret into Cloud Logging.

Examples:
    python -m services.admin keys generate
    gcloud run jobs execute memory-agent-admin --region=us-central1 --wait \\
        --args=keys,add-hash,alice,0123456789abcdef:<64 hex digits>
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping

from services.auth import ApiKeyStore, new_key
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
  .venv/bin/python -m services.admin keys generate      # for the cloud: key + hash, no database

Uses the configured database (DATABASE_URL, or the embedded one under DATA_DIR)."""

# Cloud Run sets this in every task of a job execution.
CLOUD_RUN_JOB_ENV = "CLOUD_RUN_JOB"
PRINTS_A_SECRET = {"create", "generate"}


def main(argv: list[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    args = _parser().parse_args(argv)
    if args.action in PRINTS_A_SECRET and env.get(CLOUD_RUN_JOB_ENV):
        print(
            f"error: keys {args.action} prints a secret, and this Cloud Run job's output goes "
            "to Cloud Logging. Run `python -m services.admin keys generate` on your own "
            "machine and give this job only the hash: keys add-hash USER HASH",
            file=sys.stderr,
        )
        return 2
    if args.action == "generate":
        secret, key_hash = new_key()
        print(f"key:  {secret}")
        print(f"hash: {key_hash}")
        print(
            "Keep the key: it is shown once and stored nowhere. Store the hash with\n"
            f"  python -m services.admin keys add-hash USER {key_hash}",
            file=sys.stderr,
        )
        return 0

    try:
        settings = Settings.from_env(env)
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
        elif args.action == "add-hash":
            key = store.add(
                args.user_id,
                args.hash,
                name=args.name,
                service=args.service,
                rate_limit_per_minute=args.rate_limit,
            )
            print(f"key {key.id} for {key.user_id}{' (service)' if key.service else ''} added")
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


def _parser() -> argparse.ArgumentParser:
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
    _key_options(create)
    keys.add_parser("generate", help="print a new key and its hash; touches no database")
    add = keys.add_parser("add-hash", help="store a key from the hash that keys generate printed")
    add.add_argument("user_id")
    add.add_argument("hash", help="<key id>:<sha256>, as printed by keys generate")
    _key_options(add)
    listing = keys.add_parser("list", help="list keys (never their secrets)")
    listing.add_argument("--user")
    revoke = keys.add_parser("revoke", help="revoke a key at once")
    revoke.add_argument("key_id")
    return parser


def _key_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", default="")
    parser.add_argument("--service", action="store_true", help="may act for its own users")
    parser.add_argument("--rate-limit", type=int, help="requests per minute for this key")


if __name__ == "__main__":
    sys.exit(main())
