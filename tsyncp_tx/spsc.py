"""
One sender, one receiver; either side may listen.

A listening side accepts exactly one peer: a second connection attempt is
refused and logged.
"""

from typing import Any

from twisted.internet.defer import Deferred

from ._address import AddressLike
from ._core import RetryLike
from ._views import Receiver, Sender, open_connected, open_listening

__all__ = ["Receiver", "Sender", "receiver_on", "receiver_to", "sender_on", "sender_to"]


def sender_on(
    address: AddressLike, *, accept: int = 1, codec: Any = None, reactor: Any = None, **options: Any
) -> "Deferred[Sender]":
    """
    Listen for the one receiver.

    @param address: Where to listen (see L{tsyncp_tx.channel.channel_on}).
    @param accept: C{1}: fire once the receiver connected; C{0}: fire when
        listening (then call C{accept()}).
    @param codec: The codec (default JSON).
    @param reactor: The reactor (default: the global one).
    @param options: Connection options (see L{tsyncp_tx.channel.channel_on}).
    @return: A Deferred firing with the C{Sender}.
    """
    return open_listening(
        Sender, address, single=True, receives=False, accept=accept,
        codec=codec, reactor=reactor, options=options,
    )


def receiver_on(
    address: AddressLike, *, accept: int = 1, codec: Any = None, reactor: Any = None, **options: Any
) -> "Deferred[Receiver]":
    """
    Listen for the one sender.

    @param address: Where to listen (see L{tsyncp_tx.channel.channel_on}).
    @param accept: C{1}: fire once the sender connected; C{0}: fire when
        listening (then call C{accept()}).
    @param codec: The codec (default JSON).
    @param reactor: The reactor (default: the global one).
    @param options: Connection options (see L{tsyncp_tx.channel.channel_on}).
    @return: A Deferred firing with the C{Receiver}.
    """
    return open_listening(
        Receiver, address, single=True, receives=True, accept=accept,
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
    Connect to a listening receiver.

    @param address: Where to connect (see L{tsyncp_tx.channel.channel_to}).
    @param retry: Retry policy for the first connection.
    @param reconnect: Keep the connection up with backoff.
    @param codec: The codec (default JSON).
    @param reactor: The reactor (default: the global one).
    @param options: Connection options (see L{tsyncp_tx.channel.channel_to}).
    @return: A Deferred firing with the C{Sender}.
    """
    return open_connected(
        Sender, address, receives=False, retry=retry, reconnect=reconnect,
        codec=codec, reactor=reactor, options=options,
    )


def receiver_to(
    address: AddressLike,
    *,
    retry: RetryLike = None,
    reconnect: bool = False,
    codec: Any = None,
    reactor: Any = None,
    **options: Any,
) -> "Deferred[Receiver]":
    """
    Connect to a listening sender.

    @param address: Where to connect (see L{tsyncp_tx.channel.channel_to}).
    @param retry: Retry policy for the first connection.
    @param reconnect: Reconnect with backoff after a loss.
    @param codec: The codec (default JSON).
    @param reactor: The reactor (default: the global one).
    @param options: Connection options (see L{tsyncp_tx.channel.channel_to}).
    @return: A Deferred firing with the C{Receiver}.
    """
    return open_connected(
        Receiver, address, receives=True, retry=retry, reconnect=reconnect,
        codec=codec, reactor=reactor, options=options,
    )
