"""aiocoap-rd as a program: registrations survive a restart (an orderly
stop and kill -9) with their lifetimes running on, writes are never half
done, and mistakes on the command line give one-line errors."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aiocoap import Context, Message
from aiocoap.numbers.codes import Code
from aiocoap.numbers.constants import TransportTuning
from aiocoap.resourcedirectory.directory import Directory
from aiocoap.resourcedirectory.sqlite import SQLiteStorage
from aiocoap.util.linkformat import parse
from rd_helpers import free_port

pytestmark = pytest.mark.core

ROOT = Path(__file__).resolve().parent.parent
QUICK = TransportTuning(ACK_TIMEOUT=0.2, MAX_RETRANSMIT=3)


def start_rd(database, port, *extra):
    return subprocess.Popen(
        [sys.executable, str(ROOT / "aiocoap-rd"), "--bind", f"127.0.0.1:{port}", "--database", str(database),
         "--max-per-source", "10000", *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


async def wait_until_serving(client, uri, process, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"aiocoap-rd exited: {process.stderr.read().decode()}")
        try:
            response = await asyncio.wait_for(client.request(Message(code=Code.GET, uri=uri + "/.well-known/core")).response, 1)
            if response.code == Code.CONTENT:
                return
        except (asyncio.TimeoutError, Exception):
            await asyncio.sleep(0.1)
    pytest.fail("aiocoap-rd did not start")


def stop(process, sig=signal.SIGTERM):
    if process.poll() is None:
        process.send_signal(sig)
    try:
        process.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
    return process.returncode


async def register_many(client, uri, first, count, lt, links_per_endpoint=10, parallel=50):
    semaphore = asyncio.Semaphore(parallel)

    async def one(i):
        payload = ",".join(f'</dev{i}/s{j}>;rt="sensor-{j % 3}";if=core.s' for j in range(links_per_endpoint))
        request = Message(code=Code.POST, uri=f"{uri}/rd?ep=node{i}&lt={lt}&et=tag:bulk", payload=payload.encode(), content_format=40)
        async with semaphore:
            response = await client.request(request).response
        assert response.code == Code.CREATED, response

    await asyncio.gather(*(one(i) for i in range(first, first + count)))


async def snapshot(client, uri):
    answers = []
    for path in ("/rd-lookup/ep", "/rd-lookup/res?rt=sensor-1", "/rd-lookup/res?ep=node7", "/rd-lookup/ep?et=tag:bulk&page=3&count=17"):
        response = await client.request(Message(code=Code.GET, uri=uri + path)).response
        assert response.code == Code.CONTENT
        answers.append(response.payload)
    return answers


class Program:
    """aiocoap-rd on a database and a fixed port, with a client context to
    talk to it; it can be stopped and started again."""

    def __init__(self, database, client):
        self.database = database
        self.port = free_port()
        self.uri = f"coap://127.0.0.1:{self.port}"
        self.client = client
        self.process = None

    async def start(self):
        self.process = start_rd(self.database, self.port)
        await wait_until_serving(self.client, self.uri, self.process)

    def stop(self, sig=signal.SIGTERM):
        return stop(self.process, sig)


@contextlib.asynccontextmanager
async def program(database):
    client = await Context.create_client_context(transport_tuning=QUICK)
    running = Program(database, client)
    try:
        await running.start()
        yield running
    finally:
        if running.process is not None:
            stop(running.process, signal.SIGKILL)
        await client.shutdown()


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
async def test_restart_keeps_registrations_and_lifetimes(tmp_path, how):
    database = tmp_path / "rd.sqlite3"
    async with program(database) as rd:
        await register_many(rd.client, rd.uri, 0, 1000, lt=3600)
        await register_many(rd.client, rd.uri, 1000, 20, lt=1)
        registered_at = time.time()
        before = await snapshot(rd.client, rd.uri)
        assert len(parse(before[0]).links) in (1000, 1020)
        assert rd.stop(getattr(signal, how)) == (0 if how == "SIGTERM" else -signal.SIGKILL)

        expiries = _expiries(database)
        assert len(expiries) == 1020

        await rd.start()
        # the short-lived ones run out by themselves (no request refreshes
        # them, and the timer does not start over)
        while time.time() < registered_at + 1.5:
            await asyncio.sleep(0.1)
        after = await snapshot(rd.client, rd.uri)
        assert len(parse(after[0]).links) == 1000
        assert _without_short_lived(before) == after
        assert rd.stop() == 0
        remaining = _expiries(database)
        assert {k: v for k, v in expiries.items() if k in remaining} == remaining
        assert len(remaining) == 1000


def _expiries(database) -> dict:
    with contextlib.closing(sqlite3.connect(database)) as db:
        return dict(db.execute("SELECT ep, expires FROM registration"))


def _without_short_lived(answers):
    """The answers as they are once endpoints 1000 and above expired."""

    def long_lived(link):
        if "ep" in link:
            return int(link.ep[4:]) < 1000
        return int(link.href.split("/dev")[1].split("/")[0]) < 1000

    return [",".join(str(link) for link in parse(answer) if long_lived(link)).encode() for answer in answers]


async def test_kill_during_registrations_leaves_no_half_registration(tmp_path):
    database = tmp_path / "rd.sqlite3"
    async with program(database) as rd:
        storm = asyncio.ensure_future(register_many(rd.client, rd.uri, 0, 5000, lt=3600, links_per_endpoint=20))
        await asyncio.sleep(1.0)
        rd.stop(signal.SIGKILL)
        storm.cancel()
        await asyncio.gather(storm, return_exceptions=True)

    storage = SQLiteStorage(str(database))
    directory = Directory(storage)
    endpoints = parse(directory.lookup_endpoints(time.time(), [])).links
    assert endpoints, "some registrations were done before the kill"
    for link in endpoints:
        assert len(parse(directory.lookup_resources(time.time(), [f"ep={link.ep}"])).links) == 20
        assert len(parse(directory.read(time.time(), link.href.rsplit("/", 1)[1])).links) == 20
    storage.close()
    with contextlib.closing(sqlite3.connect(database)) as db:
        assert db.execute("SELECT count(*) FROM registration").fetchone()[0] == len(endpoints)
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def _run_cli(*args, timeout=20):
    return subprocess.run(
        [sys.executable, str(ROOT / "aiocoap-rd"), *args], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "XDG_STATE_HOME": os.environ.get("RD_TEST_STATE", "/nonexistent-state")},
    )


def test_cli_database_errors_are_one_line(tmp_path):
    not_a_db = tmp_path / "text"
    not_a_db.write_text("hello " * 1000)
    for database in (str(not_a_db), str(tmp_path), str(tmp_path / "missing-dir" / "rd.sqlite3")):
        result = _run_cli("--bind", f"127.0.0.1:{free_port()}", "--database", database)
        assert result.returncode != 0
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("aiocoap-rd: error: cannot use the database"), lines


def test_cli_database_in_use(tmp_path):
    database = tmp_path / "rd.sqlite3"
    port = free_port()
    first = start_rd(database, port)
    try:
        deadline = time.monotonic() + 15
        while not database.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        result = _run_cli("--bind", f"127.0.0.1:{free_port()}", "--database", str(database))
        assert result.returncode != 0
        assert result.stderr.strip().splitlines() == [
            f"aiocoap-rd: error: cannot use the database {str(database)!r}: it is in use by another process"
        ]
    finally:
        stop(first)


def test_cli_bad_arguments(tmp_path):
    for args in (["--max-per-source", "0"], ["--bind", "[::1"], ["--no-such-flag"]):
        result = _run_cli("--database", ":memory:", *args)
        assert result.returncode == 2
        assert "Traceback" not in result.stderr


def test_cli_port_in_use(tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        result = _run_cli("--database", ":memory:", "--bind", f"127.0.0.1:{port}")
    assert result.returncode == 1
    assert result.stderr.strip().startswith("aiocoap-rd: error: cannot start the server")
    assert "Traceback" not in result.stderr


def test_cli_default_database_location(tmp_path):
    state = tmp_path / "state"
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "aiocoap-rd"), "--bind", f"127.0.0.1:{free_port()}"],
        stderr=subprocess.PIPE,
        env={**os.environ, "XDG_STATE_HOME": str(state)},
    )
    try:
        database = state / "aiocoap" / "rd.sqlite3"
        deadline = time.monotonic() + 15
        while not database.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert database.exists()
        assert (state / "aiocoap").stat().st_mode & 0o777 == 0o700
    finally:
        assert stop(process) == 0


def test_cli_help_names_the_flags():
    result = _run_cli("--help")
    assert result.returncode == 0
    for flag in ("--bind", "--tls-server-certificate", "--tls-server-key", "--database", "--max-registrations"):
        assert flag in result.stdout


async def test_fileserver_registers_at_our_rd(tmp_path):
    """aiocoap-fileserver --register (which uses the Registerer) against our
    RD: its resources show up in lookups, and leave when it stops."""
    from rd_helpers import running_rd

    (tmp_path / "hello.txt").write_text("hello")
    async with running_rd() as (rd, rd_uri):
        port = free_port()
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(ROOT / "aiocoap-fileserver"), "--bind", f"127.0.0.1:{port}",
            "--register", rd_uri, str(tmp_path),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )
        try:
            base = f"coap://127.0.0.1:{port}"

            async def registered():
                while True:
                    endpoints = parse(rd.directory.lookup_endpoints(rd.clock(), [])).links
                    if endpoints:
                        return endpoints
                    await asyncio.sleep(0.05)

            (endpoint,) = await asyncio.wait_for(registered(), 20)
            assert endpoint.base == base
            assert endpoint.lt == "60"
            links = parse(rd.directory.lookup_resources(rd.clock(), [f"ep={endpoint.ep}"])).links
            assert links and all(link.href.startswith(base + "/") for link in links)

            process.terminate()
            assert await asyncio.wait_for(process.wait(), 20) == 0
            assert rd.directory.lookup_endpoints(rd.clock(), []) == ""
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
