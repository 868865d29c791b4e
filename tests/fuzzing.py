"""Budgets of the fuzz tests (hypothesis).

Every fuzz test states how many inputs it runs by default, sized so that
``./run-tests`` stays fast, and takes its settings from :func:`fuzz_settings`.
The environment variable ``AIOCOAP_FUZZ_BUDGET`` scales them all:

* unset or ``default``: the stated numbers;
* ``ci``: ten times as many (what ``.ci/run`` sets: a few minutes in total
  over all fuzz tests on two cores);
* a positive integer: that factor.

The long runs before a release do not go through these tests but through
``tools/fuzz-long``, which drives the targets of ``fuzz_targets.py`` with a
fixed number of inputs per parser.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

__all__ = ["BUDGET_VARIABLE", "budget_scale", "fuzz_settings", "mutation", "mutate"]

BUDGET_VARIABLE = "AIOCOAP_FUZZ_BUDGET"
_NAMED = {"default": 1, "ci": 10}


def budget_scale(value: "str | None" = None) -> int:
    """The factor the budget named by ``value`` (default: the environment
    variable) applies to every fuzz test's number of inputs."""
    if value is None:
        value = os.environ.get(BUDGET_VARIABLE, "") or "default"
    if value in _NAMED:
        return _NAMED[value]
    if value.isdigit() and int(value) > 0:
        return int(value)
    raise ValueError(f"{BUDGET_VARIABLE} must be one of {', '.join(_NAMED)} or a positive integer, not {value!r}")


def fuzz_settings(examples: int, **kwargs) -> settings:
    """hypothesis settings for a fuzz test that runs ``examples`` inputs
    under the default budget (scaled by ``AIOCOAP_FUZZ_BUDGET``). No
    deadline: the machine may be busy, and slowness is not what these tests
    look for."""
    kwargs.setdefault("suppress_health_check", [HealthCheck.too_slow, HealthCheck.filter_too_much])
    return settings(max_examples=examples * budget_scale(), deadline=None, **kwargs)


mutation = st.tuples(
    st.sampled_from(["flip", "insert", "delete", "truncate", "replace", "duplicate"]),
    st.integers(0, 10**6),
    st.integers(0, 255),
)
"""One byte-level edit for :func:`mutate`: (kind, position, byte)."""


def mutate(data: bytes, mutations) -> bytes:
    """Apply the edits drawn from :data:`mutation` to ``data`` (positions
    are taken modulo the length)."""
    out = bytearray(data)
    for kind, position, byte in mutations:
        if kind == "insert":
            out.insert(position % (len(out) + 1), byte)
            continue
        if not out:
            continue
        index = position % len(out)
        if kind == "flip":
            out[index] ^= 1 << (byte % 8)
        elif kind == "replace":
            out[index] = byte
        elif kind == "delete":
            del out[index]
        elif kind == "duplicate":
            out[index:index] = out[index : index + byte % 16]
        else:
            del out[index:]
    return bytes(out)
