"""
Tests for L{tsyncp_tx.broadcast} over real loopback TCP.
"""

from __future__ import annotations

import os
from typing import Any, List

from twisted.internet import reactor as global_reactor
from twisted.internet.defer import gatherResults
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tsyncp_tx import broadcast
from tsyncp_tx.errors import ConnectError, ConnectionClosed

from ._util import LOOPBACK, as_deferred, eventually
from .test_channel import (
    CountingCodec,
    RecordingServerEndpoint,
    capture_logs,
    fake_peer,
    free_port,
    logged,
    run,
    short_temp_dir,
)


class BroadcastTests(TestCase):
    """
    One sender, many receivers.
    """

    timeout = 30

    async def sender(self, **options: Any) -> broadcast.Sender:
        """
        A sender on a free loopback port, closed after the test.
        """
        tx = await broadcast.sender_on(LOOPBACK, **options)
        self.addCleanup(tx.close)
        return tx

    async def receiver(self, address: Any, **options: Any) -> broadcast.Receiver:
        """
        A receiver connected to C{address}, closed after the test.
        """
        rx = await broadcast.receiver_to(address, **options)
        self.addCleanup(rx.close)
        return rx

    @as_deferred
    async def test_three_receivers_get_everything(self) -> None:
        """
        With three receivers (C{accept=3}), every receiver gets every item
        in order, and each C{send()} fires with 3.
        """
        endpoint = RecordingServerEndpoint()
        d = broadcast.sender_on(endpoint, accept=3)
        port = await endpoint.listening
        receivers = []
        for _ in range(3):
            receivers.append(await self.receiver(("127.0.0.1", port)))
        tx = await d
        self.addCleanup(tx.close)
        self.assertEqual(len(tx), 3)
        n = 300
        counts = await gatherResults([tx.send({"i": i}) for i in range(n)])
        self.assertEqual(set(counts), {3})

        async def drain(rx: broadcast.Receiver) -> List[int]:
            return [(await rx.recv())["i"] for _ in range(n)]

        results = await gatherResults([run(drain(rx)) for rx in receivers])
        for got in results:
            self.assertEqual(got, list(range(n)))

    @as_deferred
    async def test_send_many_with_unencodable_item_sends_none(self) -> None:
        """
        C{send_many} with an item the codec refuses fails with
        C{EncodeError} and sends none of the batch, as the single-peer
        C{send_many} does; the next batch arrives alone.
        """
        from tsyncp_tx.errors import EncodeError

        endpoint = RecordingServerEndpoint()
        d = broadcast.sender_on(endpoint, accept=1)
        rx = await self.receiver(("127.0.0.1", await endpoint.listening))
        tx = await d
        self.addCleanup(tx.close)
        await self.assertFailure(tx.send_many([1, object(), 3]), EncodeError)
        self.assertEqual(await tx.send_many([4, 5]), 1)
        self.assertEqual([await rx.recv(timeout=5), await rx.recv(timeout=5)], [4, 5])

    @as_deferred
    async def test_encoded_once_per_send(self) -> None:
        """
        An item is encoded once per C{send()}, not once per receiver.
        """
        codec = CountingCodec()
        tx = await self.sender(codec=codec)
        receivers = [await self.receiver(tx.local_address) for _ in range(3)]
        await eventually(lambda: len(tx) == 3)
        for i in range(20):
            self.assertEqual(await tx.send({"i": i, "pad": "p" * 100}), 3)
        self.assertEqual(codec.encoded, 20)
        for rx in receivers:
            self.assertEqual([(await rx.recv())["i"] for _ in range(20)], list(range(20)))

    @as_deferred
    async def test_send_to_and_filter(self) -> None:
        """
        C{send(to=)} and C{send(filter=)} pick receivers.
        """
        tx = await self.sender()
        a, b = [await self.receiver(tx.local_address) for _ in range(2)]
        await eventually(lambda: len(tx) == 2)
        self.assertEqual(await tx.send("to b", to=[b.local_address]), 1)
        self.assertEqual(await tx.send("not b", filter=lambda address: address != b.local_address), 1)
        self.assertEqual(await tx.send("all"), 2)
        self.assertEqual([await a.recv(), await a.recv()], ["not b", "all"])
        self.assertEqual([await b.recv(), await b.recv()], ["to b", "all"])
        self.assertEqual(sorted(tx.addresses), sorted([a.local_address, b.local_address]))

    @as_deferred
    async def test_late_receiver_gets_later_items(self) -> None:
        """
        A receiver joining later gets the items sent after it joined; a
        C{send()} with no receivers fires with 0.
        """
        tx = await self.sender()
        self.assertEqual(await tx.send("nobody"), 0)
        a = await self.receiver(tx.local_address)
        await eventually(lambda: len(tx) == 1)
        await tx.send(1)
        b = await self.receiver(tx.local_address)
        await eventually(lambda: len(tx) == 2)
        await tx.send(2)
        self.assertEqual([await a.recv(), await a.recv()], [1, 2])
        self.assertEqual(await b.recv(), 2)

    @as_deferred
    async def test_receiver_leaving(self) -> None:
        """
        A receiver leaving is reported to C{on_disconnect}; later sends
        count only the remaining ones.
        """
        left: List[Any] = []
        tx = await self.sender(on_disconnect=lambda address, reason: left.append(address))
        a, b = [await self.receiver(tx.local_address) for _ in range(2)]
        await eventually(lambda: len(tx) == 2)
        a_address = a.local_address
        await a.close()
        await eventually(lambda: left == [a_address])
        self.assertEqual(await tx.send("x"), 1)
        self.assertEqual(await b.recv(), "x")

    @as_deferred
    async def test_sender_close_ends_receivers(self) -> None:
        """
        When the sender closes (after flushing), each receiver gets every
        item, then C{ConnectionClosed} carrying the sender's address, and
        C{async for} ends.
        """
        tx = await broadcast.sender_on(LOOPBACK)
        address = tx.local_address
        receivers = [await self.receiver(address) for _ in range(2)]
        await eventually(lambda: len(tx) == 2)
        for i in range(100):
            tx.send(i)
        await tx.close()
        got = [item async for item in receivers[0]]
        self.assertEqual(got, list(range(100)))
        self.assertEqual([await receivers[1].recv() for _ in range(100)], list(range(100)))
        error = await self.assertFailure(receivers[1].recv(), ConnectionClosed)
        self.assertEqual(error.address, address)
        self.assertIsNone(error.reason)
        await self.assertFailure(receivers[0].recv(), ConnectionClosed)

    @as_deferred
    async def test_limit_and_filter(self) -> None:
        """
        C{limit} refuses (and logs) one receiver too many; C{accept_filter}
        refuses those it rejects.
        """
        logs = capture_logs(self)
        tx = await self.sender(limit=1, accept_filter=lambda address: True)
        a = await self.receiver(tx.local_address)
        await eventually(lambda: len(tx) == 1)
        b = await self.receiver(tx.local_address)
        b_address = b.local_address
        await self.assertFailure(b.recv(), ConnectionClosed)
        self.assertTrue(logged(logs, "Refusing", str(b_address[1])))
        await tx.send("a only")
        self.assertEqual(await a.recv(), "a only")

        picky = await self.sender(accept_filter=lambda address: False)
        c = await self.receiver(picky.local_address)
        await self.assertFailure(c.recv(), ConnectionClosed)
        self.assertEqual(len(picky), 0)

    @as_deferred
    async def test_views_are_restricted(self) -> None:
        """
        The sender cannot receive; a receiver cannot send.
        """
        tx = await self.sender()
        rx = await self.receiver(tx.local_address)
        self.assertFalse(hasattr(tx, "recv"))
        self.assertFalse(hasattr(rx, "send"))

    @as_deferred
    async def test_unexpected_frames_at_sender(self) -> None:
        """
        Frames arriving at the send-only side are not delivered anywhere;
        the sender logs it and keeps serving.
        """
        from tsyncp_tx import channel

        logs = capture_logs(self)
        tx = await self.sender()
        intruder = await channel.channel_to(tx.local_address)
        self.addCleanup(intruder.close)
        rx = await self.receiver(tx.local_address)
        await eventually(lambda: len(tx) == 2)
        await intruder.send("hello?")
        await eventually(lambda: logged(logs, "send-only") or logged(logs, "only sends"))
        self.assertEqual(await tx.send("still"), len(tx))
        self.assertEqual(await rx.recv(), "still")

    @as_deferred
    async def test_address_forms_and_reactor(self) -> None:
        """
        Int ports, endpoint objects, C{"host:port"} and UNIX sockets;
        C{reactor=} given explicitly.
        """
        tx = await self.sender(reactor=global_reactor)
        port = tx.local_address[1]
        receivers = [
            await self.receiver(port, reactor=global_reactor),
            await self.receiver(f"127.0.0.1:{port}"),
            await self.receiver(TCP4ClientEndpoint(global_reactor, "127.0.0.1", port)),
        ]
        await eventually(lambda: len(tx) == 3)
        self.assertEqual(await tx.send("hey"), 3)
        for rx in receivers:
            self.assertEqual(await rx.recv(), "hey")

        path = os.path.join(short_temp_dir(self), "bc.sock")
        unix_tx = await broadcast.sender_on(f"unix:{path}")
        self.addCleanup(unix_tx.close)
        unix_rx = await self.receiver(f"unix:{path}")
        await eventually(lambda: len(unix_tx) == 1)
        await unix_tx.send("u")
        self.assertEqual(await unix_rx.recv(), "u")

    @as_deferred
    async def test_retry(self) -> None:
        """
        C{receiver_to(retry=)} waits for a sender started later; without
        retry the refusal is a C{ConnectError}.
        """
        port = free_port()
        await self.assertFailure(broadcast.receiver_to(port), ConnectError)
        senders: List[broadcast.Sender] = []
        global_reactor.callLater(  # type: ignore[attr-defined]
            0.1, lambda: broadcast.sender_on(port).addCallback(senders.append)
        )
        rx = await self.receiver(("127.0.0.1", port), retry=(0.05, 20))
        await eventually(lambda: bool(senders) and len(senders[0]) == 1)
        self.addCleanup(senders[0].close)
        await senders[0].send("late")
        self.assertEqual(await rx.recv(), "late")


