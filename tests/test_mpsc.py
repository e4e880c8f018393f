"""
Tests for L{tsyncp_tx.mpsc} over real loopback TCP.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List

from twisted.internet import reactor as global_reactor
from twisted.internet.defer import gatherResults
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.trial.unittest import TestCase

from tsyncp_tx import mpsc
from tsyncp_tx.codecs import CborCodec
from tsyncp_tx.errors import ChannelClosed, ConnectError, TimeoutError

from ._util import LOOPBACK, as_deferred, eventually, sleep
from .test_channel import (
    RecordingServerEndpoint,
    capture_logs,
    free_port,
    logged,
    run,
    short_temp_dir,
)


class MpscTests(TestCase):
    """
    Many senders, one receiver.
    """

    timeout = 30

    async def receiver(self, **options: Any) -> mpsc.Receiver:
        """
        A receiver on a free loopback port, closed after the test.
        """
        rx = await mpsc.receiver_on(LOOPBACK, **options)
        self.addCleanup(rx.close)
        return rx

    async def sender(self, address: Any, **options: Any) -> mpsc.Sender:
        """
        A sender connected to C{address}, closed after the test.
        """
        tx = await mpsc.sender_to(address, **options)
        self.addCleanup(tx.close)
        return tx

    @as_deferred
    async def test_three_senders_order_preserved(self) -> None:
        """
        Three senders sending 200 items each, interleaved: the receiver
        gets all 600, none twice, each sender's in the order sent.
        """
        rx = await self.receiver()
        senders = [await self.sender(rx.local_address) for _ in range(3)]
        await eventually(lambda: len(rx.addresses) == 3)
        n = 200
        sends = []
        for i in range(n):
            for k, tx in enumerate(senders):
                sends.append(tx.send({"s": k, "i": i}))
        await gatherResults(sends)
        per_sender: Dict[int, List[int]] = {0: [], 1: [], 2: []}
        addresses: Dict[int, Any] = {}
        for _ in range(3 * n):
            item, address = await rx.recv(with_addr=True)
            per_sender[item["s"]].append(item["i"])
            self.assertEqual(addresses.setdefault(item["s"], address), address)
        for k in range(3):
            self.assertEqual(per_sender[k], list(range(n)))
            self.assertEqual(addresses[k], senders[k].local_address)
        # Nothing more (no duplicate) is waiting.
        await self.assertFailure(rx.recv(timeout=0.1), TimeoutError)

    @as_deferred
    async def test_concurrent_sender_coroutines(self) -> None:
        """
        Senders driven by separate coroutines that yield to the reactor
        between sends still keep their own order.
        """
        rx = await self.receiver()
        senders = [await self.sender(rx.local_address) for _ in range(3)]
        n = 100

        async def produce(k: int, tx: mpsc.Sender) -> None:
            for i in range(n):
                await tx.send([k, i])
                if i % (7 + k) == 0:
                    await sleep(0)

        producing = gatherResults([run(produce(k, tx)) for k, tx in enumerate(senders)])
        got: Dict[int, List[int]] = {0: [], 1: [], 2: []}
        for _ in range(3 * n):
            k, i = await rx.recv()
            got[k].append(i)
        await producing
        self.assertEqual(got, {k: list(range(n)) for k in range(3)})

    @as_deferred
    async def test_receiver_accept_waits(self) -> None:
        """
        C{receiver_on(accept=2)} fires once two senders connected.
        """
        endpoint = RecordingServerEndpoint()
        d = mpsc.receiver_on(endpoint, accept=2)
        port = await endpoint.listening
        await self.sender(port)
        await sleep(0.05)
        self.assertFalse(d.called)
        await self.sender(("127.0.0.1", port))
        rx = await d
        self.addCleanup(rx.close)
        self.assertEqual(len(rx.addresses), 2)
        later = rx.accept(1)
        await self.sender(f"127.0.0.1:{port}")
        self.assertEqual(await later, 1)

    @as_deferred
    async def test_limit_filter_hooks(self) -> None:
        """
        C{limit}, C{accept_filter}, C{on_accept} and C{on_disconnect} work
        on an mpsc receiver.
        """
        logs = capture_logs(self)
        joined: List[Any] = []
        left: List[Any] = []
        rx = await self.receiver(
            limit=2,
            accept_filter=lambda address: True,
            on_accept=joined.append,
            on_disconnect=lambda address, reason: left.append(address),
        )
        a = await self.sender(rx.local_address)
        b = await self.sender(rx.local_address)
        a_address, b_address = a.local_address, b.local_address
        await eventually(lambda: len(joined) == 2)
        c = await self.sender(rx.local_address)
        c_address = c.local_address
        await eventually(lambda: logged(logs, "Refusing", str(c_address[1])))
        self.assertEqual(sorted(joined), sorted([a_address, b_address]))
        await a.close()
        await eventually(lambda: left == [a_address])
        await b.send("b")
        self.assertEqual(await rx.recv(with_addr=True), ("b", b_address))

    @as_deferred
    async def test_sender_leaving_keeps_receiver(self) -> None:
        """
        A sender that closes after sending: its items are all received and
        the receiver keeps serving the others.
        """
        rx = await self.receiver()
        a = await self.sender(rx.local_address)
        b = await self.sender(rx.local_address)
        for i in range(50):
            a.send(("a", i))
        await a.close()
        await b.send(("b", 0))
        items = [await rx.recv() for _ in range(51)]
        self.assertEqual([i for who, i in items if who == "a"], list(range(50)))
        self.assertIn(["b", 0], items)

    @as_deferred
    async def test_sender_close_flushes(self) -> None:
        """
        Items sent just before the sender's C{close()} all arrive.
        """
        rx = await self.receiver()
        tx = await self.sender(rx.local_address)
        blob = "z" * 20_000
        sends = [tx.send([i, blob]) for i in range(200)]
        await tx.close()
        await gatherResults(sends)
        self.assertEqual([(await rx.recv())[0] for _ in range(200)], list(range(200)))

    @as_deferred
    async def test_async_for_until_closed(self) -> None:
        """
        C{async for} over a multi-sender receiver runs until it is closed.
        """
        rx = await mpsc.receiver_on(LOOPBACK)
        tx = await self.sender(rx.local_address)
        got: List[Any] = []

        async def consume() -> None:
            async for item in rx:
                got.append(item)

        done = run(consume())
        for i in range(5):
            await tx.send(i)
        await eventually(lambda: len(got) == 5)
        await rx.close()
        await done
        self.assertEqual(got, [0, 1, 2, 3, 4])
        await self.assertFailure(rx.recv(), ChannelClosed)

    @as_deferred
    async def test_views_are_restricted(self) -> None:
        """
        A sender cannot receive; the receiver cannot send.
        """
        rx = await self.receiver()
        tx = await self.sender(rx.local_address)
        self.assertFalse(hasattr(tx, "recv"))
        self.assertFalse(hasattr(rx, "send"))
        self.assertIsInstance(rx, mpsc.Receiver)
        self.assertIsInstance(tx, mpsc.Sender)

    @as_deferred
    async def test_address_forms_codec_reactor(self) -> None:
        """
        C{(host, port)}, C{int}, endpoint objects and C{"unix:"} paths;
        C{codec=} and an explicit C{reactor=}.
        """
        rx = await self.receiver(codec=CborCodec(), reactor=global_reactor)
        port = rx.local_address[1]
        t1 = await self.sender(("127.0.0.1", port), codec=CborCodec(), reactor=global_reactor)
        t2 = await self.sender(port, codec=CborCodec())
        t3 = await self.sender(
            TCP4ClientEndpoint(global_reactor, "127.0.0.1", port), codec=CborCodec()
        )
        for k, tx in enumerate((t1, t2, t3)):
            await tx.send({"k": k, "b": b"\x01"})
        got = sorted([(await rx.recv())["k"] for _ in range(3)])
        self.assertEqual(got, [0, 1, 2])

        ep_rx = await mpsc.receiver_on(TCP4ServerEndpoint(global_reactor, 0, interface="127.0.0.1"))
        self.addCleanup(ep_rx.close)
        t4 = await self.sender(ep_rx.local_address)
        await t4.send("ep")
        self.assertEqual(await ep_rx.recv(), "ep")

        path = os.path.join(short_temp_dir(self), "mpsc.sock")
        unix_rx = await mpsc.receiver_on(f"unix:{path}")
        self.addCleanup(unix_rx.close)
        self.assertEqual(unix_rx.local_address, path)
        u1 = await self.sender(f"unix:{path}")
        u2 = await self.sender(f"unix:{path}")
        await u1.send(1)
        await u2.send(2)
        self.assertEqual(sorted([await unix_rx.recv(), await unix_rx.recv()]), [1, 2])

    @as_deferred
    async def test_retry(self) -> None:
        """
        C{sender_to(retry=)} waits for a receiver started later; without it
        the refusal is a C{ConnectError} naming the address.
        """
        port = free_port()
        error = await self.assertFailure(mpsc.sender_to(("127.0.0.1", port)), ConnectError)
        self.assertIn(f"127.0.0.1:{port}", str(error))
        receivers: List[mpsc.Receiver] = []
        global_reactor.callLater(  # type: ignore[attr-defined]
            0.1, lambda: mpsc.receiver_on(port).addCallback(receivers.append)
        )
        tx = await self.sender(port, retry=(0.05, 20))
        await eventually(lambda: bool(receivers))
        self.addCleanup(receivers[0].close)
        await tx.send("late")
        self.assertEqual(await receivers[0].recv(), "late")
