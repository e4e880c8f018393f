"""
Tests for L{tsyncp_tx.multi_channel} over real loopback TCP.
"""

from __future__ import annotations

import os
from typing import Any, List, Tuple

from twisted.internet import reactor as global_reactor
from twisted.internet.defer import CancelledError, gatherResults
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tsyncp_tx import broadcast, channel, mpsc, multi_channel
from tsyncp_tx.errors import ChannelClosed, ConnectError, ConnectionClosed

from ._util import LOOPBACK, as_deferred, eventually, sleep
from .test_channel import (
    CountingCodec,
    RecordingServerEndpoint,
    capture_logs,
    fake_peer,
    logged,
    port_of,
    run,
    short_temp_dir,
)


class MultiChannelTests(TestCase):
    """
    Accepting, sending to all or some, receiving from any, splitting.
    """

    timeout = 30

    async def listen(self, **options: Any) -> multi_channel.MultiChannel:
        """
        A multi-channel on a free loopback port, closed after the test.
        """
        mc = await multi_channel.channel_on(LOOPBACK, **options)
        self.addCleanup(mc.close)
        return mc

    async def peer(self, mc: Any, **options: Any) -> channel.Channel:
        """
        A channel connected to C{mc}, closed after the test.
        """
        ch = await channel.channel_to(mc.local_address, **options)
        self.addCleanup(ch.close)
        return ch

    async def peers(self, mc: Any, n: int) -> List[channel.Channel]:
        """
        C{n} connected peers, once C{mc} has admitted them all.
        """
        result = [await self.peer(mc) for _ in range(n)]
        await eventually(lambda: len(mc.addresses) >= n)
        return result

    @as_deferred
    async def test_accept_zero_fires_when_listening(self) -> None:
        """
        The default C{accept=0} fires at once with a real port.
        """
        mc = await self.listen()
        host, port = mc.local_address
        self.assertEqual(host, "127.0.0.1")
        self.assertGreater(port, 0)
        self.assertEqual(len(mc.addresses), 0)
        self.assertEqual(mc.addresses, [])

    @as_deferred
    async def test_accept_n_waits_for_n(self) -> None:
        """
        C{accept=3} fires only once three peers have connected.
        """
        endpoint = RecordingServerEndpoint()
        d = multi_channel.channel_on(endpoint, accept=3)
        port = await endpoint.listening
        peers = []
        for _ in range(2):
            peers.append(await channel.channel_to(("127.0.0.1", port)))
            self.addCleanup(peers[-1].close)
        await sleep(0.05)
        self.assertFalse(d.called)
        peers.append(await channel.channel_to(("127.0.0.1", port)))
        self.addCleanup(peers[-1].close)
        mc = await d
        self.addCleanup(mc.close)
        self.assertEqual(len(mc.addresses), 3)
        self.assertEqual(sorted(mc.addresses), sorted(p.local_address for p in peers))

    @as_deferred
    async def test_len_counts_peers(self) -> None:
        """
        C{len()} of a multi-channel is the number of connected peers (like
        tsyncp's C{len()}), whatever the number of items waiting to be
        received.
        """
        mc = await self.listen()
        a, b = await self.peers(mc, 2)
        self.assertEqual(len(mc), 2)
        for i in range(3):
            await a.send(i)
        await sleep(0.1)  # the three items now wait in the receive queue
        self.assertEqual(len(mc), 2)
        self.assertEqual([await mc.recv() for _ in range(3)], [0, 1, 2])

    @as_deferred
    async def test_accept_limit(self) -> None:
        """
        C{accept="limit"} waits for C{limit} peers.
        """
        endpoint = RecordingServerEndpoint()
        d = multi_channel.channel_on(endpoint, accept="limit", limit=2)
        port = await endpoint.listening
        first = await channel.channel_to(port)
        self.addCleanup(first.close)
        await sleep(0.05)
        self.assertFalse(d.called)
        second = await channel.channel_to(port)
        self.addCleanup(second.close)
        mc = await d
        self.addCleanup(mc.close)
        self.assertEqual(len(mc.addresses), 2)

    def test_accept_limit_needs_limit(self) -> None:
        """
        C{accept="limit"} without C{limit=} is a C{ValueError}; so is a
        negative C{accept}.
        """
        self.assertRaises(ValueError, multi_channel.channel_on, LOOPBACK, accept="limit")
        self.assertRaises(ValueError, multi_channel.channel_on, LOOPBACK, accept=-1)

    @as_deferred
    async def test_accept_later(self) -> None:
        """
        C{accept(n)} on a live channel fires with C{n} once C{n} more peers
        joined; peers that joined before the call count.
        """
        mc = await self.listen()
        await self.peers(mc, 1)
        early = mc.accept(1)
        self.assertTrue(early.called)
        self.assertEqual(await early, 1)
        later = mc.accept(2)
        await self.peer(mc)
        await sleep(0.05)
        self.assertFalse(later.called)
        await self.peer(mc)
        self.assertEqual(await later, 2)
        self.assertEqual(len(mc.addresses), 3)

    @as_deferred
    async def test_cancel_accept(self) -> None:
        """
        A cancelled C{accept(n)} does not swallow peers a later
        C{accept()} waits for.
        """
        mc = await self.listen()
        cancelled = mc.accept(2)
        cancelled.cancel()
        await self.assertFailure(cancelled, CancelledError)
        later = mc.accept(1)
        await self.peer(mc)
        self.assertEqual(await later, 1)

    @as_deferred
    async def test_limit(self) -> None:
        """
        Past C{limit}, a further connection is refused (closed by the
        listener) and logged; the admitted peers keep working.
        """
        logs = capture_logs(self)
        mc = await self.listen(limit=2)
        a, b = await self.peers(mc, 2)
        extra = await self.peer(mc)
        extra_address = extra.local_address
        error = await self.assertFailure(extra.recv(), ConnectionClosed)
        self.assertEqual(error.address, mc.local_address)
        self.assertEqual(len(mc.addresses), 2)
        self.assertNotIn(extra_address, mc.addresses)
        self.assertTrue(logged(logs, "Refusing", str(extra_address[1]), "limit"), logs)
        self.assertEqual(await mc.send("still here"), 2)
        self.assertEqual(await a.recv(), "still here")
        self.assertEqual(await b.recv(), "still here")

    @as_deferred
    async def test_limit_frees_slot(self) -> None:
        """
        When a peer leaves, a new one may take its slot.
        """
        mc = await self.listen(limit=1)
        (a,) = await self.peers(mc, 1)
        await a.close()
        await eventually(lambda: len(mc.addresses) == 0)
        b = await self.peer(mc)
        await eventually(lambda: len(mc.addresses) == 1)
        await b.send("b")
        self.assertEqual(await mc.recv(with_addr=True), ("b", b.local_address))

    @as_deferred
    async def test_accept_filter(self) -> None:
        """
        C{accept_filter(address)} is called with each new peer's address; a
        false result refuses the connection before it joins (no
        C{on_accept}, not counted by C{accept()}).
        """
        seen: List[Any] = []
        joined: List[Any] = []
        allow = {"now": False}

        def accept_filter(address: Any) -> bool:
            seen.append(address)
            return allow["now"]

        mc = await self.listen(accept_filter=accept_filter, on_accept=joined.append)
        accepted = mc.accept(1)
        refused = await self.peer(mc)
        refused_address = refused.local_address
        await self.assertFailure(refused.recv(), ConnectionClosed)
        self.assertEqual(seen, [refused_address])
        self.assertEqual(joined, [])
        self.assertFalse(accepted.called)
        self.assertEqual(len(mc.addresses), 0)
        allow["now"] = True
        admitted = await self.peer(mc)
        self.assertEqual(await accepted, 1)
        self.assertEqual(joined, [admitted.local_address])
        self.assertEqual(mc.addresses, [admitted.local_address])

    @as_deferred
    async def test_accept_filter_raising_refuses(self) -> None:
        """
        An C{accept_filter} that raises refuses the connection (logged) and
        the channel keeps listening.
        """

        def accept_filter(address: Any) -> bool:
            raise RuntimeError("filter broke")

        mc = await self.listen(accept_filter=accept_filter)
        refused = await self.peer(mc)
        await self.assertFailure(refused.recv(), ConnectionClosed)
        self.flushLoggedErrors(RuntimeError)
        self.assertEqual(len(mc.addresses), 0)

    @as_deferred
    async def test_on_accept_and_on_disconnect(self) -> None:
        """
        C{on_accept} gets each joining address; C{on_disconnect} gets
        C{(address, reason)} when one leaves; the others carry on.
        """
        events: List[Tuple[str, Any, Any]] = []
        mc = await self.listen(
            on_accept=lambda address: events.append(("in", address, None)),
            on_disconnect=lambda address, reason: events.append(("out", address, reason)),
        )
        a, b = await self.peers(mc, 2)
        self.assertEqual(
            sorted(e[1] for e in events if e[0] == "in"), sorted([a.local_address, b.local_address])
        )
        leaving = a.local_address
        await a.close()
        await eventually(lambda: any(e[0] == "out" for e in events))
        out = [e for e in events if e[0] == "out"]
        self.assertEqual(len(out), 1)
        self.assertEqual(out[0][1], leaving)
        self.assertIsInstance(out[0][2], Failure)
        self.assertTrue(out[0][2].check(ConnectionDone))
        self.assertEqual(mc.addresses, [b.local_address])
        self.assertEqual(await mc.send("on"), 1)
        self.assertEqual(await b.recv(), "on")

    @as_deferred
    async def test_hook_errors_are_contained(self) -> None:
        """
        An exception in C{on_accept} is logged, not fatal.
        """

        def broken(address: Any) -> None:
            raise RuntimeError("hook broke")

        mc = await self.listen(on_accept=broken)
        (a,) = await self.peers(mc, 1)
        self.flushLoggedErrors(RuntimeError)
        await a.send(1)
        self.assertEqual(await mc.recv(), 1)

    @as_deferred
    async def test_send_to_all_some_filtered(self) -> None:
        """
        C{send()} goes to all and fires with the count; C{to=} and
        C{filter=} pick peers; unknown addresses are skipped.
        """
        mc = await self.listen()
        a, b, c = await self.peers(mc, 3)
        self.assertEqual(await mc.send("all"), 3)
        self.assertEqual(await mc.send("only a", to=[a.local_address]), 1)
        self.assertEqual(
            await mc.send("not b", filter=lambda address: address != b.local_address), 2
        )
        self.assertEqual(await mc.send("ghost", to=[("127.0.0.1", 1)]), 0)
        self.assertEqual(
            await mc.send("a or c, minus c", to=[a.local_address, c.local_address],
                          filter=lambda address: address != c.local_address),
            1,
        )
        await mc.send("end")
        got = {}
        for name, peer in (("a", a), ("b", b), ("c", c)):
            items = []
            while True:
                item = await peer.recv()
                items.append(item)
                if item == "end":
                    break
            got[name] = items
        self.assertEqual(got["a"], ["all", "only a", "not b", "a or c, minus c", "end"])
        self.assertEqual(got["b"], ["all", "end"])
        self.assertEqual(got["c"], ["all", "not b", "end"])

    @as_deferred
    async def test_send_encodes_once(self) -> None:
        """
        One C{send()} to several peers encodes the item once.
        """
        codec = CountingCodec()
        mc = await self.listen(codec=codec)
        peers = await self.peers(mc, 3)
        for i in range(10):
            await mc.send({"i": i})
        self.assertEqual(codec.encoded, 10)
        for p in peers:
            self.assertEqual([(await p.recv())["i"] for _ in range(10)], list(range(10)))

    @as_deferred
    async def test_recv_with_addr(self) -> None:
        """
        C{recv(with_addr=True)} tells which peer sent each item; per-peer
        order holds.
        """
        mc = await self.listen()
        peers = await self.peers(mc, 3)
        for i in range(50):
            for k, p in enumerate(peers):
                p.send([k, i])
        got: dict = {}
        for _ in range(150):
            (k, i), address = await mc.recv(with_addr=True)
            self.assertEqual(address, peers[k].local_address)
            got.setdefault(k, []).append(i)
        self.assertEqual(got, {k: list(range(50)) for k in range(3)})
        peers[0].send({"raw": 1})
        self.assertEqual(await mc.recv(raw=True), b'{"raw":1}')

    @as_deferred
    async def test_peer_leaving_does_not_end_recv(self) -> None:
        """
        A peer leaving does not fail C{recv()} on a multi-connection
        channel; items from the others still arrive.
        """
        mc = await self.listen()
        a, b = await self.peers(mc, 2)
        pending = mc.recv()
        await a.close()
        await eventually(lambda: len(mc.addresses) == 1)
        self.assertFalse(pending.called)
        await b.send("from b")
        self.assertEqual(await pending, "from b")

    @as_deferred
    async def test_split_concurrent(self) -> None:
        """
        C{split()} gives a broadcast sender and an mpsc receiver that two
        coroutines use at once.
        """
        mc = await self.listen()
        peers = await self.peers(mc, 2)
        sender, receiver = mc.split()
        self.assertIsInstance(sender, broadcast.Sender)
        self.assertIsInstance(receiver, mpsc.Receiver)
        self.assertFalse(hasattr(sender, "recv"))
        self.assertFalse(hasattr(receiver, "send"))
        self.assertEqual(len(sender), 2)  # a BroadcastSender's len() is its peers
        n = 100

        async def broadcaster() -> None:
            for i in range(n):
                self.assertEqual(await sender.send(i), 2)
                if i % 25 == 0:
                    await sleep(0)

        async def peer_loop(k: int, p: channel.Channel) -> List[Any]:
            got = []
            for i in range(n):
                got.append(await p.recv())
                await p.send([k, i])
            return got

        async def collector() -> List[Any]:
            return [await receiver.recv() for _ in range(2 * n)]

        results = await gatherResults(
            [run(broadcaster()), run(collector())]
            + [run(peer_loop(k, p)) for k, p in enumerate(peers)]
        )
        collected = results[1]
        for k in range(2):
            self.assertEqual([i for kk, i in collected if kk == k], list(range(n)))
            self.assertEqual(results[2 + k], list(range(n)))

    @as_deferred
    async def test_close_flushes_to_all(self) -> None:
        """
        Items sent just before C{close()} reach every peer.
        """
        mc = await self.listen()
        peers = await self.peers(mc, 2)
        blob = "y" * 10_000
        for i in range(100):
            mc.send({"i": i, "blob": blob})
        await mc.close()
        for p in peers:
            self.assertEqual([(await p.recv())["i"] for _ in range(100)], list(range(100)))
            await self.assertFailure(p.recv(), ConnectionClosed)

    @as_deferred
    async def test_address_forms(self) -> None:
        """
        C{"host:port"}, C{(host, port)}, a bare port and a UNIX socket path
        as listening addresses, with peers connecting to each.
        """
        for listen_at in ("127.0.0.1:0", ("127.0.0.1", 0), 0):
            mc = await self.listen_at(listen_at)
            host, port = mc.local_address
            self.assertEqual(host, "127.0.0.1")
            peer = await self.peer(mc)
            await peer.send(str(listen_at))
            self.assertEqual(await mc.recv(), str(listen_at))
        path = os.path.join(short_temp_dir(self), "mc.sock")
        mc = await self.listen_at(f"unix:{path}")
        self.assertEqual(mc.local_address, path)
        peers = []
        for _ in range(2):
            peers.append(await channel.channel_to(f"unix:{path}"))
            self.addCleanup(peers[-1].close)
        await eventually(lambda: len(mc.addresses) == 2)
        self.assertEqual(await mc.send("both"), 2)
        for p in peers:
            self.assertEqual(await p.recv(), "both")

    async def listen_at(self, address: Any) -> multi_channel.MultiChannel:
        """
        A multi-channel listening at C{address}, closed after the test.
        """
        mc = await multi_channel.channel_on(address)
        self.addCleanup(mc.close)
        return mc

    @as_deferred
    async def test_closed_channel(self) -> None:
        """
        After C{close()}: C{recv()} and C{accept()} fail with
        C{ChannelClosed}; the port no longer accepts connections.
        """
        mc = await multi_channel.channel_on(LOOPBACK, reactor=global_reactor)
        port = port_of(mc)
        pending_recv = mc.recv()
        pending_accept = mc.accept(1)
        await mc.close()
        await self.assertFailure(pending_recv, ChannelClosed)
        await self.assertFailure(pending_accept, ChannelClosed)
        await self.assertFailure(mc.accept(1), ChannelClosed)
        await self.assertFailure(channel.channel_to(port), ConnectError)

    @as_deferred
    async def test_cancel_waiting_constructor(self) -> None:
        """
        Cancelling C{channel_on(accept=n)} while it waits stops listening.
        """
        endpoint = RecordingServerEndpoint()
        d = multi_channel.channel_on(endpoint, accept=2)
        port = await endpoint.listening
        first = await channel.channel_to(port)
        self.addCleanup(first.close)
        d.cancel()
        await self.assertFailure(d, CancelledError)
        await self.assertFailure(first.recv(), ConnectionClosed)
        await self.assertFailure(channel.channel_to(port), ConnectError)


