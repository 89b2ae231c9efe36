"""The archive's table rows, built from the synthetic observation plan.

Each :class:`~glue_spherex.synthetic.FrameSpec` becomes one ``spherex.plane`` row, one
``spherex.artifact`` row and one ``spherex.obscore`` row (the SIA2 columns of products doc
§5.2), with the footprint computed from the frame's WCS by ``synthetic.footprint``.  The rows
that do not depend on the server's URL are built once per process and shared by every
:class:`~glue_spherex.archive.LocalArchive`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pickle
import tempfile
import threading
from pathlib import Path

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


class Catalog:
    """The frames and the URL-independent table rows derived from them.

    Frames are kept as plain field tuples, so a pickled catalog loads, and the tables can be
    built, without importing the synthetic package (and astropy.wcs with it); :attr:`specs`
    and :attr:`by_key` make the FrameSpec objects on first use.
    """

    def __init__(self, spec_fields, keys, plane, artifact, obscore, specs=None):
        self.spec_fields = spec_fields     # FrameSpec field tuples
        self.keys = keys                   # spec.key of each frame
        self.plane = plane
        self.artifact = artifact
        self.obscore = obscore             # rows with None in place of access_url
        self._specs = specs
        self._by_key = None
        self._lock = threading.Lock()

    def __getstate__(self):
        state = dict(self.__dict__)
        for name in ("_specs", "_by_key", "_lock"):
            del state[name]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._specs = self._by_key = None
        self._lock = threading.Lock()

    @property
    def specs(self):
        """The frames, as :class:`~glue_spherex.synthetic.FrameSpec` (same order as the rows)."""
        with self._lock:
            if self._specs is None:
                from ..synthetic import FrameSpec
                self._specs = [FrameSpec(*f) for f in self.spec_fields]
            return self._specs

    @property
    def by_key(self):
        """``{key: FrameSpec}``; the key is the path below ``/ibe/data/spherex/``."""
        if self._by_key is None:
            self._by_key = dict(zip(self.keys, self.specs))
        return self._by_key

    def table_rows(self, base_url):
        """All rows for :class:`~.adql.AdqlEngine`, with ``access_url`` on ``base_url``."""
        idx = _ACCESS_URL_INDEX
        obscore = []
        for key, row in zip(self.keys, self.obscore):
            row = list(row)
            row[idx] = f"{base_url}/ibe/data/spherex/{key}"
            obscore.append(tuple(row))
        return {"spherex.plane": self.plane, "spherex.artifact": self.artifact,
                "spherex.obscore": obscore}


def _target_name(spec):
    return f"SPS_{spec.expidn % 100000:05d}"


def build_catalog(specs, footprint=None):
    """Rows for ``specs``; ``footprint`` defaults to ``glue_spherex.synthetic.footprint``."""
    import numpy as np
    from astropy.time import Time

    if footprint is None:
        from ..synthetic import footprint
    specs = list(specs)
    release = Time(np.array([s.mjd_beg for s in specs], float) + 45.0, format="mjd",
                   scale="utc").iso if specs else []
    keys = [spec.key for spec in specs]
    plane, artifact, obscore = [], [], []
    for planeid, (spec, key, rel) in enumerate(zip(specs, keys, release), start=1):
        fp = footprint(spec)
        em_min, em_max, em_res = EM_RANGES[spec.detector]
        point = f"POINT ICRS {fp['s_ra']!r} {fp['s_dec']!r}"
        plane.append((planeid, spec.obsid, fp["s_region"], point, spec.mjd_beg, spec.mjd_end,
                      em_min, em_max, spec.bandpass, spec.obs_publisher_did, "image", 2))
        artifact.append((planeid, f"ibe/data/spherex/{key}", "science"))
        obscore.append((
            fp["s_ra"], fp["s_dec"], "SPHEREx", "SPHEREx", "science", 2, "image",
            spec.bandpass, "Infrared", spec.obsid, S_RESOLUTION, em_min, em_max, em_res,
            "SPHEREx LVF Survey Data", None, "image/fits", ACCESS_ESTSIZE_KB, XPOSURE_S,
            fp["s_region"], spec.collection, "science", "exposure", None, None, None, None,
            None, "SPHEREx", _target_name(spec), "field", 0, 0, None, rel[:19], NPIX, NPIX,
            S_PIXEL_SCALE, 0, spec.mjd_beg, spec.mjd_end, None, None, spec.obs_publisher_did,
            fp["s_fov"], None, None, None, cloud_access_json(key), None, 1,
        ))
    fields = [dataclasses.astuple(spec) for spec in specs]
    return Catalog(fields, keys, plane, artifact, obscore, specs=specs)


_ACCESS_URL_INDEX = [c.name for c in SIA_COLUMNS].index("access_url")
_lock = threading.Lock()
_default = None


def _source_hash():
    """Hash of everything the default catalog derives from."""
    from importlib.metadata import version

    root = Path(__file__).resolve().parent.parent
    h = hashlib.sha256(f"{version('astropy')} {version('numpy')}".encode())
    files = sorted(root.joinpath("synthetic").glob("*.py")) + sorted(root.joinpath("data").glob("*"))
    for path in files + [Path(__file__), Path(__file__).with_name("schema.py")]:
        if path.is_file():
            h.update(path.name.encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:20]


def _cache_path():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "glue-spherex" / f"archive-catalog-{_source_hash()}.pickle"


def _load_or_build():
    path = _cache_path()
    try:
        with open(path, "rb") as f:
            catalog = pickle.load(f)
        if isinstance(catalog, Catalog):
            return catalog
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, TypeError):
        pass
    from ..synthetic import observation_plan

    catalog = build_catalog(observation_plan())
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".part")
        with os.fdopen(fd, "wb") as f:
            pickle.dump(catalog, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except OSError:                # a read-only home only costs the rebuild next time
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)
    return catalog


def default_catalog():
    """The catalog of ``synthetic.observation_plan()``, built or loaded on first use."""
    global _default
    with _lock:
        if _default is None:
            _default = _load_or_build()
        return _default
