#!/usr/bin/env python3
"""Forward proxy throughput: GET requests per second through our
``aiocoap-proxy`` and through aiocoap 0.4.17's, in the same run.

Set-up (all on loopback, each server a subprocess):

* the origins are ``--origins`` (16) instances of libcoap's
  ``coap-server-notls`` with ``/bench`` (the fastest server at hand, so the
  proxies are what is measured);
* each proxy runs ``--forward``; the load (this process, raw UDP sockets,
  CON requests, a closed loop of ``--window`` requests in flight) asks it
  for ``coap://127.0.0.1:<origin>/bench`` with Proxy-Scheme, Uri-Host,
  Uri-Port and Uri-Path, the form both proxies understand, naming the
  origins in turn.

Both proxies forward through a client context that obeys congestion
control: at most NSTART (reported; 1 in both libraries) confirmable
exchanges are outstanding to one origin, the others wait in the proxy. With
a single origin the forward figure would be that queue's (one upstream
round trip at a time); with as many origins as requests in flight, the
proxy's own work is what is measured (``--origins 1`` for the former).

Measured, best of ``--rounds`` runs of ``--duration`` seconds each:

1. ``forward``: both proxies with ``--no-cache`` (every request goes
   upstream); target: ours >= 3x theirs.
2. ``cache_hits``: our proxy with its cache (after the first request, every
   request is a hit) against our plain server (``bench_server.py --serve``)
   with the same load on ``GET /bench``; target: >= 80 % of the server.
3. ``fixed_answer`` (a yardstick, no target): our server with one resource
   as its whole site that answers every GET with the payload and a Max-Age,
   i.e. with what a cache hit sends, under the load of 2. (the proxy's
   requests, four options each). Between it and the plain server lies what
   the bigger requests and the Max-Age cost the library's request
   handling; between it and the cache hits, the proxy's own work.

    python3 benchmarks/bench_proxy.py --duration 4 --rounds 3
    python3 benchmarks/bench_proxy.py --no-forward   # 2. and 3. only

Besides the rate, each figure has the CPU time the proxy (or server)
process spent per request, which other load on the machine disturbs less.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import random
import selectors
import socket
import struct
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _servers  # noqa: E402

CON, ACK = 0, 2
GET = 1
TOKEN_LENGTH = 4
_HEADER = struct.Struct("!BBHI")

URI_HOST, URI_PORT, URI_PATH, PROXY_SCHEME = 3, 7, 11, 39


def encode_options(options: list) -> bytes:
    """CoAP option bytes for (number, value bytes) pairs, sorted by number."""
    out = bytearray()
    previous = 0
    for number, value in sorted(options, key=lambda o: o[0]):
        first = 0
        extra = bytearray()
        for shift, field in ((4, number - previous), (0, len(value))):
            if field < 13:
                first |= field << shift
            elif field < 269:
                first |= 13 << shift
                extra.append(field - 13)
            else:
                first |= 14 << shift
                extra += struct.pack("!H", field - 269)
        out.append(first)
        out += extra
        out += value
        previous = number
    return bytes(out)


def proxied_get_options(origin_host: str, origin_port: int, path: str) -> bytes:
    options = [(URI_HOST, origin_host.encode()), (URI_PORT, struct.pack("!H", origin_port)),
               (PROXY_SCHEME, b"coap")]
    options += [(URI_PATH, segment.encode()) for segment in path.strip("/").split("/")]
    return encode_options(options)


def plain_get_options(path: str) -> bytes:
    return encode_options([(URI_PATH, segment.encode()) for segment in path.strip("/").split("/")])


def run_load(host: str, port: int, options: list, duration: float, window: int, sockets: int,
             timeout: float = 2.0, warmup: float = 0.5) -> dict:
    """Keep ``window`` CON GETs in flight over ``sockets`` sockets, each with
    the next of the option bytes in ``options`` (in turn); count answered
    requests in the ``duration`` after ``warmup``. A request unanswered for
    ``timeout`` counts as lost and is replaced. Separate (CON) responses are
    acknowledged."""
    turn = itertools.cycle(options)
    selector = selectors.DefaultSelector()
    flows = []
    for i in range(sockets):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.connect((host, port))
        sock.setblocking(False)
        flow = {"sock": sock, "mid": random.getrandbits(16), "inflight": {}, "share": window // sockets + (i < window % sockets)}
        selector.register(sock, selectors.EVENT_READ, flow)
        flows.append(flow)
    counts = dict(completed=0, lost=0, sent=0)
    codes: dict = {}
    now = time.perf_counter
    start = now()
    measure_from = start + warmup
    end = measure_from + duration
    latencies = []

    def send(flow) -> None:
        flow["mid"] = (flow["mid"] + 1) & 0xFFFF
        token = random.getrandbits(32)
        flow["inflight"][token] = now()
        flow["sock"].send(_HEADER.pack(0x40 | CON << 4 | TOKEN_LENGTH, GET, flow["mid"], token) + next(turn))
        counts["sent"] += 1

    for flow in flows:
        for _ in range(flow["share"]):
            send(flow)
    last_sweep = now()
    while True:
        t = now()
        if t >= end:
            break
        for key, _ in selector.select(0.05):
            flow = key.data
            sock = flow["sock"]
            while True:
                try:
                    data = sock.recv(2048)
                except BlockingIOError:
                    break
                except ConnectionRefusedError:
                    break
                if len(data) < 4:
                    continue
                first, code, mid = struct.unpack_from("!BBH", data)
                mtype = (first >> 4) & 3
                if code == 0:
                    continue  # empty ACK of a separate response
                if mtype == CON:
                    sock.send(struct.pack("!BBH", 0x40 | ACK << 4, 0, mid))
                if len(data) < 8:
                    continue
                token = struct.unpack_from("!I", data, 4)[0]
                sent_at = flow["inflight"].pop(token, None)
                if sent_at is None:
                    continue
                t = now()
                if measure_from <= t < end:
                    counts["completed"] += 1
                    latencies.append(t - sent_at)
                    label = f"{code >> 5}.{code & 31:02d}"
                    codes[label] = codes.get(label, 0) + 1
                send(flow)
        if t - last_sweep > 0.1:
            last_sweep = t
            for flow in flows:
                stale = [tok for tok, sent_at in flow["inflight"].items() if t - sent_at > timeout]
                for tok in stale:
                    del flow["inflight"][tok]
                    counts["lost"] += 1
                    send(flow)
    for flow in flows:
        selector.unregister(flow["sock"])
        flow["sock"].close()
    latencies.sort()
    p = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else float("nan")  # noqa: E731
    return dict(requests_per_s=counts["completed"] / duration, latency_ms_p50=p(0.5), latency_ms_p99=p(0.99),
                codes=codes, **counts)


def measure(server: _servers.ServerProcess, options: list, args) -> dict:
    best = None
    for _ in range(args.rounds):
        cpu_before = server.cpu_seconds()
        result = run_load(server.host, server.port, options, args.duration, args.window, args.sockets,
                          warmup=args.warmup)
        cpu_after = server.cpu_seconds()
        if cpu_before is not None and cpu_after is not None and result["sent"]:
            result["cpu_us_per_request"] = (cpu_after - cpu_before) * 1e6 / result["sent"]
        if best is None or result["requests_per_s"] > best["requests_per_s"]:
            best = result
    assert best is not None
    return best


def serve_fixed(host: str, port: int) -> None:
    """Serve the fixed answer of figure 3 until SIGTERM / SIGINT."""
    import asyncio
    import signal

    import aiocoap
    import aiocoap.resource as resource

    class Fixed(resource.Resource):
        async def render_get(self, request):
            return aiocoap.Message(payload=_servers.PAYLOAD, max_age=FIXED_MAX_AGE)

    async def serve() -> None:
        context = await aiocoap.Context.create_server_context(Fixed(), bind=(host, port))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await context.shutdown()

    asyncio.run(serve())


FIXED_MAX_AGE = 59
"""Max-Age of the fixed answer (a cache hit a second after storing)."""


def start_fixed(host: str) -> _servers.ServerProcess:
    port = _servers.free_port(host)
    python, env, cwd = _servers.ours_env()
    argv = [python, str(Path(__file__).resolve()), "--serve-fixed", str(port), "--host", host]
    return _servers.start_process("fixed", argv, env, cwd, host, port, False, 30.0)


def start_proxy(flavour: str, host: str, extra: list) -> _servers.ServerProcess:
    port = _servers.free_port(host)
    bind = ["--forward", "--bind", f"{host}:{port}", *extra]
    if flavour == "ours":
        python, env, cwd = _servers.ours_env()
        argv = [python, str(_servers.REPO / "aiocoap-proxy"), *bind]
    else:
        python, env, cwd = _servers.theirs_env()
        argv = [python, "-m", "aiocoap.cli.proxy", *bind]
    return _servers.start_process(f"proxy-{flavour}", argv, env, cwd, host, port, False, 30.0)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default=_servers.HOST)
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--window", type=int, default=16)
    parser.add_argument("--sockets", type=int, default=4)
    parser.add_argument("--origins", type=int, default=16,
                        help="origin servers the requests name in turn (16: one per request in flight)")
    parser.add_argument("--no-forward", action="store_true",
                        help="skip the forward measurement (1.): cache hits and the yardsticks only")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--serve-fixed", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_fixed is not None:
        serve_fixed(args.host, args.serve_fixed)
        return
    if _servers.libcoap_server_binary() is None:
        sys.exit("bench_proxy.py needs libcoap's coap-server-notls as the origin server")

    report: dict = {"load": vars(args).copy(),
                    "nstart": {"ours": _servers.library_nstart(*_servers.ours_env()),
                               "theirs": _servers.library_nstart(*_servers.theirs_env())}}
    with contextlib.ExitStack() as origins:
        options = [proxied_get_options(args.host, origin.port, _servers.PATH)
                   for origin in (origins.enter_context(_servers.start_libcoap_server(args.host))
                                  for _ in range(args.origins))]
        for flavour in () if args.no_forward else ("theirs", "ours"):
            with start_proxy(flavour, args.host, ["--no-cache"] if flavour == "ours" else []) as proxy:
                report[f"forward_{flavour}"] = measure(proxy, options, args)
        with start_proxy("ours", args.host, []) as proxy:
            report["cache_hits_ours"] = measure(proxy, options, args)
    with start_fixed(args.host) as server:
        report["fixed_answer_ours"] = measure(server, options, args)
    python, env, cwd = _servers.ours_env()
    with _servers.start_aiocoap_server(python, env, cwd, args.host) as server:
        report["plain_server_ours"] = measure(server, [plain_get_options(_servers.PATH)], args)
    rate = lambda name: max(1e-9, report[name]["requests_per_s"])  # noqa: E731
    if not args.no_forward:
        report["forward_ratio"] = rate("forward_ours") / rate("forward_theirs")
    report["cache_hit_ratio_to_server"] = rate("cache_hits_ours") / rate("plain_server_ours")
    report["fixed_answer_ratio_to_server"] = rate("fixed_answer_ours") / rate("plain_server_ours")
    report["cache_hit_ratio_to_fixed_answer"] = rate("cache_hits_ours") / rate("fixed_answer_ours")
    report["loadavg"] = os.getloadavg()
    if args.json:
        print(json.dumps(report))
        return
    print(f"{args.window} requests in flight over {args.sockets} sockets to {args.origins} origin(s); "
          f"NSTART (per origin, in the proxy's client): ours {report['nstart']['ours']}, "
          f"theirs {report['nstart']['theirs']}")
    for name in ("forward_theirs", "forward_ours", "cache_hits_ours", "fixed_answer_ours", "plain_server_ours"):
        if name not in report:
            continue
        r = report[name]
        print(f"{name:20} {r['requests_per_s']:9.0f} req/s  p50 {r['latency_ms_p50']:6.2f} ms  "
              f"p99 {r['latency_ms_p99']:6.2f} ms  lost {r['lost']}  cpu {r.get('cpu_us_per_request', float('nan')):.0f} us/req  {r['codes']}")
    if "forward_ratio" in report:
        print(f"forward (cache off), ours / theirs: {report['forward_ratio']:.2f}x (target >= 3x)")
    print(f"cache hits / our plain server:      {report['cache_hit_ratio_to_server']:.2f} (target >= 0.80)")
    print(f"fixed answer / our plain server:    {report['fixed_answer_ratio_to_server']:.2f} (yardstick)")
    print(f"cache hits / fixed answer:          {report['cache_hit_ratio_to_fixed_answer']:.2f} (yardstick)")
    print(f"load average: {report['loadavg']}")


if __name__ == "__main__":
    main()
