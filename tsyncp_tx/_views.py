"""
The public channel classes: views exposing parts of a L{ChannelCore}, and
the constructors' shared plumbing.
"""

from __future__ import annotations

from typing import (
    Any,
    AsyncIterator,
    Callable,
    Dict,
    List,
    Optional,
    Sequence,
    Tuple,
    Type,
    TypeVar,
    Union,
)

from twisted.internet.defer import Deferred, fail, gatherResults

from ._address import AddressLike
from ._codecs import JsonCodec
from ._core import ChannelCore, RetryLike, default_reactor
from ._errors import EncodeError
from ._queue import ITEM, RAW, add_timeout, check_timeout, recv_mode

Address = Any
_V = TypeVar("_V", bound="_View")

#: Options every constructor accepts besides its own (see L{open_listening}).
CONNECTION_OPTIONS = frozenset(
    (
        "max_frame_length",
        "nodelay",
        "read_size",
        "send_limit",
        "send_high_water",
        "send_timeout",
        "recv_high_water",
        "recv_high_water_bytes",
        "on_decode_error",
        "on_accept",
        "on_disconnect",
    )
)
_MULTI_OPTIONS = frozenset(("limit", "accept_filter", "slow_receiver", "slow_receiver_limit"))
# Options that only mean something to a channel that receives.
_RECEIVE_OPTIONS = frozenset(("recv_high_water", "recv_high_water_bytes", "on_decode_error"))


class _View:
    """
    Base of every channel object: closing, addresses, accepting.
    """

    __slots__ = ("_core",)

    def __init__(self, core: ChannelCore) -> None:
        """
        @param core: The channel's machinery (built by the constructors).
        """
        self._core = core

    def close(self, timeout: Optional[float] = None) -> Deferred[None]:
        """
        Close the channel: stop listening or reconnecting, flush every byte
        already sent, close every connection.  Pending C{recv()} calls fail
        with L{ChannelClosed}.  Closing twice is harmless.

        @param timeout: Seconds to wait for a peer that does not read the
            rest; then its connection is aborted, unsent data discarded.
            By default, C{close} waits as long as the peers keep the TCP
            connection open.
        @return: A Deferred firing once everything is flushed and closed.
        @raise ValueError: If C{timeout} is negative or not finite
            (C{TypeError} if it is not a number); nothing is started.
        """
        check_timeout(timeout)
        return self._core.close(timeout)

    @property
    def local_address(self) -> Any:
        """
        The address this channel listens on (C{(host, port)} for TCP, the
        path for UNIX sockets), or its own end of its connection.
        """
        return self._core.local_address

    @property
    def closed(self) -> bool:
        """
        Whether L{close} was called.
        """
        return self._core.closed

    def accept(self, n: int = 1, timeout: Optional[float] = None) -> Deferred[int]:
        """
        Wait for C{n} more peers to connect.

        @param n: How many.
        @param timeout: Seconds before failing with L{TimeoutError}.
        @return: A Deferred firing with C{n} once they have joined.
        @raise ValueError: If C{timeout} is negative or not finite
            (C{TypeError} if it is not a number); nothing is started.
        """
        check_timeout(timeout)
        return self._core.accept(n, timeout)

    def __repr__(self) -> str:
        where = self._core.local_address if self._core.port else self._core.address
        return f"<{type(self).__module__}.{type(self).__name__} {where!r}>"


class _SinglePeer(_View):
    __slots__ = ()

    @property
    def peer_address(self) -> Optional[Address]:
        """
        The peer's address while connected (the last peer's afterwards), or
        C{None} before any peer connected.
        """
        return self._core.last_peer_address

    @property
    def connected(self) -> bool:
        """
        Whether the peer is connected now.
        """
        return self._core.peer is not None


