"""Memory quality on long conversations, through the product: evidence recall@k of what
``GET /v1/memories/search`` serves, on any file in the LoCoMo format, and, when a language
model is configured, answer quality (the mem0 paper's LLM judge J, and token F1).

    .venv/bin/python -m bench.quality.locomo bench/quality/synthetic_locomo.json
    .venv/bin/python -m bench.quality.locomo PATH/locomo10.json --json out.json
    .venv/bin/python -m bench.quality.locomo PATH/locomo10.json --http http://localhost:8080

The LoCoMo release (CC BY-NC 4.0) is not in this repository: pass the path of its
``locomo10.json``, or of a directory of per-conversation JSON files as its zip unpacks.

Each conversation is loaded the way a user of the API would load it: one memory per turn
through the write path (``MemoryStore.upsert``, which ``POST /v1/memories`` calls; with
``--http``, the endpoint itself), content ``"Speaker: text"``, ``observed_at`` the session
date, metadata ``dia_id``, ``speaker``, ``session`` and ``position``. The embedding
outbox then embeds everything and merges what it judges the same statement, as it does
for users; the report counts the merges and the evidence turns lost to them. Every
question is then asked through ``services.retrieval.retrieve`` (the function the search
endpoint, the agent and its tools call; with ``--http``, the endpoint). Methods:

* ``e5``      the same embedding model over ``"Speaker: text"``, exact cosine (numpy);
* ``bm25``    BM25 (``bm25s``) over ``"Speaker: text"``: words and CJK bigrams, English
              stemming and stop words;
* ``e5+bm25`` their reciprocal-rank fusion (k=60, top 50 of each): the strongest simple
              alternative, and the floor the product must beat;
* ``ours``    the product's retrieval pipeline, plus ablations of its rules unless
              ``--no-ablations``.

Recall@k of a question is the share of its evidence turns among the top k (a memory that
absorbed a merged turn counts for it); "overall" averages categories 1-4 (category 5,
adversarial, is listed apart, as in the mem0 paper). Questions are also split in two by
their index (even: dev, on which the rules were tuned; odd: held out). Latency is per
question through the product path, the query embedding included.

With ANTHROPIC_API_KEY or OPENAI_API_KEY (or OPENAI_CHAT_BASE_URL) set, each question of
categories 1-4 is answered by the model from ``ours``'s top ``--answer-k`` memories and
graded by the model as CORRECT/WRONG against the gold answer (J), and by token F1.

Runs against the embedded PostgreSQL under bench/out/ (or DATABASE_URL). Embeddings are
computed once per distinct text per run (``--embedding-cache FILE`` keeps them across runs).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import json
import os
import re
import statistics
import string
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from services import lexical, retrieval
from services.db import Pool
from services.embedding_worker import drain
from services.embeddings import Embedder
from services.llm.types import ChatRequest, Message
from services.memories.store import MemoryStore
from services.turns import Turn

OUT = Path(__file__).resolve().parents[1] / "out"
DEFAULT_KS = (5, 10, 20)
CATEGORY_NAMES = {
    1: "multi-hop",
    2: "temporal",
    3: "open-domain",
    4: "single-hop",
    5: "adversarial",
}
SCORED_CATEGORIES = (1, 2, 3, 4)

# ---- the file format -----------------------------------------------------------------------


@dataclass(frozen=True)
class Question:
    sample_id: str
    index: int
    question: str
    answer: str | None
    evidence: tuple[str, ...]
    category: int
    adversarial_answer: str | None = None

    @property
    def split(self) -> str:
        return "dev" if self.index % 2 == 0 else "heldout"


@dataclass(frozen=True)
class Sample:
    sample_id: str
    speaker_a: str
    speaker_b: str
    turns: tuple[Turn, ...]
    questions: tuple[Question, ...]


_SESSION_KEY = re.compile(r"^session_(\d+)$")
_LOCOMO_DATE = re.compile(
    r"(?P<h>\d{1,2}):(?P<m>\d{2})\s*(?P<ampm>am|pm)\s+on\s+(?P<d>\d{1,2})\s+(?P<mon>[A-Za-z]+),?\s+(?P<y>\d{4})",
    re.IGNORECASE,
)


def parse_session_date(text: str | None) -> datetime | None:
    """'1:56 pm on 8 May, 2023' -> datetime (UTC); None when the text is not of that form."""
    if not text:
        return None
    match = _LOCOMO_DATE.search(text)
    if match:
        try:
            month = datetime.strptime(match["mon"][:3].title(), "%b").month
            hour = int(match["h"]) % 12 + (12 if match["ampm"].lower() == "pm" else 0)
            return datetime(
                int(match["y"]), month, int(match["d"]), hour, int(match["m"]), tzinfo=UTC
            )
        except ValueError:
            return None
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def normalise_dia_id(value: Any) -> str:
    return re.sub(r"\s+", "", str(value))


def _read_raw(path: Path) -> list[dict[str, Any]]:
    """The samples of a LoCoMo file (a list, or one sample object), or of a directory of
    per-conversation files (``{"speaker_a": ..., "session_1": ..., "qa": [...]}``)."""
    if path.is_dir():
        out = []
        for file in sorted(path.glob("*.json"), key=lambda p: (len(p.stem), p.stem)):
            raw = json.loads(file.read_text(encoding="utf-8"))
            if "conversation" not in raw:
                conversation = {k: v for k, v in raw.items() if k != "qa"}
                raw = {"sample_id": f"conv-{file.stem}", "conversation": conversation,
                       "qa": raw.get("qa", [])}  # fmt: skip
            out.append(raw)
        return out
    data = json.loads(path.read_text(encoding="utf-8"))
    return [data] if isinstance(data, dict) else data


def load_samples(path: str | Path) -> list[Sample]:
    """Samples of a LoCoMo-format file or directory (see ``_read_raw``)."""
    samples = []
    for number, raw in enumerate(_read_raw(Path(path))):
        conversation = raw["conversation"]
        sample_id = str(raw.get("sample_id", f"sample-{number}"))
        sessions = sorted(
            (int(m.group(1)), key) for key in conversation if (m := _SESSION_KEY.match(key))
        )
        turns: list[Turn] = []
        for session_number, key in sessions:
            when = parse_session_date(conversation.get(f"{key}_date_time"))
            for position, turn in enumerate(conversation[key] or []):
                text = str(turn.get("text", "")).strip()
                caption = turn.get("blip_caption")
                if caption:  # a shared image: LoCoMo gives its caption
                    text = f"{text} [shares a photo: {caption}]".strip()
                if not text:
                    continue
                turns.append(
                    Turn(
                        speaker=str(turn.get("speaker", "")),
                        text=text,
                        turn_id=normalise_dia_id(
                            turn.get("dia_id", f"D{session_number}:{position + 1}")
                        ),
                        session=str(session_number),
                        position=position,
                        when=when,
                    )
                )
        questions = []
        for index, qa in enumerate(raw.get("qa", [])):
            answer = qa.get("answer")
            questions.append(
                Question(
                    sample_id=sample_id,
                    index=index,
                    question=str(qa["question"]),
                    answer=None if answer is None else str(answer),
                    evidence=tuple(normalise_dia_id(e) for e in qa.get("evidence") or []),
                    category=int(qa.get("category", 0)),
                    adversarial_answer=qa.get("adversarial_answer"),
                )
            )
        samples.append(
            Sample(
                sample_id=sample_id,
                speaker_a=str(conversation.get("speaker_a", "")),
                speaker_b=str(conversation.get("speaker_b", "")),
                turns=tuple(turns),
                questions=tuple(questions),
            )
        )
    return samples


# ---- embeddings, cached per run ----------------------------------------------------------------


class CachingEmbedder:
    """Embeds each distinct passage or query once; optionally persisted to an .npz file."""

    def __init__(self, inner: Embedder, path: str | Path | None = None) -> None:
        self.inner = inner
        self.model = inner.model
        self.dim = inner.dim
        self.path = Path(path) if path else None
        self._cache: dict[str, np.ndarray] = {}
        self.computed = 0
        if self.path and self.path.exists():
            with np.load(self.path) as saved:
                self._cache = {key: saved[key] for key in saved.files}

    def _key(self, kind: str, text: str) -> str:
        return hashlib.sha256(f"{self.model}\x00{kind}\x00{text}".encode()).hexdigest()

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        keys = [self._key("passage", t) for t in texts]
        missing = list(dict.fromkeys(t for t, k in zip(texts, keys) if k not in self._cache))
        for start in range(0, len(missing), 32):
            batch = missing[start : start + 32]
            for text, vector in zip(batch, self.inner.embed_documents(batch)):
                self._cache[self._key("passage", text)] = vector
            self.computed += len(batch)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.vstack([self._cache[k] for k in keys])

    def embed_query(self, text: str) -> np.ndarray:
        key = self._key("query", text)
        if key not in self._cache:
            self._cache[key] = self.inner.embed_query(text)
            self.computed += 1
        return self._cache[key]

    def save(self) -> None:
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(self.path, **self._cache)


# ---- baselines: the same model and a real BM25, outside the product --------------------


def turn_text(turn: Turn) -> str:
    return f"{turn.speaker}: {turn.text}"


@functools.cache
def _stemmer_and_stop_words() -> tuple[Any, frozenset[str]]:
    import Stemmer
    from bm25s.stopwords import STOPWORDS_EN

    return Stemmer.Stemmer("english"), frozenset(STOPWORDS_EN)


def bm25_tokens(text: str) -> list[str]:
    """Words (English-stemmed, stop words out) and CJK bigrams, as the store indexes them."""
    stemmer, stop = _stemmer_and_stop_words()
    words = [t for t in lexical.terms(text) if t not in stop]
    return [w if _CJK.search(w) else stemmer.stemWord(w) for w in words]


class Baselines:
    """What a user could build in an afternoon over one conversation's turns."""

    def __init__(self, embedder: Embedder, turns: Sequence[Turn]) -> None:
        import bm25s

        self.embedder = embedder
        self.ids = [t.turn_id for t in turns]
        texts = [turn_text(t) for t in turns]
        self.vectors = np.asarray(embedder.embed_documents(texts), dtype=np.float32)
        self.bm25 = bm25s.BM25()
        corpus = [bm25_tokens(t) or ["\u2205"] for t in texts]
        self.vocabulary = {token for tokens in corpus for token in tokens}
        self.bm25.index(corpus, show_progress=False)

    def e5(self, question: str, k: int) -> list[str]:
        scores = self.vectors @ self.embedder.embed_query(question)
        order = np.argsort(-scores, kind="stable")[:k]
        return [self.ids[i] for i in order]

    def bm25_ranking(self, question: str, k: int) -> list[str]:
        tokens = [t for t in bm25_tokens(question) if t in self.vocabulary]
        if not tokens:
            return []
        k = min(k, len(self.ids))
        documents, scores = self.bm25.retrieve([tokens], k=k, show_progress=False)
        return [self.ids[int(d)] for d, s in zip(documents[0], scores[0]) if s > 0]

    def fused(self, question: str, k: int, pool: int = 50, rrf_k: int = 60) -> list[str]:
        score: dict[str, float] = {}
        for ranking in (self.e5(question, pool), self.bm25_ranking(question, pool)):
            for rank, turn_id in enumerate(ranking, start=1):
                score[turn_id] = score.get(turn_id, 0.0) + 1 / (rrf_k + rank)
        return sorted(score, key=lambda t: (-score[t], t))[:k]


