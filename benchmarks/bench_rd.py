#!/usr/bin/env python3
"""Resource directory speed: this tree's aiocoap-rd against aiocoap 0.4.17's
in the same run (no aiocoap import here: both run as subprocesses and are
driven over raw UDP on loopback).

For each RD:

1. start it (ours with an SQLite file in a temporary directory -- the way
   it runs by default -- and caps raised above the load; theirs as
   ``python -m aiocoap.cli.rd``), find its interfaces through
   ``/.well-known/core?rt=core.rd*``;
2. register ``--endpoints`` endpoints (10 000) of 10 links each, with a
   window of ``--window`` requests in flight: registrations per second and
   the server's CPU time per registration;
3. resource lookups for ``--duration`` seconds, closed loop: ``?ep=NAME`` of
   a random endpoint (10 links in the answer), and separately
   ``?rt=TYPE&count=10&page=P`` (a page out of 10 000 matching links):
   lookups per second, p50/p99 latency, CPU per lookup;
4. memory: the growth of the server's resident set size from before the
   registrations to after them, per registration.

Every request is a CON without retransmission; one unanswered within
``--timeout`` counts as lost. Separate responses are acknowledged.

    python3 benchmarks/bench_rd.py                    # both, ratios
    python3 benchmarks/bench_rd.py --only ours --endpoints 2000 --duration 3
    python3 benchmarks/bench_rd.py --json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import selectors
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _servers import HOST, free_port, ours_env, theirs_env  # noqa: E402

CON, ACK = 0, 2
GET, POST = 1, 2
URI_PATH, CONTENT_FORMAT, URI_QUERY = 11, 12, 15
LINK_FORMAT = 40
LINKS_PER_ENDPOINT = 10
RT_TYPES = 1000


def encode_options(options) -> bytes:
    """``(number, value bytes)`` pairs, in order, as CoAP options."""
    out = bytearray()
    previous = 0
    for number, value in sorted(options, key=lambda o: o[0]):
        delta, length = number - previous, len(value)
        previous = number
        head, extra = 0, bytearray()
        for shift, n in ((4, delta), (0, length)):
            if n < 13:
                head |= n << shift
            elif n < 269:
                head |= 13 << shift
                extra.append(n - 13)
            else:
                head |= 14 << shift
                extra += struct.pack("!H", n - 269)
        out.append(head)
        out += extra
        out += value
    return bytes(out)


def request_body(path: str, query=(), payload: bytes = b"", content_format=None) -> bytes:
    """Options and payload of a request (everything after the token)."""
    # "/a/" is two segments, "a" and "" (the reference RD's paths end so)
    segments = path[1:].split("/") if path not in ("", "/") else []
    options = [(URI_PATH, s.encode()) for s in segments]
    options += [(URI_QUERY, q.encode()) for q in query]
    if content_format is not None:
        options.append((CONTENT_FORMAT, bytes([content_format]) if content_format else b""))
    return encode_options(options) + (b"\xff" + payload if payload else b"")


def endpoint_payload(i: int) -> bytes:
    return ",".join(
        f'</s{j}>;rt="t{(i * LINKS_PER_ENDPOINT + j) % RT_TYPES}";if="core.s";ct=0' for j in range(LINKS_PER_ENDPOINT)
    ).encode()


def parse_response(data: bytes):
    """(type, code, message ID, token, payload) of a datagram."""
    tkl = data[0] & 0x0F
    mtype = (data[0] >> 4) & 3
    code = data[1]
    mid = struct.unpack_from("!H", data, 2)[0]
    token = data[4:4 + tkl]
    pos = 4 + tkl
    payload = b""
    marker = data.find(b"\xff", pos)
    # good enough for the responses of an RD: no option value holds 0xff
    if marker != -1:
        payload = data[marker + 1:]
    return mtype, code, mid, token, payload


def code_string(code: int) -> str:
    return f"{code >> 5}.{code & 0x1F:02d}"


def drive(port: int, bodies, *, window: int, sockets: int = 4, duration: float | None = None,
          timeout: float = 10.0) -> dict:
    """Send the requests ``bodies`` yields (CON, ``window`` in flight over
    ``sockets`` sockets) until it is exhausted or ``duration`` is over;
    return counts, codes and latencies."""
    selector = selectors.DefaultSelector()
    flows = []
    for index in range(sockets):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.setblocking(False)
        sock.connect((HOST, port))
        flow = {"sock": sock, "mid": random.getrandbits(16), "inflight": {}, "index": index}
        selector.register(sock, selectors.EVENT_READ, flow)
        flows.append(flow)
    per_flow = [window // sockets + (1 if i < window % sockets else 0) for i in range(sockets)]
    latencies: list = []
    codes: dict = {}
    sent = lost = 0
    exhausted = False
    start = time.perf_counter()
    end = start + duration if duration is not None else None

    def fill(flow) -> None:
        nonlocal sent, exhausted
        inflight = flow["inflight"]
        while not exhausted and len(inflight) < per_flow[flow["index"]]:
            if end is not None and time.perf_counter() >= end:
                exhausted = True
                return
            try:
                body = next(bodies)
            except StopIteration:
                exhausted = True
                return
            flow["mid"] = mid = (flow["mid"] + 1) & 0xFFFF
            token = os.urandom(4)
            inflight[token] = time.perf_counter()
            flow["sock"].send(struct.pack("!BBH", 0x44, body[0], mid) + token + body[1])
            sent += 1

    for flow in flows:
        fill(flow)
    while any(f["inflight"] for f in flows) or not exhausted:
        for key, _ in selector.select(0.01):
            flow = key.data
            while True:
                try:
                    data = flow["sock"].recv(65536)
                except BlockingIOError:
                    break
                if len(data) < 4:
                    continue
                mtype, code, mid, token, payload = parse_response(data)
                if mtype == CON:
                    flow["sock"].send(struct.pack("!BBH", 0x40 | (ACK << 4), 0, mid))
                if code == 0:
                    continue  # an empty ACK: the response comes separately
                sent_at = flow["inflight"].pop(token, None)
                if sent_at is None:
                    continue
                latencies.append(time.perf_counter() - sent_at)
                codes[code_string(code)] = codes.get(code_string(code), 0) + 1
            fill(flow)
        now = time.perf_counter()
        for flow in flows:
            stale = [t for t, at in flow["inflight"].items() if now - at > timeout]
            for t in stale:
                del flow["inflight"][t]
                lost += 1
            fill(flow)
    elapsed = time.perf_counter() - start
    for flow in flows:
        selector.unregister(flow["sock"])
        flow["sock"].close()
    selector.close()
    latencies.sort()

    def pct(q):
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else float("nan")

    return {
        "sent": sent, "answered": len(latencies), "lost": lost, "codes": codes, "elapsed_s": elapsed,
        "per_s": len(latencies) / elapsed, "p50_ms": pct(0.50), "p99_ms": pct(0.99),
    }


def request(port: int, code: int, path: str, query=(), payload=b"", content_format=None, timeout=5.0):
    """One request, for setup and discovery; (code string, payload)."""
    bodies = iter([(code, request_body(path, query, payload, content_format))])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.connect((HOST, port))
        mid, token = random.getrandbits(16), os.urandom(4)
        sock.send(struct.pack("!BBH", 0x44, code, mid) + token + next(bodies)[1])
        while True:
            mtype, rcode, rmid, rtoken, rpayload = parse_response(sock.recv(65536))
            if mtype == CON:
                sock.send(struct.pack("!BBH", 0x40 | (ACK << 4), 0, rmid))
            if rcode and rtoken == token:
                return code_string(rcode), rpayload


class RD:
    """A resource directory process."""

    def __init__(self, name: str, argv: list, env: dict, cwd: str, port: int):
        self.name = name
        self.port = port
        self.log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 30
        while True:
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.log.seek(0)
                raise RuntimeError(f"{name} RD did not start:\n{self.log.read().decode(errors='replace')}")
            try:
                code, payload = request(port, GET, "/.well-known/core", ["rt=core.rd*"], timeout=0.3)
                break
            except (socket.timeout, ConnectionRefusedError):
                time.sleep(0.1)
        self.paths = {}
        for href, rt in re.findall(r'<([^>]*)>[^,]*?rt="?([a-z.-]+)', payload.decode()):
            self.paths[rt] = href
        missing = {"core.rd", "core.rd-lookup-res"} - set(self.paths)
        if missing:
            raise RuntimeError(f"{name} RD does not announce {missing}: {payload!r}")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def start_rd(which: str, workdir: str) -> RD:
    port = free_port()
    if which == "ours":
        python, env, cwd = ours_env()
        argv = [python, str(HERE.parent / "aiocoap-rd"), "--bind", f"{HOST}:{port}",
                "--database", os.path.join(workdir, "rd.sqlite3"),
                "--max-registrations", "1000000", "--max-per-source", "1000000"]
    else:
        python, env, cwd = theirs_env()
        argv = [python, "-I", "-m", "aiocoap.cli.rd", "--bind", f"{HOST}:{port}"]
    # UDP only, for both: the load is UDP, and the reference would also open
    # TCP and WebSocket ports (the latter at port + 3000, maybe taken)
    env = dict(env, AIOCOAP_SERVER_TRANSPORT="udp6")
    return RD(which, argv, env, cwd, port)


def measure(which: str, args) -> dict:
    workdir = tempfile.mkdtemp(prefix=f"bench-rd-{which}-")
    rd = start_rd(which, workdir)
    try:
        result: dict = {"rd": which}
        rd_path = rd.paths["core.rd"]
        lookup_path = rd.paths["core.rd-lookup-res"]
        rss_before = rd.rss_bytes()

        def registrations():
            for i in range(args.endpoints):
                yield POST, request_body(rd_path, [f"ep=node{i}", "lt=86400"], endpoint_payload(i), LINK_FORMAT)

        cpu = rd.cpu_seconds()
        reg = drive(rd.port, registrations(), window=args.window, timeout=args.timeout)
        reg["server_cpu_us"] = (rd.cpu_seconds() - cpu) / max(reg["answered"], 1) * 1e6
        result["register"] = reg
        time.sleep(0.5)
        result["rss_per_registration_bytes"] = (rd.rss_bytes() - rss_before) / args.endpoints
        result["rss_after_mb"] = rd.rss_bytes() / 2**20

        code, payload = request(rd.port, GET, lookup_path, ["ep=node7"])
        result["sample_lookup"] = payload.decode(errors="replace")
        if code != "2.05" or payload.count(b"<") != LINKS_PER_ENDPOINT:
            raise RuntimeError(f"{which}: lookup of node7 answered {code} {payload!r}")

        rng = random.Random(1)

        def by_endpoint():
            while True:
                yield GET, request_body(lookup_path, [f"ep=node{rng.randrange(args.endpoints)}"])

        def by_type_paged():
            while True:
                yield GET, request_body(
                    lookup_path, [f"rt=t{rng.randrange(RT_TYPES)}", "count=10", f"page={rng.randrange(args.endpoints * LINKS_PER_ENDPOINT // RT_TYPES // 10)}"]
                )

        for name, bodies in (("lookup_ep", by_endpoint()), ("lookup_rt_paged", by_type_paged())):
            cpu = rd.cpu_seconds()
            run = drive(rd.port, bodies, window=args.window, duration=args.duration, timeout=args.timeout)
            run["server_cpu_us"] = (rd.cpu_seconds() - cpu) / max(run["answered"], 1) * 1e6
            result[name] = run
        return result
    finally:
        rd.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--endpoints", type=int, default=10_000)
    p.add_argument("--window", type=int, default=16)
    p.add_argument("--duration", type=float, default=5.0, help="seconds per lookup kind")
    p.add_argument("--timeout", type=float, default=10.0)
    p.add_argument("--only", choices=["ours", "theirs"])
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    results = {}
    for which in ("ours", "theirs"):
        if args.only in (None, which):
            results[which] = measure(which, args)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    rows = [
        ("registrations/s", "register", "per_s"),
        ("  CPU us per registration", "register", "server_cpu_us"),
        ("lookups/s, ?ep=NAME", "lookup_ep", "per_s"),
        ("  p50 ms", "lookup_ep", "p50_ms"),
        ("  p99 ms", "lookup_ep", "p99_ms"),
        ("  CPU us per lookup", "lookup_ep", "server_cpu_us"),
        ("lookups/s, ?rt=T&count=10&page=P", "lookup_rt_paged", "per_s"),
        ("  p50 ms", "lookup_rt_paged", "p50_ms"),
        ("  p99 ms", "lookup_rt_paged", "p99_ms"),
        ("  CPU us per lookup", "lookup_rt_paged", "server_cpu_us"),
    ]
    names = list(results)
    print(f"{args.endpoints} endpoints x {LINKS_PER_ENDPOINT} links, window {args.window}")
    print(f"{'':40}" + "".join(f"{n:>14}" for n in names) + ("  ours/theirs" if len(names) == 2 else ""))
    for label, phase, key in rows:
        values = [results[n][phase][key] for n in names]
        line = f"{label:40}" + "".join(f"{v:14.1f}" for v in values)
        if len(values) == 2 and values[1]:
            line += f"  {values[0] / values[1]:10.2f}x"
        print(line)
    for label, key in (("RSS growth per registration (bytes)", "rss_per_registration_bytes"), ("RSS after (MiB)", "rss_after_mb")):
        print(f"{label:40}" + "".join(f"{results[n][key]:14.1f}" for n in names))
    for n in names:
        for phase in ("register", "lookup_ep", "lookup_rt_paged"):
            r = results[n][phase]
            if r["lost"] or set(r["codes"]) - {"2.01", "2.05"}:
                print(f"{n} {phase}: lost {r['lost']}, codes {r['codes']}")


if __name__ == "__main__":
    main()
