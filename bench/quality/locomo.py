"""Memory quality on long conversations: evidence recall@k of the memory store on any file in
the LoCoMo format, and, when a language model is configured, answer quality (LLM judge J
and token F1).

    .venv/bin/python -m bench.quality.locomo bench/quality/synthetic_locomo.json
    .venv/bin/python -m bench.quality.locomo locomo10.json --k 5 10 20 --json out.json

Each sample's turns are loaded into the memory store twice, one user each: as raw turns
(the text, with the turn's dia_id in metadata) and as indexed by ``services.recall``
(speaker, session date, neighbouring turns). Every question is then answered from:

* ``vector``   the store's vector-only search on raw turns;
* ``lexical``  the store's lexical-only search on raw turns;
* ``rrf``      the store's hybrid search on raw turns: plain reciprocal-rank fusion (the floor);
* ``ours``     ``services.recall.search`` on indexed turns (the product);

plus ablations of ``ours`` (indexing only, + query rewriting, + reranking) unless
``--no-ablations``. Recall@k of a question is the share of its evidence dia_ids among the
top k turns; "overall" averages categories 1-4 (category 5, adversarial, is listed apart,
as in the mem0 paper). Questions are also split into two halves by their index in the
sample (even: dev, on which the method was tuned; odd: held out).

With ANTHROPIC_API_KEY or OPENAI_API_KEY (or OPENAI_CHAT_BASE_URL) set, each question of
categories 1-4 is also answered by the model from ``ours``'s top ``--answer-k`` memories and
graded by the model as CORRECT/WRONG against the gold answer (J), and by token F1.

Runs against the embedded PostgreSQL under bench/out/ (or DATABASE_URL). Embeddings are
computed once per distinct text per run (``--embedding-cache FILE`` keeps them across runs).
"""

from __future__ import annotations

import argparse
import hashlib
import json
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

from services import recall
from services.db import Pool
from services.embeddings import Embedder
from services.llm.common import ChatRequest, Message
from services.memories import MemoryStore, NewMemory
from services.outbox import document_text

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
    turns: tuple[recall.Turn, ...]
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


def load_samples(path: str | Path) -> list[Sample]:
    """Samples of a LoCoMo-format file (a list, or one sample object)."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if isinstance(data, dict):
        data = [data]
    samples = []
    for number, raw in enumerate(data):
        conversation = raw["conversation"]
        sample_id = str(raw.get("sample_id", f"sample-{number}"))
        sessions = sorted(
            (int(m.group(1)), key) for key in conversation if (m := _SESSION_KEY.match(key))
        )
        turns: list[recall.Turn] = []
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
                    recall.Turn(
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


# ---- retrieval methods ------------------------------------------------------------------------


@dataclass(frozen=True)
class Method:
    name: str
    description: str
    index: str  # a key of INDEXES: how the sample's turns are loaded
    retrieve: Callable[[MemoryStore, str, str, int], list[str]]  # -> memory ids, best first


def _raw_memories(turns: Sequence[recall.Turn]) -> list[NewMemory]:
    """The turn's text as is; metadata only (never searched) keeps where it came from."""
    return [
        NewMemory(
            content=turn.text,
            metadata={
                "turn_id": turn.turn_id,
                "speaker": turn.speaker,
                "session": turn.session,
                "position": turn.position,
            },
            observed_at=turn.when,
        )
        for turn in turns
    ]


INDEXES: dict[str, Callable[[Sequence[recall.Turn]], list[NewMemory]]] = {
    "raw": _raw_memories,
    "turns": recall.turn_memories,  # ours
    "context": lambda turns: recall.turn_memories(  # date and neighbours in the context
        turns,
        recall.IndexConfig(
            session_date_in_context=True,
            resolved_dates_in_context=True,
            neighbours_before=1,
            neighbours_after=1,
        ),
    ),
}


