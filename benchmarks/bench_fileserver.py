#!/usr/bin/env python3
"""aiocoap-fileserver speed: a 10 MiB download (Block2, 1024 byte blocks,
one block after the other) and small-file requests per second, for this
tree's file server and for aiocoap 0.4.17's, in one run; plus the server's
peak RSS during the download.

Both servers run as subprocesses on a free loopback port, serving the same
temporary directory: ours as ``aiocoap-fileserver`` of this checkout (this
repository on ``PYTHONPATH``), theirs as ``python -m aiocoap.cli.fileserver``
under the reference interpreter of ``_reference.py`` (no ``PYTHON*``
variables, an empty working directory). With ``--yardstick``, libcoap's C
server (``coap-server-notls``, the same two files put there as dynamic
resources) runs beside them: what the same exchanges cost on this machine
without Python. The servers run side by side and are measured in turns,
round by round, the order reversed every other round, so that a machine
whose speed drifts during the run (a shared or virtual one does, by tens
of percent within minutes) shifts all of them alike. The clients import
no aiocoap:

* the download is fetched by a raw UDP client here (CON GET with Block2
  for block 0, 1, 2, ... until the More bit is clear), which checks the
  SHA-256 of what arrived; the time of the whole transfer is measured,
  best and median of ``--rounds``; the server's CPU time per block and its
  peak RSS (VmHWM from /proc) after the transfers are reported;
* with ``--libcoap-client``, the download is also timed with libcoap's
  ``coap-client-notls -b 1024`` (a C client, so that the time is nearly
  all server);
* the small-file rate is ``loadgen.py`` (CON, a window of 32 over 4
  sockets) against ``GET /small.txt`` (33 bytes); requests not answered
  within a second count as lost (and are reported), not towards the rate.

    python3 benchmarks/bench_fileserver.py                 # ours and theirs
    python3 benchmarks/bench_fileserver.py --rounds 7 --duration 5
    python3 benchmarks/bench_fileserver.py --yardstick     # and libcoap's C server
    python3 benchmarks/bench_fileserver.py --only ours --json
    python3 benchmarks/bench_fileserver.py --libcoap-client   # also with libcoap's client

Run it under ``flock /tmp/aiocoap-bench.lock`` so benchmarks never overlap.
Targets: ours at least 3x theirs in download time and in small-file
requests/s.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import random
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _servers  # noqa: E402  (siblings, importable from any cwd)
import loadgen  # noqa: E402

HOST = "127.0.0.1"
SMALL = b"Hello from the benchmark resource"
URI_PATH = 11
BLOCK2 = 23
ECHO = 252
CONTENT = 0x45  # 2.05
UNAUTHORIZED = 0x81  # 4.01
BLOCK_SZX = 6  # 1024 byte blocks
LIBCOAP_CLIENT = "coap-client-notls"
_HEADER = struct.Struct("!BBHI")


def make_tree(directory: Path, size: int) -> str:
    """The served files; returns the SHA-256 of the large one."""
    (directory / "small.txt").write_bytes(SMALL)
    digest = hashlib.sha256()
    rng = random.Random(1)
    with open(directory / "big.bin", "wb") as f:
        left = size
        while left:
            chunk = rng.randbytes(min(left, 1 << 16))
            digest.update(chunk)
            f.write(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def _uint(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def options_and_payload(data: bytes) -> tuple[dict, bytes]:
    """Options (number -> last value) and payload of a response datagram."""
    return _options_after_path(data, 4 + (data[0] & 0x0F))


def block_request(mid: int, token: int, uri_path: bytes, number: int, echo: bytes | None = None) -> bytes:
    """A CON GET (4-byte token) for block ``number`` (1024 bytes) of the
    resource whose encoded Uri-Path options are ``uri_path``; with
    ``echo``, the Echo option repeating a server's value."""
    request = (_HEADER.pack(0x44, 0x01, mid, token) + uri_path
               + _option(BLOCK2 - URI_PATH, _uint(number << 4 | BLOCK_SZX)))
    if echo is not None:
        request += _option(ECHO - BLOCK2, echo)
    return request


