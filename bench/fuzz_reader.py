"""The reader against hostile bytes: a seeded fuzz run of any length, counting failures.

Runs ``--cases`` mutated files per seed (a synthetic cutout and a combined file, see
``tests/fuzz_inputs.py``) through every read a user or glue makes, and prints, in one run:
cases, how many ended in a documented error, the distinct failures (an exception that is
not a :class:`~glue_spherex.errors.SpherexError`, a case over ``--max-seconds`` of CPU
(or five times that of wall time: a hang), or a
MemoryError: a case may grow the address space by at most ``--max-memory-mb``) with one example each, and the slowest case (with ``--trace-memory`` also the largest
per-case allocation peak, by tracemalloc, which makes the run several times slower). Exits 1
if any case failed. This is the release run documented in docs/errors.rst:

    .venv/bin/python bench/fuzz_reader.py --cases 50000 --seed 1

Run against another checkout (e.g. the code before the reader was bounded) by putting it
first on PYTHONPATH.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import resource
import signal
import sys
import time
import tracemalloc

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from fuzz_inputs import exercise, memory_bound, mutate, seeds, signature  # noqa: E402


class CaseTimeout(Exception):
    """A case ran longer than --max-seconds (the reader hung or crawled)."""


def _alarm(signum, frame):
    raise CaseTimeout


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=2000, help="cases per seed")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-seconds", type=float, default=2.0)
    parser.add_argument("--max-memory-mb", type=int, default=500,
                        help="address-space growth allowed per case (RLIMIT_AS)")
    parser.add_argument("--trace-memory", action="store_true",
                        help="report the largest per-case allocation peak (slow)")
    parser.add_argument("--no-glue", action="store_true", help="skip glue's product_to_data")
    args = parser.parse_args(argv)

    glue = None
    if not args.no_glue:
        from glue_spherex.plugin.datasets import product_to_data as glue
    corpus = seeds()
    for seed in corpus.values():  # imports and first-use set-up are not a case's time
        exercise(seed, glue)
    signal.signal(signal.SIGALRM, _alarm)
    rng = random.Random(args.seed)
    failures = collections.OrderedDict()
    counts = collections.Counter()
    documented = cases = 0
    slowest = (0.0, "")
    biggest = (0, "")
    start = time.perf_counter()
    for name, seed in corpus.items():
        for i in range(args.cases):
            data = mutate(seed, rng.randrange)
            case = f"{name} #{i}"
            cases += 1
            example = ""
            if args.trace_memory:
                tracemalloc.start()
            t0 = time.process_time()
            signal.setitimer(signal.ITIMER_REAL, args.max_seconds * 5)
            try:
                with memory_bound(args.max_memory_mb):
                    errors = exercise(data, glue)
                documented += bool(errors)
                failure = None
            except CaseTimeout:
                failure = f"TIMEOUT > {args.max_seconds * 5:g} s"
            except BaseException as exc:  # noqa: BLE001 -- what we count
                if isinstance(exc, KeyboardInterrupt):
                    raise
                failure = signature(exc)
                example = f"{type(exc).__name__}: {' '.join(str(exc).split())[:150]}"
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
                elapsed = time.process_time() - t0
                peak = tracemalloc.get_traced_memory()[1] if args.trace_memory else 0
                tracemalloc.stop()
            if failure is None and elapsed > args.max_seconds:
                failure = f"SLOW > {args.max_seconds:g} s"
            if failure is not None:
                counts[failure] += 1
                failures.setdefault(failure, (case, example or failure))
            slowest = max(slowest, (elapsed, case))
            biggest = max(biggest, (peak, case))
    total = time.perf_counter() - start
    print(f"cases: {cases} ({args.cases} per seed: {', '.join(corpus)}), seed {args.seed}, "
          f"{total:.1f} s ({total / cases * 1000:.1f} ms per case)")
    print(f"documented errors (SpherexError) in {documented} cases; "
          f"{cases - documented - sum(counts.values())} read without error")
    peak = (f"largest allocation peak: {biggest[0] / 2**20:.1f} MB ({biggest[1]}); "
            if args.trace_memory else "")
    print(f"slowest case: {slowest[0]:.3f} s ({slowest[1]}); {peak}process max RSS: "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    print(f"distinct failures: {len(failures)} ({sum(counts.values())} cases)")
    for failure, (case, example) in failures.items():
        print(f"  {counts[failure]:5d}  {failure}  e.g. {case}: {example}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
