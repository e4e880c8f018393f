"""
Failures over real loopback TCP: disconnects (clean and reset), reconnection
under C{reconnect=True}, killed child processes, timeouts, bad input and
refused connections.  Each test checks that the failure is reported where
the design says (C{on_disconnect}, a failed C{recv()}/C{send()}, the log)
and that everything else keeps working.
"""

from __future__ import annotations

import gc
import json
from typing import Any, List, Tuple, Type

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from tsyncp_tx import barrier, broadcast, channel, mpsc, multi_channel, spsc
from tsyncp_tx.codecs import RawCodec
from tsyncp_tx.errors import (
    ChannelClosed,
    ConnectionClosed,
    DecodeError,
    EncodeError,
    FrameTooLarge,
    SendQueueFull,
    TimeoutError,
)
from tsyncp_tx.framing import encode_frame, encode_header

from ._util import LOOPBACK, ChildProcess, as_deferred, eventually, python_child, sleep
from .test_backpressure import (
    ITEM,
    LogCapture,
    RawPeer,
    connect_raw,
    fill_until_stalled,
    listen_raw,
    pattern,
    swallow,
)


def frame(item: Any) -> bytes:
    """
    One JSON frame as tsyncp writes it.
    """
    return encode_frame(json.dumps(item, separators=(",", ":")).encode())


async def failure_of(d: "Deferred[Any]", *types: Type[BaseException]) -> Any:
    """
    Wait for C{d} to fail with one of C{types}; return the exception.

    @raise AssertionError: If it succeeds or fails otherwise.
    """
    try:
        result = await d
    except types as e:
        return e
    raise AssertionError(f"expected {', '.join(t.__name__ for t in types)}, got result {result!r}")


def kill_on_cleanup(testcase: TestCase, child: ChildProcess) -> None:
    """
    Make sure C{child} is dead and reaped when the test ends.
    """

    def cleanup() -> Deferred[Any]:
        child.signal("KILL")
        return Deferred.fromCoroutine(child.finish(10))

    testcase.addCleanup(cleanup)


async def child_line(child: ChildProcess, prefix: bytes, timeout: float = 20) -> bytes:
    """
    Wait for a stdout line starting with C{prefix}; return the rest of it.
    """

    def find() -> bool:
        return any(line.startswith(prefix) for line in child.lines())

    try:
        await eventually(find, timeout=timeout)
    except AssertionError:
        status = child.done.result if child.done.called else "running"
        raise AssertionError(f"child never printed {prefix!r}; status {status}") from None
    for line in child.lines():
        if line.startswith(prefix):
            return line[len(prefix):].strip()
    raise AssertionError("unreachable")


# A receiver in a child process: prints its port, then every item.
CHILD_RECEIVER = r"""
import sys
from twisted.internet import defer, task
from tsyncp_tx import mpsc

async def main(reactor):
    rx = await mpsc.receiver_on(sys.argv[1], recv_high_water=int(sys.argv[2]))
    print("port", rx.local_address[1], flush=True)
    if sys.argv[3] == "read":
        async for item in rx:
            print("item", item, flush=True)
    else:
        await defer.Deferred()  # never reads: TCP pushes back

task.react(lambda reactor: defer.Deferred.fromCoroutine(main(reactor)))
"""

# A raw sender in a child process: one full frame, then half a frame.
CHILD_HALF_FRAME = r"""
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b'\x07"first"' + bytes([100]) + b"0123456789")
print("sent", s.getsockname()[1], flush=True)
time.sleep(60)
"""


