#!/usr/bin/env python3
"""Plain requests under observation load (issue 20, weakness 4): the
latency of a GET while a server notifies many observers of a resource that
changes ``--rate`` times a second, and how many notifications the
observers get.

Three processes, all on loopback UDP:

* the **server** (``--role server``, this tree or the one given with
  ``--tree``): an ``ObservableResource`` at ``/obs`` whose state changes
  ``--rate`` times a second (``updated_state()`` from a timer), and a plain
  resource at ``/plain``. Its observation caps are raised so that the
  observers below all fit (one host, many ports).
* the **observers** (``--role observers``, no aiocoap: raw sockets):
  ``--observations`` observations (NON GET with Observe: 0, distinct
  tokens) spread over ``--sockets`` sockets; every notification is counted
  per observation and a confirmable one is acknowledged (so the server
  keeps every observer).
* the **driver** (no ``--role``): starts both, waits until every
  observation is established, then sends one confirmable ``GET /plain``
  every ``--interval`` seconds for ``--duration`` seconds from a socket of
  its own, timing each round trip (a response missing after 2 s counts as
  lost), and reports the GET latency (median, p99, max), the notifications
  per observer per second, and the server's CPU share. A first phase
  without observers gives the unloaded latency.

Only ours: the reference (aiocoap 0.4.17) has no per-peer caps to raise and
takes minutes to establish this many observations; the figures before and
after the change come from running this script against two trees
(``--tree``).

    python3 benchmarks/bench_observe_load.py                       # 10 000 observers, 10 Hz, 10 s
    python3 benchmarks/bench_observe_load.py --observations 2000 --duration 5
    python3 benchmarks/bench_observe_load.py --tree /path/to/other/checkout --json
    python3 benchmarks/bench_observe_load.py --gc-threshold 10000             # the server's gen-0 threshold
"""

from __future__ import annotations

import argparse
import json
import os
import random
import select
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
HOST = "127.0.0.1"

CON, NON, ACK = 0, 1, 2
GET = 1
OBSERVE, URI_PATH = 6, 11


def encode(mtype: int, code: int, mid: int, token: bytes, options: list, payload: bytes = b"") -> bytes:
    """A CoAP message (options sorted by number, values short)."""
    out = bytearray([0x40 | (mtype << 4) | len(token), code, mid >> 8, mid & 0xFF])
    out += token
    last = 0
    for number, value in sorted(options, key=lambda o: o[0]):
        delta = number - last
        assert delta < 13 and len(value) < 13
        out.append((delta << 4) | len(value))
        out += value
        last = number
    if payload:
        out += b"\xff" + payload
    return bytes(out)


# --------------------------------------------------------------------------
# server role


