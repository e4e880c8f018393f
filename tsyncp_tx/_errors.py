"""
Exceptions raised by tsyncp_tx.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet.defer import CancelledError

from ._framing import FrameTooLarge, FramingError, TsyncpError

__all__ = [
    "ChannelClosed",
    "ConnectionClosed",
    "ConnectError",
    "DecodeError",
    "EncodeError",
    "FrameTooLarge",
    "FramingError",
    "NotWithdrawn",
    "SendQueueFull",
    "TimeoutError",
    "TsyncpError",
    "excerpt",
]

_EXCERPT = 32


def excerpt(data: Any, size: int = _EXCERPT) -> str:
    """
    Render the start of a payload for an error message.

    @param data: The payload (usually C{bytes}).
    @param size: How many leading bytes to show.
    @return: A short printable representation.
    """
    if isinstance(data, (bytes, bytearray, memoryview)):
        head = bytes(data[:size])
        more = f"... ({len(data)} bytes)" if len(data) > size else ""
        return repr(head) + more
    text = repr(data)
    return text if len(text) <= size * 2 else text[: size * 2] + "..."


def describe_address(address: Any) -> str:
    """
    Render a peer address for humans: C{host:port}, C{[v6]:port} or as is.

    @param address: An address as tsyncp_tx reports it.
    @return: Its printable form.
    """
    if isinstance(address, tuple) and len(address) == 2:
        host, port = address
        if ":" in str(host):
            return f"[{host}]:{port}"
        return f"{host}:{port}"
    return str(address)


class EncodeError(TsyncpError):
    """
    A codec could not turn an item into payload bytes.

    @ivar codec: The codec's name.
    @ivar reason: Why it failed.
    @ivar item: The item that could not be encoded.
    """

    def __init__(self, codec: str, reason: str, item: Any = None) -> None:
        """
        @param codec: The codec's name.
        @param reason: Why it failed.
        @param item: The item that could not be encoded.
        """
        super().__init__(codec, reason)
        self.codec = codec
        self.reason = reason
        self.item = item

    def __str__(self) -> str:
        return f"{self.codec} cannot encode {excerpt(self.item)}: {self.reason}"


class DecodeError(TsyncpError):
    """
    A codec could not turn a received payload into an item.

    The connection stays open: the next payload is decoded independently.

    @ivar codec: The codec's name.
    @ivar reason: Why it failed.
    @ivar payload: The payload bytes.
    @ivar address: The address of the peer that sent it, when known.
    """

    def __init__(
        self, codec: str, reason: str, payload: bytes, address: Any = None
    ) -> None:
        """
        @param codec: The codec's name.
        @param reason: Why it failed.
        @param payload: The payload bytes.
        @param address: The sending peer's address, when known.
        """
        super().__init__(codec, reason, payload)
        self.codec = codec
        self.reason = reason
        self.payload = payload
        self.address = address

    def __str__(self) -> str:
        source = (
            f" from {describe_address(self.address)}"
            if self.address is not None
            else ""
        )
        return (
            f"{self.codec} cannot decode payload{source}: {self.reason}; "
            f"payload starts {excerpt(self.payload)}"
        )


class ConnectionClosed(TsyncpError):
    """
    The connection to the peer is gone.

    @ivar address: The peer's address.
    @ivar reason: The underlying failure's exception, or C{None} after a
        clean close.
    """

    def __init__(self, address: Any, reason: Optional[BaseException] = None) -> None:
        """
        @param address: The peer's address.
        @param reason: Why the connection ended, or C{None} for a clean close.
        """
        super().__init__(address, reason)
        self.address = address
        self.reason = reason

    def __str__(self) -> str:
        who = describe_address(self.address)
        if self.reason is None:
            return f"connection to {who} closed"
        return f"connection to {who} lost: {self.reason}"


class ChannelClosed(TsyncpError):
    """
    The channel was closed locally with C{close()}; it sends and receives no
    more.
    """

    def __str__(self) -> str:
        detail = super().__str__()
        return detail or "channel closed"


class ConnectError(TsyncpError):
    """
    Connecting to a remote address failed (after any retries).

    @ivar address: The address connected to.
    @ivar attempts: How many attempts were made.
    @ivar reason: The last attempt's exception.
    """

    def __init__(self, address: Any, attempts: int, reason: BaseException) -> None:
        """
        @param address: The address connected to.
        @param attempts: How many attempts were made.
        @param reason: The last attempt's exception.
        """
        super().__init__(address, attempts, reason)
        self.address = address
        self.attempts = attempts
        self.reason = reason

    def __str__(self) -> str:
        tries = "attempt" if self.attempts == 1 else "attempts"
        # A bare port number means 127.0.0.1: say where that is.
        where = self.address
        if isinstance(where, int) and not isinstance(where, bool):
            where = ("127.0.0.1", where)
        return (
            f"cannot connect to {describe_address(where)} "
            f"({self.attempts} {tries}): {self.reason}"
        )


class SendQueueFull(TsyncpError):
    """
    A frame would push a queue of unwritten frames past its bound
    (C{send_high_water}): a C{reconnect=True} sender's backlog while it is
    disconnected, or a L{FramedProtocol<tsyncp_tx.pool.FramedProtocol>}
    used directly.  Nothing was queued.  (Connected channels make C{send()}
    wait for room instead.)

    @ivar address: The peer's address.
    @ivar queued: Bytes already queued.
    @ivar limit: The bound.
    """

    def __init__(self, address: Any, queued: int, limit: int) -> None:
        """
        @param address: The peer's address.
        @param queued: Bytes already queued.
        @param limit: The bound.
        """
        super().__init__(address, queued, limit)
        self.address = address
        self.queued = queued
        self.limit = limit

    def __str__(self) -> str:
        return (
            f"send queue to {describe_address(self.address)} is full "
            f"({self.queued} bytes queued, send_high_water={self.limit}); "
            f"wait for earlier send() Deferreds before sending more"
        )


class TimeoutError(TsyncpError):  # noqa: A001 - deliberately mirrors the builtin
    """
    An operation given a C{timeout=} did not complete in time.  The channel
    is left usable.

    @ivar operation: What timed out (C{"recv"}, C{"send"}, ...).
    @ivar timeout: The timeout in seconds.
    @ivar withdrawn: Whether the operation was withdrawn, so that nothing
        comes of it later: always, but for a broadcast C{send()} that some
        receivers' transports had already taken.  That one stays queued
        for the other receivers (so that every receiver gets the same
        items): sending it again would duplicate it.
    """

    def __init__(self, operation: str, timeout: float, withdrawn: bool = True) -> None:
        """
        @param operation: What timed out.
        @param timeout: The timeout in seconds.
        @param withdrawn: Whether the operation was withdrawn.
        """
        super().__init__(operation, timeout)
        self.operation = operation
        self.timeout = timeout
        self.withdrawn = withdrawn

    def __str__(self) -> str:
        return f"{self.operation}() timed out after {self.timeout} seconds"


class NotWithdrawn(CancelledError):
    """
    A broadcast C{send()} was cancelled after some receivers' transports
    took its item: it stays queued for the others, so that every receiver
    gets the same items.  (On a timeout, L{TimeoutError} with C{withdrawn}
    false says the same.)
    """