class DisconnectTests(TestCase):
    """
    Lost peers are dropped and reported; the channel carries on.
    """

    timeout = 30

    @as_deferred
    async def test_fin_reported_and_receiver_carries_on(self) -> None:
        """
        A sender that closes cleanly is reported to C{on_disconnect} with
        its address and a C{ConnectionDone} reason, and leaves the pool;
        the other sender keeps being served.
        """
        lost: List[Tuple[Any, Failure]] = []
        rx = await mpsc.receiver_on(LOOPBACK, on_disconnect=lambda a, r: lost.append((a, r)))
        self.addCleanup(rx.close)
        a = await mpsc.sender_to(rx.local_address)
        self.addCleanup(a.close)
        b = await mpsc.sender_to(rx.local_address)
        self.addCleanup(b.close)
        await eventually(lambda: len(rx.addresses) == 2)
        a_address = a.local_address
        await a.send("from a")
        self.assertEqual(await rx.recv(with_addr=True), ("from a", a_address))
        await a.close()
        await eventually(lambda: len(lost) == 1)
        self.assertEqual(lost[0][0], a_address)
        self.assertTrue(lost[0][1].check(ConnectionDone), lost[0][1])
        self.assertEqual(rx.addresses, [b.local_address])
        await b.send("from b")
        self.assertEqual(await rx.recv(with_addr=True), ("from b", b.local_address))

    @as_deferred
    async def test_reset_reported_and_receiver_carries_on(self) -> None:
        """
        A peer whose connection is reset (RST) is reported with a reason
        other than C{ConnectionDone} and logged with its address; the items
        it sent before are delivered; the others carry on.
        """
        log = LogCapture(self)
        lost: List[Tuple[Any, Failure]] = []
        rx = await mpsc.receiver_on(LOOPBACK, on_disconnect=lambda a, r: lost.append((a, r)))
        self.addCleanup(rx.close)
        good = await mpsc.sender_to(rx.local_address)
        self.addCleanup(good.close)
        raw = await connect_raw(self, rx.local_address)
        raw.send(frame("before reset"))
        self.assertEqual(await rx.recv(with_addr=True), ("before reset", raw.address))
        raw_address = raw.address
        await raw.abort()
        await eventually(lambda: len(lost) == 1)
        self.assertEqual(lost[0][0], raw_address)
        self.assertIsNone(lost[0][1].check(ConnectionDone), "a reset was reported as a clean close")
        self.assertTrue(log.matching("127.0.0.1:%d" % raw_address[1], "disconnected"))
        await good.send("still here")
        self.assertEqual(await rx.recv(), "still here")
        self.assertEqual(rx.addresses, [good.local_address])

    @as_deferred
    async def test_multi_channel_carries_on(self) -> None:
        """
        A multi_channel loses one of two peers (reset): it reports it, a
        broadcast reaches only the survivor, and receiving from the
        survivor keeps working.
        """
        lost: List[Any] = []
        mc = await multi_channel.channel_on(LOOPBACK, on_disconnect=lambda a, r: lost.append(a))
        self.addCleanup(mc.close)
        p1 = await channel.channel_to(mc.local_address)
        self.addCleanup(p1.close)
        p2 = await channel.channel_to(mc.local_address)
        self.addCleanup(p2.close)
        await eventually(lambda: len(mc.addresses) == 2)
        p1_address = p1.local_address
        p1_connection = p1._core.peer
        assert p1_connection is not None
        p1_connection.abort()  # an RST from p1's side
        await eventually(lambda: lost == [p1_address])
        self.assertEqual(await mc.send("to all"), 1)
        self.assertEqual(await p2.recv(), "to all")
        await p2.send("from p2")
        self.assertEqual(await mc.recv(with_addr=True), ("from p2", p2.local_address))

    @as_deferred
    async def test_single_receiver_recv_fails_after_fin(self) -> None:
        """
        A single-peer receiver delivers everything sent before the peer's
        clean close, then fails pending and later C{recv()} calls with
        L{ConnectionClosed} naming the peer.
        """
        rx = await spsc.receiver_on(LOOPBACK, accept=0)
        self.addCleanup(rx.close)
        tx = await spsc.sender_to(rx.local_address)
        self.addCleanup(tx.close)
        await rx.accept(0)
        first = rx.recv()
        tx_address = tx.local_address
        await tx.send(1)
        await tx.send(2)
        await tx.close()
        self.assertEqual(await first, 1)
        self.assertEqual(await rx.recv(), 2)
        pending = rx.recv()
        error = await failure_of(pending, ConnectionClosed)
        self.assertEqual(error.address, tx_address)
        self.assertIsNone(error.reason)
        self.assertIn("127.0.0.1:%d" % tx_address[1], str(error))
        await failure_of(rx.recv(), ConnectionClosed)

    @as_deferred
    async def test_single_receiver_recv_fails_after_framing_error(self) -> None:
        """
        A single-peer receiver whose peer breaks the framing closes that
        connection and fails C{recv()} with L{ConnectionClosed} (carrying
        a reason), after delivering the frames that came before.
        """
        rx = await spsc.receiver_on(LOOPBACK, accept=0)
        self.addCleanup(rx.close)
        raw = await connect_raw(self, rx.local_address)
        raw.send(frame("ok") + b"\xff\xff\xff\xff")
        self.assertEqual(await rx.recv(), "ok")
        error = await failure_of(rx.recv(timeout=10), ConnectionClosed)
        self.assertEqual(error.address, raw.address)
        self.assertIsNotNone(error.reason)

    @as_deferred
    async def test_broadcast_receiver_recv_fails_after_reset(self) -> None:
        """
        A broadcast receiver whose sender resets the connection fails its
        waiting C{recv()} with L{ConnectionClosed} carrying the reason.
        """
        tx = await broadcast.sender_on(LOOPBACK)
        self.addCleanup(tx.close)
        rx = await broadcast.receiver_to(tx.local_address)
        self.addCleanup(rx.close)
        await eventually(lambda: len(tx) == 1)
        pending = rx.recv()
        tx._core.pool.connections[0].abort()
        error = await failure_of(pending, ConnectionClosed)
        self.assertEqual(error.address, tx.local_address)
        self.assertIsNotNone(error.reason, "a reset was reported as a clean close")
        self.assertFalse(rx.connected)


