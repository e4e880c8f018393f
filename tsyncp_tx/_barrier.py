"""
The network barrier: waiters block until the barrier releases them.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Union

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from ._address import AddressLike
from ._codecs import BarrierCodec
from ._core import ChannelCore, RetryLike, default_reactor
from ._pool import call_hook
from ._protocol import FramedProtocol
from ._queue import ITEM, add_timeout, check_timeout
from ._views import CONNECTION_OPTIONS, _check_options, _Multi, _SinglePeer, accept_count

_RELEASE = b"\x00"


class Barrier(_Multi):
    """
    The listening side of a barrier.

    Every connected waiter counts as waiting when it connects, and again
    each time a Python waiter announces its next C{wait()} (frame C{01 00}).
    L{release} frees every connected waiter; with C{parties=N} the barrier
    also releases the waiting waiters by itself each time N of them wait.
    """

    __slots__ = ("parties", "_waiting", "_generation", "_on_release", "_refused", "_make_room")

    log = Logger()

    def __init__(self, core: ChannelCore, parties: Optional[int], on_release: Optional[Callable[[int, List[Any]], Any]]) -> None:
        """
        @param core: The channel machinery.
        @param parties: Release automatically whenever this many wait.
        @param on_release: Called with C{(generation, addresses)} after each
            release.
        """
        super().__init__(core)
        self.parties = parties
        self._waiting: Dict[Any, None] = {}
        self._generation = 0
        self._on_release = on_release
        # Whether an automatic release was refused (a waiter's queue full):
        # it is tried again when a queue drains.
        self._refused = False
        self._make_room = core.pool.on_drain
        core.pool.on_drain = self._drained

    @property
    def generation(self) -> int:
        """
        The number of releases so far.
        """
        return self._generation

    @property
    def waiting(self) -> int:
        """
        The number of waiters waiting now.
        """
        return len(self._waiting)

    def release(self) -> Deferred[int]:
        """
        Release every connected waiter now.

        @return: A Deferred firing with the number released.  It fails with
            L{SendQueueFull} if a waiter's queue of unwritten frames is
            full; then nobody is released and every waiter still waits.
        """
        return self._release(None)

    def _release(self, addresses: Optional[List[Any]]) -> Deferred[int]:
        if self._core.closed:
            return succeed(0)
        pool = self._core.pool
        targets = pool.members(addresses)
        d = pool.broadcast(_RELEASE, targets)
        if d.called and isinstance(d.result, Failure):
            # Refused before anything was written (a waiter's queue is
            # full): nobody is released, and the waiters still wait.
            return d
        released = [c.address for c in targets]
        for address in released:
            self._waiting.pop(address, None)
        # No log event per generation: one costs more than the rest of a
        # release (on_release tells whoever wants to know).
        self._generation += 1
        if self._on_release is not None:
            call_hook(self.log, self._on_release, self._generation, released)
        return d

    # Hooks wired into the core

    def _joined(self, address: Any) -> None:
        self._arrive(address)

    def _left(self, address: Any, reason: Failure) -> None:
        self._waiting.pop(address, None)

    def _frames(self, frames: List[bytes], connection: FramedProtocol) -> None:
        for frame in frames:
            if frame != _RELEASE:
                connection.protocol_error(
                    f"barrier expected frames holding the byte 0x00, got {frame[:16]!r}"
                )
                return
            self._arrive(connection.address)

    def _arrive(self, address: Any) -> None:
        self._waiting[address] = None
        if self.parties is not None and len(self._waiting) >= self.parties:
            self._release_waiting()

    def _release_waiting(self) -> None:
        released = self._release(list(self._waiting))
        # Nobody else holds this Deferred: a release that could not be sent
        # (a waiter's queue full) is logged.  A callback on one that
        # already fired would cost every generation.
        if not released.called:
            released.addErrback(self._release_failed, self._generation)
        elif isinstance(released.result, Failure):  # refused: not counted
            self._refused = True
            released.addErrback(self._release_failed, self._generation + 1)

    def _drained(self, connection: FramedProtocol) -> None:
        if self._make_room is not None:
            self._make_room(connection)
        if self._refused:
            self._refused = False
            if self.parties is not None and len(self._waiting) >= self.parties:
                self._release_waiting()

    def _release_failed(self, failure: Failure, generation: int) -> None:
        self.log.failure(
            "Barrier release of generation {generation} failed", failure, generation=generation
        )


class Waiter(_SinglePeer):
    """
    The connecting side of a barrier.
    """

    __slots__ = ("_waits", "_owed")

    def __init__(self, core: ChannelCore) -> None:
        """
        @param core: The channel machinery.
        """
        super().__init__(core)
        self._waits = 0
        # Whether a wait() gave up while the barrier counted this waiter.
        self._owed = False
        assert core.queue is not None
        core.queue.on_withdraw = self._gave_up

    def wait(self, timeout: Optional[float] = None) -> Deferred[None]:
        """
        Wait for the barrier's next release.

        The first call waits for the release the waiter joined for by
        connecting; each later call first tells the barrier that this waiter
        waits again (frame C{01 00}; a Rust barrier ignores it).  After a
        call that timed out or was cancelled the barrier still counts the
        waiter, so the next call tells it nothing and takes the release
        that answers the earlier one.

        @param timeout: Seconds before failing with L{TimeoutError}.
        @return: A Deferred firing with C{None} on release; failing with
            L{ConnectionClosed} if the barrier goes away, with L{DecodeError}
            (carrying the barrier's address) if it sends anything but a
            release.
        @raise ValueError: If C{timeout} is negative or not finite
            (C{TypeError} if it is not a number); nothing is started.
        """
        if timeout is not None:
            check_timeout(timeout)
        core = self._core
        queue = core.queue
        assert queue is not None
        if self._owed:
            # An earlier wait() gave up before its release came: the
            # barrier still counts this waiter, and that release (queued or
            # on its way) answers this call.  Announcing again would count
            # the waiter in the generation after it too.
            self._owed = False
        elif self._waits:
            announced = core.send_one(_RELEASE, None, raw=True)
            if not announced.called or announced.result is not None:
                # Waiting or failed: a lost connection fails the wait anyway.
                announced.addErrback(_ignore)
        self._waits += 1
        # BarrierCodec refuses every payload but a release.
        return add_timeout(queue.get(ITEM), timeout, core.reactor, "wait")

    def _gave_up(self) -> None:
        # A wait() was cancelled (or timed out) before its release came.
        self._owed = True


def _ignore(failure: Failure) -> None:
    pass


def barrier_on(
    address: AddressLike,
    *,
    parties: Optional[int] = None,
    accept: Union[int, str] = 0,
    limit: Optional[int] = None,
    accept_filter: Optional[Callable[[Any], bool]] = None,
    on_accept: Optional[Callable[[Any], Any]] = None,
    on_disconnect: Optional[Callable[[Any, Any], Any]] = None,
    on_release: Optional[Callable[[int, List[Any]], Any]] = None,
    reactor: Any = None,
    **options: Any,
) -> Deferred[Barrier]:
    """
    Listen for barrier waiters.

    @param address: Where to listen (see L{tsyncp_tx.channel.channel_on}).
    @param parties: Release automatically each time this many waiters wait
        (reusable, like C{threading.Barrier}); without it, call
        L{Barrier.release}.
    @param accept: Waiters to wait for before firing, or C{"limit"}.
    @param limit: The most waiters connected at once.
    @param accept_filter: C{accept_filter(address) -> bool}.
    @param on_accept: Called with each joining waiter's address.
    @param on_disconnect: Called with C{(address, reason)} when one leaves.
    @param on_release: Called with C{(generation, addresses)} after each
        release.
    @param reactor: The reactor (default: the global one).
    @param options: Connection options (see L{tsyncp_tx.channel.channel_on}).
    @return: A Deferred firing with the L{Barrier}.
    """
    _check_options(options, CONNECTION_OPTIONS - {"on_accept", "on_disconnect", "on_decode_error"})
    if parties is not None and parties < 1:
        raise ValueError(f"parties must be at least 1, not {parties!r}")
    accept = accept_count(accept, limit)
    holder: List[Barrier] = []

    # The user's hooks run through call_hook here, not only around these
    # wrappers: one that raises must not keep the barrier from counting.
    def joined(peer: Any) -> None:
        # The user hears of the waiter before any release it triggers.
        if on_accept is not None:
            call_hook(Barrier.log, on_accept, peer)
        holder[0]._joined(peer)

    def left(peer: Any, reason: Failure) -> None:
        holder[0]._left(peer, reason)
        if on_disconnect is not None:
            call_hook(Barrier.log, on_disconnect, peer, reason)

    core = ChannelCore(
        default_reactor(reactor),
        BarrierCodec(),
        single=False,
        receives=True,
        limit=limit,
        accept_filter=accept_filter,
        on_accept=joined,
        on_disconnect=left,
        deliver=lambda frames, connection: holder[0]._frames(frames, connection),
        **options,
    )
    holder.append(Barrier(core, parties, on_release))
    return core.listen(address, accept).addCallback(lambda _: holder[0])


def waiter_to(
    address: AddressLike,
    *,
    retry: RetryLike = None,
    reactor: Any = None,
    **options: Any,
) -> Deferred[Waiter]:
    """
    Connect to a barrier.

    @param address: Where to connect (see L{tsyncp_tx.channel.channel_to}).
    @param retry: Retry policy for the connection.
    @param reactor: The reactor (default: the global one).
    @param options: Connection options (see L{tsyncp_tx.channel.channel_to}).
    @return: A Deferred firing with the L{Waiter}.
    """
    _check_options(options, CONNECTION_OPTIONS)
    core = ChannelCore(default_reactor(reactor), BarrierCodec(), single=True, receives=True, **options)
    return core.connect(address, retry, False, None).addCallback(lambda _: Waiter(core))

