"""
Tests for L{tsyncp_tx.pool.StreamPool} over real loopback TCP (and, where
object identity must be observed, over C{StringTransport}).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import clientFromString, connectProtocol, serverFromString
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tsyncp_tx.framing import FrameDecoder, encode_frame, encode_frames
from tsyncp_tx.pool import FramedProtocol, StreamPool

from ._util import LOOPBACK, as_deferred, eventually

Address = Tuple[str, int]


class Client(Protocol):
    """
    A plain TCP client that writes raw bytes and records what it gets.

    @ivar data: Bytes received.
    @ivar lost: Fires with C{None} once the connection is lost.
    @ivar reason: The C{connectionLost} reason, once lost.
    """

    def __init__(self) -> None:
        self.data = bytearray()
        self.lost: Deferred[None] = Deferred()
        self.reason: Optional[Failure] = None

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:
        self.reason = reason
        self.lost.callback(None)

    def connectionMade(self) -> None:
        host: Any = self.transport.getHost()  # type: ignore[union-attr]
        # This client's own address: the pool's peer address for it.
        self.address: Address = (host.host, host.port)

    def frames(self) -> List[bytes]:
        """
        @return: The payloads of every complete frame received.
        """
        return FrameDecoder().feed(bytes(self.data))


class LogCapture:
    """
    Collects log events while a test runs.
    """

    def __init__(self, test: TestCase) -> None:
        self.events: List[Dict[str, Any]] = []
        observer = self.events.append
        globalLogPublisher.addObserver(observer)  # type: ignore[arg-type]
        test.addCleanup(globalLogPublisher.removeObserver, observer)  # type: ignore[arg-type]

    def messages(self, level: LogLevel) -> List[str]:
        """
        @param level: The log level wanted.
        @return: The formatted events of that level.
        """
        return [formatEvent(e) for e in self.events if e.get("log_level") == level]


class PoolTestCase(TestCase):
    """
    Helpers to run a pool on a loopback port and connect raw clients to it.
    """

    # A connection the pool fails to close would otherwise hang a test for
    # trial's default of 120 seconds.
    timeout = 30

    def setUp(self) -> None:
        self.received: List[Tuple[bytes, Address]] = []
        self.disconnects: List[Tuple[Address, Failure]] = []
        self.clients: List[Client] = []

    def deliver(self, frames: List[bytes], connection: FramedProtocol) -> None:
        address = connection.address
        self.received.extend((frame, address) for frame in frames)

    def on_disconnect(self, address: Address, reason: Failure) -> None:
        self.disconnects.append((address, reason))

    async def serve(self, **options: Any) -> Tuple[StreamPool, int]:
        """
        Start a pool on a free loopback port; stop both at cleanup.

        @param options: Extra C{StreamPool} options.
        @return: The pool and its port number.
        """
        options.setdefault("deliver", self.deliver)
        options.setdefault("on_disconnect", self.on_disconnect)
        pool = StreamPool(**options)
        port = await serverFromString(reactor, LOOPBACK).listen(pool.factory())
        # Cleanups run last-in first-out: clients close, then the pool's
        # connections, then the listening port.
        self.addCleanup(port.stopListening)
        self.addCleanup(pool.close)
        return pool, port.getHost().port

    async def connect(self, port: int) -> Client:
        """
        Connect a raw client; close it at cleanup.

        @param port: The pool's port.
        @return: The connected client.
        """
        endpoint = clientFromString(reactor, f"tcp:127.0.0.1:{port}")
        client = await connectProtocol(endpoint, Client())
        self.clients.append(client)

        async def close() -> None:
            if client.reason is None:
                client.transport.loseConnection()  # type: ignore[union-attr]
                await client.lost

        self.addCleanup(lambda: Deferred.fromCoroutine(close()))
        return client

    async def joined(self, pool: StreamPool, client: Client) -> None:
        """
        Wait until the pool has admitted C{client}.
        """
        await eventually(lambda: client.address in pool.addresses, timeout=10)


class FanInTests(PoolTestCase):
    """
    Frames from many connections arrive with their addresses, and bad
    connections are dropped alone.
    """

    @as_deferred
    async def test_bad_clients_do_not_disturb_others(self) -> None:
        """
        Four clients send interleaved frames while one sends garbage and one
        announces a 100 MiB frame: the two bad ones are closed, logged with
        their address and reported to C{on_disconnect}; every frame of the
        good ones arrives, in order, with its sender's address, and they
        stay connected.
        """
        log = LogCapture(self)
        pool, port = await self.serve()
        good = [await self.connect(port) for _ in range(4)]
        garbage = await self.connect(port)
        huge = await self.connect(port)
        for client in good + [garbage, huge]:
            await self.joined(pool, client)
        self.assertEqual(len(pool), 6)

        sent: Dict[Address, List[bytes]] = {c.address: [] for c in good}
        for round_ in range(50):
            for i, client in enumerate(good):
                payload = b"%d:%d:" % (i, round_) + b"x" * (round_ * 37 % 300)
                sent[client.address].append(payload)
                client.transport.write(encode_frame(payload))  # type: ignore[union-attr]
            if round_ == 5:
                garbage.transport.write(encode_frame(b"ok"))  # type: ignore[union-attr]
            if round_ == 10:
                # By now the garbage client's valid frame has arrived on its own.
                await eventually(lambda: (b"ok", garbage.address) in self.received, timeout=10)
                garbage.transport.write(b"\xfa\x00\x12garbage\x00\xff" * 10)  # type: ignore[union-attr]
                huge.transport.write(  # type: ignore[union-attr]
                    (0xE0000000 | 100 * 1024 * 1024).to_bytes(4, "big") + b"\x00" * 65536
                )
        # One large frame too, split over several TCP reads.
        big = b"B" * 300_000
        good[0].transport.write(encode_frame(big))  # type: ignore[union-attr]
        sent[good[0].address].append(big)

        await garbage.lost
        await huge.lost
        total = sum(len(v) for v in sent.values())
        await eventually(
            lambda: sum(1 for _, a in self.received if a in sent) >= total, timeout=10
        )

        by_address: Dict[Address, List[bytes]] = {}
        for payload, address in self.received:
            by_address.setdefault(address, []).append(payload)
        # The garbage client's valid frame, sent before its garbage, arrived.
        self.assertEqual(by_address.pop(garbage.address, []), [b"ok"])
        self.assertNotIn(huge.address, by_address)
        self.assertEqual(by_address, sent)

        self.assertEqual(sorted(pool.addresses), sorted(c.address for c in good))
        self.assertEqual(len(pool), 4)
        await eventually(lambda: len(self.disconnects) == 2, timeout=10)
        self.assertEqual(
            sorted(address for address, _ in self.disconnects),
            sorted([garbage.address, huge.address]),
        )

        errors = log.messages(LogLevel.error)
        for client in (garbage, huge):
            host, port_ = client.address
            self.assertTrue(
                any(f"{host}:{port_}" in m for m in errors), f"{client.address} not in {errors}"
            )
        self.assertTrue(any(str(100 * 1024 * 1024) in m for m in errors), errors)

        # The pool keeps serving the good clients.
        self.received.clear()
        for client in good:
            client.transport.write(encode_frame(b"after"))  # type: ignore[union-attr]
        await eventually(lambda: len(self.received) == 4, timeout=10)
        self.assertEqual(sorted(a for _, a in self.received), sorted(c.address for c in good))
        for client in good:
            self.assertIsNone(client.reason)

    @as_deferred
    async def test_send_only_pool_refuses_frames(self) -> None:
        """
        A pool without C{deliver} closes a connection that sends a frame,
        with a logged reason, and keeps the others.
        """
        log = LogCapture(self)
        pool, port = await self.serve(deliver=None)
        talker = await self.connect(port)
        quiet = await self.connect(port)
        await self.joined(pool, talker)
        await self.joined(pool, quiet)
        talker.transport.write(encode_frame(b"hello?"))  # type: ignore[union-attr]
        await talker.lost
        await eventually(lambda: len(pool) == 1, timeout=10)
        self.assertEqual(pool.addresses, [quiet.address])
        self.assertTrue(any("send-only" in m for m in log.messages(LogLevel.error)))


class LimitTests(PoolTestCase):
    """
    The connection limit.
    """

    @as_deferred
    async def test_extra_connection_refused(self) -> None:
        """
        With C{limit=2} a third connection is closed at once with a logged
        reason naming its address and the limit; the first two stay, and a
        new one is admitted once one of them leaves.
        """
        log = LogCapture(self)
        accepted: List[Address] = []
        pool, port = await self.serve(limit=2, on_accept=accepted.append)
        first = await self.connect(port)
        await self.joined(pool, first)
        second = await self.connect(port)
        await self.joined(pool, second)
        third = await self.connect(port)
        await third.lost
        self.assertEqual(pool.addresses, [first.address, second.address])
        self.assertEqual(accepted, [first.address, second.address])
        self.assertEqual(self.disconnects, [])  # never joined: not reported
        warnings = log.messages(LogLevel.warn)
        host, third_port = third.address
        self.assertTrue(
            any(f"{host}:{third_port}" in m and "limit of 2" in m for m in warnings), warnings
        )

        first.transport.loseConnection()  # type: ignore[union-attr]
        await first.lost
        await eventually(lambda: len(pool) == 1, timeout=10)
        fourth = await self.connect(port)
        await self.joined(pool, fourth)
        self.assertEqual(pool.addresses, [second.address, fourth.address])

    def test_limit_must_be_positive(self) -> None:
        """
        A limit below 1 is refused.
        """
        self.assertRaises(ValueError, StreamPool, limit=0)

    @as_deferred
    async def test_accept_filter(self) -> None:
        """
        An C{accept_filter} returning false closes the connection before it
        joins.
        """
        seen: List[Address] = []

        def only_first(address: Address) -> bool:
            seen.append(address)
            return len(seen) == 1

        pool, port = await self.serve(accept_filter=only_first)
        first = await self.connect(port)
        await self.joined(pool, first)
        second = await self.connect(port)
        await second.lost
        self.assertEqual(seen, [first.address, second.address])
        self.assertEqual(pool.addresses, [first.address])


class MembershipTests(PoolTestCase):
    """
    C{addresses}, C{len}, C{add}, C{remove}, C{get}.
    """

    @as_deferred
    async def test_add_remove(self) -> None:
        """
        C{addresses} lists the live connections in join order; C{remove}
        forgets one without closing it (it gets no broadcast, its frames
        still reach C{deliver}); C{add} takes it back.
        """
        pool, port = await self.serve()
        clients = []
        for _ in range(3):
            client = await self.connect(port)
            await self.joined(pool, client)
            clients.append(client)
        self.assertEqual(pool.addresses, [c.address for c in clients])
        self.assertEqual(len(pool), 3)
        connection = pool.get(clients[1].address)
        assert connection is not None
        self.assertEqual(connection.address, clients[1].address)
        self.assertEqual(pool.connections[1], connection)
        self.assertIsNone(pool.get(("127.0.0.1", 1)))

        pool.remove(connection)
        self.assertEqual(len(pool), 2)
        self.assertEqual(pool.addresses, [clients[0].address, clients[2].address])
        self.assertEqual(await pool.broadcast(b"to members"), 2)
        await eventually(lambda: clients[0].frames() == [b"to members"], timeout=10)
        await eventually(lambda: clients[2].frames() == [b"to members"], timeout=10)
        self.assertIsNone(clients[1].reason)
        self.assertEqual(clients[1].frames(), [])
        pool.remove(connection)  # twice: harmless
        self.assertEqual(len(pool), 2)

        self.assertTrue(pool.add(connection))
        self.assertEqual(len(pool), 3)
        self.assertEqual(await pool.broadcast(b"all again"), 3)
        await eventually(lambda: clients[1].frames() == [b"all again"], timeout=10)


class BroadcastTests(PoolTestCase):
    """
    C{broadcast}: one frame, every connection.
    """

    @as_deferred
    async def test_reaches_every_connection_once(self) -> None:
        """
        Each broadcast reaches every connection exactly once, in order, and
        its Deferred fires with the number of connections.
        """
        pool, port = await self.serve()
        clients = [await self.connect(port) for _ in range(5)]
        for client in clients:
            await self.joined(pool, client)
        payloads = [b"", b"one", b"y" * 200, b"z" * 100_000, b"last"]
        for payload in payloads:
            self.assertEqual(await pool.broadcast(payload), 5)
        expected = encode_frames(payloads)
        await eventually(lambda: all(len(c.data) >= len(expected) for c in clients), timeout=10)
        for client in clients:
            self.assertEqual(bytes(client.data), expected)

    @as_deferred
    async def test_to_some(self) -> None:
        """
        C{broadcast(payload, connections)} writes only to those.
        """
        pool, port = await self.serve()
        clients = [await self.connect(port) for _ in range(3)]
        for client in clients:
            await self.joined(pool, client)
        chosen = [pool.get(clients[0].address), pool.get(clients[2].address)]
        self.assertEqual(await pool.broadcast(b"some", chosen), 2)  # type: ignore[arg-type]
        await eventually(lambda: clients[2].frames() == [b"some"], timeout=10)
        self.assertEqual(clients[0].frames(), [b"some"])
        self.assertEqual(clients[1].frames(), [])

    @as_deferred
    async def test_one_connection_lost_others_served(self) -> None:
        """
        A connection that dies (reset by its peer) is removed and reported to
        C{on_disconnect} with a failure reason; the broadcasts before and
        after reach every other connection, with the count of the
        connections reached.
        """
        pool, port = await self.serve()
        clients = [await self.connect(port) for _ in range(4)]
        for client in clients:
            await self.joined(pool, client)
        self.assertEqual(await pool.broadcast(b"before"), 4)
        victim = clients[2]
        victim.transport.abortConnection()  # type: ignore[union-attr]
        await victim.lost
        await eventually(lambda: len(self.disconnects) == 1, timeout=10)
        [(address, reason)] = self.disconnects
        self.assertEqual(address, victim.address)
        self.assertIsInstance(reason, Failure)
        self.assertEqual(len(pool), 3)
        self.assertNotIn(victim.address, pool.addresses)
        self.assertEqual(await pool.broadcast(b"after"), 3)
        survivors = [c for c in clients if c is not victim]
        await eventually(
            lambda: all(c.frames() == [b"before", b"after"] for c in survivors), timeout=10
        )
        for client in survivors:
            self.assertIsNone(client.reason)

    @as_deferred
    async def test_too_large_refused_everywhere(self) -> None:
        """
        A payload over C{max_frame_length} raises before anything is written
        to any connection.
        """
        from tsyncp_tx.framing import FrameTooLarge

        pool, port = await self.serve(max_frame_length=1000)
        clients = [await self.connect(port) for _ in range(2)]
        for client in clients:
            await self.joined(pool, client)
        self.assertRaises(FrameTooLarge, pool.broadcast, b"x" * 1001)
        self.assertEqual(await pool.broadcast(b"ok"), 2)
        await eventually(lambda: all(c.frames() == [b"ok"] for c in clients), timeout=10)


class BroadcastFramesOnceTests(SynchronousTestCase):
    """
    C{broadcast} encodes the frame once for all connections (observed with
    recording transports).
    """

    def test_framed_once(self) -> None:
        """
        Every transport is handed the very same frame object (small
        payloads) or the same header and payload objects (large ones).
        """
        clock = Clock()
        pool = StreamPool(deliver=lambda frames, connection: None, clock=clock, nodelay=False)
        transports = []
        for i in range(3):
            protocol = pool.build_protocol()
            transport = _Recording(peerAddress=IPv4Address("TCP", "127.0.0.1", 50000 + i))
            protocol.makeConnection(transport)
            transports.append(transport)
        self.assertEqual(len(pool), 3)

        d = pool.broadcast(b"small")
        self.assertEqual(self.successResultOf(d), 3)
        clock.advance(0)
        writes = [t.calls[0][1] for t in transports]
        self.assertEqual(writes[0], b"\x05small")
        for data in writes[1:]:
            self.assertIs(data, writes[0])

        large = b"L" * 100_000
        self.assertEqual(self.successResultOf(pool.broadcast(large)), 3)
        sequences = [t.calls[1][1] for t in transports]
        for parts in sequences:
            self.assertIs(parts[1], large)
            self.assertIs(parts[0], sequences[0][0])
        for t in transports:
            self.assertEqual(FrameDecoder().feed(t.value()), [b"small", large])


def _pool_of(n: int, **options: Any) -> Tuple[StreamPool, List["_Recording"], Clock]:
    """
    A pool with C{n} connections over recording transports and its own
    clock (the end of a reactor turn is C{clock.advance(0)}).
    """
    clock = Clock()
    pool = StreamPool(deliver=lambda frames, connection: None, clock=clock, nodelay=False, **options)
    transports = [_join(pool, i) for i in range(n)]
    return pool, transports, clock


def _join(pool: StreamPool, i: int) -> "_Recording":
    protocol = pool.build_protocol()
    transport = _Recording(peerAddress=IPv4Address("TCP", "127.0.0.1", 50000 + i))
    protocol.makeConnection(transport)
    return transport


def _frames(transport: StringTransport) -> List[bytes]:
    return FrameDecoder().feed(transport.value())


class CombinedBroadcastTests(SynchronousTestCase):
    """
    Small frames broadcast to every connection during a reactor turn are
    combined once for all of them, and still reach each connection in the
    order it was sent them, whatever else happens during the turn.
    """

    def test_one_write_per_turn(self) -> None:
        """
        A turn's broadcasts reach each transport as one write, the same
        object for every connection, once the turn ends.
        """
        pool, transports, clock = _pool_of(3)
        for i in range(5):
            self.assertEqual(self.successResultOf(pool.broadcast(b"%d" % i)), 3)
        self.assertEqual([t.calls for t in transports], [[], [], []])
        clock.advance(0)
        self.assertEqual([len(t.calls) for t in transports], [1, 1, 1])
        for t in transports:
            self.assertIs(t.calls[0][1], transports[0].calls[0][1])
            self.assertEqual(_frames(t), [b"0", b"1", b"2", b"3", b"4"])

    def test_limit_hands_over_within_the_turn(self) -> None:
        """
        Once 64 KiB of payloads are combined they are handed over without
        waiting for the end of the turn.
        """
        pool, transports, clock = _pool_of(2)
        payload = b"p" * 10_000
        for _ in range(7):
            pool.broadcast(payload)
        for t in transports:
            self.assertEqual(_frames(t), [payload] * 7)
        pool.broadcast(b"last")
        clock.advance(0)
        for t in transports:
            self.assertEqual(_frames(t), [payload] * 7 + [b"last"])

    def test_send_to_some_keeps_order(self) -> None:
        """
        A frame sent to some connections in the middle of a turn's
        broadcasts takes its place between them.
        """
        pool, transports, clock = _pool_of(3)
        first = pool.connections[0]
        pool.broadcast(b"a")
        pool.broadcast(b"b", [first])
        pool.broadcast(b"c")
        clock.advance(0)
        self.assertEqual(_frames(transports[0]), [b"a", b"b", b"c"])
        self.assertEqual(_frames(transports[1]), [b"a", b"c"])
        self.assertEqual(_frames(transports[2]), [b"a", b"c"])

    def test_joiner_gets_only_later_frames(self) -> None:
        """
        A connection that joins during a turn gets only the frames
        broadcast after it joined.
        """
        pool, transports, clock = _pool_of(2)
        pool.broadcast(b"before")
        late = _join(pool, 9)
        self.assertEqual(self.successResultOf(pool.broadcast(b"after")), 3)
        clock.advance(0)
        self.assertEqual(_frames(late), [b"after"])
        for t in transports:
            self.assertEqual(_frames(t), [b"before", b"after"])

    def test_paused_during_the_turn(self) -> None:
        """
        A connection whose transport pushes back during the turn gets the
        combined frames first and its queued frames after them.
        """
        pool, transports, clock = _pool_of(2)
        slow = pool.connections[0]
        pool.broadcast(b"a")
        slow.pauseProducing()
        waiting = pool.broadcast(b"b")  # queued for the paused connection
        self.assertNoResult(waiting)
        clock.advance(0)
        self.assertEqual(_frames(transports[0]), [b"a"])
        slow.resumeProducing()
        self.assertEqual(self.successResultOf(waiting), 2)
        clock.advance(0)
        for t in transports:
            self.assertEqual(_frames(t), [b"a", b"b"])

    def test_close_delivers(self) -> None:
        """
        Closing the pool, or one connection, right after broadcasting
        writes the frames before the connections close.
        """
        pool, transports, clock = _pool_of(2)
        pool.broadcast(b"a")
        pool.connections[1].close()
        self.assertEqual(_frames(transports[1]), [b"a"])
        self.assertTrue(transports[1].disconnecting)
        pool.broadcast(b"b", [pool.connections[0]])
        pool.broadcast(b"c")
        pool.close()
        self.assertEqual(_frames(transports[0]), [b"a", b"b", b"c"])
        self.assertTrue(transports[0].disconnecting)

    def test_lost_or_removed_during_the_turn(self) -> None:
        """
        A connection lost during the turn gets nothing more and the others
        their frames; one removed from the pool gets the frames broadcast
        while it was a member.
        """
        pool, transports, clock = _pool_of(3)
        lost, removed = pool.connections[0], pool.connections[1]
        pool.broadcast(b"a")
        lost.connectionLost(Failure(ConnectionDone()))
        pool.broadcast(b"b")
        pool.remove(removed)
        self.assertEqual(self.successResultOf(pool.broadcast(b"c")), 1)
        clock.advance(0)
        self.assertEqual(transports[0].value(), b"")
        self.assertEqual(_frames(transports[1]), [b"a", b"b"])
        self.assertEqual(_frames(transports[2]), [b"a", b"b", b"c"])


class BlockedSetTests(SynchronousTestCase):
    """
    L{StreamPool.blocked} is exactly the set of member connections that are
    not writable, through every change of either: the broadcast fast path
    and the room check trust it.
    """

    @settings(max_examples=200, deadline=None)
    @given(
        st.lists(
            st.tuples(
                st.sampled_from(
                    [
                        "join",
                        "pause",
                        "resume",
                        "broadcast",
                        "large",
                        "to_one",
                        "cancel",
                        "lose",
                        "remove",
                        "rejoin",
                        "turn",
                    ]
                ),
                st.integers(0, 3),
            ),
            max_size=40,
        )
    )
    def test_matches_writable(self, steps: List[Tuple[str, int]]) -> None:
        """
        After any sequence of joins, transport pauses and resumes,
        broadcasts (to all or to one), queued frames and their cancellation,
        losses, removals and returns, within one reactor turn or across
        several, C{blocked} holds the members that are not writable, and
        every member got the frames of the broadcasts it was a member for,
        in order.
        """
        clock = Clock()
        pool = StreamPool(
            deliver=lambda frames, connection: None,
            clock=clock,
            nodelay=False,
            send_high_water=1 << 20,
        )
        protocols: List[FramedProtocol] = []
        transports: List[StringTransport] = []
        expected: Dict[int, List[bytes]] = {}
        waiting: List[Deferred[Any]] = []
        serial = 0

        def join() -> None:
            protocol = pool.build_protocol()
            transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000 + len(protocols)))
            protocol.makeConnection(transport)
            protocols.append(protocol)
            transports.append(transport)
            expected[len(protocols) - 1] = []

        join()
        for op, i in steps:
            protocol = protocols[i % len(protocols)]
            if op == "join":
                join()
            elif op == "pause":
                protocol.pauseProducing()
            elif op == "resume":
                protocol.resumeProducing()
            elif op in ("broadcast", "large", "to_one"):
                serial += 1
                payload = b"%d:" % serial + (b"L" * 20_000 if op == "large" else b"s")
                targets = [protocol] if op == "to_one" and protocol in pool.connections else None
                members = [protocols.index(c) for c in targets or pool.connections]
                d = pool.broadcast(payload, targets)
                d.addErrback(lambda f: None)
                waiting.append(d)
                for m in members:
                    expected[m].append(payload)
            elif op == "cancel" and waiting:
                waiting.pop().cancel()
            elif op == "lose":
                protocol.connectionLost(Failure(ConnectionDone()))
            elif op == "remove":
                pool.remove(protocol)
            elif op == "rejoin" and protocol.connected_ and protocol not in pool.connections:
                pool.add(protocol)
            elif op == "turn":
                clock.advance(0)
            self.assertEqual(pool.blocked, {c for c in pool.connections if not c.writable})
        # Everything still queued goes out once the transports take it.
        for protocol in protocols:
            if protocol.connected_:
                protocol.resumeProducing()
        clock.advance(0)
        for index, transport in enumerate(transports):
            if protocols[index].connected_:
                received = FrameDecoder().feed(transport.value())
                # A cancelled broadcast leaves only the frames already written.
                self.assertTrue(set(received) <= set(expected[index]))
                self.assertEqual(received, sorted(received, key=expected[index].index))


class _Recording(StringTransport):
    """
    A C{StringTransport} recording the objects given to C{write} and
    C{writeSequence}.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: List[Tuple[str, Any]] = []

    def write(self, data: bytes) -> None:
        self.calls.append(("write", data))
        super().write(data)

    def writeSequence(self, data: Any) -> None:
        parts = list(data)
        self.calls.append(("writeSequence", parts))
        super().writeSequence(parts)
