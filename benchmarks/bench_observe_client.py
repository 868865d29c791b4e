#!/usr/bin/env python3
"""Client memory per established observation (RFC 7641), for this tree and
for the reference aiocoap 0.4.17, in one run.

Three kinds of process take part, all on loopback UDP:

* the **server** (``--role server``): a server of *this* tree (the same
  for both clients) with one ``ObservableResource`` at ``/obs``; its cap on
  observations per peer is raised, as all of them come from one socket.
* the **client** (``--role client``): one client context of the library
  under test establishes one observation (warm-up: lazily created tables,
  caches), then ``--count`` more and then as many again (GET with Observe:
  0 through ``Context.request``, at most 64 registrations in flight, each
  awaited until its first response; the application keeps every request
  object, as it would to read the notifications). After each batch it
  collects garbage and measures what the batch added: in one run the
  resident set size (``VmRSS``), in another the Python heap
  (``tracemalloc``, started after the warm-up: everything allocated and
  still alive; tracing costs memory of its own, which is why the RSS is
  measured in a run without it). It prints one JSON line.
* the **driver** (no ``--role``; does not import aiocoap): starts the
  server, runs the client under this tree (``python3`` with the repository
  on ``PYTHONPATH``) and under the reference (the interpreter of
  ``_reference.py`` with ``-I`` on a copy of this script in an empty
  temporary directory, so this tree can not be imported; the client reports
  which aiocoap it imported and the driver refuses a wrong one), and prints
  bytes per observation and the ratio.

The figures that count are those of the second batch (marginal: one-time
costs of the first are left out): RSS, which is what the process costs, and
the heap, which is steadier (the allocator's arenas make the RSS move in
steps). It includes what the
message layer keeps of each registration exchange for deduplication, as
any client holding freshly registered observations does.

    python3 benchmarks/bench_observe_client.py             # ours and theirs, 1000 + 1000
    python3 benchmarks/bench_observe_client.py --only ours --count 2000 --json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
HOST = "127.0.0.1"

sys.path.insert(0, str(HERE))
from bench_server import library_info  # noqa: E402  (which aiocoap a process imported)

# What a copy of this script needs next to it (for the reference run)
_COMPANIONS = ("bench_server.py", "_servers.py", "loadgen.py", "_reference.py")


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def serve(port: int) -> None:
    import asyncio

    import aiocoap
    import aiocoap.resource as resource

    class Observed(resource.ObservableResource):
        async def render_get(self, request):
            return aiocoap.Message(payload=b"0")

    async def main() -> None:
        site = resource.Site()
        site.add_resource(["obs"], Observed())
        context = await aiocoap.Context.create_server_context(site, bind=(HOST, port))
        context.max_observations_per_peer = 1 << 20
        print(json.dumps({"ready": True}), flush=True)
        try:
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        finally:
            await context.shutdown()

    asyncio.run(main())


def client(port: int, count: int, measure: str) -> None:
    import asyncio
    import gc
    import tracemalloc

    import aiocoap

    uri = f"coap://{HOST}:{port}/obs"
    heap = measure == "heap"

    def used() -> int:
        return tracemalloc.get_traced_memory()[0] if heap else rss_bytes()

    async def main() -> dict:
        context = await aiocoap.Context.create_client_context()
        kept = []
        in_flight = asyncio.Semaphore(64)

        async def register() -> None:
            async with in_flight:
                request = context.request(aiocoap.Message(code=aiocoap.GET, uri=uri, observe=0))
                response = await asyncio.wait_for(request.response, 30)
                if not response.code.is_successful() or response.opt.observe is None:
                    raise RuntimeError(f"registration failed: {response}")
                kept.append(request)

        async def batch(n: int) -> float:
            gc.collect()
            before = used()
            await asyncio.gather(*(register() for _ in range(n)))
            await asyncio.sleep(0.2)  # (late ACKs and retransmissions settle)
            gc.collect()
            return (used() - before) / n

        try:
            await register()  # warm-up
            if heap:
                tracemalloc.start()
            first = await batch(count)
            second = await batch(count)
            return {
                **library_info(),
                "observations": len(kept),
                "measure": measure,
                "bytes_per_observation": {"first": first, "second": second},
            }
        finally:
            await context.shutdown()

    print(json.dumps(asyncio.run(main())), flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def run_client(which: str, port: int, count: int, workdir: str, measure: str) -> dict:
    if which == "ours":
        argv = [sys.executable, str(Path(__file__).resolve())]
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        cwd = str(REPO)
    else:
        import _reference

        script = Path(workdir) / Path(__file__).name
        shutil.copy(__file__, script)
        for companion in _COMPANIONS:
            shutil.copy(HERE / companion, Path(workdir) / companion)
        argv = [_reference.reference_python(), "-I", str(script)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        cwd = workdir
    done = subprocess.run(
        argv + ["--role", "client", "--port", str(port), "--count", str(count), "--measure", measure],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
    )
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1:] or done.returncode}
    result = json.loads(done.stdout.strip().splitlines()[-1])
    imported_ours = Path(result["library"]).resolve().parent == REPO
    if imported_ours != (which == "ours"):
        raise SystemExit(f"{which} imported the wrong aiocoap: {result['library']}")
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--role", choices=("server", "client"))
    parser.add_argument("--port", type=int)
    parser.add_argument("--count", type=int, default=1000, help="observations per batch (two batches)")
    parser.add_argument("--only", choices=("ours", "theirs"))
    parser.add_argument("--measure", choices=("rss", "heap"), default="rss", help="(client role)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.role == "server":
        serve(args.port)
        return 0
    if args.role == "client":
        client(args.port, args.count, args.measure)
        return 0

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--role", "server", "--port", str(port)],
        env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=str(REPO),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        if json.loads(server.stdout.readline()).get("ready") is not True:
            raise SystemExit("server did not start")
        results = {}
        with tempfile.TemporaryDirectory() as workdir:
            for which in ("ours", "theirs"):
                if args.only in (None, which):
                    results[which] = {
                        measure: run_client(which, port, args.count, workdir, measure)
                        for measure in ("rss", "heap")
                    }
    finally:
        server.stdin.close()
        server.wait(timeout=30)
    if args.json:
        print(json.dumps(results))
        return 0
    print(f"client memory per observation ({args.count} + {args.count} observations, one context):")
    figures = {}
    for which, runs in results.items():
        failed = [r["error"] for r in runs.values() if "error" in r]
        if failed:
            print(f"  {which}: failed: {failed[0]}")
            continue
        rss, heap = runs["rss"]["bytes_per_observation"], runs["heap"]["bytes_per_observation"]
        figures[which] = (rss["second"], heap["second"])
        print(f"  {which} ({runs['rss']['meta_version']}): RSS {rss['second']:,.0f} B (first batch {rss['first']:,.0f}), "
              f"heap {heap['second']:,.0f} B (first batch {heap['first']:,.0f})")
    if len(figures) == 2:
        (ours_rss, ours_heap), (theirs_rss, theirs_heap) = figures["ours"], figures["theirs"]
        print(f"  ours / theirs: RSS {ours_rss / theirs_rss:.2f}, heap {ours_heap / theirs_heap:.2f} "
              "(target: ours <= 3 KB per observation)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
