#!/usr/bin/env python3
"""Soak test: a server under mixed traffic from many short-lived peers for a
long time (10 minutes by default) must keep its memory, tasks and file
descriptors flat.

The server (this tree's aiocoap, a subprocess, UDP and TCP on one loopback
port) serves:

* ``/small``: GET a short text, PUT replaces it (up to 64 bytes kept);
* ``/big``: GET 8 KiB (Block2), PUT up to 16 KiB (Block1);
* ``/obs``: observable, changes twice a second;
* ``/stats``: its own resident set size, number of asyncio tasks, open file
  descriptors and garbage-collected objects, as JSON.

``--procs`` client processes each keep ``--peers`` peers busy. A peer is a
client context of its own (so a UDP source port and a TCP connection of its
own) that runs ``--ops`` random operations -- GET/PUT /small and /big over
UDP, the same over TCP, observations that take a few notifications and
are cancelled, and observations that the peer abandons by going away --
and is then shut down and replaced by a new one, so that thousands of peers
come and go. Every ``--interval`` seconds the driver reads /stats; at the
end it prints the samples and a verdict (:func:`verdict`) comparing the
first and the second half of the samples after the warm-up (``--warmup``
seconds): the peaks of RSS and of the number of live objects may grow by
at most ``--rss-slack`` (default 5 %), the tasks and file descriptors not
on average (the number of peers connected at any moment varies, so single
samples differ). A last sample a few seconds after the clients stopped
shows what remains.

    flock /tmp/aiocoap-bench.lock python3 benchmarks/soak.py --duration 600
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _servers  # noqa: E402

BIG = bytes(range(256)) * 32  # 8 KiB
UPLOAD = bytes(range(251)) * 40  # ~10 KiB, several Block1 blocks
GET = 1
OPERATIONS = ("get_small", "put_small", "get_big", "put_big", "observe", "abandon_observe",
              "tcp_get_small", "tcp_put_small", "tcp_get_big", "tcp_observe")


# --- the server -------------------------------------------------------------------


def serve(host: str, port: int) -> None:
    import gc

    import aiocoap
    import aiocoap.resource as resource

    renders = [0]

    class Small(resource.Resource):
        def __init__(self):
            super().__init__()
            self.content = b"small"

        async def render_get(self, request):
            renders[0] += 1
            return aiocoap.Message(payload=self.content)

        async def render_put(self, request):
            renders[0] += 1
            self.content = request.payload[:64]
            return aiocoap.Message(code=aiocoap.CHANGED)

    class Big(resource.Resource):
        async def render_get(self, request):
            renders[0] += 1
            return aiocoap.Message(payload=BIG)

        async def render_put(self, request):
            renders[0] += 1
            if len(request.payload) > 16384:
                return aiocoap.Message(code=aiocoap.REQUEST_ENTITY_TOO_LARGE)
            return aiocoap.Message(code=aiocoap.CHANGED, payload=str(len(request.payload)).encode())

    class Ticking(resource.ObservableResource):
        def __init__(self):
            super().__init__()
            self.count = 0

        def tick(self):
            self.count += 1
            self.updated_state()

        async def render_get(self, request):
            renders[0] += 1
            return aiocoap.Message(payload=str(self.count).encode())

    class Stats(resource.Resource):
        async def render_get(self, request):
            with open("/proc/self/status") as f:
                rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
            stats = {
                "rss_kb": rss,
                "tasks": len(asyncio.all_tasks()),
                "fds": len(os.listdir("/proc/self/fd")),
                "gc_objects": len(gc.get_objects()),
                # requests (and blocks of blockwise transfers) rendered
                "renders": renders[0],
            }
            return aiocoap.Message(payload=json.dumps(stats).encode())

    async def main() -> None:
        site = resource.Site()
        site.add_resource(["small"], Small())
        site.add_resource(["big"], Big())
        ticking = Ticking()
        site.add_resource(["obs"], ticking)
        site.add_resource(["stats"], Stats())
        context = await aiocoap.Context.create_server_context(site, bind=(host, port),
                                                              transports=["udp6", "tcpserver", "tcpclient"])
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        print(json.dumps({"pid": os.getpid()}), flush=True)
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), 0.5)
            except asyncio.TimeoutError:
                ticking.tick()
        await context.shutdown()

    asyncio.run(main())


# --- the load ------------------------------------------------------------------------


async def _peer(uri_udp: str, uri_tcp: str, ops: int, pause: float, counts: dict) -> None:
    import aiocoap

    context = await aiocoap.Context.create_client_context()
    try:
        for _ in range(ops):
            op = random.choice(OPERATIONS)
            try:
                await asyncio.wait_for(_operation(context, op, uri_udp, uri_tcp), 60)
                counts["ok"] = counts.get("ok", 0) + 1
            except Exception as e:
                key = f"{op}: {type(e).__name__}"
                counts[key] = counts.get(key, 0) + 1
            counts["op " + op] = counts.get("op " + op, 0) + 1
            await asyncio.sleep(random.uniform(0, 2 * pause))
    finally:
        await context.shutdown()


async def _operation(context, op: str, uri_udp: str, uri_tcp: str) -> None:
    import aiocoap

    base = uri_tcp if op.startswith("tcp_") else uri_udp
    name = op[4:] if op.startswith("tcp_") else op
    if name == "get_small":
        response = await context.request(aiocoap.Message(code=aiocoap.GET, uri=base + "/small")).response
        _expect(response, aiocoap.CONTENT)
    elif name == "put_small":
        payload = random.randbytes(random.randrange(80))
        response = await context.request(aiocoap.Message(code=aiocoap.PUT, uri=base + "/small", payload=payload)).response
        _expect(response, aiocoap.CHANGED)
    elif name == "get_big":
        response = await context.request(aiocoap.Message(code=aiocoap.GET, uri=base + "/big")).response
        _expect(response, aiocoap.CONTENT)
        if response.payload != BIG:
            raise ValueError("wrong /big payload")
    elif name == "put_big":
        response = await context.request(aiocoap.Message(code=aiocoap.PUT, uri=base + "/big", payload=UPLOAD)).response
        _expect(response, aiocoap.CHANGED)
    elif name in ("observe", "abandon_observe"):
        request = context.request(aiocoap.Message(code=aiocoap.GET, uri=base + "/obs", observe=0))
        _expect(await request.response, aiocoap.CONTENT)
        wanted = random.randrange(1, 4)
        async for notification in request.observation:
            wanted -= 1
            if wanted == 0:
                break
        if name == "observe":
            request.observation.cancel()
        # else: the observation stays registered until the peer's context
        # shuts down without a word, as a vanished client's would
    else:
        raise ValueError(op)


def _expect(response, code) -> None:
    if response.code != code:
        raise ValueError(f"unexpected {response.code}")


def client(host: str, port: int, peers: int, ops: int, pause: float, duration: float) -> None:
    """Keep ``peers`` peers busy for ``duration`` seconds; print the
    operation counts as JSON."""
    uri_udp = f"coap://{host}:{port}"
    uri_tcp = f"coap+tcp://{host}:{port}"
    counts: dict = {"peers": 0}

    async def slot(deadline: float) -> None:
        while time.monotonic() < deadline:
            counts["peers"] += 1
            await _peer(uri_udp, uri_tcp, ops, pause, counts)

    async def main() -> None:
        deadline = time.monotonic() + duration
        await asyncio.gather(*(slot(deadline) for _ in range(peers)))

    asyncio.run(main())
    print(json.dumps(counts), flush=True)


# --- the driver -----------------------------------------------------------------------


def read_stats(host: str, port: int, timeout: float = 10.0) -> dict:
    """GET /stats with a raw request (no aiocoap in the driver)."""
    return json.loads(_servers.payload_of(_servers.raw_request(host, port, GET, "/stats", timeout=timeout)))


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


def verdict(samples: list, warmup: float, rss_slack: float) -> dict:
    """Compare the first and the second half of the samples after the
    warm-up: the peaks of RSS and of live objects may grow by at most
    ``rss_slack``; tasks and fds (which follow the peers connected at the
    moment) must not grow on average (by more than 10 % plus one).

    Halves, not shorter windows: the number of live objects saw-tooths as
    the caches expire old entries in batches (a period of about three
    minutes in the figures of benchmarks/README.md), and a window shorter
    than that compares a trough with a peak."""
    after = [s for s in samples if s["t"] >= warmup]
    if len(after) < 2:
        return {"flat": None, "why": "too few samples after the warm-up"}
    first, last = after[: len(after) // 2], after[len(after) // 2 :]
    result: dict = {}
    flat = True
    for key in ("rss_kb", "gc_objects"):
        peak_first = max(s[key] for s in first)
        peak_last = max(s[key] for s in last)
        result[f"{key}_peak"] = [peak_first, peak_last]
        result[f"{key}_growth"] = round(peak_last / peak_first - 1, 4)
        flat = flat and result[f"{key}_growth"] <= rss_slack
    for key in ("tasks", "fds"):
        mean_first = _mean(s[key] for s in first)
        mean_last = _mean(s[key] for s in last)
        result[f"{key}_mean"] = [round(mean_first, 1), round(mean_last, 1)]
        result[f"{key}_max"] = [max(s[key] for s in first), max(s[key] for s in last)]
        flat = flat and mean_last <= mean_first * 1.1 + 1
    span = after[-1]["t"] - after[0]["t"]
    if span > 0:
        result["renders_per_s"] = round((after[-1]["renders"] - after[0]["renders"]) / span, 1)
    result["flat"] = flat
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--host", default=_servers.HOST)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of load (default 600)")
    parser.add_argument("--warmup", type=float, default=300.0,
                        help="seconds not judged (default 300: longer than EXCHANGE_LIFETIME, 247 s, "
                        "for which the server keeps per-exchange state)")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--procs", type=int, default=2, help="client processes")
    parser.add_argument("--peers", type=int, default=20, help="concurrent peers per client process")
    parser.add_argument("--ops", type=int, default=20, help="operations of one peer before it is replaced")
    parser.add_argument("--pause", type=float, default=0.05, help="mean seconds between a peer's operations")
    parser.add_argument("--rss-slack", type=float, default=0.05, help="allowed RSS growth (default 0.05)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    if args.serve:
        serve(args.host, args.port)
        return 0
    if args.client:
        client(args.host, args.port, args.peers, args.ops, args.pause, args.duration)
        return 0

    python, env, cwd = _servers.ours_env()
    port = _servers.free_port(args.host)
    script = str(Path(__file__).resolve())
    argv_server = [python, script, "--serve", "--host", args.host, "--port", str(port)]
    samples: list = []
    load_average = [os.getloadavg()]
    with _servers.start_process("soak", argv_server, env, cwd, args.host, port, True, 30.0) as server:
        clients = [
            subprocess.Popen(
                [python, script, "--client", "--host", args.host, "--port", str(port), "--peers", str(args.peers),
                 "--ops", str(args.ops), "--pause", str(args.pause), "--duration", str(args.duration)],
                env=env, cwd=cwd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
            )
            for _ in range(args.procs)
        ]
        start = time.monotonic()
        try:
            while time.monotonic() - start < args.duration:
                time.sleep(args.interval - (time.monotonic() - start) % args.interval)
                sample = read_stats(args.host, port)
                sample["t"] = round(time.monotonic() - start, 1)
                samples.append(sample)
                if not args.json:
                    print(json.dumps(sample), flush=True)
            counts: dict = {}
            for process in clients:
                out, _ = process.communicate(timeout=120)
                for key, value in (json.loads(out) if out.strip() else {"client failed": 1}).items():
                    counts[key] = counts.get(key, 0) + value
        finally:
            for process in clients:
                if process.poll() is None:
                    process.kill()
                    process.wait()
        time.sleep(5)
        idle = read_stats(args.host, port)
        load_average.append(os.getloadavg())
        if server.process.poll() is not None:
            counts["server exited"] = server.process.returncode
    report = {
        "parameters": {k: v for k, v in vars(args).items() if k not in ("serve", "client", "json", "port")},
        "samples": samples,
        "idle_after_load": idle,
        "operations": counts,
        "load_average_start_end": load_average,
        "verdict": verdict(samples, args.warmup, args.rss_slack),
    }
    if args.json:
        print(json.dumps(report))
    else:
        print("idle after the load:", json.dumps(idle))
        print("operations:", json.dumps(counts, sort_keys=True))
        print("load average (1, 5, 15 min) at start and end:", load_average)
        print("verdict:", json.dumps(report["verdict"]))
    return 0 if report["verdict"]["flat"] else 1


if __name__ == "__main__":
    sys.exit(main())
