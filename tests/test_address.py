"""
Unit tests for L{tsyncp_tx._address}: every address form turned into the
right endpoint, checked against C{MemoryReactor}s (nothing touches the
network), plus one real check that a bare port listens on 127.0.0.1 only.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address, UNIXAddress
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP4ServerEndpoint,
    TCP6ClientEndpoint,
    TCP6ServerEndpoint,
    UNIXClientEndpoint,
    UNIXServerEndpoint,
)
from twisted.internet.interfaces import IStreamClientEndpoint, IStreamServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactor, MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tsyncp_tx import _address
from tsyncp_tx._address import (
    client_endpoint,
    listening_address,
    server_endpoint,
)

from ._util import as_deferred


def _factory() -> Factory:
    return Factory.forProtocol(Protocol)


class ServerEndpointTests(SynchronousTestCase):
    """
    L{server_endpoint}: listening addresses.
    """

    def listen(self, address: Any) -> Any:
        """
        Turn C{address} into an endpoint and listen on a C{MemoryReactor}.

        @return: C{(endpoint, reactor)}.
        """
        reactor = MemoryReactor()
        endpoint = server_endpoint(reactor, address)
        self.assertTrue(IStreamServerEndpoint.providedBy(endpoint))
        self.successResultOf(endpoint.listen(_factory()))
        return endpoint, reactor

    def tcp(self, address: Any) -> Any:
        """
        Listen on C{address}; return the one TCP listen call's C{(port,
        backlog, interface)}.
        """
        endpoint, reactor = self.listen(address)
        self.assertEqual(len(reactor.tcpServers), 1)
        port, _, backlog, interface = reactor.tcpServers[0]
        return endpoint, (port, backlog, interface)

    def test_int_port_loopback_only(self) -> None:
        """
        A bare port listens on 127.0.0.1, not on every interface.
        """
        endpoint, listened = self.tcp(8000)
        self.assertIsInstance(endpoint, TCP4ServerEndpoint)
        self.assertEqual((listened[0], listened[2]), (8000, "127.0.0.1"))
        self.assertEqual(self.tcp(0)[1][2], "127.0.0.1")

    def test_host_port_string(self) -> None:
        """
        C{"host:port"}: the host is the interface.
        """
        endpoint, listened = self.tcp("0.0.0.0:8001")
        self.assertIsInstance(endpoint, TCP4ServerEndpoint)
        self.assertEqual((listened[0], listened[2]), (8001, "0.0.0.0"))
        self.assertEqual(self.tcp("10.1.2.3:9")[1][::2], (9, "10.1.2.3"))

    def test_localhost_and_empty_host(self) -> None:
        """
        C{"localhost:port"} and C{":port"} listen on 127.0.0.1.
        """
        self.assertEqual(self.tcp("localhost:8002")[1][::2], (8002, "127.0.0.1"))
        self.assertEqual(self.tcp(":8003")[1][::2], (8003, "127.0.0.1"))

    def test_tuple(self) -> None:
        """
        C{(host, port)} works like C{"host:port"}.
        """
        endpoint, listened = self.tcp(("127.0.0.1", 8004))
        self.assertIsInstance(endpoint, TCP4ServerEndpoint)
        self.assertEqual(listened[::2], (8004, "127.0.0.1"))

    def test_ipv6(self) -> None:
        """
        An IPv6 host, bracketed or in a tuple, gives a TCP6 endpoint.
        """
        endpoint, listened = self.tcp("[::1]:8005")
        self.assertIsInstance(endpoint, TCP6ServerEndpoint)
        self.assertEqual(listened[::2], (8005, "::1"))
        endpoint, listened = self.tcp(("::", 8006))
        self.assertIsInstance(endpoint, TCP6ServerEndpoint)
        self.assertEqual(listened[::2], (8006, "::"))

    def test_backlog(self) -> None:
        """
        The backlog argument reaches the listen call for host/port forms.
        """
        reactor = MemoryReactor()
        self.successResultOf(server_endpoint(reactor, 8007, backlog=7).listen(_factory()))
        self.assertEqual(reactor.tcpServers[0][2], 7)

    def test_tcp_description(self) -> None:
        """
        C{"tcp:PORT:interface=..."} is parsed as a Twisted description.
        """
        endpoint, listened = self.tcp("tcp:8008:interface=127.0.0.1")
        self.assertIsInstance(endpoint, TCP4ServerEndpoint)
        self.assertEqual(listened[::2], (8008, "127.0.0.1"))

    def test_unix_description(self) -> None:
        """
        C{"unix:/path"} listens on that UNIX socket.
        """
        endpoint, reactor = self.listen("unix:/tmp/tsyncp-test.sock")
        self.assertIsInstance(endpoint, UNIXServerEndpoint)
        self.assertEqual(reactor.unixServers[0][0], "/tmp/tsyncp-test.sock")
        self.assertEqual(reactor.tcpServers, [])

    def test_endpoint_passes_through(self) -> None:
        """
        A server endpoint object is used as it is.
        """
        reactor = MemoryReactor()
        endpoint = TCP4ServerEndpoint(reactor, 1234)
        self.assertIs(server_endpoint(MemoryReactor(), endpoint), endpoint)

    def test_bad_addresses(self) -> None:
        """
        Anything else is a C{ValueError} whose message quotes the address
        and lists the accepted forms.
        """
        reactor = MemoryReactor()
        for bad in ("nonsense", "host:notaport", "bogus:thing", "", "127.0.0.1:"):
            error = self.assertRaises(ValueError, server_endpoint, reactor, bad)
            self.assertIn(repr(bad), str(error))
            self.assertIn("host:port", str(error))
        for other in (3.5, None, ("h", 80, 1), ["127.0.0.1", 80], b"127.0.0.1:80"):
            error = self.assertRaises(ValueError, server_endpoint, reactor, other)
            self.assertIn(repr(other), str(error))
        error = self.assertRaises(ValueError, server_endpoint, reactor, ("h", "80"))
        self.assertIn("port must be an int", str(error))
        error = self.assertRaises(ValueError, server_endpoint, reactor, True)
        self.assertIn("True", str(error))

    def test_port_out_of_range(self) -> None:
        """
        A port outside 0-65535 is a C{ValueError} at once, not an
        C{OverflowError} from the Deferred later.
        """
        reactor = MemoryReactor()
        for bad in (-1, 65536, "127.0.0.1:70000", ("127.0.0.1", 99999)):
            error = self.assertRaises(ValueError, server_endpoint, reactor, bad)
            self.assertIn("port", str(error))


class ClientEndpointTests(SynchronousTestCase):
    """
    L{client_endpoint}: remote addresses.
    """

    def connect(self, address: Any) -> Any:
        """
        Turn C{address} into an endpoint and connect with a
        C{MemoryReactorClock}.

        @return: C{(endpoint, reactor)}.
        """
        reactor = MemoryReactorClock()
        endpoint = client_endpoint(reactor, address)
        self.assertTrue(IStreamClientEndpoint.providedBy(endpoint))
        endpoint.connect(_factory())
        reactor.advance(0)  # HostnameEndpoint resolves, then connects
        return endpoint, reactor

    def tcp(self, address: Any) -> Any:
        """
        Connect to C{address}; return the one TCP connect call's
        C{(host, port, timeout)}.
        """
        endpoint, reactor = self.connect(address)
        self.assertEqual(len(reactor.tcpClients), 1)
        host, port, _, timeout, _ = reactor.tcpClients[0]
        return endpoint, (host, port, timeout)

    def test_host_port_string(self) -> None:
        """
        C{"host:port"} with an IP literal gives a direct TCP endpoint (no
        resolver, refusals reported at once); a host name gives a
        C{HostnameEndpoint}.
        """
        endpoint, connected = self.tcp("127.0.0.1:8000")
        self.assertIsInstance(endpoint, TCP4ClientEndpoint)
        self.assertEqual(connected[:2], ("127.0.0.1", 8000))
        endpoint = client_endpoint(MemoryReactor(), "example.com:80")
        self.assertIsInstance(endpoint, HostnameEndpoint)
        self.assertIn("example.com:80", repr(endpoint))

    def test_tuple_and_int(self) -> None:
        """
        C{(host, port)} and a bare port (on 127.0.0.1).
        """
        self.assertEqual(self.tcp(("127.0.0.1", 8001))[1][:2], ("127.0.0.1", 8001))
        endpoint, connected = self.tcp(8002)
        self.assertIsInstance(endpoint, TCP4ClientEndpoint)
        self.assertEqual(connected[:2], ("127.0.0.1", 8002))
        self.assertEqual(self.tcp(":8003")[1][:2], ("127.0.0.1", 8003))

    def test_ipv6(self) -> None:
        """
        A bracketed IPv6 host loses its brackets and connects over IPv6.
        """
        reactor = MemoryReactor()
        endpoint = client_endpoint(reactor, "[::1]:8004")
        self.assertIsInstance(endpoint, TCP6ClientEndpoint)
        endpoint.connect(_factory())
        self.assertEqual(reactor.tcpClients[0][:2], ("::1", 8004))

    def test_timeout(self) -> None:
        """
        The connect timeout reaches the connect call.
        """
        reactor = MemoryReactorClock()
        client_endpoint(reactor, "127.0.0.1:8005", timeout=3).connect(_factory())
        reactor.advance(0)
        self.assertEqual(reactor.tcpClients[0][3], 3)

    def test_descriptions(self) -> None:
        """
        C{"tcp:host:port"} and C{"unix:/path"} are Twisted descriptions.
        """
        endpoint, connected = self.tcp("tcp:127.0.0.1:8006")
        self.assertIsInstance(endpoint, TCP4ClientEndpoint)
        self.assertEqual(connected[:2], ("127.0.0.1", 8006))
        endpoint, reactor = self.connect("unix:/tmp/tsyncp-test.sock")
        self.assertIsInstance(endpoint, UNIXClientEndpoint)
        self.assertEqual(reactor.unixClients[0][0], "/tmp/tsyncp-test.sock")

    def test_endpoint_passes_through(self) -> None:
        """
        A client endpoint object is used as it is.
        """
        endpoint = TCP4ClientEndpoint(MemoryReactor(), "127.0.0.1", 1)
        self.assertIs(client_endpoint(MemoryReactor(), endpoint), endpoint)

    def test_bad_addresses(self) -> None:
        """
        Anything else is a C{ValueError} quoting the address.
        """
        reactor = MemoryReactor()
        for bad in ("nonsense", "host:port", 2.5, None, True, ("h",)):
            error = self.assertRaises(ValueError, client_endpoint, reactor, bad)
            self.assertIn(repr(bad), str(error))

    def test_port_out_of_range(self) -> None:
        """
        A port outside 1-65535 is a C{ValueError} at once, not a misleading
        "connection refused" or "DNS lookup failed" later.
        """
        reactor = MemoryReactor()
        for bad in (-5, 65536, "127.0.0.1:70000", ("127.0.0.1", -5)):
            error = self.assertRaises(ValueError, client_endpoint, reactor, bad)
            self.assertIn("port", str(error))


class HelperTests(SynchronousTestCase):
    """
    L{listening_address}.
    """

    def test_listening_address(self) -> None:
        """
        A UNIX port's address is its path, as text; a TCP port's is
        C{(host, port)}.
        """

        class FakePort:
            def getHost(self) -> UNIXAddress:
                return UNIXAddress(b"/tmp/x.sock")

        self.assertEqual(listening_address(FakePort()), "/tmp/x.sock")  # type: ignore[arg-type]

        class FakeTcpPort:
            def getHost(self) -> IPv4Address:
                return IPv4Address("TCP", "10.0.0.1", 77)

        self.assertEqual(listening_address(FakeTcpPort()), ("10.0.0.1", 77))  # type: ignore[arg-type]


    def test_description_types(self) -> None:
        """
        Only known endpoint types are read as descriptions: C{"localhost:80"}
        is a host and port, C{"tcp:80"} a description.
        """
        self.assertFalse(_address._is_description("localhost:80"))
        self.assertTrue(_address._is_description("tcp:80"))
        self.assertTrue(_address._is_description("unix:/x"))
        self.assertFalse(_address._is_description("tcp"))


class RealLoopbackTests(TestCase):
    """
    A real check of the bare-port form.
    """

    timeout = 30

    @as_deferred
    async def test_int_port_binds_loopback(self) -> None:
        """
        C{channel_on(0)} binds 127.0.0.1 and gets a real port.
        """
        from tsyncp_tx import channel

        ch = await channel.channel_on(0, accept=0)
        self.addCleanup(ch.close)
        host, port = ch.local_address
        self.assertEqual(host, "127.0.0.1")
        self.assertGreater(port, 0)
