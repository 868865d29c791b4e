"""The credentials map: which security material applies to which URIs.

A :class:`CredentialsMap` maps URI patterns to credentials. Transports
consult it: DTLS for a PSK and identity, TLS for an SSL context, OSCORE for
a security context. It is loaded from plain data (JSON files given to the
command line tools with ``--credentials``, or dicts in Python)::

    {
        "coaps://localhost/*": {"dtls": {"psk": {"ascii": "secretPSK"},
                                         "client-identity": {"ascii": "client_Identity"}}},
        "coap://[::1]/*": {"oscore": {"basedir": "client-context/"}},
        "coaps+tcp://example.com/*": {"tls": {"ca-file": "ca.pem"}},
        "coaps+tcp://other.example/*": {"tlscert": {"certfile": "other-ca.pem"}},
        ":shared": {"oscore": {"basedir": "shared-context/"}},
        "coap://alias/*": ":shared"
    }

Rules:

* A pattern is a URI, or a URI prefix ending in ``*``. The longest matching
  pattern wins; an exact match beats any prefix.
* A value that is a string starting with ``:`` refers to another entry by
  its key: a label key that itself starts with the colon (``":shared"``,
  as aiocoap 0.4.x writes them), or else the key with the colon removed,
  so material can be shared; cycles and dangling references are load
  errors. A :class:`CredentialReference` put into the map by hand is
  followed at lookup time.
* OSCORE entries name the directory of a security context as ``basedir``
  (``contextfile`` is the older spelling of the same); a ``tlscert``
  entry's ``certfile`` is a certificate (of a CA or of the server itself)
  that the client trusts for the server, like ``tls``'s ``ca-file``.
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
from typing import Any, Optional, TypeVar

from . import error

__all__ = [
    "CredentialsMap", "CredentialsLoadError", "CredentialsMissingError",
    "DTLS", "TLSCert", "TLS", "OSCORE", "AnyOf", "AllOf", "CredentialReference",
    "import_filesystem_security_context",
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


_C = TypeVar("_C", bound=_Credential)


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
    """A certificate the client trusts for a TLS server (``{"tlscert":
    {"certfile": ...}}``, as aiocoap 0.4.x reads it): the certificate of a
    CA, or the server's own self-signed one. For client certificates use
    ``tls``'s ``client-cert`` / ``client-key``."""

    kind = "tlscert"

    def __init__(self, certfile: str):
        super().__init__(ca_file=certfile)
        self.certfile = certfile

    def __repr__(self):
        return f"<TLSCert {self.certfile}>"

    @classmethod
    def from_item(cls, data, where, base):
        if not isinstance(data, dict) or set(data) != {"certfile"}:
            extra = ""
            if isinstance(data, dict) and "keyfile" in data:
                extra = " (a client certificate goes into 'tls' as client-cert and client-key)"
            raise CredentialsLoadError(f"{where}: 'tlscert' needs exactly a 'certfile'{extra}")
        return cls(_path(data["certfile"], f"{where}.certfile", base))

    def as_ssl_params(self) -> dict:
        """Keyword arguments for :func:`ssl.create_default_context` that
        make a client trust the certificate."""
        return {"cafile": self.certfile}


def import_filesystem_security_context():
    """The class of OSCORE security contexts stored in a directory,
    :class:`aiocoap.oscore.FilesystemSecurityContext`, imported on demand
    (a CredentialsLoadError names the extra to install if the modules of
    OSCORE are missing)."""
    from .defaults import oscore_missing_modules

    missing = oscore_missing_modules()
    if missing:
        raise CredentialsLoadError(
            "OSCORE credentials need the module(s) %s; install aiocoap[oscore]" % ", ".join(missing)
        )
    from .oscore import FilesystemSecurityContext

    return FilesystemSecurityContext


def oscore_basedir(data, where: str, base: Optional[str]) -> str:
    """The context directory of an ``oscore`` entry: ``{"basedir": DIR}``,
    or the older ``{"contextfile": DIR}``."""
    if not isinstance(data, dict) or len(data) != 1 or not set(data) <= {"basedir", "contextfile"}:
        raise CredentialsLoadError(f"{where}: 'oscore' needs exactly a 'basedir' (or 'contextfile')")
    ((key, value),) = data.items()
    return _path(value, f"{where}.{key}", base)


