#!/usr/bin/env python3
"""CoAP over TCP and over TLS (RFC 8323) speed of this tree's aiocoap against
the reference aiocoap, both ends of each pair run by the same implementation
in separate processes on loopback:

* ``window``: requests per second over one connection with ``--window``
  (100) GETs of a 33-byte resource in flight for ``--duration`` seconds,
  with the CPU time of both processes (per request, and as cores in use:
  CPU seconds per second of the run, client and server);
* ``bert``: ``--mib-rounds`` GETs of a 1 MiB resource, reported as MiB/s
  (Block2 with the largest blocks the peers agree on: BERT where both
  announce Block-Wise-Transfer and a large Max-Message-Size).

Each of these runs over ``coap+tcp`` and over ``coaps+tcp`` (``--transport``
picks one): for TLS the driver makes a CA and a certificate for 127.0.0.1
with the ``cryptography`` package; the servers present it and the clients
trust the CA through their client credentials.

``--trace`` adds a run of each pair that records the wire structure of the
window run instead of timing it: the frames in each write of the client and
the server, the messages each read completed, and how many requests the
server held (written by the client and not answered yet) whenever the
client wrote. It wraps the public asyncio ``Protocol`` methods of the
transport's connection class, so it works with either implementation.

Run from anywhere; each implementation's server (``--serve``) and client
(``--client``) are this script started under that implementation's
interpreter (the reference one from an empty temporary directory with no
PYTHON* variables, so this tree can not leak in)::

    python3 benchmarks/bench_tcp.py                     # ours and theirs, TCP and TLS, ratios
    python3 benchmarks/bench_tcp.py --transport tls --only ours --json
    python3 benchmarks/bench_tcp.py --trace --rounds 1  # also the wire structure
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime
import ipaddress
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

SMALL = b"Hello from the benchmark resource"
MIB = 1 << 20
SCHEMES = {"tcp": "coap+tcp", "tls": "coaps+tcp"}


# --- wire structure (--trace), inside the measured processes --------------------------


class _FrameCounter:
    """Counts the RFC 8323 frames completed in a byte stream fed in pieces
    (only the length headers are read)."""

    def __init__(self) -> None:
        self.pending = b""
        self.skip = 0  # bytes of the current frame still to come

    def feed(self, data: bytes) -> int:
        complete = 0
        pos, end = 0, len(data)
        if self.skip:
            used = min(self.skip, end)
            self.skip -= used
            pos = used
            if not self.skip:
                complete += 1
        data = self.pending + data[pos:]
        pos, end = 0, len(data)
        while pos < end:
            first = data[pos]
            nibble, tkl = first >> 4, first & 0x0F
            extra = {13: 1, 14: 2, 15: 4}.get(nibble, 0)
            if end - pos < 1 + extra:
                break
            length = nibble if not extra else (
                int.from_bytes(data[pos + 1:pos + 1 + extra], "big") + {1: 13, 2: 269, 4: 65805}[extra])
            total = 1 + extra + 1 + tkl + length
            if end - pos >= total:
                pos += total
                complete += 1
            else:
                self.skip = total - (end - pos)
                pos = end
        self.pending = data[pos:] if not self.skip else b""
        return complete


class WireTrace:
    """What the connections of this process wrote and read while
    ``active``."""

    def __init__(self) -> None:
        self.active = False
        self.writes: collections.Counter = collections.Counter()  # frames per write -> count
        self.reads: collections.Counter = collections.Counter()  # frames completed per read -> count
        self.written = 0  # frames
        self.received = 0  # frames
        self.held_at_write: list = []  # (client) requests the server held at each write

    def install(self, connection_class, client: bool) -> None:
        trace = self
        made, received = connection_class.connection_made, connection_class.data_received

        def connection_made(protocol, transport):
            write = transport.write
            counter = _FrameCounter()

            def traced_write(data):
                if trace.active:
                    frames = _FrameCounter().feed(bytes(data))
                    if client:
                        trace.held_at_write.append(trace.written - trace.received)
                    trace.writes[frames] += 1
                    trace.written += frames
                return write(data)

            def traced_data_received(data):
                frames = counter.feed(bytes(data))
                if trace.active:
                    trace.reads[frames] += 1
                    trace.received += frames
                return received(protocol, data)

            transport.write = traced_write
            protocol.data_received = traced_data_received
            return made(protocol, transport)

        connection_class.connection_made = connection_made

    def start(self) -> None:
        self.__init__()
        self.active = True

    def summary(self) -> dict:
        self.active = False

        def stats(counter):
            count = sum(counter.values())
            frames = sum(k * v for k, v in counter.items())
            return {"count": count, "frames_per_call": frames / count if count else 0.0,
                    "most_common": sorted(counter.items(), key=lambda kv: -kv[1])[:5]}

        result = {"writes": stats(self.writes), "reads": stats(self.reads)}
        if self.held_at_write:
            held = self.held_at_write
            result["server_holds_at_client_write"] = {
                "mean": sum(held) / len(held),
                "share_zero": sum(1 for h in held if h <= 0) / len(held),
            }
        return result


TRACE = WireTrace()


def _install_trace(client: bool) -> None:
    from aiocoap.transports import tcp

    TRACE.install(tcp.TcpConnection, client)


# --- inside the measured processes (import whichever aiocoap is there) ----------


def _site(trace: bool):
    import aiocoap
    from aiocoap import resource

    class Small(resource.Resource):
        async def render_get(self, request):
            return aiocoap.Message(payload=SMALL)

    class Large(resource.Resource):
        body = bytes(range(256)) * (MIB // 256)

        async def render_get(self, request):
            return aiocoap.Message(payload=self.body)

    class Trace(resource.Resource):
        """POST starts recording, GET returns what was recorded."""

        async def render_post(self, request):
            TRACE.start()
            return aiocoap.Message(code=aiocoap.CHANGED)

        async def render_get(self, request):
            return aiocoap.Message(payload=json.dumps(TRACE.summary()).encode())

    site = resource.Site()
    site.add_resource(["bench"], Small())
    site.add_resource(["mib"], Large())
    if trace:
        site.add_resource(["trace"], Trace())
    return site


def _server_ssl_context(certdir: str):
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(os.path.join(certdir, "server.pem"), os.path.join(certdir, "server.key"))
    return context


async def _serve(port: int, certdir: str | None, trace: bool) -> None:
    import aiocoap

    if trace:
        _install_trace(client=False)
    kwargs = {}
    if certdir is not None:
        kwargs = {"transports": ["tlsserver"], "_ssl_context": _server_ssl_context(certdir)}
    else:
        kwargs = {"transports": ["tcpserver"]}
    context = await aiocoap.Context.create_server_context(_site(trace), bind=("127.0.0.1", port), **kwargs)
    # aiocoap 0.4.17 puts a TLS listener on the next port when given one
    # explicitly; tell the driver where it listens.
    for candidate in (port, port + 1):
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", candidate)) == 0:
                print("ready", candidate, flush=True)
                break
    else:
        raise RuntimeError(f"not listening on port {port} or {port + 1}")
    try:
        await asyncio.get_running_loop().create_future()
    finally:
        await context.shutdown()


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process ``pid`` (Linux)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _trust(context, authority: str, certdir: str) -> None:
    """Make the client trust the benchmark CA for ``authority`` (each
    implementation's spelling of the credentials)."""
    from aiocoap import credentials

    ca = os.path.join(certdir, "ca.pem")
    if hasattr(credentials, "TLS"):
        entry = {"tls": {"ca-file": ca}}
    else:
        entry = {"tlscert": {"certfile": ca}}
    context.client_credentials.load_from_dict({f"coaps+tcp://{authority}/*": entry})


async def _measure(port: int, server_pid: int, certdir: str | None, window: int, duration: float,
                   mib_rounds: int, trace: bool) -> dict:
    import aiocoap

    if trace:
        _install_trace(client=True)
    transport = "tlsclient" if certdir else "tcpclient"
    context = await aiocoap.Context.create_client_context(transports=[transport])
    authority = f"127.0.0.1:{port}"
    if certdir is not None:
        _trust(context, authority, certdir)
    base = f"{SCHEMES['tls' if certdir else 'tcp']}://{authority}"
    try:
        async def request(path, code=aiocoap.GET):
            response = await context.request(aiocoap.Message(code=code, uri=base + path)).response
            if not response.code.is_successful():
                raise RuntimeError(f"unexpected {response}")
            return response

        for _ in range(200):
            await request("/bench")

        done = 0
        stop = time.perf_counter() + duration

        async def worker():
            nonlocal done
            while time.perf_counter() < stop:
                await request("/bench")
                done += 1

        if trace:
            await request("/trace", aiocoap.POST)
            TRACE.start()
        client_cpu, server_cpu = time.process_time(), _cpu_seconds(server_pid)
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(window)))
        elapsed = time.perf_counter() - started
        client_cpu = time.process_time() - client_cpu
        server_cpu = _cpu_seconds(server_pid) - server_cpu
        result = {"window": {
            "in_flight": window, "requests": done, "seconds": elapsed, "requests_per_s": done / elapsed,
            "cpu_us_per_request": (client_cpu + server_cpu) / done * 1e6,
            "client_cores": client_cpu / elapsed, "server_cores": server_cpu / elapsed,
        }}
        if trace:
            client_trace = TRACE.summary()
            server_trace = json.loads((await request("/trace")).payload)
            result["trace"] = {"client": client_trace, "server": server_trace}
            return result

        first = await request("/mib")
        if len(first.payload) != MIB:
            raise RuntimeError(f"1 MiB resource returned {len(first.payload)} bytes")
        cpu = time.process_time() + _cpu_seconds(server_pid)
        started = time.perf_counter()
        for _ in range(mib_rounds):
            assert len((await request("/mib")).payload) == MIB
        elapsed = time.perf_counter() - started
        cpu = time.process_time() + _cpu_seconds(server_pid) - cpu
        result["bert"] = {
            "rounds": mib_rounds, "seconds": elapsed, "mib_per_s": mib_rounds / elapsed,
            "cpu_ms_per_mib": cpu / mib_rounds * 1e3,
            "block_size_exp": getattr(first.remote, "maximum_block_size_exp", None),
        }
        return result
    finally:
        await context.shutdown()


