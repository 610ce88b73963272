"""The retrieval pipeline: each rule on constructed candidates, then the whole pipeline on the
real store (embedded PostgreSQL + pgvector, the real local embedder): names, Chinese,
facts beside episodes, 0-1 scores with a cut-off, and a larger limit never reordering the
top of a smaller one."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services import retrieval
from services.embedding_worker import drain
from services.errors import InvalidInput
from services.memories.records import Memory, NewMemory, RankedMemory
from tests.processes import unique_user

WHEN = datetime(2023, 5, 1, tzinfo=UTC)


def _candidate(
    memory_id: str,
    speaker: str,
    text: str,
    position: int,
    *,
    vector_rank: int | None = None,
    lexical_rank: int | None = None,
    scoped_rank: int | None = None,
    session: str = "1",
) -> RankedMemory:
    memory = Memory(
        memory_id, "u", "default", memory_id, f"{speaker}: {text}", "",
        {"speaker": speaker, "session": session, "position": position},
        0.5, True, WHEN, WHEN, WHEN, None, 0, None, 1,
    )  # fmt: skip
    return RankedMemory(memory, vector_rank, lexical_rank, scoped_rank, None)


def _by_vector(*candidates: RankedMemory) -> list[RankedMemory]:
    """The candidates with vector ranks in the order given."""
    return [
        RankedMemory(c.memory, rank, c.lexical_rank, c.scoped_rank, c.similarity)
        for rank, c in enumerate(candidates, start=1)
    ]


def ids(hits) -> list[str]:
    return [h.memory.id for h in hits]


def test_the_answer_to_a_matching_question_moves_up_and_the_question_down():
    asked = _candidate("q", "Carlos", "Did you bring my teacup?", 4)
    answer = _candidate("a", "Dana", "A celadon one, I'll drop it off tomorrow.", 5)
    others = [_candidate(f"o{i}", "Dana", f"Unrelated remark {i}.", 10 + i) for i in range(3)]
    pool = _by_vector(asked, *others, answer)
    plain = retrieval.RetrievalConfig(reply_weight=0.0, question_factor=1.0)
    assert ids(retrieval.rerank(pool, config=plain))[0] == "q"
    ranked = ids(retrieval.rerank(pool))
    assert ranked.index("a") < ranked.index("o0")  # inherits the question's score
    assert ranked.index("a") < ranked.index("q")  # and the question itself is demoted
    # Only the other speaker's next turn is an answer, and only to a question.
    same_speaker = _candidate("s", "Carlos", "Also, the blue one.", 5)
    ranked = ids(retrieval.rerank(_by_vector(asked, *others, same_speaker)))
    assert ranked.index("s") > ranked.index("o2")
    statement = _candidate("q", "Carlos", "I love my teacup.", 4)
    ranked = ids(retrieval.rerank(_by_vector(statement, *others, answer)))
    assert ranked[0] == "q" and ranked[-1] == "a"
    # A question in another session is not answered by this one's next turn.
    elsewhere = _candidate("q", "Carlos", "Did you bring my teacup?", 4, session="2")
    ranked = ids(retrieval.rerank(_by_vector(elsewhere, *others, answer)))
    assert ranked.index("a") > ranked.index("o2")


def test_the_named_persons_own_ranking_and_bonus():
    bens = [_candidate(f"h{i}", "Ben", f"Remark {i}.", i) for i in range(6)]
    anna = _candidate("anna", "Anna", "About 25 kilometres a week along the river.", 9)
    pool = _by_vector(*bens, anna)
    assert ids(retrieval.rerank(pool))[-1] == "anna"
    assert ids(retrieval.rerank(pool, named=["Anna"]))[-1] != "anna"  # the speaker bonus
    scoped = [
        c if c.memory.id != "anna" else RankedMemory(c.memory, 7, None, 1, None) for c in pool
    ]
    assert ids(retrieval.rerank(scoped, named=["Anna"]))[0] == "anna"


def test_scores_read_as_relevance_from_0_to_1():
    top = _candidate("both", "A", "x", 1, vector_rank=1, lexical_rank=1)
    one = _candidate("one", "A", "y", 2, vector_rank=2)
    far = _candidate("far", "A", "z", 3, lexical_rank=40)
    fusion_only = retrieval.RetrievalConfig(session_weight=0.0)
    hits = retrieval.rerank([far, one, top], config=fusion_only)
    assert ids(hits) == ["both", "one", "far"]
    assert hits[0].score == 1.0
    assert 0.45 < hits[1].score < 0.5  # first in one ranking of two would be 0.5
    assert 0 < hits[2].score < hits[1].score
    boosted = retrieval.rerank([far, one, top])  # one session: every turn gains alike
    assert ids(boosted) == ids(hits) and boosted[0].score == 1.0
    assert all(0 < h.score <= 1 for h in boosted)


def test_turns_of_the_session_that_matches_best_rank_higher():
    topic = [_candidate(f"t{i}", "A", f"About the trip {i}.", i, session="trip") for i in range(3)]
    stray = _candidate("stray", "B", "An aside.", 1, session="aside")
    late = _candidate("late", "A", "The trip's last day.", 9, session="trip")
    pool = _by_vector(*topic, stray, late)  # stray ranks 4th, late 5th by vector alone
    assert ids(retrieval.rerank(pool, config=retrieval.RetrievalConfig(session_weight=0.0)))[
        3:
    ] == ["stray", "late"]
    assert ids(retrieval.rerank(pool))[3:] == ["late", "stray"]


def test_a_memory_outside_a_conversation_is_a_session_of_its_own():
    turn = _candidate("turn", "A", "A turn.", 1, vector_rank=2)
    fact = _candidate("fact", "A", "A fact.", 0, vector_rank=1)
    fact = RankedMemory(replace(fact.memory, metadata={}), 1, None, None, None)
    hits = retrieval.rerank([turn, fact])
    assert ids(hits) == ["fact", "turn"]  # neither lifted nor sunk by the turn's session
    assert hits[0].score == 0.5  # first in one ranking of two, its own best session


def test_ties_never_depend_on_input_order():
    tied = [_candidate(f"t{i}", "A", f"same {i}", 20 + i, vector_rank=1) for i in range(5)]
    assert ids(retrieval.rerank(tied)) == ids(retrieval.rerank(list(reversed(tied))))


# ---- the pipeline on the real store -----------------------------------------------------


FACTS = [
    "Anna: We adopted a beagle puppy called Biscuit last weekend.",
    "Ben: My cat Whiskers knocked a glass off the table again.",
    "Anna: I signed up for the Lisbon marathon in October.",
    "Ben: Did you finish the book I lent you?",
    "Anna: Yes, the ending made me cry.",
    "Ben: I started a new job at the bakery on Monday.",
    "Anna: Hi Ben, how are you?",
    "Ben: Hi Anna! Busy week.",
    "李娜: 我家的猫叫小白，很爱睡觉。",
    "王伟: 我上周末去杭州看了西湖。",
]
# Small talk around them, as in any real conversation: rank differences mean something.
FILLER = [
    f"{speaker}: {text}"
    for speaker, text in zip(
        ["Anna", "Ben"] * 10,
        [
            "Haha, true.", "Sounds good to me.", "Oh really?", "I know, right?",
            "Let's catch up soon.", "That's so funny.", "Same here, honestly.",
            "Talk later!", "Good luck with that.", "Thanks, you too!", "Wow, nice.",
            "No worries at all.", "See you on Friday?", "Totally agree.", "Ugh, Mondays.",
            "That made my day.", "Fair enough.", "Can't wait!", "Anyway, how's the weather?",
            "Same old, same old.",
        ],
    )
]  # fmt: skip


@pytest.fixture(scope="module")
def loaded(store, pool, embedder):
    user = unique_user("retrieval")
    store.add_many(
        user,
        [
            NewMemory(
                content=text,
                metadata={"speaker": text.split(":")[0], "session": "1", "position": i},
            )
            for i, text in enumerate(FILLER[:10] + FACTS + FILLER[10:])
        ],
    )
    drain(pool, embedder, batch_size=64, duplicate_threshold=1.01)
    return user


def top(store, user: str, query: str, **kwargs) -> list[str]:
    return [h.memory.content for h in retrieval.retrieve(store, user, query, **kwargs).hits]


def test_questions_find_the_turn_that_answers_them(store, loaded):
    assert top(store, loaded, "What is the name of Anna's dog?", limit=1) == [FACTS[0]]
    assert top(store, loaded, "What did Anna think of the book's ending?", limit=2)[0] == FACTS[4]
    assert top(store, loaded, "李娜的猫叫什么名字？", limit=1) == [FACTS[8]]
    assert top(store, loaded, "王伟什么时候去的杭州？", limit=1) == [FACTS[9]]


def test_min_score_cuts_and_scores_are_bounded(store, loaded):
    hits = retrieval.retrieve(store, loaded, "Biscuit the beagle puppy", limit=20).hits
    assert all(0 <= h.score <= 1 for h in hits)
    assert hits[0].memory.content == FACTS[0] and hits[0].score > 0.9
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    cut = retrieval.retrieve(store, loaded, "Biscuit the beagle puppy", limit=20, min_score=0.6)
    assert 1 <= len(cut.hits) < len(hits) and all(h.score >= 0.6 for h in cut.hits)
    with pytest.raises(InvalidInput) as raised:
        retrieval.retrieve(store, loaded, "x", min_score=2)
    assert raised.value.field == "min_score"


def test_facts_and_episodes_are_searched_together_or_apart(store, pool, embedder):
    user = unique_user("kinds")
    store.upsert(user, "The user's sister is called Maria.")
    store.add_many(
        user,
        [NewMemory("My sister Maria moves to Porto next spring.", kind="episode",
                   metadata={"speaker": "user", "session": "t1", "position": 0})],
    )  # fmt: skip
    drain(pool, embedder, batch_size=64, duplicate_threshold=1.01)
    both = retrieval.retrieve(store, user, "Where is Maria moving?", limit=5).hits
    assert {h.memory.kind for h in both} == {"fact", "episode"}
    assert both[0].memory.kind == "episode"  # it says where; the fact does not
    only = retrieval.retrieve(store, user, "Where is Maria moving?", kind="fact").hits
    assert [h.memory.kind for h in only] == ["fact"]


def test_a_metadata_filter_narrows_every_ranking(store, loaded):
    query = "What is the name of Anna's dog?"
    assert top(store, loaded, query, limit=1) == [FACTS[0]]
    bens = retrieval.retrieve(store, loaded, query, limit=20, metadata_filter={"speaker": "Ben"})
    assert bens.hits and {h.memory.metadata["speaker"] for h in bens.hits} == {"Ben"}
    assert top(store, loaded, query, metadata_filter={"speaker": "Nobody"}) == []


def test_the_query_is_found_by_words_when_the_embedder_is_down(store, loaded):
    from services.embeddings import EmbeddingError
    from services.memories.store import MemoryStore

    class Down:
        model, dim = store.embedder.model, store.embedder.dim

        def embed_query(self, text):
            raise EmbeddingError("provider down")

    blind = MemoryStore(store.pool, Down())  # type: ignore[arg-type]
    found = retrieval.retrieve(blind, loaded, "Lisbon marathon", limit=3)
    assert not found.query_embedded
    assert found.hits[0].memory.content == FACTS[2] and found.hits[0].vector_rank is None


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    query=st.sampled_from(
        ["Anna's dog", "what happened at work", "猫", "the book", "Hi", "marathon in October"]
    ),
    small=st.integers(min_value=1, max_value=8),
    extra=st.integers(min_value=1, max_value=30),
)
def test_a_larger_limit_never_reorders_the_top_of_a_smaller_one(store, loaded, query, small, extra):
    short = top(store, loaded, query, limit=small)
    longer = top(store, loaded, query, limit=small + extra)
    assert longer[: len(short)] == short
