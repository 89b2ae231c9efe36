"""What identifies one synthetic SPHEREx Level-2 exposure, and IRSA's names for it.

A :class:`FrameSpec` is a few numbers (observation id, detector, pointing, roll, time).
Everything else -- headers, pixels, the file's URL path in the archive -- is derived from it
deterministically, so the local archive can describe thousands of 70 MB frames while storing
none of them.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache

__all__ = ["FrameSpec", "XPOSURE", "TELAPSE", "DURATION_S", "bandpass_name", "survey_target_id",
           "parse_tag", "PIPELINE7_MIN_VERSION", "survey_target_name", "QR2_FILE_BYTES"]

#: Exposure keywords copied from a real QR2 header (§10.2: MJD-END - MJD-BEG is neither).
XPOSURE = 113.5826
TELAPSE = 118.1873
DURATION_S = 115.12
_MJD_EPOCH = date(1858, 11, 17)
#: Processing tags ``l2b-vNN-YYYY-DDD`` (``l2b_retry-vNN-...`` for side runs) from NN = 26 on are
#: pipeline-7 products: v26 the reprocessing of QR2, v27 QR3.
PIPELINE7_MIN_VERSION = 26
#: Bytes of a pipeline < 7 frame (six uncompressed HDUs of fixed shapes).
QR2_FILE_BYTES = 71_637_120
#: IRSA's access_estsize (kB of 1000 bytes) of pipeline-7 frames, which vary with FLAGS.
R7_ESTSIZE_KB = (65440, 65961)
_TAG = re.compile(r"^l2b(_retry)?-v(\d+)-(\d{4})-(\d{3})$")


@lru_cache(maxsize=256)
def parse_tag(tag):
    """``(version, retry, year, day)`` of a processing tag such as ``'l2b_retry-v26-2026-210'``;
    None if it is not one."""
    m = _TAG.match(tag)
    if m is None:
        return None
    return int(m.group(2)), m.group(1) is not None, int(m.group(3)), int(m.group(4))


def bandpass_name(detector):
    """IRSA's bandpass name, e.g. ``'SPHEREx-D2'`` for detector 2."""
    return f"SPHEREx-D{int(detector)}"


def survey_target_id(spec):
    """``SPS_TARGET``: the survey-planning id of the large slew (shared by its small slews)."""
    slew = "_".join(spec.obsid.split("_")[:3])
    return 10_000 + zlib.crc32(slew.encode()) % 90_000


def survey_target_name(target_id):
    """``SPS_TARGET`` of R7 headers: ``'SPS_106011_S34'`` (a string; an integer in QR2)."""
    return f"SPS_{int(target_id):06d}_S34"


@lru_cache(maxsize=4096)
def _version_tag(mjd_day):
    # The calendar day of an MJD is plain arithmetic (astropy Time gives the same, slower).
    t = _MJD_EPOCH + timedelta(days=mjd_day)
    return f"l2b-v21-{t.year}-{t.timetuple().tm_yday:03d}"


