"""
L{fired_none}: the already-fired Deferred a send returns when the transport
took its frame at once, made and awaited at a fraction of C{succeed(None)}'s
cost.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred

__all__ = ["fired_none"]


class _FiredNone(Deferred[None]):
    """
    A L{Deferred} that has fired with C{None} and has no callbacks.

    C{await} on a Deferred runs a Python generator, and C{succeed()} runs
    C{Deferred.__init__}: together most of the cost of a small C{await
    tx.send(item)}.  An instance of this class is made without C{__init__}
    (its state lives in class attributes), and C{await} gets C{None} from an
    empty iterator, in C.  The first call that could change its state
    (adding callbacks, pausing) first turns it into a plain L{Deferred} in
    the same state, so it behaves as C{succeed(None)} in every respect.
    """

    called = True
    result = None
    _canceller = None
    # Never appended to: every method that would append turns the instance
    # into a plain Deferred with its own list first.
    _callbacks: Any = ()
    __await__ = ().__iter__  # type: ignore[assignment]

    def _become_plain(self) -> None:
        self.__class__ = Deferred  # type: ignore[assignment]
        self.called = True
        if "result" not in self.__dict__:
            self.result = None
        self._callbacks = []
        self._canceller = None

    def addCallbacks(self, *args: Any, **kwargs: Any) -> Any:  # noqa: D102
        self._become_plain()
        return self.addCallbacks(*args, **kwargs)

    def addCallback(self, *args: Any, **kwargs: Any) -> Any:  # noqa: D102
        self._become_plain()
        return self.addCallback(*args, **kwargs)

    def addErrback(self, *args: Any, **kwargs: Any) -> Any:  # noqa: D102
        self._become_plain()
        return self.addErrback(*args, **kwargs)

    def addBoth(self, *args: Any, **kwargs: Any) -> Any:  # noqa: D102
        self._become_plain()
        return self.addBoth(*args, **kwargs)

    def pause(self) -> None:  # noqa: D102
        self._become_plain()
        self.pause()


_new = object.__new__


def fired_none() -> Deferred[None]:
    """
    @return: A Deferred that has already fired with C{None}.
    """
    return _new(_FiredNone)  # type: ignore[no-any-return]
