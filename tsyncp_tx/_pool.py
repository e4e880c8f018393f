"""
L{StreamPool}: the live connections of one channel.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterable, List, Optional, Set, Tuple
from weakref import WeakSet

from twisted.internet.defer import Deferred, DeferredList, fail
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ._errors import ConnectionClosed, NotWithdrawn, SendQueueFull, describe_address
from ._fired import fired
from ._framing import MAX_FRAME_LENGTH, encode_header
from . import _protocol
from ._protocol import (
    _COMBINE_LIMIT,
    _JOIN_BELOW,
    DEFAULT_SEND_HIGH_WATER,
    FramedProtocol,
    IFrameSink,
    at_end_of_turn,
)

Address = Any
FramesCallback = Callable[[List[bytes], FramedProtocol], None]

#: Slow-receiver policies for L{StreamPool.broadcast}.
SLOW_RECEIVER_POLICIES = ("wait", "disconnect")


def call_hook(log: Logger, hook: Callable[..., Any], *args: Any) -> None:
    """
    Call a user's hook; log what it raises instead of letting it break the
    connection handling that called it.

    @param log: Where to log.
    @param hook: The hook.
    @param args: Its arguments.
    """
    try:
        hook(*args)
    except Exception:
        log.failure("Unhandled error in {hook!r}", hook=hook)


def check_count(name: str, value: Optional[int]) -> None:
    """
    Refuse a size or count setting that is not C{None} or an C{int} of at
    least 1.

    @param name: The setting's name, for the error.
    @param value: Its value.
    @raise ValueError: If it is anything else.
    """
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{name} must be an int of at least 1, not {value!r}")


def _ignore_closed(failure: Failure) -> None:
    # A frame that could not be written because its connection died: the
    # loss itself is reported through on_disconnect.
    failure.trap(ConnectionClosed)


@implementer(IFrameSink)
class StreamPool:
    """
    The live connections of one channel.

    It admits connections (up to C{limit}, past C{accept_filter}), hands
    every frame received on any of them to C{deliver} together with its
    connection, writes one encoded frame to many connections, and forgets a
    connection when it ends.  A framing error on one connection closes only
    that one.

    @ivar limit: The most connections kept at once, or C{None}.
    """

    log = Logger()

    def __init__(
        self,
        deliver: Optional[FramesCallback] = None,
        limit: Optional[int] = None,
        accept_filter: Optional[Callable[[Address], bool]] = None,
        on_accept: Optional[Callable[[Address], Any]] = None,
        on_disconnect: Optional[Callable[[Address, Failure], Any]] = None,
        on_drain: Optional[Callable[[FramedProtocol], Any]] = None,
        max_frame_length: int = MAX_FRAME_LENGTH,
        nodelay: bool = True,
        read_size: Optional[int] = None,
        send_limit: Optional[int] = None,
        send_high_water: int = DEFAULT_SEND_HIGH_WATER,
        slow_receiver: str = "wait",
        slow_receiver_limit: Optional[int] = None,
        clock: Any = None,
    ) -> None:
        """
        @param deliver: Called with C{(payloads, connection)} for the frames
            of each read; C{None} makes the pool refuse incoming frames (a
            send-only endpoint), closing the connection that sends one.
        @param limit: The most connections kept at once; one more is closed
            at once with a logged reason.
        @param accept_filter: Called with each new peer's address; a false
            result closes the connection before it joins.
        @param on_accept: Called with the address of each connection that
            joined.
        @param on_disconnect: Called with C{(address, reason)} when a
            connection that had joined ends.
        @param on_drain: Called with a connection whose queue of unwritten
            frames shrank (its transport took more).
        @param max_frame_length: Largest payload accepted and sent.
        @param nodelay: Set C{TCP_NODELAY}.
        @param read_size: Per-read byte count (Twisted's C{bufferSize}).
        @param send_limit: Per-turn socket send size (Twisted's
            C{SEND_LIMIT}).
        @param send_high_water: Per-connection bound on queued bytes.
        @param slow_receiver: C{"wait"}: a broadcast waits for the slowest
            connection; C{"disconnect"}: a connection whose queue would pass
            C{slow_receiver_limit} bytes is dropped and reported.
        @param slow_receiver_limit: The per-connection queue bound of the
            C{"disconnect"} policy (default: C{send_high_water}).
        @param clock: The reactor the connections schedule writes with
            (default: the global one, looked up when first needed).
        """
        for name, value in (
            ("limit", limit),
            ("max_frame_length", max_frame_length),
            ("read_size", read_size),
            ("send_limit", send_limit),
            ("send_high_water", send_high_water),
            ("slow_receiver_limit", slow_receiver_limit),
        ):
            check_count(name, value)
        if slow_receiver not in SLOW_RECEIVER_POLICIES:
            raise ValueError(
                f"slow_receiver must be one of {SLOW_RECEIVER_POLICIES}, "
                f"not {slow_receiver!r}"
            )
        self.deliver = deliver
        self.limit = limit
        self.accept_filter = accept_filter
        self.on_accept = on_accept
        self.on_disconnect = on_disconnect
        self.on_drain = on_drain
        self.max_frame_length = max_frame_length
        self.slow_receiver = slow_receiver
        self.slow_receiver_limit = (
            send_high_water if slow_receiver_limit is None else slow_receiver_limit
        )
        self._options = dict(
            max_frame_length=max_frame_length,
            nodelay=nodelay,
            read_size=read_size,
            send_limit=send_limit,
            # A slow receiver is dropped at its limit, never refused below it.
            send_high_water=max(send_high_water, self.slow_receiver_limit)
            if slow_receiver == "disconnect"
            else send_high_water,
            clock=clock,
        )
        self._connections: Dict[Address, FramedProtocol] = {}
        #: The connections that are not writable now (paused, or frames
        #: waiting in their queue): only these can have a full queue, and
        #: while there are none a broadcast writes to all at once.
        #: Read-only.
        self.blocked: Set[FramedProtocol] = set()
        self._reading_paused = False
        # Every protocol built, so that closing reaches those still in their
        # TLS handshake (not members yet).
        self._built: "WeakSet[FramedProtocol]" = WeakSet()
        # Small frames broadcast to every connection during a reactor turn,
        # combined once for all of them rather than once per connection;
        # handed over at the end of the turn, at _COMBINE_LIMIT bytes, or
        # before anything else is written to a connection.
        self._combined: List[bytes] = []
        self._combined_bytes = 0
        self._combined_scheduled = False
        self._clock = clock

    # Admission

    def build_protocol(self) -> FramedProtocol:
        """
        Make a new, unconnected protocol that joins this pool when it
        connects.

        @return: The protocol.
        """
        protocol = FramedProtocol(self, **self._options)  # type: ignore[arg-type]
        self._built.add(protocol)
        return protocol

    def factory(self) -> Factory:
        """
        A protocol factory for endpoints: every connection it builds joins
        this pool.

        @return: The factory.
        """
        return _PoolFactory(self)

    def add(self, connection: FramedProtocol) -> bool:
        """
        Admit a connected protocol, unless over the limit or filtered.

        @param connection: A protocol whose C{address} is set.
        @return: Whether it joined.
        """
        address = connection.address
        if self.limit is not None and len(self._connections) >= self.limit:
            self.log.warn(
                "Refusing connection from {peer}: connection limit of {limit} reached",
                peer=describe_address(address),
                limit=self.limit,
            )
            return False
        if self.accept_filter is not None:
            try:
                allowed = self.accept_filter(address)
            except Exception:
                self.log.failure(
                    "accept_filter raised for {peer}; refusing it",
                    peer=describe_address(address),
                )
                allowed = False
            if not allowed:
                self.log.info(
                    "Refusing connection from {peer}: rejected by accept_filter",
                    peer=describe_address(address),
                )
                return False
        # Frames broadcast before it joined are not for it.
        self._hand_over_combined()
        self._connections[address] = connection
        if not connection.writable:
            self.blocked.add(connection)
        if self._reading_paused:
            connection.pause_reading()
        self.log.debug("Connection from {peer} joined", peer=describe_address(address))
        if self.on_accept is not None:
            call_hook(self.log, self.on_accept, address)
        return True

    def remove(self, connection: FramedProtocol) -> None:
        """
        Forget a connection (without closing it).

        @param connection: A member of the pool.
        """
        if self._connections.get(connection.address) is connection:
            # It gets the frames broadcast while it was a member.
            self._hand_over_combined()
            del self._connections[connection.address]
        self.blocked.discard(connection)

    # IFrameSink

    def connection_made(self, connection: FramedProtocol) -> bool:
        """
        Admit a new connection; see L{add}.

        @param connection: The new connection.
        @return: Whether it joined.
        """
        return self.add(connection)

    def frames_received(self, connection: FramedProtocol, frames: List[bytes]) -> None:
        """
        Hand frames to C{deliver}; a send-only pool drops the connection.

        @param connection: Where they arrived.
        @param frames: The payloads.
        """
        if self.deliver is None:
            connection.protocol_error(
                f"unexpected frame ({len(frames[0])} bytes) at a send-only endpoint"
            )
            return
        self.deliver(frames, connection)

    def connection_lost(self, connection: FramedProtocol, reason: Failure) -> None:
        """
        Forget the connection and report it to C{on_disconnect}.

        @param connection: The connection that ended.
        @param reason: Why.
        """
        self.remove(connection)
        self.log.debug(
            "Connection from {peer} ended: {reason}",
            peer=describe_address(connection.address),
            reason=reason.getErrorMessage(),
        )
        if self.on_disconnect is not None:
            call_hook(self.log, self.on_disconnect, connection.address, reason)

    def writable_changed(self, connection: FramedProtocol) -> None:
        """
        Keep L{blocked} up to date.

        @param connection: A connection whose C{writable} changed; ignored
            unless it is a member (a new one is looked at when it joins).
        """
        if connection.writable:
            self.blocked.discard(connection)
        elif self._connections.get(connection.address) is connection:
            self.blocked.add(connection)

    def connection_drained(self, connection: FramedProtocol) -> None:
        """
        Pass the news to C{on_drain}.

        @param connection: The connection whose queue shrank.
        """
        if self.on_drain is not None:
            self.on_drain(connection)

    # Queries

    def __len__(self) -> int:
        return len(self._connections)

    @property
    def addresses(self) -> List[Address]:
        """
        The addresses of the live connections, in the order they joined.
        """
        return list(self._connections)

    @property
    def connections(self) -> List[FramedProtocol]:
        """
        The live connections, in the order they joined.
        """
        return list(self._connections.values())

    def some_queue_full(self) -> bool:
        """
        Whether some connection's queue of unwritten frames is at its
        C{send_high_water}.
        """
        for connection in self.blocked:
            if connection.queued_bytes >= connection.send_high_water:
                return True
        return False

    def members(self, addresses: Optional[Iterable[Address]]) -> List[FramedProtocol]:
        """
        Look connections up by their peer addresses.

        @param addresses: The addresses, or C{None} for every connection.
        @return: The live connections among them (unknown addresses are
            skipped), in the order given; every connection, in the order
            they joined, for C{None}.
        """
        if addresses is None:
            return self.connections
        return [c for c in map(self._connections.get, addresses) if c is not None]

    def get(self, address: Address) -> Optional[FramedProtocol]:
        """
        Look a connection up by its peer address.

        @param address: The address.
        @return: The connection, or C{None}.
        """
        return self._connections.get(address)

    # Sending

    def broadcast(
        self, payload: bytes, connections: Optional[Iterable[FramedProtocol]] = None
    ) -> Deferred[int]:
        """
        Frame C{payload} once and write it to every connection (or to
        C{connections}).

        With the C{"wait"} policy the returned Deferred fires once every
        recipient's transport has taken the frame, so the sender goes at the
        pace of the slowest.  With C{"disconnect"} it fires as soon as one
        recipient has taken it, so the sender goes at the pace of the
        fastest; a recipient whose queue would pass C{slow_receiver_limit}
        is disconnected and reported instead.

        @param payload: The payload.
        @param connections: The recipients; by default every connection.
        @return: A Deferred firing with the number of connections the frame
            was handed to or queued for; already fired unless a transport
            pushed back.  A connection lost meanwhile is not counted (its
            loss goes to C{on_disconnect}).  Cancelling it withdraws the
            frame from every queue it still waits in, as long as no
            recipient has it yet; once one has, it stays queued for the
            others, so that every recipient gets the same frames.  It fails at once with
            L{SendQueueFull}, nothing written anywhere, if a recipient's
            queue is full (C{"wait"} policy).
        @raise FrameTooLarge: If the payload exceeds C{max_frame_length};
            nothing is written anywhere.
        """
        length = len(payload)
        header = encode_header(length, self.max_frame_length)
        joined = header + payload if length < _JOIN_BELOW else None
        if connections is None:
            targets: Any = self._connections.values()
            all_writable = not self.blocked
            if all_writable and joined is not None and not _protocol._delivering:
                # Combined once for every connection.  (During a delivery
                # each connection's first frame goes out at once instead.)
                combined = self._combined
                if not combined:
                    self._start_combining()
                combined.append(joined)
                self._combined_bytes += length
                if self._combined_bytes >= _COMBINE_LIMIT:
                    self._hand_over_combined()
                return fired(len(targets))
        else:
            targets = list(connections)
            all_writable = all(connection.writable for connection in targets)
        if all_writable:  # the common case: every transport takes the frame now
            for connection in targets:
                connection.write_frame(header, payload, joined)
            return fired(len(targets))
        targets = list(targets)  # dropping a slow receiver changes the dict
        size = len(header) + length
        disconnect_slow = self.slow_receiver == "disconnect"
        for connection in targets:
            if not connection.writable and not connection.has_room:
                if not disconnect_slow:
                    # All or nothing: refuse before writing anywhere.
                    return fail(
                        SendQueueFull(
                            connection.address, connection.queued_bytes, connection.send_high_water
                        )
                    )
        count = 0
        pending: Optional[List[Tuple[FramedProtocol, Deferred[None]]]] = None
        for connection in targets:
            if (
                disconnect_slow
                and not connection.writable
                and connection.queued_bytes + size > self.slow_receiver_limit
            ):
                self._drop_slow(connection)
                continue
            waiting = connection.write_frame(header, payload, joined)
            if waiting is None:
                count += 1
            else:
                if pending is None:
                    pending = []
                pending.append((connection, waiting))
        if pending is None:
            return fired(count)
        if disconnect_slow:
            if count:  # a recipient keeps up: the sender need not wait
                for _, waiting in pending:
                    waiting.addErrback(_ignore_closed)
                return fired(count + len(pending))
            return _first_written(pending)
        return _count_written(count, pending)

    def _drop_slow(self, connection: FramedProtocol) -> None:
        # Out of the pool at once, so no further frame is written to it or
        # logged for it; the loss itself reaches on_disconnect.
        self.remove(connection)
        self.log.warn(
            "Disconnecting slow receiver {peer}: {queued} bytes queued, "
            "slow_receiver_limit={limit}",
            peer=describe_address(connection.address),
            queued=connection.queued_bytes,
            limit=self.slow_receiver_limit,
        )
        connection.abort()

    # Receiving flow control

    def pause_reading(self) -> None:
        """
        Stop reading from every connection, present and future.
        """
        self._reading_paused = True
        for connection in self._connections.values():
            connection.pause_reading()

    def resume_reading(self) -> None:
        """
        Resume reading from every connection.
        """
        self._reading_paused = False
        for connection in list(self._connections.values()):
            connection.resume_reading()

    def _abort_joining(self) -> None:
        # Connected but not members: in their TLS handshake (or refused).
        for protocol in list(self._built):
            if protocol.connected_ and self._connections.get(protocol.address) is not protocol:
                protocol.abort()

    def _start_combining(self) -> None:
        hand_over = self._hand_over_combined
        for connection in self._connections.values():
            connection.before_write = hand_over
        if not self._combined_scheduled:
            self._combined_scheduled = True
            self._clock = at_end_of_turn(self._clock, self._end_of_turn)

    def _end_of_turn(self) -> None:
        self._combined_scheduled = False
        self._hand_over_combined(directly=True)

    def _hand_over_combined(self, directly: bool = False) -> None:
        """
        Give every connection the frames combined for all of them.

        @param directly: It is the end of the reactor turn (see
            L{FramedProtocol.write_combined}).
        """
        combined = self._combined
        if not combined:
            return
        data = combined[0] if len(combined) == 1 else b"".join(combined)
        combined.clear()
        self._combined_bytes = 0
        for connection in list(self._connections.values()):
            connection.before_write = None
            connection.write_combined(data, directly)

    def abort(self) -> None:
        """
        Drop every connection now, discarding unsent data.
        """
        self._abort_joining()
        self._combined.clear()
        self._combined_bytes = 0
        for connection in list(self._connections.values()):
            connection.abort()

    def close(self) -> Deferred[None]:
        """
        Flush and close every connection.

        @return: A Deferred firing when all are closed.
        """
        self._abort_joining()
        closing = [connection.close() for connection in list(self._connections.values())]
        d = DeferredList(closing, consumeErrors=True)
        return d.addCallback(lambda _: None)


Pending = List[Tuple[FramedProtocol, Deferred[None]]]


def _withdraw_all(pending: Pending) -> bool:
    """
    Withdraw a broadcast's queued copies, if none has been handed to its
    transport yet: taking it back from some recipients after others got it
    would make their streams differ.

    @return: Whether they were withdrawn.
    """
    if not all(connection.unsent(waiting) for connection, waiting in pending):
        return False
    for _, waiting in pending:
        waiting.cancel()
    return True


def _first_written(pending: Pending) -> Deferred[int]:
    """
    Fire with the number of recipients as soon as one of the queued writes
    is done (the C{"disconnect"} policy's pacing by the fastest recipient).
    """
    total = len(pending)

    def cancel(_: Deferred[int]) -> None:
        if not _withdraw_all(pending):
            result.errback(Failure(NotWithdrawn()))

    result: Deferred[int] = Deferred(cancel)
    state = {"left": total, "lost": 0}

    def settled(outcome: Any) -> None:
        state["left"] -= 1
        if isinstance(outcome, Failure):
            if not outcome.check(ConnectionClosed) and not result.called:
                result.errback(outcome)
                return
            state["lost"] += 1
            if state["left"] == 0 and not result.called:
                result.callback(total - state["lost"])
        elif not result.called:
            result.callback(total - state["lost"])

    for _, waiting in pending:
        waiting.addBoth(settled)
    return result


def _count_written(count: int, pending: Pending) -> Deferred[int]:
    """
    Combine per-connection write Deferreds into one firing with the number
    written; the first error other than a lost connection fails it.
    """
    state: Dict[str, Any] = {"count": count, "left": len(pending), "error": None}

    def cancel(_: Deferred[int]) -> None:
        if state["count"] or not _withdraw_all(pending):
            result.errback(Failure(NotWithdrawn()))

    result: Deferred[int] = Deferred(cancel)

    def settled(outcome: Any) -> None:
        if isinstance(outcome, Failure):
            if not outcome.check(ConnectionClosed) and state["error"] is None:
                state["error"] = outcome
        else:
            state["count"] += 1
        state["left"] -= 1
        if state["left"] == 0 and not result.called:
            if state["error"] is not None:
                result.errback(state["error"])
            else:
                result.callback(state["count"])

    for _, waiting in pending:
        waiting.addBoth(settled)
    return result


class _PoolFactory(Factory):
    """
    Builds protocols that join one L{StreamPool}.
    """

    noisy = False

    def __init__(self, pool: StreamPool) -> None:
        self.pool = pool

    def buildProtocol(self, addr: Any) -> FramedProtocol:
        protocol = self.pool.build_protocol()
        protocol.factory = self
        return protocol
