"""The memory quality harness end to end: the LoCoMo-format reader, the write path and the
embedding outbox on embedded PostgreSQL + pgvector, the real local embedder, the retrieval
pipeline, the baselines (same model, bm25s), and the answer + LLM-judge path through the
real SDKs against the wire-level fake."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from bench.quality import locomo, make_synthetic
from services import retrieval, turns
from services.config import Settings
from services.llm.factory import build_router
from services.memories.dedup import normalise
from tests.fakes.llm_server import FakeLLMServer, Reply

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SYNTHETIC = make_synthetic.OUT


@pytest.fixture(scope="module")
def cached(embedder) -> locomo.CachingEmbedder:
    return locomo.CachingEmbedder(embedder)


# ---- the file ----


def test_synthetic_file_is_the_generators_output_in_locomo_format():
    raw = json.loads(SYNTHETIC.read_text(encoding="utf-8"))
    assert raw == json.loads(json.dumps(make_synthetic.build(), ensure_ascii=False))
    samples = locomo.load_samples(SYNTHETIC)
    assert len(samples) == 4
    questions = [q for s in samples for q in s.questions]
    assert len([q for q in questions if q.category in (1, 2, 3, 4)]) >= 60
    assert {q.category for q in questions} == {1, 2, 3, 4, 5}
    for sample in samples:
        ids = {t.turn_id for t in sample.turns}
        assert len(ids) == len(sample.turns) >= 80
        assert all(t.when is not None for t in sample.turns)
        for q in sample.questions:
            assert q.evidence and set(q.evidence) <= ids
            assert (q.answer is None) == (q.category == 5)
    assert any("团子" in t.text for s in samples for t in s.turns)
    assert {q.split for q in questions} == {"dev", "heldout"}


def test_reader_tolerates_locomo_quirks(tmp_path):
    sample = {
        "sample_id": "s1",
        "conversation": {
            "speaker_a": "Caroline",
            "speaker_b": "Melanie",
            "session_1_date_time": "1:56 pm on 8 May, 2023",
            "session_1": [
                {"speaker": "Caroline", "dia_id": "D1:1", "text": "I went to a support group."},
                {
                    "speaker": "Melanie",
                    "dia_id": "D1:2",
                    "text": "Look what I made!",
                    "blip_caption": "a photo of a painted lake sunrise",
                },
            ],
            "session_2_date_time": "not a date",
            "session_2": [{"speaker": "Caroline", "dia_id": "D2:1", "text": "Hi again"}],
        },
        "qa": [
            {
                "question": "What did Melanie paint?",
                "answer": 42,
                "evidence": ["D1: 2"],
                "category": 4,
            },
            {
                "question": "What did Caroline paint?",
                "adversarial_answer": "a sunrise",
                "evidence": ["D1:2"],
                "category": 5,
            },
        ],
    }
    path = tmp_path / "one.json"
    path.write_text(json.dumps(sample))  # a single sample, not a list
    [loaded] = locomo.load_samples(path)
    assert [t.turn_id for t in loaded.turns] == ["D1:1", "D1:2", "D2:1"]
    assert loaded.turns[0].when == datetime(2023, 5, 8, 13, 56, tzinfo=UTC)
    assert loaded.turns[2].when is None
    assert "painted lake sunrise" in loaded.turns[1].text
    first, second = loaded.questions
    assert (first.answer, first.evidence) == ("42", ("D1:2",))
    assert second.answer is None and second.adversarial_answer == "a sunrise"


# ---- recall helpers ----


def test_relative_dates_resolve_against_the_session_date():
    friday = datetime(2023, 4, 21, 19, 40, tzinfo=UTC)
    assert turns.resolve_relative_dates("Biscuit chewed my shoes yesterday", friday) == [
        "yesterday = Thursday 20 April 2023"
    ]
    assert turns.resolve_relative_dates("I'm moving next month", friday) == [
        "next month = May 2023"
    ]
    assert turns.resolve_relative_dates("团子昨天把我的花瓶打碎了", friday) == [
        "昨天 = Thursday 20 April 2023"
    ]
    assert turns.resolve_relative_dates("I played last Friday", friday) == [
        "last friday = Friday 14 April 2023"
    ]


def test_questions_become_queries():
    speakers = ["Anna", "Ben"]
    assert retrieval.named_speakers("What is Anna's dog called?", speakers) == ["Anna"]
    assert retrieval.named_speakers("Did Annabel call?", speakers) == []
    assert retrieval.strip_names("What is Anna's dog called?", ["Anna"]) == "What is dog called?"
    assert retrieval.lexical_query("What is the name of Anna's dog?", ["Anna"]).split() == [
        "what",
        "is",
        "the",
        "of",
        "dog",
    ]
    assert "李娜" not in retrieval.lexical_query("李娜的猫叫什么名字？", ["李娜"])
    assert "什么" not in retrieval.lexical_query("李娜的猫叫什么名字？", ["李娜"])
    assert retrieval.is_temporal("When did Ben move?") and retrieval.is_temporal(
        "他什么时候搬家的？"
    )
    assert not retrieval.is_temporal("What did Ben say when he moved?")


def test_turns_become_memories_with_speaker_and_metadata():
    when = datetime(2023, 4, 21, tzinfo=UTC)
    said = [
        turns.Turn("Anna", "Hi!", "D1:1", "1", 0, when),
        turns.Turn("Ben", "I moved last week.", "D1:2", "1", 1, when),
    ]
    plain, with_context = (
        turns.turn_memories(said),
        turns.turn_memories(
            said, turns.IndexConfig(session_date_in_context=True, neighbours_before=1)
        ),
    )
    assert plain[1].content == "Ben: I moved last week." and plain[1].context == ""
    assert plain[1].metadata["turn_id"] == "D1:2" and plain[1].metadata["position"] == 1
    assert plain[1].metadata["time"] == ["last week = Monday 10 April 2023 to Sunday 16 April 2023"]
    assert plain[1].observed_at == when
    assert "Friday 21 April 2023" in with_context[1].context
    assert "Before: Anna: Hi!" in with_context[1].context


def test_answer_scoring():
    assert locomo.token_f1("Blackbird by The Beatles", "Blackbird") == pytest.approx(0.5)
    assert locomo.token_f1("Biscuit", "biscuit.") == 1.0
    assert locomo.token_f1("团子", "团子") == 1.0
    assert locomo.token_f1("", "Pixel") == 0.0
    assert locomo.parse_label('Same pet. {"label": "CORRECT"}') == "CORRECT"
    assert locomo.parse_label("It names another city. WRONG") == "WRONG"
    assert locomo.parse_label("no idea") == "WRONG"


# ---- the harness on the synthetic file ----


@pytest.fixture(scope="module")
def synthetic_report(pool, cached):
    samples = locomo.load_samples(SYNTHETIC)[:1]  # one conversation keeps this test fast
    return locomo.evaluate(pool, cached, samples, ablations=False, run_id="test")


def test_harness_reports_recall_per_category_and_method(synthetic_report, pool):
    report = synthetic_report
    assert report["samples"] == 1 and report["ks"] == [5, 10, 20]
    assert report["questions"] == 18 and report["skipped_without_evidence"] == 0
    assert set(report["recall"]) == {"e5", "bm25", "e5+bm25", "ours"}
    assert report["llm"] is None
    for name, agg in report["recall"].items():
        overall = agg["overall"]
        assert overall["n"] == sum(agg["by_category"][c]["n"] for c in ("1", "2", "3", "4")), name
        assert 0 <= overall["5"] <= overall["10"] <= overall["20"] <= 1, name
        assert set(agg["by_category"]) == {"1", "2", "3", "4", "5"}
        for split in ("dev", "heldout"):
            assert report["splits"][split][name]["overall"]["n"] > 0
    assert report["recall"]["ours"]["p95_ms"] > 0
    table = locomo.markdown_table(report)
    assert table.startswith("| method |") and "| ours |" in table
    with pool.transaction() as tx:  # the run's users are gone
        assert tx.value("SELECT count(*) FROM memories WHERE user_id LIKE 'locomo-test-%'") == 0


def test_turns_go_through_the_write_path_and_the_outbox(synthetic_report):
    [load] = synthetic_report["loads"].values()
    assert load["turns"] == 97
    # The padding repeats small talk word for word: those merge, and nothing else does.
    assert load["memories"] == load["turns"] - len(load["merges"]) < load["turns"]
    for pair in load["merges"]:
        assert normalise(pair["merged"]) == normalise(pair["survivor"]), pair
    assert load["evidence_lost"] == []
    assert "0 evidence turns lost" in locomo.merge_summary(synthetic_report)


def test_the_pipeline_beats_the_same_model_and_bm25(synthetic_report):
    recall_at_10 = {m: a["overall"]["10"] for m, a in synthetic_report["recall"].items()}
    assert recall_at_10["ours"] > recall_at_10["e5"], recall_at_10
    assert recall_at_10["ours"] > recall_at_10["bm25"], recall_at_10
    assert recall_at_10["ours"] > recall_at_10["e5+bm25"], recall_at_10


def test_bm25_baseline_is_a_real_bm25():
    """Term frequency saturates and rare terms weigh more: the bm25s ranking, not a
    substring test, orders these."""
    said = [
        turns.Turn("A", text, f"D1:{i}", "1", i)
        for i, text in enumerate(
            [
                "We walked the dog in the park.",
                "The park, the park, the park: always the park.",
                "My aunt grows orchids in her greenhouse.",
                "Orchids again! Her greenhouse smells of orchids.",
            ]
        )
    ]

    class NoVectors:
        model, dim = "none", 2

        def embed_documents(self, texts):
            import numpy as np

            return np.zeros((len(texts), 2), dtype=np.float32)

    baselines = locomo.Baselines(NoVectors(), said)
    assert baselines.bm25_ranking("greenhouse orchids", 4)[:2] == ["D1:3", "D1:2"]
    assert baselines.bm25_ranking("parks", 4) == ["D1:1", "D1:0"]  # stemmed
    assert baselines.bm25_ranking("zebra", 4) == []


def test_reader_takes_a_directory_of_conversations(tmp_path):
    conversation = {
        "speaker_a": "Caroline",
        "speaker_b": "Melanie",
        "session_1_date_time": "1:56 pm on 8 May, 2023",
        "session_1": [{"speaker": "Caroline", "dia_id": "D1:1", "text": "Hello"}],
        "qa": [{"question": "Who said hello?", "answer": "Caroline", "evidence": ["D1:1"],
                "category": 4}],
    }  # fmt: skip
    (tmp_path / "26.json").write_text(json.dumps(conversation))
    (tmp_path / "30.json").write_text(json.dumps(conversation))
    samples = locomo.load_samples(tmp_path)
    assert [s.sample_id for s in samples] == ["conv-26", "conv-30"]
    assert samples[0].questions[0].evidence == ("D1:1",)


# ---- answering and judging through the wire fake ----


@pytest.fixture(scope="module")
def fake_llm():
    with FakeLLMServer() as server:
        yield server


def test_llm_answers_and_judge_against_the_wire_fake(pool, cached, fake_llm):
    fake_llm.reset()
    [sample] = locomo.load_samples(SYNTHETIC)[:1]
    questions = [
        q
        for q in sample.questions
        if q.question
        in (
            "What is the name of Anna's dog?",
            "What is Ben's cat called?",
            "What did Ben name his puppy?",  # adversarial: retrieved, never answered
        )
    ]
    assert len(questions) == 3
    sample = locomo.Sample(
        sample.sample_id, sample.speaker_a, sample.speaker_b, sample.turns, tuple(questions)
    )
    fake_llm.script(
        "anthropic",
        Reply(text="Biscuit."),
        Reply(text='The dog is called Biscuit in both. {"label": "CORRECT"}'),
        Reply(text="Ben's cat is called Whiskers."),
        Reply(text='Different name. {"label": "WRONG"}'),
    )
    settings = Settings(
        anthropic_api_key="test-key",
        anthropic_base_url=fake_llm.anthropic_base_url,
        llm_providers="anthropic",
        llm_max_retries=0,
    )
    report = locomo.evaluate(
        pool,
        cached,
        [sample],
        ablations=False,
        llm=build_router(settings),
        answer_k=5,
        run_id="llm",
    )
    llm = report["llm"]
    assert llm["answered"] == 2
    assert llm["j"] == 0.5
    assert llm["f1"] == pytest.approx((1.0 + 0.0) / 2)
    assert llm["by_category"]["4"]["n"] == 2
    requests = [r.body for r in fake_llm.requests if r.provider == "anthropic"]
    assert len(requests) == 4
    first_answer, first_judge = json.dumps(requests[0]), json.dumps(requests[1])
    assert "Biscuit" in first_answer and "What is the name of Anna" in first_answer
    assert "Gold answer: Biscuit" in first_judge and "Generated answer: Biscuit." in first_judge
    assert "CORRECT" in json.dumps(requests[1]["system"])


def test_offline_fallback_is_not_graded(pool, cached, fake_llm):
    """When no model answers, the router's offline text must not be scored as an answer."""
    fake_llm.reset()
    fake_llm.fail_always("anthropic")
    [sample] = locomo.load_samples(SYNTHETIC)[:1]
    question = next(q for q in sample.questions if q.category == 4)
    sample = locomo.Sample(
        sample.sample_id, sample.speaker_a, sample.speaker_b, sample.turns, (question,)
    )
    settings = Settings(
        anthropic_api_key="test-key",
        anthropic_base_url=fake_llm.anthropic_base_url,
        llm_providers="anthropic",
        llm_max_retries=0,
    )
    try:
        with pytest.raises(locomo.NoModelAnswered):
            locomo.evaluate(pool, cached, [sample], ablations=False, llm=build_router(settings))
    finally:
        fake_llm.fail_always("anthropic", None)


def test_set_overrides_one_constant_of_the_pipeline_and_refuses_unknown_ones():
    tuned = locomo.config_with(["session_weight=0.2", "strip_names=false", "rrf_k=30"])
    assert (tuned.session_weight, tuned.strip_names, tuned.rrf_k) == (0.2, False, 30)
    assert locomo.config_with([]) == locomo.OURS
    for bad in ("bogus=1", "rrf_k", "rrf_k="):
        with pytest.raises(ValueError):
            locomo.config_with([bad])
