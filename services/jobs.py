"""Background jobs run by hand (``python -m services.jobs``), with a progress bar: embed
every pending memory now (after switching embedding models, say), or run the retention
sweep now. The service, the Cloud Functions and this command run the same job code."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import replace

from functions.retention import retention_job
from services.config import ConfigError, Settings
from services.embedding_worker import embed_pending
from services.embeddings import duplicate_threshold
from services.progress import Progress, reporter
from services.retention import run_retention
from services.runtime import Runtime, build_runtime
from services.telemetry import configure_logging

DESCRIPTION = """\
Run a background job now, in this process, with a progress bar (a line every few seconds
when the output is not a terminal). Ctrl-C stops it safely: what is done stays done, and
the rest is picked up by the next run or by the service's own workers.

  embed       embed every memory that has no vector yet (after switching the embedding
              model with python -m services.migrate --reembed, or a long outage of the
              embedding provider)
  retention   apply the retention policy to every user now (expired and old memories,
              idle conversations, pending erasure requests), instead of waiting for the
              daily run"""

EPILOG = """\
Examples:
  .venv/bin/python -m services.jobs embed
  .venv/bin/python -m services.jobs retention
  DATABASE_URL=postgresql://... .venv/bin/python -m services.jobs retention --pause-ratio 0

Prints a one-line summary when done."""


def embed_all(runtime: Runtime, progress: Progress) -> tuple[int, int]:
    """Embed pending memories batch by batch until none is left; (embedded, merged)."""
    settings = runtime.settings
    threshold = duplicate_threshold(settings, runtime.embedder.model)
    embedded = merged = 0
    while True:
        with runtime.pool.transaction() as tx:
            left = int(tx.value("SELECT count(*) FROM memories WHERE embedding IS NULL"))
        progress(embedded, embedded + left)
        if left == 0:
            return embedded, merged
        run = embed_pending(
            runtime.pool,
            runtime.embedder,
            batch_size=settings.embed_batch_size,
            duplicate_threshold=threshold,
        )
        if run.embedded == 0:  # the rest is locked by another worker right now
            return embedded, merged
        embedded += run.embedded
        merged += run.merged


def count_users(runtime: Runtime) -> int:
    with runtime.pool.transaction() as tx:
        return int(
            tx.value(
                "SELECT count(*) FROM "
                "(SELECT user_id FROM memories UNION SELECT user_id FROM threads) AS users"
            )
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.jobs",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    jobs = parser.add_subparsers(dest="job", required=True, metavar="{embed,retention}")
    jobs.add_parser(
        "embed",
        help="embed every memory that has no vector yet",
        description="Embed every memory that has no vector yet, in batches.",
        epilog="Example:\n  .venv/bin/python -m services.jobs embed",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sweep = jobs.add_parser(
        "retention",
        help="apply the retention policy to every user now",
        description="Apply the retention policy to every user now, a chunk of users at a "
        "time, resting between chunks so that chat stays fast.",
        epilog="Example:\n  .venv/bin/python -m services.jobs retention --pause-ratio 0",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sweep.add_argument(
        "--pause-ratio",
        type=float,
        default=None,
        help="rest this many times as long as each chunk took (default: "
        "RETENTION_PAUSE_RATIO, 1; 0 runs flat out)",
    )
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    configure_logging(settings)
    runtime = build_runtime(settings, start_worker=False)
    try:
        if args.job == "embed":
            with reporter("embedding", unit="memories") as progress:
                embedded, merged = embed_all(runtime, progress)
            print(f"embedded {embedded} memories ({merged} folded into duplicates)")
            return 0
        job = retention_job(runtime)
        if args.pause_ratio is not None:
            job = replace(job, pause_ratio=max(args.pause_ratio, 0.0))
        with reporter("retention", unit="users", total=count_users(runtime)) as progress:
            report = run_retention(job, budget_seconds=float("inf"), progress=progress)
        print(json.dumps(report.as_dict()))
        return 0 if report.complete else 1
    except KeyboardInterrupt:
        print("stopped; the next run carries on from here", file=sys.stderr)
        return 130
    finally:
        runtime.close()


if __name__ == "__main__":
    sys.exit(main())
