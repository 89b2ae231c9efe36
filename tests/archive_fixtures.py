"""Pytest fixtures that run the local IRSA-compatible archive (loaded from conftest.py).

``archive``       one fault-free archive for the whole session; tests that look at its request
                  log should only look at records added after they start (``arch.log[n0:]``).
``make_archive``  a factory: ``make_archive(p_503=0.2, latency=0.1, seed=1)`` starts a fresh
                  archive with those :class:`~glue_spherex.local_archive.FaultConfig` settings
                  (plus ``seed``, ``gzip_cutouts``, ``specs`` and ``cutout_flags``); all are stopped afterwards.
"""

import pytest

from glue_spherex.local_archive import FaultConfig, LocalArchive


@pytest.fixture(scope="session")
def archive():
    with LocalArchive() as arch:
        arch.wait_ready()
        yield arch


@pytest.fixture
def make_archive():
    made = []

    def make(seed=0, gzip_cutouts=False, specs=None, cutout_flags="compressed", **fault_kwargs):
        arch = LocalArchive(faults=FaultConfig(**fault_kwargs), seed=seed,
                            gzip_cutouts=gzip_cutouts, specs=specs,
                            cutout_flags=cutout_flags).start()
        made.append(arch)
        return arch.wait_ready()

    yield make
    for arch in made:
        arch.stop()
