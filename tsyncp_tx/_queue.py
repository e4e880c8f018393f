"""
L{ReceiveQueue}: decoded-on-demand frames waiting for C{recv()} calls.
"""

from __future__ import annotations

import math

from collections import deque
from functools import partial
from typing import Any, AsyncIterator, Callable, Deque, List, Optional, Tuple

from twisted.internet.defer import Deferred, fail
from twisted.logger import Logger
from twisted.python.failure import Failure

from ._codecs import RawCodec
from ._errors import ChannelClosed, ConnectionClosed, DecodeError, NotWithdrawn, TimeoutError
from ._fired import fired
from ._pool import call_hook
from ._protocol import FramedProtocol

#: Default bound on queued items before reading pauses.
DEFAULT_RECV_HIGH_WATER = 4096
#: Default bound on queued payload bytes before reading pauses.
DEFAULT_RECV_HIGH_WATER_BYTES = 8 * 1024 * 1024

# What recv() hands back.
ITEM, ITEM_ADDR, RAW, RAW_ADDR = range(4)


def recv_mode(with_addr: bool, raw: bool) -> int:
    """
    The delivery mode for a C{recv()} call's flags.

    @param with_addr: Return C{(item, address)} pairs.
    @param raw: Return payload bytes instead of decoded items.
    @return: One of C{ITEM}, C{ITEM_ADDR}, C{RAW}, C{RAW_ADDR}.
    """
    return (RAW if raw else ITEM) + (1 if with_addr else 0)


def check_timeout(timeout: Any, name: str = "timeout") -> None:
    """
    Refuse a C{timeout=} that is not C{None} or a finite number of seconds,
    0 or more: before the operation is registered, so nothing is left
    waiting behind the error.

    @param timeout: The value given.
    @param name: The setting's name, for the error.
    @raise TypeError: If it is not a number.
    @raise ValueError: If it is negative, infinite or NaN.
    """
    if timeout is None:
        return
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"{name} must be a number of seconds or None, not {timeout!r}")
    if not (timeout >= 0 and math.isfinite(timeout)):
        raise ValueError(f"{name} must be a finite number of seconds, 0 or more, not {timeout!r}")


def add_timeout(d: Deferred[Any], timeout: Optional[float], clock: Any, operation: str) -> Deferred[Any]:
    """
    Fail C{d} with L{TimeoutError} (by cancelling it) after C{timeout}
    seconds.

    @param d: The Deferred.
    @param timeout: Seconds, or C{None} for no timeout.
    @param clock: The reactor.
    @param operation: The operation's name, for the error.
    @return: C{d}.
    """
    if timeout is None or d.called:
        return d
    return d.addTimeout(timeout, clock, onTimeoutCancel=partial(_timed_out, operation))


def _timed_out(operation: str, result: Any, timeout: float) -> Any:
    # A module function, not a closure: add_timeout runs on every send and
    # recv that waits, most without a timeout.
    if not isinstance(result, Failure):
        return result  # done after all, as its cancellation found
    raise TimeoutError(operation, timeout, not result.check(NotWithdrawn))


