"""Values of the CoAP Type field (two bits, so the enumeration is complete)."""

import enum

__all__ = ["Type", "CON", "NON", "ACK", "RST"]


class Type(enum.IntEnum):
    """Message type of a CoAP-over-UDP message (RFC 7252 §3).

    >>> str(Type.ACK), repr(Type.CON)
    ('ACK', '<Type.CON: 0>')
    """

    CON = 0
    NON = 1
    ACK = 2
    RST = 3

    def __str__(self) -> str:
        return self.name


CON, NON, ACK, RST = Type.CON, Type.NON, Type.ACK, Type.RST
