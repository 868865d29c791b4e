"""Tests for aiocoap.oscore.FilesystemSecurityContext: file formats, load
errors, atomic sequence number persistence (RFC 8613 Appendix B.1.1), crash
safety, locking, and Echo recovery after an unclean shutdown (B.1.2)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("cryptography")
pytest.importorskip("cbor2")
pytest.importorskip("filelock")

from aiocoap import Message  # noqa: E402
from aiocoap import oscore  # noqa: E402
from aiocoap._oscore import encoding  # noqa: E402
from aiocoap.numbers.codes import Code  # noqa: E402
from aiocoap.numbers.types import Type  # noqa: E402

FSC = oscore.FilesystemSecurityContext
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# RFC 8613 Appendix C.1.2 (the server of Test Vector 1)
C1_SETTINGS = {"sender-id": {"hex": "01"}, "recipient-id": {"hex": ""}, "algorithm": "AES-CCM-16-64-128"}
C1_SECRETS = {"secret": {"hex": "0102030405060708090a0b0c0d0e0f10"}, "salt": {"hex": "9e7ca92223786340"}}
C4_PROTECTED = bytes.fromhex(
    "44025d1f00003974396c6f63616c686f7374620914ff612f1092f1776f1c1668b3825e"
)


def write_context(directory, settings=None, secrets=None, sequence=None):
    directory.mkdir(exist_ok=True)
    for name, content in (("settings.json", settings), ("secrets.json", secrets), ("sequence.json", sequence)):
        if content is None:
            continue
        text = content if isinstance(content, str) else json.dumps(content)
        (directory / name).write_text(text)
    return directory


def server_dir(tmp_path, name="server", **kwargs):
    return write_context(
        tmp_path / name,
        settings={"sender-id": {"ascii": "srv"}, "recipient-id": {"ascii": "cli"}},
        secrets={"secret": {"ascii": "correct horse battery staple"}},
        **kwargs,
    )


def peer_client():
    """The in-memory peer of server_dir's context"""
    return oscore.SecurityContext(sender_id=b"cli", recipient_id=b"srv", master_secret=b"correct horse battery staple")


def client_dir(tmp_path, name="client"):
    return write_context(
        tmp_path / name,
        settings={"sender-id": {"ascii": "cli"}, "recipient-id": {"ascii": "srv"}},
        secrets={"secret": {"ascii": "correct horse battery staple"}},
    )


def peer_server():
    return oscore.SecurityContext(sender_id=b"srv", recipient_id=b"cli", master_secret=b"correct horse battery staple")


def read_sequence(directory):
    return json.loads((directory / "sequence.json").read_text())


def request(**kwargs):
    return Message(code=Code.GET, _mtype=Type.CON, _mid=1, _token=b"t", **kwargs)


def run_helper(code, *args, wait=True):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    command = [sys.executable, "-c", textwrap.dedent(code), *map(str, args)]
    if wait:
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# --- loading ----------------------------------------------------------------------

def test_load_hex_split_over_both_files(tmp_path):
    d = write_context(tmp_path / "c", settings=C1_SETTINGS, secrets=C1_SECRETS)
    with FSC(str(d)) as ctx:
        assert ctx.sender_key.hex() == "ffb14e093c94c9cac9471648b4f98710"
        assert ctx.recipient_key.hex() == "f0910ed7295e6ad4b54fc793154302ff"
        assert ctx.common_iv.hex() == "4622d4dd6d944168eefb54987c"
        assert ctx.id_context is None
        # A new context: empty replay window, so the C.4 request verifies
        plain, _ = ctx.unprotect(Message.decode(C4_PROTECTED))
        assert plain.opt.uri_path == ("tv1",)


def test_load_everything_from_secrets_only(tmp_path):
    d = write_context(tmp_path / "c", secrets={**C1_SETTINGS, **C1_SECRETS})
    with FSC(d) as ctx:
        assert ctx.sender_key.hex() == "ffb14e093c94c9cac9471648b4f98710"


def test_load_ascii_and_legacy_keys(tmp_path):
    d = write_context(
        tmp_path / "c",
        settings={"sender-id_ascii": "cli", "recipient-id_hex": "737276", "id-context": {"ascii": "ctx"}},
        secrets={"secret_ascii": "correct horse battery staple", "salt_hex": "0001"},
    )
    reference = oscore.SecurityContext(
        sender_id=b"cli", recipient_id=b"srv", id_context=b"ctx",
        master_secret=b"correct horse battery staple", master_salt=b"\x00\x01",
    )
    with FSC(d) as ctx:
        assert (ctx.sender_id, ctx.recipient_id, ctx.id_context) == (b"cli", b"srv", b"ctx")
        assert (ctx.sender_key, ctx.recipient_key, ctx.common_iv) == (
            reference.sender_key, reference.recipient_key, reference.common_iv,
        )


