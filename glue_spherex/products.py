"""Open SPHEREx Level-2 spectral images: full frames, IRSA cutouts and combined cutout files.

A product is recognised by content, not by file name: an ``IMAGE`` extension with
``DETECTOR`` and the ``W`` (``WAVE-TAB``) spectral WCS, plus ``FLAGS``, ``VARIANCE``,
``ZODI``, ``PSF`` and the ``WCS-WAVE`` lookup table. A combined file (see
:mod:`glue_spherex.combined`) holds the same six extensions per cutout, named ``IMAGEn`` ...
``WCS-WAVEn`` with ``n`` the cutout index; files written by IRSA's cutouts tutorial, whose
``PS1_0W`` still says ``'WCS-WAVE'``, are read too.

Files opened from a path are memory-mapped, and no pixel data (in particular not the 4.9 MB
PSF cube) is read until an attribute asks for it. Everything a user can get wrong raises
:class:`~glue_spherex.errors.SpherexFormatError` naming the problem and the source.
"""

from __future__ import annotations

import gzip
import io
import math
import mmap
import os
import re
import threading
import zlib
from collections.abc import Mapping
from functools import cached_property

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, NoConvergence
from astropy.wcs.utils import wcs_to_celestial_frame

from .celestial import build_celestial_wcs, celestial_values, separation_deg, sip_matrices
from .errors import SpherexError, SpherexFormatError, SpherexInputError
from .fitsscan import (
    _END_CARD,
    _aligned_find,
    card_comment,
    card_value,
    header_cards,
    image_array,
    scan_hdus,
    string_card,
    table_row,
)
from .flags import flag_bits
from .wavelength import SpectralWCS, WaveTable

__all__ = ["SpectralImage", "open_products", "is_spherex_product", "KINDS"]

#: The extensions of one spectral image, in file order (PRIMARY excluded).
KINDS = ("IMAGE", "FLAGS", "VARIANCE", "ZODI", "PSF", "WCS-WAVE")
_IMAGE_KINDS = ("IMAGE", "FLAGS", "VARIANCE", "ZODI")
_INDEXED = re.compile(r"^IMAGE(\d+)$")
_GZIP_MAGIC = b"\x1f\x8b"
_FITS_MAGIC = b"SIMPLE  ="
_NEAR_DEG = 10.0
_CD_PV = re.compile(r"^(CD|PV)\d_\d+$")
_CELESTIAL_KEY = re.compile(
    r"^(NAXIS\d?|WCSAXES|CRPIX\d|CRVAL\d|CDELT\d|CUNIT\d|CTYPE\d|PC\d_\d|CD\d_\d|PV\d_\d+|"
    r"LONPOLE|LATPOLE|RADESYS|EQUINOX|MJDREF|DATE-OBS|MJD-OBS|(A|B|AP|BP)_(ORDER|\d+_\d+))$"
)


# --------------------------------------------------------------------------------------
# The open file behind one or more SpectralImages
# --------------------------------------------------------------------------------------

class _Backing:
    """The bytes of one FITS file, shared by every SpectralImage read from it.

    ``buffer`` is a read-only memory map of a file or a bytes object. The HDUs are located
    by the header scan of :mod:`glue_spherex.fitsscan` (which also rejects truncated files);
    keywords are read from the cards, a header is parsed by astropy only when someone asks
    for it, and arrays are views of the buffer. Opening a 700-cutout file therefore reads
    4,200 small headers instead of parsing them (about 1 s instead of 7 s).
    """

    def __init__(self, buffer, label):
        self.buffer = buffer
        self.label = label
        self.spans = scan_hdus(buffer, label)
        self.index = {}
        for span in self.spans:
            self.index.setdefault(span.extname, span)
        self._cards = {}
        self._headers = {}
        self._users = 0
        self._lock = threading.Lock()

    @cached_property
    def cutouts(self):
        """Indices n of the IMAGEn extensions, in file order."""
        return [int(m.group(1)) for name in self.index if (m := _INDEXED.match(name))]

    def __contains__(self, name):
        return name.upper() in self.index

    def span(self, name):
        return self.index[name.upper()]

    def read(self, offset, n):
        """``n`` bytes of the file from ``offset`` (a view, not a copy)."""
        return memoryview(self.buffer)[offset:offset + n]

    def keywords(self, name):
        """The value cards of a header as a read-only mapping (values parsed on access)."""
        cards = self._cards.get(name)
        if cards is None:
            cards = self._cards[name] = _Keywords(header_cards(self.buffer, self.span(name)),
                                                  f"{self.label} {name}")
        return cards

    def header(self, name):
        """The astropy Header of one HDU (parsed on first use)."""
        header = self._headers.get(name)
        if header is None:
            span = self.span(name)
            raw = bytes(self.read(span.header_start, span.data_start - span.header_start))
            try:
                header = fits.Header.fromstring(raw.decode("latin-1"))
            except ValueError as exc:
                raise SpherexFormatError(f"{self.label}: unreadable {name} header ({exc})") \
                    from None
            self._headers[name] = header
        return header

    def array(self, name):
        """The data of an image HDU, a view of the file."""
        return image_array(self.buffer, self.span(name), f"{self.label} {name}")

    def hdu(self, name):
        """An astropy HDU (header and data) of one extension, e.g. a table."""
        span = self.span(name)
        return fits.BinTableHDU.fromstring(bytes(self.read(span.header_start,
                                                           span.end - span.header_start)))

    def acquire(self):
        with self._lock:
            self._users += 1

    def release(self):
        # Arrays handed out keep the mapping alive (numpy holds a reference); the backing
        # only forgets it, so a closed image cannot read any more.
        with self._lock:
            self._users -= 1
            if self._users == 0:
                self.buffer = b""

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()


