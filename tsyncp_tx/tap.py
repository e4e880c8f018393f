"""
The C{twistd tsyncp} plugin: standalone endpoints built from the public API::

    twistd -n tsyncp barrier --listen tcp:8000 --parties 3
    twistd -n tsyncp sink --listen tcp:8001 --output items.jsonl --fsync
    twistd -n tsyncp source --listen tcp:8002 --input items.jsonl --receivers 2
    twistd -n tsyncp relay --listen-in tcp:8003 --listen-out tcp:8004

Every listening address is a Twisted server endpoint description
(C{tcp:}, C{unix:}, C{ssl:}...), a port number or C{host:port}; C{tcp:}
and C{ssl:} descriptions without C{interface=} listen on 127.0.0.1 only.
See C{docs/cli.md}.
"""

from __future__ import annotations

import atexit
import os
import sys
from typing import Any, Callable, List, Optional

from twisted.application.service import IService, Service
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.failure import Failure

from . import barrier, broadcast, mpsc
from ._core import default_reactor
from ._standalone import (
    CODEC_NAMES,
    InputError,
    LineFormat,
    LineReader,
    LineWriter,
    PeerCount,
    decode_error_message,
    describe_listening,
    listen_endpoint,
    make_codec,
    pump_lines_to_sender,
    pump_receiver_to_lines,
    relay_raw,
)
from .codecs import RawCodec
from .errors import DecodeError, TsyncpError

__all__ = [
    "BarrierService",
    "Options",
    "RelayService",
    "SinkService",
    "SourceService",
    "makeService",
]

_log = Logger(namespace="tsyncp")


def _describe_failure(failure: Failure) -> str:
    text = failure.getErrorMessage() or getattr(failure.type, "__name__", "error")
    return " ".join(text.split())


def _now(d: Deferred[Any]) -> List[Any]:
    """
    The result of C{d} if it already has one (a one-item list), else C{[]};
    C{d} keeps its result.
    """
    box: List[Any] = []

    def grab(result: Any) -> Any:
        box.append(result)
        return result

    d.addBoth(grab)
    return box


def _startup_failure(message: str) -> SystemExit:
    """
    The exception ending twistd at start-up with C{message}: printed through
    the log (twistd redirects C{sys.stderr} there) and, when the log goes
    elsewhere, on the real standard error too, so the terminal shows it.
    """
    real = sys.__stderr__
    if real is not None and sys.stderr is not real:
        real.write(message + "\n")
        real.flush()
    return SystemExit(message)


