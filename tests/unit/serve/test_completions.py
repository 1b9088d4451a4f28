"""How the engine's events reach the event loop: per delta when streamed, once per reply otherwise."""

import asyncio
import threading
from types import SimpleNamespace

from openrecipe.serve.completions import Generation
from openrecipe.serve.engines.base import Delta, Failed, Finished


def emitted(stream: bool, events: list) -> tuple[list, int]:
    """Emit `events` from another thread, as an engine does; return what the queue got and the loop's wake-ups."""

    async def main() -> tuple[list, int]:
        loop = asyncio.get_running_loop()
        wakeups = 0
        original = loop.call_soon_threadsafe

        def counted(*args):
            nonlocal wakeups
            wakeups += 1
            return original(*args)

        loop.call_soon_threadsafe = counted
        generation = SimpleNamespace(body=SimpleNamespace(stream=stream), loop=loop, events=asyncio.Queue())
        generation._put_all = Generation._put_all.__get__(generation)
        emit = Generation._emitter(generation, 3)
        engine = threading.Thread(target=lambda: [emit(event) for event in events])
        engine.start()
        engine.join()
        received = []
        while len(received) < len(events):
            received.append(await asyncio.wait_for(generation.events.get(), timeout=5))
        return received, wakeups

    return asyncio.run(main())


REPLY = [Delta("Hel"), Delta("lo"), Delta("!"), Finished("stop", 5, 3)]


def test_a_whole_reply_wakes_the_loop_once_with_every_event_in_order():
    received, wakeups = emitted(False, REPLY)
    assert received == [(3, event) for event in REPLY]
    assert wakeups == 1


def test_a_streamed_reply_wakes_the_loop_at_every_delta():
    received, wakeups = emitted(True, REPLY)
    assert received == [(3, event) for event in REPLY]
    assert wakeups == len(REPLY)


def test_a_failure_hands_over_what_came_before_it():
    events = [Delta("par"), Failed("generation failed: boom")]
    received, wakeups = emitted(False, events)
    assert received == [(3, event) for event in events]
    assert wakeups == 1