class ReceiveQueue:
    """
    Received payloads of one channel, waiting to be taken by C{recv()}.

    Frames are kept as the lists the decoder produced (no per-item copy) and
    decoded when taken, so a bad payload fails the C{recv()} that takes it
    and nothing else.  When more than C{high_water} items or
    C{high_water_bytes} bytes wait, reading pauses on every connection of the
    pool, and resumes when the queue falls to half of both.

    C{recv()} Deferreds are served in call order; cancelling one loses no
    item.
    """

    log = Logger()

    def __init__(
        self,
        codec: Any,
        pause: Callable[[], None],
        resume: Callable[[], None],
        high_water: int = DEFAULT_RECV_HIGH_WATER,
        high_water_bytes: int = DEFAULT_RECV_HIGH_WATER_BYTES,
        on_decode_error: Optional[Callable[[DecodeError], Any]] = None,
    ) -> None:
        """
        @param codec: Decodes payloads.
        @param pause: Stops reading from the peers.
        @param resume: Resumes reading.
        @param high_water: Items queued before reading pauses.
        @param high_water_bytes: Payload bytes queued before reading pauses.
        @param on_decode_error: If given, undecodable payloads are passed to
            it (as L{DecodeError}) and skipped instead of failing C{recv()}.
        """
        self._decode = codec.decode
        self._codec = codec
        # Modes from this one up hand payloads over undecoded: RAW and
        # RAW_ADDR, and every mode for a RawCodec (its item is the payload).
        self._undecoded_from = ITEM if type(codec) is RawCodec else RAW
        self._pause = pause
        self._resume = resume
        self.high_water = max(1, high_water)
        self.high_water_bytes = max(1, high_water_bytes)
        self._low_water = self.high_water // 2
        self._low_water_bytes = self.high_water_bytes // 2
        self.on_decode_error = on_decode_error
        #: Called when a waiting get() is cancelled (or times out).
        self.on_withdraw: Optional[Callable[[], None]] = None
        # [payloads, connection, their total size]; bytes are accounted per
        # batch, released when a batch is used up.
        self._batches: Deque[List[Any]] = deque()
        self._index = 0  # position in the head batch
        self._count = 0
        self._bytes = 0
        self._paused = False
        self._waiters: Deque[Tuple[Deferred[Any], int]] = deque()
        self._end: Optional[Exception] = None  # raised once the queue is empty
        self._discard = False
        # A DecodeError met by get_many() after it had items to return.
        self._pending_error: Optional[DecodeError] = None

    def __len__(self) -> int:
        return self._count

    @property
    def queued_bytes(self) -> int:
        """
        Payload bytes waiting (counted per read, so it may include the
        already-taken part of the oldest read).
        """
        return self._bytes

    @property
    def paused(self) -> bool:
        """
        Whether reading is paused because the queue is full.
        """
        return self._paused

    @property
    def ended(self) -> Optional[Exception]:
        """
        The error C{recv()} raises once the queue is drained, or C{None}.
        """
        return self._end

    def put(self, frames: List[bytes], connection: FramedProtocol) -> None:
        """
        Add the frames of one read.

        @param frames: The payloads, in order.
        @param connection: Where they came from.
        """
        if self._discard:
            return
        size = sum(map(len, frames))
        self._batches.append([frames, connection, size])
        self._count += len(frames)
        self._bytes += size
        if self._waiters:
            self._serve()
        if not self._paused and (
            self._count > self.high_water or self._bytes > self.high_water_bytes
        ):
            self._paused = True
            self._pause()

    # Taking items.  Callers check that an item is queued (self._count).

    def _take_as(self, mode: int) -> Any:
        """
        Take the next item, in the form C{mode} asks for.

        @return: The item, or C{_SKIPPED} if it was undecodable and handed
            to C{on_decode_error}.
        @raise DecodeError: If it is undecodable and there is no hook.
        """
        batch = self._batches[0]
        frames = batch[0]
        index = self._index
        payload = frames[index]
        index += 1
        if index == len(frames):
            self._batch_used()
            index = 0
        self._index = index
        self._count -= 1
        if self._paused:
            self._maybe_resume()
        if mode >= self._undecoded_from:
            return payload if mode == ITEM or mode == RAW else (payload, batch[1].address)
        try:
            item = self._decode(payload)
        except Exception as e:
            return self._bad_payload(self._decode_error(e, payload, batch[1]))
        return item if mode == ITEM else (item, batch[1].address)

    def _batch_used(self) -> List[bytes]:
        # The head read is used up: release its bytes.
        frames, _, size = self._batches.popleft()
        self._bytes -= size
        return frames  # type: ignore[no-any-return]

    def _maybe_resume(self) -> None:
        if self._count <= self._low_water and self._bytes <= self._low_water_bytes:
            self._paused = False
            self._resume()

    def _decode_error(self, error: Exception, payload: bytes, connection: FramedProtocol) -> DecodeError:
        if isinstance(error, DecodeError):
            error.address = connection.address
            return error
        # A user codec's own exception type.
        name = getattr(self._codec, "name", repr(self._codec))
        wrapped = DecodeError(name, str(error) or repr(error), bytes(payload), connection.address)
        wrapped.__cause__ = error
        return wrapped

    def _bad_payload(self, error: DecodeError) -> Any:
        if self.on_decode_error is None:
            self.log.warn("{error}", error=str(error))
            raise error
        # The hook has it: it logs, or not, as its owner wants.
        call_hook(self.log, self.on_decode_error, error)
        return _SKIPPED

    def _next(self, mode: int) -> Any:
        """
        Take the next usable item, skipping payloads handed to the hook.

        @return: The item, or C{_SKIPPED} if none usable was queued.
        @raise DecodeError: For an undecodable payload without a hook.
        """
        while self._count:
            item = self._take_as(mode)
            if item is not _SKIPPED:
                return item
        return _SKIPPED

    def get(self, mode: int = ITEM) -> Deferred[Any]:
        """
        Take the next item.

        @param mode: What to return (see L{recv_mode}).
        @return: A Deferred firing with it; already fired when an item was
            waiting.  Cancelling it withdraws the request, losing nothing.
        """
        if self._count and not self._waiters and self._pending_error is None:
            try:
                item = self._take_as(mode)
                if item is _SKIPPED:
                    item = self._next(mode)
            except DecodeError as e:
                return fail(e)
            if item is not _SKIPPED:
                return fired(item)
        if self._pending_error is not None and not self._waiters:
            error, self._pending_error = self._pending_error, None
            return fail(error)
        if self._end is not None and not self._count:
            return fail(self._end)
        d: Deferred[Any] = Deferred(self._withdraw)
        self._waiters.append((d, mode))
        return d

    def _withdraw(self, d: Deferred[Any]) -> None:
        # A waiting get() was cancelled: forget it (nothing was taken for it).
        for entry in self._waiters:
            if entry[0] is d:
                self._waiters.remove(entry)
                if self.on_withdraw is not None:
                    self.on_withdraw()
                return

    def get_nowait(self, mode: int = ITEM) -> Any:
        """
        Take the next item if one is waiting.

        @param mode: What to return (see L{recv_mode}).
        @return: The item.
        @raise IndexError: If none is waiting (or C{recv()} calls are).
        @raise DecodeError: If its payload is bad.
        """
        if self._waiters:
            raise IndexError("recv() calls are waiting")
        if self._pending_error is not None:
            error, self._pending_error = self._pending_error, None
            raise error
        item = self._next(mode)
        if item is not _SKIPPED:
            return item
        if self._end is not None:
            raise self._end
        raise IndexError("no item waiting")

    async def iterate(self) -> AsyncIterator[Any]:
        """
        Yield decoded items until the queue ends or is closed; items already
        queued are yielded without allocating a Deferred each.
        """
        batches = self._batches
        decode = None if self._undecoded_from == ITEM else self._decode
        while True:
            if self._count and not self._waiters and self._pending_error is None:
                # _take_as(ITEM) inlined: the call is an eighth of the cost
                # of a raw item.
                batch = batches[0]
                frames = batch[0]
                index = self._index
                item = frames[index]
                index += 1
                if index == len(frames):
                    self._batch_used()
                    index = 0
                self._index = index
                self._count -= 1
                if self._paused:
                    self._maybe_resume()
                if decode is not None:
                    try:
                        item = decode(item)
                    except Exception as e:
                        # Raises the DecodeError, or hands it to the hook.
                        self._bad_payload(self._decode_error(e, item, batch[1]))
                        continue
                yield item
                continue
            try:
                item = await self.get(ITEM)
            except END_OF_STREAM:
                return
            yield item

    def get_many(self, mode: int = ITEM, max_items: Optional[int] = None) -> Deferred[List[Any]]:
        """
        Take every item waiting (at most C{max_items}), or wait for one.

        @param mode: What to return (see L{recv_mode}).
        @param max_items: The most items to return.
        @return: A Deferred firing with a non-empty list.  A bad payload is
            skipped and reported through C{on_decode_error} when set;
            otherwise the items before it are returned and the next call
            fails with its L{DecodeError}.
        """
        if not self._count or self._waiters or self._pending_error is not None:
            return self.get(mode).addCallback(lambda item: [item])
        items: List[Any] = []
        limit = self._count if max_items is None else min(max_items, self._count)
        whole_reads = (mode == ITEM or mode == RAW) and mode >= self._undecoded_from
        while len(items) < limit and self._count:
            if whole_reads and self._index == 0 and len(self._batches[0][0]) <= limit - len(items):
                # A whole read's raw payloads move over as they are.
                frames = self._batch_used()
                self._count -= len(frames)
                items.extend(frames)
                if self._paused:
                    self._maybe_resume()
                continue
            try:
                item = self._take_as(mode)
            except DecodeError as e:
                if items:
                    self._pending_error = e
                    break
                return fail(e)
            if item is not _SKIPPED:
                items.append(item)
        if not items:
            return self.get_many(mode, max_items)
        return fired(items)

    def _serve(self) -> None:
        waiters = self._waiters
        while waiters and self._count:
            d, mode = waiters[0]
            try:
                item = self._take_as(mode)
                if item is _SKIPPED:
                    item = self._next(mode)
            except DecodeError as e:
                waiters.popleft()
                d.errback(Failure(e))
                continue
            if item is _SKIPPED:
                break
            waiters.popleft()
            d.callback(item)
        if self._end is not None and not self._count:
            self._fail_waiters(self._end)

    def _fail_waiters(self, error: Exception) -> None:
        while self._waiters:
            d, _ = self._waiters.popleft()
            d.errback(Failure(error))

    def end(self, error: Exception) -> None:
        """
        No more items will arrive: once the queued ones are taken, C{recv()}
        fails with C{error}.

        @param error: Usually a L{ConnectionClosed}.
        """
        if self._end is None:
            self._end = error
        if not self._count:
            self._fail_waiters(self._end)

    def close(self, error: Exception) -> None:
        """
        Discard everything queued and fail every waiting and later
        C{recv()} with C{error}.

        @param error: Usually a L{ChannelClosed}.
        """
        self._discard = True
        self._batches.clear()
        self._count = self._bytes = self._index = 0
        self._end = error
        self._fail_waiters(error)


# Returned by the take methods for a payload handed to on_decode_error.
_SKIPPED = object()

#: Errors that end C{async for}.
END_OF_STREAM = (ConnectionClosed, ChannelClosed)
