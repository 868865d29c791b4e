#!/usr/bin/env python3
"""Observe (RFC 7641) fan-out speed and server memory per observation, for
this tree and for the reference aiocoap 0.4.17, in one run.

Three kinds of process take part, all on loopback UDP:

* the **server** (``--role server``): one ``ObservableResource`` at
  ``/obs`` whose representation is its state counter, plus two control
  resources: ``POST /ctl/update`` increments the counter, calls
  ``updated_state()`` once and answers with the new state and the number of
  observations the resource knows of (counted through
  ``update_observation_count()``); ``GET /ctl/count`` answers that number.
* the **client** (``--role client``): ``--contexts`` client contexts (one
  UDP socket, i.e. one peer to the server, each), driven by one JSON
  command per line on stdin, answering one JSON line on stdout:

  - ``register N``: N more observations of ``/obs`` (GET with Observe: 0
    through ``Context.request``, spread round-robin over the contexts, at
    most 64 registrations in flight); a callback registered on each
    ``request.observation`` counts the notifications by the state in their
    payload (each observation counts a state at most once).
  - ``fanout U``: U times: ``POST /ctl/update``, then wait until every
    observation has received the new state -- or until no notification
    arrived for ``--idle`` seconds (then the missing ones count as lost) --
    before the next update. So the updates are paced by delivery, and the
    total time is the time to deliver all U x N notifications.

* the **driver** (no ``--role``; does not import aiocoap): runs both of
  the above under this tree (``python3`` with the repository on
  ``PYTHONPATH``) and under the reference (the interpreter of ``_reference.py``
  with ``-I`` on a copy of this script in an empty temporary directory, so this
  tree can not be imported there; the processes report which aiocoap they
  imported and the driver refuses a wrong one), reads the server's RSS
  (``VmRSS``) and CPU time from ``/proc/<pid>``, and prints the figures and
  the ratios ours / theirs.

Two phases per library and registration type, each with a fresh server
and client:

* memory: the server's RSS before any observation and after ``--memory``
  observations (default 1000, then 5000) are established, divided by the
  number of observations; the marginal figure (growth between the first
  and the last count, divided by the difference) leaves out one-time costs
  such as lazily created tables. The figures include what the message
  layer keeps of each registration exchange for its deduplication
  (EXCHANGE_LIFETIME, 247 s), as any server holding freshly registered
  observations does.
* fan-out: ``--observations`` (1000) observations, then ``--updates`` (100)
  updates: notifications delivered and lost, total seconds, notifications
  per second, server and client CPU time per notification (the figures
  least disturbed by other load on the machine), and how much the server's
  RSS grew while sending them. With ``--rounds`` R > 1 the two libraries'
  fan-outs alternate R times on their established observations and the
  fastest round counts.

Registrations are sent both ways by default (``--mtype CON,NON``).
Confirmable is what ``Context.request`` sends when nothing else is asked
for; aiocoap 0.4.17 then sends every notification confirmable (and, with
NSTART = 1, only one at a time to each client socket), this tree mostly
non-confirmable (every 20th notification of an observation is CON). With
NON registrations both send NON notifications, which compares the
machinery alone. The observations are spread over ``--contexts`` client
sockets so that the server's NSTART (reported; 1 in both libraries) limits
CON notifications per socket, not for the whole fan-out.

Only the public aiocoap API is used on the library side.

    python3 benchmarks/bench_observe.py                    # ours and theirs, CON and NON (under 1 min)
    python3 benchmarks/bench_observe.py --mtype CON --rounds 3
    python3 benchmarks/bench_observe.py --only ours --json
"""

from __future__ import annotations

import argparse
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
REPO = HERE.parent
HOST = "127.0.0.1"


# --------------------------------------------------------------------------
# helpers shared by the roles (no aiocoap import at module level)