BASELINES = ("e5", "bm25", "e5+bm25")
PRODUCT = "ours"
OURS = retrieval.RetrievalConfig()


def ablations_of(ours: retrieval.RetrievalConfig) -> dict[str, retrieval.RetrievalConfig]:
    return {
        "ours-names": replace(ours, strip_names=False, speaker_bonus=0.0),
        "ours-scope": replace(ours, speaker_scope_weight=0.0),
        "ours-reply": replace(ours, reply_weight=0.0, question_factor=1.0),
        "ours-rrf": replace(
            ours, strip_names=False, rewrite_query=False, speaker_bonus=0.0,
            speaker_scope_weight=0.0, reply_weight=0.0, question_factor=1.0,
        ),
    }  # fmt: skip


def config_with(settings: Sequence[str]) -> retrieval.RetrievalConfig:
    """The pipeline's defaults with ``NAME=VALUE`` overrides (how its constants are tuned)."""
    fields = {f.name: type(getattr(OURS, f.name)) for f in dataclasses.fields(OURS)}
    changes: dict[str, Any] = {}
    for setting in settings:
        name, _, value = setting.partition("=")
        if name not in fields or not value:
            raise ValueError(f"{setting!r}: expected NAME=VALUE, NAME one of {sorted(fields)}")
        kind = fields[name]
        changes[name] = value.lower() in ("1", "true", "yes") if kind is bool else kind(value)
    return replace(OURS, **changes)


