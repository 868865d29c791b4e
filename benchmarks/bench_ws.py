#!/usr/bin/env python3
"""CoAP over WebSockets (RFC 8323 §4) speed of this tree's aiocoap against
the reference aiocoap, both ends of each pair run by the same
implementation in separate processes on loopback (the server bound to
127.0.0.1:P with only the ``ws`` transport, so both listen on P + 3000):

* ``window``: requests per second over one WebSocket with ``--window``
  (16) GETs of a 33-byte resource in flight for ``--duration`` seconds;
* ``bert``: ``--mib-rounds`` GETs of a 1 MiB resource, reported as MiB/s.

The resources, the CPU accounting and the port wait are those of
``bench_tcp.py``. Run from anywhere::

    python3 benchmarks/bench_ws.py                     # ours and theirs, ratios
    python3 benchmarks/bench_ws.py --only ours --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_tcp import MIB, _cpu_seconds  # noqa: E402
from bench_tcp import _site as _tcp_site  # noqa: E402

WS_PORT_OFFSET = 3000  # where aiocoap (both) puts WebSockets next to a bound port


def _site():
    """bench_tcp.py's resources (without its trace resource)."""
    return _tcp_site(False)


def _cpu_both(server_pid: int) -> float:
    """CPU seconds used so far by this process and the server."""
    return time.process_time() + _cpu_seconds(server_pid)


