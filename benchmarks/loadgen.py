#!/usr/bin/env python3
"""Closed-loop CoAP load generator over raw UDP (no aiocoap import).

It keeps a window of ``--window`` GET requests in flight, spread over
``--sockets`` client sockets, for ``--duration`` seconds, and reports the
rate of answered requests, the latency distribution and the losses. Every
answer (or loss) immediately frees its slot for the next request, so the
server is never idle and never flooded.

* CON requests are matched to their piggybacked ACK by message ID and
  token; NON requests to their NON answer by token (the server picks a new
  message ID). A separate (CON) response is acknowledged with an empty ACK.
* Nothing is retransmitted. A request not answered within ``--timeout``
  seconds counts as lost and its slot is reused.
* Message IDs: a server remembers each (peer, message ID) pair for
  EXCHANGE_LIFETIME (247 s) to detect duplicates, so a reused ID would be
  answered from its cache. Each socket therefore sends at most 65 536
  requests (one round through the ID space) and is then replaced by a fresh
  socket -- a new source port and so a new peer -- while its last requests
  are still answered.
* The first ``--warmup`` seconds are not counted; after ``--duration`` the
  outstanding requests get ``--timeout`` seconds to complete (they count
  towards losses, not towards the rate).

Run with ``--procs P`` to split the window and sockets over P processes
(for servers that are faster than one Python process can drive).

    python3 benchmarks/loadgen.py --port 5683 --path /hello --type CON --duration 5

Prints a human-readable summary, or with ``--json`` one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import random
import selectors
import socket
import struct
import sys
import time
from array import array

CON, NON, ACK, RST = 0, 1, 2, 3
GET = 1
TOKEN_LENGTH = 4
MID_SPACE = 1 << 16
_HEADER = struct.Struct("!BBHI")  # version/type/TKL, code, message ID, 4-byte token
_EMPTY_ACK = struct.Struct("!BBH")


def encode_uri_path(path: str) -> bytes:
    """Uri-Path options (number 11) for ``path``, e.g. ``/a/b``."""
    out = bytearray()
    previous = 0
    for segment in path.strip("/").split("/") if path.strip("/") else []:
        value = segment.encode("utf-8")
        delta = 11 - previous
        previous = 11
        length = len(value)
        first = 0
        extra = bytearray()
        for nibble_shift, number in ((4, delta), (0, length)):
            if number < 13:
                first |= number << nibble_shift
            elif number < 269:
                first |= 13 << nibble_shift
                extra.append(number - 13)
            else:
                first |= 14 << nibble_shift
                extra += struct.pack("!H", number - 269)
        out.append(first)
        out += extra
        out += value
    return bytes(out)


def code_string(code: int) -> str:
    return f"{code >> 5}.{code & 0x1F:02d}"


class _Flow:
    """One client socket and the requests in flight on it."""

    __slots__ = ("sock", "index", "token_base", "mid_base", "seq", "inflight")

    def __init__(self, family: int, address: tuple, index: int):
        self.index = index
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.setblocking(False)
        self.sock.connect(address)
        self.token_base = random.getrandbits(16) << 16
        self.mid_base = random.getrandbits(16)
        self.seq = 0
        # seq -> send time, in send order (dicts keep insertion order, so the
        # oldest request in flight is always the first key)
        self.inflight: dict = {}

    @property
    def exhausted(self) -> bool:
        return self.seq >= MID_SPACE


def _percentile(sorted_values, fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, math.ceil(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


def run_load(
    host: str,
    port: int,
    path: str = "/",
    mtype: str = "CON",
    duration: float = 5.0,
    window: int = 32,
    sockets: int = 4,
    timeout: float = 1.0,
    warmup: float = 0.5,
    _raw_latencies: bool = False,
) -> dict:
    """Run the load from this process and return the figures (see
    :func:`summarize` for the keys)."""
    if mtype not in ("CON", "NON"):
        raise ValueError("mtype must be CON or NON")
    sockets = max(1, min(sockets, window))
    is_con = mtype == "CON"
    first_byte = 0x40 | ((CON if is_con else NON) << 4) | TOKEN_LENGTH
    options = encode_uri_path(path)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    address = (host, port)
    pack = _HEADER.pack
    now = time.perf_counter

    selector = selectors.DefaultSelector()
    active: list = []
    retiring: list = []
    flows_opened = 0
    # per-flow windows that add up to ``window``
    slots = [window // sockets + (1 if i < window % sockets else 0) for i in range(sockets)]

    latencies = array("d")
    codes: dict = {}
    counts = dict(sent=0, completed=0, lost=0, late=0, unmatched=0, refused=0, resets=0,
                  empty_acks=0)

    t_start = now()
    t_measure = t_start + warmup
    t_end = t_start + warmup + duration
    sending = True

    def open_flow(index: int) -> _Flow:
        nonlocal flows_opened
        flow = _Flow(family, address, index)
        selector.register(flow.sock, selectors.EVENT_READ, flow)
        flows_opened += 1
        return flow

    def fill(index: int) -> None:
        """Top up flow ``index`` to its share of the window, replacing it
        by a fresh socket when its message IDs are used up."""
        flow = active[index]
        inflight = flow.inflight
        sock = flow.sock
        budget = slots[index] - len(inflight)
        if retiring:
            budget -= sum(len(r.inflight) for r in retiring if r.index == index)
        while budget > 0:
            budget -= 1
            if flow.exhausted:
                retiring.append(flow)
                flow = active[index] = open_flow(index)
                inflight = flow.inflight
                sock = flow.sock
            seq = flow.seq
            flow.seq = seq + 1
            t = now()
            try:
                sock.send(pack(first_byte, GET, (flow.mid_base + seq) & 0xFFFF, flow.token_base | seq) + options)
            except (ConnectionRefusedError, BlockingIOError):
                counts["refused"] += 1
                return
            inflight[seq] = t
            counts["sent"] += 1

    def expire(flow: _Flow, t: float) -> None:
        inflight = flow.inflight
        limit = t - timeout
        while inflight:
            seq = next(iter(inflight))
            sent_at = inflight[seq]
            if sent_at > limit:
                break
            del inflight[seq]
            if sent_at >= t_measure:
                counts["lost"] += 1

    for i in range(sockets):
        active.append(open_flow(i))
    for i in range(sockets):
        fill(i)

    last_expiry = t_start
    drain_until = None
    recv_errors = (BlockingIOError, InterruptedError)
    while True:
        t = now()
        if sending and t >= t_end:
            sending = False
            drain_until = t + timeout
        if not sending and (t >= drain_until or not any(f.inflight for f in active + retiring)):
            break
        for key, _events in selector.select(0.002):
            flow = key.data
            sock = flow.sock
            inflight = flow.inflight
            for _ in range(256):
                try:
                    data = sock.recv(2048)
                except recv_errors:
                    break
                except ConnectionRefusedError:
                    counts["refused"] += 1
                    continue
                t = now()
                if len(data) < 4 + TOKEN_LENGTH or data[0] & 0x0F != TOKEN_LENGTH:
                    if len(data) >= 4 and data[1] == 0 and (data[0] >> 4) & 3 == ACK:
                        counts["empty_acks"] += 1
                    elif len(data) >= 4 and (data[0] >> 4) & 3 == RST:
                        counts["resets"] += 1
                    else:
                        counts["unmatched"] += 1
                    continue
                mid, token = struct.unpack_from("!HI", data, 2)
                if token & 0xFFFF0000 != flow.token_base:
                    counts["unmatched"] += 1
                    continue
                seq = token & 0xFFFF
                mtype_received = (data[0] >> 4) & 3
                if is_con and mtype_received == ACK and mid != (flow.mid_base + seq) & 0xFFFF:
                    counts["unmatched"] += 1
                    continue
                if mtype_received == CON:
                    try:
                        sock.send(_EMPTY_ACK.pack(0x40 | (ACK << 4), 0, mid))
                    except OSError:
                        pass
                sent_at = inflight.pop(seq, None)
                if sent_at is None:
                    counts["late"] += 1
                    continue
                if sent_at >= t_measure and t <= t_end:
                    latencies.append(t - sent_at)
                    counts["completed"] += 1
                    code = data[1]
                    codes[code] = codes.get(code, 0) + 1
            if sending:
                # an answer on a retired socket frees a slot of its successor
                fill(flow.index)
        t = now()
        if t - last_expiry >= 0.01:
            last_expiry = t
            for flow in retiring[:]:
                expire(flow, t)
                if not flow.inflight:
                    selector.unregister(flow.sock)
                    flow.sock.close()
                    retiring.remove(flow)
            for i, flow in enumerate(active):
                expire(flow, t)
                if sending:
                    fill(i)
    # requests still unanswered when the drain time is over are lost too
    for flow in active + retiring:
        expire(flow, float("inf"))
        selector.unregister(flow.sock)
        flow.sock.close()
    selector.close()

    result = dict(
        counts,
        duration_s=duration,
        window=window,
        sockets=sockets,
        sockets_opened=flows_opened,
        type=mtype,
        codes={code_string(c): n for c, n in sorted(codes.items())},
    )
    if _raw_latencies:
        result["latencies"] = latencies
    else:
        result.update(summarize_latencies(latencies))
        result["requests_per_s"] = counts["completed"] / duration
    return result


def summarize_latencies(latencies) -> dict:
    values = sorted(latencies)
    ms = 1000.0
    return dict(
        latency_ms_p50=_percentile(values, 0.50) * ms,
        latency_ms_p90=_percentile(values, 0.90) * ms,
        latency_ms_p99=_percentile(values, 0.99) * ms,
        latency_ms_max=(values[-1] * ms) if values else float("nan"),
    )


def _worker(kwargs: dict, queue) -> None:
    try:
        queue.put(run_load(_raw_latencies=True, **kwargs))
    except BaseException as exc:  # reported to the parent, which re-raises
        queue.put(exc)


def run(
    host: str,
    port: int,
    path: str = "/",
    mtype: str = "CON",
    duration: float = 5.0,
    window: int = 32,
    sockets: int = 4,
    timeout: float = 1.0,
    warmup: float = 0.5,
    procs: int = 1,
) -> dict:
    """Run the load, from ``procs`` processes if more than one, and return
    one dict: ``requests_per_s``, ``latency_ms_p50/p90/p99/max``, ``sent``,
    ``completed``, ``lost``, ``late``, ``unmatched``, ``refused``,
    ``codes`` (response code -> count) and the parameters."""
    kwargs = dict(
        host=host, port=port, path=path, mtype=mtype, duration=duration,
        timeout=timeout, warmup=warmup,
    )
    if procs <= 1:
        return run_load(window=window, sockets=sockets, **kwargs)
    ctx = multiprocessing.get_context("spawn" if sys.platform == "darwin" else "fork")
    queue = ctx.Queue()
    workers = []
    for i in range(procs):
        share = dict(
            kwargs,
            window=window // procs + (1 if i < window % procs else 0),
            sockets=max(1, sockets // procs),
        )
        process = ctx.Process(target=_worker, args=(share, queue), daemon=True)
        process.start()
        workers.append(process)
    parts = []
    try:
        for _ in workers:
            part = queue.get(timeout=warmup + duration + timeout + 30)
            if isinstance(part, BaseException):
                raise part
            parts.append(part)
    finally:
        for process in workers:
            process.join(5)
            if process.is_alive():
                process.kill()
    merged = array("d")
    total: dict = {}
    codes: dict = {}
    for part in parts:
        merged.extend(part.pop("latencies"))
        for code, n in part.pop("codes").items():
            codes[code] = codes.get(code, 0) + n
        for key, value in part.items():
            if key in ("sent", "completed", "lost", "late", "unmatched", "refused", "resets",
                       "empty_acks", "sockets", "sockets_opened", "window"):
                total[key] = total.get(key, 0) + value
    result = dict(total, duration_s=duration, type=mtype, procs=procs, codes=codes)
    result.update(summarize_latencies(merged))
    result["requests_per_s"] = result["completed"] / duration
    return result


def probe(host: str, port: int, path: str = "/", timeout: float = 0.2) -> str | None:
    """Send one CON GET and return the response code (e.g. ``"2.05"``) if an
    answer with the same message ID arrives within ``timeout``, else None."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    mid = random.getrandbits(16)
    token = random.getrandbits(32)
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect((host, port))
            sock.send(_HEADER.pack(0x40 | TOKEN_LENGTH, GET, mid, token) + encode_uri_path(path))
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                data = sock.recv(2048)
                if len(data) >= 4 and struct.unpack_from("!H", data, 2)[0] == mid:
                    return code_string(data[1])
        except OSError:
            return None
    return None


