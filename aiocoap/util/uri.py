"""URI helpers that urllib.parse does not offer: the RFC 3986 character
classes and quote functions built from them."""

import string
from typing import Callable, Iterable

__all__ = ["unreserved", "sub_delims", "quote_factory"]

unreserved = string.ascii_letters + string.digits + "-._~"
"""'unreserved' characters from RFC 3986"""

sub_delims = "!$&'()*+,;="
"""'sub-delims' characters from RFC 3986"""


def quote_factory(safe_characters: Iterable[str]) -> Callable[[str], str]:
    """Return a quote function that escapes all characters not in the
    safe_characters iterable (UTF-8 based percent-encoding, upper case hex
    digits as RFC 3986 §2.1 recommends).

    >>> q = quote_factory(unreserved)
    >>> q('a b/c')
    'a%20b%2Fc'
    """
    safe = frozenset("".join(safe_characters))

    def quote(input_string: str) -> str:
        if safe.issuperset(input_string):
            return input_string
        return "".join(
            c if c in safe else "".join("%%%02X" % b for b in c.encode("utf-8"))
            for c in input_string
        )

    return quote
