"""The archive's table rows, built from the synthetic observation plan.

Each :class:`~glue_spherex.local_archive.synthetic.FrameSpec` becomes one ``spherex.plane`` row, one
``spherex.artifact`` row and one ``spherex.obscore`` row (the SIA2 columns of products doc
§5.2), and each exposure one ``spherex.observation`` row (its collection); a QR2 exposure
reprocessed by pipeline 7 has one plane per processing version, all with the same obs id,
collection and ``obs_publisher_did``, with the footprints of all frames computed at once by ``synthetic.footprints``.  The
whole plan takes well under a second, without astropy; the rows that do not depend on the
server's URL are built once per process and shared by every
:class:`~glue_spherex.local_archive.LocalArchive`.
"""

from __future__ import annotations

import threading
import zlib
from datetime import datetime, timedelta

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
#: Range of IRSA's access_estsize (kB) of pipeline-7 frames (their compressed FLAGS varies).
ACCESS_ESTSIZE_R7_KB = (65440, 65961)

COLLECTIONS = ("spherex_qr2", "spherex_qr2_deep", "spherex_qr3", "spherex_qr3_deep")


def cloud_access_json(key):
    """IRSA's ``cloud_access`` string, byte for byte (note: no space after ``"key":``)."""
    return ('{"aws": {"bucket_name": "nasa-irsa-spherex", '
            f'"key":"{key}", "region": "us-east-1"}}}}')


class Catalog:
    """The frames and the URL-independent table rows derived from them."""

    def __init__(self, specs, keys, plane, artifact, obscore, observation=()):
        self.specs = specs                 # FrameSpecs, in row order
        self.keys = keys                   # spec.key of each frame
        self.by_key = dict(zip(keys, specs))
        self.plane = plane
        self.artifact = artifact
        self.obscore = obscore             # rows with None in place of access_url
        self.observation = list(observation)

    def table_rows(self, base_url):
        """All rows for :class:`~.adql.AdqlEngine`, with ``access_url`` on ``base_url``."""
        idx = _ACCESS_URL_INDEX
        obscore = []
        for key, row in zip(self.keys, self.obscore):
            row = list(row)
            row[idx] = f"{base_url}/ibe/data/spherex/{key}"
            obscore.append(tuple(row))
        return {"spherex.plane": self.plane, "spherex.artifact": self.artifact,
                "spherex.observation": self.observation, "spherex.obscore": obscore}


_MJD0 = datetime(1858, 11, 17)


def _release_date(mjd):
    """``obs_release_date``: 45 days after the exposure, ``'YYYY-MM-DD hh:mm:ss'`` (UTC)."""
    t = _MJD0 + timedelta(milliseconds=round((mjd + 45.0) * 86_400_000))
    return t.isoformat(sep=" ", timespec="seconds")


def _tag_release_date(tag, key):
    """``obs_release_date`` of a pipeline-7 file: 36 days after its processing date (QR3 tags
    of days 222-224 give 2026-09-15, as in IRSA's rows), at a time of day from its key."""
    from .synthetic.spec import parse_tag

    _, _, year, day = parse_tag(tag)
    seconds = zlib.crc32(key.encode()) % 86400
    t = datetime(year, 1, 1) + timedelta(days=day - 1 + 36, seconds=seconds)
    return t.isoformat(sep=" ", timespec="seconds")


def _estsize_kb(spec):
    """``access_estsize``: the file's size in kB of 1000 bytes, rounded up (IRSA's 71638 for
    the 71,637,120 bytes of a QR2 frame)."""
    return -(-spec.file_size // 1000)


def build_catalog(specs):
    """The :class:`Catalog` of a list of FrameSpecs."""
    from .synthetic import footprints, survey_target_id
    from .synthetic.spec import survey_target_name

    specs = list(specs)
    fp = footprints(specs)
    s_fov = fp["s_fov"]
    keys = [spec.key for spec in specs]
    plane, artifact, obscore, observation = [], [], [], {}
    for planeid, (spec, key, s_ra, s_dec, region) in enumerate(
            zip(specs, keys, fp["s_ra"].tolist(), fp["s_dec"].tolist(), fp["s_region"]), start=1):
        em_min, em_max, em_res = EM_RANGES[spec.detector]
        did = spec.obs_publisher_did
        bandpass = spec.bandpass
        mjd_beg, mjd_end = spec.mjd_beg, spec.mjd_end
        plane.append((planeid, spec.obsid, region, f"POINT ICRS {s_ra!r} {s_dec!r}", mjd_beg,
                      mjd_end, em_min, em_max, bandpass, did, "image", 2))
        artifact.append((planeid, f"ibe/data/spherex/{key}", "science"))
        observation.setdefault(spec.obsid, (spec.obsid, spec.obsid, spec.collection, "science",
                                            "exposure"))
        if spec.pipeline7:
            estsize, released = _estsize_kb(spec), _tag_release_date(spec.version_tag, key)
            target = survey_target_name(survey_target_id(spec))
        else:
            estsize, released = ACCESS_ESTSIZE_KB, _release_date(mjd_beg)
            target = f"SPS_{survey_target_id(spec)}"
        obscore.append((
            s_ra, s_dec, "SPHEREx", "SPHEREx", "science", 2, "image",
            bandpass, "Infrared", spec.obsid, S_RESOLUTION, em_min, em_max, em_res,
            "SPHEREx LVF Survey Data", None, "image/fits", estsize, XPOSURE_S,
            region, spec.collection, "science", "exposure", None, None, None, None,
            None, "SPHEREx", target, "field", 0, 0, None,
            released, NPIX, NPIX, S_PIXEL_SCALE, 0, mjd_beg, mjd_end, None, None,
            did, s_fov, None, None, None, cloud_access_json(key), None, 1,
        ))
    return Catalog(specs, keys, plane, artifact, obscore, observation.values())


_ACCESS_URL_INDEX = [c.name for c in SIA_COLUMNS].index("access_url")
_lock = threading.Lock()
_default = None


def default_catalog():
    """The catalog of ``synthetic.observation_plan()``, built on first use in this process."""
    global _default
    with _lock:
        if _default is None:
            from .synthetic import observation_plan

            _default = build_catalog(observation_plan("all"))
        return _default