# ---- the product path -----------------------------------------------------------------------


@dataclass
class Loaded:
    """One conversation as the product holds it after the outbox ran."""

    user_id: str
    turns_of: dict[str, set[str]]  # memory id -> the dia_ids it holds (its own and merged)
    merges: list[dict[str, str]]  # {"survivor": text, "merged": text}
    load_seconds: float = 0.0


def turn_metadata(turn: Turn) -> dict[str, Any]:
    return {
        "dia_id": turn.turn_id,
        "speaker": turn.speaker,
        "session": turn.session,
        "position": turn.position,
    }


def turns_held(memory_metadata: dict[str, Any]) -> set[str]:
    held = {str(memory_metadata["dia_id"])} if "dia_id" in memory_metadata else set()
    for entry in memory_metadata.get("merged", []):
        held |= turns_held(entry.get("metadata", {}))
    return held


def load_through_store(
    store: MemoryStore, pool: Pool, sample: Sample, user_id: str, threshold: float
) -> Loaded:
    """Every turn through the write path, then the outbox until nothing is pending."""
    started = time.perf_counter()
    for turn in sample.turns:
        store.upsert(
            user_id,
            turn_text(turn),
            metadata=turn_metadata(turn),
            observed_at=turn.when,
            actor="quality-bench",
        )
    drain(pool, store.embedder, batch_size=64, duplicate_threshold=threshold)
    return Loaded(user_id, held_turns(store, user_id), merged_pairs(pool, user_id),
                  time.perf_counter() - started)  # fmt: skip