class _StandaloneService(Service):
    """
    Common life cycle: bind (and open files) in C{privilegedStartService},
    so that a port in use or a missing file ends C{twistd} at once with a
    one-line message; run the loop in C{startService}; close everything in
    C{stopService} (SIGTERM).

    @ivar command: The subcommand's name, for messages.
    @ivar log: This service's logger.
    """

    command = "?"
    log = _log
    #: Seconds C{stopService} waits for peers to take what was sent.
    close_grace = 10.0

    def __init__(self, reactor: Any = None, on_fatal: Optional[Callable[[], Any]] = None) -> None:
        """
        @param reactor: The reactor (default: the global one).
        @param on_fatal: Called when the service cannot go on (a failed
            write, a lost listening port): C{twistd} passes C{reactor.stop}.
        """
        self.reactor = default_reactor(reactor)
        self._on_fatal = on_fatal
        self._loop: Optional[Deferred[Any]] = None
        self._channels: List[Any] = []
        self._opened = False

    def _listen(self, d: Deferred[Any], description: str) -> Deferred[Any]:
        """
        Take a constructor's Deferred: fail now if it already failed;
        record the channel for closing.
        """
        result = _now(d)
        if result and isinstance(result[0], Failure):
            d.addErrback(lambda _: None)
            raise _startup_failure(
                f"tsyncp {self.command}: cannot listen on {description}: "
                f"{_describe_failure(result[0])}"
            )
        return d.addCallback(self._keep)

    def _keep(self, channel: Any) -> Any:
        self._channels.append(channel)
        return channel

    def privilegedStartService(self) -> None:
        """
        Listen and open files (before twistd drops privileges).

        @raise SystemExit: With a one-line message if that fails.
        """
        if not self._opened:
            self._opened = True
            self._open()
        super().privilegedStartService()

    def _open(self) -> None:
        raise NotImplementedError()

    def startService(self) -> None:
        """
        Start serving.
        """
        if not self._opened:
            self._opened = True
            self._open()
        super().startService()
        self._loop = Deferred.fromCoroutine(self._run())
        self._loop.addErrback(self._failed)

    async def _run(self) -> None:
        raise NotImplementedError()

    def _failed(self, failure: Failure) -> None:
        if not self.running:
            return
        if failure.check(TsyncpError, OSError, InputError):
            self.log.error(
                "tsyncp {command}: {error}", command=self.command, error=_describe_failure(failure)
            )
        else:
            self.log.failure("tsyncp {command} failed", failure, command=self.command)
        if self._on_fatal is not None:
            self._on_fatal()

    def stopService(self) -> Deferred[None]:
        """
        Close every channel (flushing what was sent), wait for the loop to
        end, close files.

        @return: A Deferred firing once all is closed.
        """
        super().stopService()
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        await self._close_channels()
        if self._loop is not None and not self._loop.called:
            self._loop.cancel()
        self._close_files()

    async def _close_channels(self) -> None:
        await self._bounded(DeferredList([channel.close() for channel in self._channels], consumeErrors=True))

    async def _bounded(self, closing: Deferred[Any]) -> None:
        """
        Wait for C{closing}, at most L{close_grace} seconds: a peer that
        stopped reading must not keep a SIGTERM from ending the process.
        """
        timer = deferLater(self.reactor, self.close_grace, lambda: None)
        await DeferredList([closing, timer], fireOnOneCallback=True, consumeErrors=True)
        if closing.called:
            timer.cancel()
        else:
            self.log.warn(
                "tsyncp {command}: peers did not take everything sent within {grace} s; "
                "stopping anyway",
                command=self.command,
                grace=self.close_grace,
            )

    def _close_files(self) -> None:
        pass

    def _log_joined(self, role: str) -> Callable[[Any], None]:
        def joined(address: Any) -> None:
            self.log.info("{role} {peer} connected", role=role, peer=describe_listening(address))

        return joined


class BarrierService(_StandaloneService):
    """
    A reusable network barrier: releases its waiters each time C{parties}
    of them wait, logging each generation.
    """

    command = "barrier"

    def __init__(self, endpoint: Any, description: str, parties: int, **kwargs: Any) -> None:
        """
        @param endpoint: Where to listen (a server endpoint).
        @param description: The address as given, for messages.
        @param parties: Waiters per release.
        @param kwargs: See L{_StandaloneService.__init__}.
        """
        super().__init__(**kwargs)
        self.endpoint = endpoint
        self.description = description
        self.parties = parties
        self.barrier: Optional[barrier.Barrier] = None
        self.generations: List[List[Any]] = []

    def _open(self) -> None:
        self._ready = self._listen(
            barrier.barrier_on(
                self.endpoint,
                parties=self.parties,
                on_release=self._released,
                reactor=self.reactor,
            ),
            self.description,
        )

    def _released(self, generation: int, addresses: List[Any]) -> None:
        self.generations.append(addresses)
        self.log.info(
            "generation {generation}: released {count} waiter(s): {peers}",
            generation=generation,
            count=len(addresses),
            peers=", ".join(describe_listening(a) for a in addresses),
        )

    async def _run(self) -> None:
        self.barrier = await self._ready
        self.log.info(
            "barrier listening on {address}, releasing every {parties} waiter(s)",
            address=describe_listening(self.barrier.local_address),
            parties=self.parties,
        )