class BroadcastLogicTests(SynchronousTestCase):
    """
    Broadcast bookkeeping driven by hand with C{MemoryReactorClock} and
    string transports.
    """

    def _one_slow_receiver(self) -> Any:
        # A raw broadcast sender with two receivers, the second one's
        # transport pushing back: (reactor, sender, (protocol, transport)
        # of the fast one, of the slow one).
        from tsyncp_tx.codecs import RawCodec

        reactor = MemoryReactorClock()
        tx = self.successResultOf(
            broadcast.sender_on(8000, accept=0, reactor=reactor, codec=RawCodec())
        )
        fast = fake_peer(reactor, 5001)
        slow = fake_peer(reactor, 5002)
        slow[0].pauseProducing()
        return reactor, tx, fast, slow

    def test_timed_out_send_that_some_receivers_have_is_not_withdrawn(self) -> None:
        """
        A send that times out waiting for one receiver's transport, after
        another receiver's transport took it, fails with C{TimeoutError}
        but stays queued for the slow receiver: both get the same items in
        order.  One that no receiver has yet is withdrawn from all.
        """
        from tsyncp_tx.errors import TimeoutError

        reactor, tx, (fast, fast_transport), (slow, slow_transport) = self._one_slow_receiver()
        partial = tx.send(b"a", timeout=1)
        reactor.advance(1)
        self.assertFalse(self.failureResultOf(partial, TimeoutError).value.withdrawn)
        fast.pauseProducing()
        nobody = tx.send(b"b", timeout=1)
        reactor.advance(1)
        self.assertTrue(self.failureResultOf(nobody, TimeoutError).value.withdrawn)
        fast.resumeProducing()
        slow.resumeProducing()
        self.assertEqual(self.successResultOf(tx.send(b"c")), 2)
        reactor.advance(0)
        self.assertEqual(fast_transport.value(), b"\x01a\x01c")
        self.assertEqual(slow_transport.value(), b"\x01a\x01c")

    def test_cancelled_send_that_some_receivers_have(self) -> None:
        """
        Cancelling a broadcast that one receiver's transport took fails it
        with C{NotWithdrawn} (a C{CancelledError}), and the other receiver
        still gets it.
        """
        from twisted.internet.defer import CancelledError

        from tsyncp_tx.errors import NotWithdrawn

        reactor, tx, (_, fast_transport), (slow, slow_transport) = self._one_slow_receiver()
        d = tx.send(b"a")
        d.cancel()
        self.assertIsInstance(self.failureResultOf(d, CancelledError).value, NotWithdrawn)
        slow.resumeProducing()
        reactor.advance(0)
        self.assertEqual((fast_transport.value(), slow_transport.value()), (b"\x01a", b"\x01a"))

    def test_cancelled_from_a_flush_that_wrote_it(self) -> None:
        """
        A broadcast cancelled from the callback of an earlier frame, while
        the flush of a receiver's queue has written it there but not yet
        fired it, is not withdrawn from the other receiver (it fails with
        C{NotWithdrawn}); the flush goes on undisturbed.
        """
        from twisted.internet.defer import CancelledError

        from tsyncp_tx.errors import NotWithdrawn

        reactor, tx, (fast, fast_transport), (slow, slow_transport) = self._one_slow_receiver()
        fast.pauseProducing()
        first = tx.send(b"a", to=[("127.0.0.1", 5001)])
        second = tx.send(b"b")
        first.addCallback(lambda _: second.cancel())
        fast.resumeProducing()
        self.assertIsInstance(self.failureResultOf(second, CancelledError).value, NotWithdrawn)
        slow.resumeProducing()
        reactor.advance(0)
        self.assertEqual((fast_transport.value(), slow_transport.value()), (b"\x01a\x01b", b"\x01b"))

