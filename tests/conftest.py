"""Test configuration shared by the whole suite.

* ``async def`` tests run on a fresh event loop each; with the environment
  variable ``AIOCOAP_TEST_LOOP=uvloop`` that loop is a uvloop loop (CI runs
  the core and interop tests a second time that way).
* After each async test, tasks still pending on its loop fail the test: a
  context that was shut down must not leave work behind.
* hypothesis runs without time limits per example and without its
  "generation is slow" health check: the suite runs in parallel on shared
  machines (CI), where wall-clock time says nothing about the code. The
  number of examples is each test's own (see ``tests/fuzzing.py`` for the
  fuzz budget).
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import os
import warnings

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "aiocoap", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("aiocoap")


def _new_loop() -> asyncio.AbstractEventLoop:
    if os.environ.get("AIOCOAP_TEST_LOOP") == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def run_async(coro_fn, *args, **kwargs):
    """Run ``coro_fn(*args, **kwargs)`` on a fresh loop and fail if it left
    tasks behind."""
    loop = _new_loop()
    asyncio.set_event_loop(loop)
    try:
        result = loop.run_until_complete(coro_fn(*args, **kwargs))
        # Let callbacks scheduled by shutdown (transport closing) run.
        loop.run_until_complete(asyncio.sleep(0))
        leftover = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for t in leftover:
            t.cancel()
        if leftover:
            loop.run_until_complete(asyncio.gather(*leftover, return_exceptions=True))
            pytest.fail(f"test left {len(leftover)} task(s) pending: {leftover!r}")
        return result
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
        asyncio.set_event_loop(None)


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    if inspect.iscoroutinefunction(pyfuncitem.obj):
        funcargs = pyfuncitem.funcargs
        argnames = pyfuncitem._fixtureinfo.argnames
        run_async(pyfuncitem.obj, **{name: funcargs[name] for name in argnames})
        return True
    return None


@pytest.fixture
def no_warnings():
    """Turn every warning raised during the test into a failure (used by
    shutdown cleanliness tests)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield
    gc.collect()
