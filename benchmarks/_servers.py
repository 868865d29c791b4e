"""Start the servers the core benchmarks measure, each as a subprocess on a
free loopback port, and stop them again.

* :func:`start_aiocoap_server`: ``bench_server.py --serve`` under a given
  interpreter, i.e. with whichever ``aiocoap`` that interpreter imports --
  this tree (:func:`ours_env`) or the reference installation
  (:func:`theirs_env`).
* :func:`start_echo_server`: the bare asyncio echo of
  ``bench_echo_ceiling.py``.
* :func:`start_libcoap_server`: libcoap's ``coap-server-notls`` with the
  benchmark resource created by a PUT (dynamic resources, ``-d``).
* :func:`run_measurement`: a measuring client process that prints one JSON
  line; if it outlives its time limit, it dumps its threads' stacks
  (faulthandler) before it is killed, and the error carries the dump.

All of them serve ``GET /bench`` with :data:`PAYLOAD` and are waited for
until they answer; :class:`ServerProcess` is a context manager that
terminates (and if need be kills) the process on exit. A server's output
goes to a log file, never to a pipe nobody reads while the load runs (a
server that logs more than a pipe holds would stop in its next write and
look like a hang). This module does not import aiocoap.
"""

from __future__ import annotations

import atexit
import json
import os
import random
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
LIBCOAP_SERVER = "coap-server-notls"

HOST = "127.0.0.1"
PATH = "/bench"
#: the fixed payload every benchmark server answers ``GET /bench`` with
PAYLOAD = b"Hello from the benchmark resource"

sys.path.insert(0, str(HERE))
import loadgen  # noqa: E402  (a sibling module, importable from any cwd)
from _reference import reference_python  # noqa: E402


def free_port(host: str = HOST) -> int:
    """A port that is free for both UDP and TCP on ``host`` right now
    (aiocoap servers listen on TCP too when given a bind address)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(50):
        with socket.socket(family, socket.SOCK_DGRAM) as udp:
            udp.bind((host, 0))
            port = udp.getsockname()[1]
        with socket.socket(family, socket.SOCK_STREAM) as tcp:
            try:
                tcp.bind((host, port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free port on {host}")


def ours_env(python: str | None = None) -> tuple[str, dict, str]:
    """(interpreter, environment, working directory) that import this tree's
    aiocoap: the repository goes first on PYTHONPATH."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    )
    return python or sys.executable, env, str(REPO)


_ref_cwd: str | None = None


def theirs_env(python: str | None = None) -> tuple[str, dict, str]:
    """(interpreter, environment, working directory) that import the
    reference installation: no PYTHON* variables and an empty temporary
    directory as working directory, so this tree can not be imported."""
    global _ref_cwd
    if _ref_cwd is None:
        _ref_cwd = tempfile.mkdtemp(prefix="aiocoap-ref-bench-")
        atexit.register(shutil.rmtree, _ref_cwd, True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    return python or reference_python(), env, _ref_cwd


class ServerProcess:
    """A benchmark server running in a subprocess."""

    def __init__(self, name: str, process: subprocess.Popen, host: str, port: int,
                 log_path: Path, info: dict | None = None):
        self.name = name
        self.process = process
        self.host = host
        self.port = port
        self.path = PATH
        self.log_path = log_path
        #: what the server reported about itself (library, version)
        self.info = info or {}

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def cpu_seconds(self) -> float | None:
        """User plus system CPU time the server process used so far (Linux)."""
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            return None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
        self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_process(name: str, argv: list, env: dict | None, cwd: str | None, host: str,
                  port: int, ready_line: bool, timeout: float) -> ServerProcess:
    """Start ``argv`` (a server that will listen on ``host``:``port``) and
    return once it answers ``GET /bench``. With ``ready_line`` the server
    first prints one line of JSON about itself, kept as ``info``."""
    log = tempfile.NamedTemporaryFile(prefix=f"bench-{name}-", suffix=".log", delete=False)
    log_path = Path(log.name)
    process = subprocess.Popen(
        argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE if ready_line else log, stderr=log,
    )
    log.close()
    server = ServerProcess(name, process, host, port, log_path)
    try:
        if ready_line:
            # the server prints one JSON line once it listens, then nothing
            ready, _, _ = select.select([process.stdout], [], [], timeout)
            line = process.stdout.readline() if ready else b""
            if not line:
                raise RuntimeError("it exited before listening")
            server.info = json.loads(line)
        loadgen.wait_until_answering(host, port, PATH, timeout)
    except Exception as exc:
        text = server.log()
        server.stop()
        raise RuntimeError(f"{name} server did not come up ({exc}); its output:\n{text}") from exc
    except BaseException:
        server.stop()
        raise
    return server


def start_aiocoap_server(python: str | None = None, env: dict | None = None,
                         cwd: str | None = None, host: str = HOST, loop: str = "asyncio",
                         timeout: float = 20.0) -> ServerProcess:
    """``bench_server.py --serve`` under ``python`` (default: this
    interpreter) with ``env`` and ``cwd``; pass the result of
    :func:`ours_env` or :func:`theirs_env` to pick the library."""
    port = free_port(host)
    argv = [python or sys.executable, str(HERE / "bench_server.py"), "--serve",
            "--host", host, "--port", str(port), "--loop", loop]
    return start_process("aiocoap", argv, env, cwd, host, port, True, timeout)


def start_echo_server(python: str | None = None, host: str = HOST, loop: str = "asyncio",
                      timeout: float = 10.0) -> ServerProcess:
    """The fixed-reply asyncio server of ``bench_echo_ceiling.py``."""
    port = free_port(host)
    argv = [python or sys.executable, str(HERE / "bench_echo_ceiling.py"), "--serve",
            "--host", host, "--port", str(port), "--loop", loop]
    return start_process("echo", argv, None, None, host, port, True, timeout)


def run_measurement(name: str, argv: list, env: dict | None, cwd: str | None, timeout: float) -> dict:
    """Run ``argv`` (a Python interpreter and its arguments) to completion
    and return the JSON object on the last line of its output.

    The process runs with faulthandler on; one still running after
    ``timeout`` seconds gets SIGABRT, which makes it print where each of its
    threads was before it dies, and the RuntimeError raised here carries
    that dump (a bare timeout would say nothing about where it hung)."""
    argv = [argv[0], "-X", "faulthandler", *argv[1:]]
    process = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGABRT)
        try:
            stdout, stderr = process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = process.communicate()
        raise RuntimeError(f"{name} did not finish within {timeout:.0f} s; where it was:\n{stderr}") from None
    except BaseException:
        process.kill()
        process.communicate()
        raise
    if process.returncode != 0:
        raise RuntimeError(f"{name} failed (exit status {process.returncode}):\n{stderr}")
    lines = stdout.strip().splitlines()
    if not lines:
        raise RuntimeError(f"{name} printed nothing:\n{stderr}")
    return json.loads(lines[-1])


