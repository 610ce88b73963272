"""One table: every benchmark target beside the latest figure measured on this machine.

    .venv/bin/python -m bench.summary          # print what bench/out/ holds
    .venv/bin/python -m bench.summary --run    # run the service load test, the cold start
                                               # and the outbox throughput first (minutes)

Figures come from the JSON the benchmarks leave in bench/out/ (bench.store_bench,
bench.service_bench, bench.cost_bench, bench.jobs_bench, bench.compare_stores, and
bench.quality.locomo run with --json bench/out/quality_synthetic.json); a benchmark not
run here shows "not run", and docs/BENCHMARKS.md has the recorded figures.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.lifetime import cleanup

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"

Row = tuple[str, str, Callable[[dict[str, Any]], Any], Callable[[Any], bool] | None]


def _recall_ratio(report: dict[str, Any], baseline: str) -> float:
    recall = report["recall"]
    return round(recall["ours"]["overall"]["10"] / recall[baseline]["overall"]["10"], 3)


ROWS: list[tuple[str, list[Row]]] = [
    (
        "store_bench",
        [
            ("per-user vector search p95 at 1M", "< 2 ms",
             lambda r: r["large"]["vector"]["p95_ms"], lambda v: v < 2),
            ("per-user hybrid search p95 at 1M", "< 4 ms",
             lambda r: r["large"]["hybrid"]["p95_ms"], lambda v: v < 4),
            ("vector p95 1M / 10k", "<= 1.5",
             lambda r: r["vector_p95_ratio_large_vs_small"], lambda v: v <= 1.5),
            ("hybrid p95 1M / 10k", "<= 1.5",
             lambda r: r["hybrid_p95_ratio_large_vs_small"], lambda v: v <= 1.5),
            ("writes/s, embedding excluded", ">= 3000",
             lambda r: r["writes_per_s"], lambda v: v >= 3000),
            ("writes/s with the local embedder", "-",
             lambda r: r["writes_per_s_local_embedder"], None),
            ("thread load+append p95 (Redis)", "< 5 ms",
             lambda r: r["thread_load_append"]["p95_ms"], lambda v: v < 5),
        ],
    ),
    (
        "service_bench",
        [
            ("cold start to first /readyz 200", "< 2 s",
             lambda r: r["cold_start_s"], lambda v: v < 2),
            ("concurrent streams, errors", "64, 0",
             lambda r: f"{r['streams']}, {r['errors']}", None),
            ("turns/s with 300 ms model latency", "-", lambda r: r["turns_per_s"], None),
            ("server overhead p95", "< 30 ms",
             lambda r: r["server_overhead_ms"]["p95"], lambda v: v < 30),
            ("time to first byte p95", "-", lambda r: r["ttfb_ms"]["p95"], None),
            ("peak RSS (MB)", "-", lambda r: r["peak_rss_mb"], None),
        ],
    ),
    (
        "jobs_bench",
        [
            ("embedding batched / one at a time", "-",
             lambda r: r["embedding_throughput"]["speedup"], None),
            ("pending-to-embedded p95", "-",
             lambda r: r["outbox_latency"]["p95_ms"], None),
            ("search p95 during sweep / without", "<= 1.5",
             lambda r: r["retention"]["p95_ratio"], lambda v: v <= 1.5),
        ],
    ),
    (
        "compare_stores",
        [
            ("peer p95 / ours at 1M, warm", ">= 5",
             lambda r: r["target"]["warm_slower_peer_p95_over_ours_vector"], lambda v: v >= 5),
            ("peer p95 / ours at 1M, first touch", ">= 5",
             lambda r: r["target"]["first_slower_peer_p95_over_ours_vector"], lambda v: v >= 5),
            ("our recall@10 vs exact at 1M", "1.0",
             lambda r: r["target"]["ours_recall_at_10"], lambda v: v == 1.0),
        ],
    ),
    (
        "quality_synthetic",
        [
            ("evidence recall@10 ours / plain RRF", ">= 1.15",
             lambda r: _recall_ratio(r, "rrf"), lambda v: v >= 1.15),
            ("evidence recall@10 ours / vector", "> 1",
             lambda r: _recall_ratio(r, "vector"), lambda v: v > 1),
            ("evidence recall@10 ours / lexical", "> 1",
             lambda r: _recall_ratio(r, "lexical"), lambda v: v > 1),
        ],
    ),
    (
        "cost_bench",
        [
            ("USD per turn, caching on, trimmed", "~0.002",
             lambda r: r["caching on, memories trimmed to the budget"]["usd_per_turn"], None),
            ("USD per turn, caching off, all 50", "-",
             lambda r: r["caching off, memories all 50"]["usd_per_turn"], None),
        ],
    ),
]  # fmt: skip


def run(module: str, *args: str) -> None:
    """Run a benchmark in a child process; stopping this one stops it (and what it started)."""
    print(f"running {module} {' '.join(args)}", flush=True)
    with cleanup() as scope:
        child = scope.process(subprocess.Popen([sys.executable, "-m", module, *args], cwd=ROOT))
        if child.wait() != 0:
            raise SystemExit(f"{module} failed with exit status {child.returncode}")


def table() -> str:
    lines = [f"{'figure':<40}{'target':>14}{'measured':>16}  ", "-" * 76]
    for name, rows in ROWS:
        path = OUT / f"{name}.json"
        data = json.loads(path.read_text()) if path.exists() else None
        for label, target, get, ok in rows:
            try:
                value = get(data) if data is not None else None
            except (KeyError, TypeError):
                value = None
            shown = "not run" if value is None else str(value)
            verdict = "" if ok is None or value is None else ("met" if ok(value) else "MISSED")
            lines.append(f"{label:<40}{target:>14}{shown:>16}  {verdict}")
    return "\n".join(lines)


DESCRIPTION = """\
Print every benchmark target beside the latest figure measured on this machine (from
bench/out/), and whether it was met. With --run, first run the service load test (64
streaming chats for 60 s), the cold start and the outbox throughput; the other figures
come from their own benchmarks, run separately (see docs/BENCHMARKS.md)."""

EPILOG = """\
Examples:
  .venv/bin/python -m bench.summary
  .venv/bin/python -m bench.summary --run

Ctrl-C during --run stops the benchmark and everything it started."""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.summary",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--run", action="store_true", help="run the load test and outbox benchmark first"
    )
    args = parser.parse_args(argv)
    if args.run:
        run("bench.service_bench")
        jobs = OUT / "jobs_bench.json"
        earlier = json.loads(jobs.read_text()) if jobs.exists() else {}
        run("bench.jobs_bench", "--only", "embedding")
        # The retention sweep takes minutes and is not rerun here: keep its last figures.
        jobs.write_text(json.dumps(earlier | json.loads(jobs.read_text()), indent=2))
    print(table())
    if not any((OUT / f"{name}.json").exists() for name, _ in ROWS):
        print(
            "\nNo benchmark has been run on this machine yet (bench/out/ is empty). The "
            "recorded figures,\nwith the command of each, are in docs/BENCHMARKS.md; "
            "python -m bench.summary --run measures\nthe service here."
        )


if __name__ == "__main__":
    main()
