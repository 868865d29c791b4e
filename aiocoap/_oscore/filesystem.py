"""Security contexts stored in a directory, with the sequence number and
replay window persistence of RFC 8613 Appendix B.1.

Files in the context directory:

* ``settings.json`` and ``secrets.json`` -- the static parameters; each
  parameter is in one of them, never in both. Keys: ``sender-id``,
  ``recipient-id``, ``secret`` (required), ``salt``, ``id-context`` (byte
  strings, given as ``{"hex": "..."}`` or ``{"ascii": "..."}``, or in the
  older spelling ``"sender-id_hex": "..."``), ``algorithm`` (a COSE name,
  default AES-CCM-16-64-128), ``kdf-hashfun`` (``sha256``, ``sha384`` or
  ``sha512``) and ``window`` (replay window size, default 32).
* ``sequence.json`` -- the only file written: the next sender sequence
  number that was certainly never used, and the replay window as of a clean
  shutdown (``null`` while the context is in use). It is replaced
  atomically (temporary file, fsync, rename, fsync of the directory).
* ``lock`` -- held through :mod:`filelock` for as long as a process uses the
  context.

Guarantees: a sequence number is only handed out after a value above it
was durably written (Appendix B.1.1; the reserve grows from
``sequence_number_chunksize_start`` to ``sequence_number_chunksize_limit``),
so none is ever used twice across crashes. After a crash the replay window is
unknown and is recovered through Echo (Appendix B.1.2).
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
from typing import TYPE_CHECKING, Any, Optional, Union

if TYPE_CHECKING:
    import filelock

from .algorithms import DEFAULT_WINDOWSIZE, algorithms, hashfunctions
from .contexts import SecurityContext
from .encoding import MAX_SEQNO
from .errors import ContextUnavailable
from .replaywindow import ReplayWindow

__all__ = ["FilesystemSecurityContext"]

SETTINGS = "settings.json"
SECRETS = "secrets.json"
SEQUENCE = "sequence.json"
LOCK = "lock"

_SEQNO_KEY = "next-unused-sender-sequence-number"
_WINDOW_KEY = "recipient-replay-window"

# The names aiocoap 0.4.x writes, accepted on load so that existing context
# directories can be taken over: {"next-to-send": N, "received": "unknown" or
# {"index": I, "bitfield": B}} (same meaning as ours).
_AIOCOAP_SEQNO_KEY = "next-to-send"
_AIOCOAP_WINDOW_KEY = "received"

_BYTES_PARAMETERS = ("sender-id", "recipient-id", "secret", "salt", "id-context")
_OTHER_PARAMETERS = ("algorithm", "kdf-hashfun", "window")
_REQUIRED = ("sender-id", "recipient-id", "secret")


class FilesystemSecurityContext(SecurityContext):
    """A security context kept in the directory ``basedir``.

    The keys and parameters come from ``settings.json`` and ``secrets.json``
    (each parameter in exactly one of them; either file alone is enough, and
    keeping the secret in a file only its owner can read is the idea of the
    split). The changing state lives in ``sequence.json``, the one file that
    is written. See the module documentation for the format.

    .. warning::

        A context directory must not be duplicated and used in two places,
        not even one after the other: restoring it from a backup and using it
        again reuses sequence numbers, which breaks the encryption. Move
        contexts; replace restored ones with new ones.

    While the context is open it holds the ``lock`` file in the directory;
    a second user (another program, or another instance here) gets
    :class:`Locked`.

    Sequence numbers are reserved on disk ahead of use, in steps growing
    from ``sequence_number_chunksize_start`` to
    ``sequence_number_chunksize_limit`` (after RFC 8613 Appendix B.1.1), so a
    crash costs skipped numbers, never reused ones. The replay window is
    written only by :meth:`shutdown`; after a crash, the peer's first request
    is answered with an Echo challenge to rebuild it (Appendix B.1.2).

    Call :meth:`shutdown` (or use the context in a ``with`` block) when
    done; without it, the next start behaves as after a crash.
    """

    class LoadError(ValueError):
        """The context directory can not be used; the message names the
        file and parameter at fault."""

    class Locked(LoadError, ContextUnavailable):
        """The context directory is in use by another program"""

    def __init__(
        self,
        basedir: "Union[str, os.PathLike[str]]",
        sequence_number_chunksize_start: int = 10,
        sequence_number_chunksize_limit: int = 10000,
    ):
        super().__init__()
        if not 1 <= sequence_number_chunksize_start <= sequence_number_chunksize_limit:
            raise ValueError("Sequence number chunk sizes must satisfy 1 <= start <= limit")
        self.basedir = os.fspath(basedir)
        self._chunksize = sequence_number_chunksize_start
        self._chunksize_limit = sequence_number_chunksize_limit
        self._persisted_limit = 0
        self._closed = False
        self._lock = self._acquire_lock()
        try:
            self._load()
        except BaseException:
            self._closed = True
            self._lock.release()
            raise

    def __repr__(self) -> str:
        return f"<{type(self).__name__} in {self.basedir!r}{' (shut down)' if self._closed else ''}>"

    @classmethod
    def from_item(cls, init_data: Any) -> "FilesystemSecurityContext":
        """Open the context an ``oscore`` entry of a credentials map names
        (``{"basedir": DIR}``, or the older ``{"contextfile": DIR}``)."""
        from ..credentials import oscore_basedir

        return cls(oscore_basedir(init_data, "oscore", None))

    def __enter__(self) -> "FilesystemSecurityContext":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    # --- loading ----------------------------------------------------------------

    def _path(self, name: str) -> str:
        return os.path.join(self.basedir, name)

    def _acquire_lock(self) -> "filelock.BaseFileLock":
        try:
            import filelock
        except ImportError as e:
            raise ImportError(
                "FilesystemSecurityContext needs the 'filelock' package; install aiocoap[oscore]"
            ) from e
        if not os.path.isdir(self.basedir):
            raise self.LoadError(f"Security context directory {self.basedir!r} does not exist")
        lock = filelock.FileLock(self._path(LOCK))
        try:
            lock.acquire(timeout=0)
        except filelock.Timeout:
            raise self.Locked(
                f"Security context in {self.basedir!r} is in use by another program "
                f"(its {LOCK!r} file is locked)"
            ) from None
        except OSError as e:
            raise self.LoadError(f"Can not create the lock file in {self.basedir!r}: {e}") from None
        return lock

    def _read_json(self, name: str) -> Optional[dict[str, Any]]:
        path = self._path(name)
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as e:
            raise self.LoadError(f"Can not read {path}: {e}") from None
        except json.JSONDecodeError as e:
            raise self.LoadError(f"{path} is not valid JSON: {e}") from None
        if not isinstance(data, dict):
            raise self.LoadError(f"{path} must contain a JSON object")
        return data

    def _collect_parameters(self) -> dict[str, tuple[str, Any, Optional[str]]]:
        """parameter name -> (file name, value, legacy format suffix)"""
        found: dict[str, tuple[str, Any, Optional[str]]] = {}
        any_file = False
        for filename in (SETTINGS, SECRETS):
            data = self._read_json(filename)
            if data is None:
                continue
            any_file = True
            for key, value in data.items():
                name, fmt = key, None
                if key not in _BYTES_PARAMETERS and key not in _OTHER_PARAMETERS:
                    name, _, fmt = key.rpartition("_")
                    if name not in _BYTES_PARAMETERS or fmt not in ("hex", "ascii"):
                        raise self.LoadError(f"Unknown parameter {key!r} in {self._path(filename)}")
                if name in found:
                    other = found[name][0]
                    where = f"both {other} and {filename}" if other != filename else f"{filename} twice"
                    raise self.LoadError(f"Parameter {name!r} is given in {where} in {self.basedir!r}")
                found[name] = (filename, value, fmt)
        if not any_file:
            raise self.LoadError(f"Neither {SETTINGS} nor {SECRETS} found in {self.basedir!r}")
        for name in _REQUIRED:
            if name not in found:
                raise self.LoadError(f"Required parameter {name!r} missing in {self.basedir!r}")
        return found

    def _parse_bytes(self, name: str, filename: str, value: Any, fmt: Optional[str]) -> bytes:
        where = f"Parameter {name!r} in {self._path(filename)}"
        if fmt is None:
            if not isinstance(value, dict) or len(value) != 1:
                raise self.LoadError(f'{where} must be an object like {{"hex": "..."}} or {{"ascii": "..."}}')
            ((fmt, value),) = value.items()
        if not isinstance(value, str):
            raise self.LoadError(f"{where} must be given as a string")
        if fmt == "hex":
            try:
                return bytes.fromhex(value)
            except ValueError:
                raise self.LoadError(f"{where} is not valid hex") from None
        if fmt == "ascii":
            try:
                return value.encode("ascii")
            except UnicodeEncodeError:
                raise self.LoadError(f"{where} is not ASCII") from None
        raise self.LoadError(f"{where} uses unknown format {fmt!r} (expected 'hex' or 'ascii')")

    def _load(self) -> None:
        found = self._collect_parameters()
        values: dict[str, Any] = {}
        for name, (filename, value, fmt) in found.items():
            where = f"Parameter {name!r} in {self._path(filename)}"
            if name in _BYTES_PARAMETERS:
                values[name] = self._parse_bytes(name, filename, value, fmt)
            elif name == "algorithm":
                if not isinstance(value, str) or value not in algorithms:
                    raise self.LoadError(f"{where}: unknown algorithm {value!r} (known: {', '.join(algorithms)})")
                values[name] = algorithms[value]
            elif name == "kdf-hashfun":
                if not isinstance(value, str) or value not in hashfunctions:
                    raise self.LoadError(f"{where}: unknown hash function {value!r} (known: {', '.join(hashfunctions)})")
                values[name] = hashfunctions[value]
            elif name == "window":
                if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                    raise self.LoadError(f"{where} must be a positive integer")
                values[name] = value

        self.sender_id = values["sender-id"]
        self.recipient_id = values["recipient-id"]
        self.id_context = values.get("id-context")
        self.alg_aead = values.get("algorithm", self.alg_aead)
        self.hashfun = values.get("kdf-hashfun", self.hashfun)
        self.recipient_replay_window = ReplayWindow(
            values.get("window", DEFAULT_WINDOWSIZE), self._replay_window_changed
        )
        try:
            self.derive_keys(values.get("salt", b""), values["secret"])
        except ValueError as e:
            raise self.LoadError(f"Security context in {self.basedir!r} is unusable: {e}") from None

        self._load_sequence()

    def _load_sequence(self) -> None:
        path = self._path(SEQUENCE)
        data = self._read_json(SEQUENCE)
        window = self.recipient_replay_window
        if data is None:
            seqno = 0
            window.initialize_empty()
        else:
            if isinstance(data, dict) and _AIOCOAP_SEQNO_KEY in data and _SEQNO_KEY not in data:
                data = self._from_aiocoap_format(data, path)
            unknown = set(data) - {_SEQNO_KEY, _WINDOW_KEY}
            if unknown:
                raise self.LoadError(f"Unknown entries {sorted(unknown)} in {path}")
            loaded = data.get(_SEQNO_KEY)
            if not isinstance(loaded, int) or isinstance(loaded, bool) or not 0 <= loaded <= MAX_SEQNO + 1:
                raise self.LoadError(f"{_SEQNO_KEY!r} in {path} must be an integer from 0 to 2^40")
            seqno = loaded
            persisted = data.get(_WINDOW_KEY)
            if persisted is None:
                self.echo_recovery = secrets.token_bytes(8)
            else:
                try:
                    window.initialize_from_persisted(persisted)
                except ValueError as e:
                    raise self.LoadError(f"{_WINDOW_KEY!r} in {path}: {e}") from None
        self.sender_sequence_number = seqno
        # From here on the replay window on disk is stale: mark it so that a
        # crash leads to Echo recovery rather than to accepting replays.
        limit = min(seqno + self._chunksize, MAX_SEQNO + 1)
        try:
            self._write_sequence(limit, None)
        except OSError as e:
            raise self.LoadError(f"Can not write {path}: {e}") from None
        self._persisted_limit = limit

    def _from_aiocoap_format(self, data: dict[str, Any], path: str) -> dict[str, Any]:
        unknown = set(data) - {_AIOCOAP_SEQNO_KEY, _AIOCOAP_WINDOW_KEY}
        if unknown:
            raise self.LoadError(f"Unknown entries {sorted(unknown)} in {path}")
        received = data.get(_AIOCOAP_WINDOW_KEY, "unknown")
        if received == "unknown":
            window = None
        elif isinstance(received, dict) and set(received) == {"index", "bitfield"}:
            window = {"index": received["index"], "entries": received["bitfield"]}
        else:
            raise self.LoadError(f"{_AIOCOAP_WINDOW_KEY!r} in {path} must be \"unknown\" or have index and bitfield")
        return {_SEQNO_KEY: data[_AIOCOAP_SEQNO_KEY], _WINDOW_KEY: window}

    # --- persistence -------------------------------------------------------------

    def _write_sequence(self, next_unused: int, window: Optional[dict[str, Any]]) -> None:
        data = {_SEQNO_KEY: next_unused, _WINDOW_KEY: window}
        fd, tmp = tempfile.mkstemp(dir=self.basedir, prefix=f".{SEQUENCE}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f)
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self._path(SEQUENCE))
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        dirfd = os.open(self.basedir, os.O_RDONLY)
        try:
            os.fsync(dirfd)
        finally:
            os.close(dirfd)

    def _check_usable(self) -> None:
        if self._closed:
            raise ContextUnavailable(f"Security context in {self.basedir!r} was shut down")

    def post_seqnoincrease(self) -> None:
        """Reserve further sequence numbers on disk when the reserve is used
        up, so that the number about to be used is covered."""
        if self.sender_sequence_number <= self._persisted_limit:
            return
        limit = min(self.sender_sequence_number + self._chunksize, MAX_SEQNO + 1)
        try:
            self._write_sequence(limit, None)
        except OSError as e:
            raise ContextUnavailable(f"Can not persist sequence numbers in {self.basedir!r}: {e}") from None
        self._persisted_limit = limit
        self._chunksize = min(self._chunksize * 2, self._chunksize_limit)

    def shutdown(self) -> None:
        """Write the exact sequence number and the replay window, and release
        the lock. The context can not be used any more afterwards."""
        if self._closed:
            return
        window = self.recipient_replay_window
        persisted = window.persist() if window.is_initialized() else None
        try:
            self._write_sequence(self.sender_sequence_number, persisted)
        finally:
            self._closed = True
            self._lock.release()
