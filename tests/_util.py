"""
Shared helpers for the test suite.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable, Coroutine, List, Optional, Sequence, Tuple, TypeVar

from twisted.internet import protocol
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

#: Listen here in tests: loopback only, a free port.
LOOPBACK = "tcp:0:interface=127.0.0.1"

#: The checkout's root (examples/, benchmarks/ live there).
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_T = TypeVar("_T")


def as_deferred(f: Callable[..., Coroutine[Any, Any, _T]]) -> Callable[..., Deferred[_T]]:
    """
    Decorate an C{async def} test method so trial waits for it.
    """

    def wrapper(*args: Any, **kwargs: Any) -> Deferred[_T]:
        return Deferred.fromCoroutine(f(*args, **kwargs))

    wrapper.__name__ = f.__name__
    wrapper.__doc__ = f.__doc__
    return wrapper


def sleep(seconds: float, reactor: Any = None) -> Deferred[None]:
    """
    A Deferred firing after C{seconds}.
    """
    if reactor is None:
        from twisted.internet import reactor as global_reactor

        reactor = global_reactor
    from twisted.internet.task import deferLater

    return deferLater(reactor, seconds, lambda: None)


async def eventually(
    condition: Callable[[], bool], timeout: float = 10.0, interval: float = 0.01
) -> None:
    """
    Wait until C{condition()} is true, failing the test after C{timeout}.
    """
    waited = 0.0
    while not condition():
        if waited >= timeout:
            raise AssertionError(f"condition not met within {timeout} seconds")
        await sleep(interval)
        waited += interval


class _Collector(protocol.ProcessProtocol):
    def __init__(self) -> None:
        self.out: List[bytes] = []
        self.err: List[bytes] = []
        self.done: Deferred[Tuple[int, bytes, bytes]] = Deferred()
        self.started: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        self.started.callback(None)

    def outReceived(self, data: bytes) -> None:
        self.out.append(data)

    def errReceived(self, data: bytes) -> None:
        self.err.append(data)

    def processEnded(self, reason: Failure) -> None:
        code = getattr(reason.value, "exitCode", None)
        signal = getattr(reason.value, "signal", None)
        status = code if code is not None else -(signal or 1)
        self.done.callback((status, b"".join(self.out), b"".join(self.err)))


class ChildProcess:
    """
    A child Python process started with C{reactor.spawnProcess}.

    @ivar done: Fires with C{(exit_status, stdout, stderr)}; a signal gives
        a negative status.
    """

    def __init__(self, args: Sequence[str], env: Optional[dict] = None, reactor: Any = None, stdin: Optional[bytes] = None) -> None:
        if reactor is None:
            from twisted.internet import reactor as global_reactor

            reactor = global_reactor
        self._collector = _Collector()
        full_env = dict(os.environ)
        full_env["PYTHONPATH"] = os.pathsep.join(
            [ROOT] + [p for p in full_env.get("PYTHONPATH", "").split(os.pathsep) if p]
        )
        full_env["PYTHONUNBUFFERED"] = "1"
        if env:
            full_env.update(env)
        argv = [sys.executable, *args]
        self.transport = reactor.spawnProcess(self._collector, sys.executable, argv, env=full_env)
        if stdin is not None:
            self.transport.write(stdin)
            self.transport.closeStdin()
        self.done = self._collector.done

    @property
    def pid(self) -> int:
        return self.transport.pid  # type: ignore[no-any-return]

    def output(self) -> bytes:
        """
        Stdout received so far.
        """
        return b"".join(self._collector.out)

    def lines(self) -> List[bytes]:
        """
        The complete lines of stdout received so far (without their line
        ends): the child is unbuffered, so a line may arrive in pieces.
        """
        return self.output().split(b"\n")[:-1]

    def errors(self) -> bytes:
        """
        Stderr received so far.
        """
        return b"".join(self._collector.err)

    def signal(self, name: str) -> None:
        """
        Send a signal (C{"KILL"}, C{"TERM"}, ...) if it still runs.
        """
        if self.transport.pid is not None:
            self.transport.signalProcess(name)

    async def finish(self, timeout: float = 60.0) -> Tuple[int, bytes, bytes]:
        """
        Wait for the process to end (killing it after C{timeout}).
        """
        from twisted.internet import reactor

        call = reactor.callLater(timeout, self.signal, "KILL")  # type: ignore[attr-defined]
        try:
            return await self.done
        finally:
            if call.active():
                call.cancel()


def python_child(code: str, *args: str, **kwargs: Any) -> ChildProcess:
    """
    Run C{code} (a Python script's text) in a child process with C{args}
    as C{sys.argv[1:]}.
    """
    return ChildProcess(["-c", code, *args], **kwargs)
