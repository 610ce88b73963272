"""Agent overhead per turn: everything the agent does except waiting for the model.

The real agent, the real stores on an embedded PostgreSQL (or ``BENCH_DATABASE_URL``), the
local embedder, and the real Anthropic SDK talking to the wire fake, which answers after a
fixed latency (default 300 ms to first byte). One user with ``--memories`` memories; turns
come in threads of ``--thread-length`` messages (so history loading is measured too) and
every ``--tool-every``-th turn the model writes a memory (a second model call). Each
message is different, so the query embedding is computed every time (no cache hits).

    .venv/bin/python -m bench.agent_bench [--turns 60] [--latency-ms 300]

Prints p50/p95/max in milliseconds for thread load, retrieval (of which query embedding),
prompt build, tools, persistence, the total overhead (their sum), time to first token and
wall time per turn. Target: overhead p95 < 25 ms.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.lifetime import Run, cleanup
from services.agent import Agent, AgentConfig, Latency  # noqa: E402
from services.config import Settings  # noqa: E402
from services.db import open_pool  # noqa: E402
from services.embeddings import CachedQueryEmbedder, LocalEmbedder, embedding_spec  # noqa: E402
from services.llm import AnthropicProvider, OfflineProvider, Router  # noqa: E402
from services.memories.records import NewMemory  # noqa: E402
from services.memories.store import MemoryStore  # noqa: E402
from services.migrate import migrate  # noqa: E402
from services.threads import ThreadStore  # noqa: E402
from services.usage import UsageRecorder  # noqa: E402
from tests.agent_turns import respond  # noqa: E402
from tests.fakes.llm_server import FakeLLMServer, Reply, ToolUse  # noqa: E402

TOPICS = [
    "hiking in the Alps", "sourdough baking", "a trip to Kyoto", "learning the cello",
    "my sister Ana", "the new job at the bank", "running a half marathon", "vegetarian food",
    "the cat called Miso", "reading Borges", "moving to Lisbon", "a cheap flight to Rome",
    "my dentist appointment", "the garden tomatoes", "chess openings", "a python project",
]  # fmt: skip
FIELDS = [
    "thread_load_ms",
    "retrieval_ms",
    "embedding_ms",
    "prompt_build_ms",
    "tools_ms",
    "persistence_ms",
    "overhead_ms",
    "first_token_ms",
    "total_ms",
]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def seed(store: MemoryStore, embedder: CachedQueryEmbedder, user: str, count: int) -> None:
    texts = [f"User talked about {TOPICS[i % len(TOPICS)]} (note {i})" for i in range(count)]
    vectors = embedder.embed_documents(texts)
    store.add_many(
        user, [NewMemory(t, context="seed", embedding=v) for t, v in zip(texts, vectors)]
    )


def run(args: argparse.Namespace, scope: Run) -> list[Latency]:
    warnings.simplefilter("ignore", DeprecationWarning)  # the card model's SDK warning
    data_dir = scope.tempdir("agent-bench-")
    settings = Settings(
        data_dir=str(data_dir),
        database_url=os.environ.get("BENCH_DATABASE_URL", ""),
        embed_in_process=False,
    )
    if not settings.database_url:
        scope.postgres(data_dir / "pg")
    pool = open_pool(settings)
    scope.callback(pool.close)
    model, dim = embedding_spec(settings)
    migrate(pool, model, dim, settings.hnsw_index)
    embedder = CachedQueryEmbedder(LocalEmbedder())
    store = MemoryStore(pool, embedder)
    user = f"bench-{int(time.time())}"
    seed(store, embedder, user, args.memories)
    results: list[Latency] = []
    with FakeLLMServer(latency_s=args.latency_ms / 1000) as fake:
        fake.default_reply = Reply(text="Sure, here is a short answer about that topic.")
        router = Router(
            [AnthropicProvider("bench", base_url=fake.anthropic_base_url, timeout=10)],
            fallback=OfflineProvider(),
        )
        agent = Agent(store, ThreadStore(pool), router, UsageRecorder(pool), config=AgentConfig())
        # warm-up: model load, connections, first queries
        for i in range(3):
            respond(agent, user, None, f"warm up {i}")
        thread_id = None
        for i in range(args.turns):
            if i % args.thread_length == 0:
                thread_id = None
            if args.tool_every and i % args.tool_every == args.tool_every - 1:
                fake.script(
                    "anthropic",
                    Reply(
                        text="Noted. ",
                        tool_calls=[
                            ToolUse("upsert_memory", {"content": f"Fact {i}", "context": "bench"})
                        ],
                    ),
                    Reply(text="Saved."),
                )
            topic = TOPICS[(i * 7) % len(TOPICS)]
            result = respond(agent, user, thread_id, f"Turn {i}: what do you know about {topic}?")
            thread_id = result.final.thread_id
            results.append(result.final.latency)
    return results


def report(results: list[Latency], args: argparse.Namespace) -> str:
    lines = [
        f"agent overhead over {len(results)} turns (model first byte after "
        f"{args.latency_ms:.0f} ms; {args.memories} memories; threads of "
        f"{args.thread_length}; a memory write every {args.tool_every} turns)",
        f"{'part':<16}{'p50':>9}{'p95':>9}{'max':>9}{'mean':>9}   (ms)",
    ]
    for name in FIELDS:
        values = [getattr(r, name) for r in results if getattr(r, name) is not None]
        lines.append(
            f"{name.removesuffix('_ms'):<16}{percentile(values, 50):>9.2f}"
            f"{percentile(values, 95):>9.2f}{max(values):>9.2f}{statistics.fmean(values):>9.2f}"
        )
    without = [r.overhead_ms - r.embedding_ms for r in results]
    lines.append(
        f"{'overhead-embed':<16}{percentile(without, 50):>9.2f}{percentile(without, 95):>9.2f}"
        f"{max(without):>9.2f}{statistics.fmean(without):>9.2f}"
        "   (agent code + database; the query embedding is a provider call in production)"
    )
    for label, values in (("overhead", [r.overhead_ms for r in results]), ("without", without)):
        p95 = percentile(values, 95)
        verdict = "meets" if p95 < 25 else "MISSES"
        lines.append(f"{label} p95 {p95:.2f} ms {verdict} the 25 ms target")
    return "\n".join(lines)


DESCRIPTION = """\
The agent's own time per chat turn: everything it does except waiting for the language
model (loading the conversation, finding memories, building the prompt, tools, saving),
with a fake model that answers after a fixed delay. Prints p50/p95/max per step."""

EPILOG = """\
Examples:
  .venv/bin/python -m bench.agent_bench
  .venv/bin/python -m bench.agent_bench --turns 200 --latency-ms 50

Runs on a temporary embedded PostgreSQL (or BENCH_DATABASE_URL), removed at the end."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.agent_bench",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--turns", type=int, default=60, help="turns measured (60)")
    parser.add_argument(
        "--latency-ms", type=float, default=300.0, help="the fake model's time to answer (300)"
    )
    parser.add_argument("--memories", type=int, default=60, help="memories the user has (60)")
    parser.add_argument("--thread-length", type=int, default=5, help="turns per conversation (5)")
    parser.add_argument(
        "--tool-every", type=int, default=5, help="every Nth turn saves a memory (5; 0: never)"
    )
    args = parser.parse_args(argv)
    with cleanup() as scope:
        print(report(run(args, scope), args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
