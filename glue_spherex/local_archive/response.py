"""What a route handler returns to the HTTP layer: status, headers and a body.

The body is either bytes in memory or a byte span of an open file (whole frames are served
from the frame cache without reading 70 MB into memory; the HTTP layer closes the file).
A refused request is answered with IRSA's error document (:func:`error_document`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .votable import error_votable

__all__ = ["Response", "FileBody", "text_response", "error_document", "IBE_DESCRIPTION"]

IBE_DESCRIPTION = "Caltech/IPAC-IRSA Image Server (IBE), local"


@dataclass(frozen=True)
class FileBody:
    file: object            # open binary file
    offset: int
    length: int


@dataclass
class Response:
    status: int
    content_type: str
    body: bytes | FileBody = b""
    headers: list = field(default_factory=list)     # extra (name, value) pairs

    @property
    def length(self):
        return self.body.length if isinstance(self.body, FileBody) else len(self.body)


def text_response(status, message):
    return Response(status, "text/plain; charset=utf-8", (message.rstrip("\n") + "\n").encode())


def error_document(status, message, description=IBE_DESCRIPTION):
    """IRSA's error document (a VOTable whose ``QUERY_STATUS`` INFO says ERROR and why)."""
    return Response(status, "application/x-votable+xml", error_votable(message, description))