class ReconnectTests(TestCase):
    """
    C{reconnect=True}: sends made while the peer is away wait in a bounded
    backlog and go out, once and in order, after reconnection.
    """

    timeout = 60

    async def _listen(self, port: int = 0) -> Any:
        rx = await mpsc.receiver_on(f"tcp:{port}:interface=127.0.0.1")
        self.addCleanup(rx.close)
        return rx

    async def _sender(self, address: Any, **options: Any) -> Any:
        tx = await mpsc.sender_to(
            address, reconnect=True, reconnect_policy=lambda failed: 0.05, **options
        )
        self.addCleanup(tx.close)
        return tx

    @as_deferred
    async def test_server_restarted_on_same_port(self) -> None:
        """
        Items sent while the receiver is down are delivered after it comes
        back on the same port: all of them, in order, none twice.
        """
        rx1 = await self._listen()
        port = rx1.local_address[1]
        tx = await self._sender(rx1.local_address)
        for i in range(10):
            await tx.send(i)
        self.assertEqual([await rx1.recv() for _ in range(10)], list(range(10)))
        await rx1.close()
        await eventually(lambda: not tx.connected)
        waiting = [tx.send(i) for i in range(10, 20)]
        self.assertFalse(any(d.called for d in waiting), "a send() succeeded with no peer")
        await sleep(0.3)  # several reconnection attempts fail meanwhile
        self.assertFalse(any(d.called for d in waiting))
        rx2 = await self._listen(port)
        for d in waiting:
            await d
        for i in range(20, 30):
            await tx.send(i)
        got: List[int] = []
        while len(got) < 20:
            got.extend(await rx2.recv_many())
        await sleep(0.2)
        self.assertEqual(rx2.queued, 0, "extra (duplicated) items arrived")
        self.assertEqual(got, list(range(10, 30)))

    @as_deferred
    async def test_reconnecting_channel_keeps_receiving(self) -> None:
        """
        A C{channel_to(reconnect=True)}: a C{recv()} waiting while the peer
        is away is not failed, and gets the first item the restarted peer
        sends; each loss is reported to the sender's C{on_disconnect}.
        """
        lost: List[Any] = []
        server1 = await channel.channel_on(LOOPBACK, accept=0)
        self.addCleanup(server1.close)
        port = server1.local_address[1]
        ch = await channel.channel_to(
            server1.local_address, reconnect=True, reconnect_policy=lambda failed: 0.05,
            on_disconnect=lambda a, r: lost.append(a),
        )
        self.addCleanup(ch.close)
        await server1.accept(0)
        await server1.send("one")
        self.assertEqual(await ch.recv(), "one")
        pending = ch.recv()
        await server1.close()
        await eventually(lambda: not ch.connected)
        self.assertEqual(lost, [("127.0.0.1", port)])
        await sleep(0.2)
        self.assertFalse(pending.called, "recv() failed although the channel reconnects")
        server2 = await channel.channel_on(f"tcp:{port}:interface=127.0.0.1", accept=1)
        self.addCleanup(server2.close)
        await server2.send("two")
        self.assertEqual(await pending, "two")
        await ch.send("back")
        self.assertEqual(await server2.recv(), "back")

    @as_deferred
    async def test_sigkilled_server_restarted(self) -> None:
        """
        The receiver is a child process, SIGKILLed and restarted on the
        same port: once the sender noticed the loss, every item it sends
        reaches the new receiver, in order, and no item is received twice
        across both receivers.
        """
        child1 = python_child(CHILD_RECEIVER, "tcp:0:interface=127.0.0.1", "4096", "read")
        kill_on_cleanup(self, child1)
        port = int(await child_line(child1, b"port "))
        tx = await self._sender(("127.0.0.1", port))
        for i in range(20):
            await tx.send(i)
        await eventually(lambda: sum(x.startswith(b"item ") for x in child1.lines()) == 20)
        child1.signal("KILL")
        await child1.finish(10)
        await eventually(lambda: not tx.connected)
        waiting = [tx.send(i) for i in range(20, 40)]
        child2 = python_child(CHILD_RECEIVER, f"tcp:{port}:interface=127.0.0.1", "4096", "read")
        kill_on_cleanup(self, child2)
        await child_line(child2, b"port ")
        for d in waiting:
            await d
        for i in range(40, 50):
            await tx.send(i)
        await eventually(lambda: sum(x.startswith(b"item ") for x in child2.lines()) >= 30)
        await sleep(0.2)
        items1 = [int(x.split()[1]) for x in child1.lines() if x.startswith(b"item ")]
        items2 = [int(x.split()[1]) for x in child2.lines() if x.startswith(b"item ")]
        self.assertEqual(items1, list(range(20)))
        self.assertEqual(items2, list(range(20, 50)))

    @as_deferred
    async def test_send_timeout_while_disconnected(self) -> None:
        """
        With C{send_timeout=}, a send waiting for the peer to come back fails
        with L{TimeoutError} and its item is withdrawn: it is never sent
        after reconnection.
        """
        rx1 = await self._listen()
        port = rx1.local_address[1]
        tx = await self._sender(rx1.local_address, send_timeout=0.2)
        await rx1.close()
        await eventually(lambda: not tx.connected)
        d = tx.send("late")
        error = await failure_of(d, TimeoutError)
        self.assertEqual(error.operation, "send")
        rx2 = await self._listen(port)
        await tx.send("fresh")
        self.assertEqual(await rx2.recv(), "fresh")
        await sleep(0.2)
        self.assertEqual(rx2.queued, 0)

    @as_deferred
    async def test_backlog_bounded_while_disconnected(self) -> None:
        """
        While disconnected, the backlog holds at most C{send_high_water}
        bytes: the send that would pass it fails with L{SendQueueFull};
        the accepted ones are delivered after reconnection.
        """
        rx1 = await self._listen()
        port = rx1.local_address[1]
        tx = await self._sender(rx1.local_address, send_high_water=1000, codec=RawCodec())
        await rx1.close()
        await eventually(lambda: not tx.connected)
        accepted = []
        refused = None
        for i in range(10):
            d = tx.send(bytes([i]) * 300)
            if d.called:
                refused = self.failureResultOf(d, SendQueueFull)
                break
            accepted.append(d)
        self.assertIsNotNone(refused, "the backlog grew past send_high_water")
        self.assertEqual(len(accepted), 3)  # 3 x 302 bytes <= 1000 < 4 x 302
        rx2 = await mpsc.receiver_on(f"tcp:{port}:interface=127.0.0.1", codec=RawCodec())
        self.addCleanup(rx2.close)
        for d in accepted:
            await d
        got = [await rx2.recv() for _ in range(3)]
        self.assertEqual(got, [bytes([i]) * 300 for i in range(3)])

    async def _backlog_flushed_into_stalled_peer(
        self, count: int, **options: Any
    ) -> Tuple[Any, RawPeer, List[Deferred[Any]]]:
        # A reconnecting sender queues `count` 64 KiB items while its peer
        # is away; the peer comes back on the same port but does not read,
        # so most of the flushed backlog waits in the connection's queue.
        # Collect garbage last, so that Deferreds failed by the bug under
        # test report their unhandled errors in this test, not a later one.
        self.addCleanup(gc.collect)
        address, factory1 = await listen_raw(self)
        tx = await mpsc.sender_to(
            address, reconnect=True, reconnect_policy=lambda failed: 0.05,
            codec=RawCodec(), **options,
        )
        self.addCleanup(tx.close)
        first = await factory1.first
        assert factory1.port is not None
        stopping = factory1.port.stopListening()
        assert stopping is not None
        await stopping
        await first.abort()
        await eventually(lambda: not tx.connected)
        sends = [tx.send(pattern(i, ITEM)) for i in range(count)]
        _, factory2 = await listen_raw(self, pause_on_connect=True, port_number=address[1])
        peer = await factory2.first
        self.addCleanup(peer.abort)  # before tx.close(), which would flush
        await eventually(lambda: tx.connected)
        return tx, peer, sends

    @as_deferred
    async def test_send_timeout_after_reconnect_withdraws_item(self) -> None:
        """
        A backlog send that is flushed into the new connection's queue and
        then times out (C{send_timeout=}) is withdrawn: its item is never
        sent, like any other timed-out send.
        """
        tx, peer, sends = await self._backlog_flushed_into_stalled_peer(100, send_timeout=1.5)
        outcomes: List[List[Any]] = [[] for _ in sends]
        for d, outcome in zip(sends, outcomes):
            swallow(d, outcome)
        await eventually(lambda: all(outcomes), timeout=10)
        timed_out = [
            i for i, outcome in enumerate(outcomes)
            if isinstance(outcome[0], Failure) and outcome[0].check(TimeoutError)
        ]
        self.assertTrue(timed_out, "no backlog send timed out; the test did not stall the peer")
        peer.resume()
        await sleep(1.0)
        numbers = [int.from_bytes(f[:4], "big") for f in peer.frames]
        delivered_after_timeout = sorted(set(numbers) & set(timed_out))
        self.assertEqual(
            len(delivered_after_timeout), 0,
            f"{len(delivered_after_timeout)} item(s) whose send() failed with TimeoutError "
            f"were delivered anyway (of {len(timed_out)} timed out)",
        )

    @as_deferred
    async def test_cancel_after_reconnect_withdraws_item(self) -> None:
        """
        Cancelling a backlog send after it was flushed into the new
        connection's queue withdraws its item.
        """
        tx, peer, sends = await self._backlog_flushed_into_stalled_peer(100)
        await sleep(0.2)
        last = sends[-1]
        self.assertFalse(last.called, "the last backlog item was written; the peer did not stall")
        outcomes: List[Any] = []
        swallow(last, outcomes)
        last.cancel()
        self.assertEqual(len(outcomes), 1)
        self.assertTrue(outcomes[0].check(CancelledError))
        peer.resume()
        for d in sends[:-1]:
            await d
        await sleep(0.5)
        numbers = [int.from_bytes(f[:4], "big") for f in peer.frames]
        self.assertNotIn(len(sends) - 1, numbers, "the cancelled item was sent")
        self.assertEqual(numbers, list(range(len(sends) - 1)))

    @as_deferred
    async def test_send_from_backlog_callback_keeps_order(self) -> None:
        """
        A send made from the callback of a backlogged send (which fires
        once the sender has reconnected) goes after every item that was
        waiting in the backlog, not between them.
        """
        rx1 = await self._listen()
        port = rx1.local_address[1]
        tx = await self._sender(rx1.local_address)
        await rx1.close()
        await eventually(lambda: not tx.connected)
        first = tx.send("A")
        first.addCallback(lambda _: tx.send("C"))
        rest = [tx.send("B1"), tx.send("B2")]
        rx2 = await self._listen(port)
        for d in [first] + rest:
            await d
        self.assertEqual([await rx2.recv(timeout=10) for _ in range(4)], ["A", "B1", "B2", "C"])

    @as_deferred
    async def test_cancel_from_backlog_callback(self) -> None:
        """
        A backlogged send cancelled from the callback of one before it,
        once the sender has reconnected and written both: it was sent, and
        its Deferred says so (no C{CancelledError} for a delivered item).
        """
        rx1 = await self._listen()
        port = rx1.local_address[1]
        tx = await self._sender(rx1.local_address)
        await rx1.close()
        await eventually(lambda: not tx.connected)
        first, second = tx.send("A"), tx.send("B")
        first.addCallback(lambda _: second.cancel())
        rx2 = await self._listen(port)
        await first
        self.assertIsNone(await second)
        self.assertEqual([await rx2.recv(timeout=10) for _ in range(2)], ["A", "B"])

    @as_deferred
    async def test_send_from_errback_of_lost_send_waits(self) -> None:
        """
        When a reconnecting sender's connection is lost with sends queued
        on it, those fail with C{ConnectionClosed}; a send made from their
        errbacks (a retry) waits for the next connection instead of failing
        at once, so a retry loop neither spins nor loses its item.
        """
        address, raw = await listen_raw(self, pause_on_connect=True)
        tx = await self._sender(address, send_high_water=4 * ITEM)
        _, stuck = await fill_until_stalled(lambda i: tx.send(pattern(i, ITEM), raw=True))
        swallow(stuck)
        stalled = [tx.send(pattern(10_000 + i, 10), raw=True) for i in range(3)]
        retries: List[Deferred[None]] = []

        def retry(failure: Failure) -> None:
            failure.trap(ConnectionClosed)
            retries.append(tx.send(b"retried", raw=True))

        for d in stalled:
            d.addErrback(retry)
        assert raw.port is not None
        await raw.port.stopListening()
        peer = await raw.first
        await peer.abort()
        await eventually(lambda: len(retries) == 3)
        self.assertFalse(any(d.called for d in retries), "a retry failed at once")
        rx = await mpsc.receiver_on(f"tcp:{address[1]}:interface=127.0.0.1", codec=RawCodec())
        self.addCleanup(rx.close)
        for d in retries:
            await d
        self.assertEqual([await rx.recv(timeout=10) for _ in range(3)], [b"retried"] * 3)

    @as_deferred
    async def test_close_fails_backlog(self) -> None:
        """
        Closing a reconnecting sender fails the sends still waiting for the
        peer with L{ChannelClosed}; none is left hanging.
        """
        rx1 = await self._listen()
        tx = await self._sender(rx1.local_address)
        await rx1.close()
        await eventually(lambda: not tx.connected)
        d = tx.send("never")
        await tx.close()
        await failure_of(d, ChannelClosed)