def test_load_algorithm_hashfun_window(tmp_path):
    d = write_context(
        tmp_path / "c",
        settings={"sender-id": {"hex": "01"}, "recipient-id": {"hex": "02"}, "algorithm": "ChaCha20/Poly1305",
                  "kdf-hashfun": "sha512", "window": 64},
        secrets={"secret": {"hex": "00112233"}},
    )
    reference = oscore.SecurityContext(
        sender_id=b"\x01", recipient_id=b"\x02", master_secret=bytes.fromhex("00112233"),
        algorithm="ChaCha20/Poly1305", hashfun="sha512",
    )
    with FSC(d) as ctx:
        assert isinstance(ctx.algorithm, oscore.ChaCha20Poly1305)
        assert ctx.recipient_replay_window.size == 64
        assert ctx.sender_key == reference.sender_key and len(ctx.sender_key) == 32


LOAD_ERRORS = [
    # (settings, secrets, sequence, words the message must contain)
    (None, None, None, ["Neither", "settings.json"]),
    ("{not json", C1_SECRETS, None, ["settings.json", "JSON"]),
    (C1_SETTINGS, "[1, 2]", None, ["secrets.json", "object"]),
    (C1_SETTINGS, {**C1_SECRETS, "sender-id": {"hex": "01"}}, None, ["'sender-id'", "both"]),
    ({**C1_SETTINGS, "sender_id": {"hex": "01"}}, C1_SECRETS, None, ["'sender_id'", "settings.json"]),
    ({**C1_SETTINGS, "sender-id_hex": "01"}, C1_SECRETS, None, ["'sender-id'", "twice"]),
    (C1_SETTINGS, {"secret": {"hex": "zz"}}, None, ["'secret'", "hex", "secrets.json"]),
    (C1_SETTINGS, {"secret": {"base64": "AAAA"}}, None, ["'secret'", "base64"]),
    (C1_SETTINGS, {"secret": {"hex": "00", "ascii": "x"}}, None, ["'secret'"]),
    (C1_SETTINGS, {"secret": "0102"}, None, ["'secret'"]),
    (C1_SETTINGS, {"secret": {"ascii": "gr\u00fc\u00df"}}, None, ["'secret'", "ASCII"]),
    (C1_SETTINGS, {"salt": {"hex": "00"}}, None, ["'secret'", "missing"]),
    ({**C1_SETTINGS, "algorithm": "AES-CCM-99"}, C1_SECRETS, None, ["'algorithm'", "AES-CCM-99"]),
    ({**C1_SETTINGS, "kdf-hashfun": "md5"}, C1_SECRETS, None, ["'kdf-hashfun'", "md5"]),
    ({**C1_SETTINGS, "window": 0}, C1_SECRETS, None, ["'window'"]),
    ({**C1_SETTINGS, "window": True}, C1_SECRETS, None, ["'window'"]),
    ({**C1_SETTINGS, "algorithm": "AES-CCM-64-64-128", "sender-id": {"hex": "0102"}}, C1_SECRETS, None,
     ["unusable", "sender_id"]),
    (C1_SETTINGS, C1_SECRETS, "{", ["sequence.json", "JSON"]),
    (C1_SETTINGS, C1_SECRETS, {"next-unused-sender-sequence-number": -1}, ["sequence.json", "next-unused"]),
    (C1_SETTINGS, C1_SECRETS, {"next-unused-sender-sequence-number": "5"}, ["sequence.json", "next-unused"]),
    (C1_SETTINGS, C1_SECRETS, {"next-unused-sender-sequence-number": 2**41}, ["sequence.json", "next-unused"]),
    (C1_SETTINGS, C1_SECRETS, {"recipient-replay-window": None}, ["sequence.json", "next-unused"]),
    (C1_SETTINGS, C1_SECRETS, {"next-unused-sender-sequence-number": 5, "recipient-replay-window": {"index": 0}},
     ["sequence.json", "recipient-replay-window"]),
    (C1_SETTINGS, C1_SECRETS, {"next-unused-sender-sequence-number": 5, "recipient-replay-window": None, "x": 1},
     ["sequence.json", "'x'"]),
]


