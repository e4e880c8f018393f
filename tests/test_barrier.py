"""
Tests for L{tsyncp_tx.barrier} over real loopback TCP, including the
release frame's bytes as a plain TCP client sees them.
"""

from __future__ import annotations

import os
from typing import Any, List, Tuple

from twisted.internet import reactor as global_reactor
from twisted.internet.defer import gatherResults
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tsyncp_tx import barrier
from tsyncp_tx.barrier import Barrier, Waiter
from tsyncp_tx.errors import ConnectError, ConnectionClosed, DecodeError, TimeoutError

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

RELEASE_FRAME = bytes.fromhex("0100")


class BarrierTests(TestCase):
    """
    Barriers and waiters.
    """

    timeout = 30

    async def barrier(self, **options: Any) -> Barrier:
        """
        A barrier on a free loopback port, closed after the test.
        """
        b = await barrier.barrier_on(LOOPBACK, **options)
        self.addCleanup(b.close)
        return b

    async def waiter(self, address: Any, **options: Any) -> Waiter:
        """
        A waiter connected to C{address}, closed after the test.
        """
        w = await barrier.waiter_to(address, **options)
        self.addCleanup(w.close)
        return w

    @as_deferred
    async def test_manual_release_late_waiters(self) -> None:
        """
        Three waiters, two connecting late: C{release()} fires with 3 and
        every C{wait()} fires, including one called after the release
        arrived.
        """
        b = await self.barrier()
        self.assertEqual((b.generation, b.waiting), (0, 0))
        w1 = await self.waiter(b.local_address)
        first = w1.wait()
        await eventually(lambda: b.waiting == 1)
        await sleep(0.1)
        w2 = await self.waiter(b.local_address)
        second = w2.wait()
        await sleep(0.05)
        w3 = await self.waiter(b.local_address)
        await eventually(lambda: b.waiting == 3)
        self.assertFalse(first.called or second.called)
        self.assertEqual(await b.release(), 3)
        self.assertEqual((b.generation, b.waiting), (1, 0))
        await gatherResults([first, second])
        await sleep(0.05)  # the release has reached w3 before it waits
        late = w3.wait()
        self.assertTrue(late.called)
        await late

    @as_deferred
    async def test_accept_waits_for_late_waiters(self) -> None:
        """
        C{barrier_on(accept=3)} fires once the third (late) waiter joined.
        """
        endpoint = RecordingServerEndpoint()
        d = barrier.barrier_on(endpoint, accept=3)
        port = await endpoint.listening
        waiters = [await self.waiter(port)]
        waits = [waiters[0].wait()]
        await sleep(0.1)
        waiters.append(await self.waiter(("127.0.0.1", port)))
        self.assertFalse(d.called)
        waiters.append(await self.waiter(f"127.0.0.1:{port}"))
        b = await d
        self.addCleanup(b.close)
        self.assertEqual(len(b), 3)
        waits += [w.wait() for w in waiters[1:]]
        self.assertEqual(await b.release(), 3)
        await gatherResults(waits)

    @as_deferred
    async def test_parties_three_generations(self) -> None:
        """
        C{parties=3} releases by itself each time three waiters wait, over
        three generations, with C{generation} and C{waiting} tracking it.
        """
        released: List[Tuple[int, List[Any]]] = []
        b = await self.barrier(parties=3, on_release=lambda g, a: released.append((g, a)))
        w1 = await self.waiter(b.local_address)
        w2 = await self.waiter(b.local_address)
        d1, d2 = w1.wait(), w2.wait()
        await eventually(lambda: b.waiting == 2)
        await sleep(0.05)
        self.assertEqual(b.generation, 0)
        self.assertFalse(d1.called or d2.called)
        # Generation 1: the late third waiter completes the party by joining.
        w3 = await self.waiter(b.local_address)
        await gatherResults([d1, d2, w3.wait()])
        self.assertEqual((b.generation, b.waiting), (1, 0))
        # Generation 2: waiting again announces itself (frame 01 00).
        d1, d2 = w1.wait(), w2.wait()
        await eventually(lambda: b.waiting == 2)
        self.assertEqual(b.generation, 1)
        self.assertFalse(d1.called or d2.called)
        d3 = w3.wait()
        await gatherResults([d1, d2, d3])
        self.assertEqual((b.generation, b.waiting), (2, 0))
        # Generation 3, from concurrent waits.
        await gatherResults([w.wait() for w in (w1, w2, w3)])
        self.assertEqual((b.generation, b.waiting), (3, 0))
        self.assertEqual([g for g, _ in released], [1, 2, 3])
        everyone = sorted(w.local_address for w in (w1, w2, w3))
        for _, addresses in released:
            self.assertEqual(sorted(addresses), everyone)

    @as_deferred
    async def test_parties_ignores_departed(self) -> None:
        """
        A waiter that leaves no longer counts towards C{parties}.
        """
        b = await self.barrier(parties=2)
        w1 = await self.waiter(b.local_address)
        await eventually(lambda: b.waiting == 1)
        await w1.close()
        await eventually(lambda: b.waiting == 0)
        w2 = await self.waiter(b.local_address)
        d2 = w2.wait()
        await eventually(lambda: b.waiting == 1)
        await sleep(0.05)
        self.assertEqual(b.generation, 0)
        self.assertFalse(d2.called)
        w3 = await self.waiter(b.local_address)
        await gatherResults([d2, w3.wait()])
        self.assertEqual(b.generation, 1)

    @as_deferred
    async def test_release_bytes_on_wire(self) -> None:
        """
        The release a plain TCP client receives is exactly C{01 00}.
        """
        b = await self.barrier()
        raw = await connect_raw(self, port_of(b))
        await eventually(lambda: b.waiting == 1)
        self.assertEqual(raw.data, b"")
        self.assertEqual(await b.release(), 1)
        await eventually(lambda: len(raw.data) >= 2)
        await sleep(0.05)
        self.assertEqual(raw.data, RELEASE_FRAME)

    @as_deferred
    async def test_raw_client_waits_again(self) -> None:
        """
        A plain client sending C{01 00} counts as waiting again.
        """
        b = await self.barrier()
        raw = await connect_raw(self, port_of(b))
        await eventually(lambda: b.waiting == 1)
        await b.release()
        await eventually(lambda: raw.data == RELEASE_FRAME)
        self.assertEqual(b.waiting, 0)
        raw.transport.write(RELEASE_FRAME)  # type: ignore[union-attr]
        await eventually(lambda: b.waiting == 1)
        self.assertEqual(await b.release(), 1)
        await eventually(lambda: raw.data == RELEASE_FRAME * 2)

    @as_deferred
    async def test_raw_client_with_parties(self) -> None:
        """
        With C{parties=2}, a plain client and a Python waiter make a party;
        the plain client's C{01 00} joins the next generation.
        """
        b = await self.barrier(parties=2)
        raw = await connect_raw(self, port_of(b))
        w = await self.waiter(b.local_address)
        await w.wait()
        await eventually(lambda: raw.data == RELEASE_FRAME)
        second = w.wait()
        await eventually(lambda: b.waiting == 1)
        self.assertFalse(second.called)
        raw.transport.write(RELEASE_FRAME)  # type: ignore[union-attr]
        await second
        await eventually(lambda: raw.data == RELEASE_FRAME * 2)
        self.assertEqual(b.generation, 2)

    @as_deferred
    async def test_bad_frame_closes_only_offender(self) -> None:
        """
        A frame other than C{01 00} closes that connection (logged); other
        waiters are unaffected.
        """
        logs = capture_logs(self)
        b = await self.barrier()
        w = await self.waiter(b.local_address)
        raw = await connect_raw(self, port_of(b))
        await eventually(lambda: b.waiting == 2)
        raw.transport.write(b"\x01\x05")  # type: ignore[union-attr]
        await raw.lost
        await eventually(lambda: len(b) == 1)
        self.assertTrue(logged(logs, "barrier"), logs)
        waiting = w.wait()
        self.assertEqual(await b.release(), 1)
        await waiting

    @as_deferred
    async def test_accept_later_and_limit(self) -> None:
        """
        C{accept(n)} on a barrier fires once C{n} waiters joined; C{limit}
        refuses one waiter too many.
        """
        b = await self.barrier(limit=2)
        joined = b.accept(2)
        w1 = await self.waiter(b.local_address)
        w2 = await self.waiter(b.local_address)
        self.assertEqual(await joined, 2)
        w3 = await self.waiter(b.local_address)
        await self.assertFailure(w3.wait(), ConnectionClosed)
        self.assertEqual(await b.release(), 2)
        await gatherResults([w1.wait(), w2.wait()])

    @as_deferred
    async def test_barrier_close_fails_wait(self) -> None:
        """
        A waiter whose barrier goes away fails C{wait()} with
        C{ConnectionClosed} carrying the barrier's address.
        """
        b = await barrier.barrier_on(LOOPBACK)
        address = b.local_address
        w = await self.waiter(address)
        waiting = w.wait()
        await b.close()
        error = await self.assertFailure(waiting, ConnectionClosed)
        self.assertEqual(error.address, address)

    @as_deferred
    async def test_waiter_refuses_bad_release(self) -> None:
        """
        A barrier that sends anything but a release fails C{wait()} with
        C{DecodeError} carrying its address; the next release still counts.
        """
        from twisted.internet.protocol import Factory, Protocol

        class Sloppy(Protocol):
            def connectionMade(self) -> None:
                self.transport.write(bytes.fromhex("0105") + RELEASE_FRAME)  # type: ignore[union-attr]

        port = global_reactor.listenTCP(0, Factory.forProtocol(Sloppy), interface="127.0.0.1")  # type: ignore[attr-defined]
        self.addCleanup(port.stopListening)
        address = ("127.0.0.1", port.getHost().port)
        w = await self.waiter(address)
        error = await self.assertFailure(w.wait(), DecodeError)
        self.assertEqual(error.address, address)
        self.assertIsNone(await w.wait())

    @as_deferred
    async def test_wait_timeout(self) -> None:
        """
        C{wait(timeout=)} fails with C{TimeoutError} when no release comes.
        """
        b = await self.barrier()
        w = await self.waiter(b.local_address)
        await self.assertFailure(w.wait(timeout=0.05), TimeoutError)

    @as_deferred
    async def test_release_with_nobody(self) -> None:
        """
        A release with no waiter fires with 0 and counts as a generation.
        """
        b = await self.barrier()
        self.assertEqual(await b.release(), 0)
        self.assertEqual(b.generation, 1)

    def test_bad_arguments(self) -> None:
        """
        C{parties} below 1 and C{accept="limit"} without C{limit} are
        C{ValueError}s.
        """
        self.assertRaises(ValueError, barrier.barrier_on, LOOPBACK, parties=0)
        self.assertRaises(ValueError, barrier.barrier_on, LOOPBACK, accept="limit")

    @as_deferred
    async def test_unix_and_reactor(self) -> None:
        """
        A barrier on a UNIX socket, with the reactor given explicitly.
        """
        path = os.path.join(short_temp_dir(self), "b.sock")
        b = await barrier.barrier_on(f"unix:{path}", parties=2, reactor=global_reactor)
        self.addCleanup(b.close)
        w1 = await self.waiter(f"unix:{path}", reactor=global_reactor)
        w2 = await self.waiter(f"unix:{path}")
        await gatherResults([w1.wait(), w2.wait()])
        self.assertEqual(b.generation, 1)

    @as_deferred
    async def test_waiter_retry(self) -> None:
        """
        C{waiter_to(retry=)} waits for a barrier started later; without it
        the refusal is a C{ConnectError}.
        """
        port = free_port()
        await self.assertFailure(barrier.waiter_to(port), ConnectError)
        barriers: List[Barrier] = []
        global_reactor.callLater(  # type: ignore[attr-defined]
            0.1, lambda: barrier.barrier_on(port, parties=1).addCallback(barriers.append)
        )
        w = await self.waiter(port, retry=(0.05, 20))
        await eventually(lambda: bool(barriers))
        self.addCleanup(barriers[0].close)
        await w.wait()
        self.assertEqual(barriers[0].generation, 1)

    @as_deferred
    async def test_wait_after_timeout_takes_late_release(self) -> None:
        """
        The release that answers a timed-out C{wait()} is taken by the next
        C{wait()}, which does not announce again: the waiter is not counted
        in the generation after, so that generation still needs both.
        """
        b = await self.barrier(parties=2)
        first = await self.waiter(b.local_address)
        second = await self.waiter(b.local_address)
        await gatherResults([first.wait(), second.wait()])  # joining counted
        # A bad timeout is refused before anything is announced.
        self.assertRaises(ValueError, first.wait, timeout=-1)
        await sleep(0.05)
        self.assertEqual(b.waiting, 0)
        await self.assertFailure(first.wait(timeout=0.05), TimeoutError)
        await eventually(lambda: b.waiting == 1)
        await second.wait(timeout=5)  # generation 2 releases both
        await first.wait(timeout=5)  # the release its timed-out call was owed
        await sleep(0.1)
        self.assertEqual((b.generation, b.waiting), (2, 0))
        await self.assertFailure(second.wait(timeout=0.2), TimeoutError)
        self.assertEqual(b.generation, 2)


