"""Turn an HTTP request-target into the file name the TFTP resolver confines to the root.

Percent-decoding happens exactly once, here, and refuses what could change meaning after
decoding: an encoded `/` or `\\` (a separator hidden from the split), NUL, malformed
escapes and bytes that are not UTF-8. `..` is refused outright rather than collapsed,
whether it was written plainly or as `%2e%2e`. What is left is a relative name for
`ptftpd.paths.resolve`, which applies the same rules as TFTP (resolved components,
symlinks followed, never a string prefix).
"""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

from ptftpd.http.errors import HttpError

_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")
_ENCODED_SEPARATOR = re.compile(rb"%(2f|5c)", re.IGNORECASE)
_ABSOLUTE_FORM = re.compile(rb"[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*")


def path_of(target: bytes) -> bytes:
    """The raw path of an origin-form or absolute-form target, without query/fragment."""
    absolute = _ABSOLUTE_FORM.match(target)
    if absolute is not None:
        target = target[absolute.end() :] or b"/"
    if not target.startswith(b"/"):
        raise HttpError(400, "request target is not a path")
    for mark in (b"?", b"#"):
        target = target.partition(mark)[0]
    return target


def decode_path(target: bytes) -> str:
    """The decoded path of `target`, e.g. `/efi/ipxe.efi`; raises HttpError (400/403/404)."""
    raw = path_of(target)
    if _BAD_ESCAPE.search(raw):
        raise HttpError(400, "malformed percent-escape in path")
    if _ENCODED_SEPARATOR.search(raw):
        raise HttpError(404, "encoded path separator in path")
    decoded = unquote_to_bytes(raw)
    if b"\0" in decoded:
        raise HttpError(400, "NUL in path")
    try:
        text = decoded.decode("utf-8")
    except UnicodeDecodeError:
        raise HttpError(400, "path is not UTF-8") from None
    if ".." in text.replace("\\", "/").split("/"):
        raise HttpError(403, "'..' in path")
    return text
