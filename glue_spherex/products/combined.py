"""The combined cutout file of IRSA's SPHEREx cutouts tutorial, written as a stream.

HDU 0 PRIMARY, HDU 1 CUTOUT_INFO (one row per planned cutout), then per cutout that arrived
its own extensions, renamed ``IMAGEn FLAGSn VARIANCEn ZODIn PSFn|EPSFn WCS-WAVEn``, so QR2 and
pipeline-7 cutouts mix in one file and the tutorial's code reads it (the layout, and the
``PS1_0W`` fix that makes ``WCS(..., key='W')`` work, are in ``docs/format.rst``).
:class:`CombinedWriter` appends each cutout to a :func:`~glue_spherex.fitsbytes.atomic.
temporary_path` file beside ``path`` as it arrives (at most one in memory), rewrites the
fixed-size CUTOUT_INFO on close and renames the file onto ``path`` itself, holding
:func:`~glue_spherex.fitsbytes.atomic.output_lock` meanwhile. An interrupted download leaves
a valid file of what arrived; a cutout that cannot be read is a failed row, never costing
the others. With ``psf='none'`` the cutouts have no PSFn/EPSFn (PRIMARY ``PSFOMIT = T``).
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import threading

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.io.fits.verify import VerifyError
from astropy.table import Table

from ..errors import SpherexError, SpherexFormatError, SpherexInputError, SpherexOutputError
from ..fitsbytes.atomic import (
    output_lock,
    remove_stale_temporaries,
    stale_temporaries,
    temporary_path,
)
from ..fitsbytes.stream import StreamFile
from .spectral_image import (
    KINDS,
    PSF_OMITTED_KEY,
    SpectralImage,
    backing_products,
    open_backing,
    provenance,
    read_cutout_info,
)

__all__ = ["CombinedWriter", "read_combined", "INFO_COLUMNS", "estimated_cutout_bytes",
           "recover_partial", "PSF_CHOICES"]

#: What :class:`CombinedWriter` (and ``fetch_to_file``) keep of each cutout's PSF extension.
PSF_CHOICES = ("full", "none")

#: CUTOUT_INFO columns: name, FITS format (``None`` width: computed), unit.
INFO_COLUMNS = (
    ("cutout_index", "J", None),
    ("observation_date", "D", "d"),
    ("central_wavelength", "D", "um"),
    ("access_url", "A", None),
    ("central_bandwidth", "D", "um"),
    ("obs_id", "A", None),
    ("detector", "I", None),
    ("bandpass", "A", None),
    ("mjd_end", "D", "d"),
    ("status", "A", None),
    ("reason", "A", None),
    ("version", "A", None),
    ("release", "A", None),
    ("processing", "A", None),
)
_MIN_WIDTH = {"access_url": 200, "obs_id": 32, "bandpass": 16, "status": 8, "reason": 200,
              "version": 32, "release": 8, "processing": 40}
_STATUS_ORDER = {"ok": 0, "failed": 1, "missing": 2}
_BLOCK = 2880
_PRIMARY_BYTES = len(fits.PrimaryHDU().header.tostring())


class CombinedWriter:
    """Write a combined cutout file one cutout at a time.

    Parameters
    ----------
    path : str or PathLike
        Final file name; the file is built under a temporary name beside it and renamed on
        :meth:`close`. Another writer of the same ``path`` (in this process or another) makes
        the constructor raise :class:`~glue_spherex.errors.SpherexOutputError`.
    planned : sequence of dict, or astropy Table
        One entry per cutout, with at least ``cutout_index`` (unique, >= 1) and
        ``access_url``; optionally ``obs_id``, ``detector``, ``bandpass``,
        ``observation_date`` and ``mjd_end`` (filled from the product when it arrives).
    target : SkyCoord or (ra, dec) in degrees, optional
        Where the central wavelength of each cutout is evaluated (default: its centre).
    size : float (degrees) or Quantity, optional
        Requested cutout size, recorded in the PRIMARY header.
    overwrite : bool
        Replace an existing ``path`` on close.
    psf : {'full', 'none'}
        ``'none'`` leaves out every cutout's PSF extension (PSFn or EPSFn) and marks the file
        ``PSFOMIT = T``; :attr:`psf_bytes_saved` counts the bytes not written.
    """

    def __init__(self, path, planned, *, target=None, size=None, overwrite=False, psf="full"):
        if psf not in PSF_CHOICES:
            raise SpherexInputError(f"psf must be one of {PSF_CHOICES}, not {psf!r}")
        self.psf = psf
        #: bytes of PSF extensions left out so far (``psf='none'``)
        self.psf_bytes_saved = 0
        self.path = os.fspath(path)
        if os.path.isdir(self.path):
            raise SpherexOutputError(f"{self.path} is a directory; give a file name")
        if os.path.exists(self.path) and not overwrite:
            raise SpherexInputError(f"{self.path} exists; pass overwrite=True to replace it")
        self._rows = _planned_rows(planned)
        self._widths = _widths(self._rows)
        self._target = _target(target)
        self._primary = _primary_header(self._target, size)
        if psf == "none":
            self._primary[PSF_OMITTED_KEY] = (True, "PSF extensions left out (psf='none')")
        self._lock = threading.Lock()
        self._closed = False
        #: True once the file is complete at :attr:`path`
        self.finished = False
        self._file = None
        self._held = contextlib.ExitStack()
        self._held.enter_context(output_lock(self.path))  # before anything is written
        self.part_path = os.fspath(temporary_path(self.path))
        try:
            # ours now: temporary files of this output left by a killed writer are garbage
            remove_stale_temporaries(os.path.dirname(os.path.abspath(self.path)),
                                     os.path.basename(self.path))
            try:
                self._file = StreamFile(self.part_path)  # past the page cache where possible
                primary = self._primary.tostring().encode("ascii")
                self._file.write(primary)
                info = self._info_hdu(list(self._rows.values()))
                chunk = _table_bytes(info)
                # offsets and sizes that close() rewrites in place
                self._sizes = (len(primary), len(chunk))
                self._info_size = _padded(info.header["NAXIS1"] * info.header["NAXIS2"])
                self._info_offset = len(primary) + len(chunk) - self._info_size
                self._file.write(chunk)
            except OSError as exc:
                raise SpherexOutputError(
                    f"cannot write {self.path}: {exc.strerror or exc}") from None
        except BaseException:
            self._discard()
            raise

    # -- adding cutouts ------------------------------------------------------------------------

    def add(self, cutout_index, product):
        """Append one cutout (SpectralImage, HDUList, bytes or path) and mark its row 'ok'.

        A product that cannot be read -- whatever the exception -- is recorded as failed with
        the reason and a :class:`~glue_spherex.errors.SpherexFormatError` raised; the file
        and the other cutouts are untouched. An :class:`OSError` while writing (a full disk)
        leaves the file as it was before this cutout and propagates.
        """
        row = self._row(cutout_index)
        owned = not isinstance(product, SpectralImage)
        image = None
        try:
            try:
                image = SpectralImage.open(product) if owned else product
                suffix = str(row["cutout_index"])
                keep_psf = self.psf == "full"
                if not keep_psf and image.has_psf:
                    saved = image.psf_nbytes
                else:
                    saved = 0
                if keep_psf and not image.has_psf:
                    raise SpherexFormatError("it has no PSF extension; this file is written "
                                             "with psf='full'")
                # byte copies of the product's file
                chunks = image._extension_bytes(suffix, psf=keep_psf)
                if self._target is not None:
                    wl, bw = image.wavelength_at(self._target)
                else:
                    ny, nx = image.shape
                    wl, bw = (float(v) for v in image.pixel_to_wave((nx - 1) / 2, (ny - 1) / 2))
                meta = {
                    "observation_date": image.mjd_beg, "mjd_end": image.mjd_end,
                    "central_wavelength": wl, "central_bandwidth": bw, "obs_id": image.obsid,
                    "detector": int(image.detector), "bandpass": image.bandpass,
                    "version": image.version or row["version"],
                    "release": row["release"] or image.release or "",
                    "processing": row["processing"] or image.processing or "",
                    "status": "ok", "reason": "",
                }
            except Exception as exc:  # any fault of this one product stays with it
                reason = str(exc) if isinstance(exc, SpherexError) else \
                    f"{type(exc).__name__}: {exc}"
                self.add_failure(cutout_index, reason)
                if isinstance(exc, SpherexFormatError):
                    raise
                raise SpherexFormatError(f"cutout {cutout_index}: {reason}") from exc
            with self._lock:
                self._check_open()
                if row["status"] == "ok":
                    raise SpherexInputError(f"cutout {cutout_index} was already added")
                start = self._file.tell()
                try:
                    for chunk in chunks:
                        self._file.write(chunk)
                except BaseException:
                    self._file.truncate(start)  # drop the half-written cutout
                    raise
                row.update(meta)
                self.psf_bytes_saved += saved
        finally:
            if owned and image is not None:
                image.close()

    def add_failure(self, cutout_index, reason):
        """Record that a planned cutout could not be fetched (``reason`` is kept, truncated)."""
        row = self._row(cutout_index)
        with self._lock:
            self._check_open()
            if row["status"] == "ok":
                raise SpherexInputError(f"cutout {cutout_index} was already added")
            row["status"] = "failed"
            row["reason"] = " ".join(str(reason).split())

    # -- finishing -----------------------------------------------------------------------------

    def close(self):
        """Write the final CUTOUT_INFO and counts, fsync, and rename to :attr:`path`.

        If that fails (a full disk, or an interrupt while finishing), the temporary file is
        removed and the error propagates: nothing half-written is left anywhere.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            f = self._file
            try:
                rows = sorted(self._rows.values(),
                              key=lambda r: (_STATUS_ORDER[r["status"]], r["cutout_index"]))
                chunk = _table_bytes(self._info_hdu(rows))
                counts = {s: sum(r["status"] == s for r in rows) for s in _STATUS_ORDER}
                self._primary["NCUTOUT"] = counts["ok"]
                self._primary["NFAILED"] = counts["failed"]
                self._primary["NMISSING"] = counts["missing"]
                primary = self._primary.tostring().encode("ascii")
                if (len(primary), len(chunk)) != self._sizes:  # fixed-width by construction
                    raise RuntimeError("CUTOUT_INFO or PRIMARY changed size; file not finished")
                f.overwrite(self._info_offset, chunk[len(chunk) - self._info_size:])
                f.overwrite(0, primary)
                f.close(fsync=True)
                os.replace(self.part_path, self.path)
                self.finished = True
            except BaseException:
                self._discard()
                raise
            self._held.close()
            _fsync_dir(os.path.dirname(os.path.abspath(self.path)))

    def abort(self):
        """Stop without writing :attr:`path`: remove the temporary file, release the lock."""
        with self._lock:
            self._closed = True
            self._discard()

    def _discard(self):
        try:
            if self._file is not None:
                self._file.abort()
        finally:
            with contextlib.suppress(OSError):
                os.unlink(self.part_path)
            self._held.close()

    @property
    def counts(self):
        """``{'ok': n, 'failed': n, 'missing': n}`` so far."""
        with self._lock:
            statuses = [r["status"] for r in self._rows.values()]
        return {s: statuses.count(s) for s in _STATUS_ORDER}

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        # Finish the file with what arrived even when the caller failed; re-raise its error.
        self.close()
        return False

    @property
    def urls(self):
        """The planned ``access_url`` of every cutout, in cutout_index order."""
        return [self._rows[i]["access_url"] for i in sorted(self._rows)]

    @property
    def statuses(self):
        """``{cutout_index: status}`` so far."""
        return {i: r["status"] for i, r in self._rows.items()}

    # -- helpers -------------------------------------------------------------------------------

    def _check_open(self):
        if self._closed:
            raise SpherexInputError(f"the combined file {self.path} is already closed")

    def _row(self, cutout_index):
        try:
            return self._rows[int(cutout_index)]
        except (KeyError, TypeError, ValueError):
            raise SpherexInputError(
                f"cutout_index {cutout_index!r} is not one of the {len(self._rows)} planned cutouts"
            ) from None

    def _info_hdu(self, rows):
        cols = []
        for name, fmt, unit in INFO_COLUMNS:
            values = [r[name] for r in rows]
            if fmt == "A":
                width = self._widths[name]
                array = np.array([_ascii(v, width) for v in values], dtype=f"S{width}")
                cols.append(fits.Column(name=name, format=f"A{width}", array=array))
            else:
                dtype = {"J": np.int32, "D": np.float64, "I": np.int16}[fmt]
                cols.append(fits.Column(name=name, format=fmt, unit=unit,
                                        array=np.array(values, dtype=dtype)))
        return fits.BinTableHDU.from_columns(cols, name="CUTOUT_INFO")


