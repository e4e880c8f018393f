"""
L{ChannelCore}: what every channel object is made of.

A core owns a L{StreamPool}, a codec, a L{ReceiveQueue} (unless it only
sends), the listening port or the connector, and the send path.  The public
classes in L{tsyncp_tx._views} are thin views that expose parts of it.
"""

from __future__ import annotations

from collections import deque
from functools import partial
from typing import Any, Callable, Deque, Dict, List, Optional, Sequence, Tuple, Union

from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet.defer import CancelledError, Deferred, DeferredList, fail, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IListeningPort, IStreamClientEndpoint
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ._address import (
    AddressLike,
    client_endpoint,
    listening_address,
    server_endpoint,
)
from ._errors import (
    ChannelClosed,
    ConnectError,
    ConnectionClosed,
    EncodeError,
    FrameTooLarge,
    SendQueueFull,
    describe_address,
)
from ._codecs import RawCodec
from ._fired import fired_none
from ._framing import _CACHED, _HEADER_CACHE, MAX_FRAME_LENGTH, encode_header
from ._pool import StreamPool, call_hook, check_count
from ._protocol import _JOIN_BELOW, DEFAULT_SEND_HIGH_WATER, FramedProtocol, address_key
from ._queue import (
    DEFAULT_RECV_HIGH_WATER,
    DEFAULT_RECV_HIGH_WATER_BYTES,
    ReceiveQueue,
    add_timeout,
    check_timeout,
)

RetryPolicy = Callable[[int, Failure], Optional[float]]
RetryLike = Union[None, Tuple[float, Optional[int]], RetryPolicy]


def default_reactor(reactor: Any) -> Any:
    """
    The reactor to use: the one given, or the global one, imported now.

    @param reactor: A reactor or C{None}.
    @return: A reactor.
    """
    if reactor is None:
        from twisted.internet import reactor as global_reactor

        return global_reactor
    return reactor


def retry_policy(retry: RetryLike) -> RetryPolicy:
    """
    Normalise a C{retry=} argument.

    @param retry: C{None} (no retry), C{(interval, max_retries)} with
        C{max_retries=None} meaning forever, or a callable
        C{policy(attempt, failure)} returning the seconds to wait before the
        next attempt or C{None} to give up.
    @return: A callable policy.
    @raise ValueError: If C{retry} is none of these.
    """
    if retry is None:
        return lambda attempt, failure: None
    if callable(retry):
        return retry
    if isinstance(retry, tuple) and len(retry) == 2:
        interval, max_retries = retry
        if interval < 0 or (max_retries is not None and max_retries < 0):
            raise ValueError(f"retry intervals and counts must not be negative: {retry!r}")

        def policy(attempt: int, failure: Failure) -> Optional[float]:
            if max_retries is not None and attempt > max_retries:
                return None
            return float(interval)

        return policy
    raise ValueError(
        f"retry must be None, (interval_seconds, max_retries) or a callable, not {retry!r}"
    )


def _connect(
    reactor: Any,
    endpoint: IStreamClientEndpoint,
    factory: Any,
    policy: RetryPolicy,
    address: Any,
) -> Deferred[FramedProtocol]:
    """
    Connect, retrying as the policy says; cancellable at any point.
    """
    state: Dict[str, Any] = {"attempt": 0, "call": None, "current": None}

    def cancel(_: Deferred[FramedProtocol]) -> None:
        if state["call"] is not None and state["call"].active():
            state["call"].cancel()
        if state["current"] is not None:
            state["current"].cancel()

    result: Deferred[FramedProtocol] = Deferred(cancel)

    def attempt() -> None:
        state["call"] = None
        state["attempt"] += 1
        d = endpoint.connect(factory)
        state["current"] = d
        d.addCallbacks(connected, failed)

    def connected(protocol: FramedProtocol) -> None:
        # Over TLS, connected once the handshake has succeeded.
        joining = protocol.when_joined()
        state["current"] = joining
        joining.addCallbacks(joined, failed)

    def joined(protocol: FramedProtocol) -> None:
        state["current"] = None
        result.callback(protocol)

    def failed(failure: Failure) -> None:
        state["current"] = None
        if result.called:
            return
        if failure.check(CancelledError):
            result.errback(failure)
            return
        delay, failure = _consult(policy, state["attempt"], failure)
        if delay is None:
            result.errback(_connect_error(address, state["attempt"], failure))
        else:
            state["call"] = reactor.callLater(delay, attempt)

    attempt()
    return result