class _Sending(_SinglePeer):
    __slots__ = ()

    def send(self, item: Any, timeout: Optional[float] = None, raw: bool = False) -> Deferred[None]:
        """
        Send one item to the peer.

        @param item: The item, encoded with the channel's codec.
        @param timeout: Seconds before a waiting send fails with
            L{TimeoutError} (its item is withdrawn).
        @param raw: Send C{item} (C{bytes}) as the payload, unencoded.
        @return: A Deferred firing once the frame is handed to the transport:
            already fired unless the transport pushes back (or, with
            C{reconnect=True}, the peer is away).  It fails with
            L{EncodeError} or L{FrameTooLarge} for an item that cannot be
            sent (nothing is sent), L{ConnectionClosed} if the connection
            is gone.  Past C{send_high_water} queued bytes it waits, the
            item unencoded, for room.  While a C{reconnect=True} sender is
            away, its backlog past C{send_high_water} fails with
            L{SendQueueFull}.
        @raise ValueError: If C{timeout} is negative or not finite
            (C{TypeError} if it is not a number); nothing is started.
        """
        if timeout is not None:
            check_timeout(timeout)
        return self._core.send_one(item, timeout, raw)

    def send_many(self, items: Sequence[Any], raw: bool = False) -> Deferred[None]:
        """
        Send several items, in order, in one write.

        @param items: The items.
        @param raw: The items are payload bytes.
        @return: A Deferred firing once all are handed to the transport.
        """
        return self._core.send_many_one(items, raw)


class _Receiving(_View):
    __slots__ = ()

    def recv(
        self, with_addr: bool = False, raw: bool = False, timeout: Optional[float] = None
    ) -> Deferred[Any]:
        """
        Receive the next item.

        @param with_addr: Fire with C{(item, address)}.
        @param raw: Fire with the payload bytes, undecoded.
        @param timeout: Seconds before failing with L{TimeoutError}; the
            channel stays usable and no item is lost.
        @return: A Deferred firing with the item; C{recv()} calls are served
            in call order.  It fails with L{DecodeError} (carrying the
            peer's address) for a payload the codec refuses, the channel
            going on with the next; with L{ConnectionClosed} once a
            single-peer channel's connection is gone and every item that
            arrived before was received; with L{ChannelClosed} after
            L{close}.  Cancelling it loses no item.
        @raise ValueError: If C{timeout} is negative or not finite
            (C{TypeError} if it is not a number); nothing is started.
        """
        # recv_mode(with_addr, raw), inlined on the per-item path.
        if timeout is None:
            return self._core.queue.get((RAW if raw else ITEM) + with_addr)  # type: ignore[union-attr]
        check_timeout(timeout)
        d = self._core.queue.get((RAW if raw else ITEM) + with_addr)  # type: ignore[union-attr]
        return add_timeout(d, timeout, self._core.reactor, "recv")

    def recv_many(
        self,
        max_items: Optional[int] = None,
        with_addr: bool = False,
        raw: bool = False,
        timeout: Optional[float] = None,
    ) -> Deferred[List[Any]]:
        """
        Receive every item already waiting (at least one, waiting for it if
        needed), as a list.

        @param max_items: The most items to return.
        @param with_addr: Items are C{(item, address)} pairs.
        @param raw: Items are payload bytes.
        @param timeout: Seconds to wait for the first item before failing
            with L{TimeoutError}; no item is lost.
        @return: A Deferred firing with a non-empty list; it fails as
            L{recv} does.
        @raise ValueError: If C{timeout} is negative or not finite
            (C{TypeError} if it is not a number); nothing is started.
        """
        check_timeout(timeout)
        queue = self._core.queue
        assert queue is not None
        return add_timeout(
            queue.get_many(recv_mode(with_addr, raw), max_items), timeout, self._core.reactor, "recv"
        )

    @property
    def queued(self) -> int:
        """
        The number of items received and not yet taken.
        """
        queue = self._core.queue
        return len(queue) if queue is not None else 0

    def __aiter__(self) -> AsyncIterator[Any]:
        """
        Iterate over received items until the channel or its single
        connection is closed.
        """
        queue = self._core.queue
        assert queue is not None
        return queue.iterate()