def library_nstart(python: str, env: dict | None, cwd: str | None) -> int:
    """The NSTART (``TransportTuning().NSTART``) of the aiocoap that
    ``python`` imports with ``env`` in ``cwd``: how many confirmable
    exchanges its message layer keeps outstanding per peer by default."""
    code = "from aiocoap.numbers.constants import TransportTuning; print(TransportTuning().NSTART)"
    result = subprocess.run([python, "-c", code], env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"{python} could not tell its NSTART:\n{result.stderr}")
    return int(result.stdout)


def libcoap_server_binary() -> str | None:
    return shutil.which(LIBCOAP_SERVER)


def raw_request(host: str, port: int, method: int, path: str, payload: bytes = b"",
                timeout: float = 2.0) -> bytes:
    """One CON request from a raw socket; returns the piggybacked response
    datagram (see :func:`payload_of`)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    mid = random.getrandbits(16)
    message = (struct.pack("!BBHI", 0x44, method, mid, random.getrandbits(32))
               + loadgen.encode_uri_path(path) + (b"\xff" + payload if payload else b""))
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.connect((host, port))
        sock.send(message)
        while True:
            data = sock.recv(65536)
            if len(data) >= 4 and struct.unpack_from("!H", data, 2)[0] == mid:
                return data


def payload_of(datagram: bytes) -> bytes:
    """The payload of a CoAP datagram (after the token and the options)."""
    pos = 4 + (datagram[0] & 0x0F)
    while pos < len(datagram):
        if datagram[pos] == 0xFF:
            return datagram[pos + 1 :]
        delta, length = datagram[pos] >> 4, datagram[pos] & 0x0F
        pos += 1 + (1 if delta == 13 else 2 if delta == 14 else 0)
        if length == 13:
            length = datagram[pos] + 13
            pos += 1
        elif length == 14:
            length = int.from_bytes(datagram[pos : pos + 2], "big") + 269
            pos += 2
        pos += length
    return b""


def _put(host: str, port: int, path: str, payload: bytes, timeout: float = 2.0) -> str:
    """Raw CON PUT; returns the response code."""
    return loadgen.code_string(raw_request(host, port, 0x03, path, payload, timeout)[1])


def start_libcoap_server(host: str = HOST, timeout: float = 10.0) -> ServerProcess:
    """libcoap's server with ``/bench`` created (by PUT) to hold
    :data:`PAYLOAD`. Raises FileNotFoundError if libcoap is not installed."""
    binary = libcoap_server_binary()
    if binary is None:
        raise FileNotFoundError(f"{LIBCOAP_SERVER} not found (Debian package libcoap3-bin)")
    for attempt in range(3):
        port = free_port(host)
        argv = [binary, "-A", host, "-p", str(port), "-d", "10", "-v", "0"]
        log = tempfile.NamedTemporaryFile(prefix="bench-libcoap-", suffix=".log", delete=False)
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()
        server = ServerProcess("libcoap", process, host, port, Path(log.name),
                               {"library": binary, "version": "libcoap"})
        try:
            loadgen.wait_until_answering(host, port, "/", timeout)
            code = _put(host, port, PATH, PAYLOAD)
            if code not in ("2.01", "2.04"):
                raise RuntimeError(f"PUT {PATH} on libcoap answered {code}")
            return server
        except (TimeoutError, OSError):
            server.stop()
            if attempt == 2:
                raise
        except BaseException:
            server.stop()
            raise
    raise AssertionError("unreachable")


def measure(server: ServerProcess, types, **load) -> dict:
    """Run loadgen against ``server`` once per message type."""
    results = {}
    for mtype in types:
        cpu_before = server.cpu_seconds()
        result = loadgen.run(server.host, server.port, server.path, mtype, **load)
        cpu_after = server.cpu_seconds()
        if cpu_before is not None and cpu_after is not None and result["sent"]:
            result["server_cpu_us_per_request"] = (cpu_after - cpu_before) / result["sent"] * 1e6
        if server.process.poll() is not None:
            result["error"] = f"server exited with {server.process.returncode}"
        results[mtype] = result
    return results