def _connect_error(address: Any, attempts: int, failure: Failure) -> Failure:
    """
    The failure a constructor gives up with: a L{ConnectError} carrying
    the last attempt's error.
    """
    error = failure.value if failure.value is not None else Exception("connection failed")
    return Failure(ConnectError(address, max(1, attempts), error))


def _consult(policy: RetryPolicy, attempt: int, failure: Failure) -> Tuple[Optional[float], Failure]:
    """
    Ask a retry policy how long to wait before the next attempt.

    @return: The delay, or C{None} to give up, and the failure to give up
        with: the attempt's, or the policy's own error if it raised.
    """
    try:
        return policy(attempt, failure), failure
    except Exception:
        return None, Failure()


class _WaitingSend:
    """
    A send held back (waiting for room in the queues, or for a reconnecting
    channel's connection) until L{go} starts it.
    """

    __slots__ = ("start", "size", "deferred", "started", "reported")

    deferred: Deferred[Any]  # the send()'s, set right after construction

    def __init__(self, start: Callable[[], Deferred[Any]], size: int = 0) -> None:
        """
        @param start: Performs the send, returning its Deferred.
        @param size: Bytes it holds, for a bounded backlog (else 0).
        """
        self.start = start
        self.size = size
        # The real send's Deferred once started.
        self.started: Optional[Deferred[Any]] = None
        self.reported = False

    def go(self) -> None:
        """
        Perform the send; its outcome becomes the held C{send()}'s.
        """
        self.write()
        self.report()

    def write(self) -> None:
        """
        Perform the send, without telling the held C{send()} yet.
        """
        self.started = self.start()

    def report(self) -> None:
        """
        Pass the outcome of the send L{write} performed to the held
        C{send()}.
        """
        assert self.started is not None
        if not self.reported:  # reported early when cancelled (see _hold)
            self.reported = True
            self.started.chainDeferred(self.deferred)


# What a reconnecting channel's retry policy tells ClientService once the
# user's policy gives up: the wait before an attempt that never comes, as
# the service is stopped on the next reactor turn.
_GIVING_UP = 3600.0


@implementer(IStreamClientEndpoint)
class _FailureRecorder:
    """
    A client endpoint that remembers why its last connection attempt
    failed: C{ClientService} tells its retry policy only how many did.
    """

    def __init__(self, endpoint: IStreamClientEndpoint) -> None:
        """
        @param endpoint: The endpoint that connects.
        """
        self._endpoint = endpoint
        self.last_failure: Optional[Failure] = None

    def connect(self, protocolFactory: Any) -> Deferred[Any]:
        """
        Connect through the wrapped endpoint.

        @param protocolFactory: The factory.
        @return: The wrapped endpoint's Deferred, failures recorded.
        """

        def record(failure: Failure) -> Failure:
            self.last_failure = failure
            return failure

        return self._endpoint.connect(protocolFactory).addErrback(record)


class _AcceptWaiter:
    """
    An C{accept(count)} call waiting until C{target} peers have joined in
    all (its target drops when an earlier call is cancelled).
    """

    __slots__ = ("target", "deferred", "count")

    def __init__(self, target: int, deferred: Deferred[int], count: int) -> None:
        self.target = target
        self.deferred = deferred
        self.count = count


