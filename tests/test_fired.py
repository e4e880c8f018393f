"""
Tests for L{tsyncp_tx._fired}: C{fired_none()} behaves as C{succeed(None)}.
"""

from __future__ import annotations

import asyncio
from typing import Any, Generator, List

from twisted.internet.defer import (
    AlreadyCalledError,
    Deferred,
    DeferredList,
    gatherResults,
    inlineCallbacks,
    succeed,
)
from twisted.trial.unittest import SynchronousTestCase

from tsyncp_tx._fired import fired, fired_none


class FiredNoneTests(SynchronousTestCase):
    """
    Every way of using a Deferred gives the same outcome with C{fired_none()}
    as with C{succeed(None)}.
    """

    def test_is_a_fired_deferred(self) -> None:
        """
        It is a L{Deferred}, already called, with the result C{None}.
        """
        d = fired_none()
        self.assertIsInstance(d, Deferred)
        self.assertTrue(d.called)
        self.assertIsNone(self.successResultOf(d))

    def test_each_call_a_new_deferred(self) -> None:
        """
        Each call returns its own Deferred: callbacks on one leave the next
        untouched.
        """
        first = fired_none()
        first.addCallback(lambda _: 5)
        second = fired_none()
        self.assertIsNot(first, second)
        self.assertEqual(self.successResultOf(first), 5)
        self.assertIsNone(self.successResultOf(second))

    def test_await(self) -> None:
        """
        C{await} gives C{None} at once, as often as it is awaited.
        """
        results: List[Any] = []

        async def use() -> None:
            d = fired_none()
            results.append(await d)
            results.append(await d)

        done = Deferred.fromCoroutine(use())
        self.successResultOf(done)
        self.assertEqual(results, [None, None])

    def test_await_after_callbacks(self) -> None:
        """
        After callbacks changed its result (or made it a failure), C{await}
        gives that result (or raises), as for any Deferred.
        """
        results: List[Any] = []

        async def use() -> None:
            d = fired_none()
            d.addCallback(lambda _: "changed")
            results.append(await d)
            failing = fired_none()
            failing.addCallback(lambda _: 1 / 0)
            try:
                await failing
            except ZeroDivisionError:
                results.append("raised")

        self.successResultOf(Deferred.fromCoroutine(use()))
        self.assertEqual(results, ["changed", "raised"])

    def test_callback_chain(self) -> None:
        """
        C{addCallback}, C{addErrback} and C{addBoth} chain as on
        C{succeed(None)}.
        """
        for make in (succeed, lambda _: fired_none()):
            seen: List[Any] = []
            d = make(None)
            d.addCallback(lambda r: seen.append(("cb", r)) or 1)
            d.addErrback(lambda f: seen.append(("eb", f)))
            d.addBoth(lambda r: seen.append(("both", r)) or 2)
            d.addCallbacks(lambda r: seen.append(("cbs", r)), lambda f: None)
            self.assertEqual(seen, [("cb", None), ("both", 1), ("cbs", 2)])
            self.assertIsNone(self.successResultOf(d))

    def test_callback_again(self) -> None:
        """
        Firing it again raises L{AlreadyCalledError}.
        """
        self.assertRaises(AlreadyCalledError, fired_none().callback, None)
        self.assertRaises(AlreadyCalledError, fired_none().errback, ValueError())

    def test_cancel(self) -> None:
        """
        Cancelling it does nothing.
        """
        d = fired_none()
        d.cancel()
        self.assertIsNone(self.successResultOf(d))

    def test_pause(self) -> None:
        """
        Callbacks added while paused run on C{unpause()}; C{await} on a
        paused one waits for C{unpause()}.
        """
        d = fired_none()
        d.pause()
        seen: List[Any] = []
        d.addCallback(seen.append)
        self.assertEqual(seen, [])
        d.unpause()
        self.assertEqual(seen, [None])

        paused = fired_none()
        paused.pause()

        async def use() -> Any:
            return await paused

        waiting = Deferred.fromCoroutine(use())
        self.assertNoResult(waiting)
        paused.unpause()
        self.assertIsNone(self.successResultOf(waiting))

    def test_returned_from_a_callback(self) -> None:
        """
        Returned from another Deferred's callback, it hands on C{None}.
        """
        d: Deferred[Any] = Deferred()
        d.addCallback(lambda _: fired_none())
        d.callback("x")
        self.assertIsNone(self.successResultOf(d))

    def test_yielded_in_inline_callbacks(self) -> None:
        """
        C{yield} in an C{inlineCallbacks} generator gives C{None}.
        """

        @inlineCallbacks
        def use() -> Generator[Deferred[Any], Any, Any]:
            first = yield fired_none()
            second = yield fired_none()
            return (first, second)

        self.assertEqual(self.successResultOf(use()), (None, None))

    def test_combined(self) -> None:
        """
        C{DeferredList}, C{gatherResults} and C{chainDeferred} take it.
        """
        self.assertEqual(
            self.successResultOf(DeferredList([fired_none(), fired_none()])),
            [(True, None), (True, None)],
        )
        self.assertEqual(self.successResultOf(gatherResults([fired_none()])), [None])
        target: Deferred[None] = Deferred()
        fired_none().chainDeferred(target)
        self.assertIsNone(self.successResultOf(target))

    def test_as_future(self) -> None:
        """
        C{asFuture} gives a future resolved with C{None}.
        """
        loop = asyncio.new_event_loop()
        self.addCleanup(loop.close)
        future = fired_none().asFuture(loop)
        self.assertIsNone(loop.run_until_complete(future))

    def test_repr(self) -> None:
        """
        Its repr shows the result, as a Deferred's does.
        """
        self.assertIn("current result: None", repr(fired_none()))


