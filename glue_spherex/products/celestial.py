"""The celestial (TAN-SIP) WCS of a SPHEREx image, set on wcslib from keyword values.

astropy's header parser digests every card, including the alternate ``A`` and ``W`` (-TAB)
WCSs, which makes it about ten times slower than setting the primary WCS's few numbers on
wcslib directly. Readers that build hundreds of WCSs (the glue datasets, the fetcher's
append path) use :func:`celestial_values` and :func:`build_celestial_wcs`; wcslib receives
the same numbers either way, so pixel positions are identical. :func:`separation_deg` is
the one angular distance the package uses (astropy's, on plain degrees).
"""

from __future__ import annotations

import numpy as np
from astropy.coordinates import angular_separation
from astropy.wcs import WCS, Sip

from ..errors import SpherexFormatError

#: Highest SIP polynomial order accepted (SPHEREx writes 4; an order n costs (n+1)^2 terms).
MAX_SIP_ORDER = 20

__all__ = ["celestial_values", "sip_matrices", "build_celestial_wcs", "separation_deg"]


def separation_deg(lon1, lat1, lon2, lat2):
    """Angular distance (deg) between positions in degrees: astropy's Vincenty formula, as
    ``SkyCoord.separation`` uses, without building SkyCoords (arrays broadcast)."""
    return np.degrees(angular_separation(*(np.radians(v) for v in (lon1, lat1, lon2, lat2))))


def celestial_values(get, keys):
    """The primary celestial WCS as plain values, from ``get(keyword, default)``.

    ``keys`` supports ``in`` (a Header or a dict of keyword values).
    """
    values = {
        "ctype": [str(get("CTYPE1", "")).strip(), str(get("CTYPE2", "")).strip()],
        "crval": [get("CRVAL1", 0.0), get("CRVAL2", 0.0)],
        "crpix": [get("CRPIX1", 0.0), get("CRPIX2", 0.0)],
        "cunit": [str(get("CUNIT1", "deg")).strip(), str(get("CUNIT2", "deg")).strip()],
        "radesys": str(get("RADESYS", "")).strip(),
        "equinox": get("EQUINOX", None), "lonpole": get("LONPOLE", None),
        "latpole": get("LATPOLE", None),
    }
    if "CD1_1" in keys:
        values["cd"] = [[get("CD1_1", 0.0), get("CD1_2", 0.0)],
                        [get("CD2_1", 0.0), get("CD2_2", 0.0)]]
    else:
        values["pc"] = [[get("PC1_1", 1.0), get("PC1_2", 0.0)],
                        [get("PC2_1", 0.0), get("PC2_2", 1.0)]]
        values["cdelt"] = [get("CDELT1", 1.0), get("CDELT2", 1.0)]
    if "NAXIS1" in keys and "NAXIS2" in keys:
        values["pixel_shape"] = (int(get("NAXIS1", 0)), int(get("NAXIS2", 0)))
    return values


def sip_matrices(get):
    """``{'A': matrix, ...}`` of the SIP polynomials whose ``*_ORDER`` is given."""
    matrices = {}
    for prefix in ("A", "B", "AP", "BP"):
        order = get(f"{prefix}_ORDER", None)
        if order is None:
            continue
        if isinstance(order, bool) or not isinstance(order, (int, float)) \
                or not float(order).is_integer() or not 0 <= order <= MAX_SIP_ORDER:
            raise SpherexFormatError(f"{prefix}_ORDER = {str(order)[:20]!r} is not an integer "
                                     f"0-{MAX_SIP_ORDER}")
        order = int(order)
        m = np.zeros((order + 1, order + 1))
        for p in range(order + 1):
            for q in range(order + 1 - p):
                m[p, q] = get(f"{prefix}_{p}_{q}", 0.0)
        matrices[prefix] = m
    return matrices


def build_celestial_wcs(values, sip, cls=WCS, cname=None):
    """A 2-D ``cls`` (an astropy WCS class) from :func:`celestial_values` and SIP matrices."""
    w = cls(naxis=2)
    c = w.wcs
    c.ctype = values["ctype"]
    c.crval = values["crval"]
    c.crpix = values["crpix"]
    if "cd" in values:
        c.cd = values["cd"]
    else:
        c.pc = values["pc"]
        c.cdelt = values["cdelt"]
    c.cunit = values["cunit"]
    if values.get("radesys"):
        c.radesys = values["radesys"]
    for key in ("equinox", "lonpole", "latpole"):
        if values.get(key) is not None:
            setattr(c, key, values[key])
    if cname:
        c.cname = list(cname)
    if "A" in sip and "B" in sip:
        w.sip = Sip(sip["A"], sip["B"], sip.get("AP"), sip.get("BP"), c.crpix)
    c.set()
    if values.get("pixel_shape"):
        w.pixel_shape = tuple(values["pixel_shape"])
    return w
