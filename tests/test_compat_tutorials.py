"""Small programs in the style of aiocoap's tutorials and examples (the
guided tour, ``server.py``, ``clientGET.py``, ``clientPUT.py``, observation
clients, aiocoap-client in scripts, the 0.4.x pretty printer names) run
unchanged against this library, each as a program of its own, against a
server program of the same style on 127.0.0.1 and a free port.

The programs import aiocoap as applications do; the checkout comes first
on their module search path (PYTHONPATH)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap

import pytest
from ports import free_udp_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLIENT = os.path.join(ROOT, "aiocoap-client")

SERVER_PROGRAM = '''
import asyncio
import datetime
import sys

import aiocoap
import aiocoap.resource as resource


class BlockResource(resource.Resource):
    def __init__(self):
        super().__init__()
        self.set_content(b"This is the resource's default content. It is padded "
                         b"with numbers to be large enough to trigger blockwise "
                         b"transfer.\\n")

    def set_content(self, content):
        self.content = content
        while len(self.content) <= 1024:
            self.content = self.content + b"0123456789\\n"

    async def render_get(self, request):
        return aiocoap.Message(payload=self.content)

    async def render_put(self, request):
        self.set_content(request.payload)
        return aiocoap.Message(code=aiocoap.CHANGED, payload=self.content)


class TimeResource(resource.ObservableResource):
    def __init__(self):
        super().__init__()
        self.handle = None

    def notify(self):
        self.updated_state()
        self.reschedule()

    def reschedule(self):
        self.handle = asyncio.get_event_loop().call_later(0.1, self.notify)

    def update_observation_count(self, count):
        if count and self.handle is None:
            self.reschedule()
        if count == 0 and self.handle:
            self.handle.cancel()
            self.handle = None

    async def render_get(self, request):
        payload = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S.%f").encode("ascii")
        return aiocoap.Message(payload=payload)


class Items(resource.Resource):
    async def render_post(self, request):
        return aiocoap.Message(code=aiocoap.CREATED, location_path=["items", "1"])


class Json(resource.Resource):
    async def render_get(self, request):
        return aiocoap.Message(payload=b'{"temp":21.5}', content_format=50)


async def main(port):
    root = resource.Site()
    root.add_resource([".well-known", "core"], resource.WKCResource(root.get_resources_as_linkheader))
    root.add_resource(["time"], TimeResource())
    root.add_resource(["other", "block"], BlockResource())
    root.add_resource(["items"], Items())
    root.add_resource(["json"], Json())
    await aiocoap.Context.create_server_context(root, bind=("127.0.0.1", port))
    print("ready", flush=True)
    await asyncio.get_running_loop().create_future()


if __name__ == "__main__":
    try:
        asyncio.run(main(int(sys.argv[1])))
    except KeyboardInterrupt:
        pass
'''




def _environment() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.fixture
def tutorial_server(tmp_path):
    program = tmp_path / "server.py"
    program.write_text(SERVER_PROGRAM)
    port = free_udp_port()
    process = subprocess.Popen(
        [sys.executable, str(program), str(port)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_environment(),
    )
    try:
        ready = process.stdout.readline()
        assert ready == b"ready\n", process.stderr.read()
        yield f"coap://127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()
        process.stderr.close()


def run_program(tmp_path, source: str, *args: str, timeout: float = 30) -> str:
    """Run a client program; return its stdout (it must succeed)"""
    program = tmp_path / "program.py"
    program.write_text(textwrap.dedent(source))
    result = subprocess.run(
        [sys.executable, str(program), *args],
        stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, env=_environment(),
    )
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


@pytest.mark.core
def test_get_as_in_clientget(tutorial_server, tmp_path):
    out = run_program(tmp_path, '''
        import asyncio, sys
        from aiocoap import *

        async def main():
            protocol = await Context.create_client_context()
            request = Message(code=GET, uri=sys.argv[1])
            try:
                response = await protocol.request(request).response
            except Exception as e:
                print('Failed to fetch resource:')
                print(e)
            else:
                print('Result: %s\\n%r'%(response.code, response.payload))

        if __name__ == "__main__":
            asyncio.run(main())
    ''', tutorial_server + "/time")
    assert re.fullmatch(r"Result: 2\.05 Content\nb'\d{4}-\d\d-\d\d [\d:.]+'\n", out), out


@pytest.mark.core
def test_blockwise_put_as_in_clientput(tutorial_server, tmp_path):
    out = run_program(tmp_path, '''
        import asyncio, sys
        from aiocoap import *

        async def main():
            context = await Context.create_client_context()
            await asyncio.sleep(0.1)
            payload = b"The quick brown fox jumps over the lazy dog.\\n" * 30
            request = Message(code=PUT, payload=payload, uri=sys.argv[1])
            response = await context.request(request).response
            print('Result: %s\\n%r'%(response.code, response.payload[:44]))
            response = await context.request(Message(code=GET, uri=sys.argv[1])).response
            print(len(response.payload) == len(payload) and response.payload == payload)

        if __name__ == "__main__":
            asyncio.run(main())
    ''', tutorial_server + "/other/block")
    assert out == "Result: 2.04 Changed\nb'The quick brown fox jumps over the lazy dog.'\nTrue\n"


@pytest.mark.core
def test_observation_as_in_the_observe_example(tutorial_server, tmp_path):
    out = run_program(tmp_path, '''
        import asyncio, sys
        from aiocoap import *

        async def main():
            protocol = await Context.create_client_context()
            request = Message(code=GET, uri=sys.argv[1], observe=0)
            pr = protocol.request(request)
            r = await pr.response
            print("First response: %s" % r.code)
            count = 0
            async for r in pr.observation:
                print("Next result: %s" % r.code)
                count += 1
                if count == 3:
                    pr.observation.cancel()
                    break
            await protocol.shutdown()

        if __name__ == "__main__":
            asyncio.run(main())
    ''', tutorial_server + "/time")
    assert out == "First response: 2.05 Content\n" + "Next result: 2.05 Content\n" * 3


@pytest.mark.core
def test_parallel_requests_as_in_the_tour(tutorial_server, tmp_path):
    out = run_program(tmp_path, '''
        import asyncio, sys
        from aiocoap import *

        async def main():
            protocol = await Context.create_client_context()
            responses = [
                protocol.request(Message(code=GET, uri=u)).response
                for u in (sys.argv[1] + "/time", sys.argv[1] + "/.well-known/core", sys.argv[1] + "/json")
            ]
            for f in asyncio.as_completed(responses):
                response = await f
                print("Response from {}: {}".format(response.get_request_uri(), response.code))
            await protocol.shutdown()

        asyncio.run(main())
    ''', tutorial_server)
    assert sorted(out.splitlines()) == sorted(
        f"Response from {tutorial_server}{path}: 2.05 Content" for path in ("/time", "/.well-known/core", "/json")
    )


@pytest.mark.core
def test_pretty_printer_as_aiocoap_client_0_4_uses_it(tutorial_server, tmp_path):
    """The 0.4.x names: pretty_print gives a media type, lexer_for_mime the
    pygments lexer for it (MEDIATYPE_HEXDUMP included), contenttype and the
    link format lexer exist"""
    pytest.importorskip("pygments")
    out = run_program(tmp_path, '''
        import asyncio, sys
        import pygments, pygments.util
        from pygments.formatters import TerminalFormatter
        from aiocoap import *
        from aiocoap.util import contenttype
        from aiocoap.util.prettyprint import pretty_print, lexer_for_mime, MEDIATYPE_HEXDUMP
        from aiocoap.util.linkformat_pygments import LinkFormatLexer

        async def main():
            protocol = await Context.create_client_context()
            for path in ("/json", "/.well-known/core"):
                response = await protocol.request(Message(code=GET, uri=sys.argv[1] + path)).response
                infos, mime, text = pretty_print(response)
                print(mime, contenttype.categorize(response.opt.content_format.media_type))
                lexer = lexer_for_mime(mime)
                print(type(lexer).__name__, bool(pygments.highlight(text, lexer, TerminalFormatter())))
                if path == "/json":
                    print(text)
            print(type(lexer_for_mime(MEDIATYPE_HEXDUMP)).__name__)
            try:
                lexer_for_mime("text/plain;charset=utf8")
            except pygments.util.ClassNotFound:
                print("no lexer for plain text")
            print(LinkFormatLexer.mimetypes)
            await protocol.shutdown()

        asyncio.run(main())
    ''', tutorial_server)
    assert out.splitlines() == [
        "application/json json", "JsonLexer True", "{", '    "temp": 21.5', "}",
        "application/link-format link-format", "LinkFormatLexer True",
        "HexdumpLexer", "no lexer for plain text", "['application/link-format']",
    ]


@pytest.mark.core
def test_aiocoap_client_in_a_shell_script(tutorial_server, tmp_path):
    """Uses of aiocoap-client from scripts: verbatim output in pipes, the
    new resource's location, observe output read line by line, exit codes"""
    script = tmp_path / "script.sh"
    script.write_text(textwrap.dedent(f'''\
        set -e
        client() {{ "{sys.executable}" "{CLIENT}" "$@"; }}
        client {tutorial_server}/json > json.out
        client -m POST {tutorial_server}/items 2> created.err
        client --observe {tutorial_server}/time | head -n 3 > observed.out
        if client {tutorial_server}/nonexistent 2> missing.err; then echo "no failure"; fi
        echo done
    '''))
    result = subprocess.run(
        ["bash", str(script)], cwd=tmp_path, capture_output=True, timeout=60, env=_environment()
    )
    assert (result.returncode, result.stdout) == (0, b"done\n"), result.stderr
    assert (tmp_path / "json.out").read_bytes() == b'{"temp":21.5}'
    assert (tmp_path / "created.err").read_text() == "Location options indicate new resource: /items/1\n"
    observed = (tmp_path / "observed.out").read_text().splitlines()
    assert len(observed) == 3 and all(re.fullmatch(r"\d{4}-\d\d-\d\d [\d:.]+", line) for line in observed)
    assert (tmp_path / "missing.err").read_text().splitlines()[0] == "4.04 Not Found"


