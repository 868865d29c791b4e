#!/usr/bin/env python3
"""The ceiling of any pure-asyncio CoAP server on this machine.

A bare :class:`asyncio.DatagramProtocol` answers every datagram with a fixed
response (2.05 Content carrying the benchmark payload), copying only the
message ID and token so that loadgen.py can match it: ACK to a CON, NON to
a NON. No parsing, no state, no CoAP library -- the event loop's datagram
path plus one ``sendto`` per request. A server's rate as a fraction of this
one is how much of the loop's capacity it leaves unused.

    python3 benchmarks/bench_echo_ceiling.py --duration 5 --json

It runs the echo server in a subprocess (``--serve``) and the load in this
process, exactly as bench_server.py does for aiocoap servers. Does not import
aiocoap.
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


class FixedReply(asyncio.DatagramProtocol):
    """Answers each datagram that looks like a CoAP request."""

    def __init__(self, payload: bytes):
        self.tail = b"\xff" + payload
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        if len(data) < 4:
            return
        first = data[0]
        tkl = first & 0x0F
        # 0x60: version 1, ACK; 0x50: version 1, NON -- then 0x45 = 2.05
        head = (0x60 if first & 0x30 == 0 else 0x50) | tkl
        self.transport.sendto(bytes((head, 0x45)) + data[2:4 + tkl] + self.tail, addr)


def serve(host: str, port: int, loop_name: str) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: FixedReply(_servers.PAYLOAD), local_addr=(host, port)
        )
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        print(json.dumps({"library": "asyncio DatagramProtocol", "loop": type(loop).__module__}),
              flush=True)
        await stop.wait()
        transport.close()

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
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument("--sockets", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=1.0)
    parser.add_argument("--types", default="CON,NON")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    if args.serve:
        serve(args.host, args.port, args.loop)
        return

    load = dict(duration=args.duration, window=args.window, sockets=args.sockets,
                timeout=args.timeout, warmup=args.warmup)
    types = [t.strip().upper() for t in args.types.split(",") if t.strip()]
    with _servers.start_echo_server(host=args.host, loop=args.loop) as server:
        report = {"load": load, "library": server.info,
                  "server": _servers.measure(server, types, **load)}
    if args.json:
        print(json.dumps(report))
    else:
        print(f"echo ceiling ({server.info['loop']})")
        for result in report["server"].values():
            print("  " + loadgen.format_result(result))


if __name__ == "__main__":
    main()