class KilledPeerTests(TestCase):
    """
    Peers in child processes killed with SIGKILL.
    """

    timeout = 60

    @as_deferred
    async def test_sigkilled_sender_mid_frame(self) -> None:
        """
        A sender killed in the middle of a frame: the receiver delivers its
        complete frame, logs the truncated one with the peer's address,
        reports the loss and keeps serving the other sender.
        """
        log = LogCapture(self)
        lost: List[Any] = []
        rx = await mpsc.receiver_on(LOOPBACK, on_disconnect=lambda a, r: lost.append(a))
        self.addCleanup(rx.close)
        good = await mpsc.sender_to(rx.local_address)
        self.addCleanup(good.close)
        child = python_child(CHILD_HALF_FRAME, str(rx.local_address[1]))
        kill_on_cleanup(self, child)
        child_port = int(await child_line(child, b"sent "))
        child_address = ("127.0.0.1", child_port)
        self.assertEqual(await rx.recv(with_addr=True), ("first", child_address))
        await eventually(lambda: any(
            c.decoder.buffered == 11 for c in rx._core.pool.connections
        ))
        child.signal("KILL")
        await eventually(lambda: lost == [child_address])
        self.assertTrue(
            log.matching("127.0.0.1:%d" % child_port, "incomplete frame"),
            "the truncated frame was not logged with the peer's address",
        )
        await good.send("after")
        self.assertEqual(await rx.recv(with_addr=True), ("after", good.local_address))
        self.assertEqual(rx.addresses, [good.local_address])
        self.assertEqual(rx.queued, 0)

    @as_deferred
    async def test_receiver_killed_with_sends_pending(self) -> None:
        """
        A receiver (child process) that stopped reading is SIGKILLed while
        sends wait: every waiting C{send()} fails with L{ConnectionClosed}
        naming it; none reports success.
        """
        child = python_child(CHILD_RECEIVER, "tcp:0:interface=127.0.0.1", "1", "stall")
        kill_on_cleanup(self, child)
        port = int(await child_line(child, b"port "))
        tx = await mpsc.sender_to(("127.0.0.1", port), codec=RawCodec())
        self.addCleanup(tx.close)
        sent, stalled = await fill_until_stalled(lambda i: tx.send(pattern(i, ITEM)))
        outcomes: List[Any] = []
        swallow(stalled, outcomes)
        for i in range(sent, sent + 5):
            swallow(tx.send(pattern(i, ITEM)), outcomes)
        self.assertEqual(outcomes, [])
        child.signal("KILL")
        await eventually(lambda: len(outcomes) == 6)
        for outcome in outcomes:
            self.assertIsInstance(outcome, Failure, "a send() succeeded after the receiver died")
            self.assertIsInstance(outcome.value, ConnectionClosed)
            self.assertEqual(outcome.value.address, ("127.0.0.1", port))
        self.failureResultOf(tx.send(b"after"), ConnectionClosed)


