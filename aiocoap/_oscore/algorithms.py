"""AEAD algorithms, hash functions and key derivation of OSCORE.

The AEAD algorithms are the COSE ones (RFC 9053 §4) that OSCORE can use;
their ``value`` is the COSE algorithm identifier that goes into the key
derivation info and the AAD. All cryptography comes from the
``cryptography`` package.

Rules this module enforces:

* ``decrypt`` raises :class:`ProtectionInvalid` for any failure stemming from
  the (untrusted) ciphertext, tag, nonce or key, never another exception.
* ``encrypt`` handles local data; misuse (wrong key length) raises
  ValueError.
"""

from __future__ import annotations

import functools
from typing import Callable, ClassVar, Union

try:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.ciphers import Cipher, aead
    from cryptography.hazmat.primitives.ciphers import algorithms as _ciphers
    from cryptography.hazmat.primitives.ciphers import modes as _modes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF
except ImportError as _e:  # pragma: no cover (depends on the installation)
    raise ImportError(
        "OSCORE needs the 'cryptography' package; install aiocoap[oscore]"
    ) from _e

from .errors import ProtectionInvalid

__all__ = [
    "SymmetricEncryptionAlgorithm",
    "AeadAlgorithm",
    "Algorithm",
    "AES_CBC",
    "A128CBC",
    "AES_CCM",
    "AES_CCM_16_64_128",
    "AES_CCM_16_64_256",
    "AES_CCM_64_64_128",
    "AES_CCM_64_64_256",
    "AES_CCM_16_128_128",
    "AES_CCM_16_128_256",
    "AES_CCM_64_128_128",
    "AES_CCM_64_128_256",
    "AES_GCM",
    "A128GCM",
    "A192GCM",
    "A256GCM",
    "ChaCha20Poly1305",
    "algorithms",
    "algorithms_by_value",
    "hashfunctions",
    "lookup_algorithm",
    "lookup_hashfunction",
    "hkdf",
    "DEFAULT_ALGORITHM",
    "DEFAULT_HASHFUNCTION",
    "DEFAULT_WINDOWSIZE",
]

_DECRYPT_FAILURES = (InvalidTag, ValueError, TypeError, OverflowError)


