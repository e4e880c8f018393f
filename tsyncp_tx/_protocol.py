"""
L{FramedProtocol}: one connection's framing and flow control.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable, Deque, List, Optional, Sequence

from twisted.internet.abstract import FileDescriptor
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IAddress, IHandshakeListener, IPushProducer, ISSLTransport
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import Interface, implementer

from ._errors import ConnectionClosed, SendQueueFull, describe_address
from ._fired import fired_none
from ._framing import (
    MAX_FRAME_LENGTH,
    FrameDecoder,
    FramingError,
    encode_header,
    frame_parts,
)

#: Bytes queued per connection (beyond what the transport buffers) before
#: channels make C{send()} wait for room (and L{FramedProtocol.write_frame}
#: refuses with L{SendQueueFull}).
DEFAULT_SEND_HIGH_WATER = 16 * 1024 * 1024

# Payloads up to this size are joined with their header and combined with
# the other small frames of the same reactor turn into one transport write;
# larger ones go out as (header, payload) with writeSequence, uncopied.
_JOIN_BELOW = 16 * 1024

# Once a connection streams (a read fills the transport's read size, or the
# transport's write buffer fills and pauses it) or carries a frame of
# _LARGE_FRAME bytes, it reads up to _LARGE_READ_SIZE bytes at a time, lets
# that much wait in the transport's write buffer before pausing, and hands
# the socket up to _LARGE_SEND_LIMIT bytes per reactor turn (Twisted: 64
# KiB, 64 KiB and 128 KiB).  Streams of small and mid-size frames then cost
# fewer reactor turns and pause/resume cycles per frame (1 KiB items:
# 274-324k against 400-446k msgs/s; 16 KiB: 36-43k against 59-69k, in
# paired runs).
#
# Each read allocates its full size.  glibc serves blocks above its mmap
# threshold with a fresh mmap (page faults on every use), and raises that
# threshold to the largest block freed whole:
# - so a connection goes back to Twisted's sizes after two reads in a row
#   smaller than Twisted's read size with no large frame under way; a
#   512 KiB read that brings 100 bytes costs a fresh mapping (about 35 us
#   here, against 1 us for 64 KiB), which a request/response exchange after
#   a burst would pay on every read;
# - and reads are no larger than the frames (512 KiB, against 1 MiB), which
#   tend to stay below the threshold and reuse heap memory: 1 MB items ran
#   at 1.6-3.7 against 1.1-2.4 GB/s in paired runs, though the allocator's
#   state still makes single runs of either size vary by 2x
#   (docs/performance.md).
_LARGE_FRAME = 256 * 1024
_LARGE_READ_SIZE = 512 * 1024
_LARGE_SEND_LIMIT = 4 * 1024 * 1024
# Twisted's own sizes, which a connection goes back to (see above).
_READ_SIZE = FileDescriptor.bufferSize
_SEND_LIMIT = FileDescriptor.SEND_LIMIT
_NEVER = float("inf")

# Combined small frames are handed to the transport at the end of the
# reactor turn, or as soon as this many bytes are waiting.
_COMBINE_LIMIT = 64 * 1024


class IFrameSink(Interface):
    """
    The owner of L{FramedProtocol}s: it hears about their lives and frames.
    """

    def connection_made(connection: "FramedProtocol") -> bool:
        """
        A connection is up (over TLS: its handshake has succeeded).

        @param connection: The new connection.
        @return: C{True} to keep it; C{False} to refuse it (the caller then
            closes it).
        """

    def frames_received(connection: "FramedProtocol", frames: List[bytes]) -> None:
        """
        Complete payloads arrived, in order.

        @param connection: The connection they arrived on.
        @param frames: The payloads; the list is the sink's to keep.
        """

    def connection_lost(connection: "FramedProtocol", reason: Failure) -> None:
        """
        A connection this sink kept is gone.

        @param connection: The connection.
        @param reason: Why it ended (C{ConnectionDone} for a clean close).
        """

    def connection_drained(connection: "FramedProtocol") -> None:
        """
        The transport took queued frames: the connection's queue shrank.

        @param connection: The connection.
        """

    def writable_changed(connection: "FramedProtocol") -> None:
        """
        The connection's C{writable} flag changed (from the moment it
        connects, before C{connection_made}, to its loss).

        @param connection: The connection.
        """


def address_key(address: Optional[IAddress], serial: int) -> Any:
    """
    Turn a Twisted address into the form tsyncp_tx reports: C{(host, port)}
    for TCP, the path for a named UNIX socket, C{"unix:#<n>"} for an
    anonymous one.

    @param address: The Twisted address.
    @param serial: A number unique to the connection, for anonymous peers.
    @return: The address.
    """
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    if host is not None and port is not None:
        return (host, port)
    name = getattr(address, "name", None)
    if name:
        return name.decode("utf-8", "replace") if isinstance(name, bytes) else name
    return f"unix:#{serial}"


def _raw_transport(transport: Any) -> Any:
    # TLS wraps the TCP transport; socket options belong to the innermost one.
    seen = 0
    while seen < 4 and hasattr(transport, "transport") and transport.transport is not None:
        transport = transport.transport
        seen += 1
    return transport


_serials = iter(range(1, 1 << 62))


def _writes_directly(transport: Any) -> bool:
    # Twisted's socket transports hold every write until a later reactor
    # turn reports the socket writable.  When they hold nothing, the end of
    # turn write goes to the socket at once instead, as asyncio's transports
    # do (see FramedProtocol._write_out).  Only for transports that have the
    # buffer attributes this reads.
    return isinstance(transport, FileDescriptor) and all(
        hasattr(transport, name)
        for name in ("socket", "dataBuffer", "offset", "_tempDataLen", "_writeDisconnected")
    )


def at_end_of_turn(clock: Any, f: Callable[[], None]) -> Any:
    """
    Call C{f} once the current reactor turn ends.

    @param clock: The reactor, or C{None} for the global one (looked up now,
        not at import).
    @param f: What to call.
    @return: The reactor used, for the caller to keep.
    """
    if clock is None:
        from twisted.internet import reactor as clock
    clock.callLater(0, f)
    return clock


# Small frames written while received frames are being delivered (replies,
# releases, relayed items) are written when the outermost dataReceived
# returns, rather than a reactor turn later.
_delivering = 0
_held: List["FramedProtocol"] = []


def _write_held() -> None:
    held = _held[:]
    del _held[:]
    for connection in held:
        connection._write_out_later()


@implementer(IPushProducer, IHandshakeListener)
class FramedProtocol(Protocol):
    """
    One framed connection.

    Incoming bytes go through a L{FrameDecoder}; every complete payload of a
    C{dataReceived} call is handed to the L{IFrameSink} as one list.  A
    framing error closes this connection only, with a logged reason.

    Outgoing frames go straight to the transport while it accepts data.
    The protocol registers itself as a streaming producer, so when the
    transport's buffer fills it is paused; frames sent then wait in a bounded
    queue and their Deferreds fire once they are handed to the transport.

    @ivar address: The peer's address (see L{address_key}).
    @ivar sink: The owner, or C{None}.
    @ivar before_write: Called, when set, before this connection writes,
        queues or closes anything: its pool holds frames combined for all
        its connections (see L{StreamPool.broadcast}) and hands them over
        (L{write_combined}) so that they keep their place.
    """

    # Past 29 instance attributes CPython 3.11 gives up its compact
    # per-class attribute layout and every self.x on the hot paths gets
    # slower; slots keep them fast however many there are.
    __slots__ = (
        "sink",
        "max_frame_length",
        "decoder",
        "nodelay",
        "read_size",
        "send_limit",
        "send_high_water",
        "serial",
        "discarded",
        "address",
        "connected_",
        "writable",
        "kept",
        "_join_waiters",
        "_join_failure",
        "_paused",
        "_reading_paused",
        "_queue",
        "queued_bytes",
        "_closed",
        "_close_waiters",
        "_closing",
        "_clock",
        "_out",
        "_out_bytes",
        "_out_scheduled",
        "_raw",
        "_direct",
        "_large",
        "_small_reads",
        "before_write",
    )

    log = Logger()

    def __init__(
        self,
        sink: Optional[IFrameSink] = None,
        max_frame_length: int = MAX_FRAME_LENGTH,
        nodelay: bool = True,
        read_size: Optional[int] = None,
        send_limit: Optional[int] = None,
        send_high_water: int = DEFAULT_SEND_HIGH_WATER,
        clock: Any = None,
    ) -> None:
        """
        @param sink: Receives this connection's events and frames.
        @param max_frame_length: Largest payload accepted or sent.
        @param nodelay: Set C{TCP_NODELAY} on TCP connections.
        @param read_size: Bytes read from the socket per read (Twisted's
            C{bufferSize}, also the write buffer size beyond which the
            protocol is paused); C{None} keeps Twisted's 64 KiB until the
            connection streams (a read fills it, or the transport pauses
            the protocol) or carries a frame of 256 KiB or more, then
            512 KiB, and 64 KiB again after two reads in a row below it
            with no large frame under way.
        @param send_limit: Bytes handed to the socket per reactor turn
            (Twisted's C{SEND_LIMIT}); C{None} keeps Twisted's 128 KiB until
            that switch, then 4 MiB.
        @param send_high_water: Bytes of frames that may wait while the
            transport is paused before C{send_frame} refuses.
        @param clock: Schedules the end-of-turn write of combined small
            frames (default: the global reactor, looked up when needed).
        """
        self.sink = sink
        self.max_frame_length = max_frame_length
        self.decoder = FrameDecoder(max_frame_length)
        self.nodelay = nodelay
        self.read_size = read_size
        self.send_limit = send_limit
        self.send_high_water = send_high_water
        self.serial = next(_serials)
        #: Frames received and thrown away (at a send-only endpoint).
        self.discarded = 0
        self.address: Any = f"unconnected#{self.serial}"
        self.connected_ = False
        #: Whether a frame sent now goes straight to the transport: it is
        #: connected, not paused, and no frame waits in the queue.
        self.writable = False
        self.kept = False
        # when_joined() callers, until the sink keeps the connection (None
        # after) or it ends first (_join_failure).
        self._join_waiters: Optional[List[Deferred[FramedProtocol]]] = []
        self._join_failure: Optional[Failure] = None
        self._paused = False  # transport asked us to stop writing
        self._reading_paused = False
        self._queue: Deque[List[Any]] = deque()
        #: Bytes of frames waiting for the transport to accept more.
        self.queued_bytes = 0
        self._closed: Optional[Failure] = None
        self._close_waiters: List[Deferred[None]] = []
        self._closing = False
        self._clock = clock
        self._out: List[bytes] = []  # small frames combined for one write
        self._out_bytes = 0
        self._out_scheduled = False
        self._raw: Any = None  # the innermost transport, once connected
        # The transport, when it is a socket transport we may write to
        # directly (see _write_out).
        self._direct: Any = None
        self._large = False  # switched to large reads and writes
        self._small_reads = 0  # small reads in a row while large
        self.before_write: Optional[Callable[[], None]] = None

    # Connection life

    def connectionMade(self) -> None:
        """
        Configure the transport, register as its producer, tell the sink.
        """
        transport = self.transport
        assert transport is not None
        self.address = address_key(transport.getPeer(), self.serial)
        self.connected_ = True
        self._update_writable()
        raw = _raw_transport(transport)
        # UNIX sockets share TCP's transport class but refuse TCP options.
        if (
            self.nodelay
            and hasattr(raw, "setTcpNoDelay")
            and isinstance(raw.getHost(), (IPv4Address, IPv6Address))
        ):
            raw.setTcpNoDelay(True)
        self._raw = raw
        self._direct = raw if raw is transport and _writes_directly(raw) else None
        self._large = False
        self._size_transport(self.read_size, self.send_limit)
        transport.registerProducer(self, True)  # type: ignore[attr-defined]
        # Over TLS the peer is not known to be who it should be until the
        # handshake completes: it joins then (handshakeCompleted).
        if not ISSLTransport.providedBy(transport):
            self._join()

    def handshakeCompleted(self) -> None:
        """
        The TLS handshake succeeded: the connection joins its sink.
        """
        if self.connected_ and self._join_waiters is not None:  # not joined or failed yet
            self._join()

    def _join(self) -> None:
        if self.sink is not None and not self.sink.connection_made(self):
            refused = Exception("this channel refused the connection (see its log)")
            self._settle_join(Failure(ConnectionClosed(self.address, refused)))
            self._lose_connection()
            return
        self.kept = self.sink is not None
        self._settle_join(None)

    def _settle_join(self, failure: Optional[Failure]) -> None:
        waiters, self._join_waiters = self._join_waiters or [], None
        self._join_failure = failure
        for d in waiters:
            if failure is None:
                d.callback(self)
            else:
                d.errback(failure)

    def when_joined(self) -> Deferred["FramedProtocol"]:
        """
        Wait until the connection has joined its sink: at once for plain
        connections, after the handshake over TLS.

        @return: A Deferred firing with this protocol; failing with
            L{ConnectionClosed} (whose C{reason} says why, e.g. a
            certificate that failed verification) if the connection ended
            or its sink refused it first.  Cancelling it aborts the
            connection.
        """
        if self._join_waiters is None:
            if self._join_failure is not None:
                return fail(self._join_failure)
            return succeed(self)
        d: Deferred[FramedProtocol] = Deferred(lambda _: self.abort())
        self._join_waiters.append(d)
        return d

    def _size_transport(self, read_size: Optional[int], send_limit: Optional[int]) -> None:
        raw = self._raw
        if read_size is not None and hasattr(raw, "bufferSize"):
            raw.bufferSize = read_size
            transport = self.transport
            if raw is not transport and hasattr(transport, "bufferSize"):
                transport.bufferSize = read_size  # type: ignore[union-attr]
        if send_limit is not None and hasattr(raw, "SEND_LIMIT"):
            raw.SEND_LIMIT = send_limit

    def _use_sizes(self, large: bool) -> None:
        # The large sizes or Twisted's own (see _LARGE_FRAME); sizes the
        # user chose stay.
        self._large = large
        self._small_reads = 0
        self._size_transport(
            None if self.read_size is not None else _LARGE_READ_SIZE if large else _READ_SIZE,
            None if self.send_limit is not None else _LARGE_SEND_LIMIT if large else _SEND_LIMIT,
        )

    def dataReceived(self, data: bytes) -> None:
        """
        Decode every complete frame and hand them over as one list.

        @param data: Bytes from the transport.
        """
        decoder = self.decoder
        try:
            frames = decoder.feed(data)
        except FramingError as e:
            self.protocol_error(str(e))
            return
        if frames and self.kept:
            global _delivering
            _delivering += 1
            try:
                self.sink.frames_received(self, frames)  # type: ignore[union-attr]
            finally:
                _delivering -= 1
                if not _delivering and _held:
                    _write_held()
        size = len(data)
        if (
            # A full read: more was waiting.
            size >= getattr(self._raw, "bufferSize", _NEVER)
            # A large frame under way (switch before its body arrives).
            or (decoder.buffered and decoder.buffered + decoder.needed >= _LARGE_FRAME)
        ):
            if not self._large:
                self._use_sizes(True)
            self._small_reads = 0
        elif self._large and size < _READ_SIZE:
            # Twice in a row: one small read (the end of a large frame, say)
            # is no sign that the stream has stopped.
            self._small_reads += 1
            if self._small_reads == 2:
                self._use_sizes(False)
        else:
            self._small_reads = 0
        if decoder.failed is not None:  # after the good frames ahead of it
            self.protocol_error(str(decoder.failed))

    def protocol_error(self, reason: str) -> None:
        """
        The peer broke the protocol: log why and drop this connection only.

        @param reason: What went wrong, for the log.
        """
        self.log.error(
            "Closing connection from {peer}: {reason}",
            peer=describe_address(self.address),
            reason=reason,
        )
        self.abort()

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:
        """
        Check the stream ended cleanly, tell the sink, then fail every
        queued frame (so that a send made from their errbacks no longer
        finds this connection).

        @param reason: Why the connection ended.
        """
        self.connected_ = False
        self._update_writable()
        if self.decoder.buffered and reason.check(ConnectionDone):
            self.log.error(
                "Connection from {peer} ended inside a frame "
                "({buffered} bytes of an incomplete frame discarded)",
                peer=describe_address(self.address),
                buffered=self.decoder.buffered,
            )
        self._closed = reason
        error = ConnectionClosed(
            self.address, None if reason.check(ConnectionDone) else reason.value
        )
        self._out.clear()
        self._out_bytes = 0
        self.before_write = None
        queue, self._queue = self._queue, deque()
        self.queued_bytes = 0
        # The sink forgets this connection before the queued sends fail, so
        # that a send made from their errbacks goes where sends go now (a
        # reconnecting channel's backlog) instead of failing at once here.
        kept = self.kept
        if kept:
            self.kept = False
            self.sink.connection_lost(self, reason)  # type: ignore[union-attr]
        for entry in queue:
            waiting = entry[2]
            if waiting is not None:
                waiting.errback(Failure(error))
        if not kept and self._join_waiters is not None:  # ended in its TLS handshake
            self.log.warn(
                "TLS handshake with {peer} failed: {reason}",
                peer=describe_address(self.address),
                reason=reason.getErrorMessage(),
            )
            self._settle_join(Failure(error))
        waiters, self._close_waiters = self._close_waiters, []
        for d in waiters:
            d.callback(None)

    @property
    def disconnected_reason(self) -> Optional[Failure]:
        """
        Why the connection ended, or C{None} while it is up.
        """
        return self._closed

    def close(self) -> Deferred[None]:
        """
        Flush queued frames, then close the connection.

        @return: A Deferred firing once the connection is closed.
        """
        d: Deferred[None] = Deferred()
        if self._closed is not None or self.transport is None:
            d.callback(None)
            return d
        self._close_waiters.append(d)
        if self._closing:
            return d  # already flushing or closing
        self._closing = True
        if self.before_write is not None:
            self.before_write()
        if not self._queue:
            self._lose_connection()
        return d

    def _lose_connection(self) -> None:
        transport = self.transport
        assert transport is not None
        if self._out:
            self._write_out()
        # A paused streaming producer would keep a closing transport open.
        transport.unregisterProducer()  # type: ignore[attr-defined]
        transport.loseConnection()

    def abort(self) -> None:
        """
        Drop the connection now, discarding unsent data.
        """
        if self.transport is not None and self._closed is None:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    # Sending

    def _update_writable(self) -> None:
        # writable is a plain attribute, read once per frame sent: kept up
        # to date here at each change of what it depends on, and each change
        # reported to the sink (a pool keeps the set of connections that are
        # not writable, so that a broadcast need not ask every connection).
        writable = not self._paused and not self._queue and self.connected_
        if writable != self.writable:
            self.writable = writable
            if self.sink is not None:
                self.sink.writable_changed(self)

    @property
    def has_room(self) -> bool:
        """
        Whether the queue is below C{send_high_water}, so that one more
        frame (of any size) may wait in it.
        """
        return self.queued_bytes < self.send_high_water

    def write_frame(self, header: bytes, payload: bytes, joined: Optional[bytes] = None) -> Optional[Deferred[None]]:
        """
        Send one frame whose header is already encoded.

        Small frames sent during one reactor turn are combined into one
        transport write at the end of the turn (or once 64 KiB wait); the
        first one sent during a delivery goes to a socket transport at once.

        @param header: The frame's header.
        @param payload: The payload.
        @param joined: C{header + payload}, when the caller has it (a
            broadcast joins once for all connections).
        @return: C{None} if the frame was accepted for writing now, or a
            Deferred firing when it is (failing with L{ConnectionClosed} if
            the connection ends first, with L{SendQueueFull} at once if the
            queue is full).  Cancelling it removes the unsent frame.
        """
        if self.before_write is not None:
            self.before_write()
        if not self.writable:
            return self._enqueue(header, payload, joined)
        length = len(payload)
        if length < _JOIN_BELOW:
            self._out.append(joined if joined is not None else header + payload)
            length += self._out_bytes
            self._out_bytes = length
            if self._out_scheduled:
                if length >= _COMBINE_LIMIT:
                    self._write_out()
            elif _delivering:
                # The first small frame written while received frames are
                # delivered (a reply, a release) goes to the socket at once
                # rather than after the rest of the delivery's work; later
                # ones are combined and written when the delivery ends.
                self._out_scheduled = True
                _held.append(self)
                if self._direct is not None:
                    self._write_out(directly=True)
            else:
                self._out_scheduled = True
                self._clock = at_end_of_turn(self._clock, self._write_out_later)
        else:
            if self._out:
                self._write_out()
            if length >= _LARGE_FRAME and not self._large:
                self._use_sizes(True)
            self.transport.writeSequence((header, payload))  # type: ignore[union-attr]
        return None

    def write_combined(self, data: bytes, directly: bool) -> None:
        """
        Take frames that were accepted for this connection while it was
        writable, framed and joined: what a broadcast combined for every
        connection of the pool during a reactor turn.  They are written at
        once, behind this connection's own combined frames.

        @param data: The frames.
        @param directly: This is the end of the turn: send them on the
            socket at once when nothing is waiting (see L{_write_out}).
        """
        if not self.connected_:
            return  # lost meanwhile, as its own combined frames would be
        self._out.append(data)
        self._write_out(directly)

    def _write_out_later(self) -> None:
        self._out_scheduled = False
        if self._out and self.connected_:
            self._write_out(directly=True)

    def _write_out(self, directly: bool = False) -> None:
        """
        Hand the combined small frames to the transport.

        @param directly: This is the turn's last write (at the end of the
            reactor turn or of a delivery), or a delivery's first frame:
            send it on the socket at once if the transport holds nothing
            unsent, rather than a turn later, which shortens a loopback
            round trip by a third.  Only these two writes per turn, of at
            most C{_COMBINE_LIMIT} bytes, go directly, so a connection never
            takes more than its share of a turn; large frames go through
            the transport's buffer, as splitting them between the socket
            and the buffer costs a copy.
        """
        out = self._out
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        self._out_bytes = 0
        direct = self._direct
        if (
            directly
            and direct is not None
            and not direct._tempDataLen
            and direct.offset == len(direct.dataBuffer)
            and direct.connected
            and not direct._writeDisconnected
        ):
            try:
                sent = direct.socket.send(data)
            except OSError:
                # Full (EAGAIN), or broken: the transport meets the error
                # on its own write and reports it as the connection's loss.
                sent = 0
            if sent == len(data):
                return
            data = data[sent:]
        self.transport.write(data)  # type: ignore[union-attr]

    def _enqueue(self, header: bytes, payload: bytes, joined: Optional[bytes]) -> Deferred[None]:
        if self._closed is not None or not self.connected_ or self._closing:
            reason = self._closed
            return fail(
                ConnectionClosed(
                    self.address,
                    None if reason is None or reason.check(ConnectionDone) else reason.value,
                )
            )
        size = len(header) + len(payload)
        if not self.has_room:
            return fail(SendQueueFull(self.address, self.queued_bytes, self.send_high_water))
        if joined is None and len(payload) < _JOIN_BELOW:
            # A waiting frame keeps what it holds alive: hold one object of
            # its own size, not a codec's output, which may sit in a much
            # larger allocation (orjson's does).
            joined = header + payload
        entry: List[Any] = [joined if joined is not None else (header, payload), size, None]

        def cancel(d: Deferred[None]) -> None:
            try:
                self._queue.remove(entry)
            except ValueError:
                # Written by a _flush that has not fired it yet (a callback
                # of an earlier frame cancels): the frame was sent.
                d.callback(None)
                return
            self.queued_bytes -= size
            self._update_writable()

        d: Deferred[None] = Deferred(cancel)
        entry[2] = d
        self._queue.append(entry)
        self._update_writable()
        self.queued_bytes += size
        return d

    def unsent(self, waiting: Deferred[None]) -> bool:
        """
        Whether the frame a write Deferred stands for still waits in this
        connection's queue, so that cancelling it withdraws it.

        @param waiting: A Deferred that L{write_frame} returned.
        @return: C{False} once it has been handed to the transport (or
            failed).
        """
        return any(entry[2] is waiting for entry in self._queue)

    def send_frame(self, payload: bytes) -> Deferred[None]:
        """
        Send one payload as a frame.

        @param payload: The payload.
        @return: A Deferred firing once the frame is handed to the transport
            (already fired when the transport was not paused).
        @raise FrameTooLarge: If the payload exceeds C{max_frame_length}.
        """
        waiting = self.write_frame(encode_header(len(payload), self.max_frame_length), payload)
        return fired_none() if waiting is None else waiting

    def write_frames(self, payloads: Sequence[bytes]) -> Optional[Deferred[None]]:
        """
        Send many payloads; the frames go out in one C{writeSequence} when
        the transport is not paused.

        @param payloads: The payloads, in order.
        @return: C{None} if all were handed to the transport now, or a
            Deferred firing when the last one is.
        @raise FrameTooLarge: If any payload exceeds C{max_frame_length};
            nothing is sent.
        """
        parts = frame_parts(payloads, self.max_frame_length)
        if self.before_write is not None:
            self.before_write()
        if self.writable:
            if self._out:
                self._write_out()
            if len(parts) > 2 and max(map(len, payloads)) < _JOIN_BELOW:
                self.transport.write(b"".join(parts))  # type: ignore[union-attr]
            else:  # large payloads are not copied
                self.transport.writeSequence(parts)  # type: ignore[union-attr]
            return None
        return self._enqueue(b"", b"".join(parts), None)

    def pauseProducing(self) -> None:
        """
        The transport's buffer is full: queue frames until it drains.
        """
        self._paused = True
        if not self._large:
            self._use_sizes(True)  # this connection streams
        self._update_writable()

    def resumeProducing(self) -> None:
        """
        The transport drained: write queued frames until it is full again.
        """
        self._paused = False
        self._flush()

    def _flush(self) -> None:
        queue = self._queue
        if not queue:
            self._update_writable()
            return
        transport = self.transport
        assert transport is not None
        if self._out:  # combined frames sent before the pause go first
            self._write_out()
        # A close() made by the callbacks below closes by itself.
        closing = self._closing
        written: List[Deferred[None]] = []
        while queue and not self._paused and self.connected_:
            data, size, waiting = queue.popleft()
            self.queued_bytes -= size
            if type(data) is bytes:
                transport.write(data)
            else:
                transport.writeSequence(data)
            if waiting is not None:
                written.append(waiting)
        self._update_writable()
        # Fired after the loop so callbacks that send again queue behind
        # (one that cancels a later frame fires it: see _enqueue).
        for d in written:
            if not d.called:
                d.callback(None)
        if self.kept:
            self.sink.connection_drained(self)  # type: ignore[union-attr]
        if closing and not self._queue and self._closed is None:
            self._lose_connection()

    def stopProducing(self) -> None:
        """
        The transport is going away; L{connectionLost} fails what is queued.
        """

    # Receiving flow control

    def pause_reading(self) -> None:
        """
        Stop reading from the peer (TCP then pushes back to it).
        """
        if not self._reading_paused and self.transport is not None and self._closed is None:
            self._reading_paused = True
            self.transport.pauseProducing()  # type: ignore[attr-defined]

    def resume_reading(self) -> None:
        """
        Resume reading from the peer.
        """
        if self._reading_paused and self.transport is not None and self._closed is None:
            self._reading_paused = False
            self.transport.resumeProducing()  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        return f"<FramedProtocol {describe_address(self.address)}>"


FrameCallback = Callable[[List[bytes], FramedProtocol], None]
