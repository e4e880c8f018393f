"""
Many connections, both directions: send to all or some, receive from any.
"""

from typing import Any, Callable, Optional, Union

from twisted.internet.defer import Deferred

from ._address import AddressLike
from ._views import BroadcastSender, MultiChannel, MultiReceiver, open_listening

__all__ = ["MultiChannel", "channel_on"]


def channel_on(
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
) -> "Deferred[MultiChannel]":
    """
    Listen on C{address} for any number of peers (up to C{limit}).

    The channel keeps accepting in the background for as long as it is
    open.

    @param address: Where to listen (see L{tsyncp_tx.channel.channel_on}).
    @param limit: The most peers connected at once; one more is refused
        and logged.
    @param accept: Peers to wait for before the Deferred fires, or
        C{"limit"}.
    @param accept_filter: C{accept_filter(address) -> bool}; a false result
        refuses the connection before it joins.
    @param on_accept: Called with each joining peer's address.
    @param on_disconnect: Called with C{(address, reason)} when a peer
        leaves; the channel carries on with the others.
    @param codec: The codec (default JSON).
    @param reactor: The reactor (default: the global one).
    @param options: Connection options (see L{tsyncp_tx.channel.channel_on})
        and C{slow_receiver} (C{"wait"} or C{"disconnect"}),
        C{slow_receiver_limit}.
    @return: A Deferred firing with the L{MultiChannel}.
    """
    options.update(
        limit=limit, accept_filter=accept_filter, on_accept=on_accept, on_disconnect=on_disconnect
    )
    return open_listening(
        MultiChannel, address, single=False, receives=True, accept=accept,
        codec=codec, reactor=reactor, options=options,
    )


# Referenced so the split() halves are documented alongside.
_HALVES = (BroadcastSender, MultiReceiver)
