"""Running a test script in a network namespace of its own, for tests that
need interfaces the host does not offer (multicast over veth pairs) or
fixed ports: the namespace has its own interfaces, routes and ports."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SKIP_EXIT_CODE = 77
"""Exit code with which the setup commands say that the kernel lacks what
the test needs (e.g. ``ip link add ... type veth || exit 77``)."""


def run_in_network_namespace(setup: str, script: str) -> subprocess.CompletedProcess:
    """Run ``script`` with a fresh Python in a new network namespace after
    the shell commands ``setup``; skip where namespaces can not be made."""
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        pytest.skip("needs root with unshare and ip to make a network namespace")
    if subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode != 0:
        pytest.skip("this machine does not allow creating network namespaces")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    return subprocess.run(
        ["unshare", "-n", "--", "sh", "-ec", setup + '\nexec "$@"', "sh", sys.executable, "-c", script],
        env=env, capture_output=True, text=True, timeout=60,
    )