def _wait_for_port(port: int, process: subprocess.Popen, timeout: float = 30.0) -> None:
    """Wait until something accepts connections on ``port`` of 127.0.0.1."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on port {port} after {timeout:g} s")


async def _serve(port: int) -> None:
    import aiocoap

    context = await aiocoap.Context.create_server_context(_site(), bind=("127.0.0.1", port), transports=["ws"])
    print("ready", flush=True)
    try:
        await asyncio.get_running_loop().create_future()
    finally:
        await context.shutdown()


async def _in_flight(get, window: int, duration: float) -> int:
    """How many GETs of /bench ``window`` workers complete in ``duration``."""
    done = 0
    stop = time.perf_counter() + duration

    async def worker():
        nonlocal done
        while time.perf_counter() < stop:
            await get("/bench")
            done += 1

    await asyncio.gather(*(worker() for _ in range(window)))
    return done


async def _timed(server_pid: int, work) -> tuple:
    """(result of ``await work()``, wall seconds, CPU seconds of both ends)"""
    cpu = _cpu_both(server_pid)
    started = time.perf_counter()
    result = await work()
    return result, time.perf_counter() - started, _cpu_both(server_pid) - cpu


async def _measure(port: int, server_pid: int, window: int, duration: float, mib_rounds: int) -> dict:
    import aiocoap

    context = await aiocoap.Context.create_client_context(transports=["ws"])
    base = f"coap+ws://127.0.0.1:{port + WS_PORT_OFFSET}"

    async def get(path):
        response = await context.request(aiocoap.Message(code=aiocoap.GET, uri=base + path)).response
        if response.code != aiocoap.CONTENT:
            raise RuntimeError(f"unexpected {response}")
        return response

    async def mib_gets():
        for _ in range(mib_rounds):
            if len((await get("/mib")).payload) != MIB:
                raise RuntimeError("short 1 MiB body")

    try:
        for _ in range(200):
            await get("/bench")
        done, seconds, cpu = await _timed(server_pid, lambda: _in_flight(get, window, duration))
        window_result = {"in_flight": window, "requests": done, "seconds": seconds,
                         "requests_per_s": done / seconds, "cpu_us_per_request": cpu / done * 1e6}
        first = await get("/mib")
        _, seconds, cpu = await _timed(server_pid, mib_gets)
        bert_result = {"rounds": mib_rounds, "seconds": seconds, "mib_per_s": mib_rounds / seconds,
                       "cpu_ms_per_mib": cpu / mib_rounds * 1e3,
                       "block_size_exp": getattr(first.remote, "maximum_block_size_exp", None)}
        return {"window": window_result, "bert": bert_result}
    finally:
        await context.shutdown()


def run_pair(name: str, args) -> dict:
    """Start the server of implementation ``name`` (``ours`` or
    ``theirs``), run the client against it, and return what it measured."""
    import tempfile

    import _servers

    python, env, cwd = _servers.ours_env() if name == "ours" else _servers.theirs_env(args.ref_python)
    port = _servers.free_port()
    script = str(Path(__file__).resolve())
    with tempfile.NamedTemporaryFile(prefix=f"bench-ws-{name}-", suffix=".log", delete=False) as log:
        process = subprocess.Popen([python, script, "--serve", str(port)], env=env, cwd=cwd,
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
    with _servers.ServerProcess(name, process, "127.0.0.1", port + WS_PORT_OFFSET, Path(log.name)) as server:
        _wait_for_port(server.port, process)
        options = {"--client": port, "--server-pid": process.pid, "--window": args.window,
                   "--duration": args.duration, "--mib-rounds": args.mib_rounds}
        argv = [python, script] + [str(item) for pair in options.items() for item in pair]
        client = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
        if client.returncode != 0:
            raise RuntimeError(f"{name} client failed:\n{client.stderr}\nserver:\n{server.log()}")
        return json.loads(client.stdout.strip().splitlines()[-1])


# (option, type, default, help) of the driver; --serve, --client and
# --server-pid are how it starts the two halves of a pair
_OPTIONS = [
    ("--rounds", int, 3, "alternating runs per implementation; the best of each is reported"),
    ("--window", int, 16, "requests in flight"),
    ("--duration", float, 4.0, "seconds of the window run"),
    ("--mib-rounds", int, 10, "1 MiB GETs"),
    ("--ref-python", str, None, "interpreter of the reference aiocoap"),
]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for option, kind, default, text in _OPTIONS:
        parser.add_argument(option, type=kind, default=default, help=text)
    for internal in ("--serve", "--client", "--server-pid"):
        parser.add_argument(internal, type=int, help=argparse.SUPPRESS)
    parser.add_argument("--only", choices=("ours", "theirs"), help="measure one implementation")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    if args.serve is not None:
        return asyncio.run(_serve(args.serve))
    if args.client is not None:
        print(json.dumps(asyncio.run(
            _measure(args.client, args.server_pid, args.window, args.duration, args.mib_rounds)
        )))
        return None

    names = [args.only] if args.only else ["ours", "theirs"]
    runs: dict = {name: [] for name in names}
    for _ in range(args.rounds):
        for name in names:
            runs[name].append(run_pair(name, args))
    best = {name: _best(results) for name, results in runs.items()}
    if args.json:
        print(json.dumps({"best": best, "runs": runs}))
        return
    for name, result in best.items():
        print(f"{name:6s}  {result['requests_per_s']:8,.0f} req/s with {args.window} in flight "
              f"({result['cpu_us_per_request']:5.0f} us CPU/request)   1 MiB GET: {result['mib_per_s']:6.1f} MiB/s "
              f"({result['cpu_ms_per_mib']:5.1f} ms CPU/MiB, block size exponent {result['block_size_exp']})")
    if len(best) == 2:
        ours, theirs = best["ours"], best["theirs"]
        print(f"ratio   {ours['requests_per_s'] / theirs['requests_per_s']:8.2f}x req/s (target >= 3x), "
              f"{theirs['cpu_us_per_request'] / ours['cpu_us_per_request']:.2f}x less CPU; "
              f"{ours['mib_per_s'] / theirs['mib_per_s']:.2f}x MiB/s, "
              f"{theirs['cpu_ms_per_mib'] / ours['cpu_ms_per_mib']:.2f}x less CPU")


def _best(results: list) -> dict:
    """The best figure of each kind over the runs of one implementation (the
    machine is shared: the best run is the least disturbed)."""
    return {
        "requests_per_s": max(r["window"]["requests_per_s"] for r in results),
        "cpu_us_per_request": min(r["window"]["cpu_us_per_request"] for r in results),
        "mib_per_s": max(r["bert"]["mib_per_s"] for r in results),
        "cpu_ms_per_mib": min(r["bert"]["cpu_ms_per_mib"] for r in results),
        "block_size_exp": results[0]["bert"]["block_size_exp"],
    }


if __name__ == "__main__":
    main()