class OSCORE(_Credential):
    """An OSCORE security context stored in a directory (see
    aiocoap.oscore.FilesystemSecurityContext), opened on first use."""

    kind = "oscore"

    def __init__(self, basedir: str):
        self.basedir = basedir
        self._context = None

    @property
    def contextfile(self) -> str:
        """The older name of :attr:`basedir`."""
        return self.basedir

    def __repr__(self):
        return f"<OSCORE context {self.basedir}>"

    @classmethod
    def from_item(cls, data, where, base):
        return cls(oscore_basedir(data, where, base))

    @property
    def security_context(self):
        """The security context (loaded, and its lock taken, on first
        access)."""
        if self._context is None:
            self._context = import_filesystem_security_context()(self.basedir)
        return self._context


class CredentialReference:
    """A credentials map entry that stands for another one: ``target`` is
    the key of that entry (a label like ``":shared"``, or ``":"`` followed
    by the key) in ``map``. Lookups follow it to the entry it names;
    attributes not found here are those of that entry."""

    def __init__(self, target: str, map: "CredentialsMap"):  # noqa: A002 (the aiocoap name)
        if not isinstance(target, str) or not target.startswith(":"):
            raise CredentialsLoadError("Credential references must start with a colon (':')")
        self.target = target
        self.map = map

    def __repr__(self):
        return f"<{type(self).__name__} to {self.target!r}>"

    def resolve(self):
        """The entry this reference stands for (following references to
        references); CredentialsLoadError for a dangling reference or a
        cycle."""
        seen: list[str] = []
        item: Any = self
        while isinstance(item, CredentialReference):
            if item.target in seen or len(seen) > 64:
                raise CredentialsLoadError(f"reference cycle {' -> '.join(seen + [item.target])}")
            seen.append(item.target)
            key = _reference_key(item.target, item.map)
            if key is None:
                raise CredentialsLoadError(f"reference to unknown entry {item.target!r}")
            item = dict.__getitem__(item.map, key)
            if isinstance(item, str):
                item = CredentialReference(item, self.map)
        return item

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.resolve(), name)


def _reference_key(target: str, table) -> Optional[str]:
    """The key a reference ``target`` (``":something"``) names in ``table``:
    the label ``":something"`` itself, else ``"something"``."""
    if target in table:
        return target
    if target[1:] in table:
        return target[1:]
    return None


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
            target = _reference_key(value, table)
            if target is None:
                raise CredentialsLoadError(f"{key}: reference to unknown entry {value[1:]!r}")
            if target in seen:
                raise CredentialsLoadError(f"{key}: reference cycle {' -> '.join(seen + [target])}")
            seen.append(target)
            value = table[target]
        return value

    def _lookup(self, uri: str) -> Optional[_Credential]:
        found = self.get(uri)
        if found is None:
            best_length = -1
            for pattern, item in self.items():
                if pattern.endswith("*") and uri.startswith(pattern[:-1]) and len(pattern) > best_length:
                    found, best_length = item, len(pattern)
        if isinstance(found, CredentialReference):
            found = found.resolve()
        return found

    def credentials_from_request(self, msg):
        """The credentials for a request message's URI: for an OSCORE entry
        the security context itself (opened on first use, as aiocoap 0.4.x
        keeps them in the map), else the credential object (DTLS, TLS, ...).
        Raises CredentialsMissingError if none apply."""
        uri = msg.get_request_uri()
        found = self._lookup(uri)
        if found is None:
            raise CredentialsMissingError(f"No suitable credentials for {uri}")
        if isinstance(found, OSCORE):
            return found.security_context
        return found

    def find_all_used_contextless_oscore_kid(self) -> set[bytes]:
        """The recipient IDs of all OSCORE security contexts in the map
        (opening them): the key IDs a new context of this endpoint must not
        take, as requests without a kid context could not be told apart."""
        found: set[bytes] = set()
        for item in self.values():
            if isinstance(item, CredentialReference):
                continue  # (counted at the entry it refers to)
            for candidate in item.items if isinstance(item, AnyOf) else (item,):
                if isinstance(candidate, OSCORE):
                    found |= candidate.security_context.find_all_used_contextless_oscore_kid()
        return found

    def _find(self, uri: str, kind: type[_C]) -> Optional[_C]:
        found = self._lookup(uri)
        candidates = found.items if isinstance(found, AnyOf) else [found]
        for c in candidates:
            if isinstance(c, kind):
                return c
        return None

    def find_oscore(self, msg: Any) -> Any:
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
