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
  the CPU of the plain exchange.
* ``cycle``: in one process, no I/O, the full protection work of one
  exchange on the wire bytes: protect a request, encode, decode, verify it
  as the server, protect the response, encode, decode, verify it as the
  client; cycles per second, and the same without protection (encode and
  decode only) for the protection's share.

The security contexts are ``FilesystemSecurityContext`` directories written
fresh for every run (in the settings format both implementations read).

Run from anywhere; the measured processes are this script under each
implementation's interpreter (the reference one from an empty temporary
directory with no PYTHON* variables, so this tree can not leak in)::

    python3 benchmarks/bench_oscore.py                 # ours and theirs, ratios
    python3 benchmarks/bench_oscore.py --only ours --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

SMALL = b"Hello from the benchmark resource"
SECRET = "0102030405060708090a0b0c0d0e0f10"
SALT = "9e7ca92223786340"


def write_contexts(base: str) -> tuple[str, str]:
    """A fresh client/server pair of context directories below ``base``."""
    pairs = {"client": ("01", "02"), "server": ("02", "01")}
    for name, (sender, recipient) in pairs.items():
        os.makedirs(os.path.join(base, name))
        with open(os.path.join(base, name, "settings.json"), "w") as f:
            json.dump({"sender-id_hex": sender, "recipient-id_hex": recipient,
                       "secret_hex": SECRET, "salt_hex": SALT}, f)
    return os.path.join(base, "client"), os.path.join(base, "server")


# --- inside the measured processes (import whichever aiocoap is there) ----------


async def _serve(port: int, contextdir: str | None) -> None:
    import aiocoap
    from aiocoap import resource
    from aiocoap.credentials import CredentialsMap

    class Small(resource.Resource):
        async def render_get(self, request):
            return aiocoap.Message(payload=SMALL)

    site = resource.Site()
    site.add_resource(["bench"], Small())
    credentials = None
    if contextdir is not None:
        credentials = CredentialsMap()
        credentials.load_from_dict({":client": {"oscore": {"contextfile": contextdir}}})
    context = await aiocoap.Context.create_server_context(
        site, bind=("127.0.0.1", port), server_credentials=credentials, transports=["oscore", "udp6"]
    )
    if credentials is not None and type(context.serversite).__name__ != "OscoreSiteWrapper":
        # aiocoap 0.4.17 serves OSCORE only with the wrapper put in by hand.
        from aiocoap.oscore_sitewrapper import OscoreSiteWrapper

        context.serversite = OscoreSiteWrapper(site, credentials)
    print("ready", flush=True)
    try:
        await asyncio.get_running_loop().create_future()
    finally:
        await context.shutdown()


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process ``pid`` (Linux)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _measure(port: int, server_pid: int, contextdir: str | None, window: int, duration: float) -> dict:
    import aiocoap

    context = await aiocoap.Context.create_client_context(transports=["oscore", "udp6"])
    base = f"coap://127.0.0.1:{port}"
    if contextdir is not None:
        context.client_credentials.load_from_dict({base + "/*": {"oscore": {"contextfile": contextdir}}})
    protected = []
    try:
        async def get():
            response = await context.request(aiocoap.Message(code=aiocoap.GET, uri=base + "/bench")).response
            if response.code != aiocoap.CONTENT or response.payload != SMALL:
                raise RuntimeError(f"unexpected {response}")
            protected.append(type(response.remote).__name__ == "OSCOREAddress")

        for _ in range(300):
            await get()
        if any(protected) != (contextdir is not None) or len(set(protected)) != 1:
            raise RuntimeError("responses are not protected as configured")

        done = 0
        stop = time.perf_counter() + duration

        async def worker():
            nonlocal done
            while time.perf_counter() < stop:
                await get()
                done += 1

        cpu = time.process_time() + _cpu_seconds(server_pid)
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(window)))
        elapsed = time.perf_counter() - started
        cpu = time.process_time() + _cpu_seconds(server_pid) - cpu
        return {"in_flight": window, "requests": done, "seconds": elapsed,
                "requests_per_s": done / elapsed, "cpu_us_per_request": cpu / done * 1e6}
    finally:
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

    client_dir, server_dir = write_contexts(base)
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


