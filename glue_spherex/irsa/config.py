"""Configuration of the archive client, in the astropy/astroquery style.

``conf`` is an astropy :class:`~astropy.config.ConfigNamespace`: set items for a session with
``conf.workers = 4`` or ``with conf.set_temp('workers', 4): ...``, or permanently in
``~/.astropy/config/glue_spherex.cfg``. :func:`settings` turns the configuration plus any
per-call arguments into one validated :class:`Settings`; precedence, highest first:

1. an argument (``SpherexClass(archive_url=...)``, ``glue-spherex --archive URL``),
2. the environment variable ``GLUE_SPHEREX_ARCHIVE_URL`` (archive URL only),
3. ``conf``.

``tap_url`` and ``sia_url`` follow the archive URL (``<archive>/TAP``, ``<archive>/SIA``) unless
they are set; a configured ``conf.tap_url`` is ignored when the archive URL is overridden by an
argument or the environment, so pointing a session at another archive moves all three.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from astropy import config as _config

from ..errors import SpherexInputError

__all__ = ["conf", "Conf", "Settings", "settings", "ENV_ARCHIVE_URL", "IRSA_URL"]

IRSA_URL = "https://irsa.ipac.caltech.edu"
ENV_ARCHIVE_URL = "GLUE_SPHEREX_ARCHIVE_URL"

MAX_WORKERS = 64
MAX_RETRIES = 20


class Conf(_config.ConfigNamespace):
    """Configuration items of ``glue_spherex`` (see the module docstring for precedence)."""

    archive_url = _config.ConfigItem(
        IRSA_URL, "Base URL of the IRSA archive (data under /ibe/data/spherex/).")
    tap_url = _config.ConfigItem(
        "", "TAP service URL; empty means <archive_url>/TAP.")
    sia_url = _config.ConfigItem(
        "", "SIA2 service URL; empty means <archive_url>/SIA.")
    timeout = _config.ConfigItem(
        [10.0, 60.0], "Connect and read timeouts of one HTTP request (s).",
        cfgtype="float_list(min=2, max=2)")
    workers = _config.ConfigItem(
        8, "Concurrent downloads (1-64).")
    cache_dir = _config.ConfigItem(
        "", "Directory caching downloaded cutouts (resume); empty means no cache.")
    max_retries = _config.ConfigItem(
        5, "Retries of one download after a transient failure (0-20).")


conf = Conf()


@dataclass(frozen=True)
class Settings:
    """Effective, validated client settings (see :func:`settings`)."""

    archive_url: str
    tap_url: str
    sia_url: str
    timeout: tuple[float, float]
    workers: int
    cache_dir: Path | None
    max_retries: int


def settings(*, archive_url=None, tap_url=None, sia_url=None, timeout=None, workers=None,
             cache_dir=None, max_retries=None):
    """Resolve arguments, ``GLUE_SPHEREX_ARCHIVE_URL`` and ``conf`` into :class:`Settings`.

    Every argument defaults to ``None`` ("not given"). Raises
    :class:`~glue_spherex.errors.SpherexInputError` on a malformed value.
    """
    from_env = archive_url is None and bool(os.environ.get(ENV_ARCHIVE_URL))
    override = archive_url if archive_url is not None else os.environ.get(ENV_ARCHIVE_URL) or None
    base = check_url(override if override is not None else conf.archive_url,
                     f"archive URL (${ENV_ARCHIVE_URL})" if from_env else "archive URL")
    if tap_url is None and override is None and conf.tap_url:
        tap_url = conf.tap_url
    if sia_url is None and override is None and conf.sia_url:
        sia_url = conf.sia_url
    return Settings(
        archive_url=base,
        tap_url=check_url(tap_url, "TAP URL") if tap_url else base + "/TAP",
        sia_url=check_url(sia_url, "SIA URL") if sia_url else base + "/SIA",
        timeout=check_timeout(conf.timeout if timeout is None else timeout),
        workers=check_int(conf.workers if workers is None else workers, "workers", 1, MAX_WORKERS),
        cache_dir=_cache_dir(conf.cache_dir if cache_dir is None else cache_dir),
        max_retries=check_int(conf.max_retries if max_retries is None else max_retries,
                              "max_retries", 0, MAX_RETRIES),
    )


def check_url(url, what):
    """An ``http(s)://host[:port][/path]`` URL without query or trailing slash."""
    text = str(url).strip()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise SpherexInputError(
            f"{what} {text!r} is not an http(s) URL without a query, e.g. {IRSA_URL}")
    try:
        parts.port  # noqa: B018 -- raises ValueError on a malformed port
    except ValueError:
        raise SpherexInputError(f"{what} {text!r} has an invalid port") from None
    return text.rstrip("/")


def check_timeout(value):
    """``(connect, read)`` seconds from one number or a pair, each positive and finite."""
    try:
        pair = (value, value) if isinstance(value, (int, float)) else tuple(value)
        pair = tuple(float(v) for v in pair)
    except (TypeError, ValueError):
        pair = ()
    if len(pair) != 2 or not all(math.isfinite(v) and v > 0 for v in pair):
        raise SpherexInputError(
            f"timeout {value!r} is invalid; give seconds > 0 as one number or (connect, read)")
    return pair


def check_int(value, what, lo, hi):
    """An integer in ``[lo, hi]`` (bools and fractional numbers are refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        ok = False
    else:
        try:
            number = float(value)
            ok = number.is_integer() and lo <= number <= hi
        except ValueError:
            ok = False
    if not ok:
        raise SpherexInputError(f"{what} {value!r} is invalid; give an integer from {lo} to {hi}")
    return int(float(value))


def _cache_dir(value):
    if value is None or str(value).strip() == "":
        return None
    return Path(os.path.expanduser(str(value)))
