"""The credentials map: which security material applies to which URIs.

A :class:`CredentialsMap` maps URI patterns to credentials. Transports
consult it: DTLS for a PSK and identity, TLS for an SSL context, OSCORE for
a security context. It is loaded from plain data (JSON files given to the
command line tools with ``--credentials``, or dicts in Python)::

    {
        "coaps://localhost/*": {"dtls": {"psk": {"ascii": "secretPSK"},
                                         "client-identity": {"ascii": "client_Identity"}}},
        "coap://[::1]/*": {"oscore": {"contextfile": "client-context/"}},
        "coaps+tcp://example.com/*": {"tls": {"ca-file": "ca.pem"}},
        "coap://alias/*": ":coap://[::1]/*"
    }

Rules:

* A pattern is a URI, or a URI prefix ending in ``*``. The longest matching
  pattern wins; an exact match beats any prefix.
* A value that is a string starting with ``:`` refers to another entry by
  its key (with the colon removed), so material can be shared; cycles and
  dangling references are load errors.
* Byte strings are given as Python bytes, or as ``{"ascii": "..."}`` /
  ``{"hex": "..."}`` (whitespace and colons in hex are ignored) for JSON.
* Errors while loading raise :class:`CredentialsLoadError` whose message
  names the entry and field; a lookup that finds nothing raises
  :class:`CredentialsMissingError` (or returns None from the ``find_*``
  helpers).
"""

from __future__ import annotations

import json
import os
import ssl
from typing import Any, Optional

from . import error

__all__ = [
    "CredentialsMap", "CredentialsLoadError", "CredentialsMissingError",
    "DTLS", "TLSCert", "TLS", "OSCORE", "AnyOf", "AllOf",
]


class CredentialsLoadError(ValueError):
    """The credentials data could not be loaded; the message says where and
    why."""


class CredentialsMissingError(error.Error):
    """No credentials are configured for the requested URI."""


def _bytes(value, where: str) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, dict) and len(value) == 1:
        (kind, text), = value.items()
        if kind == "ascii" and isinstance(text, str):
            try:
                return text.encode("ascii")
            except UnicodeEncodeError:
                raise CredentialsLoadError(f"{where}: 'ascii' value contains non-ASCII characters") from None
        if kind == "hex" and isinstance(text, str):
            cleaned = "".join(c for c in text if c not in " :\t\n-")
            try:
                return bytes.fromhex(cleaned)
            except ValueError:
                raise CredentialsLoadError(f"{where}: 'hex' value is not hexadecimal") from None
    if isinstance(value, str):
        raise CredentialsLoadError(
            f"{where}: give byte strings as {{\"ascii\": ...}} or {{\"hex\": ...}}, not a bare string"
        )
    raise CredentialsLoadError(f"{where}: expected a byte string, got {type(value).__name__}")


def _path(value, where: str, base: Optional[str]) -> str:
    if not isinstance(value, str) or not value:
        raise CredentialsLoadError(f"{where}: expected a file name")
    if base is not None and not os.path.isabs(value):
        value = os.path.join(base, value)
    return value


class _Credential:
    """Base of the credential kinds; ``kind`` is the key used in the data."""

    kind = ""

    def __repr__(self):
        return f"<{type(self).__name__}>"


class DTLS(_Credential):
    """A pre-shared key and the identity it belongs to, for CoAP over DTLS
    (coaps://).

    In client credentials (keyed by a ``coaps://`` URI pattern) the client
    presents ``client_identity`` and proves it knows ``psk``. In server
    credentials (keyed by a label starting with ``:``) it is a client the
    server accepts: looked up by the identity the client presents, and the
    label becomes the session's ``authenticated_claims``."""

    kind = "dtls"

    def __init__(self, psk: bytes, client_identity: bytes):
        self.psk = psk
        self.client_identity = client_identity

    def __repr__(self):
        return f"<DTLS identity {self.client_identity!r}>"

    def as_dtls_psk(self) -> "tuple[bytes, bytes]":
        """The (identity, key) pair a DTLS stack takes."""
        return (self.client_identity, self.psk)

    @classmethod
    def from_item(cls, data, where, base):
        if not isinstance(data, dict):
            raise CredentialsLoadError(f"{where}: 'dtls' needs an object with psk and client-identity")
        unknown = set(data) - {"psk", "client-identity"}
        if unknown:
            raise CredentialsLoadError(f"{where}: unknown dtls field(s) {', '.join(sorted(unknown))}")
        for field in ("psk", "client-identity"):
            if field not in data:
                raise CredentialsLoadError(f"{where}: 'dtls' lacks '{field}'")
        return cls(_bytes(data["psk"], f"{where}.psk"), _bytes(data["client-identity"], f"{where}.client-identity"))