def run_roundtrip(name: str, oscore_on: bool, args) -> dict:
    import _servers

    python, env, cwd = _servers.ours_env() if name == "ours" else _servers.theirs_env(args.ref_python)
    port = _servers.free_port()
    script = str(Path(__file__).resolve())
    base = tempfile.mkdtemp(prefix="bench-oscore-")
    try:
        client_dir, server_dir = write_contexts(base)
        server = subprocess.Popen(
            [python, script, "--serve", str(port)] + (["--contextdir", server_dir] if oscore_on else []),
            env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        try:
            if server.stdout.readline().strip() != "ready":
                raise RuntimeError(f"{name} server did not start:\n{server.stderr.read()}")
            client = subprocess.run(
                [python, script, "--client", str(port), "--server-pid", str(server.pid),
                 "--window", str(args.window), "--duration", str(args.duration)]
                + (["--contextdir", client_dir] if oscore_on else []),
                env=env, cwd=cwd, capture_output=True, text=True, timeout=300,
            )
            if client.returncode != 0:
                raise RuntimeError(f"{name} client failed:\n{client.stderr}")
            return json.loads(client.stdout.strip().splitlines()[-1])
        finally:
            server.terminate()
            try:
                server.wait(5)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
            server.stdout.close()
            server.stderr.close()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def run_cycle(name: str, args) -> dict:
    import _servers

    python, env, cwd = _servers.ours_env() if name == "ours" else _servers.theirs_env(args.ref_python)
    result = subprocess.run(
        [python, str(Path(__file__).resolve()), "--cycle", "--number", str(args.number)],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=300,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{name} cycle benchmark failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--client", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--cycle", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--server-pid", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--contextdir", help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternating runs per implementation and mode; the best of each is reported")
    parser.add_argument("--window", type=int, default=10, help="requests in flight")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds of each round trip run")
    parser.add_argument("--number", type=int, default=3000, help="protection cycles per timing")
    parser.add_argument("--only", choices=("ours", "theirs"), help="measure one implementation")
    parser.add_argument("--ref-python", default=None, help="interpreter of the reference aiocoap")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    if args.serve is not None:
        asyncio.run(_serve(args.serve, args.contextdir))
        return
    if args.client is not None:
        result = asyncio.run(_measure(args.client, args.server_pid, args.contextdir, args.window, args.duration))
        print(json.dumps(result))
        return
    if args.cycle:
        print(json.dumps(_cycle(args.number, repeat=5)))
        return

    names = [args.only] if args.only else ["ours", "theirs"]
    runs: dict = {name: {"plain": [], "oscore": []} for name in names}
    for _ in range(args.rounds):
        for name in names:
            for mode in ("plain", "oscore"):
                runs[name][mode].append(run_roundtrip(name, mode == "oscore", args))
    cycles = {name: run_cycle(name, args) for name in names}
    # The machine is shared: the best run of each is the least disturbed.
    best = {}
    for name in names:
        entry = {}
        for mode in ("plain", "oscore"):
            entry[mode] = {
                "requests_per_s": max(r["requests_per_s"] for r in runs[name][mode]),
                "cpu_us_per_request": min(r["cpu_us_per_request"] for r in runs[name][mode]),
            }
        plain_cpu, oscore_cpu = entry["plain"]["cpu_us_per_request"], entry["oscore"]["cpu_us_per_request"]
        entry["overhead_cpu"] = oscore_cpu / plain_cpu - 1
        # Four protection steps per exchange: protect and verify the
        # request, protect and verify the response.
        entry["protection_us_per_message"] = (oscore_cpu - plain_cpu) / 4
        entry["message_overhead"] = entry["protection_us_per_message"] / plain_cpu
        entry["cycle"] = cycles[name]
        best[name] = entry
    if args.json:
        print(json.dumps({"best": best, "runs": runs}))
        return
    for name, entry in best.items():
        plain, protected, cycle = entry["plain"], entry["oscore"], entry["cycle"]
        print(f"{name:6s}  plain {plain['requests_per_s']:7,.0f} req/s ({plain['cpu_us_per_request']:4.0f} us CPU/req)"
              f"   OSCORE {protected['requests_per_s']:7,.0f} req/s ({protected['cpu_us_per_request']:4.0f} us CPU/req)"
              f"   protected exchange +{entry['overhead_cpu'] * 100:3.0f} % CPU"
              f" ({entry['protection_us_per_message']:3.0f} us = {entry['message_overhead'] * 100:2.0f} % per message)"
              f"   cycle {cycle['protected']['cycles_per_s']:7,.0f}/s"
              f" ({cycle['protection_us_per_cycle']:4.0f} us protection per exchange)")
    if len(best) == 2:
        ours, theirs = best["ours"], best["theirs"]
        print(f"ratio   OSCORE {ours['oscore']['requests_per_s'] / theirs['oscore']['requests_per_s']:5.2f}x req/s"
              f"  {theirs['oscore']['cpu_us_per_request'] / ours['oscore']['cpu_us_per_request']:5.2f}x less CPU"
              f"   cycle {ours['cycle']['protected']['cycles_per_s'] / theirs['cycle']['protected']['cycles_per_s']:5.2f}x"
              f"   (targets: >= 2x req/s, protection < 30 %)")


if __name__ == "__main__":
    main()
