"""Google Maps Platform URL signing: sign a request URL, and verify a signed one.

The algorithm is Google's documented one ("Digital signature guide"): HMAC-SHA1 over the
URL's path, "?" and query (no scheme, no host), keyed with the url-safe base64 decoding of
the signing secret; the signature is the url-safe base64 of the digest, appended last as
``&signature=...``. Google's documented example::

    secret  vNIXE0xscrmjlyV-12Nj_BvUPaw=
    url     https://maps.googleapis.com/maps/api/geocode/json?address=New+York&client=clientID
    signed  ...&client=clientID&signature=chaRF2hTJKOScPr-RQCEhZbSzIE=

The scraper signs with :func:`sign_url`; the simulator checks with :func:`verify`. No
function here puts the secret in an exception or anywhere else.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from urllib.parse import unquote, urlsplit

from geotag.errors import InputError

SIGNATURE_PARAM = "signature"
_MARKER = f"&{SIGNATURE_PARAM}="


def sign_url(url: str, secret: str) -> str:
    """``url`` with ``&signature=...`` appended (``?signature=`` when it has no query)."""
    parts = urlsplit(url)
    if parts.fragment:
        # A fragment never reaches the server, so a signature over it could not verify.
        raise InputError("a URL to sign must not have a #fragment")
    path_and_query = f"{parts.path or '/'}?{parts.query}"
    separator = "&" if parts.query else ("" if url.endswith("?") else "?")
    return f"{url}{separator}{SIGNATURE_PARAM}={signature_for(path_and_query, secret)}"


def signature_for(path_and_query: str, secret: str) -> str:
    """The url-safe base64 HMAC-SHA1 of ``path_and_query`` (e.g. ``/maps/api/x?a=1``)."""
    digest = hmac.new(_key(secret), path_and_query.encode("utf-8"), hashlib.sha1).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii")


def verify(path_and_query_with_signature: str, secret: str) -> bool:
    """Whether the request target ends in a valid ``&signature=`` for what precedes it.

    The signature must be the last parameter, as Google requires; a missing, moved or wrong
    signature is False. The comparison takes constant time.
    """
    key = _key(secret)
    head, marker, signature = path_and_query_with_signature.rpartition(_MARKER)
    if not marker:
        # A request whose only parameter is the signature: "/path?signature=...".
        head, marker, signature = path_and_query_with_signature.rpartition(f"?{SIGNATURE_PARAM}=")
        head += "?"
    if not marker or "&" in signature or "#" in signature:
        return False
    expected = hmac.new(key, head.encode("utf-8"), hashlib.sha1).digest()
    # A client may percent-encode the signature's "=" padding; the bytes are what count.
    given = unquote(signature).encode("ascii", errors="replace")
    return hmac.compare_digest(base64.urlsafe_b64encode(expected), given)


def _key(secret: str) -> bytes:
    """The raw HMAC key of a url-safe base64 secret; InputError (without it) if malformed."""
    text = secret.strip() if isinstance(secret, str) else ""
    padded = text + "=" * (-len(text) % 4)
    try:
        # validate=True refuses stray characters that the lenient decoder would skip.
        key = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if not key or "+" in text or "/" in text:
        raise InputError(
            "the URL signing secret is not url-safe base64; copy it again from the Google "
            "Cloud console"
        ) from None
    return key
