"""
Many senders, one receiver (fan-in).
"""

from typing import Any, Callable, Optional, Union

from twisted.internet.defer import Deferred

from ._address import AddressLike
from ._core import RetryLike
from ._views import MultiReceiver as Receiver
from ._views import Sender, open_connected, open_listening

__all__ = ["Receiver", "Sender", "receiver_on", "sender_to"]


def receiver_on(
    address: AddressLike,
    *,
    limit: Optional[int] = None,
    accept: Union[int, str] = 0,
    accept_filter: Optional[Callable[[Any], bool]] = None,
    on_accept: Optional[Callable[[Any], Any]] = None,
    on_disconnect: Optional[Callable[[Any, Any], Any]] = None,
    codec: Any = None,
    reactor: Any = None,
    **options: Any,
) -> "Deferred[Receiver]":
    """
    Listen for senders and receive from all of them.

    @param address: Where to listen (see L{tsyncp_tx.channel.channel_on}).
    @param limit: The most senders at once.
    @param accept: Senders to wait for before firing, or C{"limit"}.
    @param accept_filter: C{accept_filter(address) -> bool}.
    @param on_accept: Called with each joining sender's address.
    @param on_disconnect: Called with C{(address, reason)} when one leaves.
    @param codec: The codec (default JSON).
    @param reactor: The reactor (default: the global one).
    @param options: Connection options (see L{tsyncp_tx.channel.channel_on}).
    @return: A Deferred firing with the C{Receiver}.
    """
    options.update(
        limit=limit, accept_filter=accept_filter, on_accept=on_accept, on_disconnect=on_disconnect
    )
    return open_listening(
        Receiver, address, single=False, receives=True, accept=accept,
        codec=codec, reactor=reactor, options=options,
    )


def sender_to(
    address: AddressLike,
    *,
    retry: RetryLike = None,
    reconnect: bool = False,
    codec: Any = None,
    reactor: Any = None,
    **options: Any,
) -> "Deferred[Sender]":
    """
    Connect to an mpsc receiver.

    @param address: Where to connect (see L{tsyncp_tx.channel.channel_to}).
    @param retry: Retry policy for the first connection.
    @param reconnect: Keep the connection up with backoff; items sent while
        disconnected wait (bounded) and go out after reconnecting.
    @param codec: The codec (default JSON).
    @param reactor: The reactor (default: the global one).
    @param options: Connection options (see L{tsyncp_tx.channel.channel_to}).
    @return: A Deferred firing with the C{Sender}.
    """
    return open_connected(
        Sender, address, receives=False, retry=retry, reconnect=reconnect,
        codec=codec, reactor=reactor, options=options,
    )
