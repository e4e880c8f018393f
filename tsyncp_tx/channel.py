"""
One connection, both directions.

    >>> ch = await channel_on("127.0.0.1:8000")      # waits for the peer
    >>> ch = await channel_to("127.0.0.1:8000")
    >>> await ch.send({"hello": 1}); item = await ch.recv()
"""

from typing import Any

from twisted.internet.defer import Deferred

from ._address import AddressLike
from ._core import RetryLike
from ._views import Channel, Receiver, Sender, open_connected, open_listening

__all__ = ["Channel", "Receiver", "Sender", "channel_on", "channel_to"]


def channel_on(
    address: AddressLike,
    *,
    accept: int = 1,
    codec: Any = None,
    reactor: Any = None,
    **options: Any,
) -> "Deferred[Channel]":
    """
    Listen on C{address} for exactly one peer.

    @param address: Where to listen: a port (on 127.0.0.1), C{"host:port"},
        C{(host, port)}, an endpoint description or a server endpoint.
    @param accept: C{1} (default) fires once the peer connected; C{0} fires
        as soon as the channel listens (read C{local_address}, then call
        C{accept()}).
    @param codec: An L{ICodec<tsyncp_tx.codecs.ICodec>} (default
        L{JsonCodec<tsyncp_tx.codecs.JsonCodec>}).
    @param reactor: The reactor (default: the global one).
    @param options: Connection options: C{max_frame_length}, C{nodelay},
        C{read_size}, C{send_limit}, C{send_high_water}, C{send_timeout},
        C{recv_high_water}, C{recv_high_water_bytes}, C{on_decode_error},
        C{on_accept}, C{on_disconnect}.
    @return: A Deferred firing with the L{Channel}.
    """
    return open_listening(
        Channel, address, single=True, receives=True, accept=accept,
        codec=codec, reactor=reactor, options=options,
    )


def channel_to(
    address: AddressLike,
    *,
    retry: RetryLike = None,
    reconnect: bool = False,
    codec: Any = None,
    reactor: Any = None,
    **options: Any,
) -> "Deferred[Channel]":
    """
    Connect to a listening channel.

    @param address: Where to connect: C{"host:port"}, C{(host, port)}, an
        endpoint description (C{"tls:host:port"}, C{"unix:/path"}) or a
        client endpoint.
    @param retry: C{(interval_seconds, max_retries)} or a callable
        C{policy(attempt, failure) -> seconds or None}; without it a refused
        connection fails at once with L{ConnectError}.
    @param reconnect: Reconnect with backoff whenever the connection is
        lost; sends made meanwhile wait (bounded by C{send_high_water} and
        C{send_timeout}).
    @param codec: The codec (default JSON).
    @param reactor: The reactor (default: the global one).
    @param options: Connection options (see L{channel_on}), and
        C{reconnect_policy} (C{failed_attempts -> seconds}).
    @return: A Deferred firing with the L{Channel}.
    """
    return open_connected(
        Channel, address, receives=True, retry=retry, reconnect=reconnect,
        codec=codec, reactor=reactor, options=options,
    )
