"""Progress of long operations run by hand (re-embedding, migrations, retention sweeps,
benchmark loads): a bar on a terminal, a line every few seconds otherwise (a log file, CI,
a Cloud Run job).

Only commands create a reporter. Library code never imports this module: it takes the
plain ``Progress`` callback, ``progress(done, total)``, and reports how far it has come.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

Progress = Callable[[int, int | None], None]
"""``progress(done, total)``: ``done`` items so far of ``total`` (None while unknown)."""


@contextmanager
def reporter(
    label: str,
    *,
    unit: str = "rows",
    total: int | None = None,
    stream: TextIO | None = None,
    every_s: float = 10.0,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[Progress]:
    """Yield a ``Progress`` callback that draws a bar on a terminal, or else writes
    ``label: done/total unit (pct), rate, elapsed`` at most every ``every_s`` seconds and
    once more at the end if any was written: quick work and empty work show nothing."""
    out = stream or sys.stderr
    tty = out.isatty()
    started = clock()
    state: dict = {"done": 0, "total": total, "shown": started, "bar": None}

    def line() -> str:
        done, of = state["done"], state["total"]
        elapsed = max(clock() - started, 1e-9)
        share = f"/{of} {unit} ({100 * done / of:.0f}%)" if of else f" {unit}"
        return f"{label}: {done}{share}, {done / elapsed:.0f} {unit}/s, {elapsed:.0f} s\n"

    def report(done: int, now_total: int | None = None) -> None:
        state["done"] = done
        if now_total is not None:
            state["total"] = now_total
        if not (state["done"] or state["total"]):
            return
        if tty:
            bar = state["bar"]
            if bar is None:
                from tqdm import tqdm

                bar = state["bar"] = tqdm(
                    total=state["total"], desc=label, unit=f" {unit}", file=out, dynamic_ncols=True
                )
            if state["total"] != bar.total:
                bar.total = state["total"]
            bar.update(done - bar.n)
        elif clock() - state["shown"] >= every_s:
            state["shown"] = clock()
            out.write(line())
            out.flush()

    try:
        yield report
    finally:
        if state["bar"] is not None:
            state["bar"].close()
        elif state["shown"] != started:
            out.write(line())
            out.flush()