class TimeoutTests(TestCase):
    """
    C{timeout=} on C{recv}, C{send}, C{wait} and C{accept}: a
    L{TimeoutError}, and the channel stays usable.
    """

    timeout = 30

    @as_deferred
    async def test_recv_timeout(self) -> None:
        """
        C{recv(timeout=)} fails with L{TimeoutError}; an item sent afterwards
        goes to the next C{recv()}, nothing is lost.
        """
        rx = await mpsc.receiver_on(LOOPBACK)
        self.addCleanup(rx.close)
        tx = await mpsc.sender_to(rx.local_address)
        self.addCleanup(tx.close)
        error = await failure_of(rx.recv(timeout=0.1), TimeoutError)
        self.assertEqual(error.operation, "recv")
        self.assertEqual(error.timeout, 0.1)
        await tx.send("a")
        await tx.send("b")
        self.assertEqual(await rx.recv(timeout=5), "a")
        self.assertEqual(await rx.recv(), "b")

    @as_deferred
    async def test_recv_many_timeout(self) -> None:
        """
        C{recv_many(timeout=)} fails with L{TimeoutError} when no item
        comes; the items sent afterwards all go to the next call.
        """
        rx = await mpsc.receiver_on(LOOPBACK)
        self.addCleanup(rx.close)
        tx = await mpsc.sender_to(rx.local_address)
        self.addCleanup(tx.close)
        error = await failure_of(rx.recv_many(timeout=0.1), TimeoutError)
        self.assertEqual((error.operation, error.timeout), ("recv", 0.1))
        await tx.send_many(["a", "b"])
        await eventually(lambda: rx.queued == 2)
        self.assertEqual(await rx.recv_many(timeout=5), ["a", "b"])

    @as_deferred
    async def test_send_timeout_on_paused_transport(self) -> None:
        """
        C{send(timeout=)} on a transport that stays paused fails with
        L{TimeoutError}; its item is withdrawn (never sent); later sends
        work once the peer reads again.
        """
        address, factory = await listen_raw(self, pause_on_connect=True)
        tx = await spsc.sender_to(address, codec=RawCodec())
        self.addCleanup(tx.close)
        peer = await factory.first
        self.addCleanup(peer.abort)
        sent, stalled = await fill_until_stalled(lambda i: tx.send(pattern(i, ITEM)))
        late = tx.send(pattern(sent, ITEM), timeout=0.2)
        error = await failure_of(late, TimeoutError)
        self.assertEqual(error.operation, "send")
        peer.resume()
        await stalled
        await tx.send(pattern(sent + 1, ITEM))
        await eventually(lambda: len(peer.frames) == sent + 1, timeout=20)
        numbers = [int.from_bytes(f[:4], "big") for f in peer.frames]
        self.assertEqual(numbers, list(range(sent)) + [sent + 1])

    @as_deferred
    async def test_send_timeout_option_on_paused_transport(self) -> None:
        """
        C{send_timeout=} on the constructor is the default timeout of every
        C{send()} that has to wait, connected or not: the item is withdrawn.
        """
        address, factory = await listen_raw(self, pause_on_connect=True)
        tx = await spsc.sender_to(address, codec=RawCodec(), send_timeout=0.75)
        self.addCleanup(tx.close)
        peer = await factory.first
        self.addCleanup(peer.abort)
        # fill_until_stalled waits 0.75 s for each send: the stalled one
        # itself times out then, or right after.
        sent, stalled = await fill_until_stalled(lambda i: tx.send(pattern(i, ITEM)), settle=0.5)
        error = await failure_of(stalled, TimeoutError)
        self.assertEqual(error.operation, "send")
        peer.resume()
        await tx.send(pattern(sent, ITEM))
        await eventually(lambda: len(peer.frames) == sent, timeout=20)
        numbers = [int.from_bytes(f[:4], "big") for f in peer.frames]
        self.assertEqual(numbers, list(range(sent - 1)) + [sent])

    @as_deferred
    async def test_broadcast_send_timeout(self) -> None:
        """
        A broadcast C{send(timeout=)} held up by a paused receiver fails
        with L{TimeoutError}, withdrawing the frame; later sends work.
        """
        tx = await broadcast.sender_on(LOOPBACK, codec=RawCodec())
        self.addCleanup(tx.close)
        peer = await connect_raw(self, tx.local_address)
        peer.pause()
        await eventually(lambda: len(tx) == 1)
        sent, stalled = await fill_until_stalled(lambda i: tx.send(pattern(i, ITEM)))
        late = tx.send(pattern(sent, ITEM), timeout=0.2)
        await failure_of(late, TimeoutError)
        peer.resume()
        self.assertEqual(await stalled, 1)
        self.assertEqual(await tx.send(pattern(sent + 1, ITEM)), 1)
        await eventually(lambda: len(peer.frames) == sent + 1, timeout=20)
        numbers = [int.from_bytes(f[:4], "big") for f in peer.frames]
        self.assertEqual(numbers, list(range(sent)) + [sent + 1])

    @as_deferred
    async def test_wait_timeout(self) -> None:
        """
        C{Waiter.wait(timeout=)} fails with L{TimeoutError}; the waiter is
        released by the next release.
        """
        b = await barrier.barrier_on(LOOPBACK)
        self.addCleanup(b.close)
        w = await barrier.waiter_to(b.local_address)
        self.addCleanup(w.close)
        error = await failure_of(w.wait(timeout=0.1), TimeoutError)
        self.assertEqual(error.operation, "wait")
        d = w.wait(timeout=5)
        await eventually(lambda: len(b) == 1)
        await b.release()
        await d

    @as_deferred
    async def test_accept_timeout(self) -> None:
        """
        C{accept(timeout=)} fails with L{TimeoutError}; the next C{accept()}
        still counts the peer that connects later.
        """
        rx = await mpsc.receiver_on(LOOPBACK)
        self.addCleanup(rx.close)
        error = await failure_of(rx.accept(1, timeout=0.1), TimeoutError)
        self.assertEqual(error.operation, "accept")
        tx = await mpsc.sender_to(rx.local_address)
        self.addCleanup(tx.close)
        self.assertEqual(await rx.accept(1, timeout=5), 1)
        await tx.send("x")
        self.assertEqual(await rx.recv(), "x")


