"""Exception types raised by glue-spherex.

Every error a user can provoke with bad input derives from :class:`SpherexError`, so a
command line or a dialog can catch one type and show its message as a single line.
"""

__all__ = [
    "SpherexCancelled",
    "SpherexError",
    "SpherexFormatError",
    "SpherexInputError",
    "SpherexOutputError",
    "SpherexServiceError",
]


class SpherexError(Exception):
    """Base class of all glue-spherex errors."""


class SpherexFormatError(SpherexError, ValueError):
    """A file or byte string is not a readable SPHEREx Level-2 product.

    The message names the problem (not FITS, no IMAGE extension, no WCS-WAVE table,
    truncated data, ...) and the source it came from.
    """


class SpherexInputError(SpherexError, ValueError):
    """A query or command argument is out of range or malformed.

    The message says what was wrong and what is accepted.
    """


class SpherexOutputError(SpherexError, OSError):
    """A file could not be written where the user asked: a missing or unwritable directory,
    an output path that is a directory, too little free space, a full disk, or another
    process writing the same file.

    The message names the path the user gave and what became of the data that had arrived.
    """


class SpherexServiceError(SpherexError):
    """A remote service (TAP, SIA2, name resolver) failed or answered with an error."""


class SpherexCancelled(SpherexError):
    """Work was stopped because the user asked for it (e.g. Cancel in a dialog)."""
