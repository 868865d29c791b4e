"""Tests of aiocoap.util.cli: the --foo/--no-foo argparse action and the
AsyncCLIDaemon life cycle (start, stop, shutdown, exit status, signals)."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from aiocoap.util.cli import ActionNoYes, AsyncCLIDaemon

CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --- ActionNoYes -------------------------------------------------------------


def _parser(**kwargs) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="prog")
    p.add_argument("--color", action=ActionNoYes, **kwargs)
    return p


def test_noyes_default_is_true():
    assert _parser().parse_args([]).color is True


def test_noyes_both_spellings():
    p = _parser(default=None)
    assert p.parse_args([]).color is None
    assert p.parse_args(["--color"]).color is True
    assert p.parse_args(["--no-color"]).color is False


def test_noyes_last_one_wins():
    p = _parser(default=None)
    assert p.parse_args(["--color", "--no-color"]).color is False
    assert p.parse_args(["--no-color", "--color"]).color is True


def test_noyes_takes_no_value():
    p = _parser()
    # The word after the flag is not consumed by it
    p.add_argument("rest", nargs="?")
    ns = p.parse_args(["--no-color", "yes"])
    assert (ns.color, ns.rest) == (False, "yes")


def test_noyes_help_lists_both_and_the_help_text():
    text = _parser(help="Use colors").format_help()
    assert "--color, --no-color" in text
    assert "Use colors" in text
    assert "--color | --no-color" in _parser().format_usage()


def test_noyes_required(capsys):
    p = _parser(required=True)
    with pytest.raises(SystemExit) as excinfo:
        p.parse_args([])
    assert excinfo.value.code == 2
    assert "--color/--no-color" in capsys.readouterr().err
    assert p.parse_args(["--no-color"]).color is False


def test_noyes_dest_from_option_name():
    p = argparse.ArgumentParser()
    p.add_argument("--pretty-print", action=ActionNoYes, default=False)
    assert p.parse_args([]).pretty_print is False
    assert p.parse_args(["--pretty-print"]).pretty_print is True


@pytest.mark.parametrize(
    "spellings",
    [("--no-color",), ("-c",), ("-c", "--color"), ()],
)
def test_noyes_rejects_unusable_option_strings(spellings):
    p = argparse.ArgumentParser()
    with pytest.raises(ValueError):
        p.add_argument(*spellings, dest="color", action=ActionNoYes)


# --- AsyncCLIDaemon in-process -------------------------------------------------


class Recorder(AsyncCLIDaemon):
    """A daemon that records what happens to it"""

    async def start(self, *args, stop_with=None, **kwargs):
        self.events = [("start", args, kwargs)]
        await asyncio.sleep(0)
        if stop_with is not None:
            self.stop(stop_with)

    async def shutdown(self):
        self.events.append("shutdown")


async def test_daemon_gets_constructor_arguments_and_stops():
    daemon = Recorder(1, "two", key="value")
    await daemon.initializing
    assert daemon.events == [("start", (1, "two"), {"key": "value"})]
    assert not daemon.stopped
    daemon.stop(7)
    assert daemon.stopped
    assert await daemon.wait_for_stop() == 7
    # The first stop decides the exit code
    daemon.stop(9)
    assert await daemon.wait_for_stop() == 7
    await daemon.shutdown()
    assert daemon.events[-1] == "shutdown"


async def test_daemon_wait_for_stop_survives_cancellation():
    daemon = Recorder()
    await daemon.initializing
    waiter = asyncio.ensure_future(daemon.wait_for_stop())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    daemon.stop(4)
    assert await daemon.wait_for_stop() == 4


async def test_daemon_without_start_fails_clearly():
    class Empty(AsyncCLIDaemon):
        pass

    daemon = Empty()
    with pytest.raises(NotImplementedError, match="start"):
        await daemon.initializing


@pytest.mark.parametrize("code", [0, 3])
def test_sync_main_exits_with_stop_code_after_shutdown(code):
    instances = []

    class Once(Recorder):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            instances.append(self)

    with pytest.raises(SystemExit) as excinfo:
        Once.sync_main("arg", stop_with=code)
    assert excinfo.value.code == code
    (daemon,) = instances
    assert daemon.events == [("start", ("arg",), {}), "shutdown"]


def test_sync_main_leaves_no_signal_handler_behind():
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with pytest.raises(SystemExit):
        Recorder.sync_main(stop_with=0)
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


def test_sync_main_passes_start_errors_on():
    class Broken(AsyncCLIDaemon):
        async def start(self):
            raise LookupError("no such thing")

        async def shutdown(self):
            raise AssertionError("shutdown must not run after a failed start")

    with pytest.raises(LookupError, match="no such thing"):
        Broken.sync_main()


# --- AsyncCLIDaemon in a subprocess, with signals ------------------------------

DAEMON_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from aiocoap.util.cli import AsyncCLIDaemon

    mode = sys.argv[1]

    class Daemon(AsyncCLIDaemon):
        async def start(self, mode):
            if mode == "failing-start":
                from aiocoap.cli.common import fail
                fail("cannot start: no such thing", prog="daemon")
            if mode == "slow-start":
                print("starting", flush=True)
                await asyncio.sleep(60)
            self.ticker = asyncio.ensure_future(self.tick())
            print("ready", flush=True)

        async def tick(self):
            while True:
                await asyncio.sleep(0.05)

        async def shutdown(self):
            print("shutting down", flush=True)
            if mode == "slow-shutdown":
                await asyncio.sleep(60)
            self.ticker.cancel()
            print("shutdown complete", flush=True)

    Daemon.sync_main(mode)
    """
)


def _spawn_daemon(mode: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=CHECKOUT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen(
        [sys.executable, "-c", DAEMON_SCRIPT, mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _expect_line(process: subprocess.Popen, expected: str) -> None:
    line = process.stdout.readline()
    assert line == expected + "\n", (line, process.stderr.read() if process.poll() is not None else "")


def _finish(process: subprocess.Popen) -> tuple[int, str, str]:
    try:
        out, err = process.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        pytest.fail(f"daemon did not exit; stdout {out!r}, stderr {err!r}")
    return process.returncode, out, err


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_shuts_down_cleanly(signum):
    process = _spawn_daemon("normal")
    _expect_line(process, "ready")
    process.send_signal(signum)
    code, out, err = _finish(process)
    assert code == 0
    assert out == "shutting down\nshutdown complete\n"
    assert "Traceback" not in err
    assert err == ""


def test_signal_during_start_aborts_without_shutdown():
    process = _spawn_daemon("slow-start")
    _expect_line(process, "starting")
    process.send_signal(signal.SIGINT)
    code, out, err = _finish(process)
    assert code == 0
    assert out == ""
    assert "Traceback" not in err


def test_second_signal_aborts_a_hanging_shutdown():
    process = _spawn_daemon("slow-shutdown")
    _expect_line(process, "ready")
    process.send_signal(signal.SIGTERM)
    _expect_line(process, "shutting down")
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    code, out, err = _finish(process)
    assert time.monotonic() - started < 5
    assert code == 0
    assert out == ""
    assert "Traceback" not in err


def test_start_failing_with_one_line():
    process = _spawn_daemon("failing-start")
    code, out, err = _finish(process)
    assert code == 1
    assert out == ""
    assert err == "daemon: error: cannot start: no such thing\n"
