"""The test suite's port helper: ports that no parallel worker's client
sockets can take between the probe and the server's bind (CI failed with
EADDRINUSE when they came from bind(0))."""

import os
import subprocess
import sys
from pathlib import Path

import ports


def _ephemeral_low():
    return ports._ephemeral_low()


def test_ports_come_from_below_the_ephemeral_range_with_their_neighbours_free():
    port = ports.free_port()
    assert port + 3001 < _ephemeral_low()
    assert port % 2 == 0
    for offset in (0, 1, 3000, 3001):
        assert ports._free(ports.socket.AF_INET, "127.0.0.1", port + offset)


def test_consecutive_calls_give_different_ports():
    taken = {ports.free_port() for _ in range(20)}
    assert len(taken) == 20


def test_parallel_workers_draw_from_disjoint_blocks_whose_neighbours_are_never_base_ports():
    script = "import ports; print(*ports._block)"
    blocks = []
    for worker in range(4):
        env = dict(os.environ, PYTEST_XDIST_WORKER=f"gw{worker}", PYTEST_XDIST_WORKER_COUNT="4")
        out = subprocess.run(
            [sys.executable, "-c", script], cwd=Path(__file__).parent, env=env, capture_output=True, text=True, check=True
        ).stdout.split()
        blocks.append([int(port) for port in out])
    bases = [set(block) for block in blocks]
    for i, mine in enumerate(bases):
        assert mine
        for j, theirs in enumerate(bases):
            if i != j:
                assert not mine & theirs
        neighbours = {port + offset for port in mine for offset in (1, 3000, 3001)}
        assert not neighbours & set().union(*bases)