class SinkService(_StandaloneService):
    """
    An mpsc receiver appending every item as one JSON line to a file.
    """

    command = "sink"

    def __init__(
        self, endpoint: Any, description: str, codec: str, output: str, fsync: bool = False, **kwargs: Any
    ) -> None:
        """
        @param endpoint: Where to listen.
        @param description: The address as given, for messages.
        @param codec: The codec's name.
        @param output: A file path (appended to) or C{"-"}.
        @param fsync: C{fsync} each batch before reading more.
        @param kwargs: See L{_StandaloneService.__init__}.
        """
        super().__init__(**kwargs)
        self.endpoint = endpoint
        self.description = description
        self.codec = codec
        self.output = output
        self.fsync = fsync
        self.writer: Optional[LineWriter] = None
        self.receiver: Optional[mpsc.Receiver] = None
        self.bad_payloads = 0

    def _open(self) -> None:
        try:
            self.writer = LineWriter(self.output, LineFormat(self.codec), self.fsync)
        except OSError as e:
            raise _startup_failure(f"tsyncp sink: cannot open --output {self.output}: {e.strerror}")
        if self.writer.repaired:
            self.log.warn("{path} ended with a partial line; appending after it", path=self.output)
        self._ready = self._listen(
            mpsc.receiver_on(
                self.endpoint,
                codec=make_codec(self.codec),
                on_decode_error=self._bad_payload,
                on_accept=self._log_joined("sender"),
                reactor=self.reactor,
            ),
            self.description,
        )

    def _bad_payload(self, error: DecodeError) -> None:
        # Logged and skipped: the channel goes on with the next payload.
        self.bad_payloads += 1
        self.log.warn("skipping a payload: {error}", error=decode_error_message(error))

    async def _run(self) -> None:
        self.receiver = await self._ready
        assert self.writer is not None
        self.log.info(
            "sink listening on {address}, appending to {path}{fsync}",
            address=describe_listening(self.receiver.local_address),
            path=self.output,
            fsync=" (fsync per batch)" if self.fsync else "",
        )
        await pump_receiver_to_lines(self.receiver, self.writer)

    def _close_files(self) -> None:
        if self.writer is not None:
            writer, self.writer = self.writer, None
            writer.close()
            self.log.info(
                "sink stopped: {count} item(s) written to {path}", count=writer.written, path=self.output
            )


class SourceService(_StandaloneService):
    """
    A broadcast sender: waits for C{receivers} receivers, then sends the
    item of each input line, then closes and calls C{on_done}.
    """

    command = "source"

    def __init__(
        self,
        endpoint: Any,
        description: str,
        codec: str,
        input: str,
        receivers: int = 1,
        on_done: Optional[Callable[[], Any]] = None,
        **kwargs: Any,
    ) -> None:
        """
        @param endpoint: Where to listen.
        @param description: The address as given, for messages.
        @param codec: The codec's name.
        @param input: A file path or C{"-"}.
        @param receivers: Receivers to wait for before sending.
        @param on_done: Called after the last item was sent and flushed
            (C{twistd}: stop).
        @param kwargs: See L{_StandaloneService.__init__}.
        """
        super().__init__(**kwargs)
        self.endpoint = endpoint
        self.description = description
        self.codec = codec
        self.input = input
        self.receivers = receivers
        self._on_done = on_done
        self._peers = PeerCount()
        self.reader: Optional[LineReader] = None
        self.sender: Optional[broadcast.Sender] = None
        self.sent = 0

    def _open(self) -> None:
        try:
            self.reader = LineReader(self.reactor, self.input, LineFormat(self.codec))
        except OSError as e:
            raise _startup_failure(f"tsyncp source: cannot open --input {self.input}: {e.strerror}")
        joined = self._log_joined("receiver")

        def on_accept(address: Any) -> None:
            joined(address)
            self._peers.joined(address)

        self._ready = self._listen(
            broadcast.sender_on(
                self.endpoint,
                codec=make_codec(self.codec),
                on_accept=on_accept,
                reactor=self.reactor,
            ),
            self.description,
        )

    async def _run(self) -> None:
        sender = self.sender = await self._ready
        assert self.reader is not None
        self._peers.attach(sender)
        self.log.info(
            "source listening on {address}, waiting for {n} receiver(s)",
            address=describe_listening(sender.local_address),
            n=self.receivers,
        )
        await self._peers.at_least(self.receivers)
        self.log.info("sending the lines of {name}", name=self.reader.name)
        try:
            self.sent = await pump_lines_to_sender(
                self.reader, sender, self._peers, on_wait=self._no_receivers
            )
        finally:
            self.reader.close()
        await sender.close()
        self.log.info("source done: sent {count} item(s)", count=self.sent)
        if self._on_done is not None:
            self._on_done()

    def _no_receivers(self) -> None:
        self.log.warn("no receiver connected; waiting for one before sending more")

    def _close_files(self) -> None:
        if self.reader is not None:
            self.reader.close()