def wait_until_answering(host: str, port: int, path: str = "/", timeout: float = 10.0) -> str:
    """Probe until the server answers; return its response code or raise
    TimeoutError."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = probe(host, port, path)
        if code is not None:
            return code
        time.sleep(0.05)
    raise TimeoutError(f"no CoAP answer from {host}:{port}{path} within {timeout} s")


def format_result(result: dict) -> str:
    return (
        f"{result['type']}: {result['requests_per_s']:,.0f} req/s, "
        f"p50 {result['latency_ms_p50']:.2f} ms, p99 {result['latency_ms_p99']:.2f} ms, "
        f"max {result['latency_ms_max']:.1f} ms; sent {result['sent']}, "
        f"completed {result['completed']}, lost {result['lost']}, late {result['late']}, "
        f"unmatched {result['unmatched']}, refused {result['refused']}, resets {result['resets']}, "
        f"codes {result['codes']}"
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5683)
    parser.add_argument("--path", default="/")
    parser.add_argument("--type", choices=("CON", "NON"), default="CON")
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=0.5, help="unmeasured seconds first")
    parser.add_argument("--window", type=int, default=32, help="requests in flight")
    parser.add_argument("--sockets", type=int, default=4, help="client sockets")
    parser.add_argument("--timeout", type=float, default=1.0, help="seconds until a request is lost")
    parser.add_argument("--procs", type=int, default=1, help="load generating processes")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    result = run(
        args.host, args.port, args.path, args.type, args.duration, args.window,
        args.sockets, args.timeout, args.warmup, args.procs,
    )
    print(json.dumps(result) if args.json else format_result(result))


if __name__ == "__main__":
    main()