@pytest.mark.parametrize("settings,secrets,sequence,words", LOAD_ERRORS)
def test_load_errors_name_the_problem(tmp_path, settings, secrets, sequence, words):
    d = write_context(tmp_path / "c", settings=settings, secrets=secrets, sequence=sequence)
    before = (d / "sequence.json").read_text() if sequence is not None else None
    with pytest.raises(FSC.LoadError) as info:
        FSC(str(d))
    message = str(info.value)
    for word in words:
        assert word in message, (word, message)
    # A broken context is left as it was, and not left locked
    if before is not None:
        assert (d / "sequence.json").read_text() == before
    write_context(d, settings=C1_SETTINGS, secrets=C1_SECRETS, sequence={"next-unused-sender-sequence-number": 5})
    FSC(str(d)).shutdown()


def test_missing_directory(tmp_path):
    with pytest.raises(FSC.LoadError, match="does not exist"):
        FSC(str(tmp_path / "nowhere"))


def test_unwritable_directory_is_a_load_error(tmp_path, monkeypatch):
    d = server_dir(tmp_path)

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("tempfile.mkstemp", refuse)
    with pytest.raises(FSC.LoadError) as info:
        FSC(d)
    assert "sequence.json" in str(info.value) and "Permission denied" in str(info.value)
    monkeypatch.undo()
    FSC(d).shutdown()  # and the failed attempt released the lock


# --- sequence numbers ----------------------------------------------------------------

def test_new_context_writes_unclean_sequence_file(tmp_path):
    d = server_dir(tmp_path)
    ctx = FSC(d, sequence_number_chunksize_start=10)
    data = read_sequence(d)
    assert data == {"next-unused-sender-sequence-number": 10, "recipient-replay-window": None}
    assert ctx.recipient_replay_window.is_initialized()
    assert ctx.echo_recovery is None
    ctx.shutdown()


def test_sequence_numbers_persisted_ahead_in_growing_chunks(tmp_path):
    d = client_dir(tmp_path)
    ctx = FSC(d, sequence_number_chunksize_start=2, sequence_number_chunksize_limit=16)
    written = [read_sequence(d)["next-unused-sender-sequence-number"]]
    used = []
    for _ in range(200):
        used.append(ctx.new_sequence_number())
        persisted = read_sequence(d)["next-unused-sender-sequence-number"]
        # Never hand out a number that a restart could hand out again
        assert persisted > used[-1]
        if persisted != written[-1]:
            written.append(persisted)
    assert used == list(range(200))
    steps = [b - a for a, b in zip(written, written[1:])]
    assert max(steps) <= 16 + 1
    assert steps[-1] >= 16  # grown to the limit
    assert len(written) < 25  # far fewer writes than sequence numbers
    ctx.shutdown()
    assert read_sequence(d)["next-unused-sender-sequence-number"] == 200


def test_sequence_file_replaced_atomically(tmp_path, monkeypatch):
    d = client_dir(tmp_path)
    # Reserve one number ahead each time: a write at every second number
    ctx = FSC(d, sequence_number_chunksize_start=1, sequence_number_chunksize_limit=1)
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append(("replace", os.path.basename(b))), real_replace(a, b))[1])
    assert [ctx.new_sequence_number() for _ in range(3)] == [0, 1, 2]
    assert read_sequence(d)["next-unused-sender-sequence-number"] == 3
    # file content synced before it replaces the old one; directory synced after
    assert events == ["fsync", ("replace", "sequence.json"), "fsync"]

    before = (d / "sequence.json").read_text()

    def failing_replace(a, b):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(oscore.ContextUnavailable):
        ctx.new_sequence_number()
    with pytest.raises(oscore.ContextUnavailable):
        ctx.protect(request())
    # the old file is untouched and no temporary file is left behind
    assert (d / "sequence.json").read_text() == before
    assert sorted(os.listdir(d)) == ["lock", "secrets.json", "sequence.json", "settings.json"]
    monkeypatch.setattr(os, "replace", real_replace)
    # numbers that could not be reserved were skipped, never reused
    assert ctx.new_sequence_number() == 5
    ctx.shutdown()


