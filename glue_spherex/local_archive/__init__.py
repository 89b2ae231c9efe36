"""A local IRSA-compatible archive: TAP, SIA2, file and cutout services on 127.0.0.1.

It serves the synthetic SPHEREx observation plan (:mod:`glue_spherex.local_archive.synthetic`) with IRSA's
URL layout, evaluates ADQL with a real SQL engine (SQLite via sqlglot, spherical geometry
from ``spherical-geometry``), and injects seeded faults on request::

    from glue_spherex.local_archive import LocalArchive, FaultConfig
    with LocalArchive(faults=FaultConfig(latency=0.15, p_503=0.1)) as arch:
        pyvo.dal.TAPService(arch.tap_url).search(adql)

Command line: ``glue-spherex archive --port 8080`` or ``python -m glue_spherex.local_archive``.
"""

from .faults import FaultConfig
from .server import LocalArchive, LogRecord

__all__ = ["LocalArchive", "FaultConfig", "LogRecord"]