class TLS(_Credential):
    """Material for CoAP over TLS (coaps+tcp://): whom to trust
    (``ca-file``/``ca-path``; the system store when neither is given), and
    optionally a client certificate (``client-cert`` / ``client-key``)."""

    kind = "tls"

    def __init__(self, ca_file=None, ca_path=None, client_cert=None, client_key=None):
        self.ca_file = ca_file
        self.ca_path = ca_path
        self.client_cert = client_cert
        self.client_key = client_key

    def __repr__(self):
        return f"<TLS ca={self.ca_file or self.ca_path or 'system'} cert={self.client_cert}>"

    @classmethod
    def from_item(cls, data, where, base):
        if not isinstance(data, dict):
            raise CredentialsLoadError(f"{where}: 'tls' needs an object")
        known = {"ca-file", "ca-path", "client-cert", "client-key"}
        unknown = set(data) - known
        if unknown:
            raise CredentialsLoadError(f"{where}: unknown tls field(s) {', '.join(sorted(unknown))}")
        if "client-key" in data and "client-cert" not in data:
            raise CredentialsLoadError(f"{where}: 'client-key' given without 'client-cert'")
        return cls(**{
            k.replace("-", "_"): _path(v, f"{where}.{k}", base) for k, v in data.items()
        })

    def ssl_context(self) -> ssl.SSLContext:
        """A client SSLContext verifying the server as configured."""
        context = ssl.create_default_context(cafile=self.ca_file, capath=self.ca_path)
        if self.client_cert is not None:
            context.load_cert_chain(self.client_cert, self.client_key)
        return context


class TLSCert(TLS):
    """Old name of a TLS client certificate entry (``{"tlscert":
    {"certfile": ...}}``)."""

    kind = "tlscert"

    @classmethod
    def from_item(cls, data, where, base):
        if not isinstance(data, dict) or "certfile" not in data:
            raise CredentialsLoadError(f"{where}: 'tlscert' needs a 'certfile'")
        return cls(client_cert=_path(data["certfile"], f"{where}.certfile", base),
                   client_key=_path(data["keyfile"], f"{where}.keyfile", base) if "keyfile" in data else None)


class OSCORE(_Credential):
    """An OSCORE security context stored in a directory (see
    aiocoap.oscore.FilesystemSecurityContext), opened on first use."""

    kind = "oscore"

    def __init__(self, contextfile: str):
        self.contextfile = contextfile
        self._context = None

    def __repr__(self):
        return f"<OSCORE context {self.contextfile}>"

    @classmethod
    def from_item(cls, data, where, base):
        if not isinstance(data, dict) or set(data) != {"contextfile"}:
            raise CredentialsLoadError(f"{where}: 'oscore' needs exactly a 'contextfile'")
        return cls(_path(data["contextfile"], f"{where}.contextfile", base))

    @property
    def security_context(self):
        """The security context (loaded, and its lock taken, on first
        access)."""
        if self._context is None:
            from .defaults import oscore_missing_modules

            missing = oscore_missing_modules()
            if missing:
                raise CredentialsLoadError(
                    "OSCORE credentials need the module(s) %s; install aiocoap[oscore]" % ", ".join(missing)
                )
            from .oscore import FilesystemSecurityContext

            self._context = FilesystemSecurityContext(self.contextfile)
        return self._context


class AnyOf(_Credential):
    """Any of the listed credentials is acceptable."""

    kind = "any-of"

    def __init__(self, items):
        self.items = list(items)

    @classmethod
    def from_item(cls, data, where, base):
        if not isinstance(data, list) or not data:
            raise CredentialsLoadError(f"{where}: '{cls.kind}' needs a non-empty list")
        return cls(_item(d, f"{where}[{i}]", base) for i, d in enumerate(data))


class AllOf(AnyOf):
    """All of the listed credentials are required."""

    kind = "all-of"


_KINDS = {c.kind: c for c in (DTLS, TLS, TLSCert, OSCORE, AnyOf, AllOf)}


def _item(data, where: str, base: Optional[str]) -> _Credential:
    if isinstance(data, _Credential):
        return data
    if not isinstance(data, dict) or len(data) != 1:
        raise CredentialsLoadError(
            f"{where}: expected an object with one of {', '.join(sorted(_KINDS))}"
        )
    (kind, value), = data.items()
    cls = _KINDS.get(kind)
    if cls is None:
        raise CredentialsLoadError(f"{where}: unknown credential kind {kind!r}")
    return cls.from_item(value, f"{where}.{kind}", base)