class RelayService(_StandaloneService):
    """
    Fan-in/fan-out: every payload an mpsc receiver gets is broadcast,
    undecoded, to every receiver connected to the other side.
    """

    command = "relay"

    def __init__(
        self,
        endpoint_in: Any,
        description_in: str,
        endpoint_out: Any,
        description_out: str,
        receivers: int = 1,
        **kwargs: Any,
    ) -> None:
        """
        @param endpoint_in: Where senders connect.
        @param description_in: That address as given.
        @param endpoint_out: Where receivers connect.
        @param description_out: That address as given.
        @param receivers: Receivers to wait for before relaying.
        @param kwargs: See L{_StandaloneService.__init__}.
        """
        super().__init__(**kwargs)
        self.endpoint_in = endpoint_in
        self.description_in = description_in
        self.endpoint_out = endpoint_out
        self.description_out = description_out
        self.receivers = receivers
        self._peers = PeerCount()
        self.receiver: Optional[mpsc.Receiver] = None
        self.sender: Optional[broadcast.Sender] = None
        self.forwarded = 0

    def _open(self) -> None:
        joined = self._log_joined("receiver")

        def on_accept(address: Any) -> None:
            joined(address)
            self._peers.joined(address)

        self._ready_out = self._listen(
            broadcast.sender_on(
                self.endpoint_out,
                codec=RawCodec(),
                on_accept=on_accept,
                reactor=self.reactor,
            ),
            self.description_out,
        )
        self._ready_in = self._listen(
            mpsc.receiver_on(
                self.endpoint_in,
                codec=RawCodec(),
                on_accept=self._log_joined("sender"),
                reactor=self.reactor,
            ),
            self.description_in,
        )

    async def _run(self) -> None:
        sender = self.sender = await self._ready_out
        receiver = self.receiver = await self._ready_in
        self._peers.attach(sender)
        self.log.info(
            "relay: senders connect to {inp}, receivers to {out}; waiting for {n} receiver(s)",
            inp=describe_listening(receiver.local_address),
            out=describe_listening(sender.local_address),
            n=self.receivers,
        )
        await self._peers.at_least(self.receivers)
        self.forwarded = await relay_raw(receiver, sender, self._peers, on_wait=self._no_receivers)

    def _no_receivers(self) -> None:
        self.log.warn("no receiver connected; holding items until one connects")

    async def _close_channels(self) -> None:
        # Stop taking items first, then flush what was already relayed.
        if self.receiver is not None:
            await self._bounded(self.receiver.close())
        await super()._close_channels()
        self.log.info("relay stopped: forwarded {count} item(s)", count=self.forwarded)


# Options


def _positive_int(options: usage.Options, name: str, minimum: int = 1) -> int:
    value = options[name]
    if value is None:
        raise usage.UsageError(f"--{name} is required")
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = minimum - 1
    if number < minimum:
        raise usage.UsageError(f"--{name} must be an integer >= {minimum}, not {value!r}")
    return number


def _endpoint(options: usage.Options, name: str) -> Any:
    value = options[name]
    if value is None:
        raise usage.UsageError(f"--{name} is required")
    from twisted.internet import reactor

    try:
        return listen_endpoint(reactor, value)
    except ValueError as e:
        raise usage.UsageError(f"--{name} {value!r}: {e}")