class BarrierLogicTests(SynchronousTestCase):
    """
    The barrier's bookkeeping driven by hand with C{MemoryReactorClock}
    and string transports.
    """

    def test_parties_generations(self) -> None:
        """
        With C{parties=2}: connecting counts as waiting; the second waiter
        triggers a release written as C{01 00} to both; C{01 00} from a
        waiter counts it again; C{on_release} gets the generation and the
        released addresses.
        """
        reactor = MemoryReactorClock()
        released: List[Tuple[int, List[Any]]] = []
        b = self.successResultOf(
            barrier.barrier_on(
                9000, parties=2, reactor=reactor,
                on_release=lambda g, a: released.append((g, sorted(a))),
            )
        )
        p1, t1 = fake_peer(reactor, 5001)
        reactor.advance(0)
        self.assertEqual((b.waiting, b.generation, t1.value()), (1, 0, b""))
        p2, t2 = fake_peer(reactor, 5002)
        reactor.advance(0)
        self.assertEqual((b.waiting, b.generation), (0, 1))
        self.assertEqual((t1.value(), t2.value()), (RELEASE_FRAME, RELEASE_FRAME))
        p1.dataReceived(RELEASE_FRAME)
        reactor.advance(0)
        self.assertEqual((b.waiting, b.generation, t1.value()), (1, 1, RELEASE_FRAME))
        p2.dataReceived(RELEASE_FRAME[:1])
        self.assertEqual(b.waiting, 1)
        p2.dataReceived(RELEASE_FRAME[1:])
        reactor.advance(0)
        self.assertEqual((b.waiting, b.generation), (0, 2))
        self.assertEqual((t1.value(), t2.value()), (RELEASE_FRAME * 2, RELEASE_FRAME * 2))
        everyone = [("127.0.0.1", 5001), ("127.0.0.1", 5002)]
        self.assertEqual(released, [(1, everyone), (2, everyone)])

    def test_manual_release_and_departure(self) -> None:
        """
        C{release()} fires with the number of connected waiters; a waiter
        that left is neither waiting nor released.
        """
        from twisted.internet.error import ConnectionDone

        reactor = MemoryReactorClock()
        left: List[Any] = []
        b = self.successResultOf(
            barrier.barrier_on(9000, reactor=reactor, on_disconnect=lambda a, r: left.append(a))
        )
        peers = [fake_peer(reactor, 5000 + i) for i in range(3)]
        self.assertEqual(b.waiting, 3)
        peers[1][0].connectionLost(Failure(ConnectionDone()))
        self.assertEqual(left, [("127.0.0.1", 5001)])
        self.assertEqual((b.waiting, len(b)), (2, 2))
        self.assertEqual(self.successResultOf(b.release()), 2)
        reactor.advance(0)
        self.assertEqual(
            [t.value() for _, t in peers], [RELEASE_FRAME, b"", RELEASE_FRAME]
        )
        self.assertEqual((b.waiting, b.generation), (0, 1))

    def test_raising_hooks_do_not_stop_counting(self) -> None:
        """
        An C{on_accept} or C{on_disconnect} that raises is logged; the
        waiter is counted (and released) and forgotten all the same.
        """
        from twisted.internet.error import ConnectionDone

        def broken(*args: Any) -> None:
            raise RuntimeError("hook bug")

        reactor = MemoryReactorClock()
        b = self.successResultOf(
            barrier.barrier_on(
                9000, parties=1, reactor=reactor, on_accept=broken, on_disconnect=broken
            )
        )
        p, t = fake_peer(reactor, 5001)
        reactor.advance(0)
        self.assertEqual((b.generation, t.value()), (1, RELEASE_FRAME))
        p.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(len(b), 0)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 2)

    def test_release_that_cannot_be_sent_is_logged(self) -> None:
        """
        An automatic release that a waiter's full queue refuses is logged
        with its generation and not counted: nobody is released, the
        waiter still waits, and the release is made once its queue has
        drained.
        """
        from tsyncp_tx.errors import SendQueueFull

        logs = capture_logs(self)
        reactor = MemoryReactorClock()
        b = self.successResultOf(
            barrier.barrier_on(9000, parties=1, reactor=reactor, send_high_water=1)
        )
        p, _ = fake_peer(reactor, 5001)  # generation 1, written
        p.pauseProducing()  # the waiter stops reading
        p.dataReceived(RELEASE_FRAME)  # generation 2, queued
        self.assertEqual(self.flushLoggedErrors(SendQueueFull), [])
        p.dataReceived(RELEASE_FRAME)  # generation 3: the queue is full
        self.assertEqual(len(self.flushLoggedErrors(SendQueueFull)), 1)
        self.assertEqual((b.generation, b.waiting), (2, 1))
        self.assertTrue(logged(logs, "generation 3"), logs)
        p.resumeProducing()
        self.assertEqual((b.generation, b.waiting), (3, 0))

    def test_bad_frame_aborts(self) -> None:
        """
        A frame other than C{01 00} aborts that connection with a logged
        reason, before counting it as waiting.
        """
        logs = capture_logs(self)
        reactor = MemoryReactorClock()
        b = self.successResultOf(barrier.barrier_on(9000, reactor=reactor))
        p, t = fake_peer(reactor, 5001)
        b.release()
        p.dataReceived(b"\x02\x00\x00")
        self.assertEqual(b.waiting, 0)
        self.assertTrue(t.disconnecting or getattr(t, "disconnected", False))
        self.assertTrue(logged(logs, "5001", "barrier"), logs)
