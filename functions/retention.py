"""``apply_retention``: the daily retention sweep as an HTTP function for Cloud Scheduler.

Requires the scheduler's OIDC token. Runs deletion requests, then the policy over users in
chunks until done or out of its time budget (``RETENTION_TIME_BUDGET_SECONDS``, kept below
the function's timeout); the next run resumes where this one stopped. Replies 200 with the
run's counts (``complete`` false means "resumes next run"), 500 if the run failed.
"""

from __future__ import annotations

import logging

import flask

from functions.common import LazyVerifier, RuntimeFactory, VerifierFactory, json_reply, named
from services.oidc import make_verifier
from services.retention import RetentionJob, default_policy, run_retention
from services.runtime import Runtime

log = logging.getLogger(__name__)


def retention_job(runtime: Runtime) -> RetentionJob:
    settings = runtime.settings
    return RetentionJob(
        pool=runtime.pool,
        archive=runtime.archive,
        threads=runtime.threads,
        defaults=default_policy(settings),
        embedding_model=runtime.embedder.model,
        batch_users=settings.retention_batch_users,
        pause_ratio=settings.retention_pause_ratio,
    )


def retention_handler(
    runtime: RuntimeFactory,
    verifier: VerifierFactory = make_verifier,
    name: str = "apply_retention",
):
    gate = LazyVerifier(runtime, verifier)

    def handle(request: flask.Request) -> flask.Response:
        rejected = gate.check(request)
        if rejected is not None:
            return rejected
        current = runtime()
        try:
            report = run_retention(
                retention_job(current),
                budget_seconds=current.settings.retention_time_budget_seconds,
            )
        except Exception as error:
            log.exception("retention run failed")
            body = {"code": "retention_failed", "message": type(error).__name__}
            return json_reply({"error": body}, 500)
        return json_reply(report.as_dict())

    return named(name, handle)