def _store_mode(mode: str) -> Callable[[MemoryStore, str, str, int], list[str]]:
    def run(store: MemoryStore, user_id: str, query: str, limit: int) -> list[str]:
        return [h.memory.id for h in store.search(user_id, query, limit=limit, mode=mode)]

    return run


def _recall(config: recall.RecallConfig) -> Callable[[MemoryStore, str, str, int], list[str]]:
    def run(store: MemoryStore, user_id: str, query: str, limit: int) -> list[str]:
        hits = recall.search(store, user_id, query, limit=limit, config=config)
        return [h.memory.id for h in hits]

    return run


OURS = recall.RecallConfig()
BASELINES = [
    Method("vector", "store vector-only search, raw turns", "raw", _store_mode("vector")),
    Method("lexical", "store lexical-only search, raw turns", "raw", _store_mode("lexical")),
    Method("rrf", "store hybrid (plain RRF), raw turns: the floor", "raw", _store_mode("hybrid")),
]
PRODUCT = Method(
    "ours", "services.recall: indexed turns, query rewriting, reranking", "turns", _recall(OURS)
)
ABLATIONS = [
    Method("idx-rrf", "indexed turns, store hybrid (plain RRF)", "turns", _store_mode("hybrid")),
    Method(
        "ctx-rrf",
        "turns + date + neighbours in context, plain RRF",
        "context",
        _store_mode("hybrid"),
    ),
    Method(
        "ctx-ours", "turns + date + neighbours in context, recall.search", "context", _recall(OURS)
    ),
    Method("raw-ours", "raw turns, recall.search", "raw", _recall(OURS)),
    Method(
        "ours-names",
        "ours, names kept in the query, no speaker bonus",
        "turns",
        _recall(replace(OURS, strip_names=False, speaker_bonus=0.0)),
    ),
    Method(
        "ours-nobonus",
        "ours without the speaker bonus",
        "turns",
        _recall(replace(OURS, speaker_bonus=0.0)),
    ),
    Method(
        "ours-scope",
        "ours without the named speaker's own ranking",
        "turns",
        _recall(replace(OURS, speaker_scope_weight=0.0)),
    ),
    Method(
        "ours-reply",
        "ours without the answer-follows-question rule",
        "turns",
        _recall(replace(OURS, reply_weight=0.0, question_factor=1.0)),
    ),
    Method(
        "ours+nbr",
        "ours + neighbour bonus 0.3",
        "turns",
        _recall(replace(OURS, neighbour_weight=0.3)),
    ),
    Method(
        "ours+time",
        "ours + temporal bonus 0.3",
        "turns",
        _recall(replace(OURS, temporal_bonus=0.3)),
    ),
]


# ---- the run --------------------------------------------------------------------------------


@dataclass
class QuestionResult:
    question: Question
    recall: dict[str, dict[int, float]] = field(default_factory=dict)  # method -> k -> recall
    latency_ms: dict[str, float] = field(default_factory=dict)
    prediction: str | None = None
    judge: str | None = None  # CORRECT / WRONG
    f1: float | None = None


def load_sample(
    store: MemoryStore, embedder: CachingEmbedder, user_id: str, memories: list[NewMemory]
) -> dict[str, str]:
    """Insert ``memories`` with their embeddings (as the outbox would compute them);
    returns memory id -> turn id."""
    vectors = embedder.embed_documents([document_text(m.content, m.context) for m in memories])
    items = [
        NewMemory(
            content=m.content,
            context=m.context,
            metadata=m.metadata,
            observed_at=m.observed_at,
            embedding=vector,
        )
        for m, vector in zip(memories, vectors)
    ]
    ids = store.add_many(user_id, items, actor="quality-bench")
    return {memory_id: str(m.metadata["turn_id"]) for memory_id, m in zip(ids, memories)}


