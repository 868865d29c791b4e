"""The OSCORE plugtest programs of contrib/oscore-plugtest/: the server runs
as a subprocess on a free port with a copy of the shipped security
contexts, and every test of the plugtest client runs against it (in this
process, and once more as the ``plugtest-client`` program)."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys

import pytest

pytest.importorskip("cryptography")
pytest.importorskip("cbor2")
pytest.importorskip("filelock")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLUGTEST = os.path.join(REPO, "contrib", "oscore-plugtest")


def load_script(name):
    loader = importlib.machinery.SourceFileLoader(name.replace("-", "_"), os.path.join(PLUGTEST, name))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


plugtest_client = load_script("plugtest-client")
TESTS = list(plugtest_client.Plugtest.tests())


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def plugtest_server(tmp_path_factory):
    contextdir = str(tmp_path_factory.mktemp("plugtest") / "contexts")
    shutil.copytree(os.path.join(PLUGTEST, "common-context"), contextdir)
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, os.path.join(PLUGTEST, "plugtest-server"), "--bind", f"127.0.0.1:{port}",
         "--contextdir", contextdir, "--notify-interval", "0.05"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = process.stdout.readline()
        assert line.strip() == f"plugtest-server listening on 127.0.0.1:{port}", process.stderr.read()
        yield f"127.0.0.1:{port}", contextdir
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()
        process.stderr.close()
    assert process.returncode == 0
    # The clean stop stored every context's state, replay window included.
    for name in ("server-a", "server-b", "server-c"):
        with open(os.path.join(contextdir, name, "sequence.json")) as f:
            assert '"recipient-replay-window": null' not in f.read()


@pytest.mark.parametrize("number", TESTS)
async def test_plugtest(plugtest_server, number):
    hostinfo, contextdir = plugtest_server
    passed, detail = await plugtest_client.Plugtest(hostinfo, contextdir, timeout=5.0).run(number)
    assert passed, detail


def test_plugtest_client_program(plugtest_server):
    hostinfo, contextdir = plugtest_server
    result = subprocess.run(
        [sys.executable, os.path.join(PLUGTEST, "plugtest-client"), "--contextdir", contextdir, hostinfo],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith(f"{len(TESTS)} of {len(TESTS)} tests passed")
    assert "FAIL" not in result.stdout


def test_plugtest_client_lists_and_rejects():
    listing = subprocess.run(
        [sys.executable, os.path.join(PLUGTEST, "plugtest-client"), "--list"],
        capture_output=True, text=True, timeout=60,
    )
    assert listing.returncode == 0
    assert len(listing.stdout.strip().splitlines()) == len(TESTS)
    unknown = subprocess.run(
        [sys.executable, os.path.join(PLUGTEST, "plugtest-client"), "--contextdir", "x", "127.0.0.1:1", "999"],
        capture_output=True, text=True, timeout=60,
    )
    assert unknown.returncode == 2
    assert "unknown test number" in unknown.stderr


async def test_failed_tests_are_reported(plugtest_server, tmp_path):
    """Against a context directory the server does not know, the protected
    tests fail with a reason instead of passing or hanging."""
    hostinfo, _ = plugtest_server
    stray = tmp_path / "contexts"
    shutil.copytree(os.path.join(PLUGTEST, "common-context"), stray)
    shutil.rmtree(stray / "client-a")
    shutil.copytree(stray / "client-unknown", stray / "client-a")
    passed, detail = await plugtest_client.Plugtest(hostinfo, str(stray), timeout=5.0).run(1)
    assert not passed
    assert "4.01" in detail