# --- the driver ----------------------------------------------------------------------


def make_certificates(directory: str) -> None:
    """A CA (ca.pem) and a server certificate for 127.0.0.1 signed by it
    (server.pem, server.key), valid for a day."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def certificate(subject, issuer, public_key, signing_key, ca, extra=()):
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        for extension in extra:
            builder = builder.add_extension(extension, critical=False)
        return builder.sign(signing_key, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = certificate("aiocoap benchmark CA", "aiocoap benchmark CA", ca_key.public_key(), ca_key, True)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = certificate(
        "127.0.0.1", "aiocoap benchmark CA", key.public_key(), ca_key, False,
        [x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])],
    )
    pem = serialization.Encoding.PEM
    Path(directory, "ca.pem").write_bytes(ca_cert.public_bytes(pem))
    Path(directory, "server.pem").write_bytes(cert.public_bytes(pem))
    Path(directory, "server.key").write_bytes(key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


def _listening_port(process: subprocess.Popen, timeout: float = 30.0) -> int:
    """The port the server reports once it listens."""
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    line = process.stdout.readline().split() if ready else []
    if len(line) != 2 or line[0] != b"ready":
        raise RuntimeError(f"server did not start listening within {timeout:g} s")
    return int(line[1])


def _free_port_pair() -> int:
    """A port that is free together with the next one."""
    for _ in range(50):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = first.getsockname()[1]
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
        return port
    raise RuntimeError("no two free neighbouring ports")


def run_pair(name: str, transport: str, args, certdir: str | None, trace: bool = False) -> dict:
    import _servers

    python, env, cwd = _servers.ours_env() if name == "ours" else _servers.theirs_env(args.ref_python)
    port = _free_port_pair()
    script = str(Path(__file__).resolve())
    tls = ["--certs", certdir] if transport == "tls" else []
    tracing = ["--trace"] if trace else []
    errors = tempfile.TemporaryFile()
    server = subprocess.Popen(
        [python, script, "--serve", str(port)] + tls + tracing, env=env, cwd=cwd,
        stdout=subprocess.PIPE, stderr=errors,
    )
    try:
        try:
            port = _listening_port(server)
        except RuntimeError as e:
            errors.seek(0)
            raise RuntimeError(f"{name} {transport}: {e}\n{errors.read().decode(errors='replace')}") from None
        client = subprocess.run(
            [python, script, "--client", str(port), "--server-pid", str(server.pid), "--window", str(args.window),
             "--duration", str(args.duration), "--mib-rounds", str(args.mib_rounds)] + tls + tracing,
            env=env, cwd=cwd, capture_output=True, text=True, timeout=300,
        )
        if client.returncode != 0:
            raise RuntimeError(f"{name} {transport} client failed:\n{client.stderr}")
        result = json.loads(client.stdout.strip().splitlines()[-1])
    finally:
        server.terminate()
        try:
            server.wait(5)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        server.stdout.close()
        errors.close()
    return result


def _best(results: list) -> dict:
    # The machine is shared: the best run of each is the least disturbed.
    window = max((r["window"] for r in results), key=lambda w: w["requests_per_s"])
    return {
        "window": window,
        "cores": window["client_cores"] + window["server_cores"],
        "bert": max((r["bert"] for r in results), key=lambda b: b["mib_per_s"]),
        "cpu_us_per_request": min(r["window"]["cpu_us_per_request"] for r in results),
        "cpu_ms_per_mib": min(r["bert"]["cpu_ms_per_mib"] for r in results),
    }


def _print_trace(transport: str, name: str, trace: dict) -> None:
    for side in ("client", "server"):
        t = trace[side]
        line = (f"  {transport} {name:6s} {side}: {t['writes']['count']:6d} writes of "
                f"{t['writes']['frames_per_call']:6.1f} frames, {t['reads']['count']:6d} reads completing "
                f"{t['reads']['frames_per_call']:6.1f}")
        held = t.get("server_holds_at_client_write")
        if held:
            line += (f"; the server held {held['mean']:5.1f} requests when the client wrote "
                     f"(none: {held['share_zero']:4.0%} of the writes)")
        print(line)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--client", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--server-pid", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--certs", help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternating runs per implementation; the best of each is reported")
    parser.add_argument("--window", type=int, default=100, help="requests in flight")
    parser.add_argument("--duration", type=float, default=4.0, help="seconds of the window run")
    parser.add_argument("--mib-rounds", type=int, default=20, help="1 MiB GETs")
    parser.add_argument("--transport", choices=("tcp", "tls"), action="append",
                        help="coap+tcp or coaps+tcp (default: both)")
    parser.add_argument("--only", choices=("ours", "theirs"), help="measure one implementation")
    parser.add_argument("--trace", action="store_true", help="also record the wire structure of a window run")
    parser.add_argument("--ref-python", default=None, help="interpreter of the reference aiocoap")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    if args.serve is not None:
        asyncio.run(_serve(args.serve, args.certs, args.trace))
        return
    if args.client is not None:
        result = asyncio.run(_measure(args.client, args.server_pid, args.certs, args.window, args.duration,
                                      args.mib_rounds, args.trace))
        print(json.dumps(result))
        return

    transports = args.transport or ["tcp", "tls"]
    names = [args.only] if args.only else ["ours", "theirs"]
    certdir = None
    if "tls" in transports:
        try:
            import cryptography  # noqa: F401
        except ImportError:
            sys.exit("the TLS case makes its certificates with the 'cryptography' package; "
                     "install it or pass --transport tcp")
        certdir = tempfile.mkdtemp(prefix="aiocoap-bench-tls-")
        make_certificates(certdir)
    try:
        runs: dict = {t: {name: [] for name in names} for t in transports}
        traces: dict = {t: {} for t in transports}
        for transport in transports:
            for _ in range(args.rounds):
                for name in names:
                    runs[transport][name].append(run_pair(name, transport, args, certdir))
            if args.trace:
                for name in names:
                    traces[transport][name] = run_pair(name, transport, args, certdir, trace=True)["trace"]
    finally:
        if certdir is not None:
            shutil.rmtree(certdir, ignore_errors=True)

    best = {t: {name: _best(results) for name, results in by_name.items()} for t, by_name in runs.items()}
    if args.json:
        print(json.dumps({"best": best, "runs": runs, "traces": traces}))
        return
    for transport in transports:
        print(f"{SCHEMES[transport]}:")
        for name, result in best[transport].items():
            window, bert = result["window"], result["bert"]
            print(f"  {name:6s}  {window['requests_per_s']:8,.0f} req/s with {window['in_flight']} in flight "
                  f"({result['cpu_us_per_request']:5.0f} us CPU/request; cores {window['client_cores']:.2f} client "
                  f"+ {window['server_cores']:.2f} server = {result['cores']:.2f})   "
                  f"1 MiB GET: {bert['mib_per_s']:6.1f} MiB/s ({result['cpu_ms_per_mib']:5.1f} ms CPU/MiB, "
                  f"block size exponent {bert['block_size_exp']})")
        if len(best[transport]) == 2:
            ours, theirs = best[transport]["ours"], best[transport]["theirs"]
            print(f"  ratio   {ours['window']['requests_per_s'] / theirs['window']['requests_per_s']:8.2f}x req/s "
                  f"{theirs['cpu_us_per_request'] / ours['cpu_us_per_request']:6.2f}x less CPU   "
                  f"{ours['bert']['mib_per_s'] / theirs['bert']['mib_per_s']:6.2f}x MiB/s "
                  f"{theirs['cpu_ms_per_mib'] / ours['cpu_ms_per_mib']:6.2f}x less CPU   "
                  f"(target: >= 2.5x req/s with >= 1.7 cores)")
        for name, trace in traces[transport].items():
            _print_trace(transport, name, trace)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
