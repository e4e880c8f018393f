"""
One sender, many receivers (fan-out): every receiver gets every item.
"""

from typing import Any, Callable, Optional, Union

from twisted.internet.defer import Deferred

from ._address import AddressLike
from ._core import RetryLike
from ._views import BroadcastSender as Sender
from ._views import Receiver, open_connected, open_listening

__all__ = ["Receiver", "Sender", "receiver_to", "sender_on"]


def sender_on(
    address: AddressLike,
    *,
    limit: Optional[int] = None,
    accept: Union[int, str] = 0,
    accept_filter: Optional[Callable[[Any], bool]] = None,
    on_accept: Optional[Callable[[Any], Any]] = None,
    on_disconnect: Optional[Callable[[Any, Any], Any]] = None,
    slow_receiver: str = "wait",
    slow_receiver_limit: Optional[int] = None,
    codec: Any = None,
    reactor: Any = None,
    **options: Any,
) -> "Deferred[Sender]":
    """
    Listen for receivers and send every item to all of them.

    @param address: Where to listen (see L{tsyncp_tx.channel.channel_on}).
    @param limit: The most receivers at once.
    @param accept: Receivers to wait for before firing, or C{"limit"}.
    @param accept_filter: C{accept_filter(address) -> bool}.
    @param on_accept: Called with each joining receiver's address.
    @param on_disconnect: Called with C{(address, reason)} when one leaves.
    @param slow_receiver: C{"wait"} (default): C{send()} waits for the
        slowest receiver, nothing is lost; C{"disconnect"}: a receiver more
        than C{slow_receiver_limit} bytes behind is disconnected (logged,
        reported to C{on_disconnect}) and the others go on at full speed.
    @param slow_receiver_limit: Bytes a receiver may fall behind under the
        C{"disconnect"} policy (default: C{send_high_water}).
    @param codec: The codec (default JSON).
    @param reactor: The reactor (default: the global one).
    @param options: Connection options (see L{tsyncp_tx.channel.channel_on}).
    @return: A Deferred firing with the C{Sender}.
    """
    options.update(
        limit=limit, accept_filter=accept_filter, on_accept=on_accept,
        on_disconnect=on_disconnect, slow_receiver=slow_receiver,
        slow_receiver_limit=slow_receiver_limit,
    )
    return open_listening(
        Sender, address, single=False, receives=False, accept=accept,
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
    Connect to a broadcast sender.

    @param address: Where to connect (see L{tsyncp_tx.channel.channel_to}).
    @param retry: Retry policy for the first connection.
    @param reconnect: Reconnect with backoff after a loss (items broadcast
        while away are not replayed).
    @param codec: The codec (default JSON).
    @param reactor: The reactor (default: the global one).
    @param options: Connection options (see L{tsyncp_tx.channel.channel_to}).
    @return: A Deferred firing with the C{Receiver}.
    """
    return open_connected(
        Receiver, address, receives=True, retry=retry, reconnect=reconnect,
        codec=codec, reactor=reactor, options=options,
    )
