"""The hand-written quality data sets are well formed: the Chinese LoCoMo-format conversations
(every evidence id names a turn of its own conversation) and the labelled near-duplicate pairs
used to calibrate the merge rule."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from bench.quality import locomo, make_chinese, make_synthetic

PAIRS = Path(make_synthetic.__file__).resolve().parent / "dedup_pairs.jsonl"
CJK = re.compile(r"[\u4e00-\u9fff]")
SPEAKER_TURN = re.compile(r"^\s*[^\s:：]{1,20}[:：]")


# ---- conversations in LoCoMo format ----


def test_chinese_file_is_the_generators_output():
    raw = json.loads(make_chinese.OUT.read_text(encoding="utf-8"))
    assert raw == json.loads(json.dumps(make_chinese.build(), ensure_ascii=False))


@pytest.mark.parametrize("path", [make_chinese.OUT, make_synthetic.OUT], ids=lambda p: p.name)
def test_every_evidence_id_names_a_turn_of_its_conversation(path):
    for sample in locomo.load_samples(path):
        ids = [t.turn_id for t in sample.turns]
        assert len(ids) == len(set(ids)), sample.sample_id
        for q in sample.questions:
            missing = set(q.evidence) - set(ids)
            assert q.evidence and not missing, (sample.sample_id, q.question, missing)


def test_chinese_set_covers_the_categories_over_dated_sessions():
    samples = locomo.load_samples(make_chinese.OUT)
    assert len(samples) >= 3
    questions = [q for s in samples for q in s.questions]
    assert len(questions) >= 110
    by_category = Counter(q.category for q in questions)
    assert set(by_category) == {1, 2, 3, 4, 5}
    assert min(by_category[c] for c in (1, 2, 3, 4)) >= 10
    for sample in samples:
        assert sample.speaker_a and sample.speaker_b and sample.speaker_a != sample.speaker_b
        assert {t.speaker for t in sample.turns} == {sample.speaker_a, sample.speaker_b}
        assert len({t.session for t in sample.turns}) >= 4
        assert all(t.when is not None for t in sample.turns)
        assert all(CJK.search(t.text) for t in sample.turns)
        for q in sample.questions:
            assert CJK.search(q.question), q.question
            # adversarial questions carry the tempting wrong answer, the others a gold one
            if q.category == 5:
                assert q.answer is None and q.adversarial_answer
            else:
                assert q.answer and q.adversarial_answer is None
    # people ask both ways: naming the participant, and not
    named = [
        q
        for s in samples
        for q in s.questions
        if s.speaker_a in q.question or s.speaker_b in q.question
    ]
    assert 0 < len(named) < len(questions)


def test_multi_hop_questions_draw_on_more_than_one_turn():
    for sample in locomo.load_samples(make_chinese.OUT):
        for q in sample.questions:
            if q.category == 1:
                assert len(set(q.evidence)) >= 2, q.question


# ---- near-duplicate pairs ----


def _pairs() -> list[dict]:
    lines = PAIRS.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def test_pairs_file_is_pure_jsonl_with_the_expected_fields():
    lines = PAIRS.read_text(encoding="utf-8").splitlines()
    assert len(lines) >= 240
    for number, line in enumerate(lines, start=1):
        row = json.loads(line)  # a header comment or blank line fails here
        assert set(row) == {"a", "b", "same", "lang", "kind"}, number
        assert isinstance(row["a"], str) and row["a"].strip(), number
        assert isinstance(row["b"], str) and row["b"].strip(), number
        assert row["a"] != row["b"], number
        assert isinstance(row["same"], bool), number
        assert row["lang"] in ("en", "zh"), number
        assert isinstance(row["kind"], str) and re.fullmatch(r"[a-z_]{2,20}", row["kind"]), number


def test_pairs_are_balanced_across_labels_and_languages():
    rows = _pairs()
    counts = Counter((r["lang"], r["same"]) for r in rows)
    assert set(counts) == {("en", True), ("en", False), ("zh", True), ("zh", False)}
    for lang in ("en", "zh"):
        share = sum(n for (lng, _), n in counts.items() if lng == lang) / len(rows)
        assert 0.4 <= share <= 0.6, (lang, share)
    true_share = sum(r["same"] for r in rows) / len(rows)
    assert 0.3 <= true_share <= 0.5, true_share
    for r in rows:
        has_cjk = bool(CJK.search(r["a"]) and CJK.search(r["b"]))
        assert has_cjk == (r["lang"] == "zh"), r


def test_no_pair_is_listed_twice_in_either_order():
    seen: dict[frozenset[str], int] = {}
    for number, r in enumerate(_pairs(), start=1):
        key = frozenset((r["a"], r["b"]))
        assert key not in seen, (number, seen.get(key))
        seen[key] = number


def test_pairs_include_hard_speaker_negatives_in_both_languages():
    rows = _pairs()
    for lang in ("en", "zh"):
        turns = [
            r
            for r in rows
            if r["lang"] == lang and SPEAKER_TURN.match(r["a"]) and SPEAKER_TURN.match(r["b"])
        ]
        different = [r for r in turns if _speaker(r["a"]) != _speaker(r["b"])]
        assert different and not any(r["same"] for r in different), lang
        assert any(r["same"] for r in turns if _speaker(r["a"]) == _speaker(r["b"])), lang


def _speaker(text: str) -> str:
    match = SPEAKER_TURN.match(text)
    assert match, text
    return match.group(0).rstrip(":：").strip()