def read_combined(path):
    """``(CUTOUT_INFO as a Table, [SpectralImage per cutout present])`` of a combined file."""
    with open_backing(path) as backing:
        if "CUTOUT_INFO" not in backing:
            raise SpherexFormatError(f"{backing.label}: not a combined cutout file (no CUTOUT_INFO)")
        read_cutout_info(backing, complete=True)  # validates the table, refuses a truncated file
        try:  # astropy also parses every header card, for the table's meta
            table = Table.read(backing.hdu("CUTOUT_INFO"))
        except (ValueError, TypeError, KeyError, IndexError, AttributeError, AssertionError,
                VerifyError) as exc:
            raise SpherexFormatError(f"{backing.label}: unreadable CUTOUT_INFO table ({exc})") \
                from None
        if not backing.cutouts:  # every cutout failed: the table still says why
            return table, []
        return table, backing_products(backing)


#: What one cutout adds to a file besides its pixels: the PSF cube (121 zones of 101x101
#: float32), the WCS-WAVE table and six headers.
_FIXED_BYTES = 121 * 101 * 101 * 4 + 40 * _BLOCK
_PIXEL_BYTES = 16  # IMAGE, FLAGS, VARIANCE, ZODI: 4 bytes each
_PIXEL_ARCSEC = 6.15
_FRAME_PX = 2040