def _options_after_path(data: bytes, start: int) -> tuple[dict, bytes]:
    """Options (number -> last value) and payload of a message whose
    options start at ``start``."""
    options = {}
    number = 0
    i = start
    while i < len(data) and data[i] != 0xFF:
        first = data[i]
        i += 1
        fields = []
        for nibble in (first >> 4, first & 0x0F):
            if nibble == 13:
                fields.append(data[i] + 13)
                i += 1
            elif nibble == 14:
                fields.append(struct.unpack_from("!H", data, i)[0] + 269)
                i += 2
            else:
                fields.append(nibble)
        number += fields[0]
        options[number] = data[i:i + fields[1]]
        i += fields[1]
    return options, data[i + 1:] if i < len(data) else b""


def _option(delta: int, value: bytes) -> bytes:
    """One encoded option, ``delta`` after the previous option's number."""
    head, extended = [], b""
    for field in (delta, len(value)):
        if field < 13:
            head.append(field)
        elif field < 269:
            head.append(13)
            extended += bytes([field - 13])
        else:
            head.append(14)
            extended += struct.pack("!H", field - 269)
    return bytes([head[0] << 4 | head[1]]) + extended + value


def download(port: int, path: str, timeout: float = 1.0) -> tuple[float, str, int]:
    """Fetch ``path`` block by block (szx 6) over one fresh socket; returns
    (seconds, SHA-256 hex, blocks).

    A 4.01 with an Echo option (RFC 9175 amplification mitigation: a large
    response to an address that has not shown it receives) is answered as
    any client does: the same block is asked again carrying that Echo
    value, once (later requests go without it); the round trip counts
    towards the time."""
    digest = hashlib.sha256()
    uri_path = loadgen.encode_uri_path(path)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect((HOST, port))
        sock.settimeout(timeout)
        mid = random.getrandbits(16)
        token = random.getrandbits(32)
        number = 0
        echo = None
        start = time.perf_counter()
        while True:
            request = block_request(mid, token, uri_path, number, echo)
            for _ in range(4):
                sock.send(request)
                try:
                    while True:
                        data = sock.recv(2048)
                        if struct.unpack_from("!H", data, 2)[0] == mid:
                            break
                except socket.timeout:
                    continue
                break
            else:
                raise RuntimeError(f"block {number} was not answered")
            mid = (mid + 1) & 0xFFFF
            options, payload = options_and_payload(data)
            if data[1] == UNAUTHORIZED and ECHO in options and echo is None:
                echo = options[ECHO]
                continue
            echo = None  # (the server knows this address now)
            if data[1] != CONTENT:
                raise RuntimeError(f"block {number}: {loadgen.code_string(data[1])}")
            digest.update(payload)
            block2 = int.from_bytes(options.get(BLOCK2, b""), "big")
            if not block2 & 0x08:
                break
            number += 1
        return time.perf_counter() - start, digest.hexdigest(), number + 1


def download_with_libcoap(port: int, path: str, expected: str) -> float:
    """Fetch ``path`` with libcoap's ``coap-client-notls -b 1024`` (a C
    client, so the figure is nearly all server); returns the seconds."""
    with tempfile.NamedTemporaryFile(prefix="bench-fileserver-") as out:
        start = time.perf_counter()
        subprocess.run([LIBCOAP_CLIENT, "-b", "1024", "-B", "120", "-o", out.name, f"coap://{HOST}:{port}{path}"],
                       check=True, capture_output=True, timeout=300)
        seconds = time.perf_counter() - start
        with open(out.name, "rb") as f:
            if hashlib.sha256(f.read()).hexdigest() != expected:
                raise RuntimeError("the libcoap download arrived wrong")
    return seconds


def rss_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


#: aiocoap servers given ``--bind HOST:P`` also listen for WebSockets on
#: P + 3000 (both libraries), which ``_servers.free_port`` does not check
WS_PORT_OFFSET = 3000


def free_server_port() -> int:
    """A port P free for UDP and TCP whose P + 3000 is free for TCP too."""
    for _ in range(50):
        port = _servers.free_port(HOST)
        if port + WS_PORT_OFFSET > 0xFFFF:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            try:
                tcp.bind((HOST, port + WS_PORT_OFFSET))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free port pair on {HOST}")


