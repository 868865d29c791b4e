#!/usr/bin/env python3
"""Blockwise transfer speed and memory: a 1 MiB GET and a 1 MiB PUT over
loopback UDP at block size 1024 (RFC 7959), for this tree and for the
reference aiocoap 0.4.17, in one run.

Each measurement runs in a fresh worker process holding a server context
and a client context of the library under test (so the figures cover both
ends of one implementation): ``--worker get`` or ``--worker put`` does one
warm-up transfer and ``--rounds`` timed ones, checks every body, and prints
one JSON line with the transfer times and the process's peak RSS. The
driver (no arguments) starts the four workers -- ours with this repository
on ``PYTHONPATH``, theirs as the reference interpreter of ``_reference.py`` with ``-I`` on a copy of
this script in an empty temporary directory, so this tree can not be
imported there -- and prints the figures and the ratios.

Only the public aiocoap API is used on the library side.

    python3 benchmarks/bench_blockwise.py                  # both, 5 rounds
    python3 benchmarks/bench_blockwise.py --rounds 3 --size 4194304
    PYTHONPATH=. python3 benchmarks/bench_blockwise.py --worker get   # ours alone
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
HOST = "127.0.0.1"


def free_port() -> int:
    """A port free for UDP and TCP on HOST (servers listen on both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((HOST, 0))
            port = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((HOST, port))
                except OSError:
                    continue
        return port
    raise RuntimeError("no free port")


def make_body(size: int) -> bytes:
    line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ+/\n"
    return (line * (size // len(line) + 1))[:size]


def peak_rss_kib() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def current_rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


# ---------------------------------------------------------------- worker


async def run_worker(op: str, size: int, rounds: int) -> dict:
    import aiocoap
    from aiocoap import resource

    body = make_body(size)

    class Blob(resource.Resource):
        def __init__(self):
            super().__init__()
            self.content = body
            self.last_put = b""

        async def render_get(self, request):
            return aiocoap.Message(payload=self.content)

        async def render_put(self, request):
            self.last_put = request.payload
            return aiocoap.Message(code=aiocoap.CHANGED)

    blob = Blob()
    site = resource.Site()
    site.add_resource(["blob"], blob)
    for attempt in range(5):
        port = free_port()
        try:
            server = await aiocoap.Context.create_server_context(site, bind=(HOST, port))
            break
        except OSError:
            if attempt == 4:
                raise
    blockwise = getattr(server, "blockwise", None)
    if hasattr(blockwise, "max_body_size"):
        # ours refuses request bodies above 1 MiB by default
        blockwise.max_body_size = max(blockwise.max_body_size, size)
    client = await aiocoap.Context.create_client_context()
    uri = f"coap://{HOST}:{port}/blob"
    baseline = current_rss_kib()

    async def once() -> tuple:
        start = time.perf_counter()
        cpu = time.process_time()
        if op == "get":
            request = aiocoap.Message(code=aiocoap.GET, uri=uri, block2=(0, False, 6))
            response = await client.request(request).response
            elapsed = time.perf_counter() - start, time.process_time() - cpu
            if response.code != aiocoap.CONTENT or response.payload != body:
                raise RuntimeError(f"GET failed: {response.code}, {len(response.payload)} bytes")
        else:
            request = aiocoap.Message(code=aiocoap.PUT, uri=uri, payload=body, block1=(0, False, 6))
            response = await client.request(request).response
            elapsed = time.perf_counter() - start, time.process_time() - cpu
            if response.code != aiocoap.CHANGED or blob.last_put != body:
                raise RuntimeError(f"PUT failed: {response.code}, {len(blob.last_put)} bytes arrived")
            blob.last_put = b""
        return elapsed

    try:
        await once()  # warm-up
        measured = [await once() for _ in range(rounds)]
    finally:
        await client.shutdown()
        await server.shutdown()
    return {
        "library": aiocoap.__file__,
        "version": getattr(getattr(aiocoap, "meta", None), "version", "?"),
        "op": op,
        "size": size,
        "times": [wall for wall, _ in measured],
        "cpu_times": [cpu for _, cpu in measured],
        "median_s": statistics.median(wall for wall, _ in measured),
        "best_s": min(wall for wall, _ in measured),
        "cpu_s": statistics.median(cpu for _, cpu in measured),
        "baseline_rss_kib": baseline,
        "peak_rss_kib": peak_rss_kib(),
    }


def worker_main(op: str, size: int, rounds: int) -> None:
    import asyncio

    import aiocoap.meta  # noqa: F401  (version for the report)

    result = asyncio.run(run_worker(op, size, rounds))
    print(json.dumps(result))


# ---------------------------------------------------------------- driver


def spawn(which: str, op: str, size: int, rounds: int, timeout: float) -> dict:
    args = ["--worker", op, "--size", str(size), "--rounds", str(rounds)]
    if which == "ours":
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        argv = [sys.executable, str(HERE / "bench_blockwise.py"), *args]
        cwd = str(REPO)
        tmp = None
    else:
        tmp = tempfile.mkdtemp(prefix="aiocoap-ref-blockwise-")
        shutil.copy(HERE / "bench_blockwise.py", tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        from _reference import reference_python  # the driver runs from this directory

        argv = [reference_python(), "-I", str(Path(tmp) / "bench_blockwise.py"), *args]
        cwd = tmp
    try:
        done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, timeout=timeout)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    if done.returncode != 0:
        raise RuntimeError(f"{which} {op} worker failed:\n{done.stderr.decode(errors='replace')}")
    result = json.loads(done.stdout.decode().strip().splitlines()[-1])
    inside = str(Path(result["library"]).resolve()).startswith(str(REPO))
    if inside != (which == "ours"):
        raise RuntimeError(f"{which} imported the wrong aiocoap: {result['library']}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", choices=["get", "put"], help="run one measurement in this process")
    parser.add_argument("--size", type=int, default=1 << 20, help="body size in bytes (default 1 MiB)")
    parser.add_argument("--rounds", type=int, default=5, help="timed transfers per measurement (default 5)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds a worker may take")
    parser.add_argument("--only", choices=["ours", "theirs"], help="measure one library only")
    parser.add_argument("--json-out", type=Path, help="also write all results to this file")
    args = parser.parse_args()

    if args.worker:
        worker_main(args.worker, args.size, args.rounds)
        return

    sides = [args.only] if args.only else ["ours", "theirs"]
    if "theirs" in sides:
        from _reference import reference_python

        reference_python()  # made now, not inside a timed worker
    results = {}
    for op in ("get", "put"):
        for which in sides:
            results[(which, op)] = spawn(which, op, args.size, args.rounds, args.timeout)

    mib = args.size / (1 << 20)
    print(f"Blockwise transfer of {args.size} bytes ({mib:g} MiB) at block size 1024 over loopback UDP,")
    print(f"{args.rounds} rounds after one warm-up; client and server in one process; CPU s is the")
    print("process's user+system time per transfer (least disturbed by other load on the machine).")
    print()
    print(f"{'':4} {'library':>18} {'median s':>9} {'best s':>8} {'CPU s':>7} {'MiB/s':>7} {'peak RSS':>9} {'growth':>8}")
    for op in ("get", "put"):
        for which in sides:
            r = results[(which, op)]
            growth = (r["peak_rss_kib"] - r["baseline_rss_kib"]) / 1024
            print(
                f"{op.upper():4} {which + ' ' + r['version']:>18} {r['median_s']:9.3f} {r['best_s']:8.3f} "
                f"{r['cpu_s']:7.3f} {mib / r['median_s']:7.2f} {r['peak_rss_kib'] / 1024:6.1f}MiB {growth:5.1f}MiB"
            )
    if len(sides) == 2:
        print()
        print("speed-up ours over theirs (target >= 3x), and peak RSS theirs/ours:")
        for op in ("get", "put"):
            ours, theirs = results[("ours", op)], results[("theirs", op)]
            print(
                f"{op.upper():4} median wall {theirs['median_s'] / ours['median_s']:.1f}x, "
                f"best wall {theirs['best_s'] / ours['best_s']:.1f}x, CPU {theirs['cpu_s'] / ours['cpu_s']:.1f}x; "
                f"peak RSS {theirs['peak_rss_kib'] / ours['peak_rss_kib']:.2f}, "
                f"RSS growth {(theirs['peak_rss_kib'] - theirs['baseline_rss_kib']) / max(1, ours['peak_rss_kib'] - ours['baseline_rss_kib']):.1f}"
            )
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps({f"{w}-{o}": r for (w, o), r in results.items()}, indent=2))


if __name__ == "__main__":
    main()
