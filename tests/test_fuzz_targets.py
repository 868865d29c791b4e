"""Every fuzz target of fuzz_targets.py under hypothesis: its seeds, random
bytes, and mutated seeds. The targets assert the parsers' contracts (a
result or the documented error, the same result however stream input is
cut); see fuzz_targets.py for each one. Structured inputs for some parsers
are in the other test_fuzz_* files and in test_codec_fuzz.py /
test_oscore_fuzz.py; the budget follows AIOCOAP_FUZZ_BUDGET (fuzzing.py).
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import fuzz_targets
from aiocoap.defaults import oscore_missing_modules
from fuzzing import budget_scale, fuzz_settings, mutate, mutation

pytestmark = pytest.mark.fuzz

NAMES = sorted(fuzz_targets.TARGETS)


def target(name):
    if name in fuzz_targets.OSCORE_TARGETS and oscore_missing_modules():
        pytest.skip("needs the oscore extra")
    return fuzz_targets.TARGETS[name]


@pytest.mark.parametrize("name", NAMES)
def test_seeds(name):
    run = target(name)
    found = fuzz_targets.seeds(name)
    assert found
    for data in found:
        run(data)


@pytest.mark.parametrize("name", NAMES)
@fuzz_settings(150)
@given(data=st.binary(max_size=200))
def test_random_bytes(name, data):
    target(name)(data)


@pytest.mark.parametrize("name", NAMES)
@fuzz_settings(150)
@given(choice=st.integers(0, 100), mutations=st.lists(mutation, min_size=1, max_size=5))
def test_mutated_seeds(name, choice, mutations):
    run = target(name)
    found = fuzz_targets.seeds(name)
    run(mutate(found[choice % len(found)], mutations))


def test_budget_names():
    assert budget_scale("default") == 1
    assert budget_scale("ci") > 1
    assert budget_scale("7") == 7
    with pytest.raises(ValueError, match="AIOCOAP_FUZZ_BUDGET"):
        budget_scale("lots")
