"""KeyLocks: one object's writers take turns, other objects' do not wait, and no lock
outlives its users (even cancelled ones)."""

from __future__ import annotations

import asyncio

import pytest

from kubesvc.apiserver.keylocks import KeyLocks


def test_one_keys_holders_take_turns_and_other_keys_do_not_wait() -> None:
    async def main() -> None:
        locks = KeyLocks()
        inside: dict[str, int] = {"a": 0, "b": 0}
        most: dict[str, int] = {"a": 0, "b": 0}

        async def hold(key: str) -> None:
            async with locks.hold(key):
                inside[key] += 1
                most[key] = max(most[key], inside[key])
                await asyncio.sleep(0.001)
                inside[key] -= 1

        b_done = asyncio.Event()

        async def b_while_a_is_held() -> None:
            async with locks.hold("b"):
                b_done.set()

        async with locks.hold("a"):
            task = asyncio.create_task(b_while_a_is_held())
            await asyncio.wait_for(b_done.wait(), 1)  # "b" does not wait for "a"
            await task
        await asyncio.gather(*(hold(k) for k in "abababab"))
        assert most == {"a": 1, "b": 1}
        assert len(locks) == 0

    asyncio.run(main())


def test_a_cancelled_waiter_leaves_no_lock_behind() -> None:
    async def main() -> None:
        locks = KeyLocks()
        async with locks.hold("k"):
            waiter = asyncio.create_task(locks.hold("k").__aenter__())
            await asyncio.sleep(0)
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter
        assert len(locks) == 0

    asyncio.run(main())
