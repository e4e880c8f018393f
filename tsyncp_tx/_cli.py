"""
The C{tsyncp} command: one-shot sends, receives and barrier waits from
shells and scripts::

    tsyncp send localhost:8001 '{"job": 1}' '{"job": 2}'
    tsyncp recv localhost:8002 --count 10
    tsyncp recv 127.0.0.1:8003 --listen
    tsyncp wait localhost:8000
    tsyncp release 127.0.0.1:8000 --waiters 3

Exit status: 0 on success, 1 on an error (with a one-line message on
standard error), 2 on a usage error.  See C{docs/cli.md}.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Callable, Coroutine, Dict, List, Optional, Sequence

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.defer import TimeoutError as DeferredTimeoutError
from twisted.internet.error import CannotListenError, ConnectionDone
from twisted.python.failure import Failure

from . import __version__, barrier, broadcast, mpsc
from ._standalone import (
    CODEC_NAMES,
    InputError,
    LineFormat,
    LineReader,
    LineWriter,
    Progress,
    connect_address,
    decode_error_message,
    describe_listening,
    listen_endpoint,
    make_codec,
    pump_lines_to_sender,
    pump_receiver_to_lines,
)
from .errors import DecodeError, TsyncpError

__all__ = ["main"]

PROG = "tsyncp"


class CommandError(Exception):
    """
    A failure to report as C{tsyncp: error: <message>}, exit status 1.
    """


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, not {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text!r}")
    return value


def _count(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, not {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, not {value}")
        return value

    return parse


class _Parser(argparse.ArgumentParser):
    """
    The main parser, knowing its subcommands' parsers.
    """

    commands: Dict[str, argparse.ArgumentParser]


def build_parser() -> _Parser:
    """
    The command line's parser.

    @return: The parser.
    """
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("common options")
    group.add_argument(
        "--codec", choices=CODEC_NAMES, default="json",
        help="payload codec (default: json); items are JSON on the command line and "
        "in JSON lines, raw items a JSON string of base64; no effect on wait/release",
    )
    group.add_argument(
        "--timeout", type=_positive_float, metavar="SECONDS",
        help="give up after SECONDS (exit status 1); for recv without --count, stop "
        "receiving after SECONDS (exit status 0)",
    )
    group.add_argument(
        "--retry", type=_count(0), default=0, metavar="N",
        help="retry connecting (or binding) N more times before failing (default: 0)",
    )
    group.add_argument(
        "--retry-interval", type=_positive_float, default=0.2, metavar="SECONDS",
        help="seconds between retries (default: 0.2)",
    )
    group.add_argument(
        "-v", "--verbose", action="store_true", help="log connections and errors on standard error"
    )

    parser = _Parser(
        prog=PROG,
        description="Send, receive and wait on tsyncp channels from the shell.",
        epilog="ADDR to connect to: PORT (on 127.0.0.1), HOST:PORT or a client endpoint "
        "description (unix:/path, tls:HOST:PORT:trustRoots=DIR). ADDR to listen on "
        "(recv --listen, release): PORT, HOST:PORT or a server endpoint description "
        "(tcp:PORT, unix:/path, ssl:PORT:privateKey=...:certKey=...). "
        "Exit status: 0 success, 1 error, 2 usage error. See docs/cli.md.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=argparse.ArgumentParser
    )
    commands.required = True

    send = commands.add_parser(
        "send", parents=[common], help="send items to an mpsc receiver (a sink, a relay's input)",
        description="Send items to an mpsc receiver: the ITEM arguments, or, without "
        "any, one item per JSON line of standard input.",
    )
    send.add_argument("addr", metavar="ADDR", help="where the receiver listens")
    send.add_argument("items", metavar="ITEM", nargs="*", help="an item as JSON, e.g. '{\"job\": 1}'")

    recv = commands.add_parser(
        "recv", parents=[common], help="receive items and print them as JSON lines",
        description="Print received items, one JSON line each. By default connect to a "
        "broadcast sender (a source, a relay's output); with --listen, listen as an "
        "mpsc receiver that any number of senders connect to.",
    )
    recv.add_argument("addr", metavar="ADDR", help="where to connect (or, with --listen, listen)")
    recv.add_argument("--count", type=_count(1), metavar="N", help="exit after N items")
    recv.add_argument("--listen", action="store_true", help="listen as an mpsc receiver on ADDR")

    wait = commands.add_parser(
        "wait", parents=[common], help="wait at a barrier until it releases",
        description="Join a barrier and wait for its next release.",
    )
    wait.add_argument("addr", metavar="ADDR", help="where the barrier listens")

    release = commands.add_parser(
        "release", parents=[common], help="listen as a barrier; release once N waiters wait",
        description="Listen as a one-shot barrier: once N waiters wait, release them all and exit.",
    )
    release.add_argument("addr", metavar="ADDR", help="where to listen")
    release.add_argument("--waiters", type=_count(1), required=True, metavar="N", help="waiters to wait for")
    parser.commands = {"send": send, "recv": recv, "wait": wait, "release": release}
    return parser


def _retry(args: argparse.Namespace) -> Any:
    return (args.retry_interval, args.retry) if args.retry else None


async def _sleep(reactor: Any, seconds: float) -> None:
    from twisted.internet.task import deferLater

    await deferLater(reactor, seconds, lambda: None)


async def _listen(reactor: Any, args: argparse.Namespace, make: Callable[[Any], Deferred[Any]]) -> Any:
    """
    Listen on C{args.addr}, retrying as C{--retry} says (a port may still
    be held by a process that just exited).
    """
    attempt = 0
    while True:
        endpoint = listen_endpoint(reactor, args.addr)
        try:
            channel = await make(endpoint)
        except Exception as e:
            if isinstance(e, CancelledError) or attempt >= args.retry:
                raise
            attempt += 1
            await _sleep(reactor, args.retry_interval)
            continue
        sys.stderr.write(f"{PROG}: listening on {describe_listening(channel.local_address)}\n")
        sys.stderr.flush()
        return channel


def _is_tty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


def _warn_decode(error: DecodeError) -> None:
    sys.stderr.write(f"{PROG}: warning: skipping a payload: {decode_error_message(error)}\n")


def _lost(reasons: List[Failure]) -> Optional[str]:
    for reason in reasons:
        if not reason.check(ConnectionDone):
            return " ".join((reason.getErrorMessage() or "connection lost").split())
    return None


async def cmd_send(reactor: Any, args: argparse.Namespace, items: List[Any]) -> None:
    """
    C{tsyncp send}.
    """
    lost: List[Failure] = []
    closing: List[bool] = []

    def on_disconnect(address: Any, reason: Failure) -> None:
        # Before our close(), even a clean close means the receiver went
        # away (or refused us, as a TLS server does with plain TCP).
        if not closing and reason.check(ConnectionDone):
            reason = Failure(Exception("the receiver closed the connection"))
        lost.append(reason)

    sender = await mpsc.sender_to(
        connect_address(args.addr), codec=make_codec(args.codec), retry=_retry(args),
        on_disconnect=on_disconnect, reactor=reactor,
    )
    # No progress line while the user types the items on the terminal.
    progress = Progress(reactor, sys.stderr if items or not _is_tty(0) else None, "sent")
    try:
        if items:
            for item in items:
                await sender.send(item)
            progress.add(len(items))
        else:
            reader = LineReader(reactor, "-", LineFormat(args.codec))
            try:
                await pump_lines_to_sender(reader, sender, progress=progress)
            finally:
                reader.close()
    finally:
        progress.finish()
        closing.append(True)
        await sender.close()
    problem = _lost(lost)
    if problem is not None:
        raise CommandError(f"connection to {args.addr} lost: {problem}")


async def cmd_recv(reactor: Any, args: argparse.Namespace) -> None:
    """
    C{tsyncp recv}.
    """
    codec = make_codec(args.codec)
    receiver: Any
    if args.listen:
        receiver = await _listen(
            reactor, args,
            lambda endpoint: mpsc.receiver_on(
                endpoint, codec=codec, on_decode_error=_warn_decode, reactor=reactor
            ),
        )
    else:
        receiver = await broadcast.receiver_to(
            connect_address(args.addr), codec=codec, retry=_retry(args),
            on_decode_error=_warn_decode, reactor=reactor,
        )
    writer = LineWriter("-", LineFormat(args.codec))
    # Items printed on the terminal are progress enough.
    progress = Progress(reactor, None if _is_tty(1) else sys.stderr, "received")
    received = 0
    try:
        received = await pump_receiver_to_lines(receiver, writer, args.count, progress)
    except CancelledError:
        # Without --count, a timeout or Ctrl-C is how receiving ends.
        if args.count is not None:
            raise
        received = progress.count
    except BrokenPipeError:
        received = progress.count  # the reader (| head) has had enough
    finally:
        progress.finish()
        await receiver.close()
        try:
            writer.close()
        except BrokenPipeError:
            pass
    if args.count is not None and received < args.count:
        raise CommandError(f"the stream ended after {received} of {args.count} item(s)")


async def cmd_wait(reactor: Any, args: argparse.Namespace) -> None:
    """
    C{tsyncp wait}.
    """
    waiter = await barrier.waiter_to(connect_address(args.addr), retry=_retry(args), reactor=reactor)
    try:
        await waiter.wait()
    finally:
        await waiter.close()


async def cmd_release(reactor: Any, args: argparse.Namespace) -> None:
    """
    C{tsyncp release}.
    """
    released: Deferred[int] = Deferred()

    def on_release(generation: int, addresses: List[Any]) -> None:
        if not released.called:
            released.callback(len(addresses))

    channel = await _listen(
        reactor, args,
        lambda endpoint: barrier.barrier_on(
            endpoint, parties=args.waiters, on_release=on_release, reactor=reactor
        ),
    )
    try:
        await released
    finally:
        await channel.close()


def _message(failure: Failure, args: argparse.Namespace) -> str:
    if failure.check(DeferredTimeoutError):
        return f"timed out after {args.timeout:g} seconds"
    if failure.check(CancelledError):
        return "interrupted"
    error = failure.value
    if isinstance(error, CannotListenError):
        # As the plugin words it.
        return f"cannot listen on {args.addr}: " + " ".join(str(error).split())
    if isinstance(error, OSError) and error.strerror:
        text = f"{error.strerror}: {error.filename}" if error.filename else error.strerror
    elif isinstance(error, (TsyncpError, CommandError, InputError, ValueError)):
        text = str(error)
    else:
        text = f"{type(error).__name__}: {error}"
    return " ".join(text.split()) or type(error).__name__


async def _run(reactor: Any, args: argparse.Namespace, items: List[Any], result: Dict[str, int]) -> None:
    commands: Dict[str, Callable[[], Coroutine[Any, Any, None]]] = {
        "send": lambda: cmd_send(reactor, args, items),
        "recv": lambda: cmd_recv(reactor, args),
        "wait": lambda: cmd_wait(reactor, args),
        "release": lambda: cmd_release(reactor, args),
    }
    d = Deferred.fromCoroutine(commands[args.command]())
    if args.timeout is not None:
        d.addTimeout(args.timeout, reactor)

    def interrupted() -> Optional[Deferred[None]]:
        # Ctrl-C or SIGTERM: cancel the command, let it close its channel.
        if d.called:
            return None
        done: Deferred[None] = Deferred()

        def finished(outcome: Any) -> Any:
            done.callback(None)
            return outcome

        d.addBoth(finished)
        d.cancel()
        return done

    trigger = reactor.addSystemEventTrigger("before", "shutdown", interrupted)
    try:
        await d
    except Exception:
        sys.stderr.write(f"{PROG}: error: {_message(Failure(), args)}\n")
        result["code"] = 1
    else:
        result["code"] = 0
    finally:
        try:
            reactor.removeSystemEventTrigger(trigger)
        except (ValueError, KeyError):
            pass
    sys.stderr.flush()


def main(argv: Optional[Sequence[str]] = None) -> int:
    """
    Run the C{tsyncp} command.

    @param argv: The arguments (default: C{sys.argv[1:]}).
    @return: The exit status: 0 success, 1 error, 2 usage error.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 2
    items: List[Any] = []
    try:
        if args.command == "send":
            fmt = LineFormat(args.codec)
            items = [fmt.loads(text, f"item {n}") for n, text in enumerate(args.items, 1)]
        if args.command in ("release",) or (args.command == "recv" and args.listen):
            from twisted.internet import reactor as check_reactor

            listen_endpoint(check_reactor, args.addr)
        else:
            connect_address(args.addr)
    except InputError as e:
        return _usage_error(parser, args.command, f"argument ITEM: {e}")
    except ValueError as e:
        return _usage_error(parser, args.command, f"argument ADDR {args.addr!r}: {e}")
    if args.verbose:
        from twisted.logger import globalLogBeginner, textFileLogObserver

        globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)], redirectStandardIO=False)

    from twisted.internet import task

    result = {"code": 1}

    def start(reactor: Any) -> Deferred[None]:
        return Deferred.fromCoroutine(_run(reactor, args, items, result))

    try:
        task.react(start)
    except SystemExit:
        pass
    return result["code"]


def _usage_error(parser: _Parser, command: str, message: str) -> int:
    """
    Report a usage error the way argparse does: the subcommand's usage
    line, the message, exit status 2.
    """
    try:
        parser.commands[command].error(message)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 2
    return 2