def start_fileserver(which: str, root: Path) -> _servers.ServerProcess:
    port = free_server_port()
    if which == "ours":
        python, env, cwd = _servers.ours_env()
        argv = [python, str(_servers.REPO / "aiocoap-fileserver")]
    else:
        python, env, cwd = _servers.theirs_env()
        argv = [python, "-I", "-m", "aiocoap.cli.fileserver"]
    argv += ["--bind", f"{HOST}:{port}", str(root)]
    # (the servers answer GET /bench with 4.04, which tells that they are up)
    return _servers.start_process(f"fileserver-{which}", argv, env, cwd, HOST, port, False, 30.0)


def start_libcoap_yardstick(root: Path) -> _servers.ServerProcess:
    """libcoap's C server holding the same two files as dynamic resources
    (put there with libcoap's client, the large one in 1024 byte blocks):
    what serving them costs without Python, on this machine."""
    server = _servers.start_libcoap_server(HOST)
    try:
        base = f"coap://{HOST}:{server.port}"
        for name in ("big.bin", "small.txt"):
            subprocess.run([LIBCOAP_CLIENT, "-m", "put", "-b", "1024", "-f", str(root / name), f"{base}/{name}"],
                           check=True, capture_output=True, timeout=120)
    except BaseException:
        server.stop()
        raise
    return server


def _alternating(names: list, round_number: int) -> list:
    """The servers in the order of one round: reversed every other round,
    so that neither is always measured first (nor always right after the
    same one)."""
    return names if round_number % 2 == 0 else names[::-1]


