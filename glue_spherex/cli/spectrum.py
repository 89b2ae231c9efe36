"""``glue-spherex spectrum``: the aperture spectrum at a position from a file of cutouts.

Example::

    glue-spherex spectrum combined.fits --ra 210.80227 --dec 54.34895 --radius 6arcsec \\
        -o spec.ecsv --plot spec.png [--annulus 12arcsec,20arcsec] [--no-zodi] \\
        [--bad-flags HOT,COLD,...] [--spectrum spec.fits]

Without ``-o`` the table is printed. Every cutout gives a row; rows that could not be
measured keep a NaN flux and say why in ``status``. On a terminal, progress bars on stderr
follow the two slow steps, opening the cutouts and measuring them (``--no-progress`` hides
them; as with ``fetch``, none is drawn when stderr is not a terminal). Exit code 0 when at least one cutout was
measured, 1 when none was (the outputs are still written) or an output cannot be written
(checked before any work), 2 on bad input.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

from .common import float_arg

__all__ = ["add_parser", "run", "parse_angle", "angle_arg", "annulus_arg"]

DESCRIPTION = """\
Measure the spectrum (SED) at a sky position on every SPHEREx cutout in FILE (a combined
cutout file or a single spectral image): circular-aperture photometry on each cutout's own
pixels with flagged pixels masked, the ZODI model subtracted, MJy/sr converted to µJy, one
row per cutout at the wavelength that cutout sees at the position, sorted by wavelength.
"""

EPILOG = """\
aperture correction:
  psf   (default) total flux of a point source: the aperture sum is divided by the fraction
        of the cutout's PSF (its PSF-extension zone) falling in the unmasked aperture pixels
  none  flux inside the aperture (extended sources); masked pixels are replaced by their
        mirror image about the centre

status column: ok, off_image, masked, too_masked, unfillable, no_background, no_psf

exit codes:
  0    at least one cutout was measured (the outputs are written)
  1    no cutout could be measured (the outputs are still written), an output could not
       be written (missing or read-only directory, full disk), or an internal error
  2    bad input or usage (including a file that is not a SPHEREx product)
  130  interrupted (Ctrl-C); no output is left half-written
