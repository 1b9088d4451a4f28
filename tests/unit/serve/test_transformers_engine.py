"""Scheduling shortcuts of the transformers engine do not change what a request gets back."""

from __future__ import annotations

import threading

import pytest

from openrecipe.serve.engines.base import Delta, Failed, Finished, GenerationRequest
from openrecipe.serve.engines.prefix_cache import PrefixCache, Prompt
from openrecipe.serve.engines.transformers_engine import TransformersEngine

SYSTEM = [{"role": "system", "content": "You answer in one short sentence about the weather and nothing else."}]
QUESTIONS = ["Is it raining?", "How cold is it today?", "Will it snow?", "Is it windy?"]


def replies(engine: TransformersEngine, *, together: bool, **settings) -> list[str]:
    def submit(question: str) -> tuple[threading.Event, list]:
        events, done = [], threading.Event()

        def emit(event) -> None:
            events.append(event)
            if isinstance(event, Finished | Failed):
                done.set()

        ids = engine.encode_chat([*SYSTEM, {"role": "user", "content": question}])
        engine.submit(GenerationRequest(prompt_ids=ids, max_tokens=12, emit=emit, **settings))
        if not together:
            done.wait(60)
        return done, events

    pending = [submit(question) for question in QUESTIONS]
    texts = []
    for done, events in pending:
        assert done.wait(60) and isinstance(events[-1], Finished), events[-1]
        texts.append("".join(e.text for e in events if isinstance(e, Delta)) + f"|{events[-1].completion_tokens}")
    return texts


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    engine = TransformersEngine(str(tiny_model_dir), model_id="tiny", max_batch_size=8, decode_chunk=4)
    yield engine
    engine.close()


@pytest.mark.parametrize("settings", [{}, {"temperature": 0.9, "seed": 11}])
def test_a_cached_prompt_prefix_gives_the_same_replies_as_a_full_prefill(engine, monkeypatch, settings):
    cached_before = engine.stats()["prefix_cached_tokens"]
    with_cache = replies(engine, together=False, **settings)
    assert engine.stats()["prefix_cached_tokens"] > cached_before  # the shared system turn was reused
    monkeypatch.setattr(PrefixCache, "longest", lambda self, prompts: None)
    assert replies(engine, together=False, **settings) == with_cache


def test_rows_that_finish_early_leave_the_batch_without_changing_the_others(engine):
    alone = replies(engine, together=False)
    together = replies(engine, together=True)
    assert together == alone
    assert engine.stats()["max_batch_size_seen"] > 1


def test_requests_admitted_together_use_their_own_stored_starts(engine):
    replies(engine, together=False)  # the weather system turn is now stored
    other = [{"role": "system", "content": "You are a pirate who answers every question with a short rhyme."}]
    prompts = [[*system, {"role": "user", "content": q}] for system in (SYSTEM, other) for q in QUESTIONS[:2]]
    requests = [
        GenerationRequest(prompt_ids=engine.encode_chat(messages), max_tokens=1, emit=lambda event: None)
        for messages in prompts
    ]
    stored = engine._prefix_cache.shared_length([Prompt(None, tuple(r.prompt_ids)) for r in requests[:2]])
    assert stored > 0 and engine._prefix_cache.shared_length([Prompt(None, tuple(requests[2].prompt_ids))]) == 0
    before = engine.stats()["prefix_cached_tokens"]
    batches = engine._prefill_contained(requests)  # the engine thread is idle: nothing else is queued
    assert sorted(len(batch.rows) for batch in batches) == [2, 2]  # the stored start's pair, the new pair
    assert engine.stats()["prefix_cached_tokens"] - before == 2 * stored  # the new pair did not cancel it
