#!/usr/bin/env python3
"""Client speed of whichever ``aiocoap`` this interpreter imports, against
libcoap's ``coap-server-notls`` as a neutral, fast server.

* ``sequential``: one GET after the other (``await ctx.request(msg).response``
  in a loop), reported as requests per second of the best of ``--repeat``
  rounds, and the client's CPU time per request in that round;
* ``concurrent``: ``--concurrent`` GETs started at once and awaited with
  :func:`asyncio.gather`, reported as the time until all completed (best and
  median of ``--repeat`` rounds, on one client context). The client obeys
  congestion control: with NSTART (``TransportTuning().NSTART``, reported)
  at 1, one request at a time is on the wire and the others wait in the
  client's queue, so this is a figure of the client's queueing and of one
  endpoint's round trips, not of the server's capacity.

The server is started here (on a free loopback port, serving ``/bench``)
unless ``--uri`` names one. Only the public API is used (``Context.
create_client_context``, ``Message``, ``request().response``), so the same
script measures any implementation of it (see run_core.py).

    python3 benchmarks/bench_client.py --sequential 2000 --concurrent 1000 --json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _servers  # noqa: E402
from bench_server import library_info  # noqa: E402


async def run_benchmark(uri: str, sequential: int, concurrent: int, repeat: int,
                        timeout: float) -> dict:
    import aiocoap

    def get():
        return aiocoap.Message(code=aiocoap.GET, uri=uri)

    context = await aiocoap.Context.create_client_context()
    try:
        async def one():
            response = await asyncio.wait_for(context.request(get()).response, timeout)
            if response.code != aiocoap.CONTENT:
                raise RuntimeError(f"unexpected response {response}")
            return response

        for _ in range(50):  # warm up: caches, address resolution, JIT-less paths
            await one()

        seq_rounds = []
        for _ in range(repeat):
            cpu_started = time.process_time()
            started = time.perf_counter()
            for _ in range(sequential):
                await one()
            seq_rounds.append((time.perf_counter() - started, time.process_time() - cpu_started))
        best, best_cpu = min(seq_rounds)
        result = {
            "sequential": {
                "requests": sequential,
                "rounds_s": [wall for wall, _cpu in seq_rounds],
                "seconds": best,
                "requests_per_s": sequential / best,
                "median_requests_per_s": sequential / statistics.median(w for w, _c in seq_rounds),
                "mean_latency_ms": best / sequential * 1000,
                "cpu_us_per_request": best_cpu / sequential * 1e6,
            }
        }

        rounds = []
        failures = []
        for _ in range(repeat):
            started = time.perf_counter()
            outcomes = await asyncio.gather(*(one() for _ in range(concurrent)),
                                            return_exceptions=True)
            rounds.append(time.perf_counter() - started)
            errors = [o for o in outcomes if isinstance(o, BaseException)]
            failures.append(len(errors))
            if errors:
                result.setdefault("concurrent_errors", repr(errors[0]))
            # let the exchanges of this round settle before the next one
            await asyncio.sleep(0.2)
        result["concurrent"] = {
            "requests": concurrent,
            "rounds_s": rounds,
            "best_s": min(rounds),
            "median_s": statistics.median(rounds),
            "requests_per_s_best": concurrent / min(rounds),
            "failures": failures,
        }
        return result
    finally:
        await context.shutdown()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--uri", help="server resource to GET (default: start libcoap's server)")
    parser.add_argument("--sequential", type=int, default=2000, help="sequential GETs")
    parser.add_argument("--concurrent", type=int, default=1000, help="GETs in one gather")
    parser.add_argument("--repeat", type=int, default=3,
                        help="rounds of sequential and of concurrent GETs (best is reported)")
    parser.add_argument("--timeout", type=float, default=30.0, help="per request, seconds")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    with contextlib.ExitStack() as stack:
        uri = args.uri
        if uri is None:
            server = stack.enter_context(_servers.start_libcoap_server())
            uri = f"coap://{server.host}:{server.port}{server.path}"
        coroutine = run_benchmark(uri, args.sequential, args.concurrent, args.repeat, args.timeout)
        if args.loop == "uvloop":
            import uvloop

            result = uvloop.run(coroutine)
        else:
            result = asyncio.run(coroutine)
    report = {"library": library_info(), "server": uri if args.uri else "libcoap", **result}
    if args.json:
        print(json.dumps(report))
        return
    seq, conc = report["sequential"], report["concurrent"]
    print(f"aiocoap from {report['library']['library']} (NSTART {report['library']['nstart']})")
    print(f"  sequential: {seq['requests_per_s']:,.0f} GET/s "
          f"({seq['requests']} in {seq['seconds']:.2f} s, {seq['cpu_us_per_request']:.0f} us CPU each)")
    print(f"  {conc['requests']} concurrent from one endpoint: best {conc['best_s']:.3f} s, "
          f"median {conc['median_s']:.3f} s, failures {conc['failures']}")


if __name__ == "__main__":
    main()