def test_no_sequence_number_reuse_after_crash_copy(tmp_path):
    d = client_dir(tmp_path)
    ctx = FSC(d, sequence_number_chunksize_start=3, sequence_number_chunksize_limit=50)
    used = [ctx.protect(request())[1].partial_iv for _ in range(37)]
    used_numbers = [encoding.decode_partial_iv(p) for p in used]
    # "crash": the state on disk is whatever was written; no shutdown
    crashed = shutil.copytree(d, tmp_path / "after-crash")
    restarted = FSC(crashed)
    fresh = [restarted.new_sequence_number() for _ in range(100)]
    assert min(fresh) > max(used_numbers)
    restarted.shutdown()
    ctx.shutdown()


def test_no_sequence_number_reuse_after_process_crash(tmp_path):
    d = client_dir(tmp_path)
    result = run_helper(
        """
        import os, sys
        from aiocoap.oscore import FilesystemSecurityContext
        ctx = FilesystemSecurityContext(sys.argv[1], sequence_number_chunksize_start=4)
        numbers = [ctx.new_sequence_number() for _ in range(int(sys.argv[2]))]
        print(max(numbers), flush=True)
        os._exit(0)  # no shutdown: as if the process died
        """,
        d,
        23,
    )
    assert result.returncode == 0, result.stderr
    highest_used = int(result.stdout)
    assert highest_used == 22
    assert read_sequence(d)["recipient-replay-window"] is None
    ctx = FSC(d)
    assert ctx.new_sequence_number() > highest_used
    assert ctx.echo_recovery is not None
    ctx.shutdown()


def test_exhausted_context_loads_but_does_not_send(tmp_path):
    d = server_dir(tmp_path, sequence={"next-unused-sender-sequence-number": 2**40, "recipient-replay-window": None})
    ctx = FSC(d)
    with pytest.raises(oscore.ContextUnavailable):
        ctx.protect(request())
    ctx.shutdown()


# --- clean and unclean shutdown ----------------------------------------------------------

def test_clean_shutdown_persists_window_and_exact_sequence(tmp_path):
    d = server_dir(tmp_path)
    client = peer_client()
    ctx = FSC(d)
    requests = [client.protect(request(uri_path=[str(i)]))[0].encode() for i in range(3)]
    for wire in requests:
        _, rid = ctx.unprotect(Message.decode(wire))
        rid.can_reuse_nonce = False
        ctx.protect(Message(code=Code.CONTENT, _mtype=Type.ACK, _mid=1), rid)
    assert ctx.sender_sequence_number == 3
    ctx.shutdown()
    data = read_sequence(d)
    assert data["next-unused-sender-sequence-number"] == 3
    assert data["recipient-replay-window"] is not None

    ctx = FSC(d)
    assert ctx.echo_recovery is None
    assert ctx.new_sequence_number() == 3
    for wire in requests:
        with pytest.raises(oscore.ReplayError):
            ctx.unprotect(Message.decode(wire))
    plain, _ = ctx.unprotect(client.protect(request(uri_path=["new"]))[0])
    assert plain.opt.uri_path == ("new",)
    # in use again: the window on disk is marked stale
    assert read_sequence(d)["recipient-replay-window"] is None
    ctx.shutdown()


def test_shutdown_is_final_and_idempotent(tmp_path):
    d = server_dir(tmp_path)
    ctx = FSC(d)
    ctx.shutdown()
    ctx.shutdown()
    with pytest.raises(oscore.ContextUnavailable):
        ctx.protect(request())
    with pytest.raises(oscore.ContextUnavailable):
        ctx.unprotect(request(oscore=b"\x09\x00"))
    with pytest.raises(oscore.ContextUnavailable):
        ctx.new_sequence_number()


