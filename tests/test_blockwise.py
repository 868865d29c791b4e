"""The sans-I/O blockwise cores of aiocoap/blockwise.py: ClientTransfer and
ServerBlockwiseState, driven directly with messages and a fake clock (no
event loop, no network).

The flows named after RFC 7959 sections follow the figures there; the
end-to-end tests through Contexts are in test_blockwise_e2e.py.
"""

import aiocoap.protocol  # noqa: F401  (import order: protocol first, as applications do)

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from aiocoap import error
from aiocoap.blockwise import (
    ClientTransfer,
    RenderJob,
    ServerBlockwiseState,
    body_etag,
    new_request_tag,
    single_message_limit,
)
from aiocoap.message import Message
from aiocoap.numbers.codes import Code
from aiocoap.optiontypes import BlockOption, OpaqueOption

BT = BlockOption.BlockwiseTuple


class Remote:
    """A hashable stand-in for an EndpointAddress."""

    def __init__(self, name="peer", exp=6, payload=1024):
        self.name = name
        self.maximum_block_size_exp = exp
        self.maximum_payload_size = payload

    def __hash__(self):
        return hash(self.name)

    def __eq__(self, other):
        return isinstance(other, Remote) and other.name == self.name

    def __repr__(self):
        return f"<Remote {self.name}>"


PEER = Remote()


def request(code=Code.GET, payload=b"", remote=PEER, path=("r",), **options):
    msg = Message(code=code, payload=payload, uri_path=path, **options)
    msg.remote = remote
    return msg