"""


def parse_angle(text, what="angle"):
    """``'6arcsec'``, ``'0.1 arcmin'``, ``'0.002deg'`` or a bare number (arcsec) -> Quantity."""
    import astropy.units as u

    from ..errors import SpherexInputError

    text = str(text).strip()
    try:
        value = u.Quantity(float(text), u.arcsec)
    except ValueError:
        try:
            value = u.Quantity(text)
            value = value.to(u.arcsec)
        except (TypeError, ValueError, u.UnitsError):
            raise SpherexInputError(
                f"{what} {text!r} is not an angle; use e.g. 6arcsec, 0.1arcmin or 0.002deg"
            ) from None
    return value


def angle_arg(what):
    def convert(text):
        from ..errors import SpherexInputError

        try:
            value = parse_angle(text, what)
        except SpherexInputError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        if not value.value > 0 or not math.isfinite(value.value):
            raise argparse.ArgumentTypeError(
                f"{what} {text!r} must be a positive angle, e.g. 6arcsec")
        return value
    return convert


def annulus_arg(text):
    parts = [p for p in str(text).split(",") if p.strip()]
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(
            f"annulus {text!r} must be two angles 'INNER,OUTER', e.g. 12arcsec,20arcsec")
    return tuple(angle_arg("annulus radius")(p) for p in parts)


def _flags_arg(text):
    if str(text).strip().lower() in ("", "none"):
        return ()
    return tuple(p.strip() for p in str(text).split(",") if p.strip())


def add_parser(subparsers):
    """Register the ``spectrum`` subcommand."""
    from ..products.flags import DEFAULT_BAD_FLAGS

    parser = subparsers.add_parser(
        "spectrum", help="aperture spectrum at a position from a file of cutouts",
        description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", metavar="FILE",
                        help="combined cutout file (or one spectral image)")
    parser.add_argument("--ra", type=float_arg("RA"), required=True,
                        help="aperture centre, right ascension (deg, ICRS)")
    parser.add_argument("--dec", type=float_arg("Dec"), required=True,
                        help="aperture centre, declination (deg, ICRS)")
    parser.add_argument("--radius", type=angle_arg("radius"), default="6arcsec",
                        help="aperture radius with unit (default 6arcsec; a bare number is "
                             "arcsec)")
    parser.add_argument("--annulus", type=annulus_arg, metavar="INNER,OUTER",
                        help="local background annulus, e.g. 12arcsec,20arcsec")
    parser.add_argument("--no-zodi", action="store_true",
                        help="do not subtract the ZODI model")
    parser.add_argument("--bad-flags", type=_flags_arg, metavar="NAMES",
                        help="comma-separated FLAGS names to mask (default: "
                             f"{', '.join(DEFAULT_BAD_FLAGS)}); 'none' masks only invalid "
                             "pixels")
    parser.add_argument("--aperture-correction", choices=("psf", "none"), default="psf",
                        help="psf: total flux of a point source (default); none: flux in the "
                             "aperture, for extended sources")
    parser.add_argument("--min-unmasked-fraction", type=float_arg("fraction"), default=0.5,
                        metavar="F", help="minimum usable fraction of the aperture (default 0.5)")
    parser.add_argument("-o", "--output", metavar="ECSV",
                        help="write the table as ECSV (default: print it)")
    parser.add_argument("--plot", metavar="PNG", help="write a plot of the spectrum")
    parser.add_argument("--spectrum", metavar="FITS",
                        help="write a specutils spectrum (tabular FITS)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)
    return parser


def run(args):
    """Run the subcommand; returns the exit code."""
    import warnings

    from ..analysis.spectrum import (
        MixedPipelineWarning,
        extract_spectrum,
        plot_spectrum,
        write_ecsv,
        write_spectrum,
    )
    from ..irsa.resolve import check_radec
    from ..products.flags import DEFAULT_BAD_FLAGS
    from .common import check_outputs

    coord = check_radec(args.ra, args.dec)
    check_outputs(args.output, args.spectrum, args.plot)  # before the work, not after it
    names = list(DEFAULT_BAD_FLAGS if args.bad_flags is None else args.bad_flags)
    progress = _Progress(enabled=not args.no_progress and sys.stderr.isatty())
    opened = []
    try:
        with warnings.catch_warnings():  # said once, as one line, after the table
            warnings.simplefilter("ignore", MixedPipelineWarning)
            # the options are checked before the file is opened: the frames come lazily
            table = extract_spectrum(
                _frames(args.file, names, not args.no_zodi, opened, progress), coord,
                args.radius, bad_flags=names, subtract_zodi=not args.no_zodi,
                annulus=args.annulus, aperture_correction=args.aperture_correction,
                min_unmasked_fraction=args.min_unmasked_fraction)
    finally:
        progress.close()
        for product in opened:
            product.close()
    table.meta["source"] = os.fspath(args.file)  # as extract_spectrum(path) records it
    written = []
    if args.output:
        written.append(str(write_ecsv(table, args.output)))
    if args.spectrum:
        written.append(str(write_spectrum(table, args.spectrum)))
    if args.plot:
        written.append(str(plot_spectrum(table, args.plot)))
    if not args.output:
        table.pprint_all()

    status = list(table["status"])
    n_ok = status.count("ok")
    others = ", ".join(f"{status.count(s)} {s}" for s in sorted(set(status)) if s != "ok")
    print(f"{len(table)} cutouts, {n_ok} measured" + (f" ({others})" if others else "")
          + (f"; wrote {', '.join(written)}" if written else ""), file=sys.stderr)
    for message in table.meta.get("warnings", []):
        print(f"warning: {message}", file=sys.stderr)
    return 0 if n_ok else 1


class _Progress:
    """tqdm bars on stderr, one per step (``open``, then ``measure``), counted in cutouts;
    nothing at all unless ``enabled``."""

    def __init__(self, enabled):
        self.enabled = bool(enabled)
        self._bar = None

    def step(self, name, total=None):
        """End the current bar (filled) and start one called ``name``."""
        self.close()
        if self.enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=name, unit="cutout", leave=True,
                             file=sys.stderr,
                             bar_format=None if total is not None else "{desc}: reading…")

    def total(self, total):
        """The number of cutouts, once known: the bar starts counting them."""
        if self._bar is not None:
            self._bar.bar_format = None
            self._bar.reset(total=total)

    def update(self, n=1):
        if self._bar is not None:
            self._bar.update(n)

    def close(self):
        bar, self._bar = self._bar, None
        if bar is not None:
            if bar.total is not None and bar.n < bar.total:
                bar.update(bar.total - bar.n)  # e.g. cutouts skipped as off the position
            bar.close()


def _frames(path, bad_flags, subtract_zodi, opened, progress):
    """The frames :func:`~glue_spherex.analysis.spectrum.extract_spectrum` would make of
    ``path``, made as it asks for them, with the progress of both steps: each frame's
    ``wave`` is first called when that frame is measured, which advances the second bar."""
    from ..analysis.spectrum import Frame, load_products

    progress.step("open")
    products = load_products(path)
    opened.extend(products)
    progress.total(len(products))
    frames = []
    for product in products:
        frames.append(Frame.from_product(product, bad_flags=bad_flags,
                                         subtract_zodi=subtract_zodi))
        progress.update()
    progress.step("measure", len(frames))
    for frame in frames:
        frame.wave = _Counted(frame.wave, progress)
        yield frame


class _Counted:
    """A frame's ``wave`` that advances the progress bar on its first call."""

    def __init__(self, wave, progress):
        self._wave, self._progress = wave, progress

    def __call__(self, x, y):
        progress, self._progress = self._progress, None
        if progress is not None:
            progress.update()
        return self._wave(x, y)
