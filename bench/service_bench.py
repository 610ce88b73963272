"""Service-level benchmark: cold start, and concurrent streaming chats against gunicorn.

    .venv/bin/python -m bench.service_bench                      # 64 streams for 60 s
    .venv/bin/python -m bench.service_bench --streams 16 --seconds 20

Everything is real and local: the embedded PostgreSQL, gunicorn serving main:app with
gunicorn.conf.py, and the wire-level Anthropic fake in its own process answering after a
fixed time to first token (300 ms by default). The load comes from a third process: this
one, an asyncio client holding ``--streams`` chats open at once, each starting the next
turn as soon as its stream ends.

Reported: cold start (process start to the first 200 on /readyz), turns/s, time to first
byte and to the first text token (p50/p95/p99), the server's own overhead per turn (the
``overhead_ms`` of each final event: everything but the model), errors, the peak RSS of
gunicorn's processes, and the CPU per turn: the gunicorn workers' own CPU seconds (user +
system, from the kernel's accounting) over the load, divided by the turns served. Unlike the
latency percentiles that figure barely moves when other work shares the machine.

Memories are on (retrieval, episodes, tools), local embedding is not: the in-process
embedding worker is off (episodes stay pending) and the one query text is embedded once, so
the CPU figure is the chat path's own. ``--profile`` also samples the worker with py-spy
(``--gil``: only the thread holding the GIL, i.e. where the CPU goes) and prints the samples
split by phase; sampling pauses the worker, so take CPU and latency from a run without it.
Writes bench/out/service_bench.json (and bench/out/service_profile.txt, py-spy's collapsed
stacks, with ``--profile``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from bench.lifetime import cleanup
from services.auth import ApiKeyStore
from services.config import Settings
from services.db import embedded_socket, open_pool
from services.embeddings import embedding_spec
from services.migrate import migrate
from services.progress import reporter
from tests.processes import free_port, make_database_url

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"


@dataclass
class Results:
    ttfb_ms: list[float] = field(default_factory=list)
    first_token_ms: list[float] = field(default_factory=list)
    total_ms: list[float] = field(default_factory=list)
    overhead_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


def summary(values: list[float]) -> dict[str, float]:
    return {
        "p50": percentile(values, 0.50),
        "p95": percentile(values, 0.95),
        "p99": percentile(values, 0.99),
        "n": len(values),
    }


def wait_for(url: str, timeout: float = 120) -> float:
    """Seconds until ``url`` answers 200."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return time.perf_counter() - started
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


async def one_turn(port: int, secret: str, thread_id: str | None, results: Results) -> str | None:
    body = {"message": "What do you remember about my plans?", "stream": True}
    if thread_id:
        body["thread_id"] = thread_id
    payload = json.dumps(body).encode()
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            (
                "POST /v1/chat HTTP/1.1\r\nHost: localhost\r\n"
                f"Authorization: Bearer {secret}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
            ).encode()
            + payload
        )
        await writer.drain()
        status = await reader.readline()
        if b" 200 " not in status:
            results.errors.append(status.decode().strip())
            return thread_id
        first_byte = None
        first_token = None
        final = None
        while line := await reader.readline():
            if first_byte is None and line.startswith(b"event:"):
                first_byte = time.perf_counter()
            if line.startswith(b"event: text") and first_token is None:
                first_token = time.perf_counter()
            if line.startswith(b"data: ") and b'"type":"final"' in line.replace(b" ", b""):
                final = json.loads(line[len(b"data: ") :])
        done = time.perf_counter()
    finally:
        writer.close()
    if final is None or first_byte is None:
        results.errors.append("stream ended without a final event")
        return thread_id
    if final.get("error"):
        results.errors.append(str(final["error"]))
    results.ttfb_ms.append((first_byte - started) * 1000)
    if first_token is not None:
        results.first_token_ms.append((first_token - started) * 1000)
    results.total_ms.append((done - started) * 1000)
    results.overhead_ms.append(float(final["latency"]["overhead_ms"]))
    return final["thread_id"]