class CredentialsMap(dict):
    """Map of URI patterns to credentials (see the module documentation for
    the data format)."""

    generation = 0
    """Counts the changes to the map, so users can tell when decisions
    taken on an earlier state (like a request's route) are stale."""

    def _changed(self) -> None:
        self.generation += 1

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        self._changed()

    def __delitem__(self, key):
        super().__delitem__(key)
        self._changed()

    def update(self, *args, **kwargs):
        super().update(*args, **kwargs)
        self._changed()

    def clear(self):
        super().clear()
        self._changed()

    def pop(self, *args):
        result = super().pop(*args)
        self._changed()
        return result

    def popitem(self):
        result = super().popitem()
        self._changed()
        return result

    def setdefault(self, key, default=None):
        result = super().setdefault(key, default)
        self._changed()
        return result

    def load_from_dict(self, d: dict, *, base_directory: Optional[str] = None) -> None:
        """Add the entries of ``d``; file names in it are relative to
        ``base_directory`` (the directory of the file it came from)."""
        if not isinstance(d, dict):
            raise CredentialsLoadError("credentials must be an object mapping URI patterns to credentials")
        staged: dict[str, Any] = {}
        for key, value in d.items():
            if not isinstance(key, str):
                raise CredentialsLoadError(f"credential keys must be strings, got {key!r}")
            if isinstance(value, str):
                if not value.startswith(":"):
                    raise CredentialsLoadError(f"{key}: a string value must be a reference starting with ':'")
                staged[key] = value
            else:
                try:
                    staged[key] = _item(value, key, base_directory)
                except RecursionError:
                    raise CredentialsLoadError(f"{key}: credentials nested too deeply") from None
        combined = dict(self)
        combined.update(staged)
        for key in staged:
            combined[key] = self._resolve(key, combined)
        self.update({k: combined[k] for k in staged})

    def load_from_file(self, filename: str) -> None:
        """Load a JSON credentials file (as ``--credentials`` does)."""
        try:
            with open(filename, encoding="utf-8") as f:
                data = json.load(f)
        except OSError as e:
            raise CredentialsLoadError(f"Can not read credentials file {filename}: {e.strerror}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CredentialsLoadError(f"Credentials file {filename} is not valid JSON: {e}") from None
        except RecursionError:
            raise CredentialsLoadError(f"Credentials file {filename} is nested too deeply") from None
        self.load_from_dict(data, base_directory=os.path.dirname(os.path.abspath(filename)))

    @staticmethod
    def _resolve(key, table):
        seen = [key]
        value = table[key]
        while isinstance(value, str):
            target = value[1:]
            if target in seen:
                raise CredentialsLoadError(f"{key}: reference cycle {' -> '.join(seen + [target])}")
            if target not in table:
                raise CredentialsLoadError(f"{key}: reference to unknown entry {target!r}")
            seen.append(target)
            value = table[target]
        return value

    def _lookup(self, uri: str) -> Optional[_Credential]:
        exact = self.get(uri)
        if exact is not None:
            return exact
        best = None
        best_length = -1
        for pattern, item in self.items():
            if pattern.endswith("*") and uri.startswith(pattern[:-1]) and len(pattern) > best_length:
                best, best_length = item, len(pattern)
        return best

    def credentials_from_request(self, msg) -> _Credential:
        """The credentials for a request message's URI; raises
        CredentialsMissingError if none apply."""
        uri = msg.get_request_uri()
        found = self._lookup(uri)
        if found is None:
            raise CredentialsMissingError(f"No suitable credentials for {uri}")
        return found

    def _find(self, uri: str, kind) -> Optional[_Credential]:
        found = self._lookup(uri)
        candidates = found.items if isinstance(found, AnyOf) else [found]
        for c in candidates:
            if isinstance(c, kind):
                return c
        return None

    def find_oscore(self, msg):
        """The OSCORE security context for the request, or None."""
        try:
            uri = msg.get_request_uri()
        except ValueError:
            return None
        found = self._find(uri, OSCORE)
        return found.security_context if found is not None else None

    def find_dtls_client_psk(self, uri: str) -> Optional[tuple[bytes, bytes]]:
        """Client side of DTLS: the (identity, psk) to present for a
        ``coaps://`` URI (from a DTLS entry, or the DTLS member of an
        ``any-of`` entry, whose pattern matches), or None."""
        found = self._find(uri, DTLS)
        return found.as_dtls_psk() if isinstance(found, DTLS) else None

    def find_dtls_psk(self, identity: bytes) -> tuple[bytes, str]:
        """Server side of DTLS: the (psk, label) of the entry whose
        ``client-identity`` is ``identity``; raises KeyError if there is
        none. (Client-side lookups go by URI: :meth:`credentials_from_request`.)"""
        for label, item in self.items():
            if isinstance(item, DTLS) and item.client_identity == identity:
                return (item.psk, label)
        raise KeyError(identity)

    def ssl_client_context(self, uri: str) -> Optional[ssl.SSLContext]:
        """An SSLContext for a coaps+tcp:// URI if TLS material is
        configured for it (else None: the caller uses the system
        defaults)."""
        found = self._find(uri, TLS)
        return found.ssl_context() if isinstance(found, TLS) else None

    def __repr__(self):
        return f"<{type(self).__name__} with {len(self)} entr{'y' if len(self) == 1 else 'ies'}>"