@dataclass(frozen=True)
class FrameSpec:
    """One exposure of one detector.

    Parameters
    ----------
    obsid : str
        Observation id, ``'<planning period>_<4-digit slew>_<small slew 1-4>'``,
        e.g. ``'2025W21_1A_0001_1'``.
    detector : int
        1-6.
    ra, dec : float
        Sky position (deg, ICRS) of the reference pixel CRPIX = (1020.5, 1020.5).
    pa : float
        Roll of the detector on the sky (deg); 0 reproduces the real header's PC matrix.
    mjd_beg : float
        Exposure start (MJD, UTC).
    collection : str
        ``'spherex_qr2'`` (wide survey), ``'spherex_qr2_deep'``, ``'spherex_qr3'`` or
        ``'spherex_qr3_deep'``.
    tag : str
        Processing tag (``'l2b-v26-2026-196'``, ``'l2b_retry-v26-2026-210'``,
        ``'l2b-v27-2026-222'``); empty for the QR2 processing ``l2b-v21-...`` of the exposure.
        Tags from v26 on give the pipeline-7 layout.
    """

    obsid: str
    detector: int
    ra: float
    dec: float
    pa: float
    mjd_beg: float
    collection: str = "spherex_qr2"
    tag: str = ""

    @property
    def planning_period(self):
        return "_".join(self.obsid.split("_")[:2])

    @property
    def bandpass(self):
        return bandpass_name(self.detector)

    @property
    def mjd_end(self):
        return self.mjd_beg + DURATION_S / 86400.0

    @property
    def mjd_avg(self):
        return 0.5 * (self.mjd_beg + self.mjd_end)

    @property
    def release(self):
        """Data release of the collection: ``'qr2'`` or ``'qr3'``."""
        return "qr3" if self.collection.startswith("spherex_qr3") else "qr2"

    @property
    def version_tag(self):
        """Processing tag: :attr:`tag`, or ``l2b-v21-YYYY-DDD`` processed a week after the
        exposure.

        v21 is the QR2 processing version of the real headers the synthetic files copy (the
        152-card FLAGS header with the GHOST, BLOOM, SNOWBALL and HALO bits).
        """
        return self.tag or _version_tag(int(self.mjd_beg + 7.0))

    @property
    def file_size(self):
        """Bytes of the full file: fixed for pipeline < 7; for pipeline 7 a size in IRSA's
        range of ``access_estsize`` drawn from the key (the FLAGS heap is padded to it)."""
        if not self.pipeline7:
            return QR2_FILE_BYTES
        lo, hi = R7_ESTSIZE_KB
        kb = lo + zlib.crc32(self.key.encode()) % (hi - 3 - lo + 1)
        return -(-kb * 1000 // 2880) * 2880       # whole FITS blocks, rounded up

    @property
    def pipeline(self):
        """Pipeline generation of the layout: 7 (pipeline 7) or 6 (pipeline < 7)."""
        return 7 if self.pipeline7 else 6

    @property
    def pipeline7(self):
        """True for pipeline-7 products (EPSF table, RICE_1 FLAGS, MSKN/MSKM cards)."""
        parsed = parse_tag(self.version_tag)
        return parsed is not None and parsed[0] >= PIPELINE7_MIN_VERSION

    @property
    def file_name(self):
        return f"level2_{self.obsid}D{self.detector}_spx_{self.version_tag}.fits"

    @property
    def key(self):
        """Path below ``/ibe/data/spherex/`` (also the S3 key in ``nasa-irsa-spherex``)."""
        return (f"{self.release}/level2/{self.planning_period}/{self.version_tag}/{self.detector}/"
                f"{self.file_name}")

    @property
    def uri(self):
        """``spherex.artifact.uri``: relative, no leading slash."""
        return f"ibe/data/spherex/{self.key}"

    @property
    def obs_publisher_did(self):
        return f"ivo://irsa.ipac/{self.collection}?{self.obsid}/D{self.detector}"

    @property
    def expidn(self):
        """Integer exposure id in the form of the real ``EXPIDN`` keyword.

        ``2025W51_1A_0684_2`` D3 gives 202551101068423: year, week, planning half, letter
        (A = 01), large slew, small slew, detector. Obs ids not of that form fall back to a
        15-digit checksum.
        """
        m = re.fullmatch(r"(\d{4})W(\d{2})_(\d)([A-Z])_(\d{4})_(\d)", self.obsid)
        if m is None:
            return zlib.crc32(self.obsid.encode()) % 10**15
        year, week, half, letter, slew, small = m.groups()
        return int(f"{year}{week}{half}{ord(letter) - 64:02d}{slew}{small}{int(self.detector)}")

    @property
    def seed(self):
        """Stable 32-bit seed for this frame's noise and flags."""
        return zlib.crc32(f"{self.obsid}/D{self.detector}".encode())
