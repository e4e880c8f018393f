"""
Tests for L{tsyncp_tx.spsc} over real loopback TCP: all four constructors,
either side listening, and the refusal of a second peer.
"""

from __future__ import annotations

import os
from typing import Any, Callable, List, Tuple

from twisted.internet import reactor as global_reactor
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tsyncp_tx import spsc
from tsyncp_tx.codecs import RawCodec
from tsyncp_tx.errors import ConnectError, ConnectionClosed

from ._util import LOOPBACK, as_deferred, eventually, sleep
from .test_channel import (
    RecordingServerEndpoint,
    capture_logs,
    connect_raw,
    fake_peer,
    free_port,
    logged,
    port_of,
    short_temp_dir,
)

# (listening constructor, connecting constructor, the listening side sends)
DIRECTIONS: List[Tuple[Callable[..., Deferred[Any]], Callable[..., Deferred[Any]], bool]] = [
    (spsc.sender_on, spsc.receiver_to, True),
    (spsc.receiver_on, spsc.sender_to, False),
]


class SpscTests(TestCase):
    """
    One sender, one receiver.
    """

    timeout = 30

    async def check_pair(self, listening: Any, connecting: Any, listener_sends: bool) -> None:
        """
        Send 100 items from whichever side sends and check they arrive in
        order; check the views and addresses.
        """
        tx, rx = (listening, connecting) if listener_sends else (connecting, listening)
        self.assertIsInstance(tx, spsc.Sender)
        self.assertIsInstance(rx, spsc.Receiver)
        self.assertFalse(hasattr(tx, "recv"))
        self.assertFalse(hasattr(rx, "send"))
        for i in range(100):
            tx.send(i)
        self.assertEqual([await rx.recv() for _ in range(100)], list(range(100)))
        self.assertEqual(connecting.peer_address, listening.local_address)
        self.assertEqual(listening.peer_address, connecting.local_address)

    @as_deferred
    async def test_default_accept_waits(self) -> None:
        """
        C{sender_on} and C{receiver_on} wait for their peer by default.
        """
        for listen, connect, listener_sends in DIRECTIONS:
            endpoint = RecordingServerEndpoint()
            d = listen(endpoint)
            port = await endpoint.listening
            await sleep(0.02)
            self.assertFalse(d.called)
            connecting = await connect(("127.0.0.1", port))
            self.addCleanup(connecting.close)
            listening = await d
            self.addCleanup(listening.close)
            await self.check_pair(listening, connecting, listener_sends)

    @as_deferred
    async def test_accept_zero(self) -> None:
        """
        With C{accept=0} the listening side fires at once; C{accept()}
        then waits for the peer.
        """
        for listen, connect, listener_sends in DIRECTIONS:
            listening = await listen(LOOPBACK, accept=0)
            self.addCleanup(listening.close)
            self.assertGreater(port_of(listening), 0)
            accepted = listening.accept()
            await sleep(0.02)
            self.assertFalse(accepted.called)
            connecting = await connect(f"127.0.0.1:{port_of(listening)}")
            self.addCleanup(connecting.close)
            self.assertEqual(await accepted, 1)
            await self.check_pair(listening, connecting, listener_sends)

    @as_deferred
    async def test_second_peer_refused(self) -> None:
        """
        A second connection to a listening spsc endpoint is closed by the
        listener and logged, whichever side listens; the first peer keeps
        working and nothing from the intruder is received.
        """
        for listen, connect, listener_sends in DIRECTIONS:
            logs = capture_logs(self)
            listening = await listen(LOOPBACK, accept=0)
            self.addCleanup(listening.close)
            first = await connect(listening.local_address)
            self.addCleanup(first.close)
            await listening.accept()
            second = await connect(listening.local_address)
            self.addCleanup(second.close)
            second_address = second.local_address
            await eventually(lambda: not second.connected)
            self.assertTrue(logged(logs, "Refusing", str(second_address[1])), logs)
            if listener_sends:
                await self.assertFailure(second.recv(), ConnectionClosed)
            else:
                await self.assertFailure(second.send("intruder"), ConnectionClosed)
            self.assertTrue(listening.connected)
            self.assertEqual(listening.peer_address, first.local_address)
            await self.check_pair(listening, first, listener_sends)

    @as_deferred
    async def test_second_raw_connection_closed(self) -> None:
        """
        Seen from a plain TCP client, the second connection is closed
        cleanly by the listener; bytes it sent are not received.
        """
        rx = await spsc.receiver_on(LOOPBACK, accept=0)
        self.addCleanup(rx.close)
        tx = await spsc.sender_to(rx.local_address)
        self.addCleanup(tx.close)
        await rx.accept()
        raw = await connect_raw(self, port_of(rx))
        raw.transport.write(b"\x07\"bogus\"")  # type: ignore[union-attr]
        await raw.lost
        assert raw.reason is not None
        self.assertTrue(raw.reason.check(ConnectionDone), raw.reason)
        await tx.send("genuine")
        self.assertEqual(await rx.recv(), "genuine")

    @as_deferred
    async def test_receiver_sees_sender_close(self) -> None:
        """
        On both sides, a clean close by the sender ends the receiver:
        C{async for} stops after the last item and C{recv()} fails with
        C{ConnectionClosed} carrying the sender's address.
        """
        for listen, connect, listener_sends in DIRECTIONS:
            listening = await listen(LOOPBACK, accept=0)
            self.addCleanup(listening.close)
            accepted = listening.accept()
            connecting = await connect(listening.local_address)
            self.addCleanup(connecting.close)
            await accepted
            tx, rx = (listening, connecting) if listener_sends else (connecting, listening)
            tx_address = listening.local_address if listener_sends else connecting.local_address
            for i in range(10):
                tx.send(i)
            await tx.close()
            self.assertEqual([item async for item in rx], list(range(10)))
            error = await self.assertFailure(rx.recv(), ConnectionClosed)
            self.assertEqual(error.address, tx_address)
            self.assertIsNone(error.reason)

    @as_deferred
    async def test_sender_sees_receiver_gone(self) -> None:
        """
        A send after the receiver has gone fails with C{ConnectionClosed}.
        """
        rx = await spsc.receiver_on(LOOPBACK, accept=0)
        self.addCleanup(rx.close)
        tx = await spsc.sender_to(rx.local_address)
        self.addCleanup(tx.close)
        await rx.accept()
        await rx.close()
        await eventually(lambda: not tx.connected)
        await self.assertFailure(tx.send("anyone?"), ConnectionClosed)

    @as_deferred
    async def test_codec_reactor_and_unix(self) -> None:
        """
        C{codec=RawCodec()} passes bytes through; C{reactor=} explicit; a
        UNIX socket works for spsc too.
        """
        path = os.path.join(short_temp_dir(self), "spsc.sock")
        rx = await spsc.receiver_on(f"unix:{path}", accept=0, codec=RawCodec(), reactor=global_reactor)
        self.addCleanup(rx.close)
        tx = await spsc.sender_to(f"unix:{path}", codec=RawCodec(), reactor=global_reactor)
        self.addCleanup(tx.close)
        await tx.send(b"\x00\x01binary")
        self.assertEqual(await rx.recv(), b"\x00\x01binary")

    @as_deferred
    async def test_retry_both_connectors(self) -> None:
        """
        C{sender_to} and C{receiver_to} accept C{retry=}: they connect to a
        listener started later; without it they fail with C{ConnectError}.
        """
        for listen, connect, listener_sends in DIRECTIONS:
            port = free_port()
            error = await self.assertFailure(connect(port), ConnectError)
            self.assertIn(str(port), str(error))
            listeners: List[Any] = []
            global_reactor.callLater(  # type: ignore[attr-defined]
                0.1, lambda: listen(("127.0.0.1", port), accept=0).addCallback(listeners.append)
            )
            connecting = await connect(("127.0.0.1", port), retry=(0.05, 20))
            self.addCleanup(connecting.close)
            await eventually(lambda: bool(listeners))
            self.addCleanup(listeners[0].close)
            await listeners[0].accept()
            await self.check_pair(listeners[0], connecting, listener_sends)


class SpscLogicTests(SynchronousTestCase):
    """
    The single-peer rule driven by hand with C{MemoryReactorClock} and
    string transports.
    """

    def test_second_connection_closed(self) -> None:
        """
        While the first peer is connected, a second connection is closed at
        once, logged, and its frames are not delivered.
        """
        logs = capture_logs(self)
        reactor = MemoryReactorClock()
        d = spsc.receiver_on(9000, reactor=reactor)
        first, first_t = fake_peer(reactor, 5001)
        rx = self.successResultOf(d)
        second, second_t = fake_peer(reactor, 5002)
        self.assertTrue(second_t.disconnecting)
        self.assertFalse(first_t.disconnecting)
        self.assertTrue(logged(logs, "Refusing", "5002"), logs)
        received = rx.recv()
        second.dataReceived(b"\x01" b"2")
        self.assertNoResult(received)
        first.dataReceived(b"\x01" b"1")
        self.assertEqual(self.successResultOf(received), 1)
        self.assertEqual(rx.peer_address, ("127.0.0.1", 5001))