class Sender(_Sending):
    """
    Sends items to its one peer (C{mpsc.sender_to}, C{spsc.sender_*}, the
    sending half of a L{Channel}).
    """

    __slots__ = ()


class Receiver(_Receiving, _SinglePeer):
    """
    Receives items from its one peer (C{broadcast.receiver_to},
    C{spsc.receiver_*}, the receiving half of a L{Channel}).
    """

    __slots__ = ()


class Channel(_Receiving, _Sending):
    """
    One connection, both directions.
    """

    __slots__ = ()

    def split(self) -> Tuple[Sender, Receiver]:
        """
        Split into a sending and a receiving half that share the connection,
        for use from two coroutines at once.  Closing either closes both.

        @return: C{(sender, receiver)}.
        """
        return Sender(self._core), Receiver(self._core)


class _Multi(_View):
    __slots__ = ()

    @property
    def addresses(self) -> List[Address]:
        """
        The addresses of the connected peers, in the order they joined.
        """
        return self._core.pool.addresses

    def __len__(self) -> int:
        """
        The number of connected peers.
        """
        return len(self._core.pool)


class _MultiSending(_Multi):
    __slots__ = ()

    def send(
        self,
        item: Any,
        to: Optional[Sequence[Address]] = None,
        filter: Optional[Callable[[Address], bool]] = None,
        timeout: Optional[float] = None,
        raw: bool = False,
    ) -> Deferred[int]:
        """
        Send one item to every peer, or to some.  The item is encoded and
        framed once, whatever the number of peers.

        @param item: The item.
        @param to: Send only to these addresses (unknown ones are skipped).
        @param filter: Send only to the peers whose address it accepts.
        @param timeout: Seconds before a waiting send fails with
            L{TimeoutError}, withdrawing the item from the queues it still
            waits in if no peer has it yet; if one has, it stays queued for
            the others (every peer gets the same items; the error's
            C{withdrawn} is false, a cancelled send fails with
            L{NotWithdrawn}): do not send it again.
        @param raw: Send C{item} (C{bytes}) unencoded.
        @return: A Deferred firing with the number of peers the item was
            handed to.  With the default C{slow_receiver="wait"} policy it
            waits for the slowest peer's transport.  A peer lost meanwhile
            is not counted; its loss goes to C{on_disconnect}.
        @raise ValueError: If C{timeout} is negative or not finite
            (C{TypeError} if it is not a number); nothing is started.
        """
        if timeout is not None:
            check_timeout(timeout)
        return self._core.send_multi(item, to, filter, timeout, raw)

    def send_many(self, items: Sequence[Any], raw: bool = False) -> Deferred[int]:
        """
        Send several items to every peer, in order.

        @param items: The items.
        @param raw: The items are payload bytes.
        @return: A Deferred firing with the number of peers the last item
            was handed to.  It fails with L{EncodeError} if an item cannot
            be encoded, and then none is sent.
        """
        core = self._core
        try:
            payloads = [core.encode(item, raw) for item in items]
        except EncodeError as e:
            return fail(e)
        sends = [core.send_multi(payload, None, None, None, True) for payload in payloads]
        return gatherResults(sends, consumeErrors=True).addCallbacks(
            lambda counts: counts[-1] if counts else len(self._core.pool),
            lambda f: f.value.subFailure,
        )


class BroadcastSender(_MultiSending):
    """
    Sends every item to many receivers (C{broadcast.sender_on}).
    """

    __slots__ = ()


class MultiReceiver(_Receiving, _Multi):
    """
    Receives from many senders (C{mpsc.receiver_on}).
    """

    __slots__ = ()


class MultiChannel(_Receiving, _MultiSending):
    """
    Many connections, both directions (C{multi_channel.channel_on}).
    """

    __slots__ = ()

    def split(self) -> Tuple[BroadcastSender, MultiReceiver]:
        """
        Split into a sending and a receiving half sharing the connections.

        @return: C{(broadcast_sender, mpsc_receiver)}.
        """
        return BroadcastSender(self._core), MultiReceiver(self._core)