class BadInputTests(TestCase):
    """
    Malformed input from one peer is logged with its address and affects
    that peer's connection only (framing) or that one item (decoding).
    """

    timeout = 30

    async def _receiver(self, **options: Any) -> Tuple[Any, Any, List[Any]]:
        lost: List[Any] = []
        rx = await mpsc.receiver_on(LOOPBACK, on_disconnect=lambda a, r: lost.append(a), **options)
        self.addCleanup(rx.close)
        good = await mpsc.sender_to(rx.local_address)
        self.addCleanup(good.close)
        return rx, good, lost

    async def _good_still_served(self, rx: Any, good: Any) -> None:
        await good.send({"still": "served"})
        self.assertEqual(await rx.recv(with_addr=True), ({"still": "served"}, good.local_address))

    @as_deferred
    async def test_oversized_header(self) -> None:
        """
        A header announcing more than C{max_frame_length}: that connection
        is closed and logged with the peer's address and the size.
        """
        log = LogCapture(self)
        rx, good, lost = await self._receiver(max_frame_length=1024)
        raw = await connect_raw(self, rx.local_address)
        raw_address = raw.address
        raw.send(encode_header(2000, 1 << 20) + b"x" * 100)
        await raw.lost
        await eventually(lambda: lost == [raw_address])
        self.assertTrue(log.matching("127.0.0.1:%d" % raw_address[1], "2000"), log.messages())
        await self._good_still_served(rx, good)

    @as_deferred
    async def test_garbage(self) -> None:
        """
        Garbage bytes (here a 4-byte header announcing 512 MiB) close that
        connection only, with a logged reason.
        """
        log = LogCapture(self)
        rx, good, lost = await self._receiver()
        raw = await connect_raw(self, rx.local_address)
        raw_address = raw.address
        raw.send(b"\xff\xff\xff\xffgarbage garbage")
        await raw.lost
        await eventually(lambda: lost == [raw_address])
        self.assertTrue(log.matching("127.0.0.1:%d" % raw_address[1], "Closing connection"))
        await self._good_still_served(rx, good)

    @as_deferred
    async def test_truncated_frame_at_eof(self) -> None:
        """
        A stream that ends (FIN) inside a frame: the complete frames before
        are delivered, the fragment is logged with the peer's address.
        """
        log = LogCapture(self)
        rx, good, lost = await self._receiver()
        raw = await connect_raw(self, rx.local_address)
        raw_address = raw.address
        raw.send(frame("complete") + encode_header(50) + b"only part")
        self.assertEqual(await rx.recv(with_addr=True), ("complete", raw_address))
        await sleep(0.05)
        await raw.finish()
        await eventually(lambda: lost == [raw_address])
        self.assertTrue(log.matching("127.0.0.1:%d" % raw_address[1], "incomplete frame"))
        await self._good_still_served(rx, good)
        self.assertEqual(rx.queued, 0)

    @as_deferred
    async def test_undecodable_payload(self) -> None:
        """
        A payload the codec refuses fails that C{recv()} with L{DecodeError}
        carrying the peer's address and an excerpt; the next item from the
        same connection arrives, and the connection stays open.
        """
        rx, good, lost = await self._receiver()
        raw = await connect_raw(self, rx.local_address)
        raw.send(encode_frame(b"{not json at all") + frame("next"))
        error = await failure_of(rx.recv(), DecodeError)
        self.assertEqual(error.address, raw.address)
        self.assertEqual(error.payload, b"{not json at all")
        self.assertIn("127.0.0.1:%d" % raw.address[1], str(error))
        self.assertIn("{not json", str(error))
        self.assertEqual(await rx.recv(with_addr=True), ("next", raw.address))
        raw.send(frame("more"))
        self.assertEqual(await rx.recv(), "more")
        self.assertEqual(lost, [])
        await self._good_still_served(rx, good)

    @as_deferred
    async def test_undecodable_payload_with_addr_and_recv_many(self) -> None:
        """
        C{recv(with_addr=True)} and C{recv_many()} report the bad payload
        the same way: C{recv_many} returns the items before it, the next
        call fails, the one after goes on.
        """
        rx, good, lost = await self._receiver()
        raw = await connect_raw(self, rx.local_address)
        raw.send(encode_frame(b"\xff\xfe") + frame(1))
        error = await failure_of(rx.recv(with_addr=True), DecodeError)
        self.assertEqual(error.address, raw.address)
        self.assertEqual(await rx.recv(), 1)
        raw.send(frame(2) + frame(3) + encode_frame(b"[") + frame(4))
        await eventually(lambda: rx.queued == 4)
        self.assertEqual(await rx.recv_many(), [2, 3])
        await failure_of(rx.recv_many(), DecodeError)
        self.assertEqual(await rx.recv_many(), [4])

    @as_deferred
    async def test_on_decode_error_hook(self) -> None:
        """
        With C{on_decode_error=}, a bad payload goes to the hook (with the
        peer's address), and only there (nothing is logged: the hook's
        owner decides), and C{recv()} returns the next good item.
        """
        log = LogCapture(self)
        errors: List[DecodeError] = []
        rx, good, lost = await self._receiver(on_decode_error=errors.append)
        raw = await connect_raw(self, rx.local_address)
        raw.send(encode_frame(b"nope") + frame("good"))
        self.assertEqual(await rx.recv(), "good")
        self.assertEqual(len(errors), 1)
        self.assertEqual(errors[0].address, raw.address)
        self.assertEqual(errors[0].payload, b"nope")
        self.assertEqual(log.matching("nope"), [])

    @as_deferred
    async def test_frame_at_send_only_listener(self) -> None:
        """
        A frame arriving at a broadcast sender (send-only) is logged with
        the peer's address and discarded; that receiver keeps receiving.
        """
        log = LogCapture(self)
        tx = await broadcast.sender_on(LOOPBACK)
        self.addCleanup(tx.close)
        raw = await connect_raw(self, tx.local_address)
        await eventually(lambda: len(tx) == 1)
        raw.send(frame("unexpected"))
        await eventually(lambda: bool(log.matching("127.0.0.1:%d" % raw.address[1], "unexpected")))
        self.assertEqual(await tx.send("hello"), 1)
        await eventually(lambda: raw.frames == [b'"hello"'])

    @as_deferred
    async def test_frame_at_send_only_connector(self) -> None:
        """
        A frame arriving at an mpsc sender (send-only, connecting) is logged
        and discarded; the sender keeps sending.
        """
        log = LogCapture(self)
        address, factory = await listen_raw(self)
        tx = await mpsc.sender_to(address)
        self.addCleanup(tx.close)
        peer = await factory.first
        peer.send(frame("unexpected"))
        await eventually(lambda: bool(log.matching("127.0.0.1:%d" % address[1], "unexpected")))
        await tx.send("still sending")
        await eventually(lambda: peer.frames == [b'"still sending"'])

    @as_deferred
    async def test_too_large_broadcast_fails_only_that_send(self) -> None:
        """
        A broadcast item larger than C{max_frame_length} fails that
        C{send()} with L{FrameTooLarge}; no receiver is disconnected or
        gets anything of it; the next item reaches all of them.
        """
        lost: List[Any] = []
        tx = await broadcast.sender_on(
            LOOPBACK, max_frame_length=1024, on_disconnect=lambda a, r: lost.append(a)
        )
        self.addCleanup(tx.close)
        receivers = []
        for _ in range(3):
            rx = await broadcast.receiver_to(tx.local_address)
            self.addCleanup(rx.close)
            receivers.append(rx)
        await eventually(lambda: len(tx) == 3)
        await failure_of(tx.send("x" * 2000), FrameTooLarge)
        await failure_of(tx.send(object()), EncodeError)
        self.assertEqual(await tx.send("small"), 3)
        for rx in receivers:
            self.assertEqual(await rx.recv(), "small")
        await sleep(0.1)
        self.assertEqual(lost, [])
        self.assertEqual(len(tx), 3)
        self.assertEqual([rx.queued for rx in receivers], [0, 0, 0])

    @as_deferred
    async def test_too_large_item_single_sender(self) -> None:
        """
        A too-large or unencodable item fails only its own C{send()} on a
        single-peer sender; the sends around it are delivered.
        """
        rx = await mpsc.receiver_on(LOOPBACK)
        self.addCleanup(rx.close)
        tx = await mpsc.sender_to(rx.local_address, max_frame_length=1024)
        self.addCleanup(tx.close)
        await tx.send("before")
        await failure_of(tx.send("x" * 2000), FrameTooLarge)
        await failure_of(tx.send({1, 2}), EncodeError)
        await tx.send("after")
        self.assertEqual(await rx.recv(), "before")
        self.assertEqual(await rx.recv(), "after")
        self.assertTrue(tx.connected)


