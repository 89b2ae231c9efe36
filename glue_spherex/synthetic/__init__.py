"""A synthetic SPHEREx universe: faithful Level-2 files of a deterministic sky with known truth.

- :mod:`.spec` -- :class:`FrameSpec`, the few numbers that identify an exposure;
- :mod:`.sky` -- the sky (sources with analytic SEDs, a galaxy at M101, zodiacal light) and
  its truth; the unit conventions are documented there;
- :mod:`.geometry` -- the real TAN-SIP WCS re-pointed per frame, footprints, cutout windows;
- :mod:`.psf`, :mod:`.flags`, :mod:`.render` -- PSF cube, FLAGS bits, pixel data of a window;
- :mod:`.headers` -- the real keyword set filled in per frame;
- :mod:`.frames` -- whole files and IRSA-style cutouts, as HDU lists or bytes;
- :mod:`.plan` -- the observation plan of the local archive.
"""

from .flags import BAD_BITS, BITS, bit_mask
from .frames import clip_window, cutout_bytes, frame_bytes, make_cutout, make_frame, write_frame
from .geometry import (
    NPIX,
    OMEGA_PIX_SR,
    PIXEL_SCALE_ARCSEC,
    cutout_window,
    footprint,
    frame_wcs,
)
from .headers import PIPELINE_VERSION, frame_headers, survey_target_id
from .plan import observation_plan, plan_by_key
from .psf import DETECTOR_FWHM, psf_cube, psf_header
from .render import render_window, source_pixels
from .sky import BANDS, TARGETS, SkyModel, Source, default_sky
from .spec import FrameSpec

__all__ = [
    "FrameSpec", "SkyModel", "Source", "default_sky", "make_frame", "make_cutout",
    "render_window", "frame_wcs", "footprint", "cutout_window", "psf_cube", "psf_header",
    "frame_headers", "observation_plan", "plan_by_key", "TARGETS", "frame_bytes",
    "cutout_bytes", "write_frame", "clip_window", "source_pixels", "BITS", "BAD_BITS",
    "bit_mask", "NPIX", "OMEGA_PIX_SR", "PIXEL_SCALE_ARCSEC", "DETECTOR_FWHM", "BANDS",
    "PIPELINE_VERSION", "survey_target_id",
]