def library_info() -> dict:
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
        "version": dist_version or getattr(aiocoap.meta, "version", None),
        "python": sys.version.split()[0],
        "pid": os.getpid(),
        # confirmable exchanges outstanding per peer (registrations from a
        # client context, CON notifications to one client socket)
        "nstart": TransportTuning().NSTART,
    }


def uri_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


# --------------------------------------------------------------------------
# server role


def serve(host: str, port: int) -> None:
    import asyncio
    import signal

    import aiocoap
    import aiocoap.resource as resource

    class Observed(resource.ObservableResource):
        def __init__(self):
            super().__init__()
            self.state = 0
            self.count = 0

        def update_observation_count(self, newcount):
            self.count = newcount

        async def render_get(self, request):
            return aiocoap.Message(payload=b"%d" % self.state)

    class Update(resource.Resource):
        def __init__(self, observed):
            super().__init__()
            self.observed = observed

        async def render_post(self, request):
            self.observed.state += 1
            self.observed.updated_state()
            return aiocoap.Message(
                code=aiocoap.CHANGED,
                payload=b"%d %d" % (self.observed.state, self.observed.count),
            )

    class Count(resource.Resource):
        def __init__(self, observed):
            super().__init__()
            self.observed = observed

        async def render_get(self, request):
            return aiocoap.Message(payload=b"%d" % self.observed.count)

    async def main() -> None:
        observed = Observed()
        site = resource.Site()
        site.add_resource(("obs",), observed)
        site.add_resource(("ctl", "update"), Update(observed))
        site.add_resource(("ctl", "count"), Count(observed))
        context = await aiocoap.Context.create_server_context(site, bind=(host, port))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        print(json.dumps(library_info()), flush=True)
        await stop.wait()
        await context.shutdown()

    asyncio.run(main())


# --------------------------------------------------------------------------
# client role


