"""
Tests for L{tsyncp_tx.pool.FramedProtocol} over
C{twisted.internet.testing.StringTransport}, with a fake L{IFrameSink}.
"""

from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple

from twisted.internet.address import IPv4Address
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import directlyProvides, implementer
from zope.interface.verify import verifyObject

from tsyncp_tx.errors import ConnectionClosed, SendQueueFull
from tsyncp_tx.framing import (
    FrameDecoder,
    FrameTooLarge,
    encode_frame,
    encode_frames,
    encode_header,
)
from tsyncp_tx.pool import FramedProtocol, IFrameSink

PEER = IPv4Address("TCP", "127.0.0.1", 40001)
OTHER_PEER = IPv4Address("TCP", "127.0.0.1", 40002)


@implementer(IFrameSink)
class FakeSink:
    """
    Records what a L{FramedProtocol} tells its owner.

    @ivar keep: What C{connection_made} answers.
    @ivar made: Connections announced.
    @ivar received: C{(connection, frames)} per call.
    @ivar lost: C{(connection, reason)} per call.
    @ivar drained: Connections reported drained, per call.
    @ivar writable: The connection's C{writable}, per change reported.
    """

    def __init__(self, keep: bool = True) -> None:
        self.keep = keep
        self.made: List[FramedProtocol] = []
        self.received: List[Tuple[FramedProtocol, List[bytes]]] = []
        self.lost: List[Tuple[FramedProtocol, Failure]] = []
        self.drained: List[FramedProtocol] = []
        self.writable: List[bool] = []

    def connection_made(self, connection: FramedProtocol) -> bool:
        self.made.append(connection)
        return self.keep

    def frames_received(self, connection: FramedProtocol, frames: List[bytes]) -> None:
        self.received.append((connection, frames))

    def connection_lost(self, connection: FramedProtocol, reason: Failure) -> None:
        self.lost.append((connection, reason))

    def connection_drained(self, connection: FramedProtocol) -> None:
        self.drained.append(connection)

    def writable_changed(self, connection: FramedProtocol) -> None:
        self.writable.append(connection.writable)

    def payloads(self) -> List[bytes]:
        """
        @return: Every payload received, in order.
        """
        return [p for _, frames in self.received for p in frames]