class _Keywords(Mapping):
    """``{keyword: value}`` of one header, each value parsed from its card when read."""

    def __init__(self, cards, label):
        self.cards = cards
        self.label = label

    def __getitem__(self, key):
        return card_value(self.cards[key], self.label)

    def __contains__(self, key):
        return key in self.cards

    def __iter__(self):
        return iter(self.cards)

    def __len__(self):
        return len(self.cards)


def _open_backing(source):
    """Open ``source`` (path, bytes, file object or HDUList) as a :class:`_Backing`."""
    if isinstance(source, fits.HDUList):
        info = source.fileinfo(0) if len(source) else None
        label = (info or {}).get("filename") or "<HDUList>"
        buf = io.BytesIO()
        if len(source) and not isinstance(source[0], fits.PrimaryHDU):  # extensions only
            source = fits.HDUList([fits.PrimaryHDU(), *source])
        try:
            source.writeto(buf, output_verify="ignore")
        except (OSError, ValueError, TypeError) as exc:
            raise SpherexFormatError(f"{label}: cannot serialise the HDUList ({exc})") from None
        return _from_bytes(buf.getvalue(), label)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _from_bytes(bytes(source), f"<{len(source)} bytes>")
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        try:
            with open(path, "rb") as f:
                head = f.read(len(_FITS_MAGIC))
                if head.startswith(_GZIP_MAGIC):
                    f.seek(0)
                    return _from_bytes(f.read(), path)
        except FileNotFoundError:
            raise SpherexInputError(f"{path}: no such file") from None
        except IsADirectoryError:
            raise SpherexInputError(f"{path}: is a directory, expected a FITS file") from None
        except OSError as exc:
            raise SpherexInputError(f"{path}: cannot read the file ({exc.strerror})") from None
        _check_magic(head, path)
        return _mapped_backing(path)
    if hasattr(source, "read"):
        data = source.read()
        if not isinstance(data, (bytes, bytearray)):
            raise SpherexInputError("file objects must be opened in binary mode ('rb')")
        return _from_bytes(bytes(data), str(getattr(source, "name", "<file object>")))
    raise SpherexInputError(
        f"cannot open a {type(source).__name__}; expected a path, bytes, a binary file object "
        "or an astropy HDUList"
    )


def _mapped_backing(path):
    """A backing over a read-only memory map of the file at ``path``."""
    try:
        with open(path, "rb") as f:
            mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError) as exc:
        raise SpherexInputError(f"{path}: cannot map the file ({exc})") from None
    # The header scan touches a few blocks per HDU, and a combined file's image planes are
    # small and spread over gigabytes the page cache may not hold (they are written past
    # it): no read-ahead for those (opening a cold 700-cutout file and reading its images:
    # 2.5 s instead of 4.1 s); a single product's big planes keep normal read-ahead.
    advise = getattr(mapped, "madvise", None)
    if advise is not None and hasattr(mmap, "MADV_RANDOM"):
        advise(mmap.MADV_RANDOM)
    backing = _Backing(np.frombuffer(mapped, np.uint8), path)
    if advise is not None and hasattr(mmap, "MADV_NORMAL") and "IMAGE" in backing:
        advise(mmap.MADV_NORMAL)
    return backing


