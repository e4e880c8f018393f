"""
Every primitive over UNIX sockets: the listening side takes a server
description C{unix:/path}, the connecting side the client description
C{unix:/path}.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

from twisted.internet.defer import gatherResults
from twisted.trial import unittest

from tsyncp_tx import barrier, broadcast, channel, mpsc, multi_channel, spsc
from tsyncp_tx.errors import ConnectionClosed

from ._util import as_deferred, eventually

try:
    from twisted.internet import reactor as _reactor

    _HAVE_UNIX = hasattr(_reactor, "listenUNIX") and os.name == "posix"
except Exception:  # pragma: no cover
    _HAVE_UNIX = False


class UnixSocketTests(unittest.TestCase):
    """
    Each primitive, both roles, over a socket in a short temporary
    directory (socket paths are limited to about 100 bytes, too short for
    trial's working directory).
    """

    if not _HAVE_UNIX:
        skip = "UNIX sockets are not available"

    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="tsx-unix-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.count = 0

    def path(self) -> str:
        self.count += 1
        return os.path.join(self.dir, f"s{self.count}.sock")

    def track(self, ch: Any) -> Any:
        self.addCleanup(ch.close)
        return ch

    @as_deferred
    async def test_mpsc(self) -> None:
        """
        Two senders to one receiver over a UNIX socket: every item arrives,
        and the two anonymous peers are told apart.
        """
        path = self.path()
        rx = self.track(await mpsc.receiver_on(f"unix:{path}"))
        self.assertEqual(rx.local_address, path)
        tx1 = self.track(await mpsc.sender_to(f"unix:{path}"))
        tx2 = self.track(await mpsc.sender_to(f"unix:{path}"))
        await eventually(lambda: len(rx.addresses) == 2)
        await tx1.send({"from": 1})
        await tx2.send({"from": 2})
        got = [await rx.recv(with_addr=True, timeout=5) for _ in range(2)]
        self.assertEqual(sorted(item["from"] for item, _ in got), [1, 2])
        self.assertEqual(len({address for _, address in got}), 2)

    @as_deferred
    async def test_broadcast(self) -> None:
        """
        One sender, two receivers over a UNIX socket: both get every item.
        """
        path = self.path()
        tx = self.track(await broadcast.sender_on(f"unix:{path}"))
        rx1 = self.track(await broadcast.receiver_to(f"unix:{path}"))
        rx2 = self.track(await broadcast.receiver_to(f"unix:{path}"))
        await tx.accept(2, timeout=5)
        self.assertEqual(await tx.send("hello"), 2)
        self.assertEqual(await rx1.recv(timeout=5), "hello")
        self.assertEqual(await rx2.recv(timeout=5), "hello")

    @as_deferred
    async def test_spsc_sender_listens(self) -> None:
        """
        spsc with the sender listening on the UNIX socket.
        """
        path = self.path()
        tx_d = spsc.sender_on(f"unix:{path}")
        rx = self.track(await spsc.receiver_to(f"unix:{path}"))
        tx = self.track(await tx_d)
        await tx.send([1, 2, 3])
        self.assertEqual(await rx.recv(timeout=5), [1, 2, 3])

    @as_deferred
    async def test_spsc_receiver_listens(self) -> None:
        """
        spsc with the receiver listening on the UNIX socket.
        """
        path = self.path()
        rx_d = spsc.receiver_on(f"unix:{path}")
        tx = self.track(await spsc.sender_to(f"unix:{path}"))
        rx = self.track(await rx_d)
        await tx.send({"x": 1})
        self.assertEqual(await rx.recv(timeout=5), {"x": 1})
        await tx.close()
        with self.assertRaises(ConnectionClosed):
            await rx.recv(timeout=5)

    @as_deferred
    async def test_barrier(self) -> None:
        """
        A self-releasing barrier for two waiters over a UNIX socket, used
        twice.
        """
        path = self.path()
        b = self.track(await barrier.barrier_on(f"unix:{path}", parties=2))
        w1 = self.track(await barrier.waiter_to(f"unix:{path}"))
        w2 = self.track(await barrier.waiter_to(f"unix:{path}"))
        await gatherResults([w1.wait(timeout=5), w2.wait(timeout=5)])
        await gatherResults([w1.wait(timeout=5), w2.wait(timeout=5)])
        self.assertEqual(b.generation, 2)

    @as_deferred
    async def test_channel(self) -> None:
        """
        A two-way channel over a UNIX socket, split into halves.
        """
        path = self.path()
        server_d = channel.channel_on(f"unix:{path}")
        client = self.track(await channel.channel_to(f"unix:{path}"))
        server = self.track(await server_d)
        await client.send("ping")
        self.assertEqual(await server.recv(timeout=5), "ping")
        tx, rx = client.split()
        await server.send("pong")
        self.assertEqual(await rx.recv(timeout=5), "pong")
        await tx.send("again")
        self.assertEqual(await server.recv(timeout=5), "again")

    @as_deferred
    async def test_multi_channel(self) -> None:
        """
        A multi-channel over a UNIX socket: receive from any peer, reply to
        one by its address, send to all.
        """
        path = self.path()
        hub = self.track(await multi_channel.channel_on(f"unix:{path}"))
        a = self.track(await channel.channel_to(f"unix:{path}"))
        b = self.track(await channel.channel_to(f"unix:{path}"))
        await hub.accept(2, timeout=5)
        await a.send("from a")
        item, address = await hub.recv(with_addr=True, timeout=5)
        self.assertEqual(item, "from a")
        self.assertEqual(await hub.send("only a", to=[address]), 1)
        self.assertEqual(await a.recv(timeout=5), "only a")
        self.assertEqual(await hub.send("all"), 2)
        self.assertEqual(await a.recv(timeout=5), "all")
        self.assertEqual(await b.recv(timeout=5), "all")

    @as_deferred
    async def test_closed_listener_refuses_connections(self) -> None:
        """
        Closing a listening channel stops listening: a new connection to the
        path is refused.
        """
        from tsyncp_tx.errors import ConnectError

        path = self.path()
        rx = await mpsc.receiver_on(f"unix:{path}")
        await rx.close()
        with self.assertRaises(ConnectError):
            await mpsc.sender_to(f"unix:{path}")