async def stream_forever(port: int, secret: str, deadline: float, results: Results) -> None:
    thread_id = None
    turns = 0
    while time.perf_counter() < deadline:
        if turns % 5 == 0:
            thread_id = None  # a new conversation every few turns, like real users
        try:
            thread_id = await one_turn(port, secret, thread_id, results)
        except OSError as error:
            results.errors.append(f"{type(error).__name__}: {error}")
            await asyncio.sleep(0.1)
        turns += 1


async def load(port: int, secrets: list[str], seconds: float) -> tuple[Results, float]:
    results = Results()
    started = time.perf_counter()
    deadline = started + seconds
    await asyncio.gather(*(stream_forever(port, s, deadline, results) for s in secrets))
    return results, time.perf_counter() - started


def cpu_seconds(processes: list[psutil.Process]) -> float:
    """User + system CPU seconds the processes have used so far (their own threads)."""
    total = 0.0
    for process in processes:
        times = process.cpu_times()
        total += times.user + times.system
    return total


# Where a profile sample's CPU goes: the first rule matching a frame, from the innermost
# frame outwards, names its phase. Order matters only within one frame.
PHASES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("JSON", ("json/", "orjson")),
    ("logging", ("logging/",)),
    ("SQL driver (pg8000)", ("pg8000/", "scramp/")),
    ("SSE framing", ("sse_frame ", "_chat_frames ", "def frames ", "chunk_frame ")),
    ("SDK stream parsing", ("anthropic/", "openai/", "httpx", "httpcore", "pydantic", "h11/")),
    ("metrics", ("prometheus_client/",)),
    (
        "HTTP server (gunicorn, gevent, werkzeug, flask)",
        ("gunicorn/", "gevent/", "werkzeug/", "flask/"),
    ),
    ("our code", ("services/", "main.py")),
)


def phase_of(stack: str) -> str:
    """The phase of one collapsed py-spy stack (``fn (file:line);...``, outermost first)."""
    for frame in reversed(stack.split(";")):
        for phase, marks in PHASES:
            if any(mark in frame for mark in marks):
                return phase
    return "other (stdlib, threads, sockets)"


def phase_split(collapsed: str) -> dict[str, float]:
    """Percent of samples per phase, largest first, from py-spy's ``--format raw`` output."""
    counts: dict[str, int] = {}
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            phase = phase_of(stack)
            counts[phase] = counts.get(phase, 0) + int(count)
    total = sum(counts.values()) or 1
    ordered = sorted(counts.items(), key=lambda item: -item[1])
    return {phase: round(100 * n / total, 1) for phase, n in ordered}


