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
