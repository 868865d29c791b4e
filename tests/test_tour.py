"""The guided tour (doc/guidedtour.rst) works as written.

The demo server (examples/server.py) is started on a free local port; the
tour's ``./aiocoap-client`` command lines and its Python session are taken
from the document itself and run against it, with ``localhost`` turned
into ``localhost:PORT``. The Python session runs like in ``python3 -m
asyncio`` (top-level ``await``), and its output is compared with the
document's the way doctest does.

The documentation build itself (sphinx -W) is tested here too.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import doctest
import inspect
import io
import os
import re
import shlex
import signal
import socket
import subprocess
import sys

import pytest
from ports import free_udp_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOUR = os.path.join(ROOT, "doc", "guidedtour.rst")
SERVER = os.path.join(ROOT, "examples", "server.py")

OPTIONFLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _tour_text() -> str:
    with open(TOUR, encoding="utf-8") as f:
        return f.read()


def tour_commands() -> list[list[str]]:
    """The aiocoap-client command lines of the tour (as argument lists),
    each with the output lines the document shows for it"""
    commands = []
    lines = _tour_text().splitlines()
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("$ ./aiocoap-client "):
            shown = []
            for following in lines[i + 1 :]:
                if not following.strip() or following.strip().startswith("$"):
                    break
                shown.append(following.strip())
            commands.append((shlex.split(stripped[2:]), shown))
    return commands




async def _interrupt(process) -> None:
    """Stop a server process as Ctrl-C does (killing it if that fails)"""
    if process.returncode is not None:
        return
    process.send_signal(signal.SIGINT)
    try:
        await asyncio.wait_for(process.wait(), 10)
    except asyncio.TimeoutError:
        process.kill()
        await process.wait()


@contextlib.asynccontextmanager
async def demo_server(tmp_path):
    """examples/server.py on 127.0.0.1 (which is what localhost resolves to
    in the test environments; checked below) and a free port"""
    try:
        addresses = {a[4][0] for a in socket.getaddrinfo("localhost", 5683, type=socket.SOCK_DGRAM)}
    except socket.gaierror:
        pytest.skip("localhost does not resolve")
    if "127.0.0.1" not in addresses:
        pytest.skip(f"localhost resolves to {addresses}, not 127.0.0.1")

    from aiocoap import GET, Context, Message
    from aiocoap.numbers import TransportTuning

    port = free_udp_port()
    log = open(tmp_path / "server.log", "wb")
    process = await asyncio.create_subprocess_exec(
        sys.executable, SERVER, "--bind", f"127.0.0.1:{port}",
        stdin=subprocess.DEVNULL, stdout=log, stderr=log,
    )
    context = await Context.create_client_context()
    try:
        quick = TransportTuning(ACK_TIMEOUT=0.1, MAX_RETRANSMIT=1)
        for _ in range(100):
            if process.returncode is not None:
                break
            request = Message(code=GET, uri=f"coap://127.0.0.1:{port}/time", transport_tuning=quick)
            try:
                await context.request(request).response
                break
            except Exception:
                await asyncio.sleep(0.1)
        else:
            pytest.fail("the demo server did not start answering")
        if process.returncode is not None:
            pytest.fail(f"the demo server ended: {(tmp_path / 'server.log').read_text()}")
        yield port
    finally:
        await context.shutdown()
        await _interrupt(process)
        log.close()


def test_tour_has_the_expected_commands():
    paths = [args[-1] for args, _ in tour_commands()]
    assert paths == [
        "coap://localhost/.well-known/core",
        "coap://localhost/time",
        "coap://localhost/other/separate",
    ]


@pytest.mark.core
async def test_tour_commands(tmp_path):
    async with demo_server(tmp_path) as port:

        async def run(args):
            args = [a.replace("coap://localhost/", f"coap://localhost:{port}/") for a in args]
            process = await asyncio.create_subprocess_exec(
                sys.executable, os.path.join(ROOT, args[0]), *args[1:],
                cwd=ROOT, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            )
            out, err = await asyncio.wait_for(process.communicate(), 20)
            return process.returncode, out.decode(), err.decode()

        commands = tour_commands()
        # All at once: the separate resource takes 3 seconds by design
        results = await asyncio.gather(*(run(args) for args, _ in commands))
        for (args, shown), (returncode, out, err) in zip(commands, results):
            assert (returncode, err) == (0, ""), (args, out, err)
            path = args[-1].split("localhost", 1)[1]
            if path == "/.well-known/core":
                # On a pipe, the link format arrives as sent: on one line
                links = {link.strip() for link in out.split(",")}
                for link in shown:
                    assert link.rstrip(",") in links, (link, out)
                assert len(links) == len(shown)
            elif path == "/time":
                assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", out), out
                assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", shown[0])
            else:
                assert out == shown[0]


def _lines_match(want: str, got: str) -> bool:
    """Every line of want matches a different line of got (in any order),
    for output whose order depends on timing"""
    checker = doctest.OutputChecker()
    remaining = got.splitlines()
    want_lines = want.splitlines()
    if len(remaining) != len(want_lines):
        return False
    for line in want_lines:
        for candidate in remaining:
            if checker.check_output(line + "\n", candidate + "\n", OPTIONFLAGS):
                remaining.remove(candidate)
                break
        else:
            return False
    return True


@pytest.mark.core
async def test_tour_python_session(tmp_path):
    examples = doctest.DocTestParser().get_examples(_tour_text())
    assert len(examples) > 10
    checker = doctest.OutputChecker()
    async with demo_server(tmp_path) as port:
        # What the python -m asyncio prompt has predefined
        namespace = {"__name__": "__main__", "asyncio": asyncio}
        for example in examples:
            source = example.source.replace("coap://localhost/", f"coap://localhost:{port}/")
            code = compile(source, "<guided tour>", "single", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
            output = io.StringIO()
            with contextlib.redirect_stdout(output):
                result = eval(code, namespace)
                if inspect.iscoroutine(result):
                    await result
            got = output.getvalue().replace(f"localhost:{port}", "localhost")
            if checker.check_output(example.want, got, OPTIONFLAGS):
                continue
            assert _lines_match(example.want, got), (
                f"line {example.lineno + 1} of the tour: {example.source.strip()}\n"
                f"expected:\n{example.want}got:\n{got}"
            )


@pytest.mark.slow
def test_docs_build_without_warnings(tmp_path):
    pytest.importorskip("sphinx")
    pytest.importorskip("sphinxarg")
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         "-d", str(tmp_path / "doctrees"), os.path.join(ROOT, "doc"), str(tmp_path / "html")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert os.path.exists(tmp_path / "html" / "guidedtour.html")
    assert os.path.exists(tmp_path / "html" / "tools.html")
    with open(tmp_path / "html" / "tools.html", encoding="utf-8") as f:
        tools = f.read()
    # The options come from the argument parser itself
    assert "--observe-exec" in tools and "--no-pretty-print" in tools


def _server_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("demo_server", SERVER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tour_shows_what_the_demo_server_says():
    """The tour's first command shows the line the server prints without
    --bind"""
    listening, try_uri = _server_module().where(None)
    said = f"The demo server listens on {listening}. Try: ./aiocoap-client {try_uri}"
    assert try_uri == "coap://localhost/.well-known/core"
    lines = _tour_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "$ ./examples/server.py")
    assert [line.strip() for line in lines[start + 1 : start + 3]] == [said, "Stop it with Ctrl-C."]


@pytest.mark.core
async def test_demo_server_from_a_checkout(tmp_path):
    """./examples/server.py and ./aiocoap-client work from the checkout
    without aiocoap being installed (python -S: no site-packages), from any
    directory, and the server says where it listens"""
    for script in (SERVER, os.path.join(ROOT, "aiocoap-client")):
        assert os.access(script, os.X_OK)
        with open(script) as f:
            assert f.readline().strip() == "#!/usr/bin/env python3"
    port = free_udp_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-S", SERVER, "--bind", f"127.0.0.1:{port}",
        cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        line = await asyncio.wait_for(process.stdout.readline(), 20)
        assert line.decode() == (
            f"The demo server listens on port {port} (UDP and TCP) of 127.0.0.1. "
            f"Try: ./aiocoap-client coap://127.0.0.1:{port}/.well-known/core\n"
        )
        client = await asyncio.create_subprocess_exec(
            sys.executable, "-S", os.path.join(ROOT, "aiocoap-client"), f"coap://127.0.0.1:{port}/.well-known/core",
            cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(client.communicate(), 20)
        assert (client.returncode, err) == (0, b"")
        assert b"</time>;obs" in out
    finally:
        await _interrupt(process)
    assert process.returncode == 0, await process.stderr.read()
