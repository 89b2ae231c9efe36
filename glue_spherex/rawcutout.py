"""A downloaded cutout kept as its FITS bytes, with only what appending it to a combined file
needs parsed.

:meth:`CombinedWriter.add <glue_spherex.combined.CombinedWriter.add>` needs, per cutout, the six
extensions renamed for its index (byte copies), the central wavelength at the target and a few
identity keywords. :class:`~glue_spherex.products.SpectralImage` gets them by parsing every
header with astropy, over 10 ms of CPU per cutout -- seconds of a 700-cutout download spent
in one thread. :class:`RawCutout` locates the extensions with the header scan of
:mod:`glue_spherex.fitsscan`, reads the few keywords it needs with a minimal card parser and
the wavelength table straight from the table bytes, sets the celestial WCS on wcslib directly
and maps the target with the same wcslib calls but without SkyCoord's frame machinery: about
a tenth of the CPU (1.5 ms instead of 15 ms). It implements only the part of the
SpectralImage interface the writer uses, and the combined file comes out byte-identical
either way (``tests/test_fetch.py`` checks it on every detector, clipped windows and gzip).
"""

from __future__ import annotations

import math
import re
from functools import cached_property

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, NoConvergence

from .celestial import build_celestial_wcs, celestial_values, sip_matrices
from .errors import SpherexFormatError
from .fitsscan import _END_CARD, _aligned_find, scan_spectral_image, unwrap
from .products import _CELESTIAL_KEY, _IMAGE_KINDS, _NEAR_DEG, KINDS, SpectralImage
from .wavelength import SpectralWCS, WaveTable

__all__ = ["RawCutout"]

#: IMAGE keywords read as values (besides the celestial WCS cards).
_IDENTITY = ("NAXIS1", "NAXIS2", "OBSID", "DETECTOR", "MJD-BEG", "MJD-END")
_W_KEY = re.compile(r"^(CTYPE|CRPIX|CRVAL|CDELT|CUNIT)\dW$|^PS\d_\dW$")
_CD_PV = re.compile(r"^(CD|PV)\d_\d+$")
_TFORM_BYTES = {"L": 1, "B": 1, "I": 2, "J": 4, "K": 8, "E": 4, "D": 8}
_TFORM_DTYPE = {"I": ">i2", "J": ">i4", "K": ">i8", "E": ">f4", "D": ">f8"}


