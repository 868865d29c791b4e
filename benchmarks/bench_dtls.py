#!/usr/bin/env python3
"""CoAP over DTLS (coaps://, PSK) speed of this tree's aiocoap against the
reference aiocoap 0.4.17, in one run:

* ``client``: requests per second over one established DTLS session with
  ``--window`` (16) GETs started at a time for ``--duration`` seconds, each
  implementation's client against the same libcoap server
  (``coap-server-openssl -k KEY``), with the client's CPU time per request.
  Both clients obey congestion control (NSTART, reported, 1 in both: one
  confirmable exchange on the wire at a time, the rest wait in the client),
  so this compares the clients at one endpoint, not the server's capacity;
* ``server``: the same window against each implementation's DTLS server,
  driven by a load generator made of nothing but DTLSSocket and asyncio (in
  this script; it keeps the whole window on the wire, as it knows no
  NSTART), with the server's CPU time per request; the reference
  server is its experimental one, enabled by ``AIOCOAP_DTLSSERVER_ENABLED``;
  libcoap's server is measured the same way as the yardstick;
* ``handshake``: milliseconds from creating a client context to the first
  response over a new session (client against libcoap), and handshakes per
  second a server completes (load generator against each server);
* ``memory``: the heap a server holds per idle session (``--sessions``
  sessions opened by the load generator and left idle; below our default
  cap of 1000), and a client per idle session (60 sessions to libcoap, one
  identity each: below our default cap of 64 client sessions). Those
  processes run with ``PYTHONMALLOC=malloc``, so that Python's objects and
  tinydtls' state all come from the C heap, whose bytes in use
  (``mallinfo2``) are compared before and after; the server reports it
  through a ``/heap`` resource on its plain CoAP port.

Every figure is the best of ``--rounds`` (3) runs, ours and theirs
alternating. Each implementation runs in processes of its own: this script
under this tree (``PYTHONPATH`` = the repository) or under the reference
interpreter of ``_reference.py`` (no ``PYTHON*`` variables, an empty
temporary directory as working directory). The driver itself needs
DTLSSocket (for the load generator), so run it with the interpreter of the
test environment::

    .venv/bin/python benchmarks/bench_dtls.py                 # everything, ours and theirs
    .venv/bin/python benchmarks/bench_dtls.py --only ours --parts client,server
    .venv/bin/python benchmarks/bench_dtls.py --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import socket
import statistics
import struct
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

PSK = b"secretPSK"
IDENTITY = b"client_Identity"
PAYLOAD = b"Hello from the benchmark resource"
PATH = "bench"
HOST = "127.0.0.1"
#: for the memory measurements: every allocation on the C heap
MALLOC = {"PYTHONMALLOC": "malloc"}
#: ports tried for a server before giving up
SERVER_START_ATTEMPTS = 3


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _heap_in_use() -> int:
    """Bytes in use on the C heap of this process (glibc's mallinfo2): with
    ``PYTHONMALLOC=malloc``, every Python object is in there too."""
    import ctypes

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = MallInfo2
    info = libc.mallinfo2()
    return info.uordblks + info.hblkhd


def _plain_get(port: int, path: str) -> bytes:
    """The payload of a CON GET over plain UDP (no aiocoap here)."""
    import _servers

    mid = random.getrandbits(16)
    request = struct.pack("!BBHI", 0x44, 1, mid, random.getrandbits(32)) + bytes([0xB0 | len(path)]) + path.encode()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.connect((HOST, port))
        sock.send(request)
        while True:
            data = sock.recv(2048)
            if struct.unpack_from("!H", data, 2)[0] == mid:
                # (the payload marker is the first 0xFF after the options,
                # not the first in the datagram: a token may hold 0xFF too)
                return _servers.payload_of(data)


# --- inside the aiocoap processes (whichever aiocoap the interpreter imports) ----------


def _credentials_map(data: dict):
    from aiocoap.credentials import CredentialsMap

    credentials = CredentialsMap()
    credentials.load_from_dict(data)
    return credentials


async def _serve(port: int) -> None:
    """A server with ``GET /bench`` on UDP ``port`` and DTLS ``port + 1``."""
    import aiocoap
    from aiocoap import resource

    class Bench(resource.Resource):
        async def render_get(self, request):
            return aiocoap.Message(payload=PAYLOAD)

    class Heap(resource.Resource):
        async def render_get(self, request):
            import gc

            gc.collect()
            return aiocoap.Message(payload=str(_heap_in_use()).encode())

    site = resource.Site()
    site.add_resource([PATH], Bench())
    site.add_resource(["heap"], Heap())
    server_credentials = _credentials_map({":client": {"dtls": {"psk": PSK, "client-identity": IDENTITY}}})
    context = await aiocoap.Context.create_server_context(site, bind=(HOST, port), server_credentials=server_credentials)
    print(json.dumps({"version": aiocoap.meta.version}), flush=True)
    try:
        await asyncio.get_running_loop().create_future()
    finally:
        await context.shutdown()


async def _client_window(port: int, window: int, duration: float) -> dict:
    import aiocoap
    from aiocoap.numbers.constants import TransportTuning

    context = await aiocoap.Context.create_client_context()
    base = f"coaps://{HOST}:{port}"
    context.client_credentials.load_from_dict({base + "/*": {"dtls": {"psk": PSK, "client-identity": IDENTITY}}})
    uri = f"{base}/time"
    try:
        async def get():
            response = await context.request(aiocoap.Message(code=aiocoap.GET, uri=uri)).response
            if not response.code.is_successful():
                raise RuntimeError(f"unexpected {response}")

        for _ in range(100):
            await get()
        stop = time.perf_counter() + duration

        async def requests_until_stop() -> int:
            count = 0
            while time.perf_counter() < stop:
                await get()
                count += 1
            return count

        cpu = time.process_time()
        started = time.perf_counter()
        done = sum(await asyncio.gather(*(requests_until_stop() for _ in range(window))))
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu
        return {"requests": done, "requests_per_s": done / elapsed, "cpu_us_per_request": cpu / done * 1e6,
                "nstart": TransportTuning().NSTART}
    finally:
        await context.shutdown()


async def _client_handshakes(port: int, count: int) -> dict:
    import aiocoap

    base = f"coaps://{HOST}:{port}"
    times = []
    for _ in range(count):
        started = time.perf_counter()
        context = await aiocoap.Context.create_client_context()
        context.client_credentials.load_from_dict({base + "/*": {"dtls": {"psk": PSK, "client-identity": IDENTITY}}})
        response = await context.request(aiocoap.Message(code=aiocoap.GET, uri=base + "/")).response
        times.append(time.perf_counter() - started)
        assert response.code.is_successful()
        await context.shutdown()
    return {"handshakes": count, "median_ms": statistics.median(times) * 1e3, "best_ms": min(times) * 1e3}


async def _client_memory(port: int, sessions: int) -> dict:
    import gc

    import aiocoap

    context = await aiocoap.Context.create_client_context()
    base = f"coaps://{HOST}:{port}"
    context.client_credentials.load_from_dict({
        f"{base}/s{i}/*": {"dtls": {"psk": PSK, "client-identity": b"id%d" % i}} for i in range(sessions + 1)
    })
    try:
        async def get(i):
            response = await context.request(aiocoap.Message(code=aiocoap.GET, uri=f"{base}/s{i}/x")).response
            return response

        await get(sessions)  # warm-up: one session, every code path touched once
        gc.collect()
        before = _heap_in_use()
        for i in range(sessions):
            await get(i)
        gc.collect()
        after = _heap_in_use()
        return {"sessions": sessions, "kb_per_session": (after - before) / sessions / 1024}
    finally:
        await context.shutdown()


# --- the load generator: DTLSSocket and asyncio, no aiocoap ----------------------------


class _LoadSession(asyncio.DatagramProtocol):
    """One DTLS session (its own socket) that keeps ``window`` CON GETs of
    ``/bench`` in flight once started; a request not answered within a
    second is counted as lost and replaced."""

    REQUEST = struct.Struct("!BBHI")

    def __init__(self, window: int = 0):
        self.window = window
        self.connected = asyncio.get_running_loop().create_future()
        self.answered = 0
        self.lost = 0
        self.outstanding: dict = {}
        self.mid = random.getrandbits(16)
        self.running = False
        self.transport = None
        self.dtls = None
        self.connection = None

    async def open(self, port: int):
        from DTLSSocket import dtls

        loop = asyncio.get_running_loop()
        self.transport, _ = await loop.create_datagram_endpoint(lambda: self, remote_addr=(HOST, port))
        self.dtls = dtls.DTLS(read=self._read, write=self._write, event=self._event,
                              pskId=IDENTITY, pskStore={IDENTITY: PSK})
        self.connection = self.dtls.connect("::ffff:" + HOST, port)
        await asyncio.wait_for(self.connected, 10)
        return self

    def _write(self, recipient, data):
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(data)
        return len(data)

    def _event(self, level, code):
        if code == 0x1DE and not self.connected.done():
            self.connected.set_result(None)

    def _read(self, sender, data):
        if len(data) >= 8 and data[0] >> 4 & 3 == 2:  # ACK
            mid = (data[2] << 8) | data[3]
            if self.outstanding.pop(mid, None) is not None:
                self.answered += 1
                if self.running:
                    self.send_one()
        return len(data)

    def datagram_received(self, data, addr):
        self.dtls.handleMessage(self.connection, data)

    def send_one(self):
        self.mid = (self.mid + 1) & 0xFFFF
        token = random.getrandbits(32)
        message = self.REQUEST.pack(0x44, 1, self.mid, token) + bytes([0xB0 | len(PATH)]) + PATH.encode()
        self.outstanding[self.mid] = time.perf_counter()
        self.dtls.write(self.connection, message)

    async def run(self, duration: float) -> dict:
        self.running = True
        for _ in range(self.window):
            self.send_one()
        started = time.perf_counter()
        stop = started + duration
        while time.perf_counter() < stop:
            await asyncio.sleep(0.1)
            now = time.perf_counter()
            for mid, sent in list(self.outstanding.items()):
                if now - sent > 1.0:
                    del self.outstanding[mid]
                    self.lost += 1
                    self.send_one()
        self.running = False
        elapsed = time.perf_counter() - started
        return {"answered": self.answered, "lost": self.lost, "requests_per_s": self.answered / elapsed}

    def close(self):
        if self.dtls is not None:
            self.dtls.close(self.connection)
            self.dtls.resetPeer(self.connection)
        self.connection = self.dtls = None
        if self.transport is not None:
            self.transport.close()


async def _load(port: int, pid: int, window: int, duration: float) -> dict:
    session = await _LoadSession(window).open(port)
    try:
        await session.run(0.5)  # warm-up
        session.answered = session.lost = 0
        cpu = _cpu_seconds(pid)
        result = await session.run(duration)
        result["server_cpu_us_per_request"] = (_cpu_seconds(pid) - cpu) / max(result["answered"], 1) * 1e6
        return result
    finally:
        session.close()


async def _server_handshakes(port: int, pid: int, count: int) -> dict:
    times = []
    cpu = _cpu_seconds(pid)
    started = time.perf_counter()
    for _ in range(count):
        t = time.perf_counter()
        session = await _LoadSession().open(port)
        times.append(time.perf_counter() - t)
        session.close()
    elapsed = time.perf_counter() - started
    return {"handshakes_per_s": count / elapsed, "median_ms": statistics.median(times) * 1e3,
            "server_cpu_ms_per_handshake": (_cpu_seconds(pid) - cpu) / count * 1e3}


async def _server_memory(port: int, sessions: int) -> dict:
    """Heap growth of the server (whose plain CoAP port is ``port - 1``)
    per session opened and left idle."""
    warm = [await _LoadSession().open(port) for _ in range(10)]
    await asyncio.sleep(0.2)
    before = int(_plain_get(port - 1, "heap"))
    opened = [await _LoadSession().open(port) for _ in range(sessions)]
    await asyncio.sleep(0.2)
    after = int(_plain_get(port - 1, "heap"))
    for session in warm + opened:
        session.close()
    return {"sessions": sessions, "kb_per_session": (after - before) / sessions / 1024}


# --- the driver ------------------------------------------------------------------------


def _environment(name: str, ref_python):
    import _servers

    return _servers.ours_env() if name == "ours" else _servers.theirs_env(ref_python)


def _worker(name: str, args, *worker_args, extra_env=None) -> dict:
    import _servers

    python, env, cwd = _environment(name, args.ref_python)
    env = dict(env, **(extra_env or {}))
    return _servers.run_measurement(f"{name} worker {worker_args}",
                                    [python, str(Path(__file__).resolve()), "--worker", *map(str, worker_args)],
                                    env, cwd, timeout=600)


def _free_pair() -> int:
    """A port p with p and p + 1 free for UDP and TCP."""
    import _servers

    for _ in range(100):
        port = _servers.free_port(HOST)
        if port < 65535:
            try:
                for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                    with socket.socket(socket.AF_INET, kind) as probe:
                        probe.bind((HOST, port + 1))
                return port
            except OSError:
                continue
    raise RuntimeError("no two adjacent free ports")


def _wait_for_dtls(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            asyncio.run(_probe(port))
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


async def _probe(port: int) -> None:
    session = await asyncio.wait_for(_LoadSession().open(port), 2)
    session.close()


def _libcoap_server():
    """libcoap's DTLS server (PSK) and its DTLS port."""
    import _servers

    binary = shutil.which("coap-server-openssl")
    if binary is None:
        raise FileNotFoundError("coap-server-openssl not found (Debian package libcoap3-bin)")
    port = _free_pair()
    process = _servers.start_process("libcoap", [binary, "-A", HOST, "-p", str(port), "-k", PSK.decode(), "-v", "0"],
                                     None, None, HOST, port, False, 20.0)
    _wait_for_dtls(port + 1)
    return process, port + 1


def _aiocoap_server(name: str, args, extra_env=None):
    """This script's ``--serve`` under one implementation, and its DTLS port."""
    import _servers

    python, env, cwd = _environment(name, args.ref_python)
    env = dict(env, **(extra_env or {}))
    if name == "theirs":
        env["AIOCOAP_DTLSSERVER_ENABLED"] = "1"
    for attempt in range(SERVER_START_ATTEMPTS):
        # The servers also listen on ports of their own choosing next to
        # the free pair (TCP, WebSockets at port + 3000), which another
        # program on the machine may hold: then try another pair.
        port = _free_pair()
        try:
            process = _servers.start_process(name, [python, str(Path(__file__).resolve()), "--serve", str(port)],
                                             env, cwd, HOST, port, True, 30.0)
            break
        except RuntimeError as exc:
            if "address already in use" not in str(exc) or attempt == SERVER_START_ATTEMPTS - 1:
                raise
    try:
        _wait_for_dtls(port + 1)
    except BaseException:
        process.stop()
        raise
    return process, port + 1


def run_round(names, args, parts) -> dict:
    result: dict = {name: {} for name in names}
    if parts & {"client", "handshake", "memory"}:
        libcoap, port = _libcoap_server()
        try:
            for name in names:
                if "client" in parts:
                    result[name]["client"] = _worker(name, args, "client-window", port, args.window, args.duration)
                if "handshake" in parts:
                    result[name]["client_handshake"] = _worker(name, args, "client-handshakes", port, args.handshakes)
                if "memory" in parts:
                    result[name]["client_memory"] = _worker(name, args, "client-memory", port, 60, extra_env=MALLOC)
        finally:
            libcoap.stop()
    if parts & {"server", "handshake", "memory"}:
        servers = list(names) + (["libcoap"] if "server" in parts and not args.no_libcoap else [])
        for name in servers:
            process, port = _libcoap_server() if name == "libcoap" else _aiocoap_server(name, args)
            entry = result.setdefault(name, {})
            try:
                if "server" in parts:
                    entry["server"] = asyncio.run(_load(port, process.process.pid, args.window, args.duration))
                if "handshake" in parts and name != "libcoap":
                    entry["server_handshake"] = asyncio.run(_server_handshakes(port, process.process.pid, args.handshakes))
                if process.info:
                    entry["version"] = process.info["version"]
            finally:
                process.stop()
            if "memory" in parts and name != "libcoap":
                process, port = _aiocoap_server(name, args, extra_env=MALLOC)
                try:
                    entry["server_memory"] = asyncio.run(_server_memory(port, args.sessions))
                finally:
                    process.stop()
    return result


def _best(rounds: list) -> dict:
    """Per implementation and measurement, the best round (highest rate,
    lowest time, CPU and memory)."""
    best: dict = {}
    for result in rounds:
        for name, measurements in result.items():
            target = best.setdefault(name, {})
            for key, value in measurements.items():
                if not isinstance(value, dict):
                    target[key] = value
                    continue
                slot = target.setdefault(key, {})
                for field, number in value.items():
                    if field in slot:
                        better = max if field.endswith("per_s") or field in ("answered", "requests") else min
                        number = better(slot[field], number)
                    slot[field] = number
    return best


def _report(best: dict, rounds: list) -> None:
    def row(label, name, key, fmt):
        entry = best.get(name, {}).get(key)
        if entry is not None:
            print(f"  {label:28s} {name:8s} {fmt(entry)}")

    print("requests over one established session, window as given (the clients at one endpoint, NSTART"
          " queueing all but what it allows on the wire; the load generator keeps the window on the wire):")
    for name in ("ours", "theirs"):
        row("client vs libcoap server", name, "client",
            lambda e: f"{e['requests_per_s']:8,.0f} req/s  {e['cpu_us_per_request']:6.0f} us client CPU/request"
                      f"  NSTART {e['nstart']}")
    for name in ("ours", "theirs", "libcoap"):
        row("server (DTLSSocket loadgen)", name, "server",
            lambda e: f"{e['requests_per_s']:8,.0f} req/s  {e['server_cpu_us_per_request']:6.0f} us server CPU/request  lost {e['lost']}")
    print("handshakes:")
    for name in ("ours", "theirs"):
        row("client: context to response", name, "client_handshake",
            lambda e: f"{e['median_ms']:8.1f} ms median  {e['best_ms']:6.1f} ms best")
        row("server (loadgen)", name, "server_handshake",
            lambda e: f"{e['handshakes_per_s']:8,.0f} /s  {e['median_ms']:6.1f} ms median  {e['server_cpu_ms_per_handshake']:5.2f} ms server CPU")
    print("memory per idle session:")
    for name in ("ours", "theirs"):
        row("client", name, "client_memory", lambda e: f"{e['kb_per_session']:8.1f} KB ({e['sessions']} sessions)")
        row("server", name, "server_memory", lambda e: f"{e['kb_per_session']:8.1f} KB ({e['sessions']} sessions)")
    ours, theirs = best.get("ours", {}), best.get("theirs", {})
    print("ratios (ours / theirs; best runs, then each round's own):")
    for key, cpu in (("client", "cpu_us_per_request"), ("server", "server_cpu_us_per_request")):
        if key in ours and key in theirs:
            per_round = ", ".join(
                f"{r['ours'][key]['requests_per_s'] / r['theirs'][key]['requests_per_s']:.2f}x"
                for r in rounds if key in r.get("ours", {}) and key in r.get("theirs", {})
            )
            print(f"  {key} req/s {ours[key]['requests_per_s'] / theirs[key]['requests_per_s']:6.2f}x   "
                  f"CPU per request {theirs[key][cpu] / ours[key][cpu]:5.2f}x less   rounds: {per_round}   (target >= 3x)")
    for key in ("client_memory", "server_memory"):
        if key in ours:
            print(f"  {key.replace('_', ' ')} {ours[key]['kb_per_session']:.1f} KB per idle session   (target <= 16 KB)")


def main(argv=None) -> None:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--worker":
        kind, *rest = sys.argv[2:]
        numbers = [float(x) if "." in x else int(x) for x in rest]
        function = {"client-window": _client_window, "client-handshakes": _client_handshakes,
                    "client-memory": _client_memory}[kind]
        print(json.dumps(asyncio.run(function(*numbers))))
        return
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--serve":
        asyncio.run(_serve(int(sys.argv[2])))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs; the best of each is reported")
    parser.add_argument("--window", type=int, default=16, help="requests in flight")
    parser.add_argument("--duration", type=float, default=4.0, help="seconds of each window run")
    parser.add_argument("--handshakes", type=int, default=50, help="handshakes per handshake measurement")
    parser.add_argument("--sessions", type=int, default=900, help="idle sessions for the server memory figure")
    parser.add_argument("--parts", default="client,server,handshake,memory",
                        help="comma separated: client, server, handshake, memory")
    parser.add_argument("--only", choices=("ours", "theirs"), help="measure one implementation")
    parser.add_argument("--no-libcoap", action="store_true", help="do not measure libcoap's server")
    parser.add_argument("--ref-python", default=None, help="interpreter of the reference aiocoap")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    try:
        import DTLSSocket  # noqa: F401
    except ImportError:
        parser.error("the load generator needs DTLSSocket: run this with an interpreter that has it (.venv/bin/python)")
    parts = set(args.parts.split(","))
    names = [args.only] if args.only else ["ours", "theirs"]
    rounds = [run_round(names, args, parts) for _ in range(args.rounds)]
    best = _best(rounds)
    if args.json:
        print(json.dumps({"best": best, "rounds": rounds}))
    else:
        _report(best, rounds)


if __name__ == "__main__":
    main()
