"""Entry points only.

- ``app``: the Cloud Run service (``gunicorn main:app``).
- ``embed_memories``: Pub/Sub CloudEvent function; embeds the memories named in a message.
- ``embed_memories_sweep``: HTTP function for Cloud Scheduler; embeds everything pending.
- ``apply_retention``: HTTP function for Cloud Scheduler; the daily retention sweep.

Nothing connects at import: the functions share one runtime per process, built on their
first call, and ``app`` is built when gunicorn (or anyone) first asks for it, so a
function process never builds the web service's runtime.
"""

from functools import cache

import functions_framework
from flask import Flask

from functions.common import ProcessRuntime
from functions.embed import pubsub_handler, sweep_handler
from functions.retention import retention_handler
from services.app import create_app

_runtime = ProcessRuntime.from_env()
embed_memories = functions_framework.cloud_event(pubsub_handler(_runtime))
embed_memories_sweep = functions_framework.http(sweep_handler(_runtime))
apply_retention = functions_framework.http(retention_handler(_runtime))


@cache
def _app() -> Flask:
    return create_app()


def __getattr__(name: str) -> Flask:
    if name == "app":
        return _app()
    raise AttributeError(f"module 'main' has no attribute {name!r}")