class RefusedConnectionTests(TestCase):
    """
    Connections over C{limit} or rejected by C{accept_filter} are closed at
    once and logged; admitted peers are unaffected.
    """

    timeout = 30

    @as_deferred
    async def test_over_limit(self) -> None:
        """
        With C{limit=1} a second sender's connection is closed and logged;
        its sends fail; the first sender is unaffected.
        """
        log = LogCapture(self)
        joined: List[Any] = []
        rx = await mpsc.receiver_on(LOOPBACK, limit=1, on_accept=joined.append)
        self.addCleanup(rx.close)
        tx1 = await mpsc.sender_to(rx.local_address)
        self.addCleanup(tx1.close)
        await eventually(lambda: len(joined) == 1)
        tx2 = await mpsc.sender_to(rx.local_address)
        self.addCleanup(tx2.close)
        tx2_address = tx2.local_address
        await eventually(lambda: not tx2.connected)
        self.assertTrue(log.matching("127.0.0.1:%d" % tx2_address[1], "limit"), log.messages())
        await failure_of(tx2.send("refused"), ConnectionClosed)
        self.assertEqual(joined, [tx1.local_address])
        await tx1.send("ok")
        self.assertEqual(await rx.recv(with_addr=True), ("ok", tx1.local_address))
        self.assertEqual(rx.addresses, [tx1.local_address])

    @as_deferred
    async def test_rejected_by_accept_filter(self) -> None:
        """
        A connection C{accept_filter} rejects is closed and logged before it
        joins; the filter's admitted peers are served.
        """
        log = LogCapture(self)
        seen: List[Any] = []

        def only_first(address: Any) -> bool:
            seen.append(address)
            return len(seen) == 1

        rx = await mpsc.receiver_on(LOOPBACK, accept_filter=only_first)
        self.addCleanup(rx.close)
        tx1 = await mpsc.sender_to(rx.local_address)
        self.addCleanup(tx1.close)
        raw = await connect_raw(self, rx.local_address)
        await raw.lost
        self.assertTrue(log.matching("127.0.0.1:%d" % raw.address[1], "accept_filter"))
        self.assertEqual(rx.addresses, [tx1.local_address])
        await tx1.send("ok")
        self.assertEqual(await rx.recv(), "ok")
