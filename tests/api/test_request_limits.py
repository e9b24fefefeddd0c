"""Requests are bounded in size and in time, over real sockets: large bodies are refused unread,
slow bodies and slow headers cannot hold a connection."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httpx
import pytest
import websockets
from starlette.responses import PlainTextResponse

from api.cli import parser
from api.service import Service
from api.settings import Settings
from api.subcommands.serve_options import settings_from
from api.web.http_server import MAX_HEADER_BYTES, READ_BYTES
from tests.api.server import TLS, serve, serve_app
from tests.api.subscriptions import PROTOCOL, websocket_url
from tests.polling import eventually

MAX_BYTES = 2048
TIMEOUT = 1.0  # seconds, for both the headers and the body
QUERY = b'{"query": "{ __typename }"}'


@pytest.fixture(scope="module")
async def base_url(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('limits') / 'ordersaga.db'}"
    settings = Settings(
        database_url=url, max_body_bytes=MAX_BYTES, body_timeout=TIMEOUT, header_timeout=TIMEOUT
    )
    async with serve(Service(settings)) as served:
        yield served


@pytest.fixture
async def connection(base_url: str) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    address = urlsplit(base_url)
    reader, writer = await asyncio.open_connection(address.hostname, address.port)
    try:
        yield reader, writer
    finally:
        writer.close()


def request_head(content_length: int | str | None = None) -> bytes:
    """A POST's head: with `content_length` as its Content-Length (a number, or the text to send as
    one), else chunked."""
    length = "transfer-encoding: chunked" if content_length is None else f"content-length: {content_length}"
    head = f"POST /graphql HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n{length}\r\n\r\n"
    return head.encode()


async def answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, object]]:
    """Status and JSON body of the response; the server closes the connection after it."""
    async with asyncio.timeout(5):
        raw = await reader.read()  # to EOF
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


async def test_a_body_declared_too_large_is_refused_before_it_is_sent(
    connection: tuple[asyncio.StreamReader, asyncio.StreamWriter],
) -> None:
    reader, writer = connection
    writer.write(request_head(50 * 1024 * 1024) + b'{"query": ')  # and never the other 50 MiB
    status, body = await answer(reader)
    assert status == 413
    assert body["errors"] == [
        {
            "message": f"The request body is larger than {MAX_BYTES} bytes.",
            "extensions": {"code": "PAYLOAD_TOO_LARGE", "maxBytes": MAX_BYTES},
        }
    ]


async def test_a_streamed_body_is_refused_once_it_passes_the_limit(
    connection: tuple[asyncio.StreamReader, asyncio.StreamWriter],
) -> None:
    reader, writer = connection
    writer.write(request_head())
    chunk = b" " * 1000
    for _ in range(3):  # 3000 bytes, past the limit; the server may answer as soon as it passes it
        writer.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
    status, body = await answer(reader)
    assert status == 413
    assert body["errors"][0]["extensions"]["code"] == "PAYLOAD_TOO_LARGE"  # type: ignore[index]


async def test_a_body_up_to_the_limit_is_served(base_url: str) -> None:
    prefix, suffix = b'{"query": "{ __typename }", "extensions": {"pad": "', b'"}}'
    padding = MAX_BYTES - len(prefix) - len(suffix)
    at_limit, over_limit = (prefix + b"x" * size + suffix for size in (padding, padding + 1))
    json_body = {"content-type": "application/json"}
    async with httpx.AsyncClient(base_url=base_url, verify=TLS) as http:
        served = await http.post("/graphql", content=at_limit, headers=json_body)
        refused = await http.post("/graphql", content=over_limit, headers=json_body)
    assert served.status_code == 200 and served.json() == {"data": {"__typename": "Query"}}
    assert refused.status_code == 413


async def test_a_body_that_dribbles_in_is_cut_off_with_408(
    connection: tuple[asyncio.StreamReader, asyncio.StreamWriter],
) -> None:
    reader, writer = connection
    writer.write(request_head(len(QUERY)))
    # A byte every quarter of the timeout: each arrives well in time, the whole body never does. Then
    # silence, so that nothing is sent after the server's answer (which would reset the connection).
    for byte in QUERY[:3]:
        writer.write(bytes([byte]))
        await writer.drain()
        await asyncio.sleep(TIMEOUT / 4)
    status, body = await answer(reader)
    assert status == 408
    assert body["errors"][0]["extensions"] == {  # type: ignore[index]
        "code": "REQUEST_TIMEOUT",
        "timeoutSeconds": TIMEOUT,
    }


async def test_a_client_that_leaves_mid_body_is_logged_in_one_quiet_line(
    connection: tuple[asyncio.StreamReader, asyncio.StreamWriter], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    _, writer = connection
    writer.write(request_head(len(QUERY)) + QUERY[:10])
    await writer.drain()
    writer.close()  # before the rest of the body
    await eventually(lambda: any("left before" in r.getMessage() for r in caplog.records), "the line logged")
    (left,) = [r for r in caplog.records if r.levelno >= logging.INFO and "ordersaga" in r.name]
    assert left.levelno == logging.INFO and left.exc_info is None
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize("sent", [b"", b"POST /graphql HTTP/1.1\r\nhost: te"])
async def test_headers_that_do_not_arrive_in_time_close_the_connection(
    connection: tuple[asyncio.StreamReader, asyncio.StreamWriter], sent: bytes
) -> None:
    reader, writer = connection
    writer.write(sent)
    async with asyncio.timeout(5):
        assert await reader.read() == b""  # closed by the server, nothing answered


HEADERS_TOO_LARGE = {"code": "HEADERS_TOO_LARGE", "maxBytes": MAX_HEADER_BYTES}


@pytest.mark.parametrize(
    "header",
    [
        # The standard library splits such a Content-Type's parameters in time that grows with the
        # square of their number, and the GraphQL view parses every request's.
        b"content-type: application/json" + b";a=b" * (MAX_HEADER_BYTES // 4),
        b"accept: " + b"a," * (MAX_HEADER_BYTES // 2),
        b"x-pad: " + b"x" * MAX_HEADER_BYTES,
        b"".join(b"x-%d: y\r\n" % n for n in range(MAX_HEADER_BYTES // 8)).rstrip(),
    ],
    ids=["content-type", "accept", "one-header", "many-headers"],
)
async def test_a_request_whose_headers_hold_more_than_the_limit_is_refused_with_431(
    connection: tuple[asyncio.StreamReader, asyncio.StreamWriter], header: bytes
) -> None:
    reader, writer = connection
    head = b"POST /graphql HTTP/1.1\r\nhost: test\r\n" + header + b"\r\ncontent-length: %d\r\n\r\n"
    writer.write(head % len(QUERY) + QUERY)
    status, body = await answer(reader)
    assert status == 431
    assert body["errors"] == [
        {
            "message": f"The request line and headers hold more than {MAX_HEADER_BYTES} bytes.",
            "extensions": HEADERS_TOO_LARGE,
        }
    ]


async def test_a_header_sent_in_pieces_is_refused_before_it_is_all_read(
    connection: tuple[asyncio.StreamReader, asyncio.StreamWriter],
) -> None:
    # A header of many megabytes would be joined piece by piece as it arrives, and httptools tells of
    # it only once it is whole: refused once the bytes received after the parser last called back
    # pass the limit and a read (the read that held its start is not counted), however much more is
    # on its way.
    reader, writer = connection
    writer.write(b"POST /graphql HTTP/1.1\r\nhost: test\r\nx-pad: ")
    piece = b"x" * 4096
    for _ in range((MAX_HEADER_BYTES + 2 * READ_BYTES) // len(piece) + 2):  # and more would come
        writer.write(piece)
        await writer.drain()
    await answered_431(reader, after_one=False)


async def answered_431(reader: asyncio.StreamReader, after_one: bool) -> None:
    """The connection's answers to its end: the one before (in full) when `after_one`, then 431."""
    if after_one:
        async with asyncio.timeout(5):
            await answered_200(reader)
    status, body = await answer(reader)
    assert status == 431 and body["errors"][0]["extensions"] == HEADERS_TOO_LARGE  # type: ignore[index]