class MultiChannelLogicTests(SynchronousTestCase):
    """
    Multi-channel logic driven by hand with C{MemoryReactorClock} and
    string transports.
    """

    def test_fan_out_bytes(self) -> None:
        """
        C{send()}, C{send(to=)} and C{send(filter=)} write the same frame
        bytes to exactly the chosen peers, encoding once per call.
        """
        reactor = MemoryReactorClock()
        codec = CountingCodec()
        mc = self.successResultOf(multi_channel.channel_on(9000, codec=codec, reactor=reactor))
        peers = [fake_peer(reactor, 5000 + i) for i in range(3)]
        addresses = [("127.0.0.1", 5000 + i) for i in range(3)]
        self.assertEqual(mc.addresses, addresses)
        self.assertEqual(self.successResultOf(mc.send(1)), 3)
        self.assertEqual(self.successResultOf(mc.send(2, to=[addresses[1]])), 1)
        self.assertEqual(
            self.successResultOf(mc.send(3, filter=lambda a: a[1] != 5001)), 2
        )
        reactor.advance(0)
        self.assertEqual(codec.encoded, 3)
        values = [t.value() for _, t in peers]
        self.assertEqual(values, [b"\x011\x013", b"\x011\x012", b"\x011\x013"])

    def test_limit_and_filter_refuse(self) -> None:
        """
        A connection past C{limit} or rejected by C{accept_filter} is
        closed at once; its frames are not delivered and C{on_accept} is
        not called for it.
        """
        reactor = MemoryReactorClock()
        joined: List[Any] = []
        mc = self.successResultOf(
            multi_channel.channel_on(
                9000, limit=2, accept_filter=lambda a: a[1] != 6666,
                on_accept=joined.append, reactor=reactor,
            )
        )
        rejected, rejected_t = fake_peer(reactor, 6666)
        self.assertTrue(rejected_t.disconnecting)
        a, _ = fake_peer(reactor, 5001)
        fake_peer(reactor, 5002)
        extra, extra_t = fake_peer(reactor, 5003)
        self.assertTrue(extra_t.disconnecting)
        self.assertEqual(joined, [("127.0.0.1", 5001), ("127.0.0.1", 5002)])
        received = mc.recv(with_addr=True)
        extra.dataReceived(b"\x01" b"9")
        rejected.dataReceived(b"\x01" b"8")
        self.assertNoResult(received)
        a.dataReceived(b"\x01" b"7")
        self.assertEqual(self.successResultOf(received), (7, ("127.0.0.1", 5001)))

    def test_accept_counts(self) -> None:
        """
        C{accept=2} fires on the second connection; C{accept(n)} later
        counts from there.
        """
        reactor = MemoryReactorClock()
        d = multi_channel.channel_on(9000, accept=2, reactor=reactor)
        fake_peer(reactor, 5001)
        self.assertNoResult(d)
        fake_peer(reactor, 5002)
        mc = self.successResultOf(d)
        more = mc.accept(1)
        self.assertNoResult(more)
        fake_peer(reactor, 5003)
        self.assertEqual(self.successResultOf(more), 1)