def client(host: str, port: int, contexts: int, mtype_name: str, idle: float) -> None:
    import asyncio

    import aiocoap

    mtype = {"CON": aiocoap.CON, "NON": aiocoap.NON}[mtype_name]
    base = f"coap://{uri_host(host)}:{port}"

    async def main() -> None:
        loop = asyncio.get_running_loop()
        ctxs = [await aiocoap.Context.create_client_context() for _ in range(contexts)]
        requests: list = []  # keeps the observations alive
        last_state: list = []  # per observation: newest state counted
        received: dict = {}  # state -> observations that got it
        first_seen: dict = {}  # state -> when its first notification arrived
        counters = {"errors": 0, "stale": 0, "non_integer": 0}
        # The fan-out waits for a state to reach every observation; to tell
        # loss from slowness it only needs to know whether anything arrived
        # at all meanwhile. (A wakeup of the waiting task per notification
        # would cost the client about as much as receiving one.)
        complete = asyncio.Event()  # set when some state reached every observation
        arrived = [0]  # notifications counted so far
        everyone = [0]  # observations in the fan-out

        def make_callback(index):
            def on_notification(response):
                try:
                    state = int(response.payload)
                except ValueError:
                    counters["non_integer"] += 1
                    return
                if state <= last_state[index]:
                    counters["stale"] += 1
                    return
                last_state[index] = state
                count = received.get(state, 0)
                if not count:
                    first_seen[state] = time.perf_counter()
                received[state] = count + 1
                arrived[0] += 1
                if count + 1 >= everyone[0]:
                    complete.set()

            return on_notification

        def on_error(exc):
            counters["errors"] += 1
            counters.setdefault("last_error", repr(exc))

        async def control(path: str, code) -> bytes:
            request = aiocoap.Message(code=code, uri=base + path)
            response = await asyncio.wait_for(ctxs[0].request(request).response, 30)
            if not response.code.is_successful():
                raise RuntimeError(f"{path}: {response.code}")
            return response.payload

        async def register(n: int) -> dict:
            start = time.perf_counter()
            first = len(requests)
            failures = []
            queue = list(range(first, first + n))
            queue.reverse()

            async def one(index: int) -> None:
                message = aiocoap.Message(code=aiocoap.GET, uri=base + "/obs", observe=0, mtype=mtype)
                request = ctxs[index % contexts].request(message)
                requests[index] = request
                request.observation.register_callback(make_callback(index))
                request.observation.register_errback(on_error)
                try:
                    response = await asyncio.wait_for(request.response, 30)
                except Exception as exc:  # noqa: BLE001 - reported
                    failures.append(repr(exc))
                    return
                if not response.code.is_successful() or response.opt.observe is None:
                    failures.append(f"{response.code} observe={response.opt.observe}")
                    return
                last_state[index] = max(last_state[index], int(response.payload))

            async def worker() -> None:
                while queue:
                    await one(queue.pop())

            requests.extend([None] * n)
            last_state.extend([-1] * n)
            await asyncio.gather(*(worker() for _ in range(min(64, n))))
            seconds = time.perf_counter() - start
            await asyncio.sleep(0.2)
            server_count = int(await control("/ctl/count", aiocoap.GET))
            return {"registered": len(requests), "seconds": seconds, "server_count": server_count,
                    "failures": len(failures), "failure_sample": failures[:3]}

        async def fanout(updates: int) -> dict:
            n = everyone[0] = len(requests)
            cpu0 = time.process_time()
            start = time.perf_counter()
            round_ms = []
            first_ms = []
            lost_rounds = 0
            server_counts = set()
            for _ in range(updates):
                t0 = time.perf_counter()
                state, count = map(int, (await control("/ctl/update", aiocoap.POST)).split())
                server_counts.add(count)
                while received.get(state, 0) < n:
                    complete.clear()
                    before = arrived[0]
                    try:
                        await asyncio.wait_for(complete.wait(), idle)
                    except asyncio.TimeoutError:
                        if arrived[0] == before:  # nothing for `idle` seconds
                            lost_rounds += 1
                            break
                round_ms.append((time.perf_counter() - t0) * 1e3)
                if state in first_seen:
                    first_ms.append((first_seen[state] - t0) * 1e3)
            seconds = time.perf_counter() - start
            cpu = time.process_time() - cpu0
            last = state
            await asyncio.sleep(idle)  # late (retransmitted) notifications still count
            delivered = sum(received.get(s, 0) for s in range(last - updates + 1, last + 1))
            round_ms.sort()
            first_ms.sort()
            return {
                "observations": n, "updates": updates, "expected": n * updates,
                "delivered": delivered, "lost": n * updates - delivered,
                "rounds_with_loss": lost_rounds, "seconds": seconds,
                "client_cpu_s": cpu, "server_counts": sorted(server_counts),
                "round_ms_median": round_ms[len(round_ms) // 2],
                "round_ms_max": round_ms[-1],
                "first_ms_median": first_ms[len(first_ms) // 2] if first_ms else None,
                **counters,
            }

        info = library_info()
        info["count"] = int(await control("/ctl/count", aiocoap.GET))
        print(json.dumps(info), flush=True)
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            words = line.split()
            if not words or words[0] == "quit":
                break
            if words[0] == "register":
                result = await register(int(words[1]))
            elif words[0] == "fanout":
                result = await fanout(int(words[1]))
            else:
                result = {"error": f"unknown command {line!r}"}
            print(json.dumps(result), flush=True)
        for ctx in ctxs:
            await ctx.shutdown()

    asyncio.run(main())


# --------------------------------------------------------------------------
# driver (does not import aiocoap)


def free_port(host: str) -> int:
    """A port free for UDP and TCP on ``host`` (servers may listen on both)."""
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
    raise RuntimeError("no free port")


def proc_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Role:
    """One role process with line-based JSON I/O."""

    def __init__(self, which: str, argv_tail: list, workdir: str, timeout: float):
        self.which = which
        if which == "ours":
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join(
                [str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
            argv = [sys.executable, str(HERE / "bench_observe.py"), *argv_tail]
            cwd = str(REPO)
        else:
            env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
            from _reference import reference_python  # the driver runs from this directory

            argv = [reference_python(), "-I", str(Path(workdir) / "bench_observe.py"), *argv_tail]
            cwd = workdir
        self.stderr = tempfile.TemporaryFile()
        self.process = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=self.stderr)
        self.info = self.read(timeout)
        library = Path(self.info["library"]).resolve()
        if (which == "ours") != library.is_relative_to(REPO):
            self.stop()
            raise SystemExit(f"{which}: imported the wrong aiocoap ({library})")

    def read(self, timeout: float) -> dict:
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        line = self.process.stdout.readline() if ready else b""
        if not line:
            self.stderr.seek(0)
            err = self.stderr.read().decode(errors="replace")
            self.stop()
            raise RuntimeError(f"{self.which} {self.process.args[2:]}: no answer within "
                               f"{timeout} s; its stderr:\n{err}")
        return json.loads(line)

    def command(self, text: str, timeout: float) -> dict:
        self.process.stdin.write(text.encode() + b"\n")
        self.process.stdin.flush()
        return self.read(timeout)

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                self.process.stdin.write(b"quit\n")
                self.process.stdin.flush()
            except OSError:
                pass
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()
        self.stderr.close()


class Pair:
    """A server process and a client process of one library."""

    def __init__(self, which: str, args, workdir: str, mtype: str):
        port = free_port(args.host)
        self.server = Role(which, ["--role", "server", "--host", args.host, "--port", str(port)],
                           workdir, 30)
        try:
            self.client = Role(which, ["--role", "client", "--host", args.host, "--port", str(port),
                                       "--contexts", str(args.contexts), "--mtype", mtype,
                                       "--idle", str(args.idle)], workdir, 30)
        except BaseException:
            self.server.stop()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.client.stop()
        self.server.stop()


def register_checked(pair: Pair, n: int, total: int) -> dict:
    result = pair.client.command(f"register {n}", 300)
    if result["failures"] or result["server_count"] != total:
        raise RuntimeError(f"registration of {n} (total {total}) failed: {result}")
    return result


def measure_memory(which: str, args, workdir: str, mtype: str) -> dict:
    """Server RSS with 0 and then ``args.memory`` observations established."""
    with Pair(which, args, workdir, mtype) as pair:
        time.sleep(0.3)
        points = [{"observations": 0, "rss_kib": proc_rss_kib(pair.server.pid)}]
        total = 0
        for target in args.memory:
            reg = register_checked(pair, target - total, target)
            total = target
            time.sleep(0.3)
            points.append({"observations": total, "rss_kib": proc_rss_kib(pair.server.pid),
                           "register_s": reg["seconds"]})
        return {"library": pair.server.info, "memory": points}


def fanout_once(pair: Pair, updates: int) -> dict:
    """One fan-out of ``updates`` updates on an established pair."""
    rss_before = proc_rss_kib(pair.server.pid)
    cpu_before = proc_cpu_s(pair.server.pid)
    client_cpu_before = proc_cpu_s(pair.client.pid)
    result = pair.client.command(f"fanout {updates}", 600)
    result["server_cpu_s"] = proc_cpu_s(pair.server.pid) - cpu_before
    result["client_cpu_s_proc"] = proc_cpu_s(pair.client.pid) - client_cpu_before
    result["server_rss_growth_kib"] = proc_rss_kib(pair.server.pid) - rss_before
    result["rate"] = result["delivered"] / result["seconds"]
    return result


def measure(libs: list, args, workdir: str, mtype: str) -> dict:
    """Memory phase for each library, then ``args.rounds`` fan-outs of each,
    alternating between the libraries (both pairs stay up, only one works
    at a time), so a change in the machine's load hits both alike; the
    round with the highest rate counts."""
    out = {which: measure_memory(which, args, workdir, mtype) for which in libs}
    pairs: dict = {}
    try:
        for which in libs:
            pairs[which] = Pair(which, args, workdir, mtype)
            register_checked(pairs[which], args.observations, args.observations)
            out[which]["fanout_rounds"] = []
        time.sleep(0.3)
        for _ in range(args.rounds):
            for which in libs:
                out[which]["fanout_rounds"].append(fanout_once(pairs[which], args.updates))
    finally:
        for pair in pairs.values():
            pair.__exit__()
    for which in libs:
        out[which]["fanout"] = max(out[which]["fanout_rounds"], key=lambda r: r["rate"])
    return out


def derived(result: dict) -> dict:
    mem = result["memory"]
    f = result["fanout"]
    delivered = max(f["delivered"], 1)
    d = {
        "rate": f["rate"],
        "rates": [r["rate"] for r in result["fanout_rounds"]],
        "server_cpu_us": f["server_cpu_s"] / delivered * 1e6,
        "client_cpu_us": f["client_cpu_s_proc"] / delivered * 1e6,
        # the first fan-out's: later ones reuse memory the first one took
        "rss_growth_mib": result["fanout_rounds"][0]["server_rss_growth_kib"] / 1024,
        "per_obs": {},
    }
    for point in mem[1:]:
        d["per_obs"][point["observations"]] = ((point["rss_kib"] - mem[0]["rss_kib"]) * 1024
                                               / point["observations"])
    if len(mem) > 2:
        d["marginal"] = ((mem[-1]["rss_kib"] - mem[1]["rss_kib"]) * 1024
                         / (mem[-1]["observations"] - mem[1]["observations"]))
    return d


def print_report(results: dict, args) -> None:
    for mtype, by_lib in results.items():
        d = {which: derived(r) for which, r in by_lib.items()}
        print(f"\n== {mtype} registrations; fan-out: {args.observations} observations over "
              f"{args.contexts} client sockets, {args.updates} updates"
              + (f", best of {args.rounds} rounds" if args.rounds > 1 else "") + " ==")
        for which, r in by_lib.items():
            lib = r["library"]
            print(f"  {which:6s} aiocoap {lib['version']} ({lib['library']}), Python {lib['python']},"
                  f" NSTART {lib['nstart']}")
        print(f"  {'':7s}{'notif/s':>9s} {'total s':>8s} {'delivered':>10s} {'lost':>6s} "
              f"{'srv us/n':>9s} {'cli us/n':>9s} {'1st ms':>7s} {'last ms':>8s} {'RSS+ MiB':>9s}")
        for which, r in by_lib.items():
            f = r["fanout"]
            print(f"  {which:7s}{d[which]['rate']:9,.0f} {f['seconds']:8.2f} {f['delivered']:10,d} "
                  f"{f['lost']:6,d} {d[which]['server_cpu_us']:9.1f} {d[which]['client_cpu_us']:9.1f} "
                  f"{f['first_ms_median'] or 0:7.1f} {f['round_ms_median']:8.1f} "
                  f"{d[which]['rss_growth_mib']:9.1f}"
                  + ("   rounds: " + ", ".join(f"{x:,.0f}" for x in d[which]["rates"])
                     if args.rounds > 1 else ""))
        for which, r in by_lib.items():
            f = r["fanout"]
            odd = {k: f[k] for k in ("errors", "stale", "non_integer", "rounds_with_loss", "last_error")
                   if f.get(k)}
            if f["server_counts"] != [f["observations"]]:
                odd["server_counts"] = f["server_counts"]
            if odd:
                print(f"  NOTE {which}: {odd}")
        print("  (srv / cli us/n: CPU time of the server / client process per delivered notification;"
              "\n   1st / last ms: median time from an update's POST to its first / last"
              " notification;\n   RSS+: growth of the server's RSS during the first fan-out)")
        print(f"\n  {'':7s}{'RSS at 0':>10s} " + " ".join(f"{f'at {n}':>10s}" for n in args.memory)
              + "   bytes per observation: " + " ".join(f"{f'at {n}':>7s}" for n in args.memory)
              + (f" {'marginal':>9s}" if len(args.memory) > 1 else ""))
        for which, r in by_lib.items():
            mem = r["memory"]
            cols = " ".join(f"{p['rss_kib'] / 1024:6.1f} MiB" for p in mem)
            per = " ".join(f"{d[which]['per_obs'][n]:7.0f}" for n in args.memory)
            marginal = f" {d[which]['marginal']:9.0f}" if "marginal" in d[which] else ""
            print(f"  {which:7s}{cols}   {'':23s}{per}{marginal}")
        if "marginal" in next(iter(d.values())):
            print(f"  (marginal: RSS growth from {args.memory[0]} to {args.memory[-1]} observations, "
                  "divided by the difference)")
        if set(by_lib) == {"ours", "theirs"}:
            o, t = d["ours"], d["theirs"]
            print(f"\n  ours / theirs: notifications/s {o['rate'] / t['rate']:.2f}x (target >= 3x); "
                  f"CPU per notification: server {t['server_cpu_us'] / o['server_cpu_us']:.2f}x less, "
                  f"server + client "
                  f"{(t['server_cpu_us'] + t['client_cpu_us']) / (o['server_cpu_us'] + o['client_cpu_us']):.2f}x less")
            key = "marginal" if "marginal" in o else None
            figures = [(f"at {n}", o["per_obs"][n], t["per_obs"][n]) for n in args.memory]
            if key:
                figures.append(("marginal", o[key], t[key]))
            print("  memory per server-side observation (target <= 2048 B): "
                  + "; ".join(f"{label} {ob:.0f} B vs {tb:.0f} B ({tb / ob:.2f}x less)"
                              for label, ob, tb in figures))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--role", choices=("server", "client"), help=argparse.SUPPRESS)
    parser.add_argument("--host", default=HOST)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--contexts", type=int, default=10,
                        help="client contexts (sockets, peers) the observations are spread over (10)")
    parser.add_argument("--mtype", default="CON,NON",
                        help="message type(s) of the registrations, comma separated (CON,NON)")
    parser.add_argument("--idle", type=float, default=0.5,
                        help="seconds without a notification after which an update's missing "
                             "notifications count as lost (0.5)")
    parser.add_argument("--observations", type=int, default=1000, help="observations in the fan-out (1000)")
    parser.add_argument("--updates", type=int, default=100, help="updated_state() calls (100)")
    parser.add_argument("--memory", default="1000,5000",
                        help="observation counts at which the server RSS is taken (1000,5000)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="fan-outs per library, alternating; the fastest counts (1)")
    parser.add_argument("--only", choices=("ours", "theirs"))
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    if args.role == "server":
        serve(args.host, args.port)
        return 0
    if args.role == "client":
        client(args.host, args.port, args.contexts, args.mtype, args.idle)
        return 0

    args.memory = sorted(int(n) for n in args.memory.split(","))
    mtypes = [m.strip().upper() for m in args.mtype.split(",") if m.strip()]
    libs = [args.only] if args.only else ["ours", "theirs"]
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="aiocoap-ref-observe-") as workdir:
        shutil.copyfile(HERE / "bench_observe.py", Path(workdir) / "bench_observe.py")
        started = time.perf_counter()
        for mtype in mtypes:
            results[mtype] = measure(libs, args, workdir, mtype)
        elapsed = time.perf_counter() - started
    if args.json:
        print(json.dumps({"results": results, "elapsed_s": elapsed,
                          "derived": {m: {w: derived(r) for w, r in v.items()} for m, v in results.items()}}))
        return 0
    print_report(results, args)
    print(f"\n(run took {elapsed:.0f} s; load average {os.getloadavg()[0]:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