@pytest.mark.parametrize("pipelined", [False, True], ids=["kept-alive", "pipelined"])
async def test_every_request_on_a_connection_is_held_to_the_limit(
    connection: tuple[asyncio.StreamReader, asyncio.StreamWriter], pipelined: bool
) -> None:
    reader, writer = connection
    first = request_head(len(QUERY)) + QUERY
    large = b"x-pad: " + b"x" * (2 * MAX_HEADER_BYTES)
    second = request_head(len(QUERY)).replace(b"host: test", b"host: test\r\n" + large) + QUERY
    if pipelined:  # both in one write: the second's headers reach the parser with the first's body
        writer.write(first + second)
    else:
        await served_on(connection)
        writer.write(second)
    await answered_431(reader, after_one=pipelined)


async def test_a_pipelined_request_refused_in_its_body_is_answered_after_the_one_before_it(
    connection: tuple[asyncio.StreamReader, asyncio.StreamWriter],
) -> None:
    # The second, chunked, ends with a trailer past the limit; it is refused once its turn comes.
    reader, writer = connection
    trailer = b"x-pad: " + b"x" * (2 * MAX_HEADER_BYTES)
    chunked = request_head() + b"%x\r\n%s\r\n0\r\n%s\r\n\r\n" % (len(QUERY), QUERY, trailer)
    writer.write(request_head(len(QUERY)) + QUERY + chunked)
    await answered_431(reader, after_one=True)