def estimated_cutout_bytes(size, psf="full"):
    """About how many bytes one cutout of ``size`` (degrees, Quantity or size string) takes
    (``psf='none'``: without the PSF cube).

    Used to check free space before a download; a full frame comes to IRSA's
    ``access_estsize`` (about 71.6 MB).
    """
    from ..irsa.core import parse_size

    size = parse_size(size)
    px = size.px if size.px is not None else math.ceil(size.deg * 3600 / _PIXEL_ARCSEC) + 1
    px = min(px, _FRAME_PX)
    fixed = _FIXED_BYTES if psf == "full" else _FIXED_BYTES - 121 * 101 * 101 * 4
    return fixed + _PIXEL_BYTES * px * px


def recover_partial(path):
    """The temporary file a killed writer of ``path`` left, cut back to its last whole cutout.

    A writer killed outright (SIGKILL, power loss) leaves its temporary file: the PRIMARY,
    the CUTOUT_INFO of every planned cutout (all still 'missing') and the cutouts appended so
    far, the last one perhaps cut short. Call this while holding
    :func:`~glue_spherex.fitsbytes.atomic.output_lock` on ``path``: the newest such file whose process
    is gone is truncated after its last complete cutout and its path returned (it then reads
    as a combined file, for a resumed run to take the cutouts from); files with no complete
    cutout are deleted. Returns None when there is nothing to recover.
    """
    path = os.fspath(path)
    found = stale_temporaries(os.path.dirname(os.path.abspath(path)), os.path.basename(path))
    found.sort(key=lambda p: p.stat().st_mtime if p.exists() else 0, reverse=True)
    for stale in found:
        try:
            with open(stale, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                end = 0
                if size:
                    import mmap

                    with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                        end = _whole_cutouts_end(mm)
            if end:
                os.truncate(stale, end)
                return stale
            stale.unlink()
        except OSError:
            continue
    return None


def _whole_cutouts_end(buffer):
    """Byte offset just after the last complete cutout of a partly written combined file."""
    n = len(buffer)
    view = memoryview(buffer)
    offset = end = 0
    hdu = 0
    group = []
    end_card = b"END".ljust(80)
    while offset + _BLOCK <= n:
        start = offset
        while True:  # the header's blocks, up to its END card
            if offset + _BLOCK > n or offset - start > 200 * _BLOCK:
                return end
            block = bytes(view[offset:offset + _BLOCK])
            offset += _BLOCK
            if any(block[i:i + 80] == end_card for i in range(0, _BLOCK, 80)):
                break
        try:
            header = fits.Header.fromstring(bytes(view[start:offset]).decode("ascii"))
            bits = abs(int(header["BITPIX"])) // 8
            axes = [int(header[f"NAXIS{i}"]) for i in range(1, int(header["NAXIS"]) + 1)]
            count = int(header.get("GCOUNT", 1)) * (int(header.get("PCOUNT", 0))
                                                    + math.prod(axes) if axes else 0)
        except Exception:  # noqa: BLE001 (a damaged header ends what can be recovered)
            return end
        if bits <= 0 or count < 0 or min(axes, default=0) < 0:
            return end
        offset += _padded(bits * count)
        if offset > n:
            return end
        hdu += 1
        if hdu == 1:  # PRIMARY: a file written with psf='none' has five extensions a cutout
            omitted = header.get(PSF_OMITTED_KEY) is True
            per_cutout = len(KINDS) - omitted
        name = str(header.get("EXTNAME", "")).strip().upper()
        if hdu == 2 and name != "CUTOUT_INFO":
            return 0
        if hdu <= 2:
            continue
        group.append(name)
        if len(group) == per_cutout:
            suffix = group[0][len(KINDS[0]):]
            layouts = ([kind + suffix for kind in KINDS if kind != "PSF"],) if omitted else (
                [kind + suffix for kind in KINDS],  # pipeline < 7, and 7 (EPSFn)
                [("EPSF" if kind == "PSF" else kind) + suffix for kind in KINDS])
            if group not in layouts:
                return end
            end, group = offset, []
    return end


# ------------------------------------------------------------------------------------------
# Serialisation
# ------------------------------------------------------------------------------------------

def _table_bytes(hdu):
    """Header and data of a table HDU exactly as astropy writes them (behind a PRIMARY)."""
    buf = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(buf)
    return buf.getvalue()[_PRIMARY_BYTES:]


def _padded(n):
    return n + (-n % _BLOCK)


def _fsync_dir(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _ascii(value, width):
    return str(value if value is not None else "").encode("ascii", "replace")[:width]


# ------------------------------------------------------------------------------------------
# Inputs
# ------------------------------------------------------------------------------------------

def _planned_rows(planned):
    if isinstance(planned, Table):
        planned = [{c: row[c] for c in planned.colnames} for row in planned]
    rows = {}
    for entry in planned:
        try:
            index = int(entry["cutout_index"])
            url = entry["access_url"]
        except (KeyError, TypeError, ValueError):
            raise SpherexInputError(
                "each planned cutout needs an integer 'cutout_index' and an 'access_url'"
            ) from None
        if index < 1 or index in rows:
            raise SpherexInputError(f"cutout_index {index} is not >= 1 or is not unique")
        rows[index] = {
            "cutout_index": index,
            "observation_date": _num(entry.get("observation_date")),
            "central_wavelength": math.nan,
            "access_url": _text(url),
            "central_bandwidth": math.nan,
            "obs_id": _text(entry.get("obs_id")),
            "detector": int(_num(entry.get("detector"), 0)),
            "bandpass": _text(entry.get("bandpass")),
            "mjd_end": _num(entry.get("mjd_end")),
            "status": "missing",
            "reason": "",
            **_provenance(entry, url),
        }
    return rows


def _provenance(entry, url):
    """``version``, ``release`` and ``processing`` of a planned row: its own columns (a query
    table has ``release`` and ``version``; a ``version`` that is a processing tag counts as
    one), else what the access URL says."""
    tags = provenance(_text(url))
    version = _text(entry.get("version"))
    processing = _text(entry.get("processing")) or (
        provenance(version)["processing"] if version else None)
    if processing and version == processing:
        version = ""
    return {"version": version, "release": _text(entry.get("release")) or tags["release"] or "",
            "processing": processing or tags["processing"] or ""}


def _text(value):
    if value is None or np.ma.is_masked(value):
        return ""
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    return str(value).strip()


def _num(value, default=math.nan):
    if value is None or np.ma.is_masked(value):
        return default
    try:
        value = float(value)
    except (TypeError, ValueError):
        return default
    return value if math.isfinite(value) else default


def _widths(rows):
    widths = dict(_MIN_WIDTH)
    for name in ("access_url", "obs_id", "bandpass"):
        longest = max((len(_ascii(r[name], 1 << 16)) for r in rows.values()), default=0)
        widths[name] = max(widths[name], longest)
    return widths


def _target(target):
    if target is None or isinstance(target, SkyCoord):
        return target
    try:
        ra, dec = target
        return SkyCoord(float(ra), float(dec), unit="deg")
    except (TypeError, ValueError):
        raise SpherexInputError(
            f"target must be a SkyCoord or (ra, dec) in degrees, not {target!r}"
        ) from None


def _primary_header(target, size):
    header = fits.PrimaryHDU().header
    header["ORIGIN"] = ("glue-spherex", "combined SPHEREx cutouts")
    if target is not None:
        icrs = target.icrs
        header["RA_TARG"] = (float(icrs.ra.deg), "[deg] target right ascension (ICRS)")
        header["DEC_TARG"] = (float(icrs.dec.deg), "[deg] target declination (ICRS)")
    if size is not None:
        if isinstance(size, u.Quantity) and size.unit.physical_type == "angle":
            size = size.to(u.deg)
        value, unit = (size.value, size.unit.to_string()) if isinstance(size, u.Quantity) \
            else (size, "deg")
        header["CUTSIZE"] = (float(value), "requested cutout size")
        header["CUTUNIT"] = (unit, "unit of CUTSIZE")
    header["NCUTOUT"] = (0, "cutouts in this file")
    header["NFAILED"] = (0, "planned cutouts that failed (see CUTOUT_INFO)")
    header["NMISSING"] = (0, "planned cutouts that never arrived")
    return header
