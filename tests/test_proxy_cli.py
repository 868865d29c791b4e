"""The aiocoap-proxy tool: a real process serving on loopback, its argument
errors, and the rule building."""

import asyncio
import os
import signal
import subprocess
import sys

import pytest

from aiocoap.cli.proxy import build_parser, build_redirectors
from aiocoap.message import Message
from aiocoap.numbers.codes import Code
from aiocoap.proxy.server import NameBasedVirtualHost, SubresourceVirtualHost, UnconditionalRedirector
from proxy_harness import client, free_port, upstream

HERE = os.path.dirname(os.path.abspath(__file__))
TOOL = os.path.join(HERE, "..", "aiocoap-proxy")


def run_tool(*args, timeout=20):
    return subprocess.run(
        [sys.executable, TOOL, *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


@pytest.mark.parametrize(
    "args, text",
    [
        ([], "At least one of --forward and --reverse"),
        (["--reverse"], "--reverse needs at least one rule"),
        (["--forward", "--pathbased", "nocolon"], "--pathbased needs PATH:DEST"),
        (["--forward", "--namebased", "x:"], "--namebased needs NAME:DEST"),
        (["--forward", "--unconditional", "!host"], "makes no sense for --unconditional"),
        (["--forward", "--cache-size", "0"], "at least one entry"),
        (["--forward", "--unconditional", "coap://[::1"], "unusable destination"),
    ],
)
def test_argument_errors_are_one_line(args, text):
    result = run_tool(*args)
    assert result.returncode != 0
    assert text in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("aiocoap-proxy: error:")


def test_rules_in_order():
    options = build_parser().parse_args(
        ["--reverse", "--namebased", "a.example:!localhost:1234", "--pathbased", "/x/y:coap+tcp://[::1]", "--unconditional", "@proxy.example"]
    )
    named, path, fallback = build_redirectors(options.rules)
    assert isinstance(named, NameBasedVirtualHost) and named.rewrite_uri_host and named.target == "localhost:1234"
    assert isinstance(path, SubresourceVirtualHost) and path.path == ("x", "y") and path.target == "coap+tcp://[::1]"
    assert isinstance(fallback, UnconditionalRedirector) and fallback.use_as_proxy


def test_defaults():
    options = build_parser().parse_args(["--forward"])
    assert options.cache_size == 1000 and not options.no_cache


@pytest.mark.core
async def test_tool_forwards_and_stops_on_sigterm():
    port = free_port()
    async with upstream() as (origin, up):
        process = await asyncio.create_subprocess_exec(
            sys.executable, TOOL, "--forward", "--bind", f"127.0.0.1:{port}", "-v",
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        try:
            async with client() as c:
                response = None
                for _ in range(100):
                    message = Message(code=Code.GET, uri=f"coap://127.0.0.1:{port}")
                    message.opt.proxy_uri = f"coap://127.0.0.1:{up}/counter"
                    try:
                        response = await asyncio.wait_for(c.request(message).response, 1)
                        break
                    except Exception:
                        await asyncio.sleep(0.1)
                assert response is not None and response.payload == b"n=1"
                # Cached: the second one does not reach the origin.
                message = Message(code=Code.GET, uri=f"coap://127.0.0.1:{port}")
                message.opt.proxy_uri = f"coap://127.0.0.1:{up}/counter"
                assert (await c.request(message).response).payload == b"n=1"
                assert origin.counter.gets == 1
        finally:
            process.send_signal(signal.SIGTERM)
            _, stderr = await asyncio.wait_for(process.communicate(), 10)
        assert process.returncode == 0
        assert b"Traceback" not in stderr
        # The statistics are logged when it stops.
        assert b"Proxy statistics" in stderr and b"'hits': 1" in stderr
