"""aiocoap-fileserver as a program: its arguments (in-process), and the
``aiocoap-fileserver`` wrapper of the checkout run as a subprocess on a
free loopback port: serving, refusing writes without ``--write``, stopping
cleanly on SIGTERM, and one-line errors for mistakes on the command line.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import pytest

from aiocoap import Context, Message, error
from aiocoap.cli import fileserver
from aiocoap.numbers.codes import Code

from fileserver_support import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROGRAM = [sys.executable, os.path.join(ROOT, "aiocoap-fileserver")]
ERROR_LINE = re.compile(r"^aiocoap-fileserver: error: \S.*$")


def test_arguments():
    parser = fileserver.build_parser()
    options = parser.parse_args([])
    assert options.path == Path(".")
    assert (options.verbosity, options.register, options.write, options.hidden) == (0, False, False, False)
    assert options.etag_length == 8
    assert options.max_upload_size == 16 << 20
    assert parser.parse_args(["--register"]).register is None
    assert parser.parse_args(["--register", "coap://rd.example"]).register == "coap://rd.example"
    options = parser.parse_args(["-vv", "--write", "--hidden", "--max-upload-size", "64k", "--etag-length", "0", "/srv"])
    assert (options.verbosity, options.write, options.hidden) == (2, True, True)
    assert options.max_upload_size == 65536
    assert options.etag_length == 0
    assert options.path == Path("/srv")
    for name in ("--bind", "--tls-server-certificate", "--tls-server-key"):
        assert name in parser.format_help()


@pytest.mark.parametrize("bad", [["--max-upload-size", "lots"], ["--etag-length", "9"], ["--bind", "[::1"]])
def test_bad_arguments(bad, capsys):
    with pytest.raises(SystemExit) as excinfo:
        fileserver.build_parser().parse_args(bad)
    assert excinfo.value.code == 2


async def run_program(*args, timeout=15):
    process = await asyncio.create_subprocess_exec(
        *PROGRAM, *args, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
    return process.returncode, stdout.decode(), stderr.decode()


@pytest.mark.parametrize("args, needle", [
    (["/nonexistent/directory"], "is not a directory"),
    (["--tls-server-key", "k.pem", "."], "--tls-server-key needs --tls-server-certificate"),
])
async def test_one_line_errors(args, needle):
    code, stdout, stderr = await run_program(*args)
    assert code != 0
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert ERROR_LINE.match(lines[0])
    assert needle in lines[0]


async def wait_until_served(client, uri, process, timeout=10.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        assert process.returncode is None, "the server ended early"
        try:
            return await asyncio.wait_for(client.request(Message(code=Code.GET, uri=uri)).response, 1)
        except (error.NetworkError, asyncio.TimeoutError):
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.05)


@pytest.mark.parametrize("write", [False, True])
async def test_serves_and_stops_on_sigterm(tmp_path, write):
    (tmp_path / "hello.txt").write_bytes(b"Hello over CoAP")
    port = free_port()
    args = ["-v", "--bind", f"[::1]:{port}", str(tmp_path)] + (["--write"] if write else [])
    process = await asyncio.create_subprocess_exec(
        *PROGRAM, *args, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    client = await Context.create_client_context(transports=["udp6"])
    try:
        response = await wait_until_served(client, f"coap://[::1]:{port}/hello.txt", process)
        assert response.payload == b"Hello over CoAP"
        assert response.opt.content_format == 0
        put = await client.request(Message(code=Code.PUT, uri=f"coap://[::1]:{port}/new", payload=b"x")).response
        assert put.code == (Code.CREATED if write else Code.FORBIDDEN)
    finally:
        await client.shutdown()
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), 10)
    assert process.returncode == 0
    text = stderr.decode()
    assert "Traceback" not in text
    assert "Serving" in text  # the -v info line
    assert (tmp_path / "new").exists() == write
