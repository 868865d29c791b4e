#!/usr/bin/env python3
"""Throughput of the message codec: ``Message.decode(raw)`` and
``Message.encode()`` for two typical datagrams.

* ``request``: a CON GET with a 4-byte token, Uri-Host, two Uri-Path
  segments and one Uri-Query.
* ``response``: an ACK 2.05 Content with Content-Format, ETag and a
  100-byte payload.

Only the public API (``aiocoap.Message.decode`` / ``Message.encode``) is
used, so the same script measures any library offering that API; see
``compare.py`` for running it against another installation.

Output: per case, operations per second of decode, of encode and of one
decode plus one encode (the figure compare.py reports), each the best of the
repeats; a header line names the library. ``--json`` prints a JSON object
instead.
"""

from __future__ import annotations

import argparse
import json
import sys
import timeit
import warnings

import aiocoap
import aiocoap.meta

# The datagrams are written out byte by byte (not produced by the library
# under test) so that both implementations decode identical input.
REQUEST = bytes.fromhex(
    "44"  # version 1, CON, TKL 4
    "01"  # 0.01 GET
    "1234"  # message ID
    "cafef00d"  # token
    "39" + b"localhost".hex()  # Uri-Host (3), length 9
    + "86" + b"sensor".hex()  # Uri-Path (11), delta 8, length 6
    + "04" + b"temp".hex()  # Uri-Path again, delta 0, length 4
    + "48" + b"unit=deg".hex()  # Uri-Query (15), delta 4, length 8
)

RESPONSE = bytes.fromhex(
    "62"  # version 1, ACK, TKL 2
    "45"  # 2.05 Content
    "1234"  # message ID
    "beef"  # token
    "44" "0a0b0c0d"  # ETag (4), length 4
    "81" "32"  # Content-Format (12), delta 8, length 1: 50 (application/json)
    "ff"  # payload marker
) + bytes(range(100))

def build_request() -> "aiocoap.Message":
    return aiocoap.Message(
        mtype=aiocoap.CON, mid=0x1234, code=aiocoap.GET, token=bytes.fromhex("cafef00d"),
        uri_host="localhost", uri_path=["sensor", "temp"], uri_query=["unit=deg"],
    )


def build_response() -> "aiocoap.Message":
    return aiocoap.Message(
        mtype=aiocoap.ACK, mid=0x1234, code=aiocoap.CONTENT, token=bytes.fromhex("beef"),
        etag=bytes.fromhex("0a0b0c0d"), content_format=50, payload=bytes(range(100)),
    )


CASES = {"request": (REQUEST, build_request), "response": (RESPONSE, build_response)}


def _best_seconds_per_op(func, *, number: int, repeat: int) -> float:
    return min(timeit.Timer(func).repeat(repeat=repeat, number=number)) / number


def measure(raw: bytes, build, *, number: int, repeat: int) -> dict:
    """Operations per second for decode, encode and one decode plus one
    encode (best of ``repeat`` runs of ``number`` operations each).

    Encoding is timed on a message built with the constructor, because some
    implementations refuse to re-encode a message that was decoded (it is
    "incoming"); the built message encodes to exactly ``raw``."""
    message = build()
    if message.encode() != raw:
        raise SystemExit(f"encoding does not reproduce the datagram {raw.hex()}")
    decoded = aiocoap.Message.decode(raw)
    if (decoded.code, decoded.mid, decoded.token, decoded.payload) != (
        message.code, message.mid, message.token, message.payload,
    ):
        raise SystemExit(f"decoding of {raw.hex()} is wrong")

    decode = aiocoap.Message.decode
    t_decode = _best_seconds_per_op(lambda: decode(raw), number=number, repeat=repeat)
    t_encode = _best_seconds_per_op(message.encode, number=number, repeat=repeat)
    return {
        "decode": 1 / t_decode,
        "encode": 1 / t_encode,
        "decode+encode": 1 / (t_decode + t_encode),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--number", type=int, default=20000, help="operations per repeat")
    parser.add_argument("--repeat", type=int, default=7, help="repeats (the best one counts)")
    parser.add_argument("--json", action="store_true", help="print a JSON object")
    args = parser.parse_args(argv)

    with warnings.catch_warnings():
        # Some versions deprecate setting mtype/mid/token at construction.
        warnings.simplefilter("ignore", DeprecationWarning)
        results = {
            name: measure(raw, build, number=args.number, repeat=args.repeat)
            for name, (raw, build) in CASES.items()
        }
    version = aiocoap.meta.version
    if args.json:
        json.dump(
            {"library": aiocoap.__file__, "version": version, "python": sys.version.split()[0],
             "ops_per_s": results},
            sys.stdout,
        )
        print()
    else:
        print(f"# aiocoap {version} from {aiocoap.__file__}, Python {sys.version.split()[0]}")
        for name, figures in results.items():
            for what, ops in figures.items():
                print(f"{name:10s} {what:14s} {ops:12.0f} ops/s")


if __name__ == "__main__":
    main()