def _codec(options: usage.Options) -> str:
    name: str = options["codec"]
    if name not in CODEC_NAMES:
        raise usage.UsageError(f"--codec must be one of {', '.join(CODEC_NAMES)}, not {name!r}")
    return name


def _stop_reactor() -> None:
    from twisted.internet import reactor

    if reactor.running:  # type: ignore[attr-defined]
        reactor.stop()  # type: ignore[attr-defined]


def _fail_and_stop_reactor() -> None:
    # twistd gives a service no say in its exit status (it exits with 0
    # after reactor.stop()): exit with 1 once twistd has finished its own
    # shutdown (pid file removed, log closed), so that scripts and
    # supervisors (systemd's Restart=on-failure) see the failure.
    atexit.register(_exit_failed)
    _stop_reactor()


def _exit_failed() -> None:
    # os._exit skips the exit handlers registered before this one: do
    # what the standard ones would (flush logging handlers and streams).
    import logging

    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(1)


def _no_standard_stream_when_daemon(options: usage.Options, name: str) -> None:
    """
    Refuse C{--input -} / C{--output -} when twistd is going to daemonize:
    a daemon's standard streams are /dev/null.
    """
    server = getattr(getattr(options, "parent", None), "parent", None)
    if options[name] == "-" and server is not None and not server.get("nodaemon", True):
        raise usage.UsageError(
            f"--{name} - needs twistd -n: a daemon has no standard {name}"
        )


_LISTEN_HELP = "Where to listen: PORT, HOST:PORT or a server endpoint description (tcp:, unix:, ssl:...)."


class BarrierOptions(usage.Options):
    """
    C{twistd tsyncp barrier}.
    """

    synopsis = "--listen DESC --parties N"
    longdesc = (
        "A reusable network barrier: each time N waiters wait, all of them are "
        "released; every release (generation) is logged. Waiters are `tsyncp wait`, "
        "tsyncp_tx.barrier.waiter_to() or Rust tsyncp waiters."
    )
    optParameters = [
        ["listen", None, None, _LISTEN_HELP],
        ["parties", None, None, "Release each time this many waiters wait (>= 1)."],
    ]

    def postOptions(self) -> None:
        """
        Check the options.

        @raise usage.UsageError: Naming the bad option.
        """
        self["parties"] = _positive_int(self, "parties")
        self.endpoint = _endpoint(self, "listen")

    def make_service(self) -> IService:
        """
        @return: The service.
        """
        return BarrierService(self.endpoint, self["listen"], self["parties"], on_fatal=_fail_and_stop_reactor)


class SinkOptions(usage.Options):
    """
    C{twistd tsyncp sink}.
    """

    synopsis = "--listen DESC --output PATH|- [--codec json|cbor|raw] [--fsync]"
    longdesc = (
        "An mpsc receiver: every item any sender sends is appended to the output as "
        "one JSON line (raw codec: a JSON string of base64), flushed per batch. "
        "The file is opened for appending, never truncated."
    )
    optParameters = [
        ["listen", None, None, _LISTEN_HELP],
        ["output", None, None, "The file to append to, or - for standard output."],
        ["codec", None, "json", f"Payload codec: {', '.join(CODEC_NAMES)}."],
    ]
    optFlags = [["fsync", None, "fsync the file after each batch, before reading more."]]

    def postOptions(self) -> None:
        """
        Check the options.

        @raise usage.UsageError: Naming the bad option.
        """
        _codec(self)
        if not self["output"]:
            raise usage.UsageError("--output is required (a file path, or - for standard output)")
        _no_standard_stream_when_daemon(self, "output")
        self.endpoint = _endpoint(self, "listen")

    def make_service(self) -> IService:
        """
        @return: The service.
        """
        return SinkService(
            self.endpoint, self["listen"], self["codec"], self["output"], bool(self["fsync"]),
            on_fatal=_fail_and_stop_reactor,
        )


