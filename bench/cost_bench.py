"""Cost per conversation turn, from the usage rows of a scripted conversation set.

    .venv/bin/python -m bench.cost_bench [--users 6 --turns 8 --memories 60]

The real agent runs the same scripted conversations four times against the wire-level
Anthropic fake (which models the prompt cache: the tools and instructions before the last
``cache_control`` breakpoint are written once and read after that): with and without
prompt caching, and with the memory budget (AGENT_TOP_K / AGENT_MEMORY_TOKEN_BUDGET
defaults) or without trimming (50 memories, no budget). Each user starts with
``--memories`` memories; every third turn the model saves one. Tokens and USD per turn
come from the usage rows the agent wrote, priced by services/llm/pricing.py (Claude
Sonnet: 3 / 15 USD per million input / output tokens, cache reads 0.30, writes 3.75).

The fake counts words, not tokenizer tokens (English runs ~1.3 tokens a word), so the
absolute figures are a lower bound; the ratios between the configurations are the point.
Printed beside the planning estimate: 200 input + 100 output tokens, about $0.002 a turn.
"""

from __future__ import annotations

import argparse
import json
import uuid
import warnings
from pathlib import Path

from bench.lifetime import Run, cleanup
from services.agent import Agent, AgentConfig
from services.config import Settings
from services.db import open_pool
from services.embeddings import CachedQueryEmbedder, LocalEmbedder, embedding_spec
from services.llm import AnthropicProvider, OfflineProvider, Router
from services.llm.pricing import cost_usd
from services.llm.types import Usage
from services.memories.records import NewMemory
from services.memories.store import MemoryStore
from services.migrate import migrate
from services.threads import ThreadStore
from services.usage import UsageRecorder
from tests.agent_turns import respond
from tests.fakes.llm_server import FakeLLMServer, Reply, ToolUse

OUT = Path(__file__).resolve().parent / "out"
MODEL = "claude-sonnet-4-5-20250929"
PLANNING_ESTIMATE = {"input_tokens": 200, "output_tokens": 100}
MESSAGES = [
    "I just got back from a hiking trip in the Alps, what should I pack next time?",
    "Can you remind me what I told you about my sister's wedding plans?",
    "I'm trying to cook more vegetarian food this month, any ideas for dinner?",
    "My manager wants a report on our Q3 numbers, how should I structure it?",
    "What was the name of the book I said I was reading last week?",
    "I'm feeling stressed about moving apartments, any tips to stay organised?",
    "Do you remember which programming language I'm learning?",
    "Plan a weekend in Lisbon for me, keeping in mind what I like.",
]
ANSWER = (
    "Here is a short, practical answer that takes what you told me before into account, "
    "with two or three concrete suggestions and one question back to you."
)
TOPICS = ["hiking", "cooking", "Lisbon", "books", "Python", "moving", "work", "family"]


def scripted_turn(fake: FakeLLMServer, turn: int) -> None:
    if turn % 3 == 2:
        fake.script(
            "anthropic",
            Reply(
                text="",
                tool_calls=[
                    ToolUse(
                        "upsert_memory",
                        {"content": f"Mentioned {TOPICS[turn % 8]} again", "context": "chat"},
                    )
                ],
            ),
            Reply(text=ANSWER),
        )
    else:
        fake.script("anthropic", Reply(text=ANSWER))


