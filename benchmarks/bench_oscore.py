#!/usr/bin/env python3
"""OSCORE (RFC 8613) speed of this tree's aiocoap against the reference
aiocoap 0.4.17, each implementation talking to itself:

* ``roundtrip``: GETs per second of a 33-byte resource over UDP on
  loopback, client and server in separate processes, ``--window`` (10)
  requests in flight for ``--duration`` seconds; once plain and once
  OSCORE-protected (the client protects through its ``client_credentials``;
  our server through its ``server_credentials``, the reference one through
  its ``OscoreSiteWrapper`` put around the site by hand, as 0.4.17 does not
  do that by itself). Also the CPU time (client plus server process) per
  request, the figure least disturbed by other load on the machine, and the
  cost of protection: the extra CPU of a protected exchange over a plain
  one, as a whole and per protected message (a quarter of it: request and
  response are each protected once and verified once), both relative to
  the CPU of the plain exchange. Both clients obey congestion control
  (NSTART, 1 by default in both libraries: one confirmable exchange at a
  time per server), so the round trip is measured twice:

  - ``one endpoint``: the whole window from one client context, where all
    but one request wait in the client's NSTART queue: a latency figure
    of a client and server pair, one request on the wire at a time;
  - ``N endpoints`` (``--clients``, 10): the window spread over that many
    client contexts (sockets, each with a security context of its own),
    so that up to N requests are on the wire at once: the capacity figure.

* ``cycle``: in one process, no I/O, the full protection work of one
  exchange on the wire bytes: protect a request, encode, decode, verify it
  as the server, protect the response, encode, decode, verify it as the
  client; cycles per second, and the same without protection (encode and
  decode only) for the protection's share.

The security contexts are ``FilesystemSecurityContext`` directories written
fresh for every run (in the settings format both implementations read), a
pair per client endpoint. The NSTART each library runs with (its
``TransportTuning().NSTART``) is reported by the measured processes.

Run from anywhere; the measured processes are this script under each
implementation's interpreter (the reference one from an empty temporary
directory with no PYTHON* variables, so this tree can not leak in)::

    python3 benchmarks/bench_oscore.py                 # ours and theirs, ratios
    python3 benchmarks/bench_oscore.py --only ours --json
    python3 benchmarks/bench_oscore.py --clients 4 --window 16
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

SMALL = b"Hello from the benchmark resource"
SECRET = "0102030405060708090a0b0c0d0e0f10"
SALT = "9e7ca92223786340"
#: how long the measured client waits beyond ``--duration`` for its
#: requests before it gives up and says how many were still unanswered
HANG_LIMIT = 60.0
#: a request slower than this (ms) is reported: on loopback, only a lost
#: message waiting for its retransmission (ACK_TIMEOUT, 2 s) takes so long
SLOW_MS = 1000


def write_contexts(base: str, pairs: int = 1) -> tuple[list[str], list[str]]:
    """``pairs`` fresh client/server pairs of context directories below
    ``base`` (client directories, server directories); each pair has
    sender and recipient IDs of its own."""
    clients, servers = [], []
    for i in range(pairs):
        client_id, server_id = f"{2 * i + 1:02x}", f"{2 * i + 2:02x}"
        for name, sender, recipient, out in (("client", client_id, server_id, clients),
                                             ("server", server_id, client_id, servers)):
            directory = os.path.join(base, f"{name}{i}")
            os.makedirs(directory)
            with open(os.path.join(directory, "settings.json"), "w") as f:
                json.dump({"sender-id_hex": sender, "recipient-id_hex": recipient,
                           "secret_hex": SECRET, "salt_hex": SALT}, f)
            out.append(directory)
    return clients, servers


# --- inside the measured processes (import whichever aiocoap is there) ----------


def _nstart() -> int:
    """The NSTART this process' aiocoap obeys by default."""
    from aiocoap.numbers.constants import TransportTuning

    return TransportTuning().NSTART


