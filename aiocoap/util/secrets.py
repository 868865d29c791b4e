"""Cryptographically strong random values (the standard library's
:mod:`secrets`, under the name the 0.4b2 manual documents)."""

from secrets import choice, randbelow, randbits, token_bytes, token_hex, token_urlsafe  # noqa: F401

__all__ = ["choice", "randbelow", "randbits", "token_bytes", "token_hex", "token_urlsafe"]
