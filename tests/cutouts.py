"""The one generator of test frames and cutouts: the synthetic universe of the local archive.

Every file here is made by :mod:`glue_spherex.local_archive.synthetic` itself (its headers,
WCS, WCS-WAVE, PSF cube or EPSF table, FLAGS, both layouts, compressed or plain pipeline-7
FLAGS), so a test checks the reader against the universe's own truth (``psf_cube``,
``epsf_table``, ``frame_headers``, ``render_window``, the FrameSpec) rather than special fills.

- :func:`frame_spec` names an exposure: by default the real QR2 file the synthetic headers
  copy (``2025W51_1A_0684_2`` D3, its pointing and time, ``pa = 0`` keeps its PC matrix), in
  the pipeline < 7 layout (``pipeline=6``) or the pipeline-7 one (``pipeline=7``).
- the universe's ``make_frame``/``make_cutout`` (HDULists) and ``frame_bytes``/``cutout_bytes``
  (bytes), re-exported here, make its files; :func:`to_bytes` writes a changed HDUList back.
- :func:`with_version` relabels a pipeline < 7 file with another ``VERSION``, with the zone
  keywords y-fast for the ``VERSION <= 6.5.5`` erratum (``psf_header(zone_order=...)``).
- :func:`survey` and :func:`write_combined`: many small cutouts around M101 from different
  detectors, rolls, windows and times, for the glue and Qt tests; their PSF is cut to the one
  zone they lie in (:func:`one_zone_psf`) to keep 300 cutouts small.
- :func:`covering_frames` and :func:`cutouts_at`: the frames of the observation plan that
  cover a sky position, cut out as the local archive serves them.
"""

from __future__ import annotations

import io
from functools import lru_cache

import numpy as np
from astropy.io import fits

from glue_spherex.errors import SpherexInputError
from glue_spherex.local_archive.synthetic import (
    NPIX,
    FrameSpec,
    cutout_bytes,
    cutout_window,
    frame_bytes,
    make_cutout,
    make_frame,
    observation_plan,
    psf_header,
)
from glue_spherex.local_archive.synthetic.psf import NZONE, zone_index
from glue_spherex.products.combined import CombinedWriter
from glue_spherex.products.spectral_image import SpectralImage
from glue_spherex.products.wavelength import reference_table

#: The real QR2 file whose headers the synthetic ones copy: obs id, pointing, start time.
OBSID = "2025W51_1A_0684_2"
RA_REAL, DEC_REAL = 10.0880653194, 40.8987511044
MJD_REAL = 61027.214984375
#: Processing tag of the pipeline-7 files made by ``frame_spec(pipeline=7)`` (QR3).
R7_TAG = "l2b-v27-2026-222"
#: M101, the centre of :func:`survey`.
RA0, DEC0 = 210.80, 54.35


def frame_spec(detector=3, *, ra=RA_REAL, dec=DEC_REAL, pa=0.0, mjd=MJD_REAL, obsid=OBSID,
               pipeline=6, tag=None):
    """The FrameSpec of one exposure: the real file's by default, ``pipeline`` 6 or 7.

    ``pipeline=7`` gives a QR3 file (``spherex_qr3``, tag :data:`R7_TAG`); ``tag`` overrides
    the processing tag (e.g. ``'l2b-v26-2026-196'``, QR2 reprocessed).
    """
    if pipeline not in (6, 7):
        raise SpherexInputError(f"pipeline is 6 or 7, got {pipeline!r}")
    if tag is None:
        tag = R7_TAG if pipeline == 7 else ""
    collection = "spherex_qr3" if "-v27-" in tag else "spherex_qr2"
    return FrameSpec(obsid, int(detector), float(ra), float(dec), float(pa), float(mjd),
                     collection, tag)


def to_bytes(hdul):
    """FITS bytes of an HDUList (one a test has changed)."""
    buf = io.BytesIO()
    hdul.writeto(buf)
    return buf.getvalue()


def _version_tuple(version):
    return tuple(int(p) for p in version.split("+")[0].split(".") if p.isdigit())


def is_erratum_version(version):
    """True for ``VERSION <= 6.5.5`` without ``psffix``: zone keywords written y-fast."""
    return "psffix" not in version and _version_tuple(version) <= (6, 5, 5)


def with_version(hdul, version):
    """A copy of a pipeline < 7 file labelled ``VERSION = version``, its PSF zone keywords
    y-fast when that version has the erratum (:func:`is_erratum_version`); data unchanged."""
    out = fits.HDUList([hdu.copy() for hdu in hdul])
    out[0].header["VERSION"] = version
    order = "y-fast" if is_erratum_version(version) else "x-fast"
    out["PSF"].header = psf_header(int(out["IMAGE"].header["DETECTOR"]), zone_order=order)
    return out