class RawCutout:
    """One Level-2 product as validated bytes (plain or gzip), for :class:`CombinedWriter`.

    Raises :class:`~glue_spherex.errors.SpherexFormatError` if the bytes are not a complete
    spectral image.
    """

    def __init__(self, data, label="cutout"):
        self.data = unwrap(bytes(data), label)
        self.label = label
        spans = scan_spectral_image(self.data, label)
        self._spans = {}
        for span in spans:
            self._spans.setdefault(span.extname, span)
        self._cards = {kind: self._header_cards(kind) for kind in ("PRIMARY", "IMAGE",
                                                                   "WCS-WAVE")}
        image = self._cards["IMAGE"]
        # the IMAGE keywords the writer and the wavelength need, as values
        self.header = {key: _value(card, label) for key, card in image.items()
                       if key in _IDENTITY or _CELESTIAL_KEY.match(key) or _W_KEY.match(key)}
        h = self.header
        try:
            self.shape = (int(h.get("NAXIS2", 0)), int(h.get("NAXIS1", 0)))
            self.detector = int(h["DETECTOR"])
        except (KeyError, TypeError, ValueError):
            raise SpherexFormatError(f"{label}: IMAGE has no valid DETECTOR keyword") from None
        self.obsid = str(h.get("OBSID", "")).strip()
        self.bandpass = f"SPHEREx-D{self.detector}"
        self.mjd_beg = _number(h.get("MJD-BEG"))
        self.mjd_end = _number(h.get("MJD-END"))
        primary = self._cards["PRIMARY"]
        version = _value(primary["VERSION"], label) if "VERSION" in primary else None
        self.version = str(version).strip() if version is not None else None

    def _header_cards(self, kind):
        """``{keyword: card}`` of the value cards of one header (first occurrence)."""
        span = self._spans[kind]
        text = bytes(self.data[span.header_start:span.data_start]).decode("latin-1")
        cards = {}
        for pos in range(0, len(text), 80):
            card = text[pos:pos + 80]
            key = card[:8].rstrip()
            if key == "END":
                break
            if card[8:10] == "= ":
                cards.setdefault(key, card)
        return cards

    # -- what CombinedWriter.add uses -----------------------------------------------------

    def _extension_bytes(self, suffix):
        """The six extensions renamed for ``suffix``, as SpectralImage._extension_bytes does:
        EXTNAME (and PS1_0W/PS2_0W of the image HDUs) rewritten in place with their comments,
        CHECKSUM/DATASUM blanked, every other byte copied."""
        view = memoryview(self.data)
        chunks = []
        for kind in KINDS:
            span = self._spans[kind]
            header = bytearray(view[span.header_start:span.data_start])
            limit = _aligned_find(header, _END_CARD)
            new = {"EXTNAME": f"{kind}{suffix}"}
            if kind in _IMAGE_KINDS:
                new["PS1_0W"] = new["PS2_0W"] = f"WCS-WAVE{suffix}"
            if _aligned_find(header, b"EXTNAME = ", limit) < 0:
                raise SpherexFormatError(f"{self.label}: {kind} has no EXTNAME card")
            for key, value in new.items():
                pos = _aligned_find(header, f"{key:8}= ".encode(), limit)
                if pos >= 0:
                    card = header[pos:pos + 80].decode("latin-1")
                    header[pos:pos + 80] = _string_card(key, value, _comment(card))
            for key in (b"CHECKSUM= ", b"DATASUM = "):
                pos = _aligned_find(header, key, limit)
                while pos >= 0:
                    header[pos:pos + 80] = b" " * 80
                    pos = _aligned_find(header, key, limit)
            chunks += [bytes(header), view[span.data_start:span.end]]
        return chunks

    @cached_property
    def wcs(self):
        """Celestial WCS of IMAGE (TAN with SIP).

        SPHEREx's layout (PC + CDELT, ``-TAN-SIP``) is set on a :class:`~astropy.wcs.WCS`
        directly, a tenth of the time of parsing the cards; the same numbers go to wcslib, so
        pixel positions are identical. Any other layout is parsed as SpectralImage.wcs does.
        """
        h = self.header
        layout = [h.get(f"CTYPE{i}", "") for i in (1, 2)] == ["RA---TAN-SIP", "DEC--TAN-SIP"]
        if not layout or any(_CD_PV.match(k) for k in h):
            cards = self._cards["IMAGE"]
            header = fits.Header.fromstring("".join(
                card for key, card in cards.items() if _CELESTIAL_KEY.match(key)))
            return WCS(header, naxis=2, fix=False)
        try:
            return build_celestial_wcs(celestial_values(h.get, h), sip_matrices(h.get))
        except (KeyError, ValueError, TypeError) as exc:
            raise SpherexFormatError(f"{self.label}: invalid celestial WCS ({exc})") from None

    @cached_property
    def spectral_wcs(self):
        """The ``W`` WCS, its table read directly from the WCS-WAVE row bytes."""
        h = self.header
        if str(h.get("CTYPE1W", "")).strip() != "WAVE-TAB":
            raise SpherexFormatError(f"{self.label}: IMAGE has no WAVE-TAB wavelength WCS")
        columns = self._table_columns()
        try:
            x, y, values = (columns[str(h.get(key, default)).strip()] for key, default in
                            (("PS1_2W", "X"), ("PS2_2W", "Y"), ("PS1_1W", "VALUES")))
        except KeyError as exc:
            raise SpherexFormatError(f"{self.label}: WCS-WAVE has no column {exc}") from None
        table = WaveTable(x, y, values.reshape(len(y), len(x), 2))
        return SpectralWCS(table, crpix=(h.get("CRPIX1W", 1.0), h.get("CRPIX2W", 1.0)),
                           crval=(h.get("CRVAL1W", 1.0), h.get("CRVAL2W", 1.0)),
                           cdelt=(h.get("CDELT1W", 1.0), h.get("CDELT2W", 1.0)))

    def _table_columns(self):
        """``{TTYPE: float array}`` of the first row of the WCS-WAVE binary table."""
        cards = self._cards["WCS-WAVE"]
        span = self._spans["WCS-WAVE"]
        row = memoryview(self.data)[span.data_start:span.data_start + span.data_size]
        columns, offset = {}, 0
        for n in range(1, int(_value(cards.get("TFIELDS", "TFIELDS = 0"))) + 1):
            form = str(_value(cards[f"TFORM{n}"])).strip()
            count, code = int(form[:-1] or 1), form[-1]
            if code in _TFORM_DTYPE:
                name = str(_value(cards[f"TTYPE{n}"])).strip()
                columns[name] = np.frombuffer(row, _TFORM_DTYPE[code], count,
                                              offset).astype(float)
            offset += count * _TFORM_BYTES.get(code, 0)
        return columns

    pixel_to_wave = SpectralImage.pixel_to_wave

    def wavelength_at(self, coord):
        """(wavelength, bandwidth) in µm at a sky position, as SpectralImage.wavelength_at.

        For one position and an ICRS image (every SPHEREx image) the same wcslib calls are
        made on the same numbers without SkyCoord's frame machinery (a few ms per cutout);
        anything else goes through SpectralImage.wavelength_at itself.
        """
        if not coord.isscalar or str(self.header.get("RADESYS", "ICRS")).strip() != "ICRS":
            return SpectralImage.wavelength_at(self, coord)
        icrs = coord if coord.frame.name == "icrs" else coord.icrs
        lon, lat = np.array([icrs.ra.deg], float), np.array([icrs.dec.deg], float)
        ny, nx = self.shape
        clon, clat = self.wcs.all_pix2world([(nx - 1) / 2], [(ny - 1) / 2], 0)
        x = y = np.array([np.nan])
        if _separation_deg(lon[0], lat[0], float(clon[0]), float(clat[0])) < _NEAR_DEG:
            try:
                x, y = self.wcs.all_world2pix(lon, lat, 0, quiet=False)
            except NoConvergence as exc:
                best = np.array(exc.best_solution, float)
                if len(exc.divergent or []) or len(exc.slow_conv or []):
                    best[:] = np.nan
                x, y = best[:, 0], best[:, 1]
        wl, bw = self.spectral_wcs.pixel_to_wave(x, y)
        return float(wl[0]), float(bw[0])

    def close(self):
        """Nothing to release (the bytes go with the object)."""