def run_config(
    pool, embedder, *, caching: bool, trimmed: bool, users: int, turns: int, memories: int
) -> dict[str, float]:
    store = MemoryStore(pool, embedder)
    usage = UsageRecorder(pool)
    config = AgentConfig() if trimmed else AgentConfig(top_k=50, memory_token_budget=1_000_000)
    with FakeLLMServer(prompt_caching=True) as fake:
        provider = AnthropicProvider(
            "bench", models=[MODEL], base_url=fake.anthropic_base_url, prompt_caching=caching
        )
        agent = Agent(
            store, ThreadStore(pool), Router([provider], fallback=OfflineProvider()), usage,
            config=config,
        )  # fmt: skip
        names = []
        for u in range(users):
            user = f"cost-{uuid.uuid4().hex[:8]}"
            names.append(user)
            texts = [
                f"The user mentioned {TOPICS[i % 8]} in detail (note {i})" for i in range(memories)
            ]  # noqa: E501
            vectors = embedder.embed_documents(texts)
            store.add_many(user, [NewMemory(t, embedding=v) for t, v in zip(texts, vectors)])
            thread_id = None
            for turn in range(turns):
                scripted_turn(fake, turn + u)
                result = respond(agent, user, thread_id, MESSAGES[(turn + u) % len(MESSAGES)])
                thread_id = result.final.thread_id
    with pool.transaction() as tx:
        row = tx.one(
            "SELECT count(DISTINCT request_id), sum(input_tokens), sum(output_tokens), "
            "sum(cache_read_tokens), sum(cache_write_tokens), sum(cost_usd), count(*) "
            "FROM usage WHERE user_id = ANY(%s::text[]) AND kind = 'chat'",
            [names],
        )
    n_turns, tin, tout, cread, cwrite, cost, calls = row
    per = float(n_turns)
    return {
        "turns": int(n_turns),
        "model_calls_per_turn": round(calls / per, 2),
        "input_tokens": round(int(tin) / per, 1),
        "cache_read_tokens": round(int(cread) / per, 1),
        "cache_write_tokens": round(int(cwrite) / per, 1),
        "output_tokens": round(int(tout) / per, 1),
        "usd_per_turn": round(float(cost) / per, 6),
    }


DESCRIPTION = """\
Cost per chat turn: the real agent runs the same scripted conversations four times
against a fake Anthropic model that bills like the real one (prompt caching included):
with and without caching, with the memory budget and without trimming. Tokens and USD per
turn come from the usage rows the agent wrote. Writes bench/out/cost_bench.json."""

EPILOG = """\
Examples:
  .venv/bin/python -m bench.cost_bench
  .venv/bin/python -m bench.cost_bench --users 12 --turns 10

The fake counts words, not tokens (a lower bound); the ratios are the point."""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.cost_bench",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--users", type=int, default=6, help="users per configuration (6)")
    parser.add_argument("--turns", type=int, default=8, help="turns per user (8)")
    parser.add_argument("--memories", type=int, default=60, help="memories per user (60)")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore", DeprecationWarning)
    with cleanup() as scope:
        rows = measure(args, scope)
    write(rows)


def measure(args: argparse.Namespace, scope: Run) -> dict:
    data_dir = scope.tempdir("cost-bench-")
    scope.postgres(data_dir / "pg")
    settings = Settings(data_dir=str(data_dir), embed_in_process=False)
    pool = open_pool(settings)
    scope.callback(pool.close)
    migrate(pool, *embedding_spec(settings), settings.hnsw_index)
    embedder = CachedQueryEmbedder(LocalEmbedder())
    rows = {}
    for caching in (False, True):
        for trimmed in (False, True):
            trim = "trimmed to the budget" if trimmed else "all 50"
            label = f"caching {'on' if caching else 'off'}, memories {trim}"
            rows[label] = run_config(
                pool, embedder, caching=caching, trimmed=trimmed, users=args.users,
                turns=args.turns, memories=args.memories,
            )  # fmt: skip
            print(label, json.dumps(rows[label]), flush=True)
    return rows


def write(rows: dict) -> None:
    planned = cost_usd(MODEL, Usage(**PLANNING_ESTIMATE)).usd
    rows["planning estimate (200 in + 100 out)"] = {
        "input_tokens": 200,
        "output_tokens": 100,
        "usd_per_turn": round(planned, 6),
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "cost_bench.json").write_text(json.dumps(rows, indent=2))
    header = f"{'in':>8}{'cache rd':>10}{'cache wr':>10}{'out':>7}{'USD/turn':>11}"
    print(f"\n{'configuration':<48}{header}")
    for label, row in rows.items():
        print(
            f"{label:<48}{row['input_tokens']:>8}{row.get('cache_read_tokens', 0):>10}"
            f"{row.get('cache_write_tokens', 0):>10}{row['output_tokens']:>7}"
            f"{row['usd_per_turn']:>11.6f}"
        )


if __name__ == "__main__":
    main()