def held_turns(store: MemoryStore, user_id: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    cursor = None
    while True:
        page = store.list(user_id, limit=200, cursor=cursor)
        out |= {m.id: turns_held(m.metadata) for m in page.items}
        if page.next_cursor is None:
            return out
        cursor = page.next_cursor


def merged_pairs(pool: Pool, user_id: str) -> list[dict[str, str]]:
    with pool.transaction() as tx:
        rows = tx.execute(
            "SELECT old_content, new_content FROM memory_events "
            "WHERE user_id = %s AND op = 'MERGED' ORDER BY id",
            [user_id],
        )
    return [{"merged": old, "survivor": new} for old, new in rows]


def evidence_lost(loaded: Loaded, sample: Sample) -> list[str]:
    """Evidence turns that no live memory holds any more."""
    held = set().union(*loaded.turns_of.values()) if loaded.turns_of else set()
    evidence = {e for q in sample.questions for e in q.evidence}
    known = {t.turn_id for t in sample.turns}
    return sorted((evidence & known) - held)


# ---- the run --------------------------------------------------------------------------------


@dataclass
class QuestionResult:
    question: Question
    recall: dict[str, dict[int, float]] = field(default_factory=dict)  # method -> k -> recall
    latency_ms: dict[str, float] = field(default_factory=dict)
    prediction: str | None = None
    judge: str | None = None  # CORRECT / WRONG
    f1: float | None = None


def _recall(ranked: Sequence[str], evidence: Sequence[str], ks: Sequence[int]) -> dict:
    seen: list[str] = []
    for turn in ranked:
        if turn not in seen:
            seen.append(turn)
    return {k: len(set(seen[:k]) & set(evidence)) / len(evidence) for k in ks}


def _product_ranking(hits: Sequence[Any], loaded: Loaded) -> list[str]:
    ranked: list[str] = []
    for hit in hits:
        ranked.extend(sorted(loaded.turns_of.get(hit.memory.id, ())))
    return ranked


def evaluate(
    pool: Pool,
    embedder: CachingEmbedder,
    samples: Sequence[Sample],
    *,
    ks: Sequence[int] = DEFAULT_KS,
    ablations: bool = True,
    duplicate_threshold: float = 0.95,
    llm: Any | None = None,
    answer_k: int = 10,
    llm_limit: int | None = None,
    run_id: str | None = None,
    progress: Callable[[str], None] | None = None,
    ours: retrieval.RetrievalConfig = OURS,
) -> dict[str, Any]:
    """Load every sample through the product, ask every question of every method; the
    report as a dict. ``llm`` is a router (anything with ``complete(ChatRequest)``); None
    skips answering. The users this run created are deleted at the end."""
    ks = sorted(set(ks))
    top = max(ks)
    store = MemoryStore(pool, embedder)
    run_id = run_id or uuid.uuid4().hex[:8]
    users: list[str] = []
    results: list[QuestionResult] = []
    loads: dict[str, dict[str, Any]] = {}
    configs = {PRODUCT: ours, **(ablations_of(ours) if ablations else {})}
    answered = 0
    started = time.perf_counter()
    try:
        for sample in samples:
            user = f"locomo-{run_id}-{sample.sample_id}"
            users.append(user)
            loaded = load_through_store(store, pool, sample, user, duplicate_threshold)
            baselines = Baselines(embedder, sample.turns)
            embedder.save()  # a long run cut short keeps what it embedded
            known = {t.turn_id for t in sample.turns}
            loads[sample.sample_id] = {
                "turns": len(sample.turns),
                "memories": len(loaded.turns_of),
                "merges": loaded.merges,
                "evidence_lost": evidence_lost(loaded, sample),
                "load_seconds": round(loaded.load_seconds, 1),
            }
            if progress:
                progress(
                    f"{sample.sample_id}: {len(sample.turns)} turns -> "
                    f"{len(loaded.turns_of)} memories, {len(loaded.merges)} merges, "
                    f"{len(loads[sample.sample_id]['evidence_lost'])} evidence turns lost"
                )
            for question in sample.questions:
                evidence = [e for e in dict.fromkeys(question.evidence) if e in known]
                if not evidence:
                    continue
                result = QuestionResult(question)
                text = question.question
                result.recall["e5"] = _recall(baselines.e5(text, top), evidence, ks)
                result.recall["bm25"] = _recall(baselines.bm25_ranking(text, top), evidence, ks)
                result.recall["e5+bm25"] = _recall(baselines.fused(text, top), evidence, ks)
                for name, config in configs.items():
                    t0 = time.perf_counter()
                    hits = retrieval.retrieve(store, user, text, limit=top, config=config).hits
                    result.latency_ms[name] = (time.perf_counter() - t0) * 1000
                    ranked = _product_ranking(hits, loaded)
                    result.recall[name] = _recall(ranked, evidence, ks)
                if (
                    llm is not None
                    and question.category in SCORED_CATEGORIES
                    and question.answer is not None
                    and (llm_limit is None or answered < llm_limit)
                ):
                    hits = retrieval.retrieve(store, user, text, limit=answer_k).hits
                    result.prediction = answer_question(llm, text, [h.memory for h in hits])
                    result.judge = judge_answer(llm, text, question.answer, result.prediction)
                    result.f1 = token_f1(result.prediction, question.answer)
                    answered += 1
                results.append(result)
    finally:
        with pool.transaction() as tx:
            for user in users:
                tx.execute("DELETE FROM memories WHERE user_id = %s", [user])
                tx.execute("DELETE FROM memory_events WHERE user_id = %s", [user])
    methods = [*BASELINES, *configs]
    report = build_report(samples, results, methods, ks, llm is not None,
                          time.perf_counter() - started)  # fmt: skip
    report["loads"] = loads
    return report


def _mean(values: Iterable[float]) -> float | None:
    values = list(values)
    return round(statistics.fmean(values), 4) if values else None


def _percentile(values: Sequence[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(share * len(ordered)))], 2)