def serve(host: str, port: int, rate: float, notification_slice: float | None, gc_threshold: str | None) -> None:
    import asyncio
    import gc

    if gc_threshold:
        gc.set_threshold(*(int(t) for t in gc_threshold.split(",")))

    import aiocoap
    import aiocoap.resource as resource

    class Observed(resource.ObservableResource):
        def __init__(self):
            super().__init__()
            self.state = 0
            self.count = 0

        def update_observation_count(self, newcount):
            self.count = newcount

        async def render_get(self, request):
            return aiocoap.Message(payload=b"%d" % self.state)

    class Plain(resource.Resource):
        async def render_get(self, request):
            return aiocoap.Message(payload=b"plain")

    async def main() -> None:
        observed = Observed()
        site = resource.Site()
        site.add_resource(("obs",), observed)
        site.add_resource(("plain",), Plain())
        context = await aiocoap.Context.create_server_context(site, bind=(host, port), transports=["udp6"])
        for name in ("max_observations_per_peer", "max_observations_per_host", "max_observations_per_resource"):
            setattr(context, name, 1 << 20)
        if notification_slice is not None:
            context.notification_slice = notification_slice
        loop = asyncio.get_running_loop()

        def tick():
            observed.state += 1
            observed.updated_state()
            loop.call_later(1 / rate, tick)

        loop.call_later(1 / rate, tick)
        print(json.dumps({"library": str(Path(aiocoap.__file__).parent)}), flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


# --------------------------------------------------------------------------
# observers role


def observe(host: str, port: int, observations: int, sockets: int, seconds: float) -> None:
    """Register, report, then count notifications for ``seconds``."""
    socks = []
    for _ in range(sockets):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        s.bind((host, 0))
        s.setblocking(False)
        socks.append(s)
    by_fd = {s.fileno(): s for s in socks}
    counts = [0] * observations
    registered = [False] * observations
    stats = {"con": 0, "datagrams": 0}
    target = (host, port)

    def handle(s) -> None:
        while True:
            try:
                data = s.recv(2048)
            except BlockingIOError:
                return
            stats["datagrams"] += 1
            if len(data) < 4:
                continue
            mtype = (data[0] >> 4) & 3
            tkl = data[0] & 0x0F
            if mtype == CON:
                stats["con"] += 1
                s.send(bytes((0x60, 0, data[2], data[3])))  # empty ACK
            if tkl != 4:
                continue
            index = struct.unpack("!I", data[4:8])[0]
            if index < observations:
                if registered[index]:
                    counts[index] += 1
                else:
                    registered[index] = True

    for s in socks:
        s.connect(target)
    pending = list(range(observations))
    mid = 0
    while pending:
        batch, pending = pending[:500], pending[500:]
        for index in batch:
            mid = (mid + 1) & 0xFFFF
            socks[index % sockets].send(encode(NON, GET, mid, struct.pack("!I", index),
                                               [(OBSERVE, b""), (URI_PATH, b"obs")]))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not all(registered[i] for i in batch):
            for fd in select.select(list(by_fd), [], [], 0.05)[0]:
                handle(by_fd[fd])
    print(json.dumps({"registered": sum(registered)}), flush=True)
    sys.stdin.readline()  # the measurement starts
    for i in range(observations):
        counts[i] = 0
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        for fd in select.select(list(by_fd), [], [], 0.05)[0]:
            handle(by_fd[fd])
    elapsed = time.monotonic() - start
    per = sorted(c / elapsed for c in counts)
    print(json.dumps({
        "seconds": elapsed, "notifications": sum(counts), "con_acked": stats["con"],
        "per_observer_hz_mean": sum(per) / len(per) if per else 0.0,
        "per_observer_hz_min": per[0] if per else 0.0,
        "per_observer_hz_median": per[len(per) // 2] if per else 0.0,
        "starved": sum(1 for c in counts if c == 0),
    }), flush=True)


# --------------------------------------------------------------------------
# driver


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def probe(host: str, port: int, seconds: float, interval: float) -> dict:
    """Confirmable GETs to /plain, one at a time, every ``interval``."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((host, port))
    rng = random.Random(1)
    latencies = []
    lost = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        mid = rng.randrange(0x10000)
        token = rng.randbytes(4)
        sent = time.perf_counter()
        s.send(encode(CON, GET, mid, token, [(URI_PATH, b"plain")]))
        while True:
            left = 2.0 - (time.perf_counter() - sent)
            if left <= 0 or not select.select([s], [], [], left)[0]:
                lost += 1
                break
            data = s.recv(2048)
            if len(data) >= 4 and data[2:4] == bytes((mid >> 8, mid & 0xFF)) and (data[0] >> 4) & 3 == ACK \
                    and data[1] != 0:
                latencies.append((time.perf_counter() - sent) * 1e3)
                break
        time.sleep(max(0.0, interval - (time.perf_counter() - sent)))
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] if latencies else float("nan")

    return {"gets": len(latencies), "lost": lost, "p50_ms": pct(0.5), "p99_ms": pct(0.99),
            "max_ms": latencies[-1] if latencies else float("nan")}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--role", choices=("server", "observers"), help=argparse.SUPPRESS)
    parser.add_argument("--host", default=HOST)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--observations", type=int, default=10_000, help="observers (10 000)")
    parser.add_argument("--sockets", type=int, default=100, help="observer sockets, i.e. peers (100)")
    parser.add_argument("--rate", type=float, default=10.0, help="changes of the resource per second (10)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured (10)")
    parser.add_argument("--interval", type=float, default=0.02, help="seconds between GETs (0.02)")
    parser.add_argument("--tree", default=str(REPO), help="the library tree the server runs (this one)")
    parser.add_argument("--slice", type=float, help="the server's Context.notification_slice in seconds "
                                                    "(default: the library's)")
    parser.add_argument("--gc-threshold", metavar="G0[,G1[,G2]]",
                        help="the server's gc.set_threshold (default: Python's, 700,10,10)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    if args.role == "server":
        serve(args.host, args.port, args.rate, args.slice, args.gc_threshold)
        return 0
    if args.role == "observers":
        observe(args.host, args.port, args.observations, args.sockets, args.duration)
        return 0

    env = dict(os.environ, PYTHONPATH=args.tree)
    port = free_port(args.host)
    server = subprocess.Popen(
        [sys.executable, __file__, "--role", "server", "--host", args.host, "--port", str(port),
         "--rate", str(args.rate)] + ([] if args.slice is None else ["--slice", str(args.slice)])
        + ([] if args.gc_threshold is None else ["--gc-threshold", args.gc_threshold]),
        stdout=subprocess.PIPE, text=True, env=env,
    )
    observers = None
    try:
        ready = json.loads(server.stdout.readline())
        unloaded = probe(args.host, port, min(3.0, args.duration), args.interval)
        observers = subprocess.Popen(
            [sys.executable, __file__, "--role", "observers", "--host", args.host, "--port", str(port),
             "--observations", str(args.observations), "--sockets", str(args.sockets),
             "--duration", str(args.duration)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        registered = json.loads(observers.stdout.readline())["registered"]
        observers.stdin.write("go\n")
        observers.stdin.flush()
        cpu0, t0 = proc_cpu_s(server.pid), time.monotonic()
        loaded = probe(args.host, port, args.duration, args.interval)
        cpu = (proc_cpu_s(server.pid) - cpu0) / (time.monotonic() - t0)
        counted = json.loads(observers.stdout.readline())
    finally:
        for proc in (observers, server):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    result = {
        "library": ready["library"], "observations": args.observations, "registered": registered,
        "rate_hz": args.rate, "unloaded": unloaded, "loaded": loaded, "server_cpu_share": cpu,
        "notifications": counted,
    }
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"server library: {ready['library']}")
    print(f"{registered} of {args.observations} observations established over {args.sockets} sockets; "
          f"resource changes {args.rate:g}/s")
    for name, figures in (("GET, no observers", unloaded), ("GET under load", loaded)):
        print(f"{name:>18}: p50 {figures['p50_ms']:.2f} ms, p99 {figures['p99_ms']:.2f} ms, "
              f"max {figures['max_ms']:.2f} ms ({figures['gets']} answered, {figures['lost']} lost)")
    print(f"notifications: {counted['notifications'] / counted['seconds']:.0f}/s in all, per observer "
          f"{counted['per_observer_hz_mean']:.2f}/s on average (min {counted['per_observer_hz_min']:.2f}, "
          f"{counted['starved']} got none), {counted['con_acked']} CON acknowledged")
    print(f"server CPU: {cpu * 100:.0f} % of a core; load average {os.getloadavg()[0]:.1f}")
    return 0


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    sys.exit(main())