def evaluate(
    pool: Pool,
    embedder: CachingEmbedder,
    samples: Sequence[Sample],
    *,
    ks: Sequence[int] = DEFAULT_KS,
    methods: Sequence[Method] | None = None,
    llm: Any | None = None,
    answer_k: int = 10,
    llm_limit: int | None = None,
    run_id: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Load every sample, run every method on every question; the report as a dict.

    ``llm`` is a router (anything with ``complete(ChatRequest)``); None skips answering.
    The users this run created are deleted at the end.
    """
    methods = list(methods if methods is not None else [*BASELINES, PRODUCT, *ABLATIONS])
    ks = sorted(set(ks))
    top = max(ks)
    store = MemoryStore(pool, embedder)
    run_id = run_id or uuid.uuid4().hex[:8]
    users: list[str] = []
    results: list[QuestionResult] = []
    answered = 0
    started = time.perf_counter()
    try:
        for sample in samples:
            user_of: dict[str, str] = {}
            turn_of: dict[str, str] = {}
            for index in dict.fromkeys([m.index for m in methods] + ["turns"]):
                user_of[index] = f"locomo-{run_id}-{sample.sample_id}-{index}"
                users.append(user_of[index])
                memories = INDEXES[index](sample.turns)
                turn_of |= load_sample(store, embedder, user_of[index], memories)
            known = {t.turn_id for t in sample.turns}
            if progress:
                progress(f"{sample.sample_id}: {len(sample.turns)} turns, {len(known)} ids")
            for question in sample.questions:
                evidence = [e for e in dict.fromkeys(question.evidence) if e in known]
                if not evidence:
                    continue
                result = QuestionResult(question)
                for method in methods:
                    user = user_of[method.index]
                    method.retrieve(store, user, question.question, top)  # warm its embeddings
                    t0 = time.perf_counter()
                    ids = method.retrieve(store, user, question.question, top)
                    result.latency_ms[method.name] = (time.perf_counter() - t0) * 1000
                    ranked = [turn_of[i] for i in ids]
                    result.recall[method.name] = {
                        k: len(set(ranked[:k]) & set(evidence)) / len(evidence) for k in ks
                    }
                if (
                    llm is not None
                    and question.category in SCORED_CATEGORIES
                    and question.answer is not None
                    and (llm_limit is None or answered < llm_limit)
                ):
                    hits = recall.search(
                        store, user_of["turns"], question.question, limit=answer_k, config=OURS
                    )
                    result.prediction = answer_question(
                        llm, question.question, [h.memory for h in hits]
                    )
                    result.judge = judge_answer(
                        llm, question.question, question.answer, result.prediction
                    )
                    result.f1 = token_f1(result.prediction, question.answer)
                    answered += 1
                results.append(result)
    finally:
        with pool.transaction() as tx:
            for user in users:
                tx.execute("DELETE FROM memories WHERE user_id = %s", [user])
                tx.execute("DELETE FROM memory_events WHERE user_id = %s", [user])
    return build_report(
        samples, results, methods, ks, llm is not None, time.perf_counter() - started
    )


def _mean(values: Iterable[float]) -> float | None:
    values = list(values)
    return round(statistics.fmean(values), 4) if values else None


def _aggregate(results: Sequence[QuestionResult], method: str, ks: Sequence[int]) -> dict[str, Any]:
    by_category: dict[str, Any] = {}
    for category in sorted({r.question.category for r in results}):
        chosen = [r for r in results if r.question.category == category]
        by_category[str(category)] = {
            "n": len(chosen),
            **{str(k): _mean(r.recall[method][k] for r in chosen) for k in ks},
        }
    scored = [r for r in results if r.question.category in SCORED_CATEGORIES]
    return {
        "overall": {
            "n": len(scored),
            **{str(k): _mean(r.recall[method][k] for r in scored) for k in ks},
        },
        "by_category": by_category,
        "mean_ms": _mean(r.latency_ms[method] for r in results),
    }


def build_report(
    samples: Sequence[Sample],
    results: Sequence[QuestionResult],
    methods: Sequence[Method],
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
        "methods": {m.name: m.description for m in methods},
        "recall": {m.name: _aggregate(results, m.name, ks) for m in methods},
        "splits": {
            split: {
                m.name: _aggregate([r for r in results if r.question.split == split], m.name, ks)
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
    head += [f"overall @{kk}" for kk in ks] + ["ms/query"]
    lines = ["| method | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]
    for name, agg in source.items():
        cells = [_cell(agg["by_category"].get(c, {}).get(str(k))) for c in categories]
        cells += [_cell(agg["overall"][str(kk)]) for kk in ks]
        cells.append("–" if agg["mean_ms"] is None else f"{agg['mean_ms']:.1f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    counts = ", ".join(
        f"cat {c}: {next(iter(source.values()))['by_category'][c]['n']}" for c in categories
    )
    lines.append("")
    lines.append(f"questions: {counts} (overall = categories 1-4)")
    return "\n".join(lines)


def gain(report: dict[str, Any], k: int = 10, split: str | None = None) -> dict[str, float | None]:
    source = report["recall"] if split is None else report["splits"][split]
    ours = source["ours"]["overall"][str(k)]
    out: dict[str, float | None] = {}
    for name in ("vector", "lexical", "rrf"):
        base = source.get(name, {}).get("overall", {}).get(str(k))
        out[name] = None if not base or ours is None else round(ours / base - 1, 4)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.quality.locomo",
        description="Memory quality on long conversations: how many of the turns that answer "
        "each question the memory search finds in its top k (evidence recall@k), for plain "
        "vector, word and fused search and for the product's own retrieval; with a language "
        "model key, also how well the model answers from what was found.",
        epilog="Examples:\n"
        "  .venv/bin/python -m bench.quality.locomo bench/quality/synthetic_locomo.json\n"
        "  .venv/bin/python -m bench.quality.locomo locomo10.json --k 5 10 20 --json out.json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("file", help="a LoCoMo-format JSON file")
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
    args = parser.parse_args(argv)

    from services.config import Settings
    from services.db import open_pool
    from services.embeddings import make_embedder
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
    )
    samples = load_samples(args.file)[: args.limit_samples]
    llm = None
    if not args.no_llm and build_providers(env):
        llm = build_router(env)
    embedder = CachingEmbedder(make_embedder(settings), args.embedding_cache)
    pool = open_pool(settings)
    try:
        migrate(pool, embedder.model, embedder.dim, False)
        methods = [*BASELINES, PRODUCT] + ([] if args.no_ablations else ABLATIONS)
        report = evaluate(
            pool,
            embedder,
            samples,
            ks=args.k,
            methods=methods,
            llm=llm,
            answer_k=args.answer_k,
            llm_limit=args.llm_limit,
            progress=lambda line: print(line, flush=True),
        )
    finally:
        pool.close()
        embedder.save()
    report["file"] = str(args.file)
    report["embedding_model"] = embedder.model
    report["embeddings_computed"] = embedder.computed
    k = 10 if 10 in report["ks"] else report["ks"][0]
    print(f"\nevidence recall@{k} — all questions ({report['questions']})")
    print(markdown_table(report, k))
    for split in ("dev", "heldout"):
        print(f"\n{split} half")
        print(markdown_table(report, k, split))
    for split in (None, "dev", "heldout"):
        rel = gain(report, k, split)
        label = split or "all"
        print(
            f"ours vs baselines @{k} ({label}): "
            + ", ".join(f"{n} {'–' if v is None else f'{v:+.1%}'}" for n, v in rel.items())
        )
    if report["llm"]:
        llm_report = report["llm"]
        print(f"\nLLM: J = {llm_report['j']}, F1 = {llm_report['f1']}", end=" ")
        print(f"over {llm_report['answered']} answers")
    else:
        print("\nno language model configured: answer quality (J, F1) skipped")
    print(f"{report['seconds']} s, {embedder.computed} embeddings computed")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
