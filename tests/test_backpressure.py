"""
Flow control over real loopback TCP: send-side backpressure (paused
transports, C{send_high_water}, cancellation, connection loss) and
receive-side backpressure (C{recv_high_water}, C{recv_high_water_bytes}).

The small helpers at the top (L{RawPeer}, L{listen_raw}, L{connect_raw},
L{LogCapture}, L{fired_within}, L{fill_until_stalled}) are shared with the
other reliability test modules (C{test_faults}, C{test_slow_consumer},
C{test_hostile}), which import them from here.
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional, Tuple

from twisted.internet import reactor as _global_reactor
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol, serverFromString
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import ILogObserver, LogEvent, formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from tsyncp_tx import mpsc, spsc
from tsyncp_tx.codecs import RawCodec
from tsyncp_tx.errors import ConnectionClosed
from tsyncp_tx.framing import FrameDecoder

from ._util import LOOPBACK, as_deferred, eventually, sleep

reactor: Any = _global_reactor


# Shared helpers


class RawPeer(Protocol):
    """
    A plain TCP peer that decodes the frames it receives and can stop
    reading (so that TCP pushes back on the other side).

    @ivar frames: The payloads received so far.
    @ivar received: Bytes received so far.
    @ivar lost: Fires (with C{None}) when the connection ends.
    @ivar reason: Why it ended, then.
    """

    def __init__(self, pause_on_connect: bool = False) -> None:
        """
        @param pause_on_connect: Stop reading as soon as connected.
        """
        self.pause_on_connect = pause_on_connect
        self.decoder = FrameDecoder(1 << 29)
        self.frames: List[bytes] = []
        self.received = 0
        self.made: Deferred[RawPeer] = Deferred()
        self.lost: Deferred[None] = Deferred()
        self.reason: Optional[Failure] = None
        self._address: Tuple[str, int] = ("", 0)

    def connectionMade(self) -> None:
        host: Any = self.transport.getHost()  # type: ignore[union-attr]
        self._address = (host.host, host.port)
        if self.pause_on_connect:
            self.transport.pauseProducing()  # type: ignore[union-attr]
        self.made.callback(self)

    def dataReceived(self, data: bytes) -> None:
        self.received += len(data)
        self.frames.extend(self.decoder.feed(data))

    def connectionLost(self, reason: Failure = Failure(Exception("lost"))) -> None:
        self.reason = reason
        self.lost.callback(None)

    @property
    def address(self) -> Tuple[str, int]:
        """
        This peer's own C{(host, port)}, as the other side reports it.
        """
        return self._address

    def pause(self) -> None:
        """
        Stop reading.
        """
        self.transport.pauseProducing()  # type: ignore[union-attr]

    def resume(self) -> None:
        """
        Resume reading.
        """
        self.transport.resumeProducing()  # type: ignore[union-attr]

    def send(self, data: bytes) -> None:
        """
        Write raw bytes.
        """
        self.transport.write(data)  # type: ignore[union-attr]

    def abort(self) -> Deferred[None]:
        """
        Reset the connection (RST) and return L{lost}.
        """
        if self.reason is None:
            self.transport.abortConnection()  # type: ignore[union-attr]
        return self.lost

    def finish(self) -> Deferred[None]:
        """
        Close cleanly (FIN) and return L{lost}.
        """
        if self.reason is None:
            self.transport.loseConnection()  # type: ignore[union-attr]
        return self.lost


class _RawFactory(Factory):
    noisy = False

    def __init__(self, pause_on_connect: bool) -> None:
        self.pause_on_connect = pause_on_connect
        self.peers: List[RawPeer] = []
        self.first: Deferred[RawPeer] = Deferred()
        self.port: Optional[IListeningPort] = None

    def buildProtocol(self, addr: Any) -> RawPeer:
        peer = RawPeer(self.pause_on_connect)
        self.peers.append(peer)
        if not self.first.called:
            peer.made.addCallback(lambda p: self.first.callback(p) if not self.first.called else None)
        return peer


async def listen_raw(
    testcase: TestCase, pause_on_connect: bool = False, port_number: int = 0
) -> Tuple[Tuple[str, int], _RawFactory]:
    """
    Listen on loopback with L{RawPeer}s; everything is closed on cleanup.

    @param testcase: The test (for cleanups).
    @param pause_on_connect: The accepted peers do not read.
    @param port_number: The port (default: a free one).
    @return: C{((host, port), factory)}; C{factory.first} fires with the
        first accepted peer, C{factory.peers} lists them all,
        C{factory.port} is the listening port.
    """
    factory = _RawFactory(pause_on_connect)
    description = f"tcp:{port_number}:interface=127.0.0.1"
    port: IListeningPort = await serverFromString(reactor, description).listen(factory)
    factory.port = port

    async def cleanup() -> None:
        stopping = port.stopListening()
        if stopping is not None:
            await stopping
        for peer in factory.peers:
            if peer.transport is not None:
                await peer.abort()

    testcase.addCleanup(lambda: Deferred.fromCoroutine(cleanup()))
    host: Any = port.getHost()
    return (host.host, host.port), factory


async def connect_raw(testcase: TestCase, address: Tuple[str, int]) -> RawPeer:
    """
    Connect a L{RawPeer} to C{address}; it is reset on cleanup.

    @param testcase: The test (for cleanups).
    @param address: C{(host, port)}.
    @return: The connected peer.
    """
    peer = RawPeer()
    await connectProtocol(TCP4ClientEndpoint(reactor, address[0], address[1]), peer)
    testcase.addCleanup(peer.abort)
    return peer


@implementer(ILogObserver)
class LogCapture:
    """
    Collects log events while a test runs.
    """

    def __init__(self, testcase: TestCase) -> None:
        """
        @param testcase: The test; the observer is removed on cleanup.
        """
        self.events: List[LogEvent] = []
        globalLogPublisher.addObserver(self)
        testcase.addCleanup(globalLogPublisher.removeObserver, self)

    def __call__(self, event: LogEvent) -> None:
        self.events.append(event)

    def messages(self) -> List[str]:
        """
        Every event, formatted.
        """
        return [formatEvent(e) for e in self.events]

    def matching(self, *needles: str) -> List[str]:
        """
        The formatted events containing every one of C{needles}.
        """
        return [m for m in self.messages() if all(n in m for n in needles)]


async def fired_within(d: Deferred[Any], seconds: float) -> bool:
    """
    Wait until C{d} fires or C{seconds} pass, whichever is first.

    The caller keeps handling C{d}'s result (errors included).

    @return: Whether C{d} has fired.
    """
    if d.called:
        return True
    waiter: Deferred[None] = Deferred()

    def wake(result: Any = None) -> Any:
        if not waiter.called:
            waiter.callback(None)
        return result

    call = reactor.callLater(seconds, wake)
    d.addBoth(wake)
    await waiter
    if call.active():
        call.cancel()
    return d.called


def swallow(d: Deferred[Any], into: Optional[List[Any]] = None) -> Deferred[Any]:
    """
    Record C{d}'s outcome (result or C{Failure}) into C{into} and consume it.
    """

    def record(result: Any) -> None:
        if into is not None:
            into.append(result)

    d.addBoth(record)
    return d


async def fill_until_stalled(
    send: Callable[[int], Deferred[Any]], settle: float = 0.75, max_items: int = 5000
) -> Tuple[int, Deferred[Any]]:
    """
    Send items C{0, 1, ...} with C{send(i)}, each after the previous one's
    Deferred fired, until one stays unfired for C{settle} seconds: every
    buffer between here and a peer that stopped reading is then full.

    @return: C{(number of items sent, the stalled Deferred)}.
    """
    for i in range(max_items):
        d = send(i)
        if not await fired_within(d, settle):
            return i + 1, d
        if d.called and isinstance(d.result, Failure):
            d.result.raiseException()
    raise AssertionError(f"sending never stalled after {max_items} items")


def pattern(i: int, size: int) -> bytes:
    """
    A payload of C{size} bytes that encodes C{i} (so order and content can
    be checked).
    """
    head = i.to_bytes(4, "big")
    body = bytes([i % 251]) * (size - 4)
    return head + body


ITEM = 64 * 1024
# A read's size: 64 KiB, and 512 KiB once the connection streams (a read
# fills it); docs/reliability.md.
STREAMING_READ = 512 * 1024


# Send side


class SendBackpressureTests(TestCase):
    """
    A sender whose peer stops reading: C{send()} Deferreds wait, in order;
    cancelling withdraws; loss fails them naming the peer; the queue is
    bounded by C{send_high_water}.
    """

    timeout = 60

    async def _stalled_sender(self, **options: Any) -> Tuple[Any, RawPeer, int, Deferred[Any]]:
        address, factory = await listen_raw(self, pause_on_connect=True)
        tx = await spsc.sender_to(address, codec=RawCodec(), **options)
        self.addCleanup(tx.close)
        peer = await factory.first
        # close() flushes first: reset the stalled peer before it runs.
        self.addCleanup(peer.abort)
        sent, stalled = await fill_until_stalled(lambda i: tx.send(pattern(i, ITEM)))
        return tx, peer, sent, stalled

    @as_deferred
    async def test_paused_sends_fire_in_order_when_written(self) -> None:
        """
        While the transport is paused, C{send()} returns unfired Deferreds;
        they fire in send order once the peer reads, and every item arrives
        intact and in order.
        """
        tx, peer, sent, stalled = await self._stalled_sender()
        fired: List[int] = []
        stalled.addCallback(lambda _: fired.append(sent - 1))
        pending = []
        for i in range(sent, sent + 5):
            d = tx.send(pattern(i, ITEM))
            self.assertFalse(d.called, f"send #{i} fired while the transport was paused")
            d.addCallback(lambda _, i=i: fired.append(i))
            pending.append(d)
        await sleep(0.2)
        self.assertEqual(fired, [], "a send() fired before the peer read anything more")
        peer.resume()
        total = sent + 5
        await eventually(lambda: len(fired) == 6 and len(peer.frames) == total, timeout=20)
        self.assertEqual(fired, list(range(sent - 1, total)))
        self.assertEqual(len(peer.frames), total)
        for i, frame in enumerate(peer.frames):
            self.assertEqual(frame, pattern(i, ITEM), f"item {i} corrupted or out of order")

    @as_deferred
    async def test_cancel_removes_unsent_item(self) -> None:
        """
        Cancelling a waiting C{send()} removes its item: the peer never gets
        it; the items around it are sent and their Deferreds fire.
        """
        tx, peer, sent, stalled = await self._stalled_sender()
        a = tx.send(pattern(sent, ITEM))
        b = tx.send(pattern(sent + 1, ITEM))
        c = tx.send(pattern(sent + 2, ITEM))
        self.assertFalse(b.called)
        b.cancel()
        self.failureResultOf(b, CancelledError)
        peer.resume()
        await stalled
        await a
        await c
        await eventually(lambda: len(peer.frames) == sent + 2, timeout=20)
        await sleep(0.1)
        expected = [pattern(i, ITEM) for i in range(sent + 1)] + [pattern(sent + 2, ITEM)]
        self.assertEqual(len(peer.frames), len(expected))
        self.assertTrue(peer.frames == expected, "the cancelled item was sent or order broke")

    @as_deferred
    async def test_connection_loss_fails_pending_sends_naming_peer(self) -> None:
        """
        When the connection is reset, every waiting C{send()} fails with
        L{ConnectionClosed} naming the peer; none succeeds.
        """
        tx, peer, sent, stalled = await self._stalled_sender()
        outcomes: List[Any] = []
        swallow(stalled, outcomes)
        for i in range(sent, sent + 4):
            swallow(tx.send(pattern(i, ITEM)), outcomes)
        self.assertEqual(outcomes, [])
        await peer.abort()
        await eventually(lambda: len(outcomes) == 5)
        host, port = tx.peer_address
        for outcome in outcomes:
            self.assertIsInstance(outcome, Failure, "a send() succeeded on a reset connection")
            self.assertIsInstance(outcome.value, ConnectionClosed)
            self.assertEqual(outcome.value.address, (host, port))
            self.assertIn(f"{host}:{port}", str(outcome.value))
        # Later sends fail at once, too.
        later = tx.send(b"after")
        self.failureResultOf(later, ConnectionClosed)

    @as_deferred
    async def test_send_waits_past_high_water(self) -> None:
        """
        Once C{send_high_water} bytes are queued, further C{send()}s wait
        without even being encoded (memory stays bounded); when the peer
        reads again they go out, every Deferred fires in order, and every
        item arrives once, in order.
        """
        high_water = 4 * ITEM + 100
        codec = CountingRawCodec()
        address, factory = await listen_raw(self, pause_on_connect=True)
        tx = await spsc.sender_to(address, codec=codec, send_high_water=high_water)
        self.addCleanup(tx.close)
        peer = await factory.first
        self.addCleanup(peer.abort)
        sent, stalled = await fill_until_stalled(lambda i: tx.send(pattern(i, ITEM)))
        fired: List[int] = []
        stalled.addCallback(lambda _: fired.append(sent - 1))
        pending = []
        for i in range(sent, sent + 20):
            d = tx.send(pattern(i, ITEM))
            self.assertFalse(d.called, f"send #{i} did not wait")
            d.addCallback(lambda _, i=i: fired.append(i))
            pending.append(d)
        connection = tx._core.peer
        assert connection is not None
        # At most one frame beyond the bound is queued; the rest wait
        # unencoded.
        self.assertLessEqual(connection.queued_bytes, high_water + ITEM + 3)
        self.assertLess(codec.encoded, sent + 20 - 10, "waiting items were encoded")
        peer.resume()
        total = sent + 20
        await eventually(lambda: len(peer.frames) == total and len(fired) == 21, timeout=20)
        self.assertEqual(fired, list(range(sent - 1, total)))
        self.assertEqual([int.from_bytes(f[:4], "big") for f in peer.frames], list(range(total)))
        self.assertEqual(codec.encoded, total)

    @as_deferred
    async def test_queued_bytes_stay_bounded_without_awaiting(self) -> None:
        """
        A careless sender that never waits for its Deferreds cannot grow the
        queue past C{send_high_water} (plus one frame): the overflow waits,
        unencoded, and nothing is refused or lost.
        """
        high_water = 1024 * 1024
        tx, peer, sent, stalled = await self._stalled_sender(send_high_water=high_water)
        outcomes: List[Any] = []
        swallow(stalled, outcomes)
        for i in range(sent, sent + 200):
            d = tx.send(pattern(i, ITEM))
            self.assertFalse(d.called)
            swallow(d, outcomes)
        connection = tx._core.peer
        assert connection is not None
        self.assertLessEqual(connection.queued_bytes, high_water + ITEM + 3)
        peer.resume()
        total = sent + 200
        await eventually(lambda: len(peer.frames) == total, timeout=30)
        await eventually(lambda: len(outcomes) == 201)
        self.assertEqual([o for o in outcomes if o is not None], [])
        self.assertEqual([int.from_bytes(f[:4], "big") for f in peer.frames], list(range(total)))

    @as_deferred
    async def test_waiting_send_cancelled_or_timed_out_is_withdrawn(self) -> None:
        """
        A send waiting for room can be cancelled, or given a timeout: it is
        withdrawn (never encoded nor sent) and the others go out in order.
        """
        from tsyncp_tx.errors import TimeoutError as SendTimeout

        high_water = 2 * ITEM
        tx, peer, sent, stalled = await self._stalled_sender(send_high_water=high_water)
        waiting = [tx.send(pattern(i, ITEM)) for i in range(sent, sent + 4)]
        self.assertFalse(any(d.called for d in waiting))
        waiting[1].cancel()
        self.failureResultOf(waiting[1], CancelledError)
        timed = tx.send(pattern(sent + 4, ITEM), timeout=0.05)
        await sleep(0.2)
        self.failureResultOf(timed, SendTimeout)
        peer.resume()
        for d in [stalled, waiting[0], waiting[2], waiting[3]]:
            await d
        expected = list(range(sent)) + [sent, sent + 2, sent + 3]
        await eventually(lambda: len(peer.frames) == len(expected), timeout=20)
        self.assertEqual([int.from_bytes(f[:4], "big") for f in peer.frames], expected)


class CountingRawCodec(RawCodec):
    """
    A raw codec that counts its C{encode} calls.
    """

    def __init__(self) -> None:
        self.encoded = 0

    def encode(self, obj: Any) -> bytes:
        self.encoded += 1
        return super().encode(obj)


# Receive side


class ReceiveBackpressureTests(TestCase):
    """
    A receiver that does not call C{recv()}: its queue stays bounded, its
    transports are paused (so the senders' C{send()} stalls) and resumed
    once C{recv()} drains the queue to half.
    """

    timeout = 60

    def _reading(self, rx: Any) -> List[bool]:
        # Whether each of the receiver's sockets is registered for reading.
        readers = reactor.getReaders()
        return [c.transport in readers for c in rx._core.pool.connections]

    @as_deferred
    async def test_recv_high_water_pauses_and_resumes(self) -> None:
        """
        With C{recv_high_water=8} and 16 KiB items: the sender stalls, the
        queue holds at most 8 items plus one read's worth, reading is paused;
        draining to 4 resumes it; all items arrive in order.
        """
        size = 16 * 1024
        rx = await mpsc.receiver_on(LOOPBACK, codec=RawCodec(), recv_high_water=8)
        self.addCleanup(rx.close)
        tx = await mpsc.sender_to(rx.local_address, codec=RawCodec())
        self.addCleanup(tx.close)
        sent, stalled = await fill_until_stalled(lambda i: tx.send(pattern(i, size)))
        outcomes: List[Any] = []
        swallow(stalled, outcomes)
        # One read, of at most STREAMING_READ bytes (see its comment), brings
        # at most this many frames of 16 KiB.
        per_read = STREAMING_READ // size + 1
        self.assertLessEqual(rx.queued, 8 + per_read)
        self.assertGreater(rx.queued, 8)
        self.assertEqual(self._reading(rx), [False], "the receiving transport was not paused")
        # Still stalled, still bounded, a while later.
        await sleep(0.3)
        self.assertEqual(outcomes, [])
        self.assertLessEqual(rx.queued, 8 + per_read)
        received: List[bytes] = []
        while rx.queued > 4:
            received.append(await rx.recv())
            if rx.queued > 4:
                self.assertEqual(self._reading(rx), [False], "resumed above the low-water mark")
        self.assertEqual(self._reading(rx), [True], "not resumed at half the high-water mark")
        # Drain everything; the stalled send completes.
        more = 50
        async def send_rest() -> None:
            await stalled
            for i in range(sent, sent + more):
                await tx.send(pattern(i, size))

        rest = Deferred.fromCoroutine(send_rest())
        peak = 0
        while len(received) < sent + more:
            peak = max(peak, rx.queued)
            received.extend(await rx.recv_many())
        await rest
        self.assertLessEqual(peak, 8 + per_read)
        for i, item in enumerate(received):
            self.assertEqual(item, pattern(i, size), f"item {i} wrong")

    @as_deferred
    async def test_recv_high_water_bytes_pauses(self) -> None:
        """
        C{recv_high_water_bytes} bounds the queued bytes whatever the item
        count: with 256 KiB, 64 KiB items pause reading after about 5 items.
        """
        limit = 256 * 1024
        rx = await mpsc.receiver_on(
            LOOPBACK, codec=RawCodec(), recv_high_water=100_000, recv_high_water_bytes=limit
        )
        self.addCleanup(rx.close)
        tx = await mpsc.sender_to(rx.local_address, codec=RawCodec())
        self.addCleanup(tx.close)
        sent, stalled = await fill_until_stalled(lambda i: tx.send(pattern(i, ITEM)))
        swallow(stalled)
        queue = rx._core.queue
        assert queue is not None
        # One read can push the queue at most one read past the bound.
        self.assertLessEqual(queue.queued_bytes, limit + STREAMING_READ)
        self.assertEqual(self._reading(rx), [False])
        received: List[bytes] = []
        while len(received) < sent:
            received.extend(await rx.recv_many())
            self.assertLessEqual(queue.queued_bytes, limit + STREAMING_READ)
        self.assertEqual(received, [pattern(i, ITEM) for i in range(sent)])

    @as_deferred
    async def test_pause_covers_every_connection(self) -> None:
        """
        A full queue pauses every connection of a multi-connection
        receiver, not only the one whose frame filled it; all resume.
        """
        size = 16 * 1024
        rx = await mpsc.receiver_on(LOOPBACK, codec=RawCodec(), recv_high_water=8)
        self.addCleanup(rx.close)
        senders = []
        for n in range(2):
            tx = await mpsc.sender_to(rx.local_address, codec=RawCodec())
            self.addCleanup(tx.close)
            senders.append(tx)
        await eventually(lambda: rx.queued == 0 and len(rx.addresses) == 2)
        stalls = []
        counts = []
        def sender(tx: Any, n: int) -> Callable[[int], Deferred[Any]]:
            return lambda i: tx.send(bytes([n]) + pattern(i, size))  # type: ignore[no-any-return]

        for n, tx in enumerate(senders):
            sent, stalled = await fill_until_stalled(sender(tx, n))
            stalls.append(stalled)
            counts.append(sent)
        self.assertEqual(self._reading(rx), [False, False])
        got: List[List[bytes]] = [[], []]
        total = sum(counts)
        n_items = 0
        while n_items < total:
            for item in await rx.recv_many():
                got[item[0]].append(item[1:])
                n_items += 1
        for n in range(2):
            self.assertEqual(got[n], [pattern(i, size) for i in range(counts[n])])
            await stalls[n]
        self.assertEqual(self._reading(rx), [True, True])


class BroadcastSendBackpressureTests(TestCase):
    """
    Send-side bounds of a broadcast sender with one receiver that stopped
    reading and one that reads.
    """

    timeout = 60

    @as_deferred
    async def test_full_receiver_holds_the_broadcast_for_everyone(self) -> None:
        """
        When one receiver's queue is full, a broadcast C{send()} waits and
        reaches no receiver until every one has room: the item is never
        delivered to some and refused to others.  Once the stuck receiver
        reads again, both get every item, in order.
        """
        from tsyncp_tx import broadcast

        high_water = 4 * ITEM + 100
        tx = await broadcast.sender_on(LOOPBACK, codec=RawCodec(), send_high_water=high_water)
        self.addCleanup(tx.close)
        stuck = await connect_raw(self, tx.local_address)
        stuck.pause()
        reader = await broadcast.receiver_to(tx.local_address, codec=RawCodec())
        self.addCleanup(reader.close)
        await eventually(lambda: len(tx) == 2)
        received: List[bytes] = []
        reading = {"on": True}

        async def read() -> None:
            while reading["on"]:
                received.extend(await reader.recv_many())

        swallow(Deferred.fromCoroutine(read()))
        sent, stalled = await fill_until_stalled(lambda i: tx.send(pattern(i, ITEM)))
        outcomes: List[Any] = []
        swallow(stalled, outcomes)
        # A careless sender: 12 more sends without waiting.
        for i in range(sent, sent + 12):
            d = tx.send(pattern(i, ITEM))
            self.assertFalse(d.called)
            swallow(d, outcomes)
        await sleep(0.5)
        # The stuck receiver's queue takes at most 4 frames under the bound
        # plus one beyond it; every later item waits for both receivers.
        numbers = [int.from_bytes(item[:4], "big") for item in received]
        self.assertFalse(
            [n for n in numbers if n >= sent + 5],
            f"the reading receiver got items the stuck one had no room for (sent={sent})",
        )
        self.assertLessEqual(len(outcomes), 1 + 5, "sends beyond the bound did not wait")
        stuck.resume()
        total = sent + 12
        await eventually(lambda: len(stuck.frames) == total and len(received) == total, timeout=30)
        reading["on"] = False
        await eventually(lambda: len(outcomes) == 13)
        self.assertEqual(outcomes, [2] * 13)
        self.assertEqual([int.from_bytes(f[:4], "big") for f in received], list(range(total)))
        self.assertEqual([int.from_bytes(f[:4], "big") for f in stuck.frames], list(range(total)))