def _from_bytes(data, label):
    if data.startswith(_GZIP_MAGIC):
        try:
            data = gzip.decompress(data)
        except (EOFError, OSError, zlib.error) as exc:
            raise SpherexFormatError(f"{label}: truncated or corrupt gzip data ({exc})") from None
    _check_magic(data[: len(_FITS_MAGIC)], label)
    return _Backing(data, label)


def _check_magic(head, label):
    if not head.startswith(_FITS_MAGIC):
        raise SpherexFormatError(f"{label}: not a FITS file (it does not start with 'SIMPLE  =')")


# --------------------------------------------------------------------------------------
# Recognising products and cutouts
# --------------------------------------------------------------------------------------

def _cutout_indices(backing):
    """``None`` for a single product, else the cutout indices present (IMAGEn) in file order."""
    if "IMAGE" in backing:
        return None
    found = backing.cutouts
    if not found:
        raise SpherexFormatError(
            f"{backing.label}: not a SPHEREx spectral image (no IMAGE extension; "
            f"extensions are {', '.join(backing.index) or 'none'})"
        )
    return found


def _resolve(backing, suffix):
    """``{kind: EXTNAME}`` of one image, after checking it looks like a SPHEREx product."""
    where = backing.label + (f" cutout {suffix}" if suffix else "")
    names = {kind: f"{kind}{suffix}" for kind in KINDS}
    header = backing.keywords(names["IMAGE"])
    if "DETECTOR" not in header or str(header.get("CTYPE1W", "")).strip() != "WAVE-TAB":
        raise SpherexFormatError(
            f"{where}: not a SPHEREx spectral image (IMAGE{suffix} has no DETECTOR keyword "
            "or no WAVE-TAB spectral WCS 'W')"
        )
    # The tutorial's combined files rename the table but leave PS1_0W = 'WCS-WAVE'.
    table = str(header.get("PS1_0W", "WCS-WAVE")).strip()
    names["WCS-WAVE"] = table if table in backing else names["WCS-WAVE"]
    for kind, name in names.items():
        if name not in backing:
            what = "wavelength table" if kind == "WCS-WAVE" else "extension"
            raise SpherexFormatError(f"{where}: missing {what} {name}")
    return names


def _cutout_info(backing):
    """``{cutout_index: row dict}`` from CUTOUT_INFO (empty if the file has none)."""
    if "CUTOUT_INFO" not in backing:
        return {}
    try:
        data = backing.hdu("CUTOUT_INFO").data
        columns = [c.lower() for c in data.columns.names]
        rows = {}
        for rec in data:
            row = {c: _plain(rec[i]) for i, c in enumerate(columns)}
            rows[int(row["cutout_index"])] = row
        return rows
    except (KeyError, TypeError, ValueError) as exc:
        raise SpherexFormatError(f"{backing.label}: unreadable CUTOUT_INFO table ({exc})") from None


def _plain(value):
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if isinstance(value, str):
        return value.rstrip()
    return value.item() if hasattr(value, "item") else value


def _image(backing, index, info):
    indices = _cutout_indices(backing)
    if indices is None:
        if index is not None:
            raise SpherexFormatError(
                f"{backing.label}: index={index!r} given, but this is a single spectral image, "
                "not a combined cutout file"
            )
        return SpectralImage(backing, "")
    if index is None:
        if len(indices) != 1:
            raise SpherexFormatError(
                f"{backing.label}: combined file with {len(indices)} cutouts; "
                f"pass index= one of {_brief(sorted(indices))}"
            )
        index = indices[0]
    try:
        index = int(index)
    except (TypeError, ValueError):
        raise SpherexFormatError(f"{backing.label}: bad cutout index {index!r}") from None
    if index not in indices:
        row = info.get(index, {})
        if row.get("status") in ("failed", "missing"):
            raise SpherexFormatError(
                f"{backing.label}: cutout {index} is not in the file (status {row['status']}: "
                f"{row.get('reason') or 'no reason recorded'})"
            )
        raise SpherexFormatError(
            f"{backing.label}: no cutout {index}; available: {_brief(sorted(indices))}"
        )
    row = info.get(index, {})
    return SpectralImage(
        backing, str(index), version=row.get("version") or None,
        access_url=row.get("access_url") or None, cutout_index=index,
    )


