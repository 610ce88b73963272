"""Calibrates and checks the near-duplicate merge rule on labelled pairs.

    .venv/bin/python -m bench.quality.dedup
    .venv/bin/python -m bench.quality.dedup --pairs bench/quality/dedup_pairs.jsonl

Each pair of bench/quality/dedup_pairs.jsonl (English and Chinese, labelled ``same`` where a
person would call the two the same statement) is embedded with the deployment's embedding
model, as the outbox embeds memories, and judged by ``services.memories.dedup.same_statement``, the
function the outbox calls. Printed: the precision and recall of merging at the configured
rule, per language, then a grid of similarity and word-overlap thresholds, and the distinct
pairs the rule would merge (each one a write that would be lost).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from services.embeddings import DEFAULT_DUPLICATE_THRESHOLD, DUPLICATE_THRESHOLDS, Embedder
from services.memories.dedup import MergeRule, same_statement

PAIRS = Path(__file__).resolve().parent / "dedup_pairs.jsonl"


@dataclass(frozen=True)
class Pair:
    a: str
    b: str
    same: bool
    lang: str
    similarity: float = 0.0


def load_pairs(path: Path, embedder: Embedder) -> list[Pair]:
    raw = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    vectors = embedder.embed_documents([text for r in raw for text in (r["a"], r["b"])])
    pairs = []
    for index, r in enumerate(raw):
        similarity = float(np.dot(vectors[2 * index], vectors[2 * index + 1]))
        pairs.append(Pair(r["a"], r["b"], bool(r["same"]), r["lang"], similarity))
    return pairs


def score(pairs: Sequence[Pair], rule: MergeRule) -> dict[str, float | int]:
    merged = [p for p in pairs if same_statement(p.a, p.b, p.similarity, rule)]
    right = sum(p.same for p in merged)
    same = sum(p.same for p in pairs)
    return {
        "pairs": len(pairs),
        "merged": len(merged),
        "wrong_merges": len(merged) - right,
        "precision": round(right / len(merged), 3) if merged else 1.0,
        "recall": round(right / same, 3) if same else 1.0,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Example:\n  .venv/bin/python -m bench.quality.dedup",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--pairs", type=Path, default=PAIRS)
    args = parser.parse_args(argv)

    from services.config import Settings
    from services.embeddings import make_embedder

    embedder = make_embedder(Settings.from_env())
    pairs = load_pairs(args.pairs, embedder)
    threshold = DUPLICATE_THRESHOLDS.get(embedder.model, DEFAULT_DUPLICATE_THRESHOLD)
    rule = MergeRule(similarity=threshold)
    print(f"{len(pairs)} pairs, {sum(p.same for p in pairs)} labelled same; {embedder.model}")
    print(f"\nthe configured rule (similarity >= {rule.similarity}, same content words):")
    for lang in ("all", "en", "zh"):
        chosen = [p for p in pairs if lang == "all" or p.lang == lang]
        print(f"  {lang:>3}: {score(chosen, rule)}")
    print("\nby similarity threshold: precision / recall (wrong merges)")
    for similarity in (0.0, 0.8, 0.85, 0.9, 0.92, 0.94, 0.95, 0.96, 0.97):
        s = score(pairs, MergeRule(similarity))
        print(f"  {similarity:>5}: {s['precision']:.3f} / {s['recall']:.3f} ({s['wrong_merges']})")
    print("\nthe cosine alone (what merging by similarity does): precision / recall (wrong)")
    for similarity in (0.9, 0.95, 0.97, 0.99):
        merged = [p for p in pairs if p.similarity >= similarity]
        right = sum(p.same for p in merged)
        precision = right / len(merged) if merged else 1.0
        recall = right / max(1, sum(p.same for p in pairs))
        print(f"  {similarity:>5}: {precision:.3f} / {recall:.3f} ({len(merged) - right})")
    wrong = [p for p in pairs if not p.same and same_statement(p.a, p.b, p.similarity, rule)]
    print(f"\ndistinct pairs the configured rule merges: {len(wrong)}")
    for p in wrong:
        print(f"  {p.similarity:.3f}  {p.a!r}  /  {p.b!r}")
    missed = [p for p in pairs if p.same and not same_statement(p.a, p.b, p.similarity, rule)]
    print(f"same-statement pairs kept apart (no loss, only a duplicate): {len(missed)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