@pytest.mark.core
@pytest.mark.parametrize("example,path,expected", [
    ("clientGET.py", "/time", r"Result: 2\.05 Content\nb'\d{4}-[^']*'\n"),
    ("clientPUT.py", "/other/block", r"Result: 2\.04 Changed\nb'The quick brown fox.*\n"),
])
def test_shipped_examples(tutorial_server, example, path, expected):
    """The examples/ programs, run from the checkout as the docs say"""
    result = subprocess.run(
        [sys.executable, "-S", os.path.join(ROOT, "examples", example), tutorial_server + path],
        stdin=subprocess.DEVNULL, capture_output=True, timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(expected, result.stdout.decode(), re.DOTALL), result.stdout


@pytest.mark.core
def test_shipped_observe_example(tutorial_server):
    process = subprocess.Popen(
        [sys.executable, "-S", "-X", "faulthandler", os.path.join(ROOT, "examples", "clientGET-observe.py"),
         tutorial_server + "/time"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        lines = [process.stdout.readline() for _ in range(6)]
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            # Still running: SIGABRT makes faulthandler write where every
            # thread is, so a failure here says why Ctrl-C did not end it.
            process.send_signal(signal.SIGABRT)
            _, stderr = process.communicate(timeout=10)
            pytest.fail("the example did not stop on SIGINT:\n" + stderr.decode(errors="replace"))
    assert lines[0] == b"First response: 2.05 Content\n"
    assert lines[2] == lines[4] == b"Notification: 2.05 Content\n"
