"""The coalescer turns concurrent submits into few batch calls."""

from __future__ import annotations

import asyncio

from shared.coalesce import Coalescer


async def test_concurrent_submits_become_full_batches() -> None:
    calls: list[list[int]] = []

    async def flush(keys: list[int]) -> dict[int, BaseException | None]:
        calls.append(keys)
        await asyncio.sleep(0.01)
        return {}

    coalescer = Coalescer(flush, max_batch=100, window_s=0.05)
    await asyncio.gather(*(coalescer.submit(i) for i in range(250)))
    assert [len(c) for c in calls] == [100, 100, 50]
    assert sorted(k for c in calls for k in c) == list(range(250))


async def test_a_key_submitted_twice_is_flushed_once() -> None:
    calls: list[list[str]] = []

    async def flush(keys: list[str]) -> dict[str, BaseException | None]:
        calls.append(keys)
        return {}

    coalescer = Coalescer(flush, window_s=0.01)
    await asyncio.gather(coalescer.submit("a"), coalescer.submit("a"), coalescer.submit("b"))
    assert calls == [["a", "b"]]


async def test_each_caller_gets_its_own_keys_outcome() -> None:
    async def flush(keys: list[str]) -> dict[str, BaseException | None]:
        return {"bad": ValueError("record rejected")}

    coalescer = Coalescer(flush, window_s=0.01)
    results = await asyncio.gather(
        coalescer.submit("good"), coalescer.submit("bad"), return_exceptions=True
    )
    assert results[0] is None
    assert isinstance(results[1], ValueError)


async def test_a_failed_flush_fails_every_waiter() -> None:
    async def flush(keys: list[int]) -> dict[int, BaseException | None]:
        raise ConnectionError("hubspot down")

    coalescer = Coalescer(flush, window_s=0.01)
    results = await asyncio.gather(*(coalescer.submit(i) for i in range(3)), return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)


async def test_a_lone_submit_is_flushed_when_the_window_ends() -> None:
    async def flush(keys: list[int]) -> dict[int, BaseException | None]:
        return {}

    coalescer = Coalescer(flush, window_s=0.05)
    await asyncio.wait_for(coalescer.submit(1), timeout=5)
    assert coalescer.flushes == 1


async def test_one_flush_is_in_flight_and_the_next_batch_gathers_meanwhile() -> None:
    calls: list[list[int]] = []
    in_flight = 0
    most_in_flight = 0
    release = asyncio.Event()

    async def flush(keys: list[int]) -> dict[int, BaseException | None]:
        nonlocal in_flight, most_in_flight
        calls.append(keys)
        in_flight += 1
        most_in_flight = max(most_in_flight, in_flight)
        if len(calls) == 1:
            await release.wait()  # a slow provider call
        in_flight -= 1
        return {}

    coalescer = Coalescer(flush, max_batch=100, window_s=0.01)
    first = asyncio.create_task(coalescer.submit(0))
    while not calls:  # the first flush has started and hangs
        await asyncio.sleep(0.005)
    # 40 keys trickle in over many windows, among them the key on the wire.
    later = []
    for i in range(40):
        later.append(asyncio.create_task(coalescer.submit(i)))
        await asyncio.sleep(0.002)
    assert len(calls) == 1
    release.set()
    await asyncio.gather(first, *later)
    assert most_in_flight == 1
    assert calls == [[0], list(range(40))]


async def test_drain_flushes_everything_waiting() -> None:
    calls: list[list[int]] = []

    async def flush(keys: list[int]) -> dict[int, BaseException | None]:
        calls.append(keys)
        return {}

    coalescer = Coalescer(flush, max_batch=100, window_s=60)
    waiters = [asyncio.create_task(coalescer.submit(i)) for i in range(150)]
    await asyncio.sleep(0)
    await asyncio.wait_for(coalescer.drain(), timeout=5)
    await asyncio.gather(*waiters)
    assert [len(c) for c in calls] == [100, 50]


async def test_offered_keys_join_the_next_flush_and_nobody_waits_for_them() -> None:
    calls: list[list[int]] = []

    async def flush(keys: list[int]) -> dict[int, BaseException | None]:
        calls.append(keys)
        if len(calls) == 1:
            raise ConnectionError("hubspot down")  # no waiter: nothing to hand it to
        return {}

    coalescer = Coalescer(flush, window_s=0.01)
    coalescer.offer(1)
    coalescer.offer(2)
    coalescer.offer(1)
    await coalescer.drain()
    assert calls == [[1, 2]]
    # An offered key and a submitted one share a flush; only the submitter waits.
    coalescer.offer(3)
    await coalescer.submit(4)
    assert calls == [[1, 2], [3, 4]]