def measure(names: list, root: Path, expected: str, args) -> dict:
    """Run the servers of ``names`` side by side and measure them round
    by round, alternating: a machine whose speed drifts during the run (as
    a shared or virtual one does) then shifts all of them alike instead of
    whichever happened to run at the slow moment."""
    with contextlib.ExitStack() as stack:
        servers = {}
        for name in names:
            server = start_libcoap_yardstick(root) if name == "libcoap" else start_fileserver(name, root)
            servers[name] = stack.enter_context(server)
        results = {name: {"times": [], "cpu": 0.0, "libcoap_times": [], "rates": [], "completed": 0,
                          "lost": 0, "small_cpu": 0.0, "blocks": 0,
                          "baseline": rss_kib(servers[name].process.pid, "VmRSS")} for name in names}

        for round_number in range(args.rounds):
            for name in _alternating(names, round_number):
                server, result = servers[name], results[name]
                cpu_before = server.cpu_seconds()
                seconds, digest, result["blocks"] = download(server.port, "/big.bin")
                if digest != expected:
                    raise RuntimeError(f"{name}: the download arrived wrong")
                result["cpu"] += server.cpu_seconds() - cpu_before
                result["times"].append(seconds)
        for name in names:
            results[name]["peak"] = rss_kib(servers[name].process.pid, "VmHWM")

        if args.libcoap_client and shutil.which(LIBCOAP_CLIENT):
            for round_number in range(args.rounds):
                for name in _alternating(names, round_number):
                    results[name]["libcoap_times"].append(
                        download_with_libcoap(servers[name].port, "/big.bin", expected))

        for round_number in range(args.load_rounds):
            for name in _alternating(names, round_number):
                server, result = servers[name], results[name]
                cpu_before = server.cpu_seconds()
                load = loadgen.run(HOST, server.port, "/small.txt", "CON", duration=args.duration,
                                   window=32, sockets=4, warmup=0.5)
                if set(load["codes"]) != {"2.05"}:
                    raise RuntimeError(f"{name}: small-file requests got {load['codes']}")
                result["small_cpu"] += server.cpu_seconds() - cpu_before
                result["rates"].append(load["requests_per_s"])
                result["completed"] += load["completed"]
                result["lost"] += load["lost"]

    report = {}
    for name, result in results.items():
        times, rates = result["times"], result["rates"]
        report[name] = {
            "download_s_best": min(times),
            "download_s_median": statistics.median(times),
            "download_s_all": times,
            "download_cpu_us_per_block": result["cpu"] / len(times) / result["blocks"] * 1e6,
            "blocks": result["blocks"],
            "rss_baseline_kib": result["baseline"],
            "rss_peak_kib": result["peak"],
            "small_rps_best": max(rates),
            "small_rps_median": statistics.median(rates),
            "small_cpu_us_per_request": result["small_cpu"] / max(1, result["completed"]) * 1e6,
            "small_lost": result["lost"],
            "download_libcoap_s_best": min(result["libcoap_times"]) if result["libcoap_times"] else None,
        }
    return report


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=10 << 20, help="bytes of the large file")
    parser.add_argument("--rounds", type=int, default=5, help="downloads per server")
    parser.add_argument("--load-rounds", type=int, default=2, help="small-file load runs per server")
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per small-file load run")
    parser.add_argument("--only", choices=("ours", "theirs"))
    parser.add_argument("--yardstick", action="store_true",
                        help="also measure libcoap's C server (coap-server-notls) serving the same files")
    parser.add_argument("--libcoap-client", action="store_true",
                        help="also time the download with libcoap's coap-client-notls (after the peak RSS is taken)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    names = [name for name in ("ours", "theirs") if args.only in (None, name)]
    if args.yardstick:
        if _servers.libcoap_server_binary() is None or shutil.which(LIBCOAP_CLIENT) is None:
            parser.error(f"--yardstick needs {_servers.LIBCOAP_SERVER} and {LIBCOAP_CLIENT} (libcoap3-bin)")
        names.append("libcoap")
    root = Path(tempfile.mkdtemp(prefix="bench-fileserver-"))
    try:
        expected = make_tree(root, args.size)
        report = {"size": args.size, "rounds": args.rounds, "load_rounds": args.load_rounds,
                  "duration": args.duration}
        report.update(measure(names, root, expected, args))
    finally:
        shutil.rmtree(root, ignore_errors=True)

    if args.json:
        print(json.dumps(report))
        return
    print(f"{args.size / (1 << 20):.0f} MiB download in 1024 byte blocks ({args.rounds} rounds, servers alternating), "
          f"small file: CON, window 32, {args.load_rounds} x {args.duration:.0f} s")
    print(f"{'':7} {'best s':>7} {'median s':>9} {'CPU us/block':>13} {'peak RSS':>9} {'growth':>7}"
          f" {'small req/s':>12} {'CPU us/req':>11} {'lost':>5}")
    for name in names:
        r = report[name]
        print(f"{name:7} {r['download_s_best']:7.2f} {r['download_s_median']:9.2f}"
              f" {r['download_cpu_us_per_block']:13.1f} {r['rss_peak_kib'] / 1024:7.1f}Mi"
              f" {(r['rss_peak_kib'] - r['rss_baseline_kib']) / 1024:5.1f}Mi"
              f" {r['small_rps_best']:12.0f} {r['small_cpu_us_per_request']:11.1f} {r['small_lost']:5d}")
    if "ours" in report and "theirs" in report:
        ours, theirs = report["ours"], report["theirs"]
        print("ours over theirs (target >= 3x): "
              f"download {theirs['download_s_best'] / ours['download_s_best']:.2f}x "
              f"(medians {theirs['download_s_median'] / ours['download_s_median']:.2f}x), "
              f"small-file requests/s {ours['small_rps_best'] / theirs['small_rps_best']:.2f}x "
              f"(CPU per block {theirs['download_cpu_us_per_block'] / ours['download_cpu_us_per_block']:.2f}x, "
              f"per request {theirs['small_cpu_us_per_request'] / ours['small_cpu_us_per_request']:.2f}x)")
        if ours["download_libcoap_s_best"] and theirs["download_libcoap_s_best"]:
            print(f"download with coap-client-notls: ours {ours['download_libcoap_s_best']:.2f} s, "
                  f"theirs {theirs['download_libcoap_s_best']:.2f} s, "
                  f"{theirs['download_libcoap_s_best'] / ours['download_libcoap_s_best']:.2f}x")
    if "libcoap" in report:
        floor = report["libcoap"]
        for name in ("ours", "theirs"):
            if name in report:
                print(f"{name} over libcoap's C server: download time {report[name]['download_s_best'] / floor['download_s_best']:.2f}x "
                      f"as long, small-file requests/s {report[name]['small_rps_best'] / floor['small_rps_best']:.2f}x as many")


if __name__ == "__main__":
    main()