def body_of(size):
    return bytes((i * 7 + i // 256) & 0xFF for i in range(size))


class FakeResource:
    """Renders like a Resource: GET returns ``content``, PUT/POST store the
    body and answer with ``answer(body)``."""

    def __init__(self, content=b"", answer=lambda body: b""):
        self.content = content
        self.answer = answer
        self.received = []

    def __call__(self, req):
        if req.code in (Code.GET, Code.FETCH):
            return Message(code=Code.CONTENT, payload=self.content)
        self.received.append(req.payload)
        return Message(code=Code.CHANGED, payload=self.answer(req.payload))


def serve(state, req, resource, now=0.0):
    """One request through the server core, as BlockwiseServer.render does
    it (including its shortcut for requests without block options)."""
    result = state.receive(req, now)
    if isinstance(result, Message):
        return result
    assert isinstance(result, RenderJob)
    assert result.request.opt.block1 is None and result.request.opt.block2 is None
    return state.respond(result, resource(result.request), now)


def run_exchange(client_request, resource, state=None, remote=PEER, on_wire=None, **transfer_args):
    """Run a ClientTransfer against a ServerBlockwiseState; return the final
    response and the requests sent."""
    state = state or ServerBlockwiseState()
    transfer = ClientTransfer(
        client_request,
        max_exp=remote.maximum_block_size_exp,
        max_payload=remote.maximum_payload_size,
        **transfer_args,
    )
    sent = []
    message = transfer.first_request()
    while message is not None:
        message.remote = remote
        sent.append(message)
        assert len(sent) < 200000
        response = serve(state, message, resource)
        response.remote = remote
        if on_wire is not None:
            on_wire(message, response)
        message = transfer.response_received(response)
    return transfer.response, sent


# ---------------------------------------------------------------- client


def test_small_request_goes_unchanged():
    req = request(Code.PUT, b"hello")
    transfer = ClientTransfer(req)
    assert transfer.first_request() is req
    response = Message(code=Code.CHANGED)
    assert transfer.response_received(response) is None
    assert transfer.response is response


@pytest.mark.parametrize("size", [0, 1, 15, 16, 1023, 1024, 1025, 64 * 1024, 1 << 20])
def test_sizes_upload_and_download(size):
    body = body_of(size)
    resource = FakeResource(content=body, answer=lambda b: b[::-1])
    response, sent = run_exchange(request(Code.POST, body), resource)
    assert resource.received == [body]
    assert response.code == Code.CHANGED
    assert response.payload == body[::-1]
    blocks = max(1, -(-size // 1024))
    assert len([m for m in sent if m.opt.block2 is None]) == blocks
    if size > 1024:
        assert len(sent) == 2 * blocks - 1  # the rest of the response follows
        assert len({m.opt.request_tag for m in sent}) == 1 and sent[0].opt.request_tag
        assert sent[0].opt.size1 == size and sent[1].opt.size1 is None
    else:
        assert len(sent) == 1 and sent[0].opt.block1 is None and not sent[0].opt.request_tag

    response, sent = run_exchange(request(), resource)
    assert response.payload == body
    assert response.opt.block2 is None
    assert len(sent) == blocks


@pytest.mark.parametrize("szx", range(7))
def test_every_block_size(szx):
    body = body_of(3000)
    size = 1 << (szx + 4)
    resource = FakeResource(content=body, answer=lambda b: b)
    wire = []
    response, sent = run_exchange(
        request(Code.PUT, body, block1=(0, False, szx), block2=(0, False, szx)),
        resource,
        on_wire=lambda m, r: wire.append((m, r)),
    )
    assert resource.received == [body] and response.payload == body
    for message, answer in wire:
        block1 = message.opt.block1
        if block1 is not None:
            assert block1.size_exponent == szx
            assert len(message.payload) == min(size, len(body) - block1.block_number * size)
        block2 = answer.opt.block2
        if block2 is not None:
            assert block2.size_exponent == szx
            assert len(answer.payload) == min(size, len(body) - block2.block_number * size)
    # the response size hint went with the last request block only
    assert [m.opt.block2 is not None for m, _ in wire if m.opt.block1 is not None][-1]
    assert not any(m.opt.block2 for m, _ in wire if m.opt.block1 is not None and m.opt.block1.more)


def test_block1_renegotiation_rfc7959_figure():
    """RFC 7959 §2.5: the server answers block 0 of 128 bytes with its
    preference of 32 bytes; the client goes on with block 4 of 32."""
    body = body_of(300)
    transfer = ClientTransfer(request(Code.PUT, body), max_exp=3)
    first = transfer.first_request()
    assert first.opt.block1 == BT(0, True, 3) and len(first.payload) == 128
    second = transfer.response_received(Message(code=Code.CONTINUE, block1=(0, True, 1)))
    assert second.opt.block1 == BT(4, True, 1) and second.payload == body[128:160]
    third = transfer.response_received(Message(code=Code.CONTINUE, block1=(4, True, 1)))
    assert third.opt.block1 == BT(5, True, 1) and third.payload == body[160:192]
    assert third.opt.request_tag == first.opt.request_tag


def test_block1_renegotiation_against_server_core():
    body = body_of(5000)
    resource = FakeResource(answer=lambda b: b"ok")
    small = Remote("small", exp=2)
    transfer = ClientTransfer(request(Code.PUT, body, remote=small), max_exp=6)
    state = ServerBlockwiseState()
    message = transfer.first_request()
    sizes = []
    while message is not None:
        message.remote = small
        sizes.append(message.opt.block1.size_exponent)
        message = transfer.response_received(serve(state, message, resource))
    assert resource.received == [body]
    assert sizes[0] == 6 and set(sizes[1:]) == {2}
    assert transfer.response.opt.block1.size_exponent == 2


def test_block1_protocol_violations():
    body = body_of(3000)
    transfer = ClientTransfer(request(Code.PUT, body))
    transfer.first_request()
    with pytest.raises(error.UnexpectedBlock1Option):
        transfer.response_received(Message(code=Code.CONTINUE, block1=(1, True, 6)))

    transfer = ClientTransfer(request(Code.PUT, body))
    transfer.first_request()
    with pytest.raises(error.UnexpectedBlock1Option):
        transfer.response_received(Message(code=Code.CONTINUE))

    transfer = ClientTransfer(request(Code.PUT, body_of(1500)))
    transfer.first_request()
    last = transfer.response_received(Message(code=Code.CONTINUE, block1=(0, True, 6)))
    assert not last.opt.block1.more
    with pytest.raises(error.UnexpectedBlock1Option):
        transfer.response_received(Message(code=Code.CONTINUE, block1=(1, True, 6)))

    transfer = ClientTransfer(request(Code.PUT, body_of(1500)))
    transfer.first_request()
    transfer.response_received(Message(code=Code.CONTINUE, block1=(0, True, 6)))
    with pytest.raises(error.UnexpectedBlock1Option):
        transfer.response_received(Message(code=Code.CHANGED, block1=(0, False, 6)))

    small = ClientTransfer(request(Code.PUT, b"x"))
    small.first_request()
    with pytest.raises(error.UnexpectedBlock1Option):
        small.response_received(Message(code=Code.CONTINUE, block1=(0, True, 6)))


def test_non_atomic_server_acknowledging_with_changed():
    body = body_of(2500)
    transfer = ClientTransfer(request(Code.PUT, body))
    transfer.first_request()
    second = transfer.response_received(Message(code=Code.CHANGED, block1=(0, False, 6)))
    assert second.opt.block1 == BT(1, True, 6)


def test_error_on_a_middle_block_ends_the_exchange():
    transfer = ClientTransfer(request(Code.PUT, body_of(5000)))
    transfer.first_request()
    failure = Message(code=Code.REQUEST_ENTITY_INCOMPLETE)
    assert transfer.response_received(failure) is None
    assert transfer.response is failure


def test_413_with_size1_below_the_body_is_final():
    transfer = ClientTransfer(request(Code.PUT, body_of(5000)))
    transfer.first_request()
    refusal = Message(code=Code.REQUEST_ENTITY_TOO_LARGE, size1=4096)
    assert transfer.response_received(refusal) is None
    assert transfer.response is refusal


def test_413_restarts_with_smaller_blocks():
    body = body_of(900)
    transfer = ClientTransfer(request(Code.PUT, body))
    first = transfer.first_request()
    assert first.opt.block1 is None  # fits one message
    retry = transfer.response_received(Message(code=Code.REQUEST_ENTITY_TOO_LARGE, size1=1000))
    # 900 bytes are fine in total, but 900 in one message were not
    assert retry.opt.block1 == BT(0, True, 5) and retry.opt.request_tag
    retry2 = transfer.response_received(Message(code=Code.REQUEST_ENTITY_TOO_LARGE, block1=(0, False, 3)))
    assert retry2.opt.block1 == BT(0, True, 3) and len(retry2.payload) == 128
    assert retry2.opt.request_tag != retry.opt.request_tag
    # no hint: nothing to try any more
    refusal = Message(code=Code.REQUEST_ENTITY_TOO_LARGE)
    assert transfer.response_received(refusal) is None and transfer.response is refusal


def test_413_restarts_are_bounded():
    transfer = ClientTransfer(request(Code.PUT, body_of(3000)))
    message = transfer.first_request()
    szx = 6
    restarts = 0
    while message is not None:
        szx -= 1
        message = transfer.response_received(Message(code=Code.REQUEST_ENTITY_TOO_LARGE, block1=(0, False, szx)))
        restarts += message is not None
    assert restarts == 3
    assert transfer.response.code == Code.REQUEST_ENTITY_TOO_LARGE


def test_block2_checks():
    def start(first):
        transfer = ClientTransfer(request())
        transfer.first_request()
        return transfer, transfer.response_received(first)

    first = Message(code=Code.CONTENT, payload=b"a" * 64, block2=(0, True, 2), etag=b"v1")
    transfer, follow_up = start(first)
    assert follow_up.opt.block2 == BT(1, False, 2) and follow_up.opt.etags == ()
    with pytest.raises(error.ResourceChanged):
        transfer.response_received(Message(code=Code.CONTENT, payload=b"b" * 64, block2=(1, False, 2), etag=b"v2"))

    transfer, _ = start(first)
    with pytest.raises(error.MissingBlock2Option):
        transfer.response_received(Message(code=Code.CONTENT, payload=b"b", etag=b"v1"))

    transfer, _ = start(first)
    with pytest.raises(error.UnexpectedBlock2):
        transfer.response_received(Message(code=Code.CONTENT, payload=b"b" * 64, block2=(2, True, 2), etag=b"v1"))

    transfer, _ = start(first)
    with pytest.raises(error.UnexpectedBlock2):
        transfer.response_received(Message(code=Code.CONTENT, payload=b"b" * 10, block2=(1, True, 2), etag=b"v1"))

    with pytest.raises(error.UnexpectedBlock2):
        start(Message(code=Code.CONTENT, payload=b"a" * 64, block2=(1, True, 2)))
    with pytest.raises(error.UnexpectedBlock2):
        start(Message(code=Code.CONTENT, payload=b"a" * 63, block2=(0, True, 2)))

    transfer, _ = start(first)
    gone = Message(code=Code.NOT_FOUND)
    assert transfer.response_received(gone) is None and transfer.response is gone


def test_block2_server_lowers_the_size():
    body = body_of(1000)
    transfer = ClientTransfer(request())
    transfer.first_request()
    following = transfer.response_received(Message(code=Code.CONTENT, payload=body[:256], block2=(0, True, 4)))
    assert following.opt.block2 == BT(1, False, 4)
    following = transfer.response_received(Message(code=Code.CONTENT, payload=body[256:320], block2=(4, True, 2)))
    assert following.opt.block2 == BT(5, False, 2)
    assert transfer.response_received(Message(code=Code.CONTENT, payload=body[320:], block2=(5, False, 2))) is None
    assert transfer.response.payload == body and transfer.response.opt.block2 is None


def test_fetch_repeats_its_body_post_does_not():
    for code, repeated in ((Code.FETCH, b"query"), (Code.POST, b"")):
        transfer = ClientTransfer(request(code, b"query"))
        transfer.first_request()
        follow_up = transfer.response_received(Message(code=Code.CONTENT, payload=b"x" * 16, block2=(0, True, 0)))
        assert follow_up.payload == repeated and follow_up.code == code
        assert not follow_up.opt.request_tag


def test_observe_travels_with_the_last_block_only():
    transfer = ClientTransfer(request(Code.FETCH, body_of(2100), observe=0))
    first = transfer.first_request()
    assert first.opt.observe is None
    second = transfer.response_received(Message(code=Code.CONTINUE, block1=(0, True, 6)))
    third = transfer.response_received(Message(code=Code.CONTINUE, block1=(1, True, 6)))
    assert second.opt.observe is None and third.opt.observe == 0
    follow_up = transfer.response_received(
        Message(code=Code.CONTENT, observe=3, payload=b"n" * 1024, block2=(0, True, 6), block1=(2, False, 6))
    )
    assert follow_up.opt.observe is None and follow_up.payload == b""
    assert follow_up.opt.request_tag == first.opt.request_tag  # the same operation


def test_request_tags_are_distinct_and_application_tags_are_kept():
    tags = {new_request_tag() for _ in range(1000)}
    assert len(tags) == 1000
    transfer = ClientTransfer(request(Code.PUT, body_of(3000), request_tag=[b"app"]))
    assert transfer.first_request().opt.request_tag == (b"app",)


def test_requests_derived_from_a_sent_request_are_fresh():
    req = request(Code.PUT, body_of(3000))
    transfer = ClientTransfer(req)
    first = transfer.first_request()
    first.mid, first.token = 17, b"tok"
    second = transfer.response_received(Message(code=Code.CONTINUE, block1=(0, True, 6)))
    assert second.mid is None and second.token == b"" and second.mtype is None
    assert req.payload == body_of(3000) and req.opt.block1 is None  # untouched


def test_bert_upload_and_download():
    bert = Remote("tcp", exp=7, payload=4096)
    body = body_of(10000)
    resource = FakeResource(content=body, answer=lambda b: b)
    wire = []
    response, sent = run_exchange(
        request(Code.PUT, body, remote=bert), resource, remote=bert,
        on_wire=lambda m, r: wire.append((m, r)),
    )
    assert resource.received == [body] and response.payload == body
    uploads = [m for m in sent if m.opt.block1 is not None]
    assert [m.opt.block1 for m in uploads] == [BT(0, True, 7), BT(4, True, 7), BT(8, False, 7)]
    assert [len(m.payload) for m in uploads] == [4096, 4096, 1808]
    downloads = [r.opt.block2 for m, r in wire if r.opt.block2 is not None]
    assert downloads == [BT(0, True, 7), BT(4, True, 7), BT(8, False, 7)]
    assert single_message_limit(bert) == 4096


# ---------------------------------------------------------------- server


def block1_request(number, more, szx, payload, tag=b"t", code=Code.PUT, **options):
    return request(code, payload, block1=(number, more, szx), request_tag=[tag] if tag else [], **options)


def test_server_continue_echo_with_preferred_size():
    state = ServerBlockwiseState()
    small = Remote("small", exp=1)
    answer = state.receive(block1_request(0, True, 3, b"a" * 128, remote=small), 0)
    assert answer.code == Code.CONTINUE and answer.opt.block1 == BT(0, True, 1)
    answer = state.receive(block1_request(4, True, 1, b"b" * 32, remote=small), 0)
    assert answer.code == Code.CONTINUE and answer.opt.block1 == BT(4, True, 1)
    job = state.receive(block1_request(5, False, 1, b"c" * 3, remote=small), 0)
    assert job.request.payload == b"a" * 128 + b"b" * 32 + b"ccc"
    final = state.respond(job, Message(code=Code.CHANGED), 0)
    assert final.opt.block1 == BT(5, False, 1)
    assert state.reassembly_count == 0 and state.buffered_bytes == 0


def test_server_gap_and_missing_state_give_408():
    state = ServerBlockwiseState()
    assert state.receive(block1_request(3, True, 6, b"x" * 1024), 0).code == Code.REQUEST_ENTITY_INCOMPLETE
    state.receive(block1_request(0, True, 6, b"x" * 1024), 0)
    assert state.receive(block1_request(2, True, 6, b"x" * 1024), 0).code == Code.REQUEST_ENTITY_INCOMPLETE
    assert state.reassembly_count == 0  # a broken upload is forgotten


def test_server_repeated_block_is_acknowledged_once():
    state = ServerBlockwiseState()
    state.receive(block1_request(0, True, 4, b"a" * 256), 0)
    state.receive(block1_request(1, True, 4, b"b" * 256), 0)
    again = state.receive(block1_request(1, True, 4, b"b" * 256), 0)
    assert again.code == Code.CONTINUE and again.opt.block1 == BT(1, True, 4)
    job = state.receive(block1_request(2, False, 4, b"c"), 0)
    assert job.request.payload == b"a" * 256 + b"b" * 256 + b"c"


def test_server_too_large():
    state = ServerBlockwiseState(max_body_size=2048)
    early = state.receive(block1_request(0, True, 6, b"x" * 1024, size1=5000), 0)
    assert early.code == Code.REQUEST_ENTITY_TOO_LARGE and early.opt.size1 == 2048
    state.receive(block1_request(0, True, 6, b"x" * 1024), 0)
    state.receive(block1_request(1, True, 6, b"x" * 1024), 0)
    late = state.receive(block1_request(2, False, 6, b"x"), 0)
    assert late.code == Code.REQUEST_ENTITY_TOO_LARGE and late.opt.size1 == 2048
    assert state.reassembly_count == 0 and state.buffered_bytes == 0


def test_server_bad_requests():
    state = ServerBlockwiseState()
    assert state.receive(block1_request(0, True, 6, b"x" * 100), 0).code == Code.BAD_REQUEST
    assert state.receive(block1_request(0, False, 4, b"x" * 300), 0).code == Code.BAD_REQUEST
    assert state.receive(block1_request(0, True, 7, b"x" * 1024), 0).code == Code.BAD_REQUEST
    assert state.receive(request(block2=(0, False, 7)), 0).code == Code.BAD_REQUEST
    assert state.receive(block1_request(0, True, 6, b"x" * 1024, block2=(1, False, 6)), 0).code == Code.BAD_REQUEST
    bert = Remote("tcp", exp=7, payload=2048)
    answer = state.receive(block1_request(0, True, 7, b"x" * 2048, remote=bert), 0)
    assert answer.code == Code.CONTINUE and answer.opt.block1 == BT(0, True, 7)


def test_server_concurrent_uploads_with_request_tags():
    state = ServerBlockwiseState()
    bodies = {b"A": b"a" * 2100, b"B": b"b" * 2100}
    jobs = {}
    for number in range(3):
        for tag, body in bodies.items():
            piece = body[number * 1024 : (number + 1) * 1024]
            result = state.receive(block1_request(number, number < 2, 6, piece, tag=tag), 0)
            if number < 2:
                assert result.code == Code.CONTINUE
            else:
                jobs[tag] = result
    assert {tag: job.request.payload for tag, job in jobs.items()} == bodies


def test_server_random_access_and_range():
    state = ServerBlockwiseState()
    body = body_of(5000)
    resource = FakeResource(content=body)
    seventh = serve(state, request(block2=(7, False, 4)), resource)
    assert seventh.opt.block2 == BT(7, True, 4) and seventh.payload == body[7 * 256 : 8 * 256]
    assert seventh.opt.etag == body_etag(body)
    resource.content = b"changed"
    eighth = serve(state, request(block2=(8, False, 4)), resource)  # from the cache
    assert eighth.payload == body[8 * 256 : 9 * 256] and eighth.opt.etag == seventh.opt.etag
    beyond = serve(state, request(block2=(20, False, 4)), resource)
    assert beyond.code == Code.BAD_OPTION
    last = serve(state, request(block2=(19, False, 4)), resource)
    assert last.payload == body[19 * 256 :] and not last.opt.block2.more
    # a bigger size than the remote allows is served at the remote's size
    reduced = serve(state, request(block2=(1, False, 6), remote=Remote("small", exp=4)), FakeResource(content=body))
    assert reduced.opt.block2 == BT(4, True, 4) and reduced.payload == body[1024:1280]


def test_server_follow_up_blocks_ignore_nocachekey_options_only():
    """A later block belongs to the transfer of block 0 if the requests
    agree on every cache-key option (RFC 7959 §2.4): a NoCacheKey option
    (here an unregistered one, given by its plain number) may differ, a
    cache-key option (Accept) may not."""
    state = ServerBlockwiseState()
    body = body_of(2000)
    resource = FakeResource(content=body)
    first = serve(state, request(block2=(0, False, 4)), resource)
    assert first.opt.block2 == BT(0, True, 4)
    resource.content = b"changed"
    unregistered_nocachekey = 92
    follow_up = request(block2=(1, False, 4))
    follow_up.opt.add_option(OpaqueOption(unregistered_nocachekey, b"x"))
    assert serve(state, follow_up, resource).payload == body[256:512]
    other_accept = serve(state, request(block2=(1, False, 4), accept=50), resource)
    assert other_accept.code == Code.BAD_OPTION  # rendered afresh: b"changed" has no block 1


def test_server_empty_and_fitting_bodies():
    state = ServerBlockwiseState()
    empty = serve(state, request(block2=(0, False, 2)), FakeResource(content=b""))
    assert empty.code == Code.CONTENT and empty.opt.block2 == BT(0, False, 2) and empty.payload == b""
    assert serve(state, request(block2=(1, False, 2)), FakeResource(content=b"")).code == Code.BAD_OPTION
    sized = serve(state, request(size2=0), FakeResource(content=b"abc"))
    assert sized.opt.size2 == 3 and sized.opt.block2 is None
    sized = serve(state, request(size2=0), FakeResource(content=body_of(3000)))
    assert sized.opt.size2 == 3000 and sized.opt.block2 == BT(0, True, 6)


def test_server_etag_only_added_to_content():
    state = ServerBlockwiseState()
    own = state.slice(request(), Message(code=Code.CONTENT, payload=body_of(2000), etag=b"mine"), 0)
    assert own.opt.etag == b"mine"
    changed = state.slice(request(Code.POST), Message(code=Code.CHANGED, payload=body_of(2000)), 0)
    assert changed.opt.etag is None and changed.opt.block2 == BT(0, True, 6)


def test_server_non_safe_follow_up_without_state():
    state = ServerBlockwiseState()
    answer = state.receive(request(Code.POST, block2=(1, False, 6)), 0)
    assert answer.code == Code.REQUEST_ENTITY_INCOMPLETE


def test_server_block1_then_block2_rfc7959_combined():
    """RFC 7959 §3.3: a large POST whose response is large too; the
    response blocks are fetched with POSTs carrying only Block2."""
    state = ServerBlockwiseState()
    body = body_of(300)
    resource = FakeResource(answer=lambda b: b * 2)
    post = dict(tag=b"op", code=Code.POST)
    assert state.receive(block1_request(0, True, 3, body[:128], **post), 0).code == Code.CONTINUE
    assert state.receive(block1_request(1, True, 3, body[128:256], **post), 0).code == Code.CONTINUE
    final = serve(state, block1_request(2, False, 3, body[256:], block2=(0, False, 3), **post), resource)
    assert final.code == Code.CHANGED and final.opt.block1 == BT(2, False, 3)
    assert final.opt.block2 == BT(0, True, 3) and final.payload == (body * 2)[:128]
    follow = request(Code.POST, block2=(1, False, 3), request_tag=[b"op"])
    second = serve(state, follow, resource)
    assert second.payload == (body * 2)[128:256] and second.opt.block1 is None
    # a client that leaves the Request-Tag out of the follow-ups is served too
    third = serve(state, request(Code.POST, block2=(2, False, 3)), resource)
    assert third.payload == (body * 2)[256:384]
    # but a different operation is not
    other = serve(state, request(Code.POST, block2=(2, False, 3), request_tag=[b"other"]), resource)
    assert other.code == Code.REQUEST_ENTITY_INCOMPLETE
    assert resource.received == [body]


def test_server_observe_notification_slicing():
    state = ServerBlockwiseState()
    body = body_of(2500)
    notification = state.slice(request(observe=0), Message(code=Code.CONTENT, payload=body, observe=5), 0)
    assert notification.opt.observe == 5 and notification.opt.block2 == BT(0, True, 6)
    follow = serve(state, request(block2=(1, False, 6)), FakeResource(content=b"other"))
    assert follow.opt.observe is None and follow.payload == body[1024:2048]
    assert follow.opt.etag == notification.opt.etag


def test_flood_of_unfinished_uploads_is_bounded_and_expires():
    state = ServerBlockwiseState(
        reassembly_timeout=30, max_reassemblies=1000, max_reassembly_bytes=512 * 1024, max_body_size=64 * 1024
    )
    now = 100.0
    for i in range(10000):
        remote = Remote(f"attacker{i}")
        answer = state.receive(block1_request(0, True, 6, b"z" * 1024, remote=remote), now)
        assert answer.code == Code.CONTINUE
        assert state.reassembly_count <= 1000
        assert state.buffered_bytes <= 512 * 1024
        now += 0.001
    assert state.reassembly_count == 512  # bounded by bytes here
    assert state.next_deadline() == pytest.approx(100.0 + 9488 * 0.001 + 30)
    # the newest survived, the oldest were evicted
    assert state.receive(block1_request(1, True, 6, b"z" * 1024, remote=Remote("attacker9999")), now).code == Code.CONTINUE
    assert state.receive(block1_request(1, True, 6, b"z" * 1024, remote=Remote("attacker0")), now).code == Code.REQUEST_ENTITY_INCOMPLETE
    state.expire(now + 31)
    assert state.reassembly_count == 0 and state.buffered_bytes == 0
    assert state.next_deadline() is None


def _slow_upload_against(attack, blocks=5):
    """A legitimate upload continued every second while ``attack(state,
    now)`` runs between its blocks; returns the codes it got."""
    state = ServerBlockwiseState(reassembly_timeout=247, max_reassemblies=100, max_reassembly_bytes=1 << 20)
    legit = Remote("legit")
    codes = []
    now = 0.0
    for number in range(blocks):
        more = number < blocks - 1
        answer = state.receive(block1_request(number, more, 4, b"L" * 256, tag=b"slow", remote=legit), now)
        codes.append(answer.code if isinstance(answer, Message) else "render")
        attack(state, now)
        now += 1.0
        assert state.reassembly_count <= 100
        assert sum(len(own) for own in state._assemblies_of.values()) == state.reassembly_count
    return codes


def test_slow_upload_survives_starts_from_one_source():
    """Uploads started quickly from one source (new Request-Tag each) and
    never continued push out that source's own, not someone else's."""
    counter = iter(range(10**6))

    def attack(state, now):
        for i in range(1000):
            tag = next(counter).to_bytes(4, "big")
            state.receive(block1_request(0, True, 4, b"z" * 256, tag=tag, remote=Remote("mallory")), now + i * 1e-4)

    codes = _slow_upload_against(attack)
    assert codes == [Code.CONTINUE] * 4 + ["render"]


def test_slow_upload_that_made_progress_survives_starts_from_many_sources():
    counter = iter(range(10**6))

    def attack(state, now):
        for i in range(1000):
            source = Remote(f"spoofed{next(counter)}")
            state.receive(block1_request(0, True, 4, b"z" * 256, remote=source), now + i * 1e-4)

    def attack_after_first_block(state, now):
        if now >= 1.0:
            attack(state, now)

    codes = _slow_upload_against(attack_after_first_block)
    assert codes == [Code.CONTINUE] * 4 + ["render"]


def test_uploads_per_source_are_capped():
    state = ServerBlockwiseState(max_reassemblies_per_peer=3)
    for i in range(5):
        state.receive(block1_request(0, True, 4, b"z" * 256, tag=bytes([i]), remote=Remote("m")), float(i))
    state.receive(block1_request(0, True, 4, b"z" * 256, remote=Remote("other")), 5.0)
    assert state.reassembly_count == 4
    # the source's oldest went: tags 0 and 1
    assert state.receive(block1_request(1, True, 4, b"z" * 256, tag=b"\x01", remote=Remote("m")), 6.0).code == (
        Code.REQUEST_ENTITY_INCOMPLETE
    )
    assert state.receive(block1_request(1, True, 4, b"z" * 256, tag=b"\x02", remote=Remote("m")), 6.0).code == (
        Code.CONTINUE
    )


def test_response_cache_is_bounded():
    state = ServerBlockwiseState(max_responses=4, max_response_bytes=10000, response_timeout=5)
    body = body_of(3000)
    for i in range(10):
        state.slice(request(path=(str(i),)), Message(code=Code.CONTENT, payload=body), float(i))
        assert state.response_count <= 3  # 4 entries would be 12000 bytes
        assert state.buffered_bytes <= 10000
    state.expire(9 + 5)
    assert state.response_count == 0 and state.buffered_bytes == 0


# ------------------------------------------------------------- hypothesis

REMOTES = [Remote("a"), Remote("b", exp=3), Remote("c", exp=7, payload=2048)]
DOCUMENTED = {
    Code.CONTINUE, Code.BAD_REQUEST, Code.BAD_OPTION, Code.REQUEST_ENTITY_INCOMPLETE,
    Code.REQUEST_ENTITY_TOO_LARGE,
}


@st.composite
def block_requests(draw):
    code = draw(st.sampled_from([Code.GET, Code.POST, Code.PUT, Code.FETCH]))
    options = {}
    if draw(st.booleans()):
        options["block1"] = (draw(st.integers(0, 40)), draw(st.booleans()), draw(st.integers(0, 7)))
    if draw(st.booleans()):
        options["block2"] = (draw(st.integers(0, 40)), draw(st.booleans()), draw(st.integers(0, 7)))
    if draw(st.booleans()):
        options["request_tag"] = [draw(st.binary(max_size=2))]
    if draw(st.booleans()):
        options["size1"] = draw(st.integers(0, 1 << 16))
    if draw(st.booleans()):
        options["size2"] = draw(st.sampled_from([0, 5]))
    length = draw(st.sampled_from([0, 1, 16, 31, 32, 64, 128, 1024, 2048, 1500]))
    return request(
        code, b"p" * length, remote=draw(st.sampled_from(REMOTES)),
        path=(draw(st.sampled_from(["x", "y"])),), **options,
    ), draw(st.floats(0, 20)), draw(st.sampled_from([0, 10, 600, 5000]))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(block_requests(), max_size=40))
def test_server_core_survives_any_block_sequence(sequence):
    state = ServerBlockwiseState(
        max_body_size=4096, max_reassemblies=5, max_reassembly_bytes=6000,
        reassembly_timeout=30, response_timeout=30, max_responses=3, max_response_bytes=8000,
    )
    now = 0.0
    for req, step, rendered_size in sequence:
        now += step
        result = state.receive(req, now)
        if isinstance(result, Message):
            assert result.code in DOCUMENTED or result.code == Code.CONTENT or result.code.is_successful()
            if result.code == Code.CONTINUE:
                assert result.opt.block1.more
            result.mtype, result.mid = 2, 1
            Message.decode(result.encode())
        else:
            assert result.request.opt.block1 is None and result.request.opt.block2 is None
            response = state.respond(result, Message(code=Code.CONTENT, payload=b"r" * rendered_size), now)
            assert response.code in (Code.CONTENT, Code.BAD_OPTION)
            response.mtype, response.mid = 2, 1
            Message.decode(response.encode())  # every answer is a valid message
            if response.code == Code.CONTENT and response.opt.block2 is not None:
                block = response.opt.block2
                assert len(response.payload) <= max(2048, 1 << (min(block.size_exponent, 6) + 4))
        assert state.reassembly_count <= 5
        assert state._assembly_bytes == sum(len(s.buffer) for s in state._assemblies.values()) <= 6000
        assert state._response_bytes == sum(len(e.body) for e in state._responses.values())
        assert state.response_count <= 3
        assert all(state._responses.get(full) is not None for full in state._aliases.values())
    state.expire(now + 31)
    assert state.buffered_bytes == 0 and state.reassembly_count == 0 and state.response_count == 0


@settings(max_examples=100, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 5000), min_size=1, max_size=5),
    schedule=st.lists(st.tuples(st.integers(0, 4), st.booleans()), max_size=200),
    szx=st.integers(0, 6),
)
def test_interleaved_uploads_never_mix(sizes, schedule, szx):
    """Several clients upload to the same resource at once, in any
    interleaving and with repeated blocks; every body arrives whole and
    every client gets the answer to its own body."""
    state = ServerBlockwiseState()
    resource = FakeResource(answer=lambda body: body_etag(body))
    transfers, pending, last_sent = [], [], []
    for i, size in enumerate(sizes):
        body = bytes([i]) * size
        transfer = ClientTransfer(request(Code.POST, body, block1=(0, False, szx)))
        transfers.append((transfer, body))
        pending.append(transfer.first_request())
        last_sent.append(None)
    steps = [s for s in schedule] + [(i, False) for i in range(len(sizes)) for _ in range(400)]
    for which, repeat in steps:
        which %= len(sizes)
        message = pending[which]
        if message is None:
            continue
        previous = last_sent[which]
        if repeat and previous is not None and previous.opt.block1.more:
            # the block sent before arrives once more (its answer was lost)
            duplicate = serve(state, previous.copy(), resource)
            assert duplicate.code == Code.CONTINUE
            assert duplicate.opt.block1.block_number == previous.opt.block1.block_number
        last_sent[which] = message if message.opt.block1 is not None else None
        pending[which] = transfers[which][0].response_received(serve(state, message, resource))
    for (transfer, body), message in zip(transfers, pending):
        assert message is None
        if transfer.response.code == Code.CHANGED:
            assert transfer.response.payload == body_etag(body)
    assert all(received in [b for _, b in transfers] for received in resource.received)


def test_client_bounds_the_assembled_response():
    """A server can not make the client buffer without limit: the body is
    capped, whether the server announces its size (Size2) or not."""
    resource = FakeResource(content=body_of(10 * 1024))
    response, sent = run_exchange(request(), resource, max_response_size=10 * 1024)
    assert len(response.payload) == 10 * 1024
    with pytest.raises(error.ResponseTooLarge):
        run_exchange(request(), resource, max_response_size=10 * 1024 - 1)

    def with_size2(message, response):
        if response.opt.block2 is not None and response.opt.block2.block_number == 0:
            response.opt.size2 = 1 << 30

    with pytest.raises(error.ResponseTooLarge, match="Size2"):
        run_exchange(request(), resource, on_wire=with_size2)


class _OnePlainRequest:
    """A stand-in for the Context under a BlockwiseRequest: it keeps the
    plain requests it is asked for, whose responses the test sets."""

    def __init__(self, loop):
        import logging

        self.loop = loop
        self.log = logging.getLogger("test")
        self.sent = []

    def spawn_task(self, coro, name=None):
        return self.loop.create_task(coro, name=name)

    def plain_request(self, message, observer=None):
        from types import SimpleNamespace

        from aiocoap.util.asyncio import Future

        sub = SimpleNamespace(request=message, response=Future(loop=self.loop), stop_observing=lambda: None)
        self.sent.append(sub)
        return sub

    async def find_remote_and_interface(self, message):
        raise AssertionError("a one-message request is not routed by blockwise")


async def test_one_message_response_is_passed_on_at_once():
    """The response of a request that needed no blocks is the application's
    as soon as the plain request has it, not one loop iteration later (the
    awaiting task then runs in the next iteration: a request in flight
    less per round trip of a busy client)."""
    import asyncio

    from aiocoap.blockwise import BlockwiseRequest

    context = _OnePlainRequest(asyncio.get_running_loop())
    request = BlockwiseRequest(context, Message(code=Code.GET, uri="coap://192.0.2.1/small"))
    [sub] = context.sent
    response = Message(code=Code.CONTENT, payload=b"small")
    sub.response.set_result(response)
    assert request.response.done() and request.response.result() is response

    failing = BlockwiseRequest(context, Message(code=Code.GET, uri="coap://192.0.2.1/small"))
    context.sent[-1].response.set_exception(error.NetworkError("gone"))
    with pytest.raises(error.NetworkError):
        failing.response.result()

    cancelled = BlockwiseRequest(context, Message(code=Code.GET, uri="coap://192.0.2.1/small"))
    cancelled.response.cancel()
    assert context.sent[-1].response.cancelled()
