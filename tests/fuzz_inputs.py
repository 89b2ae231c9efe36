"""Hostile variants of valid SPHEREx files: the reader's fuzz corpus and its mutations.

Used by ``tests/unit/test_fuzz_reader.py`` (driven by hypothesis) and ``bench/fuzz_reader.py``
(a seeded run of any length that counts distinct failures). The seeds are real files of the
package's synthetic universe: a cutout as the local archive's cutout service serves it (of
both layouts: pipeline < 7 and pipeline 7), and
a combined file written by :class:`~glue_spherex.products.combined.CombinedWriter` (three cutouts and
one failure). A mutation edits what a malicious or broken file would: the value or keyword of
a header card (biased to the cards that give sizes, counts, offsets and the WCS), bytes
anywhere, the bytes of a table's rows or heap, whole blocks, the end of the file; a case
applies one to three of them, and is sometimes gzipped.

Every choice goes through ``pick(n)`` (an integer in ``0 .. n-1``), so one mutator serves
hypothesis (``data.draw``) and :class:`random.Random` alike.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import resource
import tempfile
from functools import cache

from cutouts import covering_frames

from glue_spherex.errors import SpherexError
from glue_spherex.fitsbytes.scan import scan_hdus
from glue_spherex.local_archive.synthetic import cutout_bytes
from glue_spherex.products.combined import CombinedWriter, read_combined
from glue_spherex.products.spectral_image import is_spherex_product, open_products

CARD = 80
BLOCK = 2880
RA, DEC = 210.80227, 54.34895  # M101

#: Keywords whose values the reader turns into sizes, offsets, counts, names or the WCS.
STRUCTURAL = (
    "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "NAXIS3", "PCOUNT", "GCOUNT", "TFIELDS", "THEAP",
    "TFORM1", "TFORM2", "TFORM3", "TFORM4", "TFORM5", "TTYPE1", "TTYPE2", "TTYPE3", "TDIM1",
    "TDIM3", "EXTNAME", "XTENSION", "BSCALE", "BZERO", "DETECTOR", "CTYPE1", "CTYPE2",
    "CTYPE1W", "CRPIX1", "CRPIX2", "CRPIX1A", "CRPIX2A", "CRPIX1W", "CRPIX2W", "CRVAL1",
    "CRVAL2", "CDELT1", "CDELT2", "CDELT1W", "PC1_1", "PC1_2", "PC2_1", "PC2_2", "A_ORDER",
    "B_ORDER", "AP_ORDER", "BP_ORDER", "A_2_0", "PS1_0W", "PS1_1W", "PS1_2W", "MJD-AVG",
    "MJD-BEG", "XPOSURE", "RADESYS", "XCTR_1", "YCTR_1", "NCUTOUT", "ZIMAGE", "ZNAXIS1",
    "ZNAXIS2", "ZBITPIX", "ZCMPTYPE", "ZTILE1", "ZTILE2", "MSKN0000", "OVSMPX",
)

#: Value fields a hostile file might hold (what the red-team run used, and more).
HOSTILE_VALUES = (
    "-1", "0", "1", "2", "-2147483649", "2147483648", "9223372036854775808", "999",
    "1000000", "1000000000", "99999999999999999999999999999999999999", "1e400", "-1e400",
    "inf", "-inf", "NaN", "1.5", "-0.0", "1E-400", "1D10", "T", "F", "'abc'", "''", "'",
    "'IMAGE00001'", "'IMAGE'", "'WCS-WAVE'", "'RA---XYZ'", "'-5J'", "'1000000000E'",
    "'2PJ(5)'", "'1QD'", "'(1000000,1000000)'", "'PRIMARY'", "'BINTABLE'", "'WAVE-TAB'",
    "abc", "1_0", "+", "", "(1,2)", "'x'", "1.0.0", "'RICE_1'",
)


# --------------------------------------------------------------------------------------
# Seeds
# --------------------------------------------------------------------------------------

@cache
def seeds():
    """``{'cutout', 'combined', 'cutout_r7'}``: a 6x6 synthetic cutout, a combined file, and a
    pipeline-7 cutout (RICE_1 FLAGS, the whole EPSF table)."""
    frames = covering_frames(RA, DEC, 6)[:3]
    cutouts = [cutout_bytes(spec, *window) for spec, window in frames]
    planned = [{"cutout_index": i, "access_url": f"http://archive/cutout/{i}"}
               for i in range(1, len(cutouts) + 2)]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "combined.fits")
        with CombinedWriter(path, planned, target=(RA, DEC), size=6 / 3600 * 6.15) as w:
            for i, data in enumerate(cutouts, 1):
                w.add(i, data)
            w.add_failure(len(cutouts) + 1, "HTTP 500: synthetic failure")
        with open(path, "rb") as f:
            combined = f.read()
    r7_spec, r7_window = covering_frames(RA, DEC, 6, part="qr3")[0]
    return {"cutout": cutouts[0], "combined": combined,
            "cutout_r7": cutout_bytes(r7_spec, *r7_window, flags="compressed")}


@cache
def _layout(data):
    """``(cards, tables)`` of a valid file: every value card as ``(offset, key)`` and the data
    span ``(start, size)`` of every table HDU."""
    cards, tables = [], []
    for span in scan_hdus(data):
        for pos in range(span.header_start, span.data_start, CARD):
            key = data[pos:pos + 8].decode("latin-1").rstrip()
            if key == "END":
                break
            if data[pos + 8:pos + 10] == b"= ":
                cards.append((pos, key))
        if span.data_size and span.bitpix == 8:
            tables.append((span.data_start, span.data_size))
    return tuple(cards), tuple(tables)


# --------------------------------------------------------------------------------------
# Mutations
# --------------------------------------------------------------------------------------

def _value(pick):
    kind = pick(4)
    if kind == 0:
        return str(pick(1 << 16) - (1 << 15))
    if kind == 1:
        return f"{(pick(2001) - 1000) / 100:.2f}E{pick(801) - 400}"
    return HOSTILE_VALUES[pick(len(HOSTILE_VALUES))]


def _card_slot(pick, cards):
    structural = [c for c in cards if c[1] in STRUCTURAL]
    pool = structural if structural and pick(4) else cards
    return pool[pick(len(pool))]


def _set_value(buf, pick, cards, tables):
    pos, key = _card_slot(pick, cards)
    if pos + CARD > len(buf):  # cut off by an earlier mutation
        return
    buf[pos:pos + CARD] = f"{key:8}= {_value(pick):>20}".ljust(CARD)[:CARD].encode("latin-1")


def _rename(buf, pick, cards, tables):
    pos, _ = _card_slot(pick, cards)
    if pos + CARD > len(buf):
        return
    new = STRUCTURAL[pick(len(STRUCTURAL))] if pick(3) else ""
    buf[pos:pos + 8] = f"{new:8}".encode()


def _bytes(buf, pick, cards, tables):
    if not buf:
        return
    pos = pick(len(buf))
    n = 1 + pick(8)
    buf[pos:pos + n] = bytes(pick(256) for _ in range(min(n, len(buf) - pos)))


def _table_bytes(buf, pick, cards, tables):
    if not tables:
        return _bytes(buf, pick, cards, tables)
    start, size = tables[pick(len(tables))]
    pos = start + pick(size)
    word = (pick(1 << 32) - (1 << 31)).to_bytes(4, "big", signed=True)
    buf[pos:pos + 4] = word[:max(0, min(4, len(buf) - pos))]


def _blocks(buf, pick, cards, tables):
    at = pick(len(buf) // BLOCK + 1) * BLOCK
    if pick(2):
        del buf[at:at + BLOCK]
    else:
        buf[at:at] = buf[at:at + BLOCK]


def _truncate(buf, pick, cards, tables):
    cut = pick(len(buf) + 1) if pick(2) else pick(len(buf) // BLOCK + 1) * BLOCK
    del buf[cut:]


MUTATIONS = (_set_value, _set_value, _set_value, _rename, _bytes, _table_bytes, _blocks,
             _truncate)


def mutate(seed, pick):
    """A hostile variant of ``seed`` (bytes): one to three mutations, sometimes gzipped."""
    cards, tables = _layout(seed)
    buf = bytearray(seed)
    for _ in range(1 + pick(3)):
        MUTATIONS[pick(len(MUTATIONS))](buf, pick, cards, tables)
    data = bytes(buf)
    if pick(10) == 0:
        data = gzip.compress(data, compresslevel=1)
        if pick(3) == 0:  # and damaged
            cut = pick(len(data))
            data = data[:cut] + bytes([pick(256)]) + data[cut + 1:]
    return data


# --------------------------------------------------------------------------------------
# What is read
# --------------------------------------------------------------------------------------

def exercise(data, glue=None):
    """Every read a user or glue makes of ``data``; returns the documented errors raised.

    Each step runs on its own, so one refused step does not hide the next; anything but a
    :class:`~glue_spherex.errors.SpherexError` propagates. ``glue`` is
    :func:`glue_spherex.plugin.datasets.product_to_data` when glue is to be exercised.
    """
    errors = []

    def step(function, *args):
        try:
            return function(*args)
        except SpherexError as exc:
            errors.append(exc)
            return None

    step(is_spherex_product, data)
    step(read_combined, data)
    products = step(open_products, data) or []
    for product in products:
        for name in ("image", "flags", "variance", "zodi", "psf", "wcs", "flag_bits",
                     "parent_origin", "spectral_wcs"):
            step(getattr, product, name)
        step(product.wavelength)
        step(product.psf_zone, 0, 0)
        step(product.psf_at, 0, 0)
        ny, nx = product.shape
        step(product.pixel_to_wave, (nx - 1) / 2, (ny - 1) / 2)
        step(_wavelength_at, product)
        if glue is not None:
            step(glue, product)
        product.close()
    return errors


def _wavelength_at(product):
    from astropy.coordinates import SkyCoord

    return product.wavelength_at(SkyCoord(RA, DEC, unit="deg"))


def _address_space():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmSize in /proc/self/status")


@contextlib.contextmanager
def memory_bound(megabytes):
    """Let the process's address space grow by at most ``megabytes`` inside the block: an
    allocation beyond it raises MemoryError (RLIMIT_AS; the previous limit is restored)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = _address_space() + (megabytes << 20)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def signature(exc):
    """``'Type at file:line'`` of the innermost frame in glue_spherex (or the last one)."""
    frames = []
    tb = exc.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame.f_code.co_filename + f":{tb.tb_lineno}")
        tb = tb.tb_next
    ours = [f for f in frames if "glue_spherex" in f] or frames or ["?"]
    where = ours[-1].split("glue_spherex")[-1].lstrip("/\\")
    return f"{type(exc).__name__} at {where}"


__all__ = ["seeds", "mutate", "exercise", "signature", "memory_bound", "MUTATIONS", "HOSTILE_VALUES",
           "STRUCTURAL"]
