"""The webhook sender's HTTP/1.1 client (api/outbound/wire.py) against a scripted receiver: answers
read whole, connections reused while the receiver keeps them, what is not an answer a failure; on
asyncio's loop and on uvloop's, which `serve` runs (its transports are of other classes)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
import uvloop

from api.outbound.addresses import Reach
from api.outbound.resolver import GuardedResolver
from api.outbound.wire import ConnectTimeout, Origin
from tests.receiver import unconnectable

LOOPBACK = Reach(loopback=True)
LOOPS = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
ANSWERS = {
    "/kept": b"HTTP/1.1 204 No Content\r\n\r\n",
    "/chunked": b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    # The body ends where the connection does.
    "/until-closed": b"HTTP/1.1 202 Accepted\r\nconnection: close\r\n\r\nthe whole body",
    "/interim": b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\nok",
    "/moved": b"HTTP/1.1 302 Found\r\nlocation: http://elsewhere/\r\ncontent-length: 0\r\n\r\n",
    "/not-http": b"SSH-2.0-OpenSSH_9.6\r\n",
}


class Receiver:
    """Answers each request by its path (ANSWERS; `/silent` never answers); `/once` answers and
    then closes the connection, as a receiver whose keep-alive ran out; `/drop-second` closes the
    connection on its second request unanswered, as one whose keep-alive ran out as that request
    went out. Counts connections and keeps each request's headers."""

    def __init__(self) -> None:
        self.connections = 0
        self.requests: list[dict[str, str]] = []

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        served = 0
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                served += 1
                line, *fields = head.decode().split("\r\n")[:-2]
                headers = dict(field.split(": ", 1) for field in fields)
                await reader.readexactly(int(headers["content-length"]))
                self.requests.append({"request-line": line, **headers})
                path = line.split(" ")[1]
                if path == "/drop-second" and served == 2:
                    break
                if path == "/silent":
                    await asyncio.sleep(60)
                writer.write(ANSWERS.get(path, ANSWERS["/kept"]))
                await writer.drain()
                if path in ("/until-closed", "/once", "/not-http"):
                    break
        except asyncio.IncompleteReadError:
            pass
        finally:
            writer.close()