async def test_a_trailer_sent_in_pieces_is_refused_before_it_is_all_read(
    connection: tuple[asyncio.StreamReader, asyncio.StreamWriter],
) -> None:
    # Trailers come after a chunked body, and httptools joins a trailer's pieces as it does a
    # header's: bounded the same way.
    reader, writer = connection
    writer.write(request_head() + b"%x\r\n%s\r\n0\r\nx-pad: " % (len(QUERY), QUERY))
    piece = b"x" * 4096
    for _ in range((MAX_HEADER_BYTES + 2 * READ_BYTES) // len(piece) + 2):
        writer.write(piece)
        await writer.drain()
    await answered_431(reader, after_one=False)


async def test_headers_up_to_the_limit_are_served(base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url, verify=TLS) as http:
        # Within a kilobyte of the limit: the request line and the client's own headers fill the rest.
        padded = {"content-type": "application/json", "x-pad": "x" * (MAX_HEADER_BYTES - 1024)}
        answer = await http.post("/graphql", content=QUERY, headers=padded)
    assert answer.status_code == 200 and answer.json() == {"data": {"__typename": "Query"}}


async def test_a_content_length_of_thousands_of_digits_is_read_as_the_number_it_is(
    connection: tuple[asyncio.StreamReader, asyncio.StreamWriter],
) -> None:
    # Python refuses to read an integer of over 4,300 digits, leading zeros among them; httptools
    # takes such a Content-Length when its value fits 64 bits.
    reader, writer = connection
    writer.write(request_head("0" * 5000 + str(len(QUERY))) + QUERY)
    async with asyncio.timeout(5):
        await answered_200(reader)


async def test_what_is_not_http_is_answered_400_in_the_graphql_shape(
    connection: tuple[asyncio.StreamReader, asyncio.StreamWriter],
) -> None:
    reader, writer = connection
    writer.write(request_head("9" * 30) + QUERY)
    status, body = await answer(reader)
    assert status == 400
    assert body["errors"] == [
        {"message": "Invalid HTTP request received.", "extensions": {"code": "BAD_REQUEST"}}
    ]


async def served_on(
    connection: tuple[asyncio.StreamReader, asyncio.StreamWriter],
) -> None:
    """Sends a request on `connection` and reads its whole answer, leaving the connection open."""
    reader, writer = connection
    writer.write(request_head(len(QUERY)) + QUERY)
    async with asyncio.timeout(5):
        await answered_200(reader)


async def answered_200(reader: asyncio.StreamReader) -> None:
    """Reads QUERY's whole answer, a 200, leaving the connection open."""
    assert (await reader.readuntil(b"\r\n")).startswith(b"HTTP/1.1 200")
    await reader.readuntil(b'{"data":{"__typename":"Query"}}')


async def test_a_kept_alive_connection_gets_a_fresh_header_deadline_per_request(
    connection: tuple[asyncio.StreamReader, asyncio.StreamWriter],
) -> None:
    for _ in range(3):  # three requests over TIMEOUT in all, each sent at once
        await served_on(connection)
        await asyncio.sleep(TIMEOUT / 2)


async def test_an_idle_connection_is_kept_for_the_keep_alive_timeout_then_closed() -> None:
    # Shorter than the default (75 s, longer than httpx's 5 s and undici's 4 s pool expiries, which
    # uvicorn's own 5 s raced), so that both ends of it are seen in a test.
    keep_alive = 0.5
    settings = Settings(database_url="", keep_alive_timeout=keep_alive)
    async with serve_app(PlainTextResponse("served"), settings) as url:
        address = urlsplit(url)
        reader, writer = await asyncio.open_connection(address.hostname, address.port)
        try:
            for pause in (keep_alive / 2, 0):  # the second request after half the timeout, on the same socket
                writer.write(b"GET / HTTP/1.1\r\nhost: test\r\n\r\n")
                async with asyncio.timeout(5):
                    assert (await reader.readuntil(b"served")).startswith(b"HTTP/1.1 200")
                await asyncio.sleep(pause)
            idle = time.monotonic()
            async with asyncio.timeout(3):  # well before uvicorn's own 5 s
                assert await reader.read() == b""  # closed by the server once idle that long
            assert time.monotonic() - idle >= keep_alive / 2  # not at once after the answer
        finally:
            writer.close()


async def test_a_websocket_message_over_the_limit_closes_the_socket(base_url: str) -> None:
    async with websockets.connect(websocket_url(base_url), subprotocols=[PROTOCOL]) as socket:
        await socket.send(json.dumps({"type": "connection_init", "payload": {"pad": "x" * MAX_BYTES}}))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            async with asyncio.timeout(5):
                await socket.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009  # message too big


def test_the_limits_come_from_the_command_line() -> None:
    defaults = settings_from(parser().parse_args(["serve"]))
    limits = ("max_body_bytes", "body_timeout", "header_timeout", "keep_alive_timeout")
    assert [getattr(defaults, limit) for limit in limits] == [1024 * 1024, 30, 10, 75]
    options = ["--max-body-bytes=5000", "--body-timeout=2", "--header-timeout=3", "--keep-alive-timeout=4"]
    chosen = settings_from(parser().parse_args(["serve", *options]))
    assert [getattr(chosen, limit) for limit in limits] == [5000, 2, 3, 4]