class ChannelCore:
    """
    The shared machinery of every channel object.

    @ivar single: Whether the channel has exactly one peer.
    @ivar pool: The live connections.
    @ivar queue: Received items, or C{None} for a send-only channel.
    """

    # Slots, as for FramedProtocol: past 29 attributes CPython 3.11's
    # attribute access slows down on every send.
    __slots__ = (
        "reactor",
        "codec",
        "_encode",
        "_bytes_as_is",
        "single",
        "max_frame_length",
        "send_high_water",
        "send_timeout",
        "_user_on_accept",
        "_user_on_disconnect",
        "queue",
        "pool",
        "_accept_filter",
        "port",
        "address",
        "peer",
        "_local_address",
        "last_peer_address",
        "accepted",
        "_claimed",
        "_accept_waiters",
        "_service",
        "_connecting",
        "_backlog",
        "_room_waiters",
        "_backlog_bytes",
        "_had_peer",
        "closed",
        "_close_done",
        "_close_waiters",
        "_abort_calls",
    )

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        codec: Any,
        single: bool,
        receives: bool,
        limit: Optional[int] = None,
        accept_filter: Optional[Callable[[Any], bool]] = None,
        on_accept: Optional[Callable[[Any], Any]] = None,
        on_disconnect: Optional[Callable[[Any, Failure], Any]] = None,
        on_decode_error: Optional[Callable[[Any], Any]] = None,
        deliver: Optional[Callable[[List[bytes], FramedProtocol], None]] = None,
        max_frame_length: int = MAX_FRAME_LENGTH,
        nodelay: bool = True,
        read_size: Optional[int] = None,
        send_limit: Optional[int] = None,
        send_high_water: int = DEFAULT_SEND_HIGH_WATER,
        send_timeout: Optional[float] = None,
        recv_high_water: int = DEFAULT_RECV_HIGH_WATER,
        recv_high_water_bytes: int = DEFAULT_RECV_HIGH_WATER_BYTES,
        slow_receiver: str = "wait",
        slow_receiver_limit: Optional[int] = None,
    ) -> None:
        check_count("recv_high_water", recv_high_water)
        check_count("recv_high_water_bytes", recv_high_water_bytes)
        check_timeout(send_timeout, "send_timeout")
        self.reactor = reactor
        self.codec = codec
        self._encode = codec.encode
        # RawCodec sends bytes as they are: skip the call.
        self._bytes_as_is = type(codec) is RawCodec
        self.single = single
        self.max_frame_length = max_frame_length
        self.send_high_water = send_high_water
        self.send_timeout = send_timeout
        self._user_on_accept = on_accept
        self._user_on_disconnect = on_disconnect
        if single:
            limit = 1
        self.queue: Optional[ReceiveQueue] = None
        if receives and deliver is None:
            self.queue = ReceiveQueue(
                codec,
                self._pause_reading,
                self._resume_reading,
                recv_high_water,
                recv_high_water_bytes,
                on_decode_error,
            )
            deliver = self.queue.put
        self.pool = StreamPool(
            deliver=deliver if deliver is not None else self._unexpected_frames,
            limit=limit,
            accept_filter=self._admit if (accept_filter or single) else None,
            on_accept=self._joined,
            on_disconnect=self._left,
            on_drain=self._make_room,
            max_frame_length=max_frame_length,
            nodelay=nodelay,
            read_size=read_size,
            send_limit=send_limit,
            send_high_water=send_high_water,
            slow_receiver=slow_receiver,
            slow_receiver_limit=slow_receiver_limit,
            clock=reactor,
        )
        self._accept_filter = accept_filter
        self.port: Optional[IListeningPort] = None
        self.address: Any = None  # what the user passed
        self.peer: Optional[FramedProtocol] = None  # single-peer channels
        self._local_address: Any = None
        self.last_peer_address: Any = None
        self.accepted = 0
        self._claimed = 0
        self._accept_waiters: List[_AcceptWaiter] = []
        self._service: Optional[ClientService] = None
        self._connecting: Optional[Deferred[Any]] = None
        self._backlog: Deque[_WaitingSend] = deque()  # sends while reconnecting
        self._room_waiters: Deque[_WaitingSend] = deque()  # sends waiting for room
        self._backlog_bytes = 0
        self._had_peer = False
        self.closed = False
        self._close_done = False
        self._close_waiters: List[Deferred[None]] = []
        self._abort_calls: List[Any] = []

    # Connections

    def _admit(self, address: Any) -> bool:
        if self.closed:
            return False
        if self.single and self._had_peer and self._service is None:
            self.log.warn(
                "Refusing connection from {peer}: this single-peer channel "
                "already had its peer",
                peer=describe_address(address),
            )
            return False
        if self._accept_filter is not None:
            return bool(self._accept_filter(address))
        return True

    def _joined(self, address: Any) -> None:
        self.accepted += 1
        self._had_peer = True
        self.last_peer_address = address
        if self.port is None:  # a connecting channel: remember its own end
            connection = self.pool.get(address)
            if connection is not None and connection.transport is not None:
                self._local_address = address_key(connection.transport.getHost(), 0)
        if self.single:
            self.peer = self.pool.get(address)
            self._flush_backlog()
        if self._user_on_accept is not None:
            call_hook(self.log, self._user_on_accept, address)
        waiters = [w for w in self._accept_waiters if self.accepted >= w.target]
        for waiter in waiters:
            self._accept_waiters.remove(waiter)
            if not waiter.deferred.called:
                waiter.deferred.callback(waiter.count)

    def _left(self, address: Any, reason: Failure) -> None:
        clean = reason.check(ConnectionDone) is not None
        if self.single:
            self.peer = None
            if self._service is None or self.closed:
                error = ConnectionClosed(address, None if clean else reason.value)
                if self.queue is not None:
                    self.queue.end(error)
                if self.port is not None and not self.closed:
                    self.port.stopListening()
        if not self.closed:
            log = self.log.info if clean else self.log.warn
            log(
                "Peer {peer} disconnected: {reason}",
                peer=describe_address(address),
                reason=reason.getErrorMessage(),
            )
        if self._user_on_disconnect is not None:
            call_hook(self.log, self._user_on_disconnect, address, reason)
        if self._room_waiters:
            self._make_room()

    def _unexpected_frames(self, frames: List[bytes], connection: FramedProtocol) -> None:
        # Frames at a send-only endpoint are discarded (reading them keeps
        # memory bounded); the first read of them per connection is logged.
        connection.discarded += len(frames)
        if connection.discarded == len(frames):
            self.log.error(
                "Discarding unexpected frames from {peer}: this endpoint only "
                "sends ({count} frame(s), first {size} bytes)",
                peer=describe_address(connection.address),
                count=len(frames),
                size=len(frames[0]),
            )

    def _pause_reading(self) -> None:
        self.pool.pause_reading()

    def _resume_reading(self) -> None:
        self.pool.resume_reading()

    # Establishing

    def listen(self, address: AddressLike, accept: int) -> Deferred["ChannelCore"]:
        """
        Listen on C{address}; fire once C{accept} peers have joined.
        """
        self.address = address
        endpoint = server_endpoint(self.reactor, address)
        d = endpoint.listen(self.pool.factory())

        def listening(port: IListeningPort) -> Deferred[Any]:
            self.port = port
            self._local_address = listening_address(port)
            self.log.info(
                "Listening on {address}", address=describe_address(self.local_address)
            )
            if accept:
                return self.accept(accept).addCallback(lambda _: self)
            return succeed(self)

        d.addCallback(listening)
        return self._cancel_closes(d)

    def connect(
        self, address: AddressLike, retry: RetryLike, reconnect: bool, reconnect_policy: Optional[Callable[[int], float]]
    ) -> Deferred["ChannelCore"]:
        """
        Connect to C{address}, retrying per C{retry}; with C{reconnect},
        keep reconnecting after losses.
        """
        self.address = address
        endpoint = client_endpoint(self.reactor, address)
        policy = retry_policy(retry)
        if not reconnect:
            connecting = _connect(self.reactor, endpoint, self.pool.factory(), policy, address)
            self._connecting = connecting
            connecting.addCallback(lambda _: self)
            return self._cancel_closes(connecting)

        # The first connection obeys retry=, consulted with each attempt's
        # real failure; later ones back off forever.
        recorder = _FailureRecorder(endpoint)
        initial: Dict[str, Any] = {"attempts": 0, "gave_up": None}

        def service_policy(failed: int) -> float:
            # Once the constructor has fired (over TLS: at TCP connect,
            # before the handshake), reconnecting is all that is left.
            if self._had_peer or d.called:
                return (reconnect_policy or _default_backoff)(failed)
            initial["attempts"] += 1
            failure = recorder.last_failure
            assert failure is not None  # a connection attempt failed
            delay, failure = _consult(policy, initial["attempts"], failure)
            if delay is None:
                initial["gave_up"] = failure
                # Not from inside ClientService's state change: the
                # constructor fails on the next turn, which stops it long
                # before this delay ends.
                self.reactor.callLater(0, lambda: d.cancel())
                return _GIVING_UP
            return delay

        service = ClientService(recorder, self.pool.factory(), retryPolicy=service_policy, clock=self.reactor)
        self._service = service
        # Before starting: an endpoint that fails at once consults the
        # policy from inside startService().
        d: Deferred[Any] = service.whenConnected()
        self._connecting = d
        service.startService()

        def failed(failure: Failure) -> Any:
            gave_up = initial["gave_up"]
            if gave_up is not None:
                # Cancelled from our own call (or the user's), outside
                # ClientService's state changes: stop it now.
                service.stopService()
                return _connect_error(address, initial["attempts"], gave_up)
            if failure.check(CancelledError):
                service.stopService()
                return failure
            connect_error = _connect_error(address, initial["attempts"], failure)
            # A connection that failed its TLS handshake fails whenConnected
            # from inside ClientService's own state change, where stopping
            # it would re-enter it: stop it on the next turn.
            stopped = deferLater(self.reactor, 0, service.stopService)
            return stopped.addCallback(lambda _: connect_error)

        d.addCallbacks(lambda _: self, failed)
        return self._cancel_closes(d)

    def _cancel_closes(self, d: Deferred[Any]) -> Deferred[Any]:
        # Cancelling a constructor's Deferred releases what it holds.
        def closed_on_error(failure: Failure) -> Failure:
            self.close()
            return failure

        outer: Deferred[Any] = Deferred(lambda _: d.cancel())
        d.addErrback(closed_on_error)
        d.chainDeferred(outer)
        return outer

    @property
    def local_address(self) -> Any:
        """
        Where this channel listens, or its own end of its (last)
        connection.
        """
        return self._local_address

    def accept(self, n: int = 1, timeout: Optional[float] = None) -> Deferred[int]:
        """
        Wait until C{n} more peers have joined than earlier C{accept} calls
        (and the constructor's C{accept=}) claimed; peers that joined
        before the call count, so there is no race with early connections.
        """
        if self.closed:
            return fail(ChannelClosed())
        if n <= 0:
            return succeed(0)
        self._claimed += n
        if self.accepted >= self._claimed:
            return succeed(n)

        def cancel(_: Deferred[int]) -> None:
            waiters = self._accept_waiters
            for index, waiter in enumerate(waiters):
                if waiter is entry:
                    del waiters[index]
                    self._claimed -= n
                    # The peers it claimed go to the calls after it.
                    for later in waiters[index:]:
                        later.target -= n
                    return

        entry = _AcceptWaiter(self._claimed, Deferred(cancel), n)
        self._accept_waiters.append(entry)
        return add_timeout(entry.deferred, timeout, self.reactor, "accept")

    # Sending

    def encode(self, item: Any, raw: bool = False) -> bytes:
        """
        Encode an item (or take raw payload bytes).

        @raise EncodeError: If the codec refuses the item (a user codec's
            own exception is wrapped), or C{raw} is set and it is not bytes.
        """
        if type(item) is bytes and (raw or self._bytes_as_is):
            return item
        if raw:
            raise EncodeError("raw", f"raw=True needs bytes, got {type(item).__name__}", item)
        try:
            return self._encode(item)  # type: ignore[no-any-return]
        except Exception as e:
            raise self._encode_error(e, item) from e

    def _encode_error(self, error: Exception, item: Any) -> EncodeError:
        if isinstance(error, EncodeError):
            return error
        # A user codec's own exception type.
        name = getattr(self.codec, "name", repr(self.codec))
        return EncodeError(name, str(error) or repr(error), item)

    def send_one(
        self, item: Any, timeout: Optional[float] = None, raw: bool = False, check_room: bool = True
    ) -> Deferred[None]:
        """
        Send to the single peer, waiting (unencoded) while its queue of
        unwritten frames is at C{send_high_water}; C{check_room=False} is
        for sends that have waited.
        """
        peer = self.peer
        if check_room and (
            self._room_waiters
            or (peer is not None and peer.queued_bytes >= peer.send_high_water)
        ):
            if self.closed:  # close() has failed the waiting sends already
                return fail(ChannelClosed())
            return self._wait_for_room(partial(self.send_one, item, None, raw, False), timeout)
        # The hot path: encode, look the header up, hand the frame over.
        if type(item) is bytes and (raw or self._bytes_as_is):
            payload = item
        else:
            try:
                payload = self._encode(item) if not raw else self.encode(item, raw)
            except Exception as e:
                return fail(self._encode_error(e, item))
        length = len(payload)
        # encode_header's table lookup, inlined on the per-item hot path.
        if length < _CACHED and length <= self.max_frame_length:
            header = _HEADER_CACHE[length]
        else:
            try:
                header = encode_header(length, self.max_frame_length)
            except FrameTooLarge as e:
                return fail(e)
        peer = self.peer
        if peer is not None and not self.closed:
            waiting = peer.write_frame(header, payload)
            if waiting is None:
                return fired_none()
            if timeout is None:
                timeout = self.send_timeout
            return add_timeout(waiting, timeout, self.reactor, "send")
        return self._send_unconnected(header, payload, timeout)

    def send_many_one(self, items: Sequence[Any], raw: bool = False) -> Deferred[None]:
        """
        Send a batch to the single peer in one write.
        """
        peer = self.peer
        if self._room_waiters or (peer is not None and not peer.has_room):
            if self.closed:
                return fail(ChannelClosed())
            return self._wait_for_room(partial(self._send_many_now, items, raw), None)
        return self._send_many_now(items, raw)

    def _send_many_now(self, items: Sequence[Any], raw: bool) -> Deferred[None]:
        try:
            payloads = [self.encode(item, raw) for item in items]
        except EncodeError as e:
            return fail(e)
        peer = self.peer
        if peer is not None and not self._backlog and not self.closed:
            try:
                waiting = peer.write_frames(payloads)
            except FrameTooLarge as e:
                return fail(e)
            return fired_none() if waiting is None else waiting
        sends = [self.send_one(p, None, True, False) for p in payloads]
        return DeferredList(sends, fireOnOneErrback=True, consumeErrors=True).addCallbacks(
            lambda _: None, lambda f: f.value.subFailure
        )

    def _send_unconnected(self, header: bytes, payload: bytes, timeout: Optional[float]) -> Deferred[None]:
        if self.closed:
            return fail(ChannelClosed())
        if self._service is None:
            error = ConnectionClosed(self.last_peer_address or self.address)
            return fail(error)
        size = len(header) + len(payload)
        if self._backlog and self._backlog_bytes + size > self.send_high_water:
            error2 = SendQueueFull(self.address, self._backlog_bytes, self.send_high_water)
            return fail(error2)
        self._backlog_bytes += size
        # Held until the peer is back: a small payload in an allocation of
        # its own size (see FramedProtocol._enqueue).
        if len(payload) < _JOIN_BELOW:
            payload = bytes(memoryview(payload))
        return self._hold(self._backlog, partial(self._write_to_peer, header, payload), size, timeout)

    def _write_to_peer(self, header: bytes, payload: bytes) -> Deferred[None]:
        peer = self.peer
        assert peer is not None
        waiting = peer.write_frame(header, payload)
        return fired_none() if waiting is None else waiting

    def _flush_backlog(self) -> None:
        backlog, self._backlog = self._backlog, deque()
        self._backlog_bytes = 0
        # Every held frame is written before any of their Deferreds fires,
        # so that a send made from one of their callbacks goes after all.
        for entry in backlog:
            entry.write()
        for entry in backlog:
            entry.report()

    def _hold(
        self,
        waiting: "Deque[_WaitingSend]",
        start: Callable[[], Deferred[Any]],
        size: int,
        timeout: Optional[float],
    ) -> Deferred[Any]:
        """
        Hold a send in C{waiting} until something calls its C{go()};
        cancelling withdraws it from there or, once started, from the
        connection's queue.
        """
        entry = _WaitingSend(start, size)

        def cancel(_: Deferred[Any]) -> None:
            started = entry.started
            if started is not None:
                # Started by a backlog flush that has not reported it yet
                # (it writes every frame before reporting any): pass on
                # what comes of cancelling the write, which is success if
                # it was written already.
                entry.report()
                started.cancel()
            elif entry in waiting:
                waiting.remove(entry)
                self._backlog_bytes -= entry.size  # 0 unless backlogged

        d: Deferred[Any] = Deferred(cancel)
        entry.deferred = d
        waiting.append(entry)
        if timeout is None:
            timeout = self.send_timeout
        return add_timeout(d, timeout, self.reactor, "send")

    def send_multi(
        self,
        item: Any,
        to: Optional[Sequence[Any]],
        where: Optional[Callable[[Any], bool]],
        timeout: Optional[float],
        raw: bool = False,
        check_room: bool = True,
    ) -> Deferred[int]:
        """
        Send to every peer, or those in C{to}, or those C{where} accepts,
        waiting (unencoded) while a peer's queue is at C{send_high_water}
        (with the C{"wait"} slow-receiver policy); C{check_room=False} is
        for sends that have waited.
        """
        if self.closed:
            return fail(ChannelClosed())
        if check_room and (self._room_waiters or (self.pool.blocked and self._some_queue_full())):
            return self._wait_for_room(partial(self.send_multi, item, to, where, None, raw, False), timeout)
        try:
            payload = self.encode(item, raw)
        except EncodeError as e:
            return fail(e)
        try:
            d = self.pool.broadcast(
                payload, None if to is None and where is None else self._targets(to, where)
            )
        except FrameTooLarge as e:
            return fail(e)
        if d.called:
            return d
        if timeout is None:
            timeout = self.send_timeout
        return add_timeout(d, timeout, self.reactor, "send")

    def _targets(
        self, to: Optional[Sequence[Any]], where: Optional[Callable[[Any], bool]]
    ) -> List[FramedProtocol]:
        # Apart from send_multi: its comprehensions would make its
        # variables closure cells, a cost on every send.
        targets = self.pool.members(to)
        if where is not None:
            targets = [c for c in targets if where(c.address)]
        return targets

    # Waiting for room

    def _some_queue_full(self) -> bool:
        # With the "disconnect" policy the pool drops a receiver that falls
        # behind instead.
        return self.pool.slow_receiver == "wait" and self.pool.some_queue_full()

    def _wait_for_room(self, start: Callable[[], Deferred[Any]], timeout: Optional[float]) -> Deferred[Any]:
        """
        Hold a send until every queue it may write to has room, then
        C{start} it (encoding happens then); sends leave in call order.
        """
        return self._hold(self._room_waiters, start, 0, timeout)

    def _make_room(self, _: Any = None) -> None:
        """
        Start the waiting sends that fit now (a queue drained or a peer
        left).
        """
        waiters = self._room_waiters
        while waiters and not self._some_queue_full():
            waiters.popleft().go()

    # Closing

    def close(self, timeout: Optional[float] = None) -> Deferred[None]:
        """
        Stop listening or connecting, flush, close every connection; after
        C{timeout} seconds, abort the connections still flushing.
        """
        d: Deferred[None] = Deferred()
        if self._close_done:
            d.callback(None)
            return d
        self._close_waiters.append(d)
        if timeout is not None:
            # Every close(timeout=) bounds the wait, even a later call.
            self._abort_calls.append(self.reactor.callLater(timeout, self.pool.abort))
        if self.closed:
            return d  # already closing (also reached re-entrantly, below)
        self.closed = True
        if self.queue is not None:
            self.queue.close(ChannelClosed())
        # Each waiting list is emptied in place, one entry at a time (closed,
        # the channel adds none): a _make_room loop that this close()
        # interrupts (from a send's callback) finds nothing left to start,
        # and an errback that cancels a later entry finds it where its
        # canceller looks.
        backlog = self._backlog
        while backlog:
            backlog.popleft().deferred.errback(
                Failure(ChannelClosed("channel closed before reconnecting"))
            )
        self._backlog_bytes = 0
        room_waiters = self._room_waiters
        while room_waiters:
            room_waiters.popleft().deferred.errback(Failure(ChannelClosed()))
        accept_waiters = self._accept_waiters
        while accept_waiters:
            accept_waiters.pop(0).deferred.errback(Failure(ChannelClosed()))
        if self._connecting is not None and not self._connecting.called:
            self._connecting.cancel()
        steps: List[Deferred[Any]] = []
        if self.port is not None:
            steps.append(self.port.stopListening() or succeed(None))  # type: ignore[arg-type]
        closing = self.pool.close()
        if self._service is not None:
            service = self._service
            closing.addCallback(lambda _: service.stopService())
        steps.append(closing)

        def finished(_: Any) -> None:
            self._close_done = True
            for call in self._abort_calls:
                if call.active():
                    call.cancel()
            waiters, self._close_waiters = self._close_waiters, []
            for waiting in waiters:
                waiting.callback(None)

        DeferredList(steps, consumeErrors=True).addCallback(finished)
        return d


_default_backoff = backoffPolicy(initialDelay=0.1, maxDelay=10.0, factor=1.5, jitter=lambda: 0.0)