def _brief(values, n=10):
    shown = ", ".join(str(v) for v in values[:n])
    return shown + (f", ... ({len(values)} in all)" if len(values) > n else "")


# --------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------

class SpectralImage:
    """One SPHEREx Level-2 spectral image (full frame or cutout) and its calibration.

    Open with :meth:`open` or :func:`open_products`; close with :meth:`close` or a
    ``with`` block. Pixel coordinates are 0-based ``(x, y)``, arrays are ``[y, x]``.
    """

    def __init__(self, backing, suffix, *, version=None, access_url=None, cutout_index=None):
        names = _resolve(backing, suffix)
        self._backing = backing
        self._names = names
        self._closed = False
        self.suffix = suffix
        #: ``{keyword: value}`` of the IMAGE header, read from its cards without astropy
        self.keywords = h = backing.keywords(names["IMAGE"])
        #: astropy Headers of PRIMARY and of each extension, each parsed on first access
        self.headers = _Headers(backing, names)
        if suffix:
            primary = fits.Header()
            if version:
                primary["VERSION"] = version
            self.headers.set("PRIMARY", primary)
        else:
            if backing.spans[0].extname == "PRIMARY":
                version = version or backing.keywords("PRIMARY").get("VERSION")
        self.version = str(version).strip() if version is not None else None
        self.shape = (int(h.get("NAXIS2", 0)), int(h.get("NAXIS1", 0)))
        self.obsid = str(h.get("OBSID", "")).strip()
        self.detector = int(h["DETECTOR"])
        self.bandpass = f"SPHEREx-D{self.detector}"
        self.mjd_beg = _float(h, "MJD-BEG")
        self.mjd_avg = _float(h, "MJD-AVG")
        self.mjd_end = _float(h, "MJD-END")
        self.exptime = _float(h, "XPOSURE")
        self.psf_fwhm = _float(h, "PSF_FWHM")
        self.access_url = access_url
        self.cutout_index = cutout_index
        self._wave = None
        backing.acquire()

    # -- opening -------------------------------------------------------------------------

    @classmethod
    def open(cls, source, index=None):
        """Open a spectral image from a path, (gzipped) bytes, a binary file object or an HDUList.

        ``index`` picks the cutout of a combined file (``IMAGE{index}`` ...); it is required
        when that file holds more than one cutout.
        """
        with _open_backing(source) as backing:
            return _image(backing, index, _cutout_info(backing))

    def close(self):
        """Release the file (closed when the last image read from it is closed)."""
        if not self._closed:
            self._closed = True
            self._backing.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def keywords_of(self, kind):
        """``{keyword: value}`` of one extension's header (``'FLAGS'``, ``'PSF'``, ...), read
        from its cards without astropy, like :attr:`keywords` for IMAGE."""
        if kind not in self._names:
            raise SpherexInputError(f"no {kind!r} extension; the extensions are "
                                    f"{', '.join(self._names)}")
        return self._backing.keywords(self._names[kind])

    @property
    def header(self):
        """The astropy Header of IMAGE (parsed on first access; :attr:`keywords` is cheaper)."""
        return self.headers["IMAGE"]

    def __repr__(self):
        where = f" cutout {self.cutout_index}" if self.cutout_index is not None else ""
        return (f"<SpectralImage {self.obsid} D{self.detector} {self.shape[1]}x{self.shape[0]}"
                f"{where} from {self._backing.label}>")

    # -- pixel data ------------------------------------------------------------------------

    def _check_open(self):
        if self._closed:
            raise SpherexInputError(f"{self!r} is closed")

    def _data(self, kind):
        self._check_open()
        try:
            if kind == "WCS-WAVE":
                return self._backing.hdu(self._names[kind]).data
            return self._backing.array(self._names[kind])
        except (OSError, ValueError, TypeError) as exc:
            raise SpherexFormatError(
                f"{self._backing.label}: cannot read {self._names[kind]} ({exc})"
            ) from None

    @property
    def image(self):
        """Surface brightness (MJy/sr), zodiacal light not subtracted."""
        return self._data("IMAGE")

    @property
    def flags(self):
        """int32 bitmap; see :mod:`glue_spherex.flags` and :attr:`flag_bits`."""
        return self._data("FLAGS")

    @property
    def variance(self):
        """Variance of :attr:`image`, (MJy/sr)^2."""
        return self._data("VARIANCE")

    @property
    def zodi(self):
        """Zodiacal light model (MJy/sr)."""
        return self._data("ZODI")

    @property
    def psf(self):
        """``(121, 101, 101)`` PSF cube (11x11 zones, 10x oversampled); read on first use."""
        return self._data("PSF")

    # -- metadata --------------------------------------------------------------------------

    @cached_property
    def wcs(self):
        """Celestial WCS of the image (TAN with SIP)."""
        return celestial_wcs(self.keywords, label=self._backing.label)

    @property
    def parent_origin(self):
        """0-based parent-frame pixel ``(x0, y0)`` of this image's pixel (0, 0)."""
        return tuple(_integral(1.0 - float(self.keywords.get(f"CRPIX{i}A", 1.0)))
                     for i in (1, 2))

    @cached_property
    def flag_bits(self):
        """``{flag name: bit number}`` from the FLAGS header."""
        return flag_bits(self.keywords_of("FLAGS"))

    # -- wavelengths -----------------------------------------------------------------------

    @cached_property
    def spectral_wcs(self):
        """The ``W`` WCS: 0-based pixel -> (wavelength, bandwidth) in µm (read on first use).

        The table is read straight from the WCS-WAVE row bytes (astropy's table machinery
        costs milliseconds per cutout); the numbers are the same.
        """
        name = self._names["WCS-WAVE"]  # resolved by _resolve (tutorial files misname it)
        try:
            _, columns = SpectralWCS.table_reference(self.keywords)
            row = table_row(self._backing.buffer, self._backing.span(name),
                            self._backing.keywords(name).cards, name)
            return SpectralWCS.from_table(self.keywords,
                                          WaveTable.from_row(row, *columns, label=name))
        except SpherexFormatError as exc:
            raise SpherexFormatError(f"{self._backing.label}: {exc}") from None

    def _grid(self):
        if self._wave is None:
            self._wave = self.spectral_wcs.grid(self.shape)
        return self._wave

    def wavelength(self):
        """Central wavelength (µm) of every pixel, shape ``(ny, nx)``."""
        return self._grid()[0]

    def bandwidth(self):
        """Bandwidth (µm) of every pixel, shape ``(ny, nx)``."""
        return self._grid()[1]

    def pixel_to_wave(self, x, y):
        """(wavelength, bandwidth) in µm at 0-based pixel positions."""
        return self.spectral_wcs.pixel_to_wave(x, y)

    def wavelength_at(self, coord):
        """(wavelength, bandwidth) in µm at a sky position (NaN outside the table's range).

        Sky to pixel uses the celestial WCS with SIP, pixel to wavelength the ``W`` WCS
        without it -- what IRSA's tutorials call the central wavelength of a cutout.
        """
        if coord.isscalar and str(self.keywords.get("RADESYS", "ICRS")).strip() == "ICRS":
            # the fetcher asks this once per cutout: the same wcslib calls on the same
            # numbers, without SkyCoord's frame machinery (a few ms each)
            icrs = coord if coord.frame.name == "icrs" else coord.icrs
            lon, lat = np.array([icrs.ra.deg], float), np.array([icrs.dec.deg], float)
        else:
            sky = coord.transform_to(wcs_to_celestial_frame(self.wcs))
            lon = np.atleast_1d(sky.spherical.lon.deg).astype(float)
            lat = np.atleast_1d(sky.spherical.lat.deg).astype(float)
        # Far from the image the TAN projection and the SIP inverse break down; such
        # positions are outside the table anyway (it spans at most the 3.5 deg parent frame).
        ny, nx = self.shape
        clon, clat = self.wcs.all_pix2world([(nx - 1) / 2], [(ny - 1) / 2], 0)
        near = separation_deg(lon, lat, float(clon[0]), float(clat[0])) < _NEAR_DEG
        x = np.full(lon.shape, np.nan)
        y = np.full(lon.shape, np.nan)
        if near.any():
            try:
                x[near], y[near] = self.wcs.all_world2pix(lon[near], lat[near], 0, quiet=False)
            except NoConvergence as exc:
                best = np.array(exc.best_solution, float)
                bad = np.union1d(np.asarray(exc.divergent or [], int),
                                 np.asarray(exc.slow_conv or [], int))
                best[bad] = np.nan
                x[near], y[near] = best[:, 0], best[:, 1]
        wl, bw = self.spectral_wcs.pixel_to_wave(x, y)
        if coord.isscalar:
            return float(wl[0]), float(bw[0])
        return wl.reshape(coord.shape), bw.reshape(coord.shape)

    # -- PSF -------------------------------------------------------------------------------

    def psf_zone(self, x, y):
        """``(ix, iy)`` PSF zone containing 0-based pixel (x, y) of this image.

        The zone is the one whose centre (``XCTR_k``/``YCTR_k``, 1-based parent pixels) is
        nearest along each axis. Only the set of centre values is used, never the keyword
        number ``k``, so files hit by the ``VERSION <= 6.5.5`` erratum (zone keywords written
        y-fast while the planes are x-fast) give the same, correct zone as fixed files.
        """
        xc, yc = self._zone_centres
        x0, y0 = self.parent_origin
        px, py = x0 + float(x) + 1.0, y0 + float(y) + 1.0
        return int(np.argmin(np.abs(xc - px))), int(np.argmin(np.abs(yc - py)))

    def psf_at(self, x, y):
        """The 101x101 oversampled PSF of the zone containing 0-based pixel (x, y)."""
        ix, iy = self.psf_zone(x, y)
        return self.psf[iy * len(self._zone_centres[0]) + ix]

    @cached_property
    def _zone_centres(self):
        h = self._backing.keywords(self._names["PSF"])
        nzone = int(h.get("NAXIS3", 0))
        n = math.isqrt(nzone)
        if nzone == 0 or n * n != nzone:
            raise SpherexFormatError(
                f"{self._backing.label}: PSF{self.suffix} is not a cube of n x n zones "
                f"(NAXIS3 = {nzone})"
            )
        centres = []
        for axis in "XY":
            values = [h.get(f"{axis}CTR_{k}") for k in range(1, nzone + 1)]
            if any(v is None for v in values):  # no zone keywords: the nominal equal grid
                centres.append(0.5 + (np.arange(n) + 0.5) * 2040 / n)
                continue
            unique = np.unique(np.round(np.asarray(values, float), 3))
            if len(unique) != n:
                raise SpherexFormatError(
                    f"{self._backing.label}: PSF{self.suffix} zone keywords {axis}CTR_* give "
                    f"{len(unique)} distinct centres, expected {n}"
                )
            centres.append(unique)
        return tuple(centres)

    # -- writing -----------------------------------------------------------------------------

    def _extension_bytes(self, suffix):
        """The six extensions as file bytes, renamed for ``suffix``.

        Header and data blocks are copied byte for byte from the source; only the EXTNAME
        and PS1_0W/PS2_0W cards are replaced (CHECKSUM/DATASUM, now stale, are blanked), so
        the header keeps its length. This is what makes appending to a combined file cheap.
        """
        self._check_open()
        spans = [self._backing.span(self._names[kind]) for kind in KINDS]
        return renamed_extensions(self._backing.buffer, spans, suffix)

    def hdulist(self, suffix=""):
        """The six extensions IMAGE ... WCS-WAVE, EXTNAME + ``suffix``, without PRIMARY.

        ``PS1_0W``/``PS2_0W`` of the image headers are pointed at ``'WCS-WAVE' + suffix`` so
        that ``WCS(hdul['IMAGE' + suffix].header, fobj=hdul, key='W')`` keeps working.
        """
        hdus = []
        for kind in KINDS:
            header = self.headers[kind].copy()
            for key in ("CHECKSUM", "DATASUM", "BSCALE", "BZERO"):
                header.remove(key, ignore_missing=True, remove_all=True)
            header["EXTNAME"] = f"{kind}{suffix}"
            if kind in _IMAGE_KINDS:
                for key in ("PS1_0W", "PS2_0W"):
                    if key in header:
                        header[key] = f"WCS-WAVE{suffix}"
            data = self._data(kind)
            if kind == "WCS-WAVE":
                hdus.append(fits.BinTableHDU(data=data, header=header))
            else:
                hdus.append(fits.ImageHDU(data=data, header=header))
        return fits.HDUList(hdus)


