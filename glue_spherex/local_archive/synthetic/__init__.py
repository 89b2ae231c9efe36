"""A synthetic SPHEREx universe: faithful Level-2 files of a deterministic sky with known truth.

:mod:`.spec` (the numbers that identify an exposure), :mod:`.sky` (sources, galaxy, zodi and
their truth), :mod:`.geometry` (WCS, footprints, cutout windows), :mod:`.psf`, :mod:`.flags`,
:mod:`.render` (PSF, FLAGS, pixels of a window), :mod:`.headers`, :mod:`.pipeline7` (the
pipeline-7 layout), :mod:`.frames` (files and cutouts), :mod:`.layout` (byte spans of a full
frame without rendering it) and :mod:`.plan` (the observation plan).
The names below are imported from their module on first use, so the plan and the footprints
(all the local archive needs for its tables) load without astropy or scipy. How the data are
made: ``docs/archive.rst``.
"""

from importlib import import_module

_EXPORTS = {
    "flags": ("BAD_BITS", "BITS", "bit_mask"),
    "frames": ("clip_window", "cutout_bytes", "frame_bytes", "make_cutout", "make_frame",
               "write_frame"),
    "geometry": ("NPIX", "OMEGA_PIX_SR", "PIXEL_SCALE_ARCSEC", "cutout_window", "footprint",
                 "footprints", "frame_wcs"),
    "headers": ("PIPELINE_VERSION", "frame_headers"),
    "layout": ("FrameLayout", "frame_layout"),
    "plan": ("observation_plan", "plan_by_key"),
    "psf": ("DETECTOR_FWHM", "psf_cube", "psf_header"),
    "render": ("render_flags", "render_window", "source_pixels"),
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
