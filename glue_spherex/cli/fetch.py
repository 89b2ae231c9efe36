"""``glue-spherex fetch``: query, then download every cutout into one combined
multi-extension FITS file (resumable with --cache or from an unfinished file), optionally with
a quick-look grid. :func:`fetch_and_report` is also what ``glue-spherex demo`` runs.
"""

from __future__ import annotations

import argparse
import os
import re
import sys

from ..errors import SpherexInputError
from .common import (
    EPILOG,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PARTIAL,
    add_target_arguments,
    check_outputs,
    cli_words,
    describe,
    ignore_interrupts,
    query_archive,
    target_from_args,
)

__all__ = ["add_parser", "run", "fetch_and_report"]


def add_parser(subparsers):
    from ..irsa.config import conf

    parser = subparsers.add_parser(
        "fetch", help="download cutouts into one combined FITS file",
        description="Query, then download every cutout into one multi-extension FITS file\n"
                    "(CUTOUT_INFO table plus IMAGEn, FLAGSn, VARIANCEn, ZODIn, PSFn, WCS-WAVEn\n"
                    "per cutout). Failed cutouts are listed in CUTOUT_INFO; with --cache, a\n"
                    "rerun resumes where the last one stopped.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_target_arguments(parser)
    parser.add_argument("-o", "--output", metavar="FILE",
                        help="combined FITS file (default spherex_<target>.fits)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing FILE")
    parser.add_argument("--quicklook", metavar="PNG", help="also write a quick-look grid")
    parser.add_argument("--workers", type=int, metavar="N",
                        help=f"concurrent downloads (default conf.workers, {conf.workers})")
    parser.add_argument("--cache", metavar="DIR",
                        help="keep each cutout in DIR so that a rerun resumes")
    parser.add_argument("--retries", type=int, metavar="N",
                        help="retries per cutout after transient errors (default "
                             f"conf.max_retries, {conf.max_retries})")
    parser.add_argument("--psf", choices=("full", "none"), default="full",
                        help="full (default): every cutout's PSF extension, as IRSA sends "
                             "it; none: leave PSFn (EPSFn) out of FILE (aperture corrections "
                             "then use the header's PSF_FWHM)")
    parser.add_argument("--full-download", action="store_true",
                        help="read every cutout in full (by default a pipeline-7 cutout stops "
                             "at its EPSF header when the run already holds its EPSF and "
                             "WCS-WAVE tables; the file is the same either way)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args):
    from ..irsa.config import settings

    cfg = settings(archive_url=args.archive, workers=args.workers, cache_dir=args.cache,
                   max_retries=args.retries)
    coord = target_from_args(args)
    output = args.output or _default_output(args, coord)
    _check_fetch_output(output, args.overwrite)
    check_outputs(args.quicklook)
    if cfg.cache_dir is not None:  # an unwritable cache is an error before any download
        from ..download.cache import CutoutCache

        CutoutCache(cfg.cache_dir).prepare()
    table = query_archive(args, coord)
    print(f"{describe(args, coord)}: {len(table)} images")
    if not len(table):
        print("nothing to fetch; no file written")
        return EXIT_OK
    return fetch_and_report(table, output, workers=cfg.workers, cache_dir=cfg.cache_dir,
                            max_retries=cfg.max_retries, overwrite=args.overwrite,
                            quicklook=args.quicklook, psf=args.psf,
                            progress_bar=not args.no_progress and sys.stderr.isatty(),
                            early_stop=not args.full_download)


def fetch_and_report(table, output, *, workers, cache_dir, overwrite, quicklook,
                     progress_bar, max_retries=None, psf="full", early_stop=True):
    """Fetch ``table`` into ``output`` (and a quick-look); print a summary; exit code.

    ``output`` is resumed when it holds an unfinished file of the same query (see
    :func:`~glue_spherex.download.fetcher.fetch_to_file`).
    """
    from ..download.fetcher import fetch_to_file

    before = _file_id(output)
    try:
        summary = fetch_to_file(table, output, overwrite=overwrite, workers=workers,
                                cache_dir=cache_dir, max_retries=max_retries,
                                tqdm=progress_bar, psf=psf, early_stop=early_stop)
    except KeyboardInterrupt:
        ignore_interrupts()  # what follows is quick, and must be said whole
        print(f"glue-spherex: interrupted; {_where_they_are(output, before, cache_dir)}",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    mb = summary.bytes / 1e6
    if summary.resumed == summary.total:
        print(f"{summary.path} already holds all {summary.total} cutouts; nothing to fetch")
    else:
        kept = f"{summary.resumed} kept from the unfinished file, " if summary.resumed else ""
        print(f"wrote {summary.path}: {summary.ok} of {summary.total} cutouts "
              f"({kept}{summary.from_cache} from cache, {mb:.1f} MB downloaded, "
              f"{summary.seconds:.1f} s)")
    print(_bytes_line(summary))
    for index, reason in summary.failures[:10]:
        print(f"  cutout {index} failed: {cli_words(reason)}")
    if len(summary.failures) > 10:
        print(f"  ... and {len(summary.failures) - 10} more (see CUTOUT_INFO)")
    if summary.cancelled:
        print(f"  {summary.cancelled} cutouts were not fetched; rerun the same command to "
              "fetch them")
    if summary.uncached:
        why = summary.cache_problem.removeprefix("not cached: ")
        why = re.sub(r"\[Errno \d+\] |: '[^']*\.part'", "", why)  # no errno, no temp names
        print(f"glue-spherex: warning: {summary.uncached} cutouts could not be kept in the "
              f"cache {cache_dir} ({why}); a rerun downloads them again", file=sys.stderr)
    if quicklook and summary.ok:
        from ..analysis.quicklook import DEFAULT_MAX_PANELS, quicklook_png

        png = quicklook_png(summary.path, quicklook)
        shown = ("" if summary.ok <= DEFAULT_MAX_PANELS else
                 f" ({DEFAULT_MAX_PANELS} of the {summary.ok} cutouts, evenly spaced in "
                 f"wavelength: at most {DEFAULT_MAX_PANELS} panels fit one image)")
        print(f"wrote {png}{shown}")
    return EXIT_OK if summary.failed == 0 and summary.cancelled == 0 else EXIT_PARTIAL


def _file_id(path):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


def _where_they_are(output, before, cache_dir):
    """What is true about the cutouts that arrived, after an interrupt (checked, not hoped)."""
    after = _file_id(output)
    if after is not None and after != before:
        try:
            from astropy.io import fits

            n = int(fits.getheader(output)["NCUTOUT"])
        except (OSError, KeyError, ValueError, TypeError):
            n = None
        if n == 0:
            return f"no cutout had arrived yet ({output} lists them all as missing)"
        what = "the cutouts" if n is None else f"the {n} cutouts"
        return f"{what} that arrived are in {output}; rerun the same command to resume"
    if cache_dir is not None and os.path.isdir(cache_dir):
        return (f"{output} was not finished; the cutouts that arrived are in the cache "
                f"{cache_dir}; rerun the same command to resume")
    if after is not None:
        return f"{output} was left as it was before this run"
    return f"{output} was not written (interrupted again while finishing it)"


def _bytes_line(summary):
    """The closing line on bytes: downloaded (off the network, not the cache) and saved (by
    early stop, and by ``--psf none``)."""
    fetched = summary.ok - summary.resumed - summary.from_cache
    line = (f"downloaded {summary.bytes_downloaded:,} bytes "
            f"({summary.bytes_downloaded / 1e6:.1f} MB) over the network for {fetched} "
            f"cutouts; {summary.from_cache} came from the cache, {summary.resumed} from the "
            "unfinished file")
    if fetched > 0:
        line += (f"; early stop saved {summary.bytes_saved:,} bytes "
                 f"({summary.bytes_saved / 1e6:.1f} MB) of EPSF and WCS-WAVE tables the run "
                 "already held")
    if summary.psf == "none":
        line += (f"; saved {summary.psf_bytes_saved:,} bytes "
                 f"({summary.psf_bytes_saved / 1e6:.1f} MB) of PSF extensions not written "
                 "(--psf none)")
    return line


def _default_output(args, coord):
    if args.target:
        stem = re.sub(r"[^A-Za-z0-9+.-]+", "_", args.target.strip()).strip("_")
    else:
        stem = f"{coord.ra.deg:.4f}{coord.dec.deg:+.4f}"
    return f"spherex_{stem}.fits"


def _check_fetch_output(path, overwrite):
    """The combined file: writable, and either new, replaced (--overwrite) or resumable."""
    check_outputs(path)
    if os.path.exists(path) and not overwrite and not _resumable_file(path):
        raise SpherexInputError(f"{path} exists and is not an unfinished glue-spherex fetch; "
                                "give --overwrite or another -o")


def _resumable_file(path):
    """True if ``path`` looks like a combined file this command wrote (a cheap header look)."""
    try:
        with open(path, "rb") as f:
            head = f.read(2880)
    except OSError:
        return False
    return head.startswith(b"SIMPLE  =") and b"glue-spherex" in head