class SourceOptions(usage.Options):
    """
    C{twistd tsyncp source}.
    """

    synopsis = "--listen DESC --input PATH|- [--codec json|cbor|raw] [--receivers N]"
    longdesc = (
        "A broadcast sender: waits for N receivers, then sends the item of each "
        "JSON line of the input to every receiver, then closes and exits."
    )
    optParameters = [
        ["listen", None, None, _LISTEN_HELP],
        ["input", None, None, "The JSON-lines file to send, or - for standard input."],
        ["codec", None, "json", f"Payload codec: {', '.join(CODEC_NAMES)}."],
        ["receivers", None, "1", "Receivers to wait for before sending (>= 1)."],
    ]

    def postOptions(self) -> None:
        """
        Check the options.

        @raise usage.UsageError: Naming the bad option.
        """
        _codec(self)
        self["receivers"] = _positive_int(self, "receivers")
        if not self["input"]:
            raise usage.UsageError("--input is required (a file path, or - for standard input)")
        _no_standard_stream_when_daemon(self, "input")
        self.endpoint = _endpoint(self, "listen")

    def make_service(self) -> IService:
        """
        @return: The service.
        """
        return SourceService(
            self.endpoint, self["listen"], self["codec"], self["input"], self["receivers"],
            on_done=_stop_reactor, on_fatal=_fail_and_stop_reactor,
        )


class RelayOptions(usage.Options):
    """
    C{twistd tsyncp relay}.
    """

    synopsis = "--listen-in DESC --listen-out DESC [--receivers N]"
    longdesc = (
        "Fan-in/fan-out: senders connect to --listen-in (mpsc), receivers to "
        "--listen-out (broadcast); every item is forwarded to every receiver, bytes "
        "untouched, with backpressure from the slowest receiver back to the senders."
    )
    optParameters = [
        ["listen-in", None, None, "Where senders connect. " + _LISTEN_HELP],
        ["listen-out", None, None, "Where receivers connect. " + _LISTEN_HELP],
        ["receivers", None, "1", "Receivers to wait for before relaying (>= 1)."],
    ]

    def postOptions(self) -> None:
        """
        Check the options.

        @raise usage.UsageError: Naming the bad option.
        """
        self["receivers"] = _positive_int(self, "receivers")
        self.endpoint_in = _endpoint(self, "listen-in")
        self.endpoint_out = _endpoint(self, "listen-out")

    def make_service(self) -> IService:
        """
        @return: The service.
        """
        return RelayService(
            self.endpoint_in, self["listen-in"], self.endpoint_out, self["listen-out"],
            self["receivers"], on_fatal=_fail_and_stop_reactor,
        )


class Options(usage.Options):
    """
    C{twistd tsyncp}: choose a subcommand.
    """

    synopsis = ""
    longdesc = (
        "Standalone tsyncp endpoints. Run `twistd -n tsyncp SUBCOMMAND --help` for "
        "a subcommand's options; see docs/cli.md."
    )
    subCommands = [
        ["barrier", None, BarrierOptions, "A reusable network barrier."],
        ["sink", None, SinkOptions, "An mpsc receiver appending items to a JSON-lines file."],
        ["source", None, SourceOptions, "A broadcast sender of a JSON-lines file's items."],
        ["relay", None, RelayOptions, "Fan-in/fan-out: mpsc in, broadcast out, bytes untouched."],
    ]

    def getSynopsis(self) -> str:
        """
        The usage line: the subcommand's own, or the list of subcommands.

        @return: The synopsis.
        """
        base = super().getSynopsis().rstrip()
        if self.subCommand is None:
            return base + " {barrier|sink|source|relay} [options]"
        return base

    def postOptions(self) -> None:
        """
        Require a subcommand.

        @raise usage.UsageError: Without one.
        """
        if self.subCommand is None:
            raise usage.UsageError("a subcommand is required: barrier, sink, source or relay")


def makeService(options: Options) -> IService:
    """
    Build the chosen endpoint's service.

    @param options: The parsed options.
    @return: The service.
    """
    service: IService = options.subOptions.make_service()
    return service
