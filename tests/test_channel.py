"""
Tests for L{tsyncp_tx.channel} over real loopback TCP (and a UNIX socket),
including the receiving API shared by every receiver, C{retry=} and
C{close()}.

The module-level helpers at the top are shared with the other primitive
test modules (C{test_multi_channel}, C{test_mpsc}, C{test_broadcast},
C{test_spsc}, C{test_barrier}, C{test_children}).
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
from typing import Any, Callable, Coroutine, List, Optional, Tuple

from twisted.internet import reactor as global_reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import CancelledError, Deferred, gatherResults
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    TCP4ServerEndpoint,
    connectProtocol,
)
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IStreamServerEndpoint
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import ILogObserver, LogEvent, formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer

from tsyncp_tx import channel
from tsyncp_tx.codecs import CborCodec, ICodec, JsonCodec
from tsyncp_tx.errors import ChannelClosed, ConnectError, ConnectionClosed

from ._util import LOOPBACK, as_deferred, eventually, sleep

# Shared helpers


def free_port() -> int:
    """
    A TCP port on 127.0.0.1 that nothing listens on right now (bound and
    released at once, so a connection to it is refused).

    @return: The port number.
    """
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # type: ignore[no-any-return]
    finally:
        s.close()


def short_temp_dir(test: TestCase) -> str:
    """
    A temporary directory with a short path (UNIX socket paths are limited
    to about 100 bytes, which trial's own temp directory may exceed),
    removed after the test.

    @param test: The test that owns it.
    @return: Its path.
    """
    path = tempfile.mkdtemp(prefix="tx", dir="/tmp")
    test.addCleanup(shutil.rmtree, path, True)
    return path


def capture_logs(test: SynchronousTestCase) -> List[str]:
    """
    Collect the text of every log event emitted during C{test}.

    @param test: The test; the observer is removed when it ends.
    @return: The list the formatted events are appended to.
    """
    texts: List[str] = []

    @implementer(ILogObserver)
    def observe(event: LogEvent) -> None:
        texts.append(formatEvent(event) or "")

    globalLogPublisher.addObserver(observe)
    test.addCleanup(globalLogPublisher.removeObserver, observe)
    return texts


def logged(texts: List[str], *fragments: str) -> bool:
    """
    Whether one logged text contains every fragment.

    @param texts: From L{capture_logs}.
    @param fragments: Substrings expected together in one event.
    @return: C{True} if some event contains them all.
    """
    return any(all(f in text for f in fragments) for text in texts)


@implementer(ICodec)
class CountingCodec:
    """
    A JSON codec that counts its C{encode} and C{decode} calls.

    @ivar encoded: The number of C{encode} calls.
    @ivar decoded: The number of C{decode} calls.
    """

    name = "counting-json"

    def __init__(self) -> None:
        self._inner = JsonCodec()
        self.encoded = 0
        self.decoded = 0

    def encode(self, obj: Any) -> bytes:
        """
        Encode as JSON, counting.

        @param obj: The item.
        @return: Its JSON bytes.
        """
        self.encoded += 1
        return self._inner.encode(obj)

    def decode(self, payload: bytes) -> Any:
        """
        Decode JSON, counting.

        @param payload: JSON bytes.
        @return: The item.
        """
        self.decoded += 1
        return self._inner.decode(payload)


@implementer(IStreamServerEndpoint)
class RecordingServerEndpoint:
    """
    A loopback TCP server endpoint on a free port that reports its port as
    soon as it listens, so a test can connect to a constructor that waits
    for its peers before firing.

    @ivar listening: Fires with the port number once listening.
    """

    def __init__(self, reactor: Any = None) -> None:
        self._reactor = reactor if reactor is not None else global_reactor
        self.listening: Deferred[int] = Deferred()
        self.port: Optional[IListeningPort] = None

    def listen(self, factory: IProtocolFactory) -> Deferred[IListeningPort]:
        """
        Listen on 127.0.0.1, port 0.

        @param factory: The protocol factory.
        @return: A Deferred firing with the listening port.
        """

        def got(port: IListeningPort) -> IListeningPort:
            self.port = port
            self.listening.callback(port.getHost().port)  # type: ignore[attr-defined]
            return port

        inner = TCP4ServerEndpoint(self._reactor, 0, interface="127.0.0.1")
        return inner.listen(factory).addCallback(got)


class RawClient(Protocol):
    """
    A plain TCP client recording every byte it receives.

    @ivar data: The bytes received so far.
    @ivar lost: Fires with C{None} once the connection ends.
    @ivar reason: Why it ended (a C{Failure}), once it has.
    """

    def __init__(self) -> None:
        self.data = b""
        self.lost: Deferred[None] = Deferred()
        self.reason: Optional[Failure] = None

    def dataReceived(self, data: bytes) -> None:
        """
        Record C{data}.

        @param data: Received bytes.
        """
        self.data += data

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:
        """
        Record the reason and fire L{lost}.

        @param reason: Why it ended.
        """
        self.reason = reason
        self.lost.callback(None)


async def connect_raw(test: TestCase, port: int) -> RawClient:
    """
    Connect a L{RawClient} to 127.0.0.1:C{port}, closed after the test.

    @param test: The owning test.
    @param port: The port.
    @return: The connected client.
    """
    client = RawClient()
    await connectProtocol(TCP4ClientEndpoint(global_reactor, "127.0.0.1", port), client)

    async def close() -> None:
        if not client.lost.called:
            client.transport.loseConnection()  # type: ignore[union-attr]
            await client.lost

    test.addCleanup(lambda: Deferred.fromCoroutine(close()))
    return client


class FakeTCPTransport(StringTransport):
    """
    A C{StringTransport} that also takes TCP socket options, as the
    library's protocol sets C{TCP_NODELAY} on TCP connections.

    @ivar nodelay: The last C{setTcpNoDelay} value.
    """

    nodelay = False

    def setTcpNoDelay(self, enabled: bool) -> None:
        """
        Record the option.

        @param enabled: Its value.
        """
        self.nodelay = enabled


def fake_peer(
    reactor: MemoryReactorClock, client_port: int, server: int = 0
) -> Tuple[Any, FakeTCPTransport]:
    """
    Connect a fake peer, 127.0.0.1:C{client_port}, to a channel object
    listening on C{reactor} (a C{MemoryReactorClock}).

    @param reactor: The reactor the channel object listens with.
    @param client_port: The fake peer's port (its address is
        C{("127.0.0.1", client_port)}).
    @param server: Which of the reactor's TCP listeners.
    @return: The channel's protocol for this connection, and the
        transport holding what the channel wrote to the peer.
    """
    port, factory, _, interface = reactor.tcpServers[server]
    peer = IPv4Address("TCP", "127.0.0.1", client_port)
    protocol: Any = factory.buildProtocol(peer)
    transport = FakeTCPTransport(
        hostAddress=IPv4Address("TCP", interface or "127.0.0.1", port), peerAddress=peer
    )
    protocol.makeConnection(transport)
    return protocol, transport


def port_of(obj: Any) -> int:
    """
    The TCP port of a listening channel object.

    @param obj: The channel object.
    @return: Its port.
    """
    address = obj.local_address
    assert isinstance(address, tuple), address
    return address[1]  # type: ignore[no-any-return]


def run(coroutine: Coroutine[Any, Any, Any]) -> Deferred[Any]:
    """
    Start a coroutine now, as a Deferred.

    @param coroutine: The coroutine.
    @return: Its Deferred.
    """
    return Deferred.fromCoroutine(coroutine)


async def connected_pair(test: TestCase, **options: Any) -> Tuple[channel.Channel, channel.Channel]:
    """
    A listening channel and a channel connected to it, both closed after
    the test.

    @param test: The owning test.
    @param options: Passed to both constructors.
    @return: C{(listening side, connecting side)}.
    """
    server = await channel.channel_on(LOOPBACK, accept=0, **options)
    test.addCleanup(server.close)
    accepted = server.accept()
    client = await channel.channel_to(server.local_address, **options)
    test.addCleanup(client.close)
    await accepted
    return server, client


# Tests


class ConstructorTests(TestCase):
    """
    C{channel_on} and C{channel_to}: readiness, addresses, codec, reactor.
    """

    timeout = 30

    @as_deferred
    async def test_channel_on_waits_for_peer(self) -> None:
        """
        By default C{channel_on} fires only once its peer has connected.
        """
        endpoint = RecordingServerEndpoint()
        d = channel.channel_on(endpoint)
        port = await endpoint.listening
        await sleep(0.05)
        self.assertFalse(d.called)
        client = await channel.channel_to(("127.0.0.1", port))
        self.addCleanup(client.close)
        server = await d
        self.addCleanup(server.close)
        self.assertIsInstance(server, channel.Channel)
        self.assertTrue(server.connected)
        await client.send("hi")
        self.assertEqual(await server.recv(), "hi")

    @as_deferred
    async def test_accept_zero_then_accept(self) -> None:
        """
        With C{accept=0} the channel fires as soon as it listens, with a
        real C{(host, port)} C{local_address}; C{accept()} then waits for
        the peer and fires with 1.
        """
        server = await channel.channel_on(LOOPBACK, accept=0)
        self.addCleanup(server.close)
        host, port = server.local_address
        self.assertEqual(host, "127.0.0.1")
        self.assertGreater(port, 0)
        self.assertFalse(server.connected)
        self.assertIsNone(server.peer_address)
        accepted = server.accept()
        await sleep(0.05)
        self.assertFalse(accepted.called)
        client = await channel.channel_to(f"127.0.0.1:{port}")
        self.addCleanup(client.close)
        self.assertEqual(await accepted, 1)
        await client.send({"n": 1})
        await server.send({"n": 2})
        self.assertEqual(await server.recv(), {"n": 1})
        self.assertEqual(await client.recv(), {"n": 2})

    @as_deferred
    async def test_accept_after_peer_connected(self) -> None:
        """
        A peer that connected before C{accept()} was called counts: the
        Deferred fires at once.
        """
        server = await channel.channel_on(LOOPBACK, accept=0)
        self.addCleanup(server.close)
        client = await channel.channel_to(server.local_address)
        self.addCleanup(client.close)
        await eventually(lambda: server.connected)
        accepted = server.accept()
        self.assertTrue(accepted.called)
        self.assertEqual(await accepted, 1)
        await server.send("after")
        self.assertEqual(await client.recv(), "after")

    @as_deferred
    async def test_codec_and_explicit_reactor(self) -> None:
        """
        C{codec=} is used on both sides and C{reactor=} accepts the reactor
        given explicitly.
        """
        server, client = await connected_pair(self, codec=CborCodec(), reactor=global_reactor)
        await client.send({"b": b"\x00\xff", "n": [1, 2.5]})
        self.assertEqual(await server.recv(), {"b": b"\x00\xff", "n": [1, 2.5]})
        await client.send({"k": 1})
        import cbor2

        self.assertEqual(await server.recv(raw=True), cbor2.dumps({"k": 1}))

    @as_deferred
    async def test_addresses(self) -> None:
        """
        C{local_address} and C{peer_address} are C{(host, port)} tuples that
        match across the connection.
        """
        server, client = await connected_pair(self)
        self.assertEqual(client.peer_address, server.local_address)
        self.assertEqual(server.peer_address, client.local_address)
        self.assertEqual(client.local_address[0], "127.0.0.1")
        self.assertIsInstance(client.local_address[1], int)
        self.assertNotEqual(client.local_address[1], server.local_address[1])
        self.assertTrue(client.connected)
        self.assertIn(str(server.local_address[1]), repr(server))

    @as_deferred
    async def test_unknown_option_refused(self) -> None:
        """
        A misspelt option is a C{TypeError} naming it, raised at once.
        """
        error = self.assertRaises(TypeError, channel.channel_on, LOOPBACK, acept=0)
        self.assertIn("acept", str(error))
        error = self.assertRaises(TypeError, channel.channel_to, 1, nodelai=True)
        self.assertIn("nodelai", str(error))

    def test_option_that_cannot_apply_refused(self) -> None:
        """
        An option that means nothing where it is given is refused at once,
        not ignored: receiving knobs on a channel that only sends,
        C{reconnect_policy} without C{reconnect=True}, C{accept} above 1
        on a single-peer listener (which can never have two peers).
        """
        from tsyncp_tx import broadcast, mpsc, spsc

        for make in (spsc.sender_on, broadcast.sender_on):
            for option in ("recv_high_water", "recv_high_water_bytes", "on_decode_error"):
                error = self.assertRaises(TypeError, make, LOOPBACK, **{option: 1})
                self.assertIn(option, str(error))
                self.assertIn("only sends", str(error))
        error = self.assertRaises(TypeError, mpsc.sender_to, 1, on_decode_error=print)
        self.assertIn("on_decode_error", str(error))
        error = self.assertRaises(ValueError, channel.channel_to, 1, reconnect_policy=lambda n: 1.0)
        self.assertIn("reconnect=True", str(error))
        for make in (channel.channel_on, spsc.receiver_on, spsc.sender_on):
            error = self.assertRaises(ValueError, make, LOOPBACK, accept=2)
            self.assertIn("accept must be 0 or 1", str(error))
        self.assertRaises(ValueError, mpsc.receiver_on, LOOPBACK, accept=True)


class AddressFormTests(TestCase):
    """
    Every address form, on both sides.
    """

    timeout = 30

    async def exchange(self, listen_at: Any, connect_to: Callable[[Any], Any]) -> Tuple[Any, Any]:
        """
        Listen at C{listen_at}, connect to C{connect_to(local_address)},
        exchange one item each way.
        """
        server = await channel.channel_on(listen_at, accept=0)
        self.addCleanup(server.close)
        accepted = server.accept()
        client = await channel.channel_to(connect_to(server.local_address))
        self.addCleanup(client.close)
        await accepted
        await client.send(["up", listen_at if isinstance(listen_at, (str, int)) else "ep"])
        await server.send("down")
        self.assertEqual((await server.recv())[0], "up")
        self.assertEqual(await client.recv(), "down")
        return server, client

    @as_deferred
    async def test_host_port_string(self) -> None:
        """
        C{"host:port"} on both sides.
        """
        server, _ = await self.exchange("127.0.0.1:0", lambda a: f"{a[0]}:{a[1]}")
        self.assertEqual(server.local_address[0], "127.0.0.1")

    @as_deferred
    async def test_tuple(self) -> None:
        """
        C{(host, port)} on both sides.
        """
        await self.exchange(("127.0.0.1", 0), lambda a: (a[0], a[1]))

    @as_deferred
    async def test_int_port(self) -> None:
        """
        A bare port listens on 127.0.0.1 (and connects there).
        """
        server, _ = await self.exchange(0, lambda a: a[1])
        self.assertEqual(server.local_address[0], "127.0.0.1")

    @as_deferred
    async def test_descriptions(self) -> None:
        """
        Twisted endpoint descriptions on both sides.
        """
        await self.exchange(LOOPBACK, lambda a: f"tcp:host=127.0.0.1:port={a[1]}")

    @as_deferred
    async def test_endpoint_objects(self) -> None:
        """
        Endpoint objects on both sides.
        """
        await self.exchange(
            TCP4ServerEndpoint(global_reactor, 0, interface="127.0.0.1"),
            lambda a: TCP4ClientEndpoint(global_reactor, "127.0.0.1", a[1]),
        )

    @as_deferred
    async def test_unix_socket(self) -> None:
        """
        C{"unix:/path"} on both sides; C{local_address} is the path.
        """
        path = os.path.join(short_temp_dir(self), "ch.sock")
        server, client = await self.exchange(f"unix:{path}", lambda a: f"unix:{a}")
        self.assertEqual(server.local_address, path)
        self.assertEqual(client.peer_address, path)

    def test_bad_address(self) -> None:
        """
        An address that is none of the forms raises C{ValueError} at once.
        """
        self.assertRaises(ValueError, channel.channel_on, "no-port-here")
        self.assertRaises(ValueError, channel.channel_to, 3.5)


class SendRecvTests(TestCase):
    """
    C{send}, C{recv} and its flags, C{split()}.
    """

    timeout = 30

    @as_deferred
    async def test_recv_flags(self) -> None:
        """
        C{recv()} decodes, C{recv(raw=True)} gives the payload bytes,
        C{recv(with_addr=True)} gives C{(item, peer address)}.
        """
        server, client = await connected_pair(self)
        for item in ({"a": 1, "b": "é"}, [1, 2], "s", None):
            await client.send(item)
        self.assertEqual(await server.recv(), {"a": 1, "b": "é"})
        self.assertEqual(await server.recv(raw=True), b"[1,2]")
        self.assertEqual(await server.recv(with_addr=True), ("s", client.local_address))
        self.assertEqual(
            await server.recv(with_addr=True, raw=True), (b"null", client.local_address)
        )
        await server.send({"back": True})
        self.assertEqual(await client.recv(with_addr=True), ({"back": True}, server.local_address))

    @as_deferred
    async def test_order_both_directions(self) -> None:
        """
        Many items both ways arrive complete and in order.
        """
        server, client = await connected_pair(self)
        n = 500
        for i in range(n):
            client.send(i)
            server.send(-i)
        got_server = [await server.recv() for _ in range(n)]
        got_client = [await client.recv() for _ in range(n)]
        self.assertEqual(got_server, list(range(n)))
        self.assertEqual(got_client, [-i for i in range(n)])

    @as_deferred
    async def test_split_concurrent(self) -> None:
        """
        C{split()} halves used by concurrent coroutines: on each side one
        coroutine sends while another receives, with a ponger answering
        every ping and a ticker sending on the same connection meanwhile.
        """
        server, client = await connected_pair(self)
        a_send, a_recv = client.split()
        b_send, b_recv = server.split()
        self.assertIsInstance(a_send, channel.Sender)
        self.assertIsInstance(a_recv, channel.Receiver)
        self.assertFalse(hasattr(a_send, "recv"))
        self.assertFalse(hasattr(a_recv, "send"))
        n = 200

        async def pinger() -> None:
            for i in range(n):
                await a_send.send({"ping": i})
                if i % 50 == 0:
                    await sleep(0)

        async def ponger() -> None:
            for _ in range(n):
                item = await b_recv.recv()
                await b_send.send({"pong": item["ping"]})

        async def ticker() -> None:
            for i in range(n):
                await b_send.send({"tick": i})
                if i % 40 == 0:
                    await sleep(0)

        async def collector() -> List[Any]:
            return [await a_recv.recv() for _ in range(2 * n)]

        results = await gatherResults(
            [run(collector()), run(pinger()), run(ponger()), run(ticker())]
        )
        received = results[0]
        self.assertEqual([x["pong"] for x in received if "pong" in x], list(range(n)))
        self.assertEqual([x["tick"] for x in received if "tick" in x], list(range(n)))
        self.assertEqual(a_recv.peer_address, server.local_address)
        self.assertEqual(b_send.peer_address, client.local_address)

    @as_deferred
    async def test_close_split_half_closes_both(self) -> None:
        """
        Closing either half closes the shared connection.
        """
        server, client = await connected_pair(self)
        sender, receiver = client.split()
        pending = receiver.recv()
        await sender.close()
        self.assertTrue(receiver.closed)
        self.assertTrue(client.closed)
        await self.assertFailure(pending, ChannelClosed)
        await self.assertFailure(server.recv(), ConnectionClosed)


class ReceivingTests(TestCase):
    """
    The receiving API (issue 3, point 7), on a channel.
    """

    timeout = 30

    @as_deferred
    async def test_recv_served_in_call_order(self) -> None:
        """
        Pending C{recv()} Deferreds fire in the order they were made, each
        in its own mode.
        """
        server, client = await connected_pair(self)
        first = server.recv()
        second = server.recv(raw=True)
        third = server.recv(with_addr=True)
        order: List[int] = []
        first.addCallback(lambda x: order.append(1) or x)
        second.addCallback(lambda x: order.append(2) or x)
        third.addCallback(lambda x: order.append(3) or x)
        for item in ("a", "b", "c"):
            await client.send(item)
        self.assertEqual(await first, "a")
        self.assertEqual(await second, b'"b"')
        self.assertEqual(await third, ("c", client.local_address))
        self.assertEqual(order, [1, 2, 3])

    @as_deferred
    async def test_cancel_pending_recv_loses_nothing(self) -> None:
        """
        Cancelling a pending C{recv()} (the first or a middle one) fails it
        with C{CancelledError}; the items go to the next C{recv()} calls.
        """
        server, client = await connected_pair(self)
        cancelled = server.recv()
        cancelled.cancel()
        await self.assertFailure(cancelled, CancelledError)
        a = server.recv()
        middle = server.recv()
        c = server.recv()
        middle.cancel()
        await self.assertFailure(middle, CancelledError)
        for item in ("x", "y", "z"):
            await client.send(item)
        self.assertEqual(await a, "x")
        self.assertEqual(await c, "y")
        self.assertEqual(await server.recv(), "z")

    @as_deferred
    async def test_recv_timeout_loses_nothing(self) -> None:
        """
        A C{recv(timeout=)} that expires fails with the library's
        C{TimeoutError}; the item sent afterwards is still received.
        """
        from tsyncp_tx.errors import TimeoutError as TsyncpTimeout

        server, client = await connected_pair(self)
        await self.assertFailure(server.recv(timeout=0.05), TsyncpTimeout)
        await client.send(7)
        self.assertEqual(await server.recv(), 7)

    @as_deferred
    async def test_async_for_until_peer_closes(self) -> None:
        """
        C{async for} yields every item, then ends when the peer closes.
        """
        server, client = await connected_pair(self)
        for i in range(20):
            client.send(i)
        await client.close()
        got = [item async for item in server]
        self.assertEqual(got, list(range(20)))

    @as_deferred
    async def test_async_for_until_closed_locally(self) -> None:
        """
        C{async for} waiting for more items ends when the channel is
        closed.
        """
        server, client = await connected_pair(self)
        got: List[Any] = []

        async def consume() -> None:
            async for item in client:
                got.append(item)

        done = run(consume())
        await server.send(1)
        await server.send(2)
        await eventually(lambda: len(got) == 2)
        self.assertFalse(done.called)
        await client.close()
        await done
        self.assertEqual(got, [1, 2])

    @as_deferred
    async def test_clean_close_fails_recv_with_peer_address(self) -> None:
        """
        When the peer closes cleanly, items that arrived first are still
        received; then pending and later C{recv()} calls fail with
        C{ConnectionClosed} carrying the peer's address and no reason.
        """
        server, client = await connected_pair(self)
        peer = client.local_address
        await client.send("last words")
        pending = [server.recv(), server.recv(), server.recv()]
        await client.close()
        self.assertEqual(await pending[0], "last words")
        for d in pending[1:]:
            error = await self.assertFailure(d, ConnectionClosed)
            self.assertEqual(error.address, peer)
            self.assertIsNone(error.reason)
        later = await self.assertFailure(server.recv(), ConnectionClosed)
        self.assertEqual(later.address, peer)
        self.assertIn(str(peer[1]), str(later))
        self.assertFalse(server.connected)
        self.assertEqual(server.peer_address, peer)

    @as_deferred
    async def test_connecting_side_sees_listener_close(self) -> None:
        """
        The connecting side's C{recv()} fails with C{ConnectionClosed}
        carrying the listening address when the listener closes.
        """
        server, client = await connected_pair(self)
        listening = server.local_address
        pending = client.recv()
        await server.close()
        error = await self.assertFailure(pending, ConnectionClosed)
        self.assertEqual(error.address, listening)

    @as_deferred
    async def test_aborted_connection_gives_reason(self) -> None:
        """
        An aborted connection fails C{recv()} with C{ConnectionClosed}
        whose C{reason} says why.
        """
        server, client = await connected_pair(self)
        pending = server.recv()
        # Abort the connecting side's TCP connection (RST, no clean close).
        client._core.peer.transport.abortConnection()  # type: ignore[union-attr]
        error = await self.assertFailure(pending, ConnectionClosed)
        self.assertEqual(error.address, client.local_address or error.address)
        self.assertIsNotNone(error.reason)
        self.assertIn("lost", str(error))

    @as_deferred
    async def test_recv_after_close(self) -> None:
        """
        After C{close()}, pending and later C{recv()} calls fail with
        C{ChannelClosed}; closing twice is harmless.
        """
        server, client = await connected_pair(self)
        pending = client.recv()
        await client.close()
        await client.close()
        await self.assertFailure(pending, ChannelClosed)
        await self.assertFailure(client.recv(), ChannelClosed)
        self.assertTrue(client.closed)

    @as_deferred
    async def test_send_after_close_fails(self) -> None:
        """
        A C{send()} made after C{close()} was called fails with
        C{ChannelClosed} instead of being silently dropped, even while the
        connection is still shutting down.
        """
        server, client = await connected_pair(self)
        closing = client.close()
        sent = client.send("too late")
        await closing
        await self.assertFailure(sent, ChannelClosed, ConnectionClosed)
        await self.assertFailure(client.send("later still"), ChannelClosed)


class CloseTests(TestCase):
    """
    C{close()} flushes before it fires.
    """

    timeout = 30

    @as_deferred
    async def test_close_flushes(self) -> None:
        """
        Items sent just before C{close()} all arrive: more than the socket
        buffers hold, so some wait in the send queue when C{close()} is
        called.
        """
        server, client = await connected_pair(self)
        blob = "x" * 20_000
        n = 300  # 6 MB: beyond what the kernel buffers on loopback
        sends = [client.send({"i": i, "blob": blob}) for i in range(n)]
        self.assertFalse(all(d.called for d in sends), "the transport never pushed back")
        await client.close()
        await gatherResults(sends)
        got = []
        for _ in range(n):
            item = await server.recv()
            got.append(item["i"])
            self.assertEqual(len(item["blob"]), len(blob))
        self.assertEqual(got, list(range(n)))
        await self.assertFailure(server.recv(), ConnectionClosed)

    @as_deferred
    async def test_listening_close_flushes(self) -> None:
        """
        The listening side's C{close()} flushes too.
        """
        server, client = await connected_pair(self)
        for i in range(100):
            server.send(i)
        await server.close()
        self.assertEqual([await client.recv() for _ in range(100)], list(range(100)))
        await self.assertFailure(client.recv(), ConnectionClosed)

    @as_deferred
    async def test_close_stops_listening(self) -> None:
        """
        Closing a listening channel that is still waiting for its peer
        fails C{accept()} with C{ChannelClosed} and frees the port.
        """
        server = await channel.channel_on(LOOPBACK, accept=0)
        port = port_of(server)
        waiting = server.accept()
        await server.close()
        await self.assertFailure(waiting, ChannelClosed)
        await self.assertFailure(channel.channel_to(port), ConnectError)

    @as_deferred
    async def test_local_address_and_repr_after_close(self) -> None:
        """
        C{local_address} and C{repr()} still work on a closed listening
        channel (they are used in logs and error messages): the address it
        listened on, or C{None}.
        """
        server = await channel.channel_on(LOOPBACK, accept=0)
        address = server.local_address
        await server.close()
        self.assertIn(server.local_address, (address, None))
        self.assertIn("Channel", repr(server))

    @as_deferred
    async def test_local_address_after_peer_left(self) -> None:
        """
        A single-peer listener stops listening once its peer has left;
        C{local_address} and C{repr()} must still work then.
        """
        server, client = await connected_pair(self)
        address = server.local_address
        await client.close()
        await self.assertFailure(server.recv(), ConnectionClosed)
        self.assertIn(server.local_address, (address, None))
        self.assertIn("Channel", repr(server))

    @as_deferred
    async def test_cancel_waiting_channel_on(self) -> None:
        """
        Cancelling C{channel_on} while it waits for its peer stops
        listening.
        """
        endpoint = RecordingServerEndpoint()
        d = channel.channel_on(endpoint)
        port = await endpoint.listening
        d.cancel()
        await self.assertFailure(d, CancelledError)
        await eventually(lambda: endpoint.port is not None and not endpoint.port.connected)  # type: ignore[attr-defined]
        await self.assertFailure(channel.channel_to(port), ConnectError)


class RetryTests(TestCase):
    """
    C{retry=} on C{channel_to} (issue 3, point 8).
    """

    timeout = 30

    @as_deferred
    async def test_refused_without_retry(self) -> None:
        """
        Without C{retry=}, a refused connection fails at once with a
        C{ConnectError} naming the address.
        """
        port = free_port()
        start = time.monotonic()
        error = await self.assertFailure(channel.channel_to(f"127.0.0.1:{port}"), ConnectError)
        self.assertLess(time.monotonic() - start, 2.0)
        self.assertIn(f"127.0.0.1:{port}", str(error))
        self.assertEqual(error.attempts, 1)
        self.assertEqual(error.address, f"127.0.0.1:{port}")

    @as_deferred
    async def test_refused_attempts_are_fast(self) -> None:
        """
        A refused attempt to an IP address fails as soon as the refusal
        arrives, so C{retry=(0.01, 4)} (five attempts) gives up in well
        under a second (a connector that waits 0.3 s per attempt, as
        C{HostnameEndpoint} does, takes 1.5 s); retry intervals are not
        stretched by the connector's own delays.
        """
        port = free_port()
        start = time.monotonic()
        error = await self.assertFailure(
            channel.channel_to(("127.0.0.1", port), retry=(0.01, 4)), ConnectError
        )
        elapsed = time.monotonic() - start
        self.assertEqual(error.attempts, 5)
        self.assertLess(elapsed, 1.0)

    @as_deferred
    async def test_retry_until_listener_appears(self) -> None:
        """
        C{retry=(0.05, 3)} connects to a listener started about 0.1 s
        after the first attempt.
        """
        port = free_port()
        servers: List[channel.Channel] = []

        def start_listening() -> None:
            d = channel.channel_on(("127.0.0.1", port), accept=0)
            d.addCallback(servers.append)

        start = time.monotonic()
        global_reactor.callLater(0.1, start_listening)  # type: ignore[attr-defined]
        client = await channel.channel_to(("127.0.0.1", port), retry=(0.05, 3))
        self.addCleanup(client.close)
        self.assertGreaterEqual(time.monotonic() - start, 0.09)
        await eventually(lambda: bool(servers))
        self.addCleanup(servers[0].close)
        await client.send("made it")
        self.assertEqual(await servers[0].recv(), "made it")

    @as_deferred
    async def test_retry_exhausted(self) -> None:
        """
        C{retry=(interval, n)} makes C{n + 1} attempts, then fails with
        C{ConnectError} counting them.
        """
        port = free_port()
        error = await self.assertFailure(channel.channel_to(port, retry=(0.01, 2)), ConnectError)
        self.assertEqual(error.attempts, 3)
        self.assertIn("3 attempts", str(error))

    @as_deferred
    async def test_retry_exhausted_reconnecting(self) -> None:
        """
        A C{reconnect=True} constructor whose first connection never comes
        fails the same way: C{ConnectError} counting the C{n + 1}
        attempts, and nothing left running.
        """
        port = free_port()
        for retries in (0, 2):
            error = await self.assertFailure(
                channel.channel_to(port, reconnect=True, retry=(0.01, retries)), ConnectError
            )
            self.assertEqual(error.attempts, retries + 1)
            self.assertIn(str(port), str(error))

    @as_deferred
    async def test_callable_policy(self) -> None:
        """
        A callable policy is consulted with C{(attempt, failure)} once after
        each failed attempt, with that attempt's own failure (here the
        refusal), and can give up; with C{reconnect=True} too, for the
        first connection.
        """
        from twisted.internet.error import ConnectionRefusedError

        port = free_port()
        for reconnect in (False, True):
            calls: List[Tuple[int, Failure]] = []

            def policy(attempt: int, failure: Failure) -> Optional[float]:
                calls.append((attempt, failure))
                return 0.01 if attempt < 3 else None

            error = await self.assertFailure(
                channel.channel_to(port, retry=policy, reconnect=reconnect), ConnectError
            )
            self.assertEqual([a for a, _ in calls], [1, 2, 3])
            for _, failure in calls:
                self.assertTrue(failure.check(ConnectionRefusedError), failure)
            self.assertEqual(error.attempts, 3)
            self.assertIn(str(port), str(error))
            self.assertIsInstance(error.reason, ConnectionRefusedError)

    @as_deferred
    async def test_endpoint_failing_at_once_reconnecting(self) -> None:
        """
        With C{reconnect=True}, an endpoint whose C{connect()} fails at
        once (a host name that cannot be one) is retried per C{retry=} and
        fails the constructor with C{ConnectError}.
        """
        error = await self.assertFailure(
            channel.channel_to("bad host name:8000", reconnect=True, retry=(0.01, 2)), ConnectError
        )
        self.assertEqual(error.attempts, 3)

    @as_deferred
    async def test_raising_policy_gives_up(self) -> None:
        """
        A retry policy that raises gives up: the constructor fails with
        C{ConnectError} carrying the policy's error, with and without
        C{reconnect=True}.
        """
        port = free_port()

        def policy(attempt: int, failure: Failure) -> Optional[float]:
            if attempt == 2:
                raise RuntimeError("policy bug")
            return 0.01

        for reconnect in (False, True):
            error = await self.assertFailure(
                channel.channel_to(port, retry=policy, reconnect=reconnect), ConnectError
            )
            self.assertEqual(error.attempts, 2)
            self.assertIsInstance(error.reason, RuntimeError)
            self.assertIn("policy bug", str(error))

    @as_deferred
    async def test_deadline_policy_reconnecting(self) -> None:
        """
        A policy that gives up after a deadline, given to a
        C{reconnect=True} constructor, fails it with C{ConnectError} once
        the deadline has passed; no attempt is made and the policy is not
        consulted after it gave up.
        """
        port = free_port()
        start = time.monotonic()
        calls: List[float] = []

        def policy(attempt: int, failure: Failure) -> Optional[float]:
            calls.append(time.monotonic())
            return None if time.monotonic() - start > 0.2 else 0.02

        await self.assertFailure(
            channel.channel_to(port, retry=policy, reconnect=True), ConnectError
        )
        self.assertGreaterEqual(calls[-1] - start, 0.2)
        self.assertLess(time.monotonic() - start, 5.0)
        seen = len(calls)
        await sleep(0.2)
        self.assertEqual(len(calls), seen)

    @as_deferred
    async def test_callable_policy_succeeds(self) -> None:
        """
        A callable policy that keeps retrying connects once the listener
        is there.
        """
        port = free_port()
        attempts: List[int] = []
        servers: List[channel.Channel] = []

        def policy(attempt: int, failure: Failure) -> Optional[float]:
            attempts.append(attempt)
            if attempt == 2:
                channel.channel_on(port, accept=0).addCallback(servers.append)
            return 0.02

        client = await channel.channel_to(port, retry=policy)
        self.addCleanup(client.close)
        await eventually(lambda: bool(servers))
        self.addCleanup(servers[0].close)
        self.assertEqual(attempts[:2], [1, 2])
        await client.send(1)
        self.assertEqual(await servers[0].recv(), 1)

    @as_deferred
    async def test_cancel_while_retrying(self) -> None:
        """
        Cancelling the constructor's Deferred while it retries stops the
        retries (the policy is not consulted again) and leaves the reactor
        clean.
        """
        port = free_port()
        calls: List[int] = []

        def policy(attempt: int, failure: Failure) -> Optional[float]:
            calls.append(attempt)
            return 0.03

        d = channel.channel_to(port, retry=policy)
        await eventually(lambda: len(calls) >= 2)
        d.cancel()
        await self.assertFailure(d, CancelledError)
        seen = len(calls)
        await sleep(0.15)
        self.assertEqual(len(calls), seen)

    def test_bad_retry(self) -> None:
        """
        A C{retry=} that is neither a pair nor a callable is a
        C{ValueError}.
        """
        self.assertRaises(ValueError, channel.channel_to, 1, retry="soon")
        self.assertRaises(ValueError, channel.channel_to, 1, retry=(-1, 2))


class ChannelLogicTests(SynchronousTestCase):
    """
    Channel logic driven by hand with C{MemoryReactorClock} and string
    transports: deterministic, no network.
    """

    def test_accept_and_partial_frames(self) -> None:
        """
        C{channel_on} fires when the peer connects; a frame split into
        single bytes is delivered once complete; a send is framed on the
        wire as C{header + JSON}.
        """
        reactor = MemoryReactorClock()
        d = channel.channel_on(8000, reactor=reactor)
        self.assertNoResult(d)
        protocol, transport = fake_peer(reactor, 5001)
        ch = self.successResultOf(d)
        self.assertEqual(ch.peer_address, ("127.0.0.1", 5001))
        self.assertTrue(transport.nodelay)
        received = ch.recv(with_addr=True)
        for byte in b'\x07{"a":1}':
            self.assertNoResult(received)
            protocol.dataReceived(bytes([byte]))
        self.assertEqual(self.successResultOf(received), ({"a": 1}, ("127.0.0.1", 5001)))
        self.successResultOf(ch.send([1, 2]))
        reactor.advance(0)  # small frames of one turn are written together
        self.assertEqual(transport.value(), b"\x05[1,2]")

    def _paused_peer(
        self, reactor: MemoryReactorClock, codec: Any = None
    ) -> Tuple[channel.Channel, Any]:
        # A channel whose only peer's transport pushes back, with a queue
        # that one 20-character item fills.
        ch = self.successResultOf(
            channel.channel_on(8000, accept=0, reactor=reactor, send_high_water=10, codec=codec)
        )
        protocol, _ = fake_peer(reactor, 5003)
        protocol.pauseProducing()
        return ch, protocol

    def test_close_from_a_sends_callback(self) -> None:
        """
        C{close()} called from the callback of a send that waited for room
        fails the sends still waiting after it with C{ChannelClosed}, once:
        none is started afterwards, nothing is left unhandled.
        """
        reactor = MemoryReactorClock()
        codec = CountingCodec()
        ch, protocol = self._paused_peer(reactor, codec)
        queued = ch.send("x" * 20)
        first, second, third = ch.send("a"), ch.send("b"), ch.send("c")
        self.assertNoResult(first)
        self.assertEqual(codec.encoded, 1)  # waiting sends are encoded when started
        closing: List[Deferred[None]] = []
        first.addCallback(lambda _: closing.append(ch.close()))
        protocol.resumeProducing()
        self.successResultOf(queued)
        self.successResultOf(first)
        self.assertEqual(len(closing), 1)
        self.failureResultOf(second, ChannelClosed)
        self.failureResultOf(third, ChannelClosed)
        self.assertEqual(codec.encoded, 2, "a send failed by close() was started")

    def test_send_after_close_with_full_queue(self) -> None:
        """
        A send after C{close()} fails at once with C{ChannelClosed}, even
        when the peer's queue is full (it does not wait for room that
        closing will never make).
        """
        reactor = MemoryReactorClock()
        ch, _ = self._paused_peer(reactor)
        ch.send("x" * 20)
        ch.close()
        self.failureResultOf(ch.send("late"), ChannelClosed)
        self.failureResultOf(ch.send_many(["late", "too"]), ChannelClosed)

    def test_queued_frames_hold_their_own_size(self) -> None:
        """
        Frames waiting for a paused transport take about their queued size
        in memory: a small payload is held as one object with its header,
        not as the codec's output (orjson's sits in a buffer of 4 KiB or
        more, 8 KiB for these 1 KB items).
        """
        import tracemalloc

        reactor = MemoryReactorClock()
        ch = self.successResultOf(
            channel.channel_on(
                8000, accept=0, reactor=reactor, codec=JsonCodec(use_orjson=True),
                send_high_water=1 << 30,
            )
        )
        protocol, _ = fake_peer(reactor, 5006)
        protocol.pauseProducing()
        item = {"p": "x" * 1000}
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            sends = [ch.send(item) for _ in range(500)]
            held = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        self.assertEqual(len(sends), 500)
        self.assertGreater(protocol.queued_bytes, 500 * 1000)
        self.assertLess(held, 3 * protocol.queued_bytes)

    def test_bad_timeouts_refused_before_anything_starts(self) -> None:
        """
        A C{timeout=} that is negative, infinite, NaN or not a number is
        refused at once, before the operation is registered: no hidden
        C{recv()} takes the next item, no send goes out, no C{accept()}
        claims the next peer.
        """
        reactor = MemoryReactorClock()
        ch = self.successResultOf(channel.channel_on(8000, accept=0, reactor=reactor))
        for bad, error in (
            (-1, ValueError), (float("nan"), ValueError), (float("inf"), ValueError),
            ("1", TypeError), (True, TypeError),
        ):
            self.assertRaises(error, ch.accept, 1, timeout=bad)
            self.assertRaises(error, ch.recv, timeout=bad)
            self.assertRaises(error, ch.recv_many, timeout=bad)
            self.assertRaises(error, ch.send, "x", timeout=bad)
            self.assertRaises(error, ch.close, timeout=bad)
        accepted = ch.accept(1)
        protocol, transport = fake_peer(reactor, 5007)
        self.assertEqual(self.successResultOf(accepted), 1)
        protocol.dataReceived(b'\x03"a"')
        self.assertEqual(self.successResultOf(ch.recv()), "a")
        reactor.advance(0)
        self.assertEqual(transport.value(), b"")
        self.assertFalse(ch.closed)
        self.successResultOf(ch.send("y", timeout=0))  # 0 is a timeout

    def test_bad_settings_refused(self) -> None:
        """
        Sizes, counts and C{send_timeout} that cannot work are refused
        when the channel is made.
        """
        for option in (
            "max_frame_length", "send_high_water", "recv_high_water",
            "recv_high_water_bytes", "read_size", "send_limit",
        ):
            for bad in (0, -1, 1.5, True):
                error = self.assertRaises(ValueError, channel.channel_on, 8000, **{option: bad})
                self.assertIn(option, str(error))
        error = self.assertRaises(ValueError, channel.channel_on, 8000, send_timeout=-1)
        self.assertIn("send_timeout", str(error))

    def test_accept_calls_cancelled(self) -> None:
        """
        Cancelling C{accept()} calls, in any order, gives their claims
        back: a later call needs only the peers it asks for, and a call
        behind a cancelled one takes over its place.
        """
        from tsyncp_tx import multi_channel

        reactor = MemoryReactorClock()
        hub = self.successResultOf(multi_channel.channel_on(8000, accept=0, reactor=reactor))
        first, second, third = hub.accept(1), hub.accept(1), hub.accept(1)
        first.cancel()
        third.cancel()
        second_after = hub.accept(1)
        for d in (first, third):
            self.failureResultOf(d, CancelledError)
        fake_peer(reactor, 5004)
        self.assertEqual(self.successResultOf(second), 1)
        self.assertNoResult(second_after)
        second_after.cancel()
        self.failureResultOf(second_after, CancelledError)
        later = hub.accept(1)
        fake_peer(reactor, 5005)
        self.assertEqual(self.successResultOf(later), 1)

    def test_reconnecting_constructor_cancelled_while_giving_up(self) -> None:
        """
        Cancelling a C{reconnect=True} constructor whose policy has just
        given up fails it with that C{ConnectError}, once, with nothing
        left unhandled or running.
        """
        import gc

        from twisted.internet.defer import AlreadyCalledError, fail
        from twisted.internet.error import ConnectionRefusedError

        from twisted.internet.interfaces import IStreamClientEndpoint

        @implementer(IStreamClientEndpoint)
        class Refusing:
            def connect(self, factory: Any) -> Deferred[Any]:
                return fail(ConnectionRefusedError("no"))

        reactor = MemoryReactorClock()
        d = channel.channel_to(Refusing(), reconnect=True, reactor=reactor)
        d.cancel()
        self.failureResultOf(d, ConnectError)
        reactor.advance(0)
        gc.collect()
        self.assertEqual(self.flushLoggedErrors(AlreadyCalledError), [])
        self.assertEqual(reactor.getDelayedCalls(), [])

    def test_backlogged_send_cancelled_while_its_write_waits(self) -> None:
        """
        A backlogged send whose write had to queue (the transport pushed
        back) and that is cancelled from an earlier send's callback during
        the backlog flush is withdrawn from the connection's queue: it
        fails with C{CancelledError}, and nothing is left unhandled.
        """
        import gc

        from twisted.internet.defer import CancelledError

        from tsyncp_tx._core import ChannelCore
        from tsyncp_tx.codecs import RawCodec

        class Peer:
            # The first frame is written at once, the next ones queue.
            queued_bytes = 0
            send_high_water = 1 << 20

            def __init__(self) -> None:
                self.written = 0
                self.withdrawn: List[bytes] = []

            def write_frame(self, header: bytes, payload: bytes) -> Optional[Deferred[None]]:
                self.written += 1
                if self.written == 1:
                    return None
                return Deferred(lambda _: self.withdrawn.append(payload))

        core = ChannelCore(MemoryReactorClock(), RawCodec(), single=True, receives=False)
        core._service = object()  # type: ignore[assignment]  # reconnecting, peer away
        first, second = core.send_one(b"x"), core.send_one(b"y")
        first.addCallback(lambda _: second.cancel())
        peer = Peer()
        core.peer = peer  # type: ignore[assignment]
        core._flush_backlog()
        self.successResultOf(first)
        self.failureResultOf(second, CancelledError)
        self.assertEqual(peer.withdrawn, [b"y"])
        gc.collect()
        self.assertEqual(self.flushLoggedErrors(CancelledError), [])

    def test_cancel_of_a_frame_the_flush_wrote(self) -> None:
        """
        A send cancelled from an earlier send's callback, after the flush
        of the connection's queue wrote it: it was sent, and its Deferred
        says so (no C{CancelledError}, nothing raised from the flush).
        """
        reactor = MemoryReactorClock()
        ch = self.successResultOf(channel.channel_on(8000, accept=0, reactor=reactor))
        protocol, transport = fake_peer(reactor, 5009)
        protocol.pauseProducing()
        first, second = ch.send("a"), ch.send("b")
        first.addCallback(lambda _: second.cancel())
        protocol.resumeProducing()
        self.successResultOf(first)
        self.assertIsNone(self.successResultOf(second))
        self.assertEqual(transport.value(), b'\x03"a"\x03"b"')

    def test_close_fails_accepts_one_cancelling_another(self) -> None:
        """
        C{close()} fails every waiting C{accept()} with C{ChannelClosed},
        also when one's errback cancels another.
        """
        from tsyncp_tx import multi_channel

        reactor = MemoryReactorClock()
        hub = self.successResultOf(multi_channel.channel_on(8000, accept=0, reactor=reactor))
        first, second = hub.accept(1), hub.accept(1)
        first.addErrback(lambda _: second.cancel())
        hub.close()
        self.failureResultOf(second, CancelledError)

    def test_lost_connection_reason(self) -> None:
        """
        A connection lost uncleanly fails pending C{recv()} with
        C{ConnectionClosed} whose C{reason} is the loss; items that arrived
        before are received first.
        """
        from twisted.internet.error import ConnectionLost

        reactor = MemoryReactorClock()
        ch = self.successResultOf(channel.channel_on(8000, accept=0, reactor=reactor))
        protocol, _ = fake_peer(reactor, 5002)
        protocol.dataReceived(b"\x01" b"1")
        protocol.connectionLost(Failure(ConnectionLost("cable cut")))
        self.assertEqual(self.successResultOf(ch.recv()), 1)
        error = self.failureResultOf(ch.recv(), ConnectionClosed).value
        self.assertEqual(error.address, ("127.0.0.1", 5002))
        self.assertIsInstance(error.reason, ConnectionLost)
        self.assertIn("cable cut", str(error))
        self.failureResultOf(ch.recv(), ConnectionClosed)
        self.successResultOf(ch.close())