class FiredTests(SynchronousTestCase):
    """
    C{fired(result)} behaves as C{succeed(result)}.
    """

    def test_result(self) -> None:
        """
        It is a called L{Deferred} with the given result; each call makes a
        new one.
        """
        d = fired("x")
        self.assertIsInstance(d, Deferred)
        self.assertTrue(d.called)
        self.assertIsNot(d, fired("x"))
        self.assertEqual(self.successResultOf(d), "x")

    def test_await(self) -> None:
        """
        C{await} gives the result, also after callbacks changed it.
        """
        results: List[Any] = []

        async def use() -> None:
            results.append(await fired(3))
            d = fired(4)
            d.addCallback(lambda r: r * 10)
            results.append(await d)

        self.successResultOf(Deferred.fromCoroutine(use()))
        self.assertEqual(results, [3, 40])

    def test_chain_and_combinations(self) -> None:
        """
        Callbacks, C{inlineCallbacks}, C{DeferredList}, a callback returning
        it, C{pause}: as with C{succeed}.
        """
        seen: List[Any] = []
        d = fired(1)
        d.addCallback(lambda r: seen.append(r) or r + 1)
        d.addBoth(seen.append)
        self.assertEqual(seen, [1, 2])

        @inlineCallbacks
        def use() -> Generator[Deferred[Any], Any, Any]:
            return (yield fired("a"))

        self.assertEqual(self.successResultOf(use()), "a")
        self.assertEqual(
            self.successResultOf(DeferredList([fired(1), fired(2)])), [(True, 1), (True, 2)]
        )
        outer: Deferred[Any] = Deferred()
        outer.addCallback(lambda _: fired("inner"))
        outer.callback(None)
        self.assertEqual(self.successResultOf(outer), "inner")
        paused = fired("p")
        paused.pause()
        later: List[Any] = []
        paused.addCallback(later.append)
        self.assertEqual(later, [])
        paused.unpause()
        self.assertEqual(later, ["p"])
        self.assertRaises(AlreadyCalledError, fired(1).callback, 2)
        self.assertIn("current result: 'r'", repr(fired("r")))
