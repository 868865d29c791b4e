"""aiocoap.util.asyncio.stepping: a coroutine started by hand and finished
in the same task behaves as if it had been awaited directly."""

import asyncio
import sys

import pytest

from aiocoap.util.asyncio import stepping


async def run(coro):
    """What the server does: first step by hand, finish if suspended."""
    result, yielded = stepping.first_step(coro)
    if yielded is stepping.DONE:
        return result
    return await stepping.finish(coro, yielded)


async def test_done_without_suspending():
    async def f():
        return 42

    assert stepping.first_step(f()) == (42, stepping.DONE)


async def test_exception_in_first_step_propagates():
    async def f():
        raise KeyError("x")

    with pytest.raises(KeyError):
        stepping.first_step(f())


async def test_suspending_on_futures_sleep_and_bare_yield():
    loop = asyncio.get_running_loop()
    fut = loop.create_future()
    loop.call_later(0.01, fut.set_result, "value")

    async def f():
        await asyncio.sleep(0)
        got = await fut
        await asyncio.sleep(0.005)
        return got + "!"

    assert await run(f()) == "value!"


async def test_exception_of_awaited_future_reaches_the_coroutine():
    loop = asyncio.get_running_loop()
    fut = loop.create_future()
    loop.call_soon(fut.set_exception, ValueError("boom"))

    async def f():
        try:
            await fut
        except ValueError as e:
            return f"caught {e}"

    assert await run(f()) == "caught boom"


async def test_exception_after_suspension_propagates():
    async def f():
        await asyncio.sleep(0)
        raise KeyError("late")

    with pytest.raises(KeyError):
        await run(f())


async def test_current_task_is_the_driving_task():
    seen = []

    async def f():
        seen.append(asyncio.current_task())
        await asyncio.sleep(0)
        seen.append(asyncio.current_task())

    async def driver():
        await run(f())
        return asyncio.current_task()

    task = asyncio.get_running_loop().create_task(driver())
    assert await task is task
    assert seen == [task, task]


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.timeout is new in 3.11")
async def test_asyncio_timeout_inside_works():
    async def f():
        try:
            async with asyncio.timeout(0.01):
                await asyncio.sleep(5)
        except TimeoutError:
            return "timed out"

    assert await asyncio.wait_for(run(f()), 2) == "timed out"


@pytest.mark.parametrize("where", ["future", "sleep0"])
async def test_cancelling_the_task_cancels_the_coroutine(where):
    loop = asyncio.get_running_loop()
    log = []
    fut = loop.create_future()

    async def f():
        try:
            if where == "future":
                await fut
            else:
                while True:
                    await asyncio.sleep(0)
        except asyncio.CancelledError:
            log.append("cancelled")
            raise

    task = loop.create_task(run(f()))
    for _ in range(3):
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert log == ["cancelled"]


async def test_cancellation_while_the_future_is_already_done_is_not_lost():
    """The task is cancelled after the awaited future completed but before
    the task ran again: the coroutine must see the cancellation (as it
    would in a plain task), not the future's result."""
    loop = asyncio.get_running_loop()
    fut = loop.create_future()
    log = []

    async def f():
        try:
            await fut
            log.append("resumed normally")
            await asyncio.sleep(0)
        except asyncio.CancelledError:
            log.append("cancelled")
            raise

    task = loop.create_task(run(f()))
    await asyncio.sleep(0)
    fut.set_result(1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert "cancelled" in log


async def test_coroutine_may_swallow_cancellation():
    loop = asyncio.get_running_loop()
    fut = loop.create_future()

    async def f():
        try:
            await fut
        except asyncio.CancelledError:
            return "swallowed"

    task = loop.create_task(run(f()))
    await asyncio.sleep(0)
    task.cancel()
    assert await task == "swallowed"


async def test_yielding_something_else_is_a_runtime_error():
    class Odd:
        def __await__(self):
            yield "not a future"

    async def f():
        try:
            await Odd()
        except RuntimeError as e:
            return "rejected" if "not an asyncio future" in str(e) else str(e)

    assert await run(f()) == "rejected"


async def test_continue_in_task_runs_to_the_end():
    loop = asyncio.get_running_loop()

    async def f():
        await asyncio.sleep(0)
        return asyncio.current_task() is not None

    coro = f()
    _, yielded = stepping.first_step(coro)
    assert await stepping.continue_in_task(loop, coro, yielded) is True


@pytest.mark.parametrize("early", [True, False])
async def test_continue_in_task_passes_cancellation_on(early):
    """Also when the task is cancelled before its first step, which never
    runs the task's coroutine: the suspended coroutine still sees the
    cancellation, and the future it waited for is cancelled."""
    loop = asyncio.get_running_loop()
    seen = []

    async def f():
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    coro = f()
    _, yielded = stepping.first_step(coro)
    task = stepping.continue_in_task(loop, coro, yielded)
    if not early:
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == ["cancelled"]
    assert yielded.cancelled()
    assert coro.cr_frame is None  # (finished, not left for the collector)


async def test_continue_in_task_lets_a_coroutine_that_ignores_early_cancellation_go_on():
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    async def f():
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            pass
        await asyncio.sleep(0)
        done.set_result("went on")

    coro = f()
    _, yielded = stepping.first_step(coro)
    task = stepping.continue_in_task(loop, coro, yielded)
    task.cancel()
    assert await asyncio.wait_for(done, 1) == "went on"