def _check_options(options: Dict[str, Any], allowed: frozenset, receives: bool = True) -> None:
    unknown = set(options) - allowed
    if unknown:
        raise TypeError(f"unexpected option(s): {', '.join(sorted(unknown))}")
    if not receives:
        unused = _RECEIVE_OPTIONS.intersection(options)
        if unused:
            raise TypeError(
                f"option(s) for receiving on a channel that only sends: {', '.join(sorted(unused))}"
            )


AcceptLike = Union[int, str]


def accept_count(accept: AcceptLike, limit: Optional[int]) -> int:
    """
    Check a constructor's C{accept=} argument and resolve C{"limit"}.

    @param accept: A number of peers, or C{"limit"}.
    @param limit: The channel's C{limit=}.
    @return: The number of peers to wait for.
    @raise ValueError: If C{accept} is neither, or C{"limit"} without a
        limit.
    """
    if accept == "limit":
        if limit is None:
            raise ValueError('accept="limit" needs limit=')
        return limit
    if isinstance(accept, bool) or not isinstance(accept, int) or accept < 0:
        raise ValueError(f"accept must be a non-negative int or 'limit', not {accept!r}")
    return accept


def open_listening(
    view: Type[_V],
    address: AddressLike,
    *,
    single: bool,
    receives: bool,
    accept: AcceptLike,
    codec: Any,
    reactor: Any,
    options: Dict[str, Any],
) -> Deferred[_V]:
    """
    Listen on C{address} and fire with a C{view} of the new channel.

    @param view: The public class to return.
    @param address: Where to listen.
    @param single: Exactly one peer.
    @param receives: Keep a receive queue.
    @param accept: Peers to wait for before firing (C{"limit"}: C{limit}).
    @param codec: The codec (C{None}: L{JsonCodec}).
    @param reactor: The reactor (C{None}: the global one).
    @param options: Further keyword options, checked here.
    @return: A Deferred firing with the view.
    @raise TypeError: For an unknown option, or a receiving one on a
        channel that only sends.
    @raise ValueError: For an C{accept} that is not a count, or above 1 on
        a single-peer channel.
    """
    _check_options(options, CONNECTION_OPTIONS | (frozenset() if single else _MULTI_OPTIONS), receives)
    accept = accept_count(accept, options.get("limit"))
    if single and accept > 1:
        raise ValueError(f"a single-peer channel has one peer: accept must be 0 or 1, not {accept}")
    core = ChannelCore(
        default_reactor(reactor), codec if codec is not None else JsonCodec(), single, receives, **options
    )
    return core.listen(address, accept).addCallback(lambda core: view(core))


def open_connected(
    view: Type[_V],
    address: AddressLike,
    *,
    receives: bool,
    retry: RetryLike,
    reconnect: bool,
    codec: Any,
    reactor: Any,
    options: Dict[str, Any],
) -> Deferred[_V]:
    """
    Connect to C{address} and fire with a C{view} of the new channel.

    @param view: The public class to return.
    @param address: Where to connect.
    @param receives: Keep a receive queue.
    @param retry: The retry policy for the first connection.
    @param reconnect: Reconnect after losses, with backoff.
    @param codec: The codec (C{None}: L{JsonCodec}).
    @param reactor: The reactor (C{None}: the global one).
    @param options: Further keyword options, checked here
        (C{reconnect_policy} besides L{CONNECTION_OPTIONS}).
    @return: A Deferred firing with the view.
    @raise TypeError: For an unknown option, or a receiving one on a
        channel that only sends.
    @raise ValueError: For a C{reconnect_policy} without C{reconnect}.
    """
    reconnect_policy = options.pop("reconnect_policy", None)
    if reconnect_policy is not None and not reconnect:
        raise ValueError("reconnect_policy= needs reconnect=True")
    _check_options(options, CONNECTION_OPTIONS, receives)
    core = ChannelCore(
        default_reactor(reactor), codec if codec is not None else JsonCodec(), True, receives, **options
    )
    return core.connect(address, retry, reconnect, reconnect_policy).addCallback(lambda core: view(core))
