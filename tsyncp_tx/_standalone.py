"""
What the twistd plugin (L{tsyncp_tx.tap}) and the C{tsyncp} command
(L{tsyncp_tx._cli}) share: listening addresses, codecs by name, the
JSON-lines form of items, reading and writing JSON lines, progress lines,
and the loops that move items between channels and files.

Everything here is built on the public API (L{tsyncp_tx.mpsc},
L{tsyncp_tx.broadcast}, L{tsyncp_tx.barrier}, L{tsyncp_tx.codecs}).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import os
import queue
import re
import stat
import threading
from typing import IO, Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.endpoints import SSL4ServerEndpoint, serverFromString
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.python.failure import Failure

from ._address import DESCRIPTION_TYPES, check_port, server_endpoint
from ._codecs import CODECS_BY_NAME
from .errors import ChannelClosed, ConnectionClosed, DecodeError

__all__ = [
    "CODEC_NAMES",
    "InputError",
    "LineFormat",
    "LineReader",
    "LineWriter",
    "PeerCount",
    "Progress",
    "connect_address",
    "describe_listening",
    "listen_endpoint",
    "make_codec",
    "pump_lines_to_sender",
    "pump_receiver_to_lines",
    "relay_raw",
]

#: The codec names C{--codec} accepts.
CODEC_NAMES: Tuple[str, ...] = tuple(sorted(CODECS_BY_NAME))

#: Interfaces used when a TCP or SSL description names none.
_LOOPBACK_V4 = "127.0.0.1"
_LOOPBACK_V6 = "::1"

# Addresses


def _split_description(text: str) -> List[str]:
    """
    Split an endpoint description at its unescaped colons, keeping escapes
    (as Twisted's parser reads them: a backslash escapes the next character).
    """
    segments: List[str] = []
    current: List[str] = []
    chars = iter(text)
    for char in chars:
        if char == "\\":
            current.append(char)
            current.append(next(chars, ""))
        elif char == ":":
            segments.append("".join(current))
            current = []
        else:
            current.append(char)
    segments.append("".join(current))
    return segments


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def _key(segment: str) -> Optional[str]:
    """
    The key of a C{key=value} segment (Twisted splits at the first
    unescaped C{=}), or C{None} for a positional one.
    """
    match = re.match(r"((?:[^\\=]|\\.)*)=", segment)
    return _unescape(match.group(1)) if match else None


def _value(segment: str) -> str:
    key_part = re.match(r"((?:[^\\=]|\\.)*)=", segment)
    assert key_part is not None
    return _unescape(segment[key_part.end():])


def _is_host_port(text: str) -> bool:
    """
    Whether C{text} is C{"host:port"} or C{"[v6]:port"} rather than an
    endpoint description (whose type is known or not).
    """
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host:
        return False
    if host.startswith("[") and host.endswith("]"):
        return True
    return ":" not in host and host.lower() not in DESCRIPTION_TYPES


def listen_endpoint(reactor: Any, text: str) -> IStreamServerEndpoint:
    """
    Turn a listening address given on a command line into a server endpoint.

    Accepted forms: a port number (C{"8000"}, on 127.0.0.1),
    C{"host:port"} (C{"0.0.0.0:8000"} for every interface), or any Twisted
    server endpoint description (C{"tcp:8000"}, C{"unix:/run/t.sock"},
    C{"ssl:8443:privateKey=key.pem:certKey=cert.pem"}).  A C{tcp:},
    C{tcp6:} or C{ssl:} description without C{interface=} listens on the
    loopback interface only: exposing a port to the network must be asked
    for (C{interface=0.0.0.0}).

    An C{ssl:} description may also say C{clientCA=PATH} (a PEM file, or a
    directory of C{*.pem} files): clients must then present a certificate
    signed by one of those CAs (mutual TLS).

    @param reactor: The reactor the endpoint will use.
    @param text: The address.
    @return: The endpoint (not listening yet).
    @raise ValueError: If the address cannot be used; the message says why.
    """
    text = text.strip()
    if not text:
        raise ValueError("empty address")
    if text.isdigit():
        return server_endpoint(reactor, _port(text))  # on 127.0.0.1
    if _is_host_port(text):
        return server_endpoint(reactor, text)
    segments = _split_description(text)
    kind = segments[0].lower()
    keys = {_key(s) for s in segments[1:]}
    if kind in ("tcp", "tcp6", "ssl") and "interface" not in keys:
        loopback = _LOOPBACK_V6.replace(":", "\\:") if kind == "tcp6" else _LOOPBACK_V4
        segments.append(f"interface={loopback}")
    if kind == "ssl" and "clientCA" in keys:
        return _mutual_tls_endpoint(reactor, segments)
    try:
        return serverFromString(reactor, ":".join(segments))
    except Exception as e:  # Twisted raises ValueError, KeyError, OSError...
        raise ValueError(_reason(e)) from e


def _port(text: str) -> int:
    return check_port(int(text), text)


def _reason(error: BaseException) -> str:
    if isinstance(error, KeyError):
        return f"unknown endpoint type {error.args[0]!r}" if error.args else "unknown endpoint type"
    if isinstance(error, OSError) and error.filename:
        return f"{error.strerror}: {error.filename}"
    text = str(error).strip() or type(error).__name__
    return " ".join(text.split())


def _read_certificates(path: str) -> List[Any]:
    """
    Every certificate in a PEM file, or in the C{*.pem} files of a directory.
    """
    from twisted.internet.ssl import Certificate

    if os.path.isdir(path):
        files = sorted(
            os.path.join(path, name) for name in os.listdir(path) if name.endswith(".pem")
        )
    else:
        files = [path]
    found = []
    for name in files:
        with open(name, "rb") as f:
            data = f.read()
        for block in re.findall(
            rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", data, re.DOTALL
        ):
            found.append(Certificate.loadPEM(block))
    if not found:
        raise ValueError(f"no PEM certificate found in {path}")
    return found


def _mutual_tls_endpoint(reactor: Any, segments: List[str]) -> IStreamServerEndpoint:
    # Twisted's "ssl:" parser cannot require client certificates, so an
    # "ssl:" description with clientCA= is built here with the same
    # defaults (privateKey=server.pem, certKey=privateKey).
    from twisted.internet.ssl import CertificateOptions, PrivateCertificate, trustRootFromCertificates

    positional = [s for s in segments[1:] if _key(s) is None]
    options: Dict[str, str] = {}
    for segment in segments[1:]:
        key = _key(segment)
        if key is not None:
            options[key] = _value(segment)
    allowed = {"interface", "backlog", "privateKey", "certKey", "clientCA", "extraCertChain"}
    unknown = sorted(set(options) - allowed)
    if len(positional) != 1 or unknown:
        problem = (
            f"unsupported option(s) {', '.join(unknown)} with clientCA="
            if unknown
            else "expected ssl:PORT:privateKey=...:certKey=...:clientCA=..."
        )
        raise ValueError(problem)
    try:
        port = _port(_unescape(positional[0]))
        key_path = options.get("privateKey", "server.pem")
        cert_path = options.get("certKey", key_path)
        with open(cert_path, "rb") as f:
            cert_pem = f.read()
        with open(key_path, "rb") as f:
            key_pem = f.read()
        identity = PrivateCertificate.loadPEM(cert_pem + b"\n" + key_pem)
        chain = (
            [c.original for c in _read_certificates(options["extraCertChain"])]
            if "extraCertChain" in options
            else None
        )
        authorities = _read_certificates(options["clientCA"])
        context = CertificateOptions(
            privateKey=identity.privateKey.original,
            certificate=identity.original,
            extraCertChain=chain,
            trustRoot=trustRootFromCertificates(authorities),
        )
        return SSL4ServerEndpoint(
            reactor,
            port,
            context,
            backlog=int(options.get("backlog", "50")),
            interface=options.get("interface", _LOOPBACK_V4),
        )
    except Exception as e:
        raise ValueError(_reason(e)) from e


def connect_address(text: str) -> Union[int, str]:
    """
    Turn an address to connect to, given on a command line, into what the
    channel constructors accept: a bare port number means 127.0.0.1;
    C{"host:port"} and client endpoint descriptions (C{"unix:/path"},
    C{"tls:host:port:trustRoots=DIR"}) pass through.

    @param text: The address.
    @return: A port C{int} or the text.
    @raise ValueError: If C{text} is empty.
    """
    text = text.strip()
    if not text:
        raise ValueError("empty address")
    if text.isdigit():
        return _port(text)
    return text


def describe_listening(address: Any) -> str:
    """
    Render a channel's C{local_address} for humans.

    @param address: C{(host, port)} or a UNIX socket path.
    @return: C{"host:port"}, C{"[v6]:port"} or the path.
    """
    if isinstance(address, tuple) and len(address) == 2:
        host, port = address
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(address)


# Codecs and the JSON-lines form of items


def make_codec(name: str) -> Any:
    """
    A new codec from its command-line name.

    @param name: One of L{CODEC_NAMES}.
    @return: The codec.
    @raise ValueError: For an unknown name.
    """
    try:
        factory = CODECS_BY_NAME[name]
    except KeyError:
        raise ValueError(
            f"unknown codec {name!r} (choose from {', '.join(CODEC_NAMES)})"
        ) from None
    return factory()


class InputError(Exception):
    """
    A line of input is not a valid item.
    """


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def _jsonable(obj: Any) -> Any:
    """
    A JSON-compatible copy of an item some codec (CBOR) decoded: bytes
    become base64 strings, sets lists, other keys and values their text.
    """
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(obj)).decode("ascii")
    if isinstance(obj, dict):
        return {
            k if isinstance(k, str) else str(_jsonable(k)): _jsonable(v) for k, v in obj.items()
        }
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    isoformat = getattr(obj, "isoformat", None)
    return isoformat() if callable(isoformat) else str(obj)


class LineFormat:
    """
    The JSON-lines form of items: one compact JSON value per line, UTF-8.
    With the C{raw} codec an item (bytes) is written as a JSON string
    holding its base64 encoding.

    @ivar raw: Whether items are raw bytes.
    """

    def __init__(self, codec_name: str) -> None:
        """
        @param codec_name: The channel's codec name (see L{CODEC_NAMES}).
        """
        self.raw = codec_name == "raw"

    def dumps(self, item: Any) -> bytes:
        """
        One item as a line, without its newline.

        @param item: A received item.
        @return: Its JSON text, UTF-8 encoded.
        """
        if self.raw:
            return b'"' + base64.b64encode(bytes(item)) + b'"'
        try:
            return _dumps(item).encode("utf-8")
        except (TypeError, ValueError):
            return _dumps(_jsonable(item)).encode("utf-8")

    def loads(self, line: Union[bytes, str], where: str = "item") -> Any:
        """
        One line (or command-line argument) as an item to send.

        @param line: The JSON text.
        @param where: What to call it in an error message (C{"line 3"}).
        @return: The item.
        @raise InputError: If it is not valid JSON (for C{raw}: not a JSON
            string holding base64).
        """
        try:
            value = json.loads(line, parse_constant=_refuse_constant)
        except (ValueError, RecursionError) as e:
            text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
            shown = text if len(text) <= 40 else text[:40] + "..."
            raise InputError(f"{where} is not valid JSON ({e}): {shown!r}") from None
        if not self.raw:
            return value
        if not isinstance(value, str):
            raise InputError(f"{where}: the raw codec needs a JSON string of base64, got {type(value).__name__}")
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as e:
            raise InputError(f"{where}: not valid base64 ({e})") from None


# Files


def _is_regular(fd: int) -> bool:
    try:
        return stat.S_ISREG(os.fstat(fd).st_mode)
    except OSError:
        return False


class LineWriter:
    """
    Appends JSON lines to a file (never truncating it) or to standard
    output, one flush per batch, optionally C{fsync}ed.

    @ivar path: The output path, C{"-"} for standard output.
    @ivar written: The number of items written.
    """

    def __init__(self, path: str, fmt: LineFormat, fsync: bool = False) -> None:
        """
        Open the output.

        @param path: A file path (created if needed, appended to) or C{"-"}.
        @param fmt: How items become lines.
        @param fsync: Make each batch durable (C{os.fsync}) before returning.
        @raise OSError: If the file cannot be opened.
        """
        self.path = path
        self._fmt = fmt
        self.written = 0
        self.repaired = False
        if path == "-":
            # The real standard output: twistd replaces sys.stdout.
            self._file: IO[bytes] = open(1, "wb", closefd=False)
        else:
            self._file = open(path, "ab")
            self._repair_partial_line()
        self._fsync = fsync and _is_regular(self._file.fileno())

    def _repair_partial_line(self) -> None:
        # A previous run killed mid-write may have left a line without its
        # newline; start on a fresh line rather than glue two items.
        size = os.fstat(self._file.fileno()).st_size
        if not size:
            return
        with open(self.path, "rb") as f:
            f.seek(size - 1)
            last = f.read(1)
        if last != b"\n":
            self._file.write(b"\n")
            self._file.flush()
            self.repaired = True

    def write(self, items: Sequence[Any]) -> None:
        """
        Write a batch, one line per item, then flush (and C{fsync}).

        @param items: The items.
        @raise OSError: On a write error (disk full...).
        """
        dumps = self._fmt.dumps
        self._file.write(b"".join([dumps(item) + b"\n" for item in items]))
        self._file.flush()
        if self._fsync:
            os.fsync(self._file.fileno())
        self.written += len(items)

    def close(self) -> None:
        """
        Flush and close the file (standard output stays open).
        """
        try:
            self._file.flush()
            if self._fsync:
                os.fsync(self._file.fileno())
        finally:
            self._file.close()


class _ThreadedReads:
    """
    Reads a file descriptor in a daemon thread, one chunk per L{read} call,
    so a pipe or terminal never blocks the reactor and at most one chunk is
    read ahead.  The thread is a daemon: a read blocked on a terminal does
    not keep the process alive.
    """

    def __init__(self, reactor: Any, fd: int, size: int = 65536) -> None:
        self._reactor = reactor
        self._fd = fd
        self._size = size
        self._requests: "queue.SimpleQueue[bool]" = queue.SimpleQueue()
        self._thread: Optional[threading.Thread] = None
        self._waiting: Optional[Deferred[bytes]] = None
        self._reading = False  # a read request is with the thread
        # What the thread read for a call that was cancelled meanwhile:
        # the next call's, so that cancelling loses no input.
        self._ahead: Optional[Tuple[bytes, Optional[BaseException]]] = None

    def read(self) -> Deferred[bytes]:
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            data, error = ahead
            return fail(error) if error is not None else succeed(data)
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="tsyncp-input", daemon=True)
            self._thread.start()
        d: Deferred[bytes] = Deferred(self._cancel)
        self._waiting = d
        if not self._reading:
            self._reading = True
            self._requests.put(True)
        return d

    def _cancel(self, d: Deferred[bytes]) -> None:
        if self._waiting is d:
            self._waiting = None

    def stop(self) -> None:
        if self._thread is not None:
            self._requests.put(False)

    def _run(self) -> None:
        while self._requests.get():
            try:
                data = os.read(self._fd, self._size)
            except OSError as e:
                self._reactor.callFromThread(self._deliver, b"", e)
                return
            self._reactor.callFromThread(self._deliver, data, None)
            if not data:
                return

    def _deliver(self, data: bytes, error: Optional[BaseException]) -> None:
        self._reading = False
        d, self._waiting = self._waiting, None
        if d is None:  # cancelled meanwhile
            self._ahead = (data, error)
            return
        if error is not None:
            d.errback(Failure(error))
        else:
            d.callback(data)


#: The longest input line accepted (a maximal frame, base64-encoded).
MAX_LINE = 12 * 1024 * 1024


class LineReader:
    """
    Reads JSON lines from a file or standard input without blocking the
    reactor, a chunk at a time.  Blank lines are skipped.

    @ivar name: The input's name for error messages.
    @ivar lines: Lines read so far.
    """

    def __init__(self, reactor: Any, path: str, fmt: LineFormat) -> None:
        """
        Open the input.

        @param reactor: The reactor.
        @param path: A file path or C{"-"} for standard input.
        @param fmt: How lines become items.
        @raise OSError: If the file cannot be opened.
        """
        self.name = "stdin" if path == "-" else path
        self._fmt = fmt
        self._fd = 0 if path == "-" else os.open(path, os.O_RDONLY)
        self._owned = path != "-"
        self._reads = _ThreadedReads(reactor, self._fd)
        self._rest = b""
        self._eof = False
        self._error: Optional[InputError] = None
        self.lines = 0

    async def read(self) -> List[Any]:
        """
        The items of the next lines available.

        @return: A non-empty list of items, or an empty list at the end of
            the input.
        @raise InputError: For a line that is not a valid item.
        @raise OSError: If reading fails.
        """
        if self._error is not None:
            raise self._error
        while True:
            if self._eof:
                if not self._rest:
                    return []
                last, self._rest = self._rest, b""
                items = self._parse([last])
                if items:
                    return items
                continue
            chunk = await self._reads.read()
            if not chunk:
                self._eof = True
                continue
            data = self._rest + chunk
            cut = data.rfind(b"\n")
            if cut < 0:
                self._rest = data
                if len(data) > MAX_LINE:
                    raise InputError(f"{self.name} line {self.lines + 1} is longer than {MAX_LINE} bytes")
                continue
            self._rest = data[cut + 1:]
            items = self._parse(data[:cut].split(b"\n"))
            if items:
                return items

    def _parse(self, lines: List[bytes]) -> List[Any]:
        # The items before a bad line are returned first; the error is
        # raised by the next call, so they are not lost with it.
        items = []
        loads = self._fmt.loads
        for line in lines:
            self.lines += 1
            if line.strip():
                try:
                    items.append(loads(line, f"{self.name} line {self.lines}"))
                except InputError as e:
                    if not items:
                        raise
                    self._error = e
                    break
        return items

    def close(self) -> None:
        """
        Stop reading; close the file (standard input stays open).
        """
        self._reads.stop()
        if self._owned:
            self._owned = False
            os.close(self._fd)


# Progress


class Progress:
    """
    A progress line (C{"\\rsent 12000 items (5000/s)"}) on a terminal,
    shown only for transfers lasting over a second and only when the
    stream is a terminal.

    @ivar count: Items counted so far.
    """

    def __init__(self, reactor: Any, stream: Optional[IO[str]], verb: str, delay: float = 1.0, interval: float = 0.5) -> None:
        """
        @param reactor: The reactor (for timing).
        @param stream: Where to write (usually C{sys.stderr}); nothing is
            written unless C{stream.isatty()}.
        @param verb: C{"sent"} or C{"received"}.
        @param delay: Seconds before the first line.
        @param interval: Seconds between updates.
        """
        self.count = 0
        self._reactor = reactor
        self._stream = stream
        self._verb = verb
        self._interval = interval
        self._shown = False
        self._start = reactor.seconds()
        self._call: Any = None
        isatty = getattr(stream, "isatty", None)
        if stream is not None and callable(isatty) and isatty():
            self._call = reactor.callLater(delay, self._tick)

    def add(self, n: int) -> None:
        """
        Count C{n} more items.

        @param n: How many.
        """
        self.count += n

    def _line(self) -> str:
        elapsed = max(self._reactor.seconds() - self._start, 1e-9)
        return f"\r{self._verb} {self.count} items ({self.count / elapsed:.0f}/s)"

    def _tick(self) -> None:
        assert self._stream is not None
        self._stream.write(self._line())
        self._stream.flush()
        self._shown = True
        self._call = self._reactor.callLater(self._interval, self._tick)

    def finish(self) -> None:
        """
        Stop updating; end a line that was shown with its final figures.
        """
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        if self._shown and self._stream is not None:
            self._stream.write(self._line() + "\n")
            self._stream.flush()
            self._shown = False


# Peers


class PeerCount:
    """
    Lets a loop wait until a multi-peer channel has enough peers connected.
    Pass L{joined} as the channel's C{on_accept}, then L{attach} the channel.
    """

    def __init__(self) -> None:
        self._view: Any = None
        self._waiting: List[Tuple[int, Deferred[None]]] = []

    def attach(self, view: Any) -> None:
        """
        @param view: A multi-peer channel (its C{addresses} are its peers).
        """
        self._view = view

    def joined(self, address: Any) -> None:
        """
        The C{on_accept} hook.

        @param address: The new peer's address.
        """
        if self._view is None:
            return
        ready = [w for w in self._waiting if len(self._view.addresses) >= w[0]]
        for entry in ready:
            self._waiting.remove(entry)
            entry[1].callback(None)

    def at_least(self, n: int) -> Deferred[None]:
        """
        Wait until at least C{n} peers are connected.

        @param n: How many.
        @return: A Deferred firing then (at once if they already are);
            cancellable.
        """
        assert self._view is not None
        def cancel(_: Deferred[None]) -> None:
            if entry in self._waiting:
                self._waiting.remove(entry)

        d: Deferred[None] = Deferred(cancel)
        entry = (n, d)
        if len(self._view.addresses) >= n:
            d.callback(None)
        else:
            self._waiting.append(entry)
        return d


# Loops


async def pump_receiver_to_lines(
    receiver: Any,
    writer: LineWriter,
    count: Optional[int] = None,
    progress: Optional[Progress] = None,
) -> int:
    """
    Write every item received as a line, a batch (C{recv_many}) at a
    time, until C{count} items were written or the channel ends.

    @param receiver: A receiving channel.
    @param writer: Where the lines go.
    @param count: Stop after this many items.
    @param progress: Counts the items.
    @return: The number of items written.
    @raise ConnectionClosed: If a single-peer channel's connection was
        lost with an error (a clean close ends the loop normally).
    """
    done = 0
    while count is None or done < count:
        try:
            items = await receiver.recv_many(None if count is None else count - done)
        except ChannelClosed:
            break
        except ConnectionClosed as e:
            if e.reason is not None:
                raise
            break
        writer.write(items)
        done += len(items)
        if progress is not None:
            progress.add(len(items))
    return done


async def pump_lines_to_sender(
    reader: LineReader,
    sender: Any,
    peers: Optional[PeerCount] = None,
    progress: Optional[Progress] = None,
    on_wait: Optional[Callable[[], Any]] = None,
) -> int:
    """
    Send the item of every input line, in order, each C{send()} awaited so
    a slow peer slows the reading down.

    @param reader: The input.
    @param sender: A sending channel.
    @param peers: For a multi-peer sender: wait for a peer whenever none is
        connected, so no item goes to nobody.
    @param progress: Counts the items.
    @param on_wait: Called before waiting for a peer.
    @return: The number of items sent.
    """
    sent = 0
    while True:
        items = await reader.read()
        if not items:
            return sent
        for item in items:
            if peers is not None and not sender.addresses:
                if on_wait is not None:
                    on_wait()
                await peers.at_least(1)
            await sender.send(item)
            sent += 1
        if progress is not None:
            progress.add(len(items))


async def relay_raw(
    receiver: Any, sender: Any, peers: PeerCount, on_wait: Optional[Callable[[], Any]] = None
) -> int:
    """
    Forward every payload received to every peer of C{sender}, bytes
    untouched.  Each batch's sends are awaited before more is received, so
    a slow receiver fills the receive queue, which pauses reading, which
    pushes back on the senders: backpressure end to end.  While no peer is
    connected, nothing more is received.

    @param receiver: An mpsc receiver.
    @param sender: A broadcast sender.
    @param peers: Tracks C{sender}'s peers.
    @param on_wait: Called before waiting for a peer.
    @return: The number of payloads forwarded, once C{receiver} is closed.
    """
    forwarded = 0
    while True:
        try:
            batch = await receiver.recv_many(raw=True)
        except (ChannelClosed, ConnectionClosed):
            return forwarded
        for payload in batch:
            while not sender.addresses:
                if on_wait is not None:
                    on_wait()
                await peers.at_least(1)
            await sender.send(payload, raw=True)
        forwarded += len(batch)


def decode_error_message(error: DecodeError) -> str:
    """
    A one-line description of an undecodable payload.

    @param error: The error.
    @return: The message.
    """
    return " ".join(str(error).split())
