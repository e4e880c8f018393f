"""
Addresses: everything a user may pass as C{addr}, turned into endpoints.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Tuple, Union

from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP4ServerEndpoint,
    TCP6ClientEndpoint,
    TCP6ServerEndpoint,
    UNIXClientEndpoint,
    UNIXServerEndpoint,
    clientFromString,
    serverFromString,
)
from twisted.internet.interfaces import (
    IListeningPort,
    IStreamClientEndpoint,
    IStreamServerEndpoint,
)

AddressLike = Union[str, Tuple[str, int], int, IStreamServerEndpoint, IStreamClientEndpoint]

#: Endpoint description types recognised before "host:port" parsing, so
#: that "tcp:8000" is a description while "localhost:8000" is a host and
#: port (Twisted's own types and the usual plugins').
DESCRIPTION_TYPES = frozenset(
    ("tcp", "tcp6", "unix", "ssl", "tls", "systemd", "stdio", "tor", "onion", "txtorcon", "le", "lets")
)


def check_port(port: int, address: Any) -> int:
    """
    @param port: A port number.
    @param address: The address it came from, for the error.
    @return: C{port}.
    @raise ValueError: If it is out of range.
    """
    if not 0 <= port <= 65535:
        raise ValueError(f"port out of range (0-65535) in address {address!r}")
    return port


def _split_host_port(text: str) -> Tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(
            f"cannot parse address {text!r}: expected 'host:port', a port "
            f"number, an absolute UNIX socket path, or an endpoint "
            f"description such as 'tcp:8000' or 'unix:/path'"
        )
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, check_port(int(port), text)


def _is_description(text: str) -> bool:
    kind = text.split(":", 1)[0].lower()
    return ":" in text and kind in DESCRIPTION_TYPES


def _is_ipv6(host: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(host), ipaddress.IPv6Address)
    except ValueError:
        return False


def server_endpoint(reactor: Any, address: AddressLike, backlog: int = 128) -> IStreamServerEndpoint:
    """
    Turn a listening address into a server endpoint.

    A bare port listens on 127.0.0.1 only; listen on every interface with
    C{"0.0.0.0:PORT"} (or C{"[::]:PORT"}) or a description such as
    C{"tcp:PORT"}.

    @param reactor: The reactor the endpoint uses.
    @param address: A port C{int}, C{"host:port"}, C{(host, port)}, an
        absolute UNIX socket path, an endpoint description
        (C{"tcp:0:interface=127.0.0.1"}, C{"unix:/path"}, C{"ssl:..."}), or
        a server endpoint.
    @param backlog: The listen queue length for host/port addresses.
    @return: The endpoint.
    @raise ValueError: If the address cannot be understood.
    """
    if IStreamServerEndpoint.providedBy(address):
        return address  # type: ignore[return-value]
    if isinstance(address, bool):
        raise ValueError(f"not an address: {address!r}")
    if isinstance(address, int):
        port = check_port(address, address)
        return TCP4ServerEndpoint(reactor, port, backlog=backlog, interface="127.0.0.1")
    if isinstance(address, str) and _is_description(address):
        return serverFromString(reactor, address)
    if isinstance(address, str) and address.startswith("/"):
        return UNIXServerEndpoint(reactor, address, backlog=backlog)
    host, port = _host_port(address)
    if host in ("", "localhost"):
        host = "127.0.0.1"
    if _is_ipv6(host):
        return TCP6ServerEndpoint(reactor, port, backlog=backlog, interface=host)
    return TCP4ServerEndpoint(reactor, port, backlog=backlog, interface=host)


def client_endpoint(reactor: Any, address: AddressLike, timeout: float = 30) -> IStreamClientEndpoint:
    """
    Turn a remote address into a client endpoint.

    @param reactor: The reactor the endpoint uses.
    @param address: C{"host:port"}, C{(host, port)}, a port C{int} (on
        127.0.0.1), an absolute UNIX socket path, an endpoint description
        (C{"tcp:host:port"}, C{"unix:/path"}, C{"tls:host:port"}), or a
        client endpoint.
    @param timeout: Seconds to wait for the connection to be established.
    @return: The endpoint.
    @raise ValueError: If the address cannot be understood.
    """
    if IStreamClientEndpoint.providedBy(address):
        return address  # type: ignore[return-value]
    if isinstance(address, bool):
        raise ValueError(f"not an address: {address!r}")
    if isinstance(address, int):
        port = check_port(address, address)
        return TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=timeout)
    if isinstance(address, str) and _is_description(address):
        return clientFromString(reactor, address)
    if isinstance(address, str) and address.startswith("/"):
        return UNIXClientEndpoint(reactor, address, timeout=timeout)
    host, port = _host_port(address)
    host = host or "127.0.0.1"
    # IP literals connect directly: HostnameEndpoint would resolve them in
    # a thread and report a refusal only at its next attempt tick.
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        return HostnameEndpoint(reactor, host, port, timeout=timeout)
    if isinstance(literal, ipaddress.IPv6Address):
        return TCP6ClientEndpoint(reactor, host, port, timeout=timeout)
    return TCP4ClientEndpoint(reactor, host, port, timeout=timeout)


def _host_port(address: Any) -> Tuple[str, int]:
    if isinstance(address, tuple) and len(address) == 2:
        host, port = address
        if not isinstance(port, int) or isinstance(port, bool):
            raise ValueError(f"port must be an int in {address!r}")
        return str(host), check_port(port, address)
    if isinstance(address, str):
        return _split_host_port(address)
    raise ValueError(
        f"cannot use {address!r} as an address: expected 'host:port', "
        f"(host, port), a port number, an endpoint description or an endpoint"
    )


def listening_address(port: IListeningPort) -> Any:
    """
    The address a listening port is bound to, as C{(host, port)} for TCP or
    the path for a UNIX socket.

    @param port: The listening port.
    @return: The address.
    """
    host = port.getHost()
    if hasattr(host, "host") and hasattr(host, "port"):
        return (host.host, host.port)
    name = getattr(host, "name", None)
    if isinstance(name, bytes):
        return name.decode("utf-8", "replace")
    return name
