#!/usr/bin/env python3
"""What one block of a file server download costs in this tree's Python
code, without the socket wakeups around it: the instrument for speed work
on the file server's path, where `bench_fileserver.py` shows the sum of
everything and moves by tens of percent from one run to the next on a
shared or virtual machine.

A file server (``aiocoap.cli.fileserver.FileServer``) runs in this process
behind a server context on a loopback UDP port. Block requests of a
download (CON GET /big.bin, Block2 szx 6, the same bytes a client sends)
are handed to the UDP transport's protocol object the way the transport
hands it a received datagram (``datagram_msg_received``), one after the
other, so that each runs the whole path: decode, message and token layers,
the Context's render, the file read, encode, and the ``sendmsg`` of the
response to a socket of this process (which is drained now and then).
Nothing else runs meanwhile: no event loop turn, no wakeup.

Two figures:

* microseconds per block (wall time, best of ``--repeats``): still at the
  mercy of the machine's speed, but free of the scheduling noise;
* with ``--callgrind``: instructions per block, counted by valgrind's
  callgrind (user space only: the system calls' kernel part is not in
  it), as the difference between runs of ``--blocks`` and three times as
  many, so that start-up drops out (building the requests, a few hundred
  instructions each, stays in). Repeatable within about one percent
  whatever else the machine does; a run takes about half a minute.

This measures our library only (aiocoap 0.4.17 has no such path to hand
datagrams to); the comparison with it is ``bench_fileserver.py``.

    python3 benchmarks/profile_fileserver_path.py
    python3 benchmarks/profile_fileserver_path.py --blocks 50000 --repeats 5
    python3 benchmarks/profile_fileserver_path.py --callgrind
    python3 benchmarks/profile_fileserver_path.py --cprofile /tmp/path.prof
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # (this tree's aiocoap)
sys.path.insert(0, str(HERE))
import loadgen  # noqa: E402  (a sibling module)
from bench_fileserver import BLOCK_SZX, CONTENT, ECHO, block_request as encode_block_request, options_and_payload  # noqa: E402

FILE_SIZE = 1 << 20
BLOCKS_IN_FILE = FILE_SIZE >> (BLOCK_SZX + 4)
DRAIN_EVERY = 64
TOKEN = 0x12345678


_URI_PATH = loadgen.encode_uri_path("/big.bin")
# (the requests of all blocks of the file, encoded once without message
# IDs: building them is part of what --callgrind counts, so it should
# cost little)
_BLOCK_REQUESTS = [encode_block_request(0, TOKEN, _URI_PATH, number) for number in range(BLOCKS_IN_FILE)]


def block_request(mid: int, number: int, echo: bytes | None = None) -> bytes:
    """The datagram of a client asking for block ``number`` of /big.bin."""
    if echo is not None:
        return encode_block_request(mid & 0xFFFF, TOKEN, _URI_PATH, number, echo)
    template = _BLOCK_REQUESTS[number]
    return template[:2] + (mid & 0xFFFF).to_bytes(2, "big") + template[4:]


async def measure(root: Path, blocks: int, repeats: int, profile_to: str | None) -> float:
    """Microseconds per block, best of ``repeats`` runs of ``blocks`` (each
    with a server of its own, so that no run meets the replies its
    predecessors left in the deduplication cache)."""
    best = float("inf")
    for repeat in range(repeats):
        profile = profile_to if repeat == repeats - 1 else None
        best = min(best, await measure_once(root, blocks, profile))
    return best


async def measure_once(root: Path, blocks: int, profile_to: str | None) -> float:
    import aiocoap
    from aiocoap.cli.fileserver import FileServer

    site = FileServer(root)
    context = await aiocoap.Context.create_server_context(site, bind=("127.0.0.1", 0), transports=["udp6"])
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sink.bind(("127.0.0.1", 0))
        sink.setblocking(False)
        # (the server's udp6 socket is a dual-stack IPv6 one)
        client_address = ("::ffff:127.0.0.1", sink.getsockname()[1], 0, 0)
        deliver = _udp_protocol(context).datagram_msg_received

        def drain() -> bytes | None:
            last = None
            while True:
                try:
                    last = sink.recv(4096)
                except BlockingIOError:
                    return last

        # The first block: an address the server has not seen gets a 4.01
        # with an Echo value (amplification limit, RFC 9175), which the
        # second request repeats, as any client does.
        deliver(block_request(1, 0), [], 0, client_address)
        await asyncio.sleep(0.05)
        answer = drain()
        if answer is None:
            raise RuntimeError("the file server did not answer the first block")
        options, _ = options_and_payload(answer)
        deliver(block_request(2, 0, options.get(ECHO)), [], 0, client_address)
        await asyncio.sleep(0.05)
        drain()

        requests = [block_request(3 + i, i % BLOCKS_IN_FILE) for i in range(blocks)]
        profiler = cProfile.Profile() if profile_to else None
        if profiler is not None:
            profiler.enable()
        start = time.perf_counter()
        for i, request in enumerate(requests):
            deliver(request, [], 0, client_address)
            if i % DRAIN_EVERY == DRAIN_EVERY - 1:
                drain()
        elapsed = time.perf_counter() - start
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(profile_to)
        last = drain()
        if last is None or last[1] != CONTENT:
            raise RuntimeError(f"the last block was not answered with 2.05: {last!r}")
        return elapsed / blocks * 1e6
    finally:
        sink.close()
        await context.shutdown()
        await site.shutdown()


def _udp_protocol(context):
    """The udp6 transport's protocol object of a server context (public
    attributes all the way)."""
    for request_interface in context.request_interfaces:
        for token_interface in getattr(request_interface, "token_interfaces", ()):
            interface = getattr(token_interface, "message_interface", None)
            if hasattr(interface, "datagram_msg_received"):
                return interface
    raise RuntimeError("no udp6 transport in the context")


def make_file(root: Path) -> None:
    (root / "big.bin").write_bytes(os.urandom(FILE_SIZE))


def callgrind_instructions(blocks: int) -> int:
    """Instructions of a run of this script measuring ``blocks`` blocks once."""
    if shutil.which("valgrind") is None:
        raise SystemExit("--callgrind needs valgrind (Debian package valgrind)")
    with tempfile.TemporaryDirectory(prefix="profile-path-") as scratch:
        out = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={scratch}/out", sys.executable,
             __file__, "--blocks", str(blocks), "--repeats", "1"],
            capture_output=True, text=True, timeout=1200,
        )
    found = re.search(r"Collected\s*:\s*(\d+)|I\s+refs:\s+([\d,]+)", out.stderr)
    if out.returncode != 0 or found is None:
        raise RuntimeError(f"valgrind failed ({out.returncode}):\n{out.stderr[-2000:]}")
    return int((found.group(1) or found.group(2)).replace(",", ""))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--blocks", type=int, help="blocks per run (default 20000, with --callgrind 1000)")
    parser.add_argument("--repeats", type=int, default=3, help="runs (the best counts)")
    parser.add_argument("--callgrind", action="store_true",
                        help="count instructions per block under valgrind instead (--blocks 1000 by default)")
    parser.add_argument("--cprofile", metavar="FILE", help="write a cProfile of the last run to FILE")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    if args.callgrind:
        blocks = args.blocks or 1000
        small, large = callgrind_instructions(blocks), callgrind_instructions(3 * blocks)
        per_block = (large - small) / (2 * blocks)
        report = {"instructions_per_block": round(per_block), "blocks": blocks}
        print(json.dumps(report) if args.json else f"{per_block:,.0f} instructions per block (callgrind, user space)")
        return

    blocks = args.blocks or 20000
    root = Path(tempfile.mkdtemp(prefix="profile-path-"))
    try:
        make_file(root)
        micros = asyncio.run(measure(root, blocks, args.repeats, args.cprofile))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    report = {"us_per_block": round(micros, 2), "blocks": blocks, "repeats": args.repeats}
    print(json.dumps(report) if args.json else f"{micros:.2f} us per block (best of {args.repeats} x {blocks})")


if __name__ == "__main__":
    main()