def one_zone_psf(hdul):
    """``hdul`` with its PSF cube cut to the plane of the zone holding the cutout's centre
    (a 1x1-zone cube whose ``XCTR_1``/``YCTR_1`` are that zone's): ``psf_at`` inside that
    zone gives the universe's own plane, for a 121st of the bytes."""
    image = hdul["IMAGE"].header
    x0, y0 = 1 - int(round(image["CRPIX1A"])), 1 - int(round(image["CRPIX2A"]))
    ix, iy = (int(v) for v in zone_index(x0 + (image["NAXIS1"] - 1) / 2,
                                         y0 + (image["NAXIS2"] - 1) / 2))
    k = iy * NZONE + ix + 1
    old = hdul["PSF"].header
    zone = ("XCTR_", "YCTR_", "XWID_", "YWID_")
    cards = [c for c in old.cards if c.keyword[:5] not in zone]
    at = [c.keyword for c in cards].index("EXTNAME")
    cards[at:at] = [fits.Card(f"{p}_1", old[f"{p}_{k}"], old.comments[f"{p}_{k}"])
                    for p in ("XCTR", "YCTR", "XWID", "YWID")]
    h = fits.Header(cards)
    plane = np.array(hdul["PSF"].data[k - 1:k])
    return fits.HDUList([fits.ImageHDU(plane, header=h, name="PSF") if hdu.name == "PSF" else hdu
                         for hdu in hdul])


def survey(n, size=24, seed=1, ra=RA0, dec=DEC0):
    """``n`` small pipeline < 7 cutouts (HDULists) around (ra, dec): detectors 1..6 in turn,
    random rolls, pointings within 0.01 deg and windows near the frame centre, 0.01 d apart;
    all overlap the central 0.02 deg. PSF: :func:`one_zone_psf`."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        spec = frame_spec(1 + i % 6, ra=ra + rng.uniform(-0.01, 0.01),
                          dec=dec + rng.uniform(-0.01, 0.01), pa=rng.uniform(-180, 180),
                          mjd=61000.0 + 0.01 * i, obsid=f"2025W18_1A_{i:04d}_1")
        x0 = NPIX // 2 - size // 2 + int(rng.integers(-3, 4))
        y0 = NPIX // 2 - size // 2 + int(rng.integers(-3, 4))
        out.append(one_zone_psf(make_cutout(spec, x0, y0, size, size)))
    return out


def write_combined(path, hduls):
    """A combined cutout file of ``hduls`` (cutout_index 1..n), via CombinedWriter."""
    planned = [{"cutout_index": i, "access_url": f"http://127.0.0.1:1/cutout/{i}"}
               for i in range(1, len(hduls) + 1)]
    with CombinedWriter(path, planned, size=0.05) as writer:
        for i, hdul in enumerate(hduls, start=1):
            writer.add(i, hdul)
    return path


# -- cutouts of the observation plan ------------------------------------------------------------

@lru_cache(maxsize=16)
def covering_frames(ra, dec, size, part="qr2"):
    """``[(spec, window)]`` of every frame of the plan ``part`` holding a full ``size``-px
    cutout at (ra, dec)."""
    out = []
    target = np.array([np.cos(np.radians(dec)) * np.cos(np.radians(ra)),
                       np.cos(np.radians(dec)) * np.sin(np.radians(ra)), np.sin(np.radians(dec))])
    for spec in observation_plan(part):
        d = np.radians(spec.dec)
        v = np.array([np.cos(d) * np.cos(np.radians(spec.ra)),
                      np.cos(d) * np.sin(np.radians(spec.ra)), np.sin(d)])
        if v @ target < np.cos(np.radians(2.6)):  # a frame is 3.5 deg on a side
            continue
        window = cutout_window(spec, ra, dec, size, size)
        if window is not None and window[2:] == (size, size):
            out.append((spec, window))
    return tuple(out)


def _wavelength(spec, window):
    """Wavelength (µm) the frame sees at the centre of the window (parent-frame table)."""
    x0, y0, nx, ny = window
    wl, _ = reference_table(spec.detector).lookup(x0 + (nx - 1) / 2 + 1.0, y0 + (ny - 1) / 2 + 1.0)
    return float(wl)


def cutouts_at(ra, dec, per_detector=20, size=21, near=(), per_feature=2):
    """SpectralImages of up to ``per_detector`` frames per detector covering (ra, dec),
    chosen evenly across the detector rows (so across each band's wavelengths), plus the
    ``per_feature`` frames seeing the position closest to each wavelength in ``near`` (µm)."""
    chosen = []
    frames = covering_frames(float(ra), float(dec), int(size))
    for det in range(1, 7):
        mine = sorted((f for f in frames if f[0].detector == det), key=lambda f: f[1][1])
        if not mine:
            continue
        idx = np.unique(np.linspace(0, len(mine) - 1, min(per_detector, len(mine))).round())
        chosen += [mine[int(i)] for i in idx]
    for wl in near:
        rest = [f for f in frames if f not in chosen]
        rest.sort(key=lambda f: abs(_wavelength(*f) - wl))
        chosen += rest[:per_feature]
    return [SpectralImage.open(cutout_bytes(spec, *window)) for spec, window in chosen]


__all__ = ["OBSID", "RA_REAL", "DEC_REAL", "MJD_REAL", "R7_TAG", "RA0", "DEC0", "frame_spec",
           "make_frame", "make_cutout", "frame_bytes", "cutout_bytes", "to_bytes",
           "is_erratum_version",
           "with_version", "one_zone_psf", "survey", "write_combined", "covering_frames",
           "cutouts_at"]
