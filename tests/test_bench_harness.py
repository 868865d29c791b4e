"""The benchmark harness (``benchmarks/_servers.py``) waits for the right
things: a server's output never backs up into a pipe nobody reads (which
stops a chatty server in its next write, and looks like a hang of the
client that waits for it), and a measuring process that does hang is
stopped with a dump of where it was instead of a bare timeout.

The benchmarks themselves are not tests; these only check the process
handling they share, with small stand-in processes (no aiocoap), and the
raw CoAP parsing of a benchmark driver that read the wrong payload when the
response's token held a 0xFF byte (one run in a few dozen)."""

from __future__ import annotations

import importlib.util
import socket
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from ports import free_udp_port

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def _load_servers():
    spec = importlib.util.spec_from_file_location("bench_servers", BENCHMARKS / "_servers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


servers = _load_servers()

#: more than a pipe holds (64 KiB on Linux), so a writer to an unread pipe blocks
NOISE = 1 << 20


def _free_udp_port() -> int:
    return free_udp_port()


def test_a_server_that_logs_more_than_a_pipe_holds_keeps_answering():
    port = _free_udp_port()
    # Prints its ready line, then logs a megabyte, then answers every CoAP
    # message with an ACK 2.05 carrying the same message ID.
    code = textwrap.dedent(f"""
        import json, socket, sys
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", {port}))
        print(json.dumps({{"nstart": 1}}), flush=True)
        sys.stderr.write("x" * {NOISE})
        sys.stderr.flush()
        while True:
            data, peer = sock.recvfrom(2048)
            sock.sendto(bytes((0x60, 0x45)) + data[2:4], peer)
    """)
    with servers.start_process("chatty", [sys.executable, "-c", code], None, None, "127.0.0.1", port,
                               True, timeout=20.0) as server:
        assert server.info == {"nstart": 1}
        assert servers.loadgen.probe("127.0.0.1", port, "/bench", timeout=5.0) == "2.05"
        assert server.log().count("x") == NOISE


def test_a_measurement_that_finishes_returns_its_last_json_line():
    code = "print('warming up'); print('{\"requests\": 3}')"
    assert servers.run_measurement("quick", [sys.executable, "-c", code], None, None, timeout=30) == {"requests": 3}


def test_a_measurement_that_fails_raises_with_its_output():
    code = "import sys; sys.exit('the server went away')"
    with pytest.raises(RuntimeError, match="the server went away"):
        servers.run_measurement("failing", [sys.executable, "-c", code], None, None, timeout=30)


def test_a_measurement_that_hangs_is_stopped_with_a_dump_of_where_it_was():
    code = textwrap.dedent("""
        import time
        def waiting_for_a_response_that_never_comes():
            time.sleep(600)
        waiting_for_a_response_that_never_comes()
    """)
    started = time.monotonic()
    with pytest.raises(RuntimeError) as raised:
        servers.run_measurement("hanging", [sys.executable, "-c", code], None, None, timeout=1)
    assert time.monotonic() - started < 30
    message = str(raised.value)
    assert "did not finish within 1 s" in message
    assert "waiting_for_a_response_that_never_comes" in message


def _load_bench_dtls():
    spec = importlib.util.spec_from_file_location("bench_dtls", BENCHMARKS / "bench_dtls.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_dtls_benchmark_reads_a_payload_after_a_token_holding_0xff():
    bench_dtls = _load_bench_dtls()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind((bench_dtls.HOST, 0))
        port = server.getsockname()[1]

        def answer():
            # ACK 2.05, the request's message ID, a token of 0xFF bytes,
            # one option (Content-Format 0) and the payload
            data, peer = server.recvfrom(2048)
            server.sendto(bytes((0x64, 0x45)) + data[2:4] + b"\xff" * 4 + b"\xc0" + b"\xff" + b"123", peer)

        thread = threading.Thread(target=answer)
        thread.start()
        try:
            assert bench_dtls._plain_get(port, "heap") == b"123"
        finally:
            thread.join(10)


def test_the_dtls_benchmark_tries_other_ports_when_its_server_finds_one_taken(monkeypatch):
    bench_dtls = _load_bench_dtls()
    import _servers as driver_servers  # (the module bench_dtls imports at run time)

    started = []

    def start_process(name, argv, env, cwd, host, port, ready_line, timeout):
        started.append(port)
        if len(started) == 1:
            raise RuntimeError("ours server did not come up; its output:\nOSError: [Errno 98] error while "
                               "attempting to bind on address ('127.0.0.1', 1): address already in use")
        return "the server"

    monkeypatch.setattr(driver_servers, "start_process", start_process)
    monkeypatch.setattr(bench_dtls, "_environment", lambda name, ref_python: (sys.executable, {}, None))
    monkeypatch.setattr(bench_dtls, "_wait_for_dtls", lambda port: None)

    class Args:
        ref_python = None

    process, dtls_port = bench_dtls._aiocoap_server("ours", Args())
    assert process == "the server"
    assert len(started) == 2 and dtls_port == started[-1] + 1