class SymmetricEncryptionAlgorithm:
    """A symmetric encryption algorithm of COSE, with the interface of an
    AEAD (whether the additional data is authenticated depends on the
    algorithm: only :class:`AeadAlgorithm` subclasses do, and only those
    can protect OSCORE messages).

    Subclasses set :attr:`value` (the COSE identifier), :attr:`name` (the
    COSE name), and the key, tag and nonce (IV) lengths in bytes."""

    value: ClassVar[int]
    name: ClassVar[str]
    key_bytes: ClassVar[int]
    tag_bytes: ClassVar[int]
    iv_bytes: ClassVar[int]

    def encrypt(self, plaintext: bytes, aad: bytes, key: bytes, iv: bytes) -> bytes:
        """Encrypt ``plaintext`` with ``key`` and nonce ``iv``, authenticating
        ``aad`` as well (AEADs); the result is the ciphertext followed by the
        tag."""
        raise NotImplementedError

    def decrypt(self, ciphertext_and_tag: bytes, aad: bytes, key: bytes, iv: bytes) -> bytes:
        """Check the tag and return the plaintext. Whatever is wrong with the
        input (tag, data, nonce, key) raises ``ProtectionInvalid``, since the
        input comes from the network."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} ({self.name}, COSE {self.value})>"


class AeadAlgorithm(SymmetricEncryptionAlgorithm):
    """An AEAD algorithm usable with OSCORE: it authenticates the additional
    data as well as the ciphertext."""


Algorithm = AeadAlgorithm
"""The older name of :class:`AeadAlgorithm`."""


class AES_CBC(SymmetricEncryptionAlgorithm):
    """AES in CBC mode (RFC 9459), with the padding of RFC 5652 §6.3. It
    authenticates nothing, so it can not be a security context's algorithm
    (lookup_algorithm does not return it); it is there for the
    (group) uses that add their own authentication."""

    tag_bytes = 0
    _BLOCK = 16

    @classmethod
    def encrypt(cls, plaintext: bytes, aad: bytes, key: bytes, iv: bytes) -> bytes:
        """Pad and encrypt (``aad`` can not be authenticated and is unused)."""
        padding = cls._BLOCK - len(plaintext) % cls._BLOCK
        encryptor = Cipher(_ciphers.AES(key), _modes.CBC(iv)).encryptor()
        return encryptor.update(plaintext + bytes((padding,)) * padding) + encryptor.finalize()

    @classmethod
    def decrypt(cls, ciphertext_and_tag: bytes, aad: bytes, key: bytes, iv: bytes) -> bytes:
        """Decrypt and remove the padding; ProtectionInvalid for input of a
        wrong length or with inconsistent padding."""
        if not ciphertext_and_tag or len(ciphertext_and_tag) % cls._BLOCK:
            raise ProtectionInvalid("Ciphertext is not a whole number of blocks")
        try:
            decryptor = Cipher(_ciphers.AES(key), _modes.CBC(iv)).decryptor()
            padded = decryptor.update(ciphertext_and_tag) + decryptor.finalize()
        except ValueError:
            raise ProtectionInvalid("Decryption failed") from None
        padding = padded[-1]
        if not 1 <= padding <= cls._BLOCK or padded[-padding:] != bytes((padding,)) * padding:
            raise ProtectionInvalid("Inconsistent padding")
        return padded[:-padding]


class A128CBC(AES_CBC):
    name = "A128CBC"
    value = -65531
    key_bytes = 16
    iv_bytes = 16


def _decrypt_with(
    cipher_factory: Callable[[], Union[aead.AESGCM, aead.ChaCha20Poly1305]],
    ciphertext_and_tag: bytes,
    aad: bytes,
    iv: bytes,
) -> bytes:
    try:
        return cipher_factory().decrypt(iv, ciphertext_and_tag, aad)
    except _DECRYPT_FAILURES:
        raise ProtectionInvalid("Decryption failed") from None


@functools.lru_cache(maxsize=32)
def _aesccm(key: bytes, tag_bytes: int) -> aead.AESCCM:
    # Building the cipher object costs as much as sealing a short message;
    # keep those of the few keys in active use (bounded, so material of
    # contexts long gone does not linger in any number).
    return aead.AESCCM(key, tag_bytes)


class AES_CCM(AeadAlgorithm):
    """The AES-CCM family of COSE (counter mode with CBC-MAC), computed by
    the cryptography package; subclasses fix key, tag and nonce sizes."""

    @classmethod
    def encrypt(cls, plaintext: bytes, aad: bytes, key: bytes, iv: bytes) -> bytes:
        """Seal with AES-CCM: ciphertext followed by the tag"""
        return _aesccm(key, cls.tag_bytes).encrypt(iv, plaintext, aad)

    @classmethod
    def decrypt(cls, ciphertext_and_tag: bytes, aad: bytes, key: bytes, iv: bytes) -> bytes:
        """Open an AES-CCM sealed text; ProtectionInvalid on any failure"""
        try:
            return _aesccm(key, cls.tag_bytes).decrypt(iv, ciphertext_and_tag, aad)
        except _DECRYPT_FAILURES:
            raise ProtectionInvalid("Decryption failed") from None


class AES_CCM_16_64_128(AES_CCM):
    name = "AES-CCM-16-64-128"
    value = 10
    key_bytes = 16
    tag_bytes = 8
    iv_bytes = 13


class AES_CCM_16_64_256(AES_CCM):
    name = "AES-CCM-16-64-256"
    value = 11
    key_bytes = 32
    tag_bytes = 8
    iv_bytes = 13


class AES_CCM_64_64_128(AES_CCM):
    name = "AES-CCM-64-64-128"
    value = 12
    key_bytes = 16
    tag_bytes = 8
    iv_bytes = 7


class AES_CCM_64_64_256(AES_CCM):
    name = "AES-CCM-64-64-256"
    value = 13
    key_bytes = 32
    tag_bytes = 8
    iv_bytes = 7


class AES_CCM_16_128_128(AES_CCM):
    name = "AES-CCM-16-128-128"
    value = 30
    key_bytes = 16
    tag_bytes = 16
    iv_bytes = 13


class AES_CCM_16_128_256(AES_CCM):
    name = "AES-CCM-16-128-256"
    value = 31
    key_bytes = 32
    tag_bytes = 16
    iv_bytes = 13


class AES_CCM_64_128_128(AES_CCM):
    name = "AES-CCM-64-128-128"
    value = 32
    key_bytes = 16
    tag_bytes = 16
    iv_bytes = 7


class AES_CCM_64_128_256(AES_CCM):
    name = "AES-CCM-64-128-256"
    value = 33
    key_bytes = 32
    tag_bytes = 16
    iv_bytes = 7


class AES_GCM(AeadAlgorithm):
    """AES in Galois/Counter mode with a 12 byte nonce and 16 byte tag,
    computed by the cryptography package; subclasses fix the key size."""

    iv_bytes = 12

    @classmethod
    def encrypt(cls, plaintext: bytes, aad: bytes, key: bytes, iv: bytes) -> bytes:
        """Seal with AES-GCM: ciphertext followed by the tag"""
        return aead.AESGCM(key).encrypt(iv, plaintext, aad)

    @classmethod
    def decrypt(cls, ciphertext_and_tag: bytes, aad: bytes, key: bytes, iv: bytes) -> bytes:
        """Open an AES-GCM sealed text; ProtectionInvalid on any failure"""
        if len(ciphertext_and_tag) < cls.tag_bytes:
            raise ProtectionInvalid("Ciphertext shorter than the tag")
        return _decrypt_with(lambda: aead.AESGCM(key), ciphertext_and_tag, aad, iv)


class A128GCM(AES_GCM):
    name = "A128GCM"
    value = 1
    key_bytes = 16
    tag_bytes = 16


class A192GCM(AES_GCM):
    name = "A192GCM"
    value = 2
    key_bytes = 24
    tag_bytes = 16


class A256GCM(AES_GCM):
    name = "A256GCM"
    value = 3
    key_bytes = 32
    tag_bytes = 16


class ChaCha20Poly1305(AeadAlgorithm):
    """The ChaCha20 stream cipher with a Poly1305 tag (RFC 8439), computed by
    the cryptography package."""

    name = "ChaCha20/Poly1305"
    value = 24
    key_bytes = 32
    tag_bytes = 16
    iv_bytes = 12

    @classmethod
    def encrypt(cls, plaintext: bytes, aad: bytes, key: bytes, iv: bytes) -> bytes:
        """Seal with ChaCha20/Poly1305: ciphertext followed by the tag"""
        return aead.ChaCha20Poly1305(key).encrypt(iv, plaintext, aad)

    @classmethod
    def decrypt(cls, ciphertext_and_tag: bytes, aad: bytes, key: bytes, iv: bytes) -> bytes:
        """Open a ChaCha20/Poly1305 sealed text; ProtectionInvalid on any failure"""
        if len(ciphertext_and_tag) < cls.tag_bytes:
            raise ProtectionInvalid("Ciphertext shorter than the tag")
        return _decrypt_with(lambda: aead.ChaCha20Poly1305(key), ciphertext_and_tag, aad, iv)


algorithms: dict[str, AeadAlgorithm] = {
    cls.name: cls()
    for cls in (
        AES_CCM_16_64_128,
        AES_CCM_16_64_256,
        AES_CCM_64_64_128,
        AES_CCM_64_64_256,
        AES_CCM_16_128_128,
        AES_CCM_16_128_256,
        AES_CCM_64_128_128,
        AES_CCM_64_128_256,
        A128GCM,
        A192GCM,
        A256GCM,
        ChaCha20Poly1305,
    )
}
"""The supported AEAD algorithms by their COSE name"""

algorithms_by_value: dict[int, AeadAlgorithm] = {alg.value: alg for alg in algorithms.values()}
"""The supported AEAD algorithms by their COSE identifier"""

hashfunctions: dict[str, hashes.HashAlgorithm] = {
    "sha256": hashes.SHA256(),
    "sha384": hashes.SHA384(),
    "sha512": hashes.SHA512(),
}
"""Hash functions usable for the HKDF of the key derivation, by the name
used in security context files (``kdf-hashfun``)"""

DEFAULT_ALGORITHM = "AES-CCM-16-64-128"
DEFAULT_HASHFUNCTION = "sha256"
DEFAULT_WINDOWSIZE = 32


def lookup_algorithm(algorithm: Union[str, int, SymmetricEncryptionAlgorithm, type]) -> AeadAlgorithm:
    """Find an algorithm by COSE name (``"AES-CCM-16-64-128"``), COSE
    identifier (``10``), or pass through an :class:`AeadAlgorithm` (instance
    or class). Raises KeyError for unknown ones, and for algorithms that are
    not AEADs (they can not protect OSCORE messages).

    >>> lookup_algorithm("A128GCM") is lookup_algorithm(1)
    True
    """
    if isinstance(algorithm, AeadAlgorithm):
        return algorithm
    if isinstance(algorithm, type) and issubclass(algorithm, AeadAlgorithm):
        return algorithms_by_value[algorithm.value]
    if isinstance(algorithm, int) and not isinstance(algorithm, bool):
        return algorithms_by_value[algorithm]
    if isinstance(algorithm, str):
        return algorithms[algorithm]
    raise KeyError(algorithm)


def lookup_hashfunction(hashfun: Union[str, hashes.HashAlgorithm]) -> hashes.HashAlgorithm:
    """Find a hash function by name (``"sha256"``) or pass through a
    cryptography hash algorithm instance. Raises KeyError for unknown ones."""
    if isinstance(hashfun, hashes.HashAlgorithm):
        return hashfun
    return hashfunctions[hashfun]


def hkdf(hashfun: hashes.HashAlgorithm, salt: bytes, secret: bytes, info: bytes, length: int) -> bytes:
    """HKDF (RFC 5869) extract-and-expand as used by RFC 8613 §3.2.1.

    An empty salt behaves as the all-zero salt RFC 5869 defaults to."""
    return HKDF(algorithm=hashfun, length=length, salt=salt, info=info).derive(secret)