def _aggregate(results: Sequence[QuestionResult], method: str, ks: Sequence[int]) -> dict[str, Any]:
    by_category: dict[str, Any] = {}
    for category in sorted({r.question.category for r in results}):
        chosen = [r for r in results if r.question.category == category]
        by_category[str(category)] = {
            "n": len(chosen),
            **{str(k): _mean(r.recall[method][k] for r in chosen) for k in ks},
        }
    scored = [r for r in results if r.question.category in SCORED_CATEGORIES]
    latencies = [r.latency_ms[method] for r in results if method in r.latency_ms]
    return {
        "overall": {
            "n": len(scored),
            **{str(k): _mean(r.recall[method][k] for r in scored) for k in ks},
        },
        "by_category": by_category,
        "p50_ms": _percentile(latencies, 0.5),
        "p95_ms": _percentile(latencies, 0.95),
    }


def build_report(
    samples: Sequence[Sample],
    results: Sequence[QuestionResult],
    methods: Sequence[str],
    ks: Sequence[int],
    with_llm: bool,
    seconds: float,
) -> dict[str, Any]:
    report: dict[str, Any] = {
        "samples": len(samples),
        "turns": sum(len(s.turns) for s in samples),
        "questions": len(results),
        "skipped_without_evidence": sum(len(s.questions) for s in samples) - len(results),
        "ks": list(ks),
        "recall": {m: _aggregate(results, m, ks) for m in methods},
        "splits": {
            split: {
                m: _aggregate([r for r in results if r.question.split == split], m, ks)
                for m in methods
            }
            for split in ("dev", "heldout")
        },
        "seconds": round(seconds, 1),
        "llm": None,
    }
    if with_llm:
        graded = [r for r in results if r.judge is not None]
        report["llm"] = {
            "answered": len(graded),
            "j": _mean(1.0 if r.judge == "CORRECT" else 0.0 for r in graded),
            "f1": _mean(r.f1 or 0.0 for r in graded),
            "by_category": {
                str(c): {
                    "n": len(chosen),
                    "j": _mean(1.0 if r.judge == "CORRECT" else 0.0 for r in chosen),
                    "f1": _mean(r.f1 or 0.0 for r in chosen),
                }
                for c in SCORED_CATEGORIES
                if (chosen := [r for r in graded if r.question.category == c])
            },
            "examples": [
                {
                    "question": r.question.question,
                    "gold": r.question.answer,
                    "prediction": r.prediction,
                    "judge": r.judge,
                    "f1": r.f1,
                }
                for r in graded[:5]
            ],
        }
    return report


# ---- answering and judging -----------------------------------------------------------------------

ANSWER_SYSTEM = (
    "You answer a question about a long conversation between two people, using only the "
    "memories retrieved from it. Each memory is one turn, with the date it was said. "
    "Resolve relative dates ('yesterday', 'last week') against that date and answer with "
    "the absolute date. If the memories do not contain the answer, say you don't know. "
    "Answer in a short phrase, no more than a sentence."
)

