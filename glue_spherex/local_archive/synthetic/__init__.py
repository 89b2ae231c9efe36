"""A synthetic SPHEREx universe: faithful Level-2 files of a deterministic sky with known truth.

- :mod:`.spec` -- :class:`FrameSpec`, the few numbers that identify an exposure;
- :mod:`.sky` -- the sky (sources with analytic SEDs, a galaxy at M101, zodiacal light) and
  its truth; the unit conventions are documented there;
- :mod:`.geometry` -- the real TAN-SIP WCS re-pointed per frame, footprints, cutout windows;
- :mod:`.psf`, :mod:`.flags`, :mod:`.render` -- PSF cube, FLAGS bits, pixel data of a window;
- :mod:`.headers` -- the real keyword set filled in per frame;
- :mod:`.pipeline7` -- what pipeline-7 files (QR3, QR2 reprocessed) have instead: the QR3
  keyword set, RICE_1 FLAGS with MSKN/MSKM cards, the EPSF table, the R7 WCS-WAVE;
- :mod:`.frames` -- whole files and IRSA-style cutouts, as HDU lists or bytes;
- :mod:`.plan` -- the observation plan of the local archive (QR2, its pipeline-7
  reprocessings, QR3).

The names below are imported from their module on first use, so that the plan and the
footprints (all the local archive needs to build its tables) load without astropy or scipy.
"""

from importlib import import_module

_EXPORTS = {
    "flags": ("BAD_BITS", "BITS", "bit_mask"),
    "frames": ("clip_window", "cutout_bytes", "frame_bytes", "make_cutout", "make_frame",
               "write_frame"),
    "geometry": ("NPIX", "OMEGA_PIX_SR", "PIXEL_SCALE_ARCSEC", "cutout_window", "footprint",
                 "footprints", "frame_wcs"),
    "headers": ("PIPELINE_VERSION", "frame_headers"),
    "plan": ("observation_plan", "plan_by_key"),
    "psf": ("DETECTOR_FWHM", "psf_cube", "psf_header"),
    "render": ("render_window", "source_pixels"),
    "sky": ("BANDS", "TARGETS", "SkyModel", "Source", "default_sky"),
    "spec": ("FrameSpec", "survey_target_id"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name):
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
