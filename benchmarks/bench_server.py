#!/usr/bin/env python3
"""Server throughput: how many GET requests per second an aiocoap server
answers, and at which latency, under the closed-loop load of loadgen.py.

The server is whichever ``aiocoap`` this interpreter imports (this tree when
it is on ``sys.path``, else an installed one), started as a subprocess of
this script (``--serve``) with a single trivial resource: ``GET /bench``
answers a fixed 33-byte payload. The load generator runs in this process,
from raw sockets, first with CON and then with NON requests. With
``--libcoap`` the same load is also put on libcoap's ``coap-server-notls``
as a yardstick (``--only-libcoap`` measures that alone, without importing
aiocoap anywhere).

    python3 benchmarks/bench_server.py --duration 5 --json

Besides loadgen's figures (``requests_per_s``, ``latency_ms_p50/p99``,
``lost``, ...), each run reports ``server_cpu_us_per_request``: the server
process's CPU time divided by the requests it got, which is less sensitive
to other load on the machine than the rate. Only the public aiocoap API is
used, so the same script measures any implementation of it (see
run_core.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _servers  # noqa: E402
import loadgen  # noqa: E402


def library_info() -> dict:
    """Which aiocoap this process imported, and the NSTART it obeys by
    default (``TransportTuning().NSTART``: how many confirmable exchanges
    its message layer keeps outstanding per peer)."""
    import importlib.metadata

    import aiocoap
    import aiocoap.meta
    from aiocoap.numbers.constants import TransportTuning

    try:
        dist_version = importlib.metadata.version("aiocoap")
    except importlib.metadata.PackageNotFoundError:
        dist_version = None
    return {
        "library": str(Path(aiocoap.__file__).resolve().parent),
        "meta_version": getattr(aiocoap.meta, "version", None),
        "dist_version": dist_version,
        "python": sys.version.split()[0],
        "nstart": TransportTuning().NSTART,
    }


def serve(host: str, port: int, loop_name: str) -> None:
    """Serve ``GET /bench`` until SIGTERM / SIGINT; print one JSON line (the
    library info) once listening."""
    import aiocoap
    import aiocoap.resource as resource

    class Fixed(resource.Resource):
        async def render_get(self, request):
            return aiocoap.Message(payload=_servers.PAYLOAD)

    async def main() -> None:
        site = resource.Site()
        site.add_resource(tuple(_servers.PATH.strip("/").split("/")), Fixed())
        context = await aiocoap.Context.create_server_context(site, bind=(host, port))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        info = library_info()
        info["loop"] = type(loop).__module__
        print(json.dumps(info), flush=True)
        await stop.wait()
        await context.shutdown()

    if loop_name == "uvloop":
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--host", default=_servers.HOST)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio",
                        help="event loop of the aiocoap server (default asyncio)")
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--window", type=int, default=32, help="requests in flight")
    parser.add_argument("--sockets", type=int, default=4, help="client sockets")
    parser.add_argument("--timeout", type=float, default=1.0, help="seconds until a request is lost")
    parser.add_argument("--types", default="CON,NON", help="message types to measure")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--libcoap", action="store_true", help="also measure libcoap's server")
    group.add_argument("--only-libcoap", action="store_true", help="measure only libcoap's server")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    if args.serve:
        serve(args.host, args.port, args.loop)
        return

    types = [t.strip().upper() for t in args.types.split(",") if t.strip()]
    load = dict(duration=args.duration, window=args.window, sockets=args.sockets,
                timeout=args.timeout, warmup=args.warmup)
    report: dict = {"load": dict(load, path=_servers.PATH, payload_bytes=len(_servers.PAYLOAD))}

    if not args.only_libcoap:
        with _servers.start_aiocoap_server(host=args.host, loop=args.loop) as server:
            report["library"] = server.info
            report["server"] = _servers.measure(server, types, **load)
    if args.libcoap or args.only_libcoap:
        if _servers.libcoap_server_binary() is None:
            report["libcoap"] = {"skipped": "coap-server-notls not installed"}
        else:
            with _servers.start_libcoap_server(args.host) as server:
                report["libcoap"] = _servers.measure(server, types, **load)

    if args.json:
        print(json.dumps(report))
        return
    if "library" in report:
        print(f"aiocoap from {report['library']['library']} "
              f"(version {report['library']['dist_version'] or report['library']['meta_version']})")
        for result in report["server"].values():
            print("  " + loadgen.format_result(result))
    if "libcoap" in report:
        print("libcoap coap-server-notls")
        for result in report["libcoap"].values():
            print("  " + (loadgen.format_result(result) if "type" in result else str(result)))


if __name__ == "__main__":
    main()