# The mem0 paper's LLM-as-judge (J) grading instructions, in our words: generous on wording
# and date format, strict on the fact; the label comes back as JSON.
JUDGE_SYSTEM = (
    "You grade an answer to a question about a conversation between two people. You get "
    "the question, a gold (ground truth) answer and a generated answer, and you label the "
    "generated answer CORRECT or WRONG. Be generous with wording: if the generated answer "
    "refers to the same fact, thing or topic as the gold answer it is CORRECT, even when it "
    "is longer. For time questions the generated answer is CORRECT if it names the same "
    "date or period, whatever its format or if it uses a relative phrase that resolves to "
    "it. Otherwise it is WRONG. Give a one-sentence reason, then the label as JSON: "
    '{"label": "CORRECT"} or {"label": "WRONG"}. Never write both labels.'
)


def _memory_lines(memories: Sequence[Any]) -> str:
    lines = []
    for memory in memories:
        when = memory.observed_at.strftime("%d %B %Y") if memory.observed_at else "undated"
        resolved = memory.metadata.get("time") or []
        extra = f" ({'; '.join(resolved)})" if resolved else ""
        lines.append(f"- [{when}] {memory.content}{extra}")
    return "\n".join(lines)


class NoModelAnswered(RuntimeError):
    """The router fell back to its offline answer: grading that would corrupt J."""


def _complete(llm: Any, request: ChatRequest) -> str:
    # No temperature: the installed Anthropic SDK (2.14) rejects the parameter.
    completion = llm.complete(request)
    if completion.done is None or completion.done.provider == "offline":
        raise NoModelAnswered("no language model answered (the router answered offline)")
    return completion.text.strip()


def answer_question(llm: Any, question: str, memories: Sequence[Any]) -> str:
    request = ChatRequest(
        system=ANSWER_SYSTEM,
        messages=[
            Message(
                "user",
                f"Memories:\n{_memory_lines(memories) or '(none)'}\n\n"
                f"Question: {question}\nAnswer:",
            )
        ],
        max_tokens=200,
        memories=[m.content for m in memories],
    )
    return _complete(llm, request)


_LABEL = re.compile(r'"label"\s*:\s*"(CORRECT|WRONG)"', re.IGNORECASE)


def parse_label(text: str) -> str:
    """CORRECT or WRONG from the judge's reply (its JSON, else the last bare label)."""
    match = _LABEL.search(text)
    if match:
        return match.group(1).upper()
    bare = re.findall(r"\b(CORRECT|WRONG)\b", text.upper())
    return bare[-1] if bare else "WRONG"


def judge_answer(llm: Any, question: str, gold: str, prediction: str) -> str:
    request = ChatRequest(
        system=JUDGE_SYSTEM,
        messages=[
            Message(
                "user",
                f"Question: {question}\nGold answer: {gold}\nGenerated answer: {prediction}",
            )
        ],
        max_tokens=200,
    )
    return parse_label(_complete(llm, request))


_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_PUNCT = str.maketrans("", "", string.punctuation + "，。！？、；：“”‘’（）")


def answer_tokens(text: str) -> list[str]:
    """LoCoMo/SQuAD normalisation (lower case, no punctuation or articles); CJK by character."""
    text = str(text).lower().translate(_PUNCT)
    text = re.sub(r"\b(a|an|the|and)\b", " ", text)
    text = _CJK.sub(lambda m: f" {m.group()} ", text)
    return text.split()


def token_f1(prediction: str, gold: str) -> float:
    predicted, expected = answer_tokens(prediction), answer_tokens(gold)
    if not predicted or not expected:
        return float(predicted == expected)
    common = 0
    remaining = list(expected)
    for token in predicted:
        if token in remaining:
            remaining.remove(token)
            common += 1
    if common == 0:
        return 0.0
    precision, recall_ = common / len(predicted), common / len(expected)
    return round(2 * precision * recall_ / (precision + recall_), 4)


# ---- output ----------------------------------------------------------------------------------


