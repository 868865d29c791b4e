"""Find or create the reference installation the benchmarks compare against:
aiocoap 0.4.17 in a virtual environment of its own, outside this tree, so
that our tests and our side of a benchmark can never import it.

Where it lives, first match wins:

1. ``$AIOCOAP_REF_PYTHON``: an interpreter that already has it;
2. ``$AIOCOAP_REF_VENV``: a virtual environment directory (made if missing);
3. ``${XDG_CACHE_HOME:-~/.cache}/aiocoap-bench/ref-0.4.17`` (made if
   missing).

A missing environment is created with ``python3 -m venv`` and
``pip install aiocoap[...]==0.4.17`` with the extras the benchmarks use
(OSCORE, DTLS, WebSockets, link format, pretty printing), which takes a
minute the first time. This module does not import aiocoap.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REFERENCE_VERSION = "0.4.17"
REFERENCE_EXTRAS = "linkheader,oscore,prettyprint,tinydtls,ws"


def _default_venv() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "aiocoap-bench" / f"ref-{REFERENCE_VERSION}"


def _installed_version(python: str) -> str | None:
    try:
        out = subprocess.run(
            [python, "-I", "-c", "import aiocoap.meta; print(aiocoap.meta.version)"],
            capture_output=True, text=True, timeout=60, cwd="/",
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def reference_python(create: bool = True) -> str:
    """The interpreter of the reference aiocoap; creates its environment
    when it does not exist yet (unless ``create`` is false, in which case a
    missing one raises FileNotFoundError)."""
    explicit = os.environ.get("AIOCOAP_REF_PYTHON")
    if explicit:
        if _installed_version(explicit) != REFERENCE_VERSION:
            raise FileNotFoundError(f"$AIOCOAP_REF_PYTHON={explicit} has no aiocoap {REFERENCE_VERSION}")
        return explicit
    venv = Path(os.environ.get("AIOCOAP_REF_VENV") or _default_venv())
    python = venv / "bin" / "python"
    if python.exists() and _installed_version(str(python)) == REFERENCE_VERSION:
        return str(python)
    if not create:
        raise FileNotFoundError(f"no reference aiocoap {REFERENCE_VERSION} in {venv}")
    print(f"creating the reference environment (aiocoap {REFERENCE_VERSION}) in {venv}", file=sys.stderr)
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet",
         f"aiocoap[{REFERENCE_EXTRAS}]=={REFERENCE_VERSION}"],
        check=True,
    )
    if _installed_version(str(python)) != REFERENCE_VERSION:
        raise RuntimeError(f"installing aiocoap {REFERENCE_VERSION} into {venv} failed")
    return str(python)


if __name__ == "__main__":
    print(reference_python())