class RecordingTransport(StringTransport):
    """
    A C{StringTransport} that also records each C{write} and
    C{writeSequence} call with the objects it was given.

    @ivar calls: C{("write", data)} or C{("writeSequence", [parts])}.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: List[Tuple[str, Any]] = []

    def write(self, data: bytes) -> None:
        self.calls.append(("write", data))
        super().write(data)

    def writeSequence(self, data: Sequence[bytes]) -> None:
        parts = list(data)
        self.calls.append(("writeSequence", parts))
        super().writeSequence(parts)


def connect(
    sink: Optional[FakeSink] = None, peer: IPv4Address = PEER, **options: Any
) -> Tuple[FramedProtocol, RecordingTransport, FakeSink, Clock]:
    """
    Make a protocol connected to a recording transport.

    The protocol gets its own C{Clock} (so end-of-turn writes of small
    frames are run with C{clock.advance(0)} and nothing is left on the
    global reactor) and C{nodelay=False} (a C{StringTransport} has no
    socket options) unless C{options} say otherwise.

    @param sink: The sink (a new keeping one by default).
    @param peer: The peer address the transport reports.
    @param options: C{FramedProtocol} options.
    @return: The protocol, its transport, its sink and its clock.
    """
    if sink is None:
        sink = FakeSink()
    options.setdefault("clock", Clock())
    options.setdefault("nodelay", False)
    protocol = FramedProtocol(sink, **options)
    transport = RecordingTransport(peerAddress=peer)
    protocol.makeConnection(transport)
    return protocol, transport, sink, options["clock"]


def fired(d: "Deferred[Any]") -> bool:
    """
    @return: Whether C{d} has a result.
    """
    return bool(d.called)


class ConnectionTests(SynchronousTestCase):
    """
    Connection set-up and teardown.
    """

    def test_fake_sink_is_a_sink(self) -> None:
        """
        The fake provides the interface it stands in for.
        """
        self.assertTrue(verifyObject(IFrameSink, FakeSink()))

    def test_connection_made(self) -> None:
        """
        On connection the protocol learns its peer address, registers as
        a streaming producer and tells the sink.
        """
        protocol, transport, sink, clock = connect()
        self.assertEqual(protocol.address, ("127.0.0.1", 40001))
        self.assertIs(transport.producer, protocol)
        self.assertTrue(transport.streaming)
        self.assertEqual(sink.made, [protocol])
        self.assertTrue(protocol.kept)
        self.assertFalse(transport.disconnecting)

    def test_own_state_in_slots(self) -> None:
        """
        Everything the protocol keeps, through a connection's whole life,
        is in its slots: its instance dictionary holds only what Twisted's
        C{Protocol} sets, far below the 29 attributes past which CPython
        3.11 makes every attribute access on the hot paths slower.
        """
        protocol, transport, sink, clock = connect(send_high_water=10)
        protocol.dataReceived(encode_frame(b"x") * 3)
        protocol.write_frame(b"\x01", b"y")
        protocol.write_frame(encode_header(300 * 1024), b"z" * (300 * 1024))
        protocol.pauseProducing()
        waiting = protocol.send_frame(b"w")
        protocol.pause_reading()
        protocol.resume_reading()
        protocol.resumeProducing()
        clock.advance(0)
        self.assertTrue(fired(waiting))
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertLessEqual(set(vars(protocol)), {"transport", "connected", "factory"})

    def test_refused_by_sink(self) -> None:
        """
        A sink that refuses the connection makes the protocol close it and
        hear nothing of its frames or its end.
        """
        protocol, transport, sink, clock = connect(FakeSink(keep=False))
        self.assertTrue(transport.disconnecting)
        self.assertIsNone(transport.producer)
        protocol.dataReceived(encode_frame(b"x"))
        self.assertEqual(sink.received, [])
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(sink.lost, [])

    def test_connection_lost_reported(self) -> None:
        """
        The end of a kept connection goes to the sink with its reason.
        """
        protocol, transport, sink, clock = connect()
        reason = Failure(ConnectionLost("reset"))
        protocol.connectionLost(reason)
        self.assertEqual(sink.lost, [(protocol, reason)])
        self.assertIs(protocol.disconnected_reason, reason)

    def test_truncated_stream_logged(self) -> None:
        """
        A clean close in the middle of a frame is logged with the peer
        address and the discarded byte count.
        """
        protocol, transport, sink, clock = connect()
        protocol.dataReceived(b"\x05abc")
        with capturedLogs() as events:
            protocol.connectionLost(Failure(ConnectionDone()))
        messages = [formatEvent(e) for e in events if e.get("log_level") == LogLevel.error]
        self.assertEqual(len(messages), 1, messages)
        self.assertIn("127.0.0.1:40001", messages[0])
        self.assertIn("4 bytes", messages[0])


class ReceivingTests(SynchronousTestCase):
    """
    Incoming bytes become frames handed to the sink.
    """

    def test_one_list_per_data_received(self) -> None:
        """
        All frames completed by one C{dataReceived} go to the sink as one
        list, with the connection.
        """
        protocol, transport, sink, clock = connect()
        protocol.dataReceived(encode_frames([b"a", b"bb", b""]))
        self.assertEqual(sink.received, [(protocol, [b"a", b"bb", b""])])

    def test_split_frames(self) -> None:
        """
        Frames split across calls are reassembled; a call completing no
        frame does not call the sink.
        """
        protocol, transport, sink, clock = connect()
        stream = encode_frames([b"hello", b"y" * 300, b"z"])
        protocol.dataReceived(stream[:3])
        self.assertEqual(sink.received, [])
        protocol.dataReceived(stream[3:8])
        self.assertEqual(sink.received, [(protocol, [b"hello"])])
        protocol.dataReceived(stream[8:100])
        self.assertEqual(len(sink.received), 1)
        protocol.dataReceived(stream[100:])
        self.assertEqual(sink.received[1:], [(protocol, [b"y" * 300, b"z"])])

    def test_byte_by_byte(self) -> None:
        """
        One byte per call still yields every frame in order.
        """
        protocol, transport, sink, clock = connect()
        payloads = [b"", b"a" * 127, b"b" * 128, b"c" * 20000]
        for byte in encode_frames(payloads):
            protocol.dataReceived(bytes((byte,)))
        self.assertEqual(sink.payloads(), payloads)

    def test_framing_error_closes_only_that_connection(self) -> None:
        """
        An oversized header aborts its connection, with an error log naming
        the peer and the reason; a second connection with the same sink
        keeps receiving.
        """
        sink = FakeSink()
        bad, bad_transport, _, _ = connect(sink, PEER)
        good, good_transport, _, _ = connect(sink, OTHER_PEER)
        with capturedLogs() as events:
            bad.dataReceived(encode_frame(b"ok") + b"\xe6\x40\x00\x00")  # 100 MiB
        self.assertTrue(bad_transport.disconnecting)
        self.assertTrue(bad_transport.disconnected)  # aborted, not flushed
        self.assertFalse(good_transport.disconnecting)
        errors = [formatEvent(e) for e in events if e.get("log_level") == LogLevel.error]
        self.assertEqual(len(errors), 1, errors)
        self.assertIn("127.0.0.1:40001", errors[0])
        self.assertIn(str(100 * 1024 * 1024), errors[0])
        self.assertIn(str(8 * 1024 * 1024), errors[0])
        self.assertEqual([e.get("peer") for e in events if e.get("log_level") == LogLevel.error], ["127.0.0.1:40001"])
        # The good frame ahead of the bad header in the same read was
        # delivered before the connection was dropped.
        self.assertEqual(sink.received, [(bad, [b"ok"])])
        good.dataReceived(encode_frame(b"still here"))
        self.assertEqual(sink.received[1:], [(good, [b"still here"])])

    def test_custom_max_frame_length(self) -> None:
        """
        The protocol's C{max_frame_length} applies to incoming frames.
        """
        protocol, transport, sink, clock = connect(max_frame_length=4)
        protocol.dataReceived(encode_frame(b"1234"))
        self.assertEqual(sink.payloads(), [b"1234"])
        with capturedLogs():
            protocol.dataReceived(encode_frame(b"12345"))
        self.assertTrue(transport.disconnecting)
        self.assertEqual(sink.payloads(), [b"1234"])


class SendingTests(SynchronousTestCase):
    """
    Outgoing frames and their flow control.
    """

    def test_send_frame_small(self) -> None:
        """
        A small frame is accepted at once (its Deferred has already fired)
        and written as header and payload by the end of the reactor turn.
        """
        protocol, transport, sink, clock = connect()
        d = protocol.send_frame(b"hello")
        self.assertTrue(fired(d))
        self.assertIsNone(self.successResultOf(d))
        clock.advance(0)
        self.assertEqual(transport.value(), b"\x05hello")

    def test_small_frames_of_one_turn_combined(self) -> None:
        """
        Small frames sent in one reactor turn reach the transport in one
        C{write}, in order, at the end of the turn.
        """
        protocol, transport, sink, clock = connect()
        payloads = [b"a", b"bb", b"c" * 300]
        for payload in payloads:
            protocol.send_frame(payload)
        clock.advance(0)
        self.assertEqual(len(transport.calls), 1)
        self.assertEqual(transport.value(), encode_frames(payloads))
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_replies_of_one_delivery_combined(self) -> None:
        """
        Over a transport that is not a socket (TLS, here a recording
        transport), the frames written during one delivery reach it in one
        C{write} when C{dataReceived} returns, no timer involved.
        """
        protocol, transport, sink, clock = connect(_Replier())
        protocol.dataReceived(encode_frames([b"a", b"b", b"c"]))
        self.assertEqual(len(transport.calls), 1)
        self.assertEqual(transport.value(), encode_frames([b"re:a", b"re:b", b"re:c"]))
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_combined_frames_written_at_64k(self) -> None:
        """
        Combined small frames do not wait for the end of the turn once 64
        KiB are pending: memory stays bounded within one turn.
        """
        protocol, transport, sink, clock = connect()
        for _ in range(10):
            protocol.send_frame(b"m" * 10000)
        # At most 64 KiB (plus the frame that crossed the line) still wait.
        self.assertGreaterEqual(len(transport.value()), 10 * 10002 - 64 * 1024 - 10002)
        clock.advance(0)
        self.assertEqual(FrameDecoder().feed(transport.value()), [b"m" * 10000] * 10)

    def test_small_large_small_order(self) -> None:
        """
        A large frame sent between small ones goes out after the earlier
        small ones and before the later ones.
        """
        protocol, transport, sink, clock = connect()
        large = b"L" * 20000
        protocol.send_frame(b"first")
        protocol.send_frame(large)
        protocol.send_frame(b"last")
        clock.advance(0)
        self.assertEqual(FrameDecoder().feed(transport.value()), [b"first", large, b"last"])

    def test_order_kept_across_pause_and_resume(self) -> None:
        """
        A small frame accepted before the transport paused the protocol
        still goes out before the frames queued during the pause, even when
        the transport resumes before the end of the turn.
        """
        protocol, transport, sink, clock = connect()
        protocol.send_frame(b"A")
        protocol.pauseProducing()
        queued = protocol.send_frame(b"B")
        protocol.resumeProducing()
        self.successResultOf(queued)
        clock.advance(0)
        self.assertEqual(FrameDecoder().feed(transport.value()), [b"A", b"B"])

    def test_nodelay_on_string_transport(self) -> None:
        """
        The default C{nodelay=True} does not break a transport without socket
        options, such as C{StringTransport} (whose C{getHost()} is an
        C{IPv4Address}): the protocol still connects.
        """
        protocol = FramedProtocol(FakeSink(), clock=Clock())
        transport = StringTransport(peerAddress=PEER)
        protocol.makeConnection(transport)
        self.assertTrue(protocol.kept)
        self.assertIs(transport.producer, protocol)

    def test_send_frame_large_uses_write_sequence(self) -> None:
        """
        A large payload goes to C{writeSequence} as C{(header, payload)}: the
        payload object itself, not a concatenated copy.
        """
        protocol, transport, sink, clock = connect()
        payload = b"L" * 1_000_000
        d = protocol.send_frame(payload)
        self.assertTrue(fired(d))
        self.assertEqual(len(transport.calls), 1)
        kind, parts = transport.calls[0]
        self.assertEqual(kind, "writeSequence")
        self.assertEqual(len(parts), 2)
        self.assertEqual(parts[0], bytes.fromhex("cf4240"))  # 1,000,000 = 0x0f4240
        self.assertIs(parts[1], payload)
        self.assertEqual(FrameDecoder().feed(transport.value()), [payload])

    def test_send_frame_sizes_round_trip(self) -> None:
        """
        Frames of every header size written by C{send_frame} decode back.
        """
        protocol, transport, sink, clock = connect()
        payloads = [b"", b"a", b"b" * 127, b"c" * 128, b"d" * 16383, b"e" * 16384, b"f" * 2097152]
        for payload in payloads:
            protocol.send_frame(payload)
        clock.advance(0)
        self.assertEqual(FrameDecoder().feed(transport.value()), payloads)

    def test_send_too_large(self) -> None:
        """
        A payload over C{max_frame_length} raises C{FrameTooLarge} and
        nothing is written.
        """
        protocol, transport, sink, clock = connect(max_frame_length=10)
        e = self.assertRaises(FrameTooLarge, protocol.send_frame, b"x" * 11)
        self.assertEqual((e.length, e.limit), (11, 10))
        self.assertEqual(transport.value(), b"")

    def test_write_frames_one_call(self) -> None:
        """
        C{write_frames} hands many frames to the transport in one call.
        """
        protocol, transport, sink, clock = connect()
        payloads = [b"a", b"bc", b"d" * 200]
        self.assertIsNone(protocol.write_frames(payloads))
        self.assertEqual(len(transport.calls), 1)
        self.assertEqual(transport.value(), encode_frames(payloads))

    def test_write_frames_after_small_frame(self) -> None:
        """
        C{write_frames} goes out after a small frame sent before it.
        """
        protocol, transport, sink, clock = connect()
        protocol.send_frame(b"before")
        protocol.write_frames([b"x", b"y"])
        clock.advance(0)
        self.assertEqual(FrameDecoder().feed(transport.value()), [b"before", b"x", b"y"])

    def test_write_frames_large_payload_not_copied(self) -> None:
        """
        As its docstring says, C{write_frames} uses C{writeSequence}: a large
        payload among the frames reaches the transport as the same object,
        not copied into a joined buffer.
        """
        protocol, transport, sink, clock = connect()
        large = b"W" * 1_000_000
        protocol.write_frames([b"small", large])
        self.assertEqual([kind for kind, _ in transport.calls], ["writeSequence"])
        [(_, parts)] = transport.calls
        self.assertTrue(any(part is large for part in parts))
        self.assertEqual(FrameDecoder().feed(transport.value()), [b"small", large])

    def test_paused_sends_queue_and_fire_in_order(self) -> None:
        """
        While the transport has paused the protocol, sends queue and return
        unfired Deferreds; C{resumeProducing} writes them in order and fires
        them in order.
        """
        protocol, transport, sink, clock = connect()
        protocol.pauseProducing()
        self.assertFalse(protocol.writable)
        order: List[int] = []
        ds = [protocol.send_frame(bytes([i]) * (i + 1)) for i in range(5)]
        for i, d in enumerate(ds):
            self.assertFalse(fired(d))
            d.addCallback(lambda _, i: order.append(i), i)
        self.assertEqual(transport.value(), b"")
        self.assertEqual(protocol.queued_bytes, sum(1 + i + 1 for i in range(5)))
        protocol.resumeProducing()
        self.assertEqual(order, [0, 1, 2, 3, 4])
        self.assertEqual(
            FrameDecoder().feed(transport.value()), [bytes([i]) * (i + 1) for i in range(5)]
        )
        self.assertEqual(protocol.queued_bytes, 0)
        self.assertTrue(protocol.writable)

    def test_queued_large_frame_not_copied(self) -> None:
        """
        A large frame queued while paused is still written as
        C{(header, payload)} with the same payload object.
        """
        protocol, transport, sink, clock = connect()
        protocol.pauseProducing()
        payload = b"Q" * 100_000
        d = protocol.send_frame(payload)
        protocol.resumeProducing()
        self.successResultOf(d)
        [(kind, parts)] = transport.calls
        self.assertEqual(kind, "writeSequence")
        self.assertIs(parts[1], payload)

    def test_cancel_queued_send(self) -> None:
        """
        Cancelling a queued send removes its frame: it is never written,
        the others are, in order.
        """
        protocol, transport, sink, clock = connect()
        protocol.pauseProducing()
        first = protocol.send_frame(b"one")
        second = protocol.send_frame(b"two")
        third = protocol.send_frame(b"three")
        second.cancel()
        self.failureResultOf(second, CancelledError)
        self.assertEqual(protocol.queued_bytes, 4 + 6)
        protocol.resumeProducing()
        self.successResultOf(first)
        self.successResultOf(third)
        self.assertEqual(FrameDecoder().feed(transport.value()), [b"one", b"three"])

    def test_connection_lost_fails_queued(self) -> None:
        """
        Frames still queued when the connection is lost fail with
        C{ConnectionClosed} naming the peer; later sends fail at once.
        """
        protocol, transport, sink, clock = connect()
        protocol.pauseProducing()
        ds = [protocol.send_frame(b"a"), protocol.send_frame(b"b")]
        protocol.connectionLost(Failure(ConnectionLost("reset by peer")))
        for d in ds:
            failure = self.failureResultOf(d, ConnectionClosed)
            self.assertEqual(failure.value.address, ("127.0.0.1", 40001))
            self.assertIn("127.0.0.1:40001", str(failure.value))
            self.assertIn("reset by peer", str(failure.value))
        self.assertEqual(protocol.queued_bytes, 0)
        late = protocol.send_frame(b"c")
        self.failureResultOf(late, ConnectionClosed)

    def test_clean_close_fails_queued_without_reason(self) -> None:
        """
        After a clean close the C{ConnectionClosed} has no underlying
        reason and says "closed".
        """
        protocol, transport, sink, clock = connect()
        protocol.pauseProducing()
        d = protocol.send_frame(b"a")
        protocol.connectionLost(Failure(ConnectionDone()))
        failure = self.failureResultOf(d, ConnectionClosed)
        self.assertIsNone(failure.value.reason)
        self.assertIn("closed", str(failure.value))

    def test_send_high_water(self) -> None:
        """
        Once C{send_high_water} bytes are queued, a send fails at once with
        C{SendQueueFull} (nothing queued); below it, one more frame of any
        size is accepted.  After the queue drains, sends are accepted again
        and the sink hears that the connection drained.  (Channels wait for
        C{has_room} before sending, so their users never see this error.)
        """
        protocol, transport, sink, clock = connect(send_high_water=100)
        protocol.pauseProducing()
        accepted = [protocol.send_frame(b"x" * 39) for _ in range(2)]  # 2 * 40 bytes
        self.assertTrue(protocol.has_room)
        accepted.append(protocol.send_frame(b"w" * 49))  # 130: one frame beyond
        self.assertFalse(protocol.has_room)
        refused = protocol.send_frame(b"y" * 39)
        failure = self.failureResultOf(refused, SendQueueFull)
        self.assertEqual(failure.value.limit, 100)
        self.assertEqual(failure.value.queued, 130)
        self.assertIn("127.0.0.1:40001", str(failure.value))
        self.assertEqual(protocol.queued_bytes, 130)
        self.assertEqual(sink.drained, [])
        protocol.resumeProducing()
        for d in accepted:
            self.successResultOf(d)
        self.assertEqual(sink.drained, [protocol])
        self.assertTrue(protocol.has_room)
        self.assertEqual(
            FrameDecoder().feed(transport.value()), [b"x" * 39, b"x" * 39, b"w" * 49]
        )

    def test_close_flushes_then_loses_connection(self) -> None:
        """
        C{close()} while frames are queued waits for them to be written,
        then loses the connection; its Deferred fires once the connection
        is gone.
        """
        protocol, transport, sink, clock = connect()
        protocol.pauseProducing()
        sent = protocol.send_frame(b"last words")
        closed = protocol.close()
        self.assertFalse(transport.disconnecting)
        self.assertFalse(fired(closed))
        protocol.resumeProducing()
        self.successResultOf(sent)
        self.assertEqual(FrameDecoder().feed(transport.value()), [b"last words"])
        self.assertTrue(transport.disconnecting)
        self.assertFalse(transport.disconnected)  # a flushing close, not an abort
        self.assertIsNone(transport.producer)
        self.assertFalse(fired(closed))
        protocol.connectionLost(Failure(ConnectionDone()))
        self.successResultOf(closed)

    def test_close_with_empty_queue(self) -> None:
        """
        With nothing queued C{close()} loses the connection at once; a
        send after C{close()} fails with C{ConnectionClosed}.
        """
        protocol, transport, sink, clock = connect()
        closed = protocol.close()
        self.assertTrue(transport.disconnecting)
        protocol.pauseProducing()
        self.failureResultOf(protocol.send_frame(b"too late"), ConnectionClosed)
        protocol.connectionLost(Failure(ConnectionDone()))
        self.successResultOf(closed)
        self.successResultOf(protocol.close())

    def test_callbacks_sending_again_keep_order(self) -> None:
        """
        A send made from a queued send's callback goes out after every frame
        that was queued before it.
        """
        protocol, transport, sink, clock = connect()
        protocol.pauseProducing()
        first = protocol.send_frame(b"1")
        first.addCallback(lambda _: protocol.send_frame(b"4"))
        protocol.send_frame(b"2")
        protocol.send_frame(b"3")
        protocol.resumeProducing()
        clock.advance(0)
        self.assertEqual(FrameDecoder().feed(transport.value()), [b"1", b"2", b"3", b"4"])


class ReadFlowControlTests(SynchronousTestCase):
    """
    C{pause_reading}/C{resume_reading} drive the transport as a producer.
    """

    def test_pause_and_resume(self) -> None:
        """
        They call the transport's C{pauseProducing}/C{resumeProducing}, once
        per state change.
        """
        protocol, transport, sink, clock = connect()
        calls: List[str] = []
        original_pause, original_resume = transport.pauseProducing, transport.resumeProducing

        def pause() -> None:
            calls.append("pause")
            original_pause()

        def resume() -> None:
            calls.append("resume")
            original_resume()

        transport.pauseProducing = pause  # type: ignore[method-assign]
        transport.resumeProducing = resume  # type: ignore[method-assign]
        protocol.pause_reading()
        self.assertEqual(transport.producerState, "paused")
        protocol.pause_reading()
        self.assertEqual(calls, ["pause"])
        protocol.resume_reading()
        self.assertEqual(transport.producerState, "producing")
        protocol.resume_reading()
        self.assertEqual(calls, ["pause", "resume"])

    def test_not_after_connection_lost(self) -> None:
        """
        After the connection is lost they do nothing (no error).
        """
        protocol, transport, sink, clock = connect()
        protocol.connectionLost(Failure(ConnectionDone()))
        protocol.pause_reading()
        protocol.resume_reading()
        self.assertEqual(transport.producerState, "producing")


class JoinTests(SynchronousTestCase):
    """
    A connection joins its sink when it is made, or over TLS when the
    handshake completes; L{FramedProtocol.when_joined} reports which.
    """

    def tls_connection(self, sink: FakeSink) -> Tuple[FramedProtocol, StringTransport]:
        protocol = FramedProtocol(sink, clock=Clock(), nodelay=False)
        transport = StringTransport(peerAddress=PEER)
        directlyProvides(transport, ISSLTransport)
        protocol.makeConnection(transport)
        return protocol, transport

    def test_plain_joins_at_once(self) -> None:
        """
        Without TLS the sink hears of the connection when it is made.
        """
        protocol, _, sink, _ = connect()
        self.assertEqual(sink.made, [protocol])
        self.assertIs(self.successResultOf(protocol.when_joined()), protocol)

    def test_tls_joins_after_handshake(self) -> None:
        """
        Over TLS the sink hears of the connection, and C{when_joined}
        fires, only once the handshake has completed.
        """
        sink = FakeSink()
        protocol, _ = self.tls_connection(sink)
        joined = protocol.when_joined()
        self.assertEqual(sink.made, [])
        self.assertNoResult(joined)
        protocol.handshakeCompleted()
        self.assertEqual(sink.made, [protocol])
        self.assertIs(self.successResultOf(joined), protocol)

    def test_tls_handshake_failure(self) -> None:
        """
        A connection lost in its handshake never reaches the sink; it is
        logged, and C{when_joined} fails with C{ConnectionClosed} carrying
        the reason.
        """
        sink = FakeSink()
        protocol, _ = self.tls_connection(sink)
        joined = protocol.when_joined()
        with capturedLogs() as events:
            protocol.connectionLost(Failure(ConnectionLost("certificate verify failed")))
        error = self.failureResultOf(joined, ConnectionClosed).value
        self.assertIn("certificate verify failed", str(error))
        self.assertEqual(error.address, protocol.address)
        self.assertEqual((sink.made, sink.lost), ([], []))
        self.assertTrue(any("TLS handshake" in (formatEvent(e) or "") for e in events))
        self.failureResultOf(protocol.when_joined(), ConnectionClosed)

    def test_refused_by_sink(self) -> None:
        """
        A connection its sink refuses is closed and C{when_joined} fails.
        """
        protocol, transport, sink, _ = connect(FakeSink(keep=False))
        self.failureResultOf(protocol.when_joined(), ConnectionClosed)
        self.assertTrue(transport.disconnecting)

    def test_cancel_aborts(self) -> None:
        """
        Cancelling C{when_joined} during the handshake aborts the connection.
        """
        protocol, transport = self.tls_connection(FakeSink())
        joined = protocol.when_joined()
        joined.cancel()
        self.failureResultOf(joined, CancelledError)
        self.assertTrue(transport.disconnecting)


class _Replier(FakeSink):
    """
    A sink that answers every delivery by writing C{b"re:" + payload} to
    C{reply_to} (by default the connection the frames came on).
    """

    reply_to: Optional[FramedProtocol] = None

    def frames_received(self, connection: FramedProtocol, frames: List[bytes]) -> None:
        super().frames_received(connection, frames)
        target = self.reply_to or connection
        for payload in frames:
            reply = b"re:" + payload
            target.write_frame(encode_header(len(reply)), reply)


def connect_socket(
    case: SynchronousTestCase, sink: FakeSink, **options: Any
) -> Tuple[FramedProtocol, Any, Any, Clock]:
    """
    Make a protocol connected to a real socket transport over a socket pair
    (the reactor is never run).

    @param case: The test, which closes the sockets when done.
    @param sink: The protocol's sink.
    @param options: C{FramedProtocol} options.
    @return: The protocol, the transport, the socket at the other end
        (non-blocking) and the protocol's clock.
    """
    import socket

    from twisted.internet import tcp
    from twisted.internet.testing import MemoryReactor

    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    theirs.setblocking(False)
    clock = Clock()
    protocol = FramedProtocol(sink, clock=clock, nodelay=False, **options)
    transport = tcp.Connection(ours, protocol, MemoryReactor())
    transport.connected = 1  # as tcp.Server and tcp.Client set it
    transport.getPeer = lambda: PEER  # type: ignore[method-assign]
    transport.getHost = lambda: PEER  # type: ignore[method-assign]
    protocol.makeConnection(transport)
    case.addCleanup(theirs.close)
    case.addCleanup(ours.close)
    return protocol, transport, theirs, clock


class DirectWriteTests(SynchronousTestCase):
    """
    Over a real socket transport (a socket pair, the reactor never run), the
    turn's write of combined small frames (and a delivery's first frame)
    goes to the socket at once when the transport holds nothing unsent;
    otherwise it goes through the transport's buffer, in order.
    """

    def read_all(self, sock: Any) -> bytes:
        chunks: List[bytes] = []
        while True:
            try:
                chunk = sock.recv(1 << 20)
            except BlockingIOError:
                return b"".join(chunks)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)

    def test_reply_during_delivery_written_before_it_returns(self) -> None:
        """
        Frames written while received frames are delivered are on the
        socket when C{dataReceived} returns: no reactor turn, no timer.
        """
        protocol, transport, theirs, clock = connect_socket(self, _Replier())
        protocol.dataReceived(encode_frames([b"a", b"b"]))
        self.assertEqual(self.read_all(theirs), encode_frames([b"re:a", b"re:b"]))
        self.assertEqual(transport._tempDataLen, 0)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_first_reply_written_at_once(self) -> None:
        """
        The first frame written during a delivery is on the socket before
        the delivery's work goes on; later ones are combined and written
        when C{dataReceived} returns.
        """
        seen: List[bytes] = []

        class Replier(FakeSink):
            def frames_received(inner, connection: FramedProtocol, frames: List[bytes]) -> None:
                for reply in (b"one", b"two", b"three"):
                    connection.write_frame(encode_header(len(reply)), reply)
                    seen.append(self.read_all(theirs))

        protocol, transport, theirs, clock = connect_socket(self, Replier())
        protocol.dataReceived(encode_frame(b"x"))
        self.assertEqual(seen, [encode_frame(b"one"), b"", b""])
        self.assertEqual(self.read_all(theirs), encode_frames([b"two", b"three"]))
        self.assertEqual(transport._tempDataLen, 0)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_write_to_another_connection_during_delivery(self) -> None:
        """
        A frame written during one connection's delivery to another
        connection is also on that one's socket when C{dataReceived}
        returns.
        """
        sink = _Replier()
        other, _, other_end, _ = connect_socket(self, FakeSink())
        sink.reply_to = other
        protocol, _, theirs, _ = connect_socket(self, sink)
        protocol.dataReceived(encode_frame(b"x"))
        self.assertEqual(self.read_all(other_end), encode_frame(b"re:x"))
        self.assertEqual(self.read_all(theirs), b"")

    def test_outside_delivery_written_at_end_of_turn(self) -> None:
        """
        Frames sent outside a delivery wait for the end of the reactor turn,
        then go to the socket at once, combined.
        """
        protocol, transport, theirs, clock = connect_socket(self, FakeSink())
        protocol.send_frame(b"one")
        protocol.send_frame(b"two")
        self.assertEqual(self.read_all(theirs), b"")
        clock.advance(0)
        self.assertEqual(self.read_all(theirs), encode_frames([b"one", b"two"]))
        self.assertEqual(transport._tempDataLen, 0)

    def test_full_socket_falls_back_to_the_transport(self) -> None:
        """
        When the socket takes only part of a write, the rest waits in the
        transport's buffer, later writes queue behind it rather than jumping
        ahead on the socket, and the peer gets every byte in order.
        """
        protocol, transport, theirs, clock = connect_socket(self, FakeSink())
        payloads = [bytes([i % 251]) * 1000 for i in range(3000)]  # ~3 MB
        for payload in payloads[:1500]:
            protocol.send_frame(payload)
        clock.advance(0)
        # More than a socket pair's buffers hold: some waits in the transport.
        self.assertGreater(transport._tempDataLen + len(transport.dataBuffer), 0)
        for payload in payloads[1500:]:
            protocol.send_frame(payload)
        clock.advance(0)
        received = self.read_all(theirs)
        for _ in range(10_000):
            if not (transport._tempDataLen or transport.offset < len(transport.dataBuffer)):
                break
            transport.doWrite()
            received += self.read_all(theirs)
        decoder = FrameDecoder()
        self.assertEqual(decoder.feed(received), payloads)


class LargeSizeTests(SynchronousTestCase):
    """
    A connection that streams (a read fills its read size, or its
    transport's write buffer fills) or carries a large frame switches to
    512 KiB reads (and write buffer) and a 4 MiB per-turn send limit, unless
    the user chose sizes.
    """

    def test_switch_on_full_read(self) -> None:
        """
        A read as large as the read size (more was waiting) switches; a
        shorter one does not.
        """
        protocol, transport, _, _ = connect_socket(self, FakeSink())
        protocol.dataReceived(encode_frames([b"x" * 1000] * 65))  # 65,130 bytes
        self.assertEqual(transport.bufferSize, 65536)
        protocol.dataReceived(encode_frames([b"x" * 1022] * 64))  # 65,536 bytes
        self.assertEqual(transport.bufferSize, 512 * 1024)
        self.assertEqual(transport.SEND_LIMIT, 4 * 1024 * 1024)

    def test_switch_back_on_small_read(self) -> None:
        """
        Once switched, two reads in a row smaller than Twisted's read size,
        with no large frame under way, go back to Twisted's sizes (a large
        read allocates its full size even to bring a few bytes); one small
        read, or small reads in the middle of a large frame, do not.
        """
        protocol, transport, _, _ = connect_socket(self, FakeSink())
        protocol.dataReceived(encode_frames([b"x" * 1022] * 64))  # full: switch
        self.assertEqual(transport.bufferSize, 512 * 1024)
        protocol.dataReceived(encode_frame(b"one"))
        protocol.dataReceived(encode_frames([b"x" * 1000] * 100))  # 100,200 bytes
        protocol.dataReceived(encode_frame(b"two"))
        self.assertEqual(transport.bufferSize, 512 * 1024)
        protocol.dataReceived(encode_frame(b"three"))
        self.assertEqual(transport.bufferSize, 65536)
        self.assertEqual(transport.SEND_LIMIT, 128 * 1024)
        protocol.dataReceived(encode_header(300 * 1024) + b"x" * 10)
        self.assertEqual(transport.bufferSize, 512 * 1024)
        protocol.dataReceived(b"x" * 10)
        protocol.dataReceived(b"x" * 10)
        self.assertEqual(transport.bufferSize, 512 * 1024)

    def test_switch_when_paused(self) -> None:
        """
        The transport pausing the connection (its write buffer is full)
        switches, so the next pause comes after 512 KiB, not 64 KiB.
        """
        protocol, transport, _, _ = connect_socket(self, FakeSink())
        protocol.pauseProducing()
        self.assertEqual(transport.bufferSize, 512 * 1024)
        self.assertEqual(transport.SEND_LIMIT, 4 * 1024 * 1024)
        self.assertFalse(protocol.writable)

    def test_switch_when_a_large_frame_is_announced(self) -> None:
        """
        Receiving switches as soon as a header announces a frame of 256 KiB
        or more, before its body arrives; small frames do not switch.
        """
        protocol, transport, _, _ = connect_socket(self, FakeSink())
        protocol.dataReceived(encode_frames([b"small"] * 100))
        self.assertEqual(transport.bufferSize, 65536)
        protocol.dataReceived(encode_header(300 * 1024) + b"x" * 10)
        self.assertEqual(transport.bufferSize, 512 * 1024)
        self.assertEqual(transport.SEND_LIMIT, 4 * 1024 * 1024)

    def test_switch_when_sending_a_large_frame(self) -> None:
        """
        Sending a frame of 256 KiB or more switches too.
        """
        protocol, transport, _, _ = connect_socket(self, FakeSink())
        protocol.send_frame(b"x" * 1000)
        self.assertEqual(transport.bufferSize, 65536)
        protocol.send_frame(b"x" * (256 * 1024))
        self.assertEqual(transport.bufferSize, 512 * 1024)

    def test_chosen_sizes_kept(self) -> None:
        """
        With C{read_size} and C{send_limit} given, those stay.
        """
        protocol, transport, _, _ = connect_socket(
            self, FakeSink(), read_size=128 * 1024, send_limit=256 * 1024
        )
        protocol.dataReceived(encode_header(300 * 1024))
        protocol.dataReceived(b"\x00" * (128 * 1024))  # a full read
        protocol.pauseProducing()
        self.assertEqual(transport.bufferSize, 128 * 1024)
        self.assertEqual(transport.SEND_LIMIT, 256 * 1024)
        protocol.dataReceived(b"\x00" * (300 * 1024))  # the frame ends
        protocol.dataReceived(b"\x00")  # small reads
        protocol.dataReceived(b"\x00")
        self.assertEqual(transport.bufferSize, 128 * 1024)
        self.assertEqual(transport.SEND_LIMIT, 256 * 1024)
