#!/usr/bin/env python3
"""Run the core (UDP) benchmarks for this tree ("ours") and the reference
aiocoap ("theirs") in one go and print the figures side by side with their
ratios.

    python3 benchmarks/run_core.py                          # about 2 minutes
    python3 benchmarks/run_core.py --duration 2 --rounds 1  # quicker, noisier

What runs, each in its own processes:

* server (bench_server.py, loadgen.py): requests/s and latency of ``GET
  /bench`` under a closed-loop load of CON and of NON requests, for ours,
  theirs, libcoap's coap-server-notls (yardstick) and the bare asyncio echo
  server of bench_echo_ceiling.py (the ceiling of any pure-asyncio server);
* client (bench_client.py): sequential GETs per second and the time for
  1000 concurrent GETs, both against libcoap's server.

"ours" is ``python3`` (``--ours-python``) with this repository first on
PYTHONPATH; "theirs" is the reference interpreter of ``_reference.py`` (``--ref-python``)
without any PYTHON* variable, started in an empty temporary directory, so it
can not import this tree -- each run reports the aiocoap it imported and this
script checks it. A part that fails (e.g. ours while the protocol core is
not there yet) is reported as missing and the rest still runs.

The targets checked at the end: our server at least 4x theirs in requests/s
at an equal or lower p99 latency, our client at least 2x theirs in
sequential GETs/s. The machine has two cores shared by the server, the load
generator and anything else running; the ``cpu us/req`` column (server CPU
time per request) is the figure least disturbed by other load.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _servers  # noqa: E402

SERVER_TARGET = 4.0
CLIENT_TARGET = 2.0


def run_json(label: str, argv: list, env: dict | None, cwd: str | None, timeout: float) -> dict:
    """Run one benchmark script with ``--json``; return its JSON, or
    ``{"error": ...}`` if it failed."""
    print(f"[run_core] {label} ...", file=sys.stderr, flush=True)
    started = time.monotonic()
    try:
        completed = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True,
                                   timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    lines = completed.stdout.strip().splitlines()
    if completed.returncode != 0 or not lines:
        tail = "\n".join(completed.stderr.strip().splitlines()[-6:])
        return {"error": f"exit {completed.returncode}: {tail}"}
    result = json.loads(lines[-1])
    print(f"[run_core] {label} done in {time.monotonic() - started:.0f} s", file=sys.stderr,
          flush=True)
    return result


def check_library(result: dict, which: str) -> dict:
    """Refuse figures measured with the wrong aiocoap."""
    library = (result.get("library") or {}).get("library")
    if "error" in result or library is None:
        return result
    inside = Path(library).resolve().is_relative_to(_servers.REPO)
    if (which == "ours") != inside:
        return {"error": f"{which} run imported the wrong aiocoap: {library}"}
    return result


def best_of(runs: list) -> dict:
    """Merge the rounds of one server: per message type, the run with the
    highest rate (the one least disturbed by other load); all runs are kept
    under ``rounds``."""
    good = [r for r in runs if "error" not in r]
    if not good:
        return runs[-1]
    key = "libcoap" if "libcoap" in good[0] else "server"
    merged = dict(good[0])
    best = {}
    for run in good:
        for mtype, figures in run.get(key, {}).items():
            if "requests_per_s" not in figures:
                continue
            if mtype not in best or figures["requests_per_s"] > best[mtype]["requests_per_s"]:
                best[mtype] = figures
    merged[key] = best or good[0].get(key, {})
    merged["rounds"] = runs
    return merged


def fmt(value, spec: str = ",.0f", missing: str = "-") -> str:
    if value is None:
        return missing
    try:
        return format(value, spec)
    except (TypeError, ValueError):
        return missing


def ratio(a, b):
    if a is None or b is None or not b:
        return None
    return a / b


def server_figures(result: dict, mtype: str) -> dict | None:
    runs = result.get("server") or result.get("libcoap") or {}
    run = runs.get(mtype)
    if not run or "requests_per_s" not in run:
        return None
    return run


def version_label(result: dict, fallback: str) -> str:
    library = result.get("library") or {}
    version = library.get("dist_version") or library.get("meta_version")
    return f"{fallback} {version}" if version else fallback


def print_report(results: dict, args) -> list:
    """Print the tables; return the target lines."""
    types = [t for t in ("CON", "NON") if t in args.types]
    rows = [
        ("asyncio echo ceiling", results["echo"]),
        ("libcoap coap-server-notls", results["libcoap"]),
        (f"theirs ({version_label(results['server_theirs'], 'aiocoap')})",
         results["server_theirs"]),
        ("ours", results["server_ours"]),
    ]
    print()
    print(f"Server: GET {_servers.PATH} ({len(_servers.PAYLOAD)}-byte payload), window "
          f"{args.window} over {args.sockets} sockets, best of {args.rounds} run(s) of "
          f"{args.duration:g} s")
    header = f"{'':28}"
    for mtype in types:
        header += f" | {mtype + ' req/s':>10} {'p50 ms':>7} {'p99 ms':>7} {'lost':>5} {'cpu us/req':>10}"
    print(header)
    for label, result in rows:
        line = f"{label[:28]:28}"
        if "error" in result or "skipped" in result.get("libcoap", {}):
            reason = result.get("error") or result["libcoap"]["skipped"]
            print(f"{line} | missing: {reason.splitlines()[-1][:90]}")
            continue
        for mtype in types:
            run = server_figures(result, mtype)
            if run is None:
                line += f" | {'-':>10} {'-':>7} {'-':>7} {'-':>5} {'-':>10}"
                continue
            line += (f" | {fmt(run['requests_per_s']):>10} {fmt(run['latency_ms_p50'], '.2f'):>7}"
                     f" {fmt(run['latency_ms_p99'], '.2f'):>7} {run['lost']:>5}"
                     f" {fmt(run.get('server_cpu_us_per_request'), '.1f'):>10}")
        print(line)
    compare = [("ours / theirs", results["server_theirs"]), ("ours / echo ceiling", results["echo"]),
               ("ours / libcoap", results["libcoap"])]
    for label, other in compare:
        line = f"{label:28}"
        for mtype in types:
            ours = server_figures(results["server_ours"], mtype)
            theirs = server_figures(other, mtype) if "error" not in other else None
            if ours is None or theirs is None:
                line += f" | {'-':>10} {'':7} {'':7} {'':5} {'':>10}"
                continue
            cpu = ratio(theirs.get("server_cpu_us_per_request"), ours.get("server_cpu_us_per_request"))
            line += (f" | {fmt(ratio(ours['requests_per_s'], theirs['requests_per_s']), '.2f') + 'x':>10}"
                     f" {'':7} {fmt(ratio(ours['latency_ms_p99'], theirs['latency_ms_p99']), '.2f') + 'x':>7}"
                     f" {'':5} {fmt(cpu, '.2f') + 'x':>10}")
        print(line)
    print("(ratio columns: req/s and p99 are ours divided by the other; cpu is the other's "
          "CPU per request divided by ours, so higher is better)")

    print()
    print(f"Client against libcoap: {args.sequential} sequential GETs, "
          f"{args.concurrent} concurrent GETs from one endpoint (best of {args.repeat}); NSTART "
          + ", ".join(f"{which} {(results[key].get('library') or {}).get('nstart', '?')}"
                      for which, key in (("theirs", "client_theirs"), ("ours", "client_ours"))))
    print(f"{'':28} | {'seq GET/s':>10} {'cpu us/req':>10} {'conc. s':>8} {'conc. req/s':>11}"
          f" {'failures':>9}")
    for label, key in ((f"theirs ({version_label(results['client_theirs'], 'aiocoap')})",
                        "client_theirs"), ("ours", "client_ours")):
        result = results[key]
        if "error" in result:
            print(f"{label[:28]:28} | missing: {result['error'].splitlines()[-1][:90]}")
            continue
        seq, conc = result["sequential"], result["concurrent"]
        print(f"{label[:28]:28} | {fmt(seq['requests_per_s']):>10}"
              f" {fmt(seq.get('cpu_us_per_request'), '.0f'):>10} {fmt(conc['best_s'], '.3f'):>8}"
              f" {fmt(conc['requests_per_s_best']):>11} {sum(conc['failures']):>9}")
    ours_c, theirs_c = results["client_ours"], results["client_theirs"]
    if "error" not in ours_c and "error" not in theirs_c:
        seq_ratio = ratio(ours_c["sequential"]["requests_per_s"],
                          theirs_c["sequential"]["requests_per_s"])
        cpu_ratio = ratio(theirs_c["sequential"].get("cpu_us_per_request"),
                          ours_c["sequential"].get("cpu_us_per_request"))
        conc_ratio = ratio(theirs_c["concurrent"]["best_s"], ours_c["concurrent"]["best_s"])
        print(f"{'ours / theirs':28} | {fmt(seq_ratio, '.2f') + 'x':>10} {fmt(cpu_ratio, '.2f') + 'x':>10}"
              f" {fmt(conc_ratio, '.2f') + 'x':>8}  (cpu and concurrent: theirs / ours)")

    targets = []
    for mtype in types:
        ours = server_figures(results["server_ours"], mtype)
        theirs = server_figures(results["server_theirs"], mtype)
        if ours is None or theirs is None:
            targets.append(f"server {mtype} req/s >= {SERVER_TARGET:g}x theirs: not measured")
            continue
        r = ratio(ours["requests_per_s"], theirs["requests_per_s"])
        met = r is not None and r >= SERVER_TARGET and ours["latency_ms_p99"] <= theirs["latency_ms_p99"]
        targets.append(
            f"server {mtype} req/s >= {SERVER_TARGET:g}x theirs at <= p99: {r:.2f}x, p99 "
            f"{ours['latency_ms_p99']:.2f} vs {theirs['latency_ms_p99']:.2f} ms -> "
            f"{'met' if met else 'NOT met'}")
        cpu = ratio(theirs.get("server_cpu_us_per_request"), ours.get("server_cpu_us_per_request"))
        if cpu is not None:
            # the same comparison by CPU cost, which other load disturbs less
            targets.append(
                f"  (by server CPU per request: {ours['server_cpu_us_per_request']:.0f} vs "
                f"{theirs['server_cpu_us_per_request']:.0f} us -> {cpu:.2f}x)")
    if "error" in ours_c or "error" in theirs_c:
        targets.append(f"client sequential GET/s >= {CLIENT_TARGET:g}x theirs: not measured")
    else:
        r = ratio(ours_c["sequential"]["requests_per_s"], theirs_c["sequential"]["requests_per_s"])
        targets.append(f"client sequential GET/s >= {CLIENT_TARGET:g}x theirs: {r:.2f}x -> "
                       f"{'met' if r >= CLIENT_TARGET else 'NOT met'}")
        cpu = ratio(theirs_c["sequential"].get("cpu_us_per_request"),
                    ours_c["sequential"].get("cpu_us_per_request"))
        if cpu is not None:
            targets.append(
                f"  (by client CPU per request: {ours_c['sequential']['cpu_us_per_request']:.0f} vs "
                f"{theirs_c['sequential']['cpu_us_per_request']:.0f} us -> {cpu:.2f}x)")
    print()
    print("Targets")
    for line in targets:
        print("  " + line)
    return targets


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per server run")
    parser.add_argument("--rounds", type=int, default=2,
                        help="server runs per server; the best one is reported")
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument("--sockets", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=1.0)
    parser.add_argument("--types", default="CON,NON")
    parser.add_argument("--sequential", type=int, default=2000)
    parser.add_argument("--concurrent", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio",
                        help="event loop of the aiocoap servers and clients")
    parser.add_argument("--ours-python", default=sys.executable)
    parser.add_argument("--ref-python", default=None)
    parser.add_argument("--json-out", help="also write all figures to this JSON file")
    args = parser.parse_args(argv)
    args.types = [t.strip().upper() for t in args.types.split(",") if t.strip()]

    load_args = ["--duration", str(args.duration), "--warmup", str(args.warmup),
                 "--window", str(args.window), "--sockets", str(args.sockets),
                 "--timeout", str(args.timeout), "--types", ",".join(args.types), "--json"]
    client_args = ["--sequential", str(args.sequential), "--concurrent", str(args.concurrent),
                   "--repeat", str(args.repeat), "--loop", args.loop, "--json"]
    server_timeout = len(args.types) * (args.warmup + args.duration + args.timeout + 5) + 60
    client_timeout = 240
    ours = _servers.ours_env(args.ours_python)
    theirs = _servers.theirs_env(args.ref_python)
    bench = lambda name: str(HERE / name)  # noqa: E731

    load_before = os.getloadavg()
    started = time.monotonic()
    server_runs: dict = {"server_theirs": [], "server_ours": [], "libcoap": [], "echo": []}
    for round_number in range(1, args.rounds + 1):
        # the servers take turns, so that a burst of other load on the
        # machine does not hit one of them only
        tag = f" (round {round_number}/{args.rounds})"
        server_runs["server_theirs"].append(check_library(run_json(
            "server theirs" + tag,
            [theirs[0], bench("bench_server.py"), "--loop", args.loop, *load_args],
            theirs[1], theirs[2], server_timeout), "theirs"))
        server_runs["server_ours"].append(check_library(run_json(
            "server ours" + tag,
            [ours[0], bench("bench_server.py"), "--loop", args.loop, *load_args],
            ours[1], ours[2], server_timeout), "ours"))
        if _servers.libcoap_server_binary() is None:
            server_runs["libcoap"].append({"error": "coap-server-notls not installed (libcoap3-bin)"})
        else:
            server_runs["libcoap"].append(run_json(
                "server libcoap" + tag,
                [sys.executable, bench("bench_server.py"), "--only-libcoap", *load_args],
                None, None, server_timeout))
        server_runs["echo"].append(run_json(
            "echo ceiling" + tag,
            [sys.executable, bench("bench_echo_ceiling.py"), "--loop", args.loop, *load_args],
            None, None, server_timeout))
    results = {key: best_of(runs) for key, runs in server_runs.items()}
    if _servers.libcoap_server_binary() is None:
        missing = {"error": "coap-server-notls not installed (libcoap3-bin)"}
        results["client_theirs"] = results["client_ours"] = missing
    else:
        results["client_theirs"] = check_library(run_json(
            "client theirs", [theirs[0], bench("bench_client.py"), *client_args],
            theirs[1], theirs[2], client_timeout), "theirs")
        results["client_ours"] = check_library(run_json(
            "client ours", [ours[0], bench("bench_client.py"), *client_args],
            ours[1], ours[2], client_timeout), "ours")
    elapsed = time.monotonic() - started

    load_after = os.getloadavg()
    targets = print_report(results, args)
    print(f"\n(total {elapsed:.0f} s; machine load average {load_before[0]:.1f} before, "
          f"{load_after[0]:.1f} after -- above 1 means other processes competed for the 2 cores)")
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(
            {"args": vars(args), "results": results, "targets": targets,
             "loadavg": [load_before, load_after],
             "when": time.strftime("%Y-%m-%d %H:%M:%S")}, indent=1))


if __name__ == "__main__":
    main()
