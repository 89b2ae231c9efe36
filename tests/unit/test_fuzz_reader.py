"""Fuzz test: hostile variants of real synthetic products meet only documented errors.

hypothesis drives the mutator of :mod:`fuzz_inputs` (card values and keywords biased to
sizes, counts, offsets and the WCS; bytes; table rows and heap; blocks; truncation; gzip) on
a synthetic cutout of each layout and on a combined file. Each case is read every way a user or glue reads
a file (:func:`fuzz_inputs.exercise`) and must end in nothing or in
:class:`~glue_spherex.errors.SpherexError`, in under two seconds, growing the address space
by less than 500 MB (the time is CPU time, so that a loaded machine does not fail a case;
a hang or a crawl uses CPU). CI runs a fixed set of cases (``derandomize``); a release run sets
``GLUE_SPHEREX_FUZZ_EXAMPLES`` (random cases, see docs/errors.rst) or runs
``bench/fuzz_reader.py``.
"""

from __future__ import annotations

import os
import time

import pytest
from fuzz_inputs import exercise, memory_bound, mutate, seeds
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from glue_spherex.plugin.datasets import product_to_data

RELEASE = os.environ.get("GLUE_SPHEREX_FUZZ_EXAMPLES")
EXAMPLES = int(RELEASE or 1000)  # per seed
SECONDS = 2.0
MEGABYTES = 500


@pytest.fixture(scope="module", autouse=True)
def warm():
    for seed in seeds().values():  # build the seeds and import everything once
        exercise(seed, product_to_data)


@pytest.mark.parametrize("seed", ["cutout", "combined", "cutout_r7"])
def test_the_seeds_read_without_error(seed):
    errors = exercise(seeds()[seed], product_to_data)
    # a single cutout is not a combined file: read_combined says so, nothing else fails
    assert [str(e) for e in errors] == (
        [] if seed == "combined" else [f"<{len(seeds()[seed])} bytes>: not a combined cutout "
                                       "file (no CUTOUT_INFO)"])


@pytest.mark.timeout(900)
@pytest.mark.parametrize("seed", ["cutout", "combined", "cutout_r7"])
@settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=not RELEASE,
          suppress_health_check=list(HealthCheck))
@given(data=st.data())
@pytest.mark.slow
def test_hostile_bytes_meet_only_documented_errors(seed, data):
    case = mutate(seeds()[seed], lambda n: data.draw(st.integers(0, n - 1)))
    t0 = time.process_time()
    with memory_bound(MEGABYTES):  # MemoryError beyond: not a SpherexError, so a failure
        exercise(case, product_to_data)  # anything but a SpherexError propagates
    elapsed = time.process_time() - t0
    assert elapsed < SECONDS, f"a case took {elapsed:.2f} s of CPU"
