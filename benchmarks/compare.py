#!/usr/bin/env python3
"""Run one benchmark script under this tree and under a reference aiocoap
installation, and print both figures and their ratio.

    python3 benchmarks/compare.py benchmarks/bench_codec.py

* "ours": ``python3`` (or ``--ours-python``) with this repository first on
  ``PYTHONPATH``, started in the repository root.
* "theirs": the reference interpreter of ``_reference.py`` (or ``--ref-python``) in
  isolated mode (``-I``: no ``PYTHONPATH``, no user site, script directory
  not on ``sys.path``), with a copy of the script in a fresh temporary
  directory as working directory, so that this tree can not be imported by
  accident. The script reports which ``aiocoap`` it imported; compare.py
  refuses to compare if the reference run loaded this tree.

The benchmark script must accept ``--json`` and print a JSON object whose
``ops_per_s`` maps case names to either a number or a mapping of
measurement names to numbers (operations per second, higher is better).
Further arguments after ``--`` are passed to both runs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from _reference import reference_python

REPO = Path(__file__).resolve().parent.parent


def _run(cmd: list[str], *, cwd: str, env: dict) -> dict:
    completed = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if completed.returncode != 0:
        sys.stderr.write(completed.stderr)
        raise SystemExit(f"benchmark failed: {' '.join(cmd)} (exit {completed.returncode})")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def run_ours(python: str, script: Path, extra: list[str]) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    )
    return _run([python, str(script), "--json", *extra], cwd=str(REPO), env=env)


def run_theirs(python: str, script: Path, extra: list[str]) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    with tempfile.TemporaryDirectory(prefix="aiocoap-ref-bench-") as tmp:
        copy = Path(tmp) / script.name
        shutil.copyfile(script, copy)
        result = _run([python, "-I", str(copy), "--json", *extra], cwd=tmp, env=env)
    if Path(result["library"]).resolve().is_relative_to(REPO):
        raise SystemExit(f"reference run imported this tree ({result['library']})")
    return result


def _flatten(ops_per_s: dict) -> dict[str, float]:
    flat = {}
    for case, value in ops_per_s.items():
        if isinstance(value, dict):
            for what, ops in value.items():
                flat[f"{case} {what}"] = ops
        else:
            flat[case] = value
    return flat


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("script", type=Path, help="benchmark script (accepting --json)")
    parser.add_argument("--ours-python", default=sys.executable)
    parser.add_argument("--ref-python", default=None)
    parser.add_argument("extra", nargs=argparse.REMAINDER, help="arguments after -- go to the script")
    args = parser.parse_args(argv)
    extra = args.extra[1:] if args.extra[:1] == ["--"] else args.extra
    script = args.script.resolve()

    ours = run_ours(args.ours_python, script, extra)
    theirs = run_theirs(args.ref_python or reference_python(), script, extra)

    print(f"script: {script.relative_to(REPO) if script.is_relative_to(REPO) else script}")
    print(f"ours:   aiocoap {ours['version']} ({ours['library']}), Python {ours['python']}")
    print(f"theirs: aiocoap {theirs['version']} ({theirs['library']}), Python {theirs['python']}")
    ours_flat = _flatten(ours["ops_per_s"])
    theirs_flat = _flatten(theirs["ops_per_s"])
    width = max(len(k) for k in ours_flat)
    print(f"{'measurement':{width}s} {'ours ops/s':>12s} {'theirs ops/s':>13s} {'ratio':>7s}")
    for key, ops in ours_flat.items():
        ref = theirs_flat.get(key)
        if ref is None:
            print(f"{key:{width}s} {ops:12.0f} {'-':>13s} {'-':>7s}")
        else:
            print(f"{key:{width}s} {ops:12.0f} {ref:13.0f} {ops / ref:6.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