def _value(card, label="cutout"):
    """The value of one FITS value card (string, logical, integer or real)."""
    text = card[10:].lstrip()
    if text.startswith("'"):
        out, pos = [], 1
        while True:
            end = text.find("'", pos)
            if end < 0:
                raise SpherexFormatError(f"{label}: unterminated string in {card[:8].strip()}")
            if text[end + 1:end + 2] == "'":  # '' is a quote inside the string
                out.append(text[pos:end + 1])
                pos = end + 2
                continue
            out.append(text[pos:end])
            return "".join(out).rstrip()
    text = text.split("/", 1)[0].strip()
    if text in ("T", "F"):
        return text == "T"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text.replace("D", "E"))
    except ValueError:
        raise SpherexFormatError(f"{label}: cannot read the value of {card[:8].strip()}") from None


def _comment(card):
    """The comment of a card holding a string value (text after the '/' that follows it)."""
    text = card[10:]
    start = text.find("'")
    pos = start + 1
    while start >= 0:
        end = text.find("'", pos)
        if end < 0:
            return ""
        if text[end + 1:end + 2] == "'":
            pos = end + 2
            continue
        text = text[end + 1:]
        break
    slash = text.find("/")
    return text[slash + 1:].strip() if slash >= 0 else ""


def _string_card(key, value, comment):
    """An 80-byte card ``KEY = 'value'`` (+ `` / comment``), laid out as astropy writes it."""
    quoted = "'" + f"{value.replace(chr(39), chr(39) * 2):8}" + "'"
    image = f"{key:8}= {quoted:20}".rstrip()
    if comment:
        image += " / " + comment
    return image[:80].ljust(80).encode("ascii", "replace")


def _separation_deg(lon1, lat1, lon2, lat2):
    """Great-circle distance (deg), Vincenty's formula as SkyCoord.separation uses."""
    l1, b1, l2, b2 = np.radians([lon1, lat1, lon2, lat2])
    dl = l2 - l1
    num = np.hypot(np.cos(b2) * np.sin(dl),
                   np.cos(b1) * np.sin(b2) - np.sin(b1) * np.cos(b2) * np.cos(dl))
    den = np.sin(b1) * np.sin(b2) + np.cos(b1) * np.cos(b2) * np.cos(dl)
    return float(np.degrees(np.arctan2(num, den)))


def _number(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan
