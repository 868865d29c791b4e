"""aiocoap.util.asyncio.timer.DeadlineTimer on a real event loop (with
deadlines a few milliseconds away)."""

import asyncio
import math

from aiocoap.util.asyncio.timer import DeadlineTimer


async def test_fires_once_at_the_earliest_armed_deadline():
    loop = asyncio.get_running_loop()
    fired = []
    timer = DeadlineTimer(loop, lambda: fired.append(loop.time()))
    assert timer.when == math.inf
    now = loop.time()
    timer.arm_before(now + 10)
    timer.arm_before(now + 0.02)  # earlier: moves the timer
    timer.arm_before(now + 5)  # later: no change
    timer.arm_before(None)
    assert timer.when == now + 0.02
    await asyncio.sleep(0.1)
    assert len(fired) == 1 and fired[0] >= now + 0.02
    assert timer.when == math.inf  # disarmed once it fired


async def test_set_replaces_and_cancel_disarms():
    loop = asyncio.get_running_loop()
    fired = []
    timer = DeadlineTimer(loop, lambda: fired.append(True))
    now = loop.time()
    timer.set(now + 0.01)
    timer.set(now + 10)  # later than before: set moves it anyway
    assert timer.when == now + 10
    await asyncio.sleep(0.05)
    assert fired == []
    timer.cancel()
    assert timer.when == math.inf
    timer.arm_before(now)  # in the past: fires soon
    await asyncio.sleep(0.01)
    assert fired == [True]


async def test_callback_may_rearm():
    loop = asyncio.get_running_loop()
    fired = []

    def callback():
        fired.append(loop.time())
        if len(fired) < 3:
            timer.arm_before(loop.time() + 0.005)

    timer = DeadlineTimer(loop, callback)
    timer.arm_before(loop.time())
    await asyncio.sleep(0.1)
    assert len(fired) == 3