def _cell(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def markdown_table(report: dict[str, Any], k: int = 10, split: str | None = None) -> str:
    """Recall@k per category and overall (plus overall @ every k), one row per method."""
    source = report["recall"] if split is None else report["splits"][split]
    ks = report["ks"]
    categories = sorted({c for agg in source.values() for c in agg["by_category"]}, key=int)
    head = [f"cat {c} {CATEGORY_NAMES.get(int(c), '')}".strip() + f" @{k}" for c in categories]
    head += [f"overall @{kk}" for kk in ks] + ["p50 ms", "p95 ms"]
    lines = ["| method | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]
    for name, agg in source.items():
        cells = [_cell(agg["by_category"].get(c, {}).get(str(k))) for c in categories]
        cells += [_cell(agg["overall"][str(kk)]) for kk in ks]
        cells += ["–" if agg[m] is None else f"{agg[m]:.1f}" for m in ("p50_ms", "p95_ms")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    counts = ", ".join(
        f"cat {c}: {next(iter(source.values()))['by_category'][c]['n']}" for c in categories
    )
    lines.append("")
    lines.append(f"questions: {counts} (overall = categories 1-4)")
    return "\n".join(lines)


def gain(report: dict[str, Any], k: int = 10, split: str | None = None) -> dict[str, float | None]:
    source = report["recall"] if split is None else report["splits"][split]
    ours = source[PRODUCT]["overall"][str(k)]
    out: dict[str, float | None] = {}
    for name in BASELINES:
        base = source.get(name, {}).get("overall", {}).get(str(k))
        out[name] = None if not base or ours is None else round(ours / base - 1, 4)
    return out


def merge_summary(report: dict[str, Any]) -> str:
    loads = report.get("loads", {})
    merges = sum(len(v["merges"]) for v in loads.values())
    lost = sum(len(v["evidence_lost"]) for v in loads.values())
    turns = sum(v["turns"] for v in loads.values())
    return (
        f"{turns} turns written, {merges} merged into an earlier memory, {lost} evidence turns lost"
    )


# ---- through HTTP ----------------------------------------------------------------------------


class Http:
    """The running service's API (``make run``), with one API key."""

    def __init__(self, base_url: str, api_key: str) -> None:
        import requests

        self.base = base_url.rstrip("/")
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {api_key}"

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.session.request(method, self.base + path, timeout=60, **kwargs)
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:300]}")
        return response.json() if response.content else None

    def memories(self, namespace: str) -> list[dict[str, Any]]:
        items, cursor = [], None
        while True:
            params = {
                "namespace": namespace,
                "limit": 200,
                **({"cursor": cursor} if cursor else {}),
            }
            page = self.call("GET", "/v1/memories", params=params)
            items += page["items"]
            cursor = page["next_cursor"]
            if cursor is None:
                return items


def evaluate_http(
    http: Http,
    samples: Sequence[Sample],
    *,
    ks: Sequence[int] = DEFAULT_KS,
    run_id: str | None = None,
    progress: Callable[[str], None] | None = None,
    wait_seconds: float = 1800,
) -> dict[str, Any]:
    """As ``evaluate`` for the product only, through POST /v1/memories and GET
    /v1/memories/search of a running service (one namespace per conversation)."""
    ks = sorted(set(ks))
    top = max(ks)
    run_id = run_id or uuid.uuid4().hex[:8]
    results: list[QuestionResult] = []
    loads: dict[str, dict[str, Any]] = {}
    started = time.perf_counter()
    for sample in samples:
        namespace = f"locomo-{run_id}-{sample.sample_id}"
        t0 = time.perf_counter()
        for turn in sample.turns:
            http.call("POST", "/v1/memories", json={
                "content": turn_text(turn), "namespace": namespace,
                "metadata": turn_metadata(turn),
                "observed_at": turn.when.isoformat() if turn.when else None,
            })  # fmt: skip
        deadline = time.monotonic() + wait_seconds
        while True:  # the service's outbox embeds (and merges) in the background
            items = http.memories(namespace)
            if all(m["embedded"] for m in items) or time.monotonic() > deadline:
                break
            time.sleep(1.0)
        loaded = Loaded(namespace, {m["id"]: turns_held(m["metadata"]) for m in items}, [],
                        time.perf_counter() - t0)  # fmt: skip
        known = {t.turn_id for t in sample.turns}
        loads[sample.sample_id] = {
            "turns": len(sample.turns),
            "memories": len(items),
            "merges": [{} for _ in range(len(sample.turns) - len(items))],
            "evidence_lost": evidence_lost(loaded, sample),
            "load_seconds": round(loaded.load_seconds, 1),
        }
        if progress:
            progress(f"{sample.sample_id}: {len(sample.turns)} turns -> {len(items)} memories")
        for question in sample.questions:
            evidence = [e for e in dict.fromkeys(question.evidence) if e in known]
            if not evidence:
                continue
            result = QuestionResult(question)
            t1 = time.perf_counter()
            found = http.call("GET", "/v1/memories/search", params={
                "q": question.question, "limit": top, "namespace": namespace})  # fmt: skip
            result.latency_ms[PRODUCT] = (time.perf_counter() - t1) * 1000
            ranked: list[str] = []
            for item in found["items"]:
                ranked.extend(sorted(turns_held(item["memory"]["metadata"])))
            result.recall[PRODUCT] = _recall(ranked, evidence, ks)
            results.append(result)
    report = build_report(samples, results, [PRODUCT], ks, False, time.perf_counter() - started)
    report["loads"] = loads
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.quality.locomo",
        description="Memory quality on long conversations, through the product: how many of "
        "the turns that answer each question the memory search finds in its top k (evidence "
        "recall@k), for the same embedding model, BM25 and their fusion, and for the "
        "product's retrieval pipeline; with a language model key, also how well the model "
        "answers from what was found.",
        epilog="Examples:\n"
        "  .venv/bin/python -m bench.quality.locomo bench/quality/synthetic_locomo.json\n"
        "  .venv/bin/python -m bench.quality.locomo PATH/locomo10.json --json out.json\n"
        "  .venv/bin/python -m bench.quality.locomo PATH/locomo10.json --http http://localhost:8080",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("file", help="a LoCoMo-format JSON file, or a directory of them")
    parser.add_argument(
        "--k", type=int, nargs="+", default=list(DEFAULT_KS), help="cut-offs to report"
    )
    parser.add_argument("--limit-samples", type=int, default=None, help="only the first N")
    parser.add_argument("--json", dest="json_out", default=None, help="write the report here")
    parser.add_argument("--no-ablations", action="store_true", help="skip the ablation rows")
    parser.add_argument("--no-llm", action="store_true", help="skip answering even with a key")
    parser.add_argument("--answer-k", type=int, default=10, help="memories given to the model")
    parser.add_argument("--llm-limit", type=int, default=None, help="answer at most N questions")
    parser.add_argument("--embedding-cache", default=None, help=".npz file to reuse embeddings")
    parser.add_argument(
        "--set", dest="settings", action="append", default=[], metavar="NAME=VALUE",
        help="override a RetrievalConfig constant for the 'ours' rows (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--http", default=None, metavar="URL", help="measure a running service instead"
    )
    parser.add_argument(
        "--api-key", default=os.environ.get("MEMORY_AGENT_API_KEY"),
        help="key for --http (default: $MEMORY_AGENT_API_KEY)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    try:
        ours = config_with(args.settings)
    except ValueError as error:
        parser.error(str(error))

    samples = load_samples(args.file)[: args.limit_samples]
    if args.http and args.settings:
        parser.error("--set changes the in-process pipeline; a service reads its own settings")
    if args.http:
        if not args.api_key:
            parser.error("--http needs --api-key or MEMORY_AGENT_API_KEY")
        report = evaluate_http(
            Http(args.http, args.api_key),
            samples,
            ks=args.k,
            progress=lambda s: print(s, flush=True),
        )
        print_report(report)
        if args.json_out:
            Path(args.json_out).write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")
        return 0

    from services.config import Settings
    from services.db import open_pool
    from services.embeddings import duplicate_threshold, make_embedder
    from services.llm.factory import build_providers, build_router
    from services.migrate import migrate

    env = Settings.from_env()
    settings = Settings(
        database_url=env.database_url,
        data_dir=str(OUT / "data"),
        db_name="quality_bench",
        embed_in_process=False,
        embedding_provider=env.embedding_provider,
        openai_api_key=env.openai_api_key,
        openai_base_url=env.openai_base_url,
        embedding_model=env.embedding_model,
        dedup_threshold=env.dedup_threshold,
    )
    llm = None
    if not args.no_llm and build_providers(env):
        llm = build_router(env)
    embedder = CachingEmbedder(make_embedder(settings), args.embedding_cache)
    pool = open_pool(settings)
    try:
        migrate(pool, embedder.model, embedder.dim, False)
        report = evaluate(
            pool,
            embedder,
            samples,
            ks=args.k,
            ablations=not args.no_ablations,
            duplicate_threshold=duplicate_threshold(settings, embedder.model),
            llm=llm,
            answer_k=args.answer_k,
            llm_limit=args.llm_limit,
            progress=lambda line: print(line, flush=True),
            ours=ours,
        )
    finally:
        pool.close()
        embedder.save()
    report["file"] = str(args.file)
    report["embedding_model"] = embedder.model
    report["embeddings_computed"] = embedder.computed
    print_report(report)
    print(f"{report['seconds']} s, {embedder.computed} embeddings computed")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    return 0


def print_report(report: dict[str, Any]) -> None:
    k = 10 if 10 in report["ks"] else report["ks"][0]
    print(f"\n{merge_summary(report)}")
    print(f"\nevidence recall@{k} — all questions ({report['questions']})")
    print(markdown_table(report, k))
    for split in ("dev", "heldout"):
        print(f"\n{split} half")
        print(markdown_table(report, k, split))
    if len(report["recall"]) > 1:
        for split in (None, "dev", "heldout"):
            rel = gain(report, k, split)
            print(
                f"ours vs baselines @{k} ({split or 'all'}): "
                + ", ".join(f"{n} {'–' if v is None else f'{v:+.1%}'}" for n, v in rel.items())
            )
    if report["llm"]:
        llm_report = report["llm"]
        print(f"\nLLM: J = {llm_report['j']}, F1 = {llm_report['f1']}", end=" ")
        print(f"over {llm_report['answered']} answers")
    else:
        print("\nno language model configured: answer quality (J, F1) skipped")


if __name__ == "__main__":
    raise SystemExit(main())