def run(loop: str, scenario: Callable[[Receiver, str], Awaitable[None]]) -> Receiver:
    async def main() -> Receiver:
        receiver = Receiver()
        server = await asyncio.start_server(receiver.serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            await scenario(receiver, f"http://127.0.0.1:{port}")
        return receiver

    with asyncio.Runner(loop_factory=LOOPS[loop]) as runner:
        return runner.run(main())


def origin(url: str, reach: Reach = LOOPBACK) -> Origin:
    return Origin(url, GuardedResolver(reach), connect_timeout=2.0)


@pytest.mark.parametrize("loop", LOOPS)
def test_posts_to_a_receiver_that_keeps_its_connection_share_one(loop: str) -> None:
    async def scenario(receiver: Receiver, base: str) -> None:
        sending = origin(f"{base}/kept?to=me")
        statuses = [await sending.post(b"{}", {"webhook-id": f"evt_{n}"}, 5) for n in range(5)]
        await sending.close()
        assert statuses == [204] * 5

    receiver = run(loop, scenario)
    assert receiver.connections == 1
    assert [request["webhook-id"] for request in receiver.requests] == [f"evt_{n}" for n in range(5)]
    assert receiver.requests[0]["request-line"] == "POST /kept?to=me HTTP/1.1"
    assert receiver.requests[0]["content-type"] == "application/json"
    assert receiver.requests[0]["host"].startswith("127.0.0.1:")


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize(
    ("path", "status"), [("/chunked", 200), ("/until-closed", 202), ("/interim", 201), ("/moved", 302)]
)
def test_the_final_answers_status_is_read_whatever_frames_its_body(loop: str, path: str, status: int) -> None:
    async def scenario(_: Receiver, base: str) -> None:
        sending = origin(f"{base}{path}")
        assert [await sending.post(b"{}", {}, 5) for _ in range(2)] == [status, status]
        await sending.close()

    run(loop, scenario)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_connection_the_receiver_closed_after_its_answer_is_not_reused(loop: str) -> None:
    async def scenario(_: Receiver, base: str) -> None:
        sending = origin(f"{base}/once")
        for _ in range(3):
            assert await sending.post(b"{}", {}, 5) == 204
            await asyncio.sleep(0.05)  # the close arrives while the connection is idle
        await sending.close()

    assert run(loop, scenario).connections == 3


@pytest.mark.parametrize("loop", LOOPS)
def test_a_request_on_a_kept_connection_closed_before_any_answer_goes_again_on_a_new_one(loop: str) -> None:
    async def scenario(_: Receiver, base: str) -> None:
        sending = origin(f"{base}/drop-second")
        assert [await sending.post(b"{}", {"webhook-id": f"evt_{n}"}, 5) for n in range(2)] == [204, 204]
        await sending.close()

    receiver = run(loop, scenario)
    assert receiver.connections == 2
    assert [request["webhook-id"] for request in receiver.requests] == ["evt_0", "evt_1", "evt_1"]


@pytest.mark.parametrize("loop", LOOPS)
def test_an_answer_that_is_not_http_or_none_in_time_fails_and_the_next_post_connects_anew(loop: str) -> None:
    async def scenario(receiver: Receiver, base: str) -> None:
        with pytest.raises(OSError, match="not HTTP"):
            await origin(f"{base}/not-http").post(b"{}", {}, 5)
        silent = origin(f"{base}/silent")
        with pytest.raises(TimeoutError):
            await silent.post(b"{}", {}, 0.2)
        silent = origin(f"{base}/kept")
        assert await silent.post(b"{}", {}, 5) == 204
        await silent.close()

    assert run(loop, scenario).connections == 3


@pytest.mark.parametrize("loop", LOOPS)
def test_each_post_in_flight_fails_at_its_own_deadline(loop: str) -> None:
    async def scenario(receiver: Receiver, base: str) -> None:
        silent = origin(f"{base}/silent")
        patient = asyncio.ensure_future(silent.post(b"{}", {"webhook-id": "evt_0"}, 30))
        await asyncio.sleep(0.05)
        # Later, with an earlier deadline: it fails at its own, the first still waits for its answer.
        with pytest.raises(TimeoutError):
            await silent.post(b"{}", {"webhook-id": "evt_1"}, 0.2)
        assert not patient.done()
        with pytest.raises(TimeoutError):  # and so does the next one, after the first deadline passed
            await silent.post(b"{}", {"webhook-id": "evt_2"}, 0.2)
        assert not patient.done()
        patient.cancel()
        with pytest.raises(asyncio.CancelledError):
            await patient
        kept = origin(f"{base}/kept")
        assert await kept.post(b"{}", {}, 1.0) == 204  # answered: nothing fails it later
        await asyncio.sleep(1.1)  # past the deadline it was answered within
        assert await kept.post(b"{}", {}, 5) == 204  # on the same connection, which stayed open
        await kept.close()

    assert run(loop, scenario).connections == 4


@pytest.mark.parametrize("loop", LOOPS)
def test_no_connection_within_the_connect_timeout_fails_as_that_not_as_the_request_timeout(loop: str) -> None:
    async def scenario(receiver: Receiver, base: str) -> None:
        with unconnectable() as url:
            started = asyncio.get_running_loop().time()
            with pytest.raises(ConnectTimeout, match="no connection within 0.3 s"):
                await Origin(url, GuardedResolver(LOOPBACK), connect_timeout=0.3).post(b"{}", {}, 5)
            assert asyncio.get_running_loop().time() - started < 2
            # A request timeout that ends first is the request's, whatever the connection was at.
            with pytest.raises(TimeoutError) as ended:
                await Origin(url, GuardedResolver(LOOPBACK), connect_timeout=5).post(b"{}", {}, 0.3)
            assert not isinstance(ended.value, ConnectTimeout)
        # An answer that does not come is no connect timeout either.
        with pytest.raises(TimeoutError) as ended:
            await origin(f"{base}/silent").post(b"{}", {}, 0.2)
        assert not isinstance(ended.value, ConnectTimeout)

    run(loop, scenario)


@pytest.mark.parametrize("loop", LOOPS)
def test_an_address_the_reach_does_not_allow_is_never_connected_to(loop: str) -> None:
    async def scenario(receiver: Receiver, base: str) -> None:
        with pytest.raises(OSError, match="no address this service may send to"):
            await origin(f"{base}/kept", Reach()).post(b"{}", {}, 5)

    assert run(loop, scenario).connections == 0