def renamed_extensions(buffer, spans, suffix):
    """Header and data bytes of the six extensions (``spans`` in :data:`KINDS` order) renamed
    for ``suffix``: EXTNAME (and PS1_0W/PS2_0W of the image HDUs) rewritten in place with
    their comments, CHECKSUM/DATASUM (now stale) blanked, every other byte copied."""
    view = memoryview(buffer)
    chunks = []
    for kind, span in zip(KINDS, spans):
        header = bytearray(view[span.header_start:span.data_start])
        limit = _aligned_find(header, _END_CARD)
        new = {"EXTNAME": f"{kind}{suffix}"}
        if kind in _IMAGE_KINDS:
            new["PS1_0W"] = new["PS2_0W"] = f"WCS-WAVE{suffix}"
        for key, value in new.items():
            pos = _aligned_find(header, f"{key:8}= ".encode(), limit)
            if pos >= 0:
                card = header[pos:pos + 80].decode("latin-1")
                header[pos:pos + 80] = string_card(key, value, card_comment(card))
        for key in (b"CHECKSUM= ", b"DATASUM = "):
            pos = _aligned_find(header, key, limit)
            while pos >= 0:
                header[pos:pos + 80] = b" " * 80
                pos = _aligned_find(header, key, limit)
        chunks += [bytes(header), view[span.data_start:span.end]]
    return chunks


