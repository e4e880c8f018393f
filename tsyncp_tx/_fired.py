"""
L{fired} and L{fired_none}: the already-fired Deferreds of the per-item
paths (a send the transport took at once, a C{recv()} with an item
waiting), made at a fraction of C{succeed()}'s cost and, for C{None},
awaited at a fraction of the cost too.

C{await} on a Deferred runs a Python generator, and C{succeed()} runs
C{Deferred.__init__}: together most of the cost of a small C{await
tx.send(item)}.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable, Generator, TypeVar

from twisted.internet.defer import Deferred

__all__ = ["fired", "fired_none"]

_T = TypeVar("_T")


class _Fired(Deferred[Any]):
    """
    A C{Deferred} that has fired and has no callbacks, made without
    C{Deferred.__init__}: its state lives in class attributes, its result
    in the instance.

    The first call that could change its state (adding callbacks, pausing)
    first turns it into a plain C{Deferred} in the same state, so it behaves
    as C{succeed(result)} in every respect.
    """

    called = True
    _canceller = None
    # Never appended to: every method that would append turns the instance
    # into a plain Deferred with its own list first.
    _callbacks: Any = ()

    def __await__(self) -> Generator[Any, None, Any]:
        # Unchanged, or it would be a plain Deferred by now: the result is
        # final, so await returns it without Deferred.__iter__'s checks.
        return self.result
        yield  # makes this a generator; never reached

    def _become_plain(self) -> None:
        result = self.result
        self.__class__ = Deferred  # type: ignore[assignment]
        self.called = True
        self.result = result
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


class _FiredNone(_Fired):
    """
    A C{_Fired} whose result is C{None}: C{await} gets it from an empty
    iterator, in C, instead of running C{Deferred.__iter__}'s generator.
    """

    result = None
    __await__ = ().__iter__  # type: ignore[assignment]


_new = object.__new__

#: C{fired_none()} returns a Deferred that has already fired with C{None}.
#: A C{partial} rather than a function: calling it runs no Python frame, a
#: saving on every send the transport takes at once.
fired_none: Callable[[], Deferred[None]] = partial(_new, _FiredNone)


def fired(result: _T) -> Deferred[_T]:
    """
    @param result: The result; not a C{Deferred} or a C{Failure}.
    @return: A Deferred that has already fired with C{result}.
    """
    d = _new(_Fired)
    d.result = result
    return d  # type: ignore[no-any-return]
