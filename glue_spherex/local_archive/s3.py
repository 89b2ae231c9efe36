"""The archive as IRSA's public S3 bucket: anonymous HEAD, ranged GET and ListObjectsV2.

IRSA mirrors every SPHEREx file in the bucket ``nasa-irsa-spherex`` (key = the IBE path after
``/ibe/data/spherex/``). The local archive answers path-style requests for that bucket at a
path of its own — ``http://127.0.0.1:PORT/nasa-irsa-spherex/<key>`` — with the subset of the S3 REST
API that s3fs/fsspec and boto3 use for anonymous reads, so both work with
``endpoint_url=archive.url``. Requests are never authenticated: signed ones are answered like
anonymous ones. Full frames are served as by the IBE file service (:func:`.files.serve_frame`:
the frame cache, or the frame's layout for a byte range), and the archive's latency and fault
flags apply (as on ``/ibe/``).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from email.utils import format_datetime
from urllib.parse import parse_qs, quote
from xml.sax.saxutils import escape

from .files import frame_cache, serve_frame
from .response import Response

__all__ = ["BUCKET", "dispatch"]

BUCKET = "nasa-irsa-spherex"
#: Largest page of a listing, as S3's.
MAX_KEYS = 1000
#: Every object's Last-Modified (the synthetic release is one ingest).
_MODIFIED = datetime(2025, 11, 1, tzinfo=UTC)
_XMLNS = "http://s3.amazonaws.com/doc/2006-03-01/"


def dispatch(method, path, query, headers, catalog):
    """Answer one request whose path starts with ``/nasa-irsa-spherex``."""
    key = path[len(BUCKET) + 2:]
    if method not in ("GET", "HEAD"):
        return _error(405, "MethodNotAllowed",
                      "The specified method is not allowed against this resource", method)
    if not key:
        if method == "HEAD":
            return Response(200, "application/xml", b"", [("x-amz-bucket-region", "us-east-1")])
        params = {k: v[0] for k, v in parse_qs(query, keep_blank_values=True).items()}
        return _list(params, catalog)
    spec = catalog.by_key.get(key)
    if spec is None:
        return _error(404, "NoSuchKey", "The specified key does not exist.", method)
    size = frame_cache().size(spec)
    return serve_frame(spec, headers.get("Range"), _object_headers(key, size), method)


def _object_headers(key, size):
    return [("Accept-Ranges", "bytes"), ("ETag", _etag(key, size)),
            ("Last-Modified", format_datetime(_MODIFIED, usegmt=True))]


def _etag(key, size):
    # S3 ETags are opaque; ours is stable per object and changes if its bytes would
    return '"' + hashlib.md5(f"{key}:{size}".encode()).hexdigest() + '"'


def _list(params, catalog):
    """ListObjectsV2 (``list-type=2``; V1 answered the same way, which s3fs never asks for)."""
    prefix = params.get("prefix", "")
    delimiter = params.get("delimiter", "")
    try:
        max_keys = min(int(params.get("max-keys", MAX_KEYS)), MAX_KEYS)
    except ValueError:
        max_keys = -1
    if max_keys < 0:
        return _error(400, "InvalidArgument", "max-keys must be an integer >= 0", "GET")
    after = params.get("continuation-token") or params.get("start-after", "")
    url_encode = params.get("encoding-type") == "url"
    entries = []                             # (name, is_prefix), sorted, past `after`
    seen = set()
    for key in sorted(k for k in catalog.by_key if k.startswith(prefix)):
        cut = key.find(delimiter, len(prefix)) if delimiter else -1
        name, is_prefix = (key[:cut + len(delimiter)], True) if cut >= 0 else (key, False)
        if name in seen or name <= after:
            continue
        seen.add(name)
        entries.append((name, is_prefix))
        if len(entries) > max_keys:
            break
    truncated = len(entries) > max_keys
    entries = entries[:max_keys]

    def enc(text):
        return escape(quote(text, safe="/") if url_encode else text)

    parts = [f'<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="{_XMLNS}">',
             f"<Name>{BUCKET}</Name><Prefix>{enc(prefix)}</Prefix>",
             f"<KeyCount>{len(entries)}</KeyCount><MaxKeys>{max_keys}</MaxKeys>"]
    if delimiter:
        parts.append(f"<Delimiter>{enc(delimiter)}</Delimiter>")
    if url_encode:
        parts.append("<EncodingType>url</EncodingType>")
    parts.append(f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>")
    if truncated and entries:
        parts.append(f"<NextContinuationToken>{escape(entries[-1][0])}</NextContinuationToken>")
    modified = _MODIFIED.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    for name, is_prefix in entries:
        if is_prefix:
            parts.append(f"<CommonPrefixes><Prefix>{enc(name)}</Prefix></CommonPrefixes>")
        else:
            size = frame_cache().size(catalog.by_key[name])
            parts.append(f"<Contents><Key>{enc(name)}</Key><LastModified>{modified}"
                         f"</LastModified><ETag>{escape(_etag(name, size))}</ETag>"
                         f"<Size>{size}</Size><StorageClass>STANDARD</StorageClass></Contents>")
    parts.append("</ListBucketResult>")
    return Response(200, "application/xml", "".join(parts).encode())


def _error(status, code, message, method):
    body = b"" if method == "HEAD" else (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
        f"<Message>{escape(message)}</Message></Error>").encode()
    return Response(status, "application/xml", body)
