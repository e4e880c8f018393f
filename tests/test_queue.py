"""
Tests for L{tsyncp_tx._queue.ReceiveQueue} on its own: no reactor, no
sockets, a stand-in connection.
"""

from __future__ import annotations

from typing import Any, List

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from tsyncp_tx._queue import ITEM, ITEM_ADDR, RAW, RAW_ADDR, ReceiveQueue
from tsyncp_tx.codecs import JsonCodec, RawCodec
from tsyncp_tx.errors import DecodeError


class FakeConnection:
    """
    What the queue reads of a connection: its address.
    """

    def __init__(self, address: Any) -> None:
        self.address = address


class Recorder:
    """
    Records the queue's pause and resume calls.
    """

    def __init__(self) -> None:
        self.calls: List[str] = []

    def pause(self) -> None:
        self.calls.append("pause")

    def resume(self) -> None:
        self.calls.append("resume")


def make_queue(codec: Any, high_water: int = 1000) -> "tuple[ReceiveQueue, Recorder]":
    recorder = Recorder()
    return ReceiveQueue(codec, recorder.pause, recorder.resume, high_water=high_water), recorder


def take(queue: ReceiveQueue, count: int) -> List[Any]:
    """
    Take C{count} items with C{async for}, synchronously (they must be
    queued), leaving the rest in the queue.
    """
    items: List[Any] = []

    async def consume() -> None:
        async for item in queue.iterate():
            items.append(item)
            if len(items) == count:
                break

    d = Deferred.fromCoroutine(consume())
    assert d.called, "async for waited: fewer items queued than asked for"
    return items


class IterateTests(SynchronousTestCase):
    """
    C{async for} takes items itself on the per-item path (payloads of a
    C{RawCodec} without a call per item): the queue's counts, byte
    accounting and flow control must come out as they do through C{recv()}.
    """

    def test_bookkeeping_and_resume(self) -> None:
        """
        Items come out in order; a read's bytes are released once its last
        item is taken; reading resumes once the queue falls to half of the
        high-water mark, not before.
        """
        queue, recorder = make_queue(RawCodec(), high_water=4)
        connection = FakeConnection(("127.0.0.1", 1))
        reads = [[b"a1", b"a2", b"a3"], [b"b1", b"b2"], [b"c1", b"c2", b"c3", b"c4"]]
        for frames in reads:
            queue.put(list(frames), connection)  # type: ignore[arg-type]
        self.assertEqual(recorder.calls, ["pause"])
        self.assertEqual((len(queue), queue.queued_bytes), (9, 18))

        self.assertEqual(take(queue, 3), [b"a1", b"a2", b"a3"])
        self.assertEqual((len(queue), queue.queued_bytes), (6, 12))
        self.assertEqual(recorder.calls, ["pause"])
        self.assertEqual(take(queue, 3), [b"b1", b"b2", b"c1"])
        # 3 left, above half of 4: still paused; the third read's bytes
        # are held until its last item goes.
        self.assertEqual((len(queue), queue.queued_bytes), (3, 8))
        self.assertEqual(recorder.calls, ["pause"])
        self.assertEqual(take(queue, 1), [b"c2"])
        self.assertEqual(recorder.calls, ["pause", "resume"])
        self.assertEqual(take(queue, 2), [b"c3", b"c4"])
        self.assertEqual((len(queue), queue.queued_bytes), (0, 0))

    def test_mixed_with_recv(self) -> None:
        """
        Items taken by C{async for} and by C{get()} (what C{recv()} calls)
        in turn come out in arrival order, with nothing lost or repeated.
        """
        queue, _ = make_queue(RawCodec())
        connection = FakeConnection(("127.0.0.1", 1))
        queue.put([b"1", b"2", b"3"], connection)  # type: ignore[arg-type]
        queue.put([b"4", b"5"], connection)  # type: ignore[arg-type]
        got = take(queue, 1)
        got.append(self.successResultOf(queue.get(ITEM)))
        got += take(queue, 2)
        got.append(self.successResultOf(queue.get(RAW)))
        self.assertEqual(got, [b"1", b"2", b"3", b"4", b"5"])
        self.assertEqual((len(queue), queue.queued_bytes), (0, 0))

    def test_decoded_items(self) -> None:
        """
        With a codec that decodes, C{async for} yields decoded items.
        """
        queue, _ = make_queue(JsonCodec())
        queue.put([b"[1]", b'{"a":2}'], FakeConnection("x"))  # type: ignore[arg-type]
        self.assertEqual(take(queue, 2), [[1], {"a": 2}])