def test_echo_recovery_after_unclean_shutdown(tmp_path):
    d = server_dir(tmp_path)
    client = peer_client()
    server = FSC(d)
    before_crash = client.protect(request(uri_path=["old"]))[0].encode()
    server.unprotect(Message.decode(before_crash))
    crashed = shutil.copytree(d, tmp_path / "crashed")
    server.shutdown()

    server = FSC(crashed)
    assert not server.recipient_replay_window.is_initialized()
    echo = server.echo_recovery
    assert isinstance(echo, bytes) and len(echo) >= 8

    # A replay of a request from before the crash is authentic, but can not
    # be told from a fresh one: it gets the Echo challenge, not processing.
    with pytest.raises(oscore.ReplayErrorWithEcho) as info:
        server.unprotect(Message.decode(before_crash))
    assert info.value.echo == echo

    outer, client_rid = client.protect(request(uri_path=["x"]))
    with pytest.raises(oscore.ReplayErrorWithEcho) as info:
        server.unprotect(Message.decode(outer.encode()))
    e = info.value
    challenge, _ = e.secctx.protect(e.to_message(), e.request_id)
    plain_challenge, _ = client.unprotect(challenge, client_rid)
    assert plain_challenge.code == Code.UNAUTHORIZED

    outer, client_rid = client.protect(request(uri_path=["x"], echo=plain_challenge.opt.echo))
    plain, server_rid = server.unprotect(Message.decode(outer.encode()))
    assert plain.opt.uri_path == ("x",)
    assert server.recipient_replay_window.is_initialized()
    with pytest.raises(oscore.ReplayError):
        server.unprotect(Message.decode(before_crash))

    # the recovered window is what a clean shutdown persists
    server.shutdown()
    assert read_sequence(crashed)["recipient-replay-window"] is not None
    server = FSC(crashed)
    assert server.echo_recovery is None
    with pytest.raises(oscore.ReplayError):
        server.unprotect(Message.decode(outer.encode()))
    server.shutdown()


def test_shutdown_without_recovery_stays_unclean(tmp_path):
    d = server_dir(tmp_path, sequence={"next-unused-sender-sequence-number": 7, "recipient-replay-window": None})
    FSC(d).shutdown()
    assert read_sequence(d) == {"next-unused-sender-sequence-number": 7, "recipient-replay-window": None}


def test_filesystem_client_with_memory_server(tmp_path):
    d = client_dir(tmp_path)
    server = peer_server()
    with FSC(d) as client:
        outer, rid = client.protect(request(uri_path=["hello"]))
        plain, server_rid = server.unprotect(Message.decode(outer.encode()))
        resp, _ = server.protect(Message(code=Code.CONTENT, _mtype=Type.ACK, _mid=1, payload=b"hi"), server_rid)
        assert client.unprotect(resp, rid)[0].payload == b"hi"


# --- locking ------------------------------------------------------------------------------

def test_locked_in_same_process(tmp_path):
    d = server_dir(tmp_path)
    first = FSC(d)
    with pytest.raises(FSC.Locked) as info:
        FSC(d)
    assert str(d) in str(info.value)
    first.shutdown()
    FSC(d).shutdown()


def test_locked_by_other_process(tmp_path):
    d = server_dir(tmp_path)
    holder = run_helper(
        """
        import sys, time
        from aiocoap.oscore import FilesystemSecurityContext
        ctx = FilesystemSecurityContext(sys.argv[1])
        print("ready", flush=True)
        time.sleep(60)
        """,
        d,
        wait=False,
    )
    try:
        line = holder.stdout.readline()
        assert line.strip() == "ready", holder.stderr.read()
        with pytest.raises(FSC.LoadError) as info:
            FSC(d)
        assert isinstance(info.value, oscore.ContextUnavailable)
        assert str(d) in str(info.value) and "in use" in str(info.value)
    finally:
        holder.kill()
        holder.wait(timeout=30)
        holder.stdout.close()
        holder.stderr.close()
    # The lock dies with its process
    FSC(d).shutdown()


def test_sequence_file_written_by_aiocoap_is_taken_over(tmp_path):
    """A context directory aiocoap 0.4.x used keeps working: its
    sequence.json ({"next-to-send": N, "received": ...}) is understood."""
    d = tmp_path / "taken-over"
    write_context(d, settings=C1_SETTINGS, secrets=C1_SECRETS,
                  sequence={"next-to-send": 40, "received": {"index": 7, "bitfield": 5}})
    ctx = FSC(str(d))
    assert ctx.new_sequence_number() >= 40
    window = ctx.recipient_replay_window
    assert not window.is_valid(6) and not window.is_valid(7) and window.is_valid(8) and not window.is_valid(9)
    assert ctx.echo_recovery is None
    ctx.shutdown()

    d2 = tmp_path / "crashed"
    write_context(d2, settings=C1_SETTINGS, secrets=C1_SECRETS, sequence={"next-to-send": 12, "received": "unknown"})
    ctx = FSC(str(d2))
    assert ctx.new_sequence_number() >= 12
    assert ctx.echo_recovery is not None  # window unknown: Echo recovery
    ctx.shutdown()

    d3 = tmp_path / "broken"
    write_context(d3, settings=C1_SETTINGS, secrets=C1_SECRETS, sequence={"next-to-send": 12, "received": 3})
    with pytest.raises(FSC.LoadError, match="received"):
        FSC(str(d3))