async def _serve(port: int, contextdirs: list[str]) -> None:
    import aiocoap
    import aiocoap.meta
    from aiocoap import resource
    from aiocoap.credentials import CredentialsMap

    class Small(resource.Resource):
        async def render_get(self, request):
            return aiocoap.Message(payload=SMALL)

    site = resource.Site()
    site.add_resource(["bench"], Small())
    credentials = None
    if contextdirs:
        credentials = CredentialsMap()
        credentials.load_from_dict({f":client{i}": {"oscore": {"contextfile": directory}}
                                    for i, directory in enumerate(contextdirs)})
    context = await aiocoap.Context.create_server_context(
        site, bind=("127.0.0.1", port), server_credentials=credentials, transports=["oscore", "udp6"]
    )
    if credentials is not None and type(context.serversite).__name__ != "OscoreSiteWrapper":
        # aiocoap 0.4.17 serves OSCORE only with the wrapper put in by hand.
        from aiocoap.oscore_sitewrapper import OscoreSiteWrapper

        context.serversite = OscoreSiteWrapper(site, credentials)
    print(json.dumps({"version": aiocoap.meta.version, "nstart": _nstart()}), flush=True)
    try:
        await asyncio.get_running_loop().create_future()
    finally:
        await context.shutdown()


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process ``pid`` (Linux)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _measure(port: int, server_pid: int, contextdirs: list[str], clients: int, window: int,
                   duration: float) -> dict:
    """``window`` tasks, each one GET after the other, spread over
    ``clients`` client contexts (one per context directory if protected)."""
    import aiocoap

    base = f"coap://127.0.0.1:{port}"
    contexts = []
    protected = []
    try:
        for i in range(clients):
            context = await aiocoap.Context.create_client_context(transports=["oscore", "udp6"])
            contexts.append(context)
            if contextdirs:
                context.client_credentials.load_from_dict({base + "/*": {"oscore": {"contextfile": contextdirs[i]}}})

        slowest = 0.0  # seconds, of one request (a retransmission shows as seconds)

        async def get(context):
            nonlocal slowest
            sent = time.perf_counter()
            response = await context.request(aiocoap.Message(code=aiocoap.GET, uri=base + "/bench")).response
            slowest = max(slowest, time.perf_counter() - sent)
            if response.code != aiocoap.CONTENT or response.payload != SMALL:
                raise RuntimeError(f"unexpected {response}")
            protected.append(type(response.remote).__name__ == "OSCOREAddress")

        async def settled(work, what: str, limit: float):
            # A request that is never answered would otherwise hold the run
            # (and the driver) until the driver's time limit.
            try:
                return await asyncio.wait_for(work, limit)
            except asyncio.TimeoutError:
                raise RuntimeError(f"{what}: requests still unanswered after {limit:.0f} s "
                                   f"({len(protected)} answered)") from None

        async def warm_up(context):
            for _ in range(300 // clients):
                await get(context)

        await settled(asyncio.gather(*(warm_up(c) for c in contexts)), "warm-up", HANG_LIMIT)
        if any(protected) != bool(contextdirs) or len(set(protected)) != 1:
            raise RuntimeError("responses are not protected as configured")

        done = 0
        stop = time.perf_counter() + duration

        async def worker(context):
            nonlocal done
            while time.perf_counter() < stop:
                await get(context)
                done += 1

        slowest = 0.0
        cpu = time.process_time() + _cpu_seconds(server_pid)
        started = time.perf_counter()
        await settled(asyncio.gather(*(worker(contexts[i % clients]) for i in range(window))),
                      "measurement", duration + HANG_LIMIT)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() + _cpu_seconds(server_pid) - cpu
        return {"in_flight": window, "clients": clients, "nstart": _nstart(), "requests": done,
                "seconds": elapsed, "requests_per_s": done / elapsed, "cpu_us_per_request": cpu / done * 1e6,
                "slowest_request_ms": slowest * 1e3}
    finally:
        for context in contexts:
            await context.shutdown()


def _cycle(number: int, repeat: int) -> dict:
    import gc

    base = tempfile.mkdtemp(prefix="bench-oscore-cycle-")
    try:
        return _cycle_in(base, number, repeat)
    finally:
        # (aiocoap 0.4.17 stores a context's state when it is collected,
        # which has to happen while its directory still exists)
        gc.collect()
        shutil.rmtree(base, ignore_errors=True)


def _cycle_in(base: str, number: int, repeat: int) -> dict:
    import aiocoap
    from aiocoap import oscore

    (client_dir,), (server_dir,) = write_contexts(base)
    client = oscore.FilesystemSecurityContext(client_dir)
    server = oscore.FilesystemSecurityContext(server_dir)
    token = b"\x12\x34\x56\x78"

    def wire(message, mid):
        message.mtype = aiocoap.CON if message.code.is_request() else aiocoap.ACK
        message.mid = mid
        message.token = token
        return aiocoap.Message.decode(message.encode())

    def protected_cycle():
        request = aiocoap.Message(code=aiocoap.GET, uri="coap://localhost/bench")
        outer, request_id = client.protect(request)
        plain, server_id = server.unprotect(wire(outer, 1))
        response = aiocoap.Message(code=aiocoap.CONTENT, payload=SMALL)
        outer_response, _ = server.protect(response, server_id)
        verified, _ = client.unprotect(wire(outer_response, 1), request_id)
        assert verified.payload == SMALL

    def plain_cycle():
        request = aiocoap.Message(code=aiocoap.GET, uri="coap://localhost/bench")
        wire(request, 1)
        response = aiocoap.Message(code=aiocoap.CONTENT, payload=SMALL)
        assert wire(response, 1).payload == SMALL

    result = {}
    for name, function in (("protected", protected_cycle), ("plain", plain_cycle)):
        best = float("inf")
        for _ in range(repeat):
            started = time.perf_counter()
            for _ in range(number):
                function()
            best = min(best, time.perf_counter() - started)
        result[name] = {"cycles_per_s": number / best, "us_per_cycle": best / number * 1e6}
    result["protection_us_per_cycle"] = result["protected"]["us_per_cycle"] - result["plain"]["us_per_cycle"]
    for secctx in (client, server):
        # (aiocoap 0.4.17 has no shutdown; it stores on collection)
        shutdown = getattr(secctx, "shutdown", None)
        if shutdown is not None:
            shutdown()
    return result


# --- the driver ----------------------------------------------------------------------


def run_roundtrip(name: str, oscore_on: bool, clients: int, args) -> dict:
    """One round trip run: a fresh server and a client process with
    ``clients`` client endpoints."""
    import _servers

    python, env, cwd = _servers.ours_env() if name == "ours" else _servers.theirs_env(args.ref_python)
    port = _servers.free_port()
    script = str(Path(__file__).resolve())
    base = tempfile.mkdtemp(prefix="bench-oscore-")
    try:
        client_dirs, server_dirs = write_contexts(base, clients)
        contexts = lambda dirs: ["--contextdirs", ",".join(dirs)] if oscore_on else []  # noqa: E731
        with _servers.start_process(f"{name} OSCORE" if oscore_on else name,
                                    [python, script, "--serve", str(port), *contexts(server_dirs)],
                                    env, cwd, _servers.HOST, port, True, 30.0) as server:
            result = _servers.run_measurement(
                f"{name} client",
                [python, script, "--client", str(port), "--server-pid", str(server.process.pid),
                 "--clients", str(clients), "--window", str(args.window), "--duration", str(args.duration),
                 *contexts(client_dirs)],
                env, cwd, timeout=args.duration + 2 * HANG_LIMIT,
            )
            result["server_nstart"] = server.info["nstart"]
            return result
    finally:
        shutil.rmtree(base, ignore_errors=True)


def run_cycle(name: str, args) -> dict:
    import _servers

    python, env, cwd = _servers.ours_env() if name == "ours" else _servers.theirs_env(args.ref_python)
    return _servers.run_measurement(f"{name} cycle benchmark",
                                    [python, str(Path(__file__).resolve()), "--cycle", "--number", str(args.number)],
                                    env, cwd, timeout=300)


def _summary(runs: dict) -> dict:
    """The best of the runs of one implementation and endpoint setup (each
    mode's highest rate and lowest CPU), and the protection's cost."""
    entry = {}
    for mode in ("plain", "oscore"):
        entry[mode] = {
            "requests_per_s": max(r["requests_per_s"] for r in runs[mode]),
            "cpu_us_per_request": min(r["cpu_us_per_request"] for r in runs[mode]),
        }
    plain_cpu, oscore_cpu = entry["plain"]["cpu_us_per_request"], entry["oscore"]["cpu_us_per_request"]
    entry["overhead_cpu"] = oscore_cpu / plain_cpu - 1
    # Four protection steps per exchange: protect and verify the
    # request, protect and verify the response.
    entry["protection_us_per_message"] = (oscore_cpu - plain_cpu) / 4
    entry["message_overhead"] = entry["protection_us_per_message"] / plain_cpu
    return entry


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--client", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--cycle", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--server-pid", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--contextdirs", default="", help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternating runs per implementation and mode; the best of each is reported")
    parser.add_argument("--window", type=int, default=10, help="requests in flight")
    parser.add_argument("--clients", type=int, default=10,
                        help="client endpoints the window is spread over for the capacity figure (10; "
                             "1 measures the one-endpoint figure only)")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds of each round trip run")
    parser.add_argument("--number", type=int, default=3000, help="protection cycles per timing")
    parser.add_argument("--only", choices=("ours", "theirs"), help="measure one implementation")
    parser.add_argument("--ref-python", default=None, help="interpreter of the reference aiocoap")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    contextdirs = [d for d in args.contextdirs.split(",") if d]

    if args.serve is not None:
        asyncio.run(_serve(args.serve, contextdirs))
        return
    if args.client is not None:
        result = asyncio.run(_measure(args.client, args.server_pid, contextdirs, args.clients, args.window,
                                      args.duration))
        print(json.dumps(result))
        return
    if args.cycle:
        print(json.dumps(_cycle(args.number, repeat=5)))
        return
    if not 1 <= args.clients <= args.window:
        parser.error("--clients must be between 1 and --window")

    names = [args.only] if args.only else ["ours", "theirs"]
    setups = {"one": 1, "many": args.clients} if args.clients > 1 else {"one": 1}
    runs: dict = {name: {setup: {"plain": [], "oscore": []} for setup in setups} for name in names}
    for _ in range(args.rounds):
        for setup, clients in setups.items():
            for name in names:
                for mode in ("plain", "oscore"):
                    runs[name][setup][mode].append(run_roundtrip(name, mode == "oscore", clients, args))
    cycles = {name: run_cycle(name, args) for name in names}
    # The machine is shared: the best run of each is the least disturbed.
    best = {name: {setup: _summary(runs[name][setup]) for setup in setups} for name in names}
    nstart = {name: {"client": sorted({r["nstart"] for setup in setups for mode in ("plain", "oscore")
                                       for r in runs[name][setup][mode]}),
                     "server": sorted({r["server_nstart"] for setup in setups for mode in ("plain", "oscore")
                                       for r in runs[name][setup][mode]})}
              for name in names}
    for name in names:
        best[name]["cycle"] = cycles[name]
    if args.json:
        print(json.dumps({"best": best, "runs": runs, "nstart": nstart, "window": args.window,
                          "clients": setups}))
        return
    print("NSTART (TransportTuning().NSTART of each library, client / server process): "
          + ", ".join(f"{name} {'/'.join(map(str, n['client']))} / {'/'.join(map(str, n['server']))}"
                      for name, n in nstart.items()))
    titles = {
        "one": f"one client endpoint, window {args.window}: the client's NSTART queue holds all requests but"
               " the one on the wire (a latency figure of client and server together)",
        "many": f"{args.clients} client endpoints, window {args.window} spread over them: up to"
                f" {args.clients} requests on the wire (capacity)",
    }
    for setup in setups:
        print(titles[setup])
        for name in names:
            entry = best[name][setup]
            plain, protected = entry["plain"], entry["oscore"]
            print(f"  {name:6s}  plain {plain['requests_per_s']:7,.0f} req/s ({plain['cpu_us_per_request']:4.0f} us CPU/req)"
                  f"   OSCORE {protected['requests_per_s']:7,.0f} req/s ({protected['cpu_us_per_request']:4.0f} us CPU/req)"
                  f"   protected exchange +{entry['overhead_cpu'] * 100:3.0f} % CPU"
                  f" ({entry['protection_us_per_message']:3.0f} us = {entry['message_overhead'] * 100:2.0f} % per message)")
        if len(names) == 2:
            ours, theirs = best["ours"][setup], best["theirs"][setup]
            print(f"  ratio   OSCORE {ours['oscore']['requests_per_s'] / theirs['oscore']['requests_per_s']:5.2f}x req/s"
                  f"  {theirs['oscore']['cpu_us_per_request'] / ours['oscore']['cpu_us_per_request']:5.2f}x less CPU"
                  f"   plain {ours['plain']['requests_per_s'] / theirs['plain']['requests_per_s']:5.2f}x req/s"
                  f"  {theirs['plain']['cpu_us_per_request'] / ours['plain']['cpu_us_per_request']:5.2f}x less CPU")
    slow = [(name, setup, mode, r["slowest_request_ms"]) for name in names for setup in setups
            for mode in ("plain", "oscore") for r in runs[name][setup][mode] if r["slowest_request_ms"] > SLOW_MS]
    for name, setup, mode, ms in slow:
        print(f"  NOTE {name} {mode} ({setup} endpoint{'s' if setup == 'many' else ''}): a request took {ms:,.0f} ms"
              " (lost and retransmitted?); that run's rate is low")
    print("cycle (protection work of one exchange, one process, no I/O)")
    for name in names:
        cycle = best[name]["cycle"]
        print(f"  {name:6s}  {cycle['protected']['cycles_per_s']:7,.0f}/s"
              f" ({cycle['protection_us_per_cycle']:4.0f} us protection per exchange)")
    if len(names) == 2:
        print(f"  ratio   {best['ours']['cycle']['protected']['cycles_per_s'] / best['theirs']['cycle']['protected']['cycles_per_s']:5.2f}x")
        print("(targets: >= 2x protected req/s, protection < 30 % per message)")


if __name__ == "__main__":
    main()