class _Headers(Mapping):
    """``{'PRIMARY' | kind: astropy Header}`` of one image, each parsed on first access."""

    def __init__(self, backing, names):
        self._backing = backing
        self._names = names
        self._set = {}

    def set(self, kind, header):
        self._set[kind] = header

    def __getitem__(self, kind):
        if kind in self._set:
            return self._set[kind]
        if kind == "PRIMARY":
            first = self._backing.spans[0]
            return self._backing.header("PRIMARY") if first.extname == "PRIMARY" \
                else fits.Header()
        return self._backing.header(self._names[kind])

    def __iter__(self):
        return iter(("PRIMARY",) + KINDS)

    def __len__(self):
        return 1 + len(KINDS)


def celestial_wcs(keywords, cls=WCS, cname=None, label="image"):
    """The 2-D celestial WCS (TAN with SIP) from ``{keyword: value}`` of an image header.

    SPHEREx's layout (PC + CDELT, ``-TAN-SIP``) is set on wcslib directly, a tenth of the
    time of astropy's header parser (which would also digest the alternate ``A`` and ``W``
    WCSs); the same numbers reach wcslib either way. Any other layout is parsed by astropy
    from the primary WCS cards only (``fix=False``: wcslib's date fix-ups would only warn).
    """
    get = keywords.get
    layout = [str(get(f"CTYPE{i}", "")).strip() for i in (1, 2)]
    if layout == ["RA---TAN-SIP", "DEC--TAN-SIP"] and not any(_CD_PV.match(k) for k in keywords):
        try:
            return build_celestial_wcs(celestial_values(get, keywords), sip_matrices(get),
                                       cls, cname=cname)
        except (KeyError, ValueError, TypeError) as exc:
            raise SpherexFormatError(f"{label}: invalid celestial WCS ({exc})") from None
    if isinstance(keywords, _Keywords):
        header = fits.Header.fromstring("".join(card for key, card in keywords.cards.items()
                                                if _CELESTIAL_KEY.match(key)))
    else:
        header = fits.Header([(k, v) for k, v in keywords.items() if _CELESTIAL_KEY.match(k)])
    w = cls(header, naxis=2, fix=False)
    if cname:
        w.wcs.cname = list(cname)
    return w


def _float(header, key):
    value = header.get(key)
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _integral(value):
    return int(round(value)) if abs(value - round(value)) < 1e-9 else value


def open_products(source):
    """Every spectral image in ``source``: one for a single file, each cutout of a combined one.

    Cutouts come in CUTOUT_INFO order (then any not listed there); rows recorded as failed
    or missing have no images and are skipped.
    """
    with _open_backing(source) as backing:
        return _products(backing)


def _products(backing):
    indices = _cutout_indices(backing)
    if indices is None:
        return [SpectralImage(backing, "")]
    info = _cutout_info(backing)
    present = set(indices)
    order = [i for i in info if i in present] + [i for i in indices if i not in info]
    images = []
    try:
        for i in order:
            images.append(_image(backing, i, info))
    except BaseException:
        for image in images:
            image.close()
        raise
    return images


def is_spherex_product(source):
    """True if ``source`` is a SPHEREx spectral image or combined cutout file (headers only)."""
    try:
        with _open_backing(source) as backing:
            indices = _cutout_indices(backing)
            _resolve(backing, "" if indices is None else str(indices[0]))
        return True
    except (SpherexError, OSError, ValueError, TypeError, KeyError):
        return False
