#!/usr/bin/env python3
"""Multi-core scaling: requests/s of one server port served by 1 and by 2
worker processes (aiocoap.workers, SO_REUSEPORT).

The server is this tree's aiocoap, started as a subprocess (``--serve``)
that runs ``aiocoap.workers.ServerWorkers`` with the benchmark resource
(``GET /bench``, 33 bytes, as bench_server.py). loadgen.py puts the load on
it from many client sockets (the kernel spreads peers over the workers by
their address and port, so a handful of sockets would not spread evenly),
from ``--procs`` processes. Each worker count is measured ``--rounds``
times, alternating, and the best round counts. Reported per worker count:
requests/s, latency, losses, and the CPU time all workers together used
per request.

    python3 benchmarks/bench_workers.py --duration 5 --rounds 3

aiocoap 0.4.17 has no equivalent (its issue #73), so there is no reference
run; the goal is a ratio of at least 1.7 between 2 workers and 1 on two
cores. The load generator needs CPU too (reported per request next to the
server's): on a machine with two cores it shares them with the workers, and
so does anything else that runs at the time, so compare rounds of one run.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _servers  # noqa: E402
import loadgen  # noqa: E402


def make_site():
    """The benchmark site (module level, so every start method can use it)."""
    import aiocoap
    import aiocoap.resource as resource

    class Fixed(resource.Resource):
        async def render_get(self, request):
            return aiocoap.Message(payload=_servers.PAYLOAD)

    site = resource.Site()
    site.add_resource(tuple(_servers.PATH.strip("/").split("/")), Fixed())
    return site


def serve(host: str, port: int, workers: int) -> None:
    """Serve with ``workers`` processes until SIGTERM / SIGINT; print one
    JSON line with the workers' process IDs once they all listen."""
    from aiocoap.workers import ServerWorkers

    group = ServerWorkers(make_site, (host, port), workers, transports=["udp6"])
    stopping = []

    def on_signal(signum, frame):
        stopping.append(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with group:
        print(json.dumps({"pids": group.pids, "port": group.port}), flush=True)
        while not stopping:
            signal.pause()


def workers_cpu_seconds(pids) -> float:
    total = 0.0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _own_cpu_seconds() -> float:
    """CPU time of this process and its finished children (the load
    generator's processes with --procs)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def measure(workers: int, mtype: str, load: dict, host: str) -> dict:
    python, env, cwd = _servers.ours_env()
    port = _servers.free_port(host)
    argv = [python, str(Path(__file__).resolve()), "--serve", "--host", host, "--port", str(port),
            "--workers", str(workers)]
    with _servers.start_process(f"workers-{workers}", argv, env, cwd, host, port, True, 30.0) as server:
        pids = server.info["pids"]
        before = workers_cpu_seconds(pids)
        load_before = _own_cpu_seconds()
        result = loadgen.run(host, port, _servers.PATH, mtype, **load)
        load_cpu = _own_cpu_seconds() - load_before
        cpu = workers_cpu_seconds(pids) - before
    if result["sent"]:
        result["server_cpu_us_per_request"] = cpu / result["sent"] * 1e6
        result["loadgen_cpu_us_per_request"] = load_cpu / result["sent"] * 1e6
    result["server_cpu_s"] = cpu
    result["workers"] = workers
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--host", default=_servers.HOST)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=2, help="(with --serve) worker processes")
    parser.add_argument("--counts", default="1,2", help="worker counts to measure (default 1,2)")
    parser.add_argument("--type", default="NON", choices=("CON", "NON"), help="request type (default NON)")
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3, help="runs per worker count; the best counts")
    parser.add_argument("--window", type=int, default=128, help="requests in flight")
    parser.add_argument("--sockets", type=int, default=64, help="client sockets")
    parser.add_argument("--procs", type=int, default=1, help="load generator processes")
    parser.add_argument("--timeout", type=float, default=1.0, help="seconds until a request is lost")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    if args.serve:
        serve(args.host, args.port, args.workers)
        return

    counts = [int(c) for c in args.counts.split(",")]
    load = dict(duration=args.duration, warmup=args.warmup, window=args.window, sockets=args.sockets,
                timeout=args.timeout, procs=args.procs)
    runs: dict = {n: [] for n in counts}
    for _ in range(args.rounds):
        for n in counts:
            runs[n].append(measure(n, args.type, load, args.host))
    best = {n: max(results, key=lambda r: r["requests_per_s"]) for n, results in runs.items()}
    report = {"load": dict(load, type=args.type, path=_servers.PATH), "best": best,
              "all_rates": {n: [round(r["requests_per_s"]) for r in results] for n, results in runs.items()}}
    if 1 in best and len(best) > 1:
        report["ratios"] = {n: best[n]["requests_per_s"] / best[1]["requests_per_s"] for n in best if n != 1}
    if args.json:
        print(json.dumps(report))
        return
    for n, result in best.items():
        print(f"{n} worker(s): " + loadgen.format_result(result)
              + f", server CPU {result.get('server_cpu_us_per_request', float('nan')):.1f} us/req"
              + f", load generator CPU {result.get('loadgen_cpu_us_per_request', float('nan')):.1f} us/req"
              + f" (all rounds: {report['all_rates'][n]})")
    for n, ratio in report.get("ratios", {}).items():
        print(f"{n} workers / 1 worker: {ratio:.2f}x")


if __name__ == "__main__":
    main()
