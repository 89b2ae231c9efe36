"""The archive's table rows, built from the synthetic observation plan.

Each :class:`~glue_spherex.synthetic.FrameSpec` becomes one ``spherex.plane`` row, one
``spherex.artifact`` row and one ``spherex.obscore`` row (the SIA2 columns of products doc
§5.2), with the footprint computed from the frame's WCS by ``synthetic.footprint``.  The rows
that do not depend on the server's URL are built once per process and shared by every
:class:`~glue_spherex.archive.LocalArchive`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
from astropy.time import Time

from .schema import SIA_COLUMNS

__all__ = ["Catalog", "default_catalog", "build_catalog", "EM_RANGES", "cloud_access_json"]

#: Per-detector em_min, em_max (m) and em_res_power of IRSA's SIA rows (§5.2).
EM_RANGES = {
    1: (7.45500e-07, 1.11670e-06, 39.1),
    2: (1.10330e-06, 1.64990e-06, 41.4),
    3: (1.63010e-06, 2.43460e-06, 40.6),
    4: (2.40270e-06, 3.84730e-06, 34.9),
    5: (3.81130e-06, 4.43000e-06, 111.6),
    6: (4.41150e-06, 5.00960e-06, 127.8),
}

#: Constants of every real SPHEREx SIA row.
XPOSURE_S = 113.5826
NPIX = 2040
S_RESOLUTION = 3.075
S_PIXEL_SCALE = 6.15
#: IRSA's access_estsize (kB) of a full QR2 frame.
ACCESS_ESTSIZE_KB = 71638

COLLECTIONS = ("spherex_qr2", "spherex_qr2_deep")


def cloud_access_json(key):
    """IRSA's ``cloud_access`` string, byte for byte (note: no space after ``"key":``)."""
    return ('{"aws": {"bucket_name": "nasa-irsa-spherex", '
            f'"key":"{key}", "region": "us-east-1"}}}}')


@dataclass
class Catalog:
    """The specs and the URL-independent table rows derived from them."""

    specs: list
    by_key: dict
    plane: list
    artifact: list
    obscore: list          # rows with None in place of access_url

    def table_rows(self, base_url):
        """All rows for :class:`~.adql.AdqlEngine`, with ``access_url`` on ``base_url``."""
        idx = _ACCESS_URL_INDEX
        obscore = []
        for spec, row in zip(self.specs, self.obscore):
            row = list(row)
            row[idx] = f"{base_url}/ibe/data/spherex/{spec.key}"
            obscore.append(tuple(row))
        return {"spherex.plane": self.plane, "spherex.artifact": self.artifact,
                "spherex.obscore": obscore}


def _target_name(spec):
    return f"SPS_{spec.expidn % 100000:05d}"


def build_catalog(specs, footprint=None):
    """Rows for ``specs``; ``footprint`` defaults to ``glue_spherex.synthetic.footprint``."""
    if footprint is None:
        from ..synthetic import footprint
    specs = list(specs)
    release = Time(np.array([s.mjd_beg for s in specs], float) + 45.0, format="mjd",
                   scale="utc").iso if specs else []
    plane, artifact, obscore = [], [], []
    for planeid, (spec, rel) in enumerate(zip(specs, release), start=1):
        fp = footprint(spec)
        em_min, em_max, em_res = EM_RANGES[spec.detector]
        point = f"POINT ICRS {fp['s_ra']!r} {fp['s_dec']!r}"
        plane.append((planeid, spec.obsid, fp["s_region"], point, spec.mjd_beg, spec.mjd_end,
                      em_min, em_max, spec.bandpass, spec.obs_publisher_did, "image", 2))
        artifact.append((planeid, spec.uri, "science"))
        obscore.append((
            fp["s_ra"], fp["s_dec"], "SPHEREx", "SPHEREx", "science", 2, "image",
            spec.bandpass, "Infrared", spec.obsid, S_RESOLUTION, em_min, em_max, em_res,
            "SPHEREx LVF Survey Data", None, "image/fits", ACCESS_ESTSIZE_KB, XPOSURE_S,
            fp["s_region"], spec.collection, "science", "exposure", None, None, None, None,
            None, "SPHEREx", _target_name(spec), "field", 0, 0, None, rel[:19], NPIX, NPIX,
            S_PIXEL_SCALE, 0, spec.mjd_beg, spec.mjd_end, None, None, spec.obs_publisher_did,
            fp["s_fov"], None, None, None, cloud_access_json(spec.key), None, 1,
        ))
    return Catalog(specs, {s.key: s for s in specs}, plane, artifact, obscore)


_ACCESS_URL_INDEX = [c.name for c in SIA_COLUMNS].index("access_url")
_lock = threading.Lock()
_default = None


def default_catalog():
    """The catalog of ``synthetic.observation_plan()``, built on first use (thread-safe)."""
    global _default
    with _lock:
        if _default is None:
            from ..synthetic import observation_plan
            _default = build_catalog(observation_plan())
        return _default