def start_profiler(pids: list[int], seconds: float, out: Path) -> subprocess.Popen:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    [pid] = pids  # one worker: --profile needs WEB_CONCURRENCY=1
    return subprocess.Popen(
        [py_spy, "record", "--pid", str(pid), "--gil", "--format", "raw", "--rate", "200",
         "--duration", str(int(seconds)), "--output", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def peak_rss_mb(process: psutil.Process) -> float:
    family = [process, *process.children(recursive=True)]
    return sum(p.memory_info().rss for p in family if p.is_running()) / 2**20


DESCRIPTION = """\
Load test of the HTTP service: its cold start, then many streaming chats at once against
gunicorn serving the app, with a fake language model that answers after a fixed delay.
Everything runs on this machine (embedded PostgreSQL, gunicorn, the fake model) and is
stopped and removed at the end, also on Ctrl-C. Writes bench/out/service_bench.json."""

EPILOG = """\
Examples:
  .venv/bin/python -m bench.service_bench                  # 64 streams for 60 s
  .venv/bin/python -m bench.service_bench --streams 16 --seconds 20"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.service_bench",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--streams", type=int, default=64, help="chats open at once (64)")
    parser.add_argument("--seconds", type=float, default=60, help="how long to load (60)")
    parser.add_argument(
        "--latency-ms", type=float, default=300, help="the fake model's time to answer (300)"
    )
    parser.add_argument(
        "--threads", type=int, default=80, help="requests in flight per process (80)"
    )
    parser.add_argument(
        "--worker", choices=("gevent", "gthread"), default="gevent", help="worker class (gevent)"
    )
    parser.add_argument(
        "--warmup", type=float, default=5, help="seconds of load before measuring (5)"
    )
    parser.add_argument(
        "--profile", action="store_true", help="sample the worker with py-spy, split by phase"
    )
    args = parser.parse_args(argv)

    with cleanup() as run:
        workdir = run.tempdir("service-bench-")
        server = run.postgres(workdir / "pg")
        url = make_database_url(embedded_socket(server), f"bench_{uuid.uuid4().hex[:8]}")
        settings = Settings(database_url=url, embed_in_process=False)
        pool = open_pool(settings)
        run.callback(pool.close)
        migrate(pool, *embedding_spec(settings), settings.hnsw_index)
        keys = ApiKeyStore(pool)
        with reporter("creating users", unit="keys", total=args.streams) as progress:
            secrets = []
            for n in range(args.streams):
                secrets.append(keys.create(f"load-user-{n}")[1])
                progress(n + 1, None)

        llm_port = free_port()
        run.process(subprocess.Popen(
            [sys.executable, "-m", "tests.fakes.llm_server", "--port", str(llm_port),
             "--latency-ms", str(args.latency_ms)],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ))  # fmt: skip
        port = free_port()
        env = {
            **os.environ,
            "PORT": str(port),
            "DATABASE_URL": url,
            "ANTHROPIC_API_KEY": "sk-ant-bench",
            "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{llm_port}",
            "LLM_PROVIDERS": "anthropic",
            "GUNICORN_THREADS": str(args.threads),
            "GUNICORN_WORKER": args.worker,
            "RATE_LIMIT_PER_MINUTE": "1000000",
            "RATE_LIMIT_BURST": "1000000",
            "DB_POOL_SIZE": str(min(args.threads, 40)),
            "LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING"),
            "EMBED_IN_PROCESS": "false",
        }
        gunicorn = run.process(subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py", "main:app"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ))  # fmt: skip
        cold_start = wait_for(f"http://127.0.0.1:{port}/readyz")  # from process start
        process = psutil.Process(gunicorn.pid)
        rss_before = peak_rss_mb(process)
        peak = [rss_before]

        async def sample_rss() -> None:
            while True:
                peak.append(peak_rss_mb(process))
                await asyncio.sleep(0.5)

        async def run_load() -> tuple[Results, float]:
            sampler = asyncio.create_task(sample_rss())
            try:
                return await load(port, secrets, args.seconds)
            finally:
                sampler.cancel()

        # Warm-up, not counted: the provider SDKs finish importing on their thread and every
        # user's first request pays its key lookup, so CPU per turn is the steady state's.
        asyncio.run(load(port, secrets, args.warmup))
        workers = process.children()
        profile_out = OUT / "service_profile.txt"
        if args.profile:
            OUT.mkdir(parents=True, exist_ok=True)
            profiler = run.process(
                start_profiler([w.pid for w in workers], args.seconds, profile_out)
            )
        print(f"loading for {args.seconds:.0f} s with {args.streams} streams", file=sys.stderr)
        cpu_before = cpu_seconds(workers)
        results, elapsed = asyncio.run(run_load())
        cpu_used = cpu_seconds(workers) - cpu_before
        if args.profile:
            profiler.wait(timeout=60)

    report = {
        "streams": args.streams,
        "seconds": round(elapsed, 1),
        "model_latency_ms": args.latency_ms,
        "gunicorn_worker": args.worker,
        "gunicorn_threads": args.threads,
        "cold_start_s": round(cold_start, 2),
        "turns": len(results.total_ms),
        "turns_per_s": round(len(results.total_ms) / elapsed, 2),
        "ttfb_ms": summary(results.ttfb_ms),
        "first_token_ms": summary(results.first_token_ms),
        "total_ms": summary(results.total_ms),
        "server_overhead_ms": summary(results.overhead_ms),
        "errors": len(results.errors),
        "error_samples": sorted(set(results.errors))[:5],
        "cpu_ms_per_turn": round(1000 * cpu_used / len(results.total_ms), 2)
        if results.total_ms
        else None,
        "worker_cpu_s": round(cpu_used, 2),
        "peak_rss_mb": round(max(peak), 1),
        "idle_rss_mb": round(rss_before, 1),
        "cpus": os.cpu_count(),
        "mean_total_ms": round(statistics.fmean(results.total_ms), 1) if results.total_ms else None,
    }
    if args.profile and profile_out.exists():
        report["cpu_phases_percent"] = phase_split(profile_out.read_text())
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "service_bench.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