class RawCodecModeTests(SynchronousTestCase):
    """
    A C{RawCodec} item is its payload, so the queue hands payloads over
    without calling C{decode}; every mode still has its shape.
    """

    def test_modes(self) -> None:
        """
        Each mode gives the payload itself, or C{(payload, address)}.
        """
        queue, _ = make_queue(RawCodec())
        payloads = [b"p0", b"p1", b"p2", b"p3"]
        queue.put(list(payloads), FakeConnection(("h", 7)))  # type: ignore[arg-type]
        results = [self.successResultOf(queue.get(mode)) for mode in (ITEM, ITEM_ADDR, RAW, RAW_ADDR)]
        self.assertEqual(results, [b"p0", (b"p1", ("h", 7)), b"p2", (b"p3", ("h", 7))])
        self.assertIs(results[0], payloads[0])

    def test_subclass_decode_still_called(self) -> None:
        """
        Only C{RawCodec} itself is skipped: a subclass that overrides
        C{decode} decodes every item, on every path.
        """

        class Upper(RawCodec):
            def decode(self, payload: bytes) -> bytes:
                return payload.upper()

        queue, _ = make_queue(Upper())
        queue.put([b"a", b"b", b"c", b"d"], FakeConnection("x"))  # type: ignore[arg-type]
        self.assertEqual(self.successResultOf(queue.get(ITEM)), b"A")
        self.assertEqual(self.successResultOf(queue.get(RAW)), b"b")
        self.assertEqual(take(queue, 1), [b"C"])
        self.assertEqual(self.successResultOf(queue.get_many(ITEM)), [b"D"])

    def test_get_many_moves_whole_reads(self) -> None:
        """
        C{get_many} in C{ITEM} mode on a C{RawCodec} queue returns every
        queued payload, across reads, in order, and empties the accounting.
        """
        queue, _ = make_queue(RawCodec())
        connection = FakeConnection("x")
        queue.put([b"1", b"2"], connection)  # type: ignore[arg-type]
        queue.put([b"3"], connection)  # type: ignore[arg-type]
        queue.put([b"4", b"5"], connection)  # type: ignore[arg-type]
        self.assertEqual(take(queue, 1), [b"1"])
        self.assertEqual(self.successResultOf(queue.get_many(ITEM, 3)), [b"2", b"3", b"4"])
        self.assertEqual(self.successResultOf(queue.get_many(ITEM)), [b"5"])
        self.assertEqual((len(queue), queue.queued_bytes), (0, 0))


class IterateDecodeErrorTests(SynchronousTestCase):
    """
    A payload the codec refuses, met by C{async for}.
    """

    def test_raised_with_address(self) -> None:
        """
        Without a hook, C{async for} raises the L{DecodeError}, naming the
        peer; the items after it stay queued.
        """
        queue, _ = make_queue(JsonCodec())
        queue.put([b"1", b"{bad", b"3"], FakeConnection(("h", 9)))  # type: ignore[arg-type]
        items: List[Any] = []

        async def consume() -> None:
            async for item in queue.iterate():
                items.append(item)

        failure = self.failureResultOf(Deferred.fromCoroutine(consume()), DecodeError)
        self.assertEqual(items, [1])
        self.assertEqual(failure.value.address, ("h", 9))
        self.assertEqual(take(queue, 1), [3])

    def test_hook_skips(self) -> None:
        """
        With C{on_decode_error}, the bad payload goes to the hook and
        C{async for} goes on with the next item.
        """
        errors: List[DecodeError] = []
        queue = ReceiveQueue(JsonCodec(), lambda: None, lambda: None, on_decode_error=errors.append)
        queue.put([b"1", b"{bad", b"3"], FakeConnection(("h", 9)))  # type: ignore[arg-type]
        self.assertEqual(take(queue, 2), [1, 3])
        self.assertEqual([e.address for e in errors], [("h", 9)])
