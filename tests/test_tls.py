"""
TLS through Twisted endpoints: C{ssl:} server descriptions (with this
project's C{clientCA=} for mutual TLS), C{tls:} client descriptions, and
endpoint objects built from C{twisted.internet.ssl}.  A throwaway CA and
certificates are generated for each test (see C{tests/_tls.py}).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Any, List, Optional, Tuple

from twisted.internet.defer import gatherResults
from twisted.python.failure import Failure
from twisted.trial import unittest

from tsyncp_tx import barrier, broadcast, channel, mpsc
from tsyncp_tx._standalone import listen_endpoint
from tsyncp_tx.errors import ConnectError, ConnectionClosed, TimeoutError

from ._util import as_deferred, eventually, sleep
from .test_channel import capture_logs, connect_raw, logged

try:
    from ._tls import CA, Files, escape
except ImportError as e:  # pragma: no cover - cryptography missing
    _skip: Optional[str] = f"TLS support is not installed ({e}); pip install 'twisted[tls]'"
else:
    _skip = None


class _TLSCase(unittest.TestCase):
    if _skip:
        skip = _skip

    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="tsx-tls-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.pki = Files(os.path.join(self.dir, "good"), CA("tsyncp_tx test CA"))
        self.server_cert, self.server_key = self.pki.server()

    def other_pki(self) -> "Files":
        return Files(os.path.join(self.dir, "other"), CA("some other CA"))

    def ssl(self, client_ca: Optional[str] = None, cert: Optional[str] = None, key: Optional[str] = None) -> Any:
        """
        A listening endpoint from an C{ssl:} description on a free
        loopback port (127.0.0.1 is the default).
        """
        from twisted.internet import reactor

        text = (
            f"ssl:0:privateKey={escape(key or self.server_key)}"
            f":certKey={escape(cert or self.server_cert)}"
        )
        if client_ca is not None:
            text += f":clientCA={escape(client_ca)}"
        return listen_endpoint(reactor, text)

    def tls(self, port: int, trust: Optional[str] = None, client: Optional[Tuple[str, str]] = None, host: str = "localhost") -> str:
        """
        A C{tls:} client description.
        """
        text = f"tls:{host}:{port}:trustRoots={escape(trust or self.pki.ca_dir)}"
        if client is not None:
            text += f":certificate={escape(client[0])}:privateKey={escape(client[1])}"
        return text

    def track(self, ch: Any) -> Any:
        self.addCleanup(ch.close)
        return ch


class ServerAuthenticationTests(_TLSCase):
    """
    The client verifies the server's certificate: its CA and its name.
    """

    @as_deferred
    async def test_trusted_server(self) -> None:
        """
        A client trusting the server's CA exchanges items both ways.
        """
        server = self.track(await channel.channel_on(self.ssl(), accept=0))
        port = server.local_address[1]
        self.assertEqual(server.local_address[0], "127.0.0.1")
        client = self.track(await channel.channel_to(self.tls(port)))
        await client.send({"hello": "server"})
        self.assertEqual(await server.recv(timeout=10), {"hello": "server"})
        await server.send({"hello": "client"})
        self.assertEqual(await client.recv(timeout=10), {"hello": "client"})

    @as_deferred
    async def test_untrusted_ca(self) -> None:
        """
        A client trusting another CA refuses the server: connecting fails
        with a C{ConnectError} naming the certificate error, and the server
        never counts it as a peer.
        """
        tx = self.track(await broadcast.sender_on(self.ssl()))
        port = tx.local_address[1]
        with self.assertRaises(ConnectError) as caught:
            await broadcast.receiver_to(self.tls(port, trust=self.other_pki().ca_dir))
        self.assertIn("certificate verify failed", str(caught.exception))
        self.assertEqual(await tx.send("secret"), 0)
        self.assertEqual(tx.addresses, [])

    @as_deferred
    async def test_untrusted_ca_reconnecting_sender(self) -> None:
        """
        A C{reconnect=True} sender keeps retrying a server whose certificate
        it refuses, logging why, and never counts it as its peer: its items
        wait in its backlog.
        """
        rx = self.track(await mpsc.receiver_on(self.ssl()))
        port = rx.local_address[1]
        texts = capture_logs(self)
        tx = self.track(
            await mpsc.sender_to(self.tls(port, trust=self.other_pki().ca_dir), reconnect=True)
        )
        sending = tx.send("secret")
        sending.addErrback(lambda _: None)  # fails when the sender closes
        await eventually(
            lambda: logged(texts, "TLS handshake", "failed", "certificate verify failed"), timeout=10
        )
        self.assertFalse(sending.called)
        self.assertEqual(rx.addresses, [])

    @as_deferred
    async def test_close_ends_connections_in_handshake(self) -> None:
        """
        Closing a TLS listener also closes connections still in their
        handshake (not peers yet), so nothing is left open.
        """
        rx = await mpsc.receiver_on(self.ssl())
        stuck = await connect_raw(self, rx.local_address[1])  # never says hello
        await sleep(0.05)
        self.assertEqual(rx.addresses, [])
        await rx.close()
        await eventually(lambda: stuck.lost.called, timeout=10)

    @as_deferred
    async def test_hostname_mismatch(self) -> None:
        """
        A certificate from the trusted CA but for another name is refused.
        """
        cert, key = self.pki.server("elsewhere", dns_names=("other.example",))
        tx = self.track(await broadcast.sender_on(self.ssl(cert=cert, key=key)))
        port = tx.local_address[1]
        with self.assertRaises(ConnectError) as caught:
            await broadcast.receiver_to(self.tls(port))
        self.assertIn("DNSMismatch", str(caught.exception))
        self.assertEqual(await tx.send("secret"), 0)

    @as_deferred
    async def test_plain_tcp_client_gets_nothing_through(self) -> None:
        """
        A plain-TCP sender talking to a TLS receiver delivers nothing (its
        bytes are not a TLS handshake) and is disconnected; a plain-TCP
        receiver of a TLS sender gets nothing either.
        """
        rx = self.track(await mpsc.receiver_on(self.ssl()))
        lost: List[Failure] = []
        plain = self.track(
            await mpsc.sender_to(("127.0.0.1", rx.local_address[1]), on_disconnect=lambda a, r: lost.append(r))
        )
        for n in range(5):
            await plain.send({"n": n})
        await eventually(lambda: bool(lost), timeout=10)
        with self.assertRaises(TimeoutError):
            await rx.recv(timeout=0.5)

        tx = self.track(await broadcast.sender_on(self.ssl()))
        plain_rx = self.track(await broadcast.receiver_to(("127.0.0.1", tx.local_address[1])))
        await tx.send("secret")
        with self.assertRaises((ConnectionClosed, TimeoutError)):
            await plain_rx.recv(timeout=2)


class MutualTLSTests(_TLSCase):
    """
    With C{clientCA=}, the server requires and verifies client
    certificates.
    """

    @as_deferred
    async def test_client_with_certificate(self) -> None:
        """
        A client with a certificate from the required CA is served.
        """
        rx = self.track(await mpsc.receiver_on(self.ssl(client_ca=self.pki.ca_file)))
        port = rx.local_address[1]
        tx = self.track(await mpsc.sender_to(self.tls(port, client=self.pki.client())))
        await tx.send([1, 2, 3])
        self.assertEqual(await rx.recv(timeout=10), [1, 2, 3])

    @as_deferred
    async def test_client_ca_directory(self) -> None:
        """
        C{clientCA=} may name a directory of C{*.pem} CA files.
        """
        other = self.other_pki()
        shutil.copy(other.ca_file, os.path.join(self.pki.ca_dir, "other.pem"))
        rx = self.track(await mpsc.receiver_on(self.ssl(client_ca=self.pki.ca_dir)))
        port = rx.local_address[1]
        tx = self.track(await mpsc.sender_to(self.tls(port, client=other.client("other-client"))))
        await tx.send("via the second CA")
        self.assertEqual(await rx.recv(timeout=10), "via the second CA")

    async def assertRefused(self, client: Optional[Tuple[str, str]]) -> None:
        tx = self.track(await broadcast.sender_on(self.ssl(client_ca=self.pki.ca_file)))
        port = tx.local_address[1]
        rx = self.track(await broadcast.receiver_to(self.tls(port, client=client)))
        await sleep(0.2)
        await tx.send("secret")
        with self.assertRaises(ConnectionClosed) as caught:
            await rx.recv(timeout=10)
        self.assertIsNotNone(caught.exception.reason)

    @as_deferred
    async def test_client_without_certificate_refused(self) -> None:
        """
        A client without a certificate is refused: its connection fails
        with a TLS error and it receives nothing.
        """
        await self.assertRefused(None)

    @as_deferred
    async def test_client_certificate_from_other_ca_refused(self) -> None:
        """
        A client certificate issued by another CA is refused.
        """
        await self.assertRefused(self.other_pki().client("stranger"))

    @as_deferred
    async def test_sender_without_certificate_delivers_nothing(self) -> None:
        """
        A sender without a certificate gets nothing into the receiver.
        """
        rx = self.track(await mpsc.receiver_on(self.ssl(client_ca=self.pki.ca_file)))
        lost: List[Failure] = []
        tx = self.track(
            await mpsc.sender_to(self.tls(rx.local_address[1]), on_disconnect=lambda a, r: lost.append(r))
        )
        await tx.send("let me in")
        await eventually(lambda: bool(lost), timeout=10)
        self.assertIn("certificate", lost[0].getErrorMessage())
        with self.assertRaises(TimeoutError):
            await rx.recv(timeout=0.5)

    @as_deferred
    async def test_endpoint_objects(self) -> None:
        """
        The library recipe without descriptions: a server endpoint with
        C{CertificateOptions(trustRoot=...)} and a client endpoint wrapping
        C{optionsForClientTLS(..., clientCertificate=...)} give mutual TLS.
        """
        from twisted.internet import reactor
        from twisted.internet.endpoints import HostnameEndpoint, SSL4ServerEndpoint, wrapClientTLS
        from twisted.internet.ssl import (
            Certificate,
            CertificateOptions,
            PrivateCertificate,
            optionsForClientTLS,
        )

        def load(cert: str, key: str) -> PrivateCertificate:
            with open(cert, "rb") as c, open(key, "rb") as k:
                return PrivateCertificate.loadPEM(c.read() + k.read())

        with open(self.pki.ca_file, "rb") as f:
            ca = Certificate.loadPEM(f.read())
        server_identity = load(self.server_cert, self.server_key)
        server_options = CertificateOptions(
            privateKey=server_identity.privateKey.original,
            certificate=server_identity.original,
            trustRoot=ca,  # requires and verifies client certificates
        )
        b = self.track(
            await barrier.barrier_on(
                SSL4ServerEndpoint(reactor, 0, server_options, interface="127.0.0.1"), parties=2
            )
        )
        port = b.local_address[1]

        def client_endpoint(identity: Optional[PrivateCertificate]) -> Any:
            options = optionsForClientTLS("localhost", trustRoot=ca, clientCertificate=identity)
            return wrapClientTLS(options, HostnameEndpoint(reactor, "127.0.0.1", port))

        w1 = self.track(await barrier.waiter_to(client_endpoint(load(*self.pki.client("one")))))
        w2 = self.track(await barrier.waiter_to(client_endpoint(load(*self.pki.client("two")))))
        await gatherResults([w1.wait(timeout=10), w2.wait(timeout=10)])
        intruder = self.track(await barrier.waiter_to(client_endpoint(None)))
        with self.assertRaises(ConnectionClosed):
            await intruder.wait(timeout=10)


class StandaloneTLSTests(_TLSCase):
    """
    The twistd plugin and the C{tsyncp} command over TLS, as child
    processes.
    """

    @as_deferred
    async def test_sink_mutual_tls(self) -> None:
        """
        A C{twistd tsyncp sink} on C{ssl:...:clientCA=...} takes items from
        C{tsyncp send} with a client certificate, and none from one
        without.
        """
        from .test_plugin import Child, ended_gracefully, read_lines, tsyncp_args, twistd_args

        output = os.path.join(self.dir, "sink.jsonl")
        listen = (
            f"ssl:0:privateKey={escape(self.server_key)}:certKey={escape(self.server_cert)}"
            f":clientCA={escape(self.pki.ca_file)}"
        )
        sink = Child(self, twistd_args("tsyncp", "sink", "--listen", listen, "--output", output))
        match = await sink.wait_for(rb"sink listening on 127\.0\.0\.1:(\d+)")
        port = int(match.group(1))
        cert, key = self.pki.client()
        status, _, err = await Child(
            self, tsyncp_args("send", self.tls(port, client=(cert, key)), '{"secure": 1}', "2")
        ).finish()
        self.assertEqual((status, err), (0, b""))
        await eventually(lambda: os.path.exists(output) and len(read_lines(output)) == 2, timeout=20)
        status, _, err = await Child(self, tsyncp_args("send", self.tls(port), '"no certificate"')).finish()
        self.assertEqual(status, 1)
        self.assertIn(b"certificate required", err)
        await sleep(0.5)
        status, out, err = await sink.terminate()
        self.assertTrue(ended_gracefully(status), (status, out, err))
        self.assertEqual([json.loads(line) for line in read_lines(output)], [{"secure": 1}, 2])

    @as_deferred
    async def test_recv_listen_tls(self) -> None:
        """
        C{tsyncp recv --listen ssl:...} takes items from a library sender
        connecting with C{tls:}.
        """
        from .test_plugin import Child, tsyncp_args

        listen = f"ssl:0:privateKey={escape(self.server_key)}:certKey={escape(self.server_cert)}"
        child = Child(self, tsyncp_args("recv", "--listen", listen, "--count", "2"))
        match = await child.wait_for(rb"listening on 127\.0\.0\.1:(\d+)", stream="err")
        tx = self.track(await mpsc.sender_to(self.tls(int(match.group(1)))))
        await tx.send("one")
        await tx.send({"two": 2})
        status, out, err = await child.finish()
        self.assertEqual(status, 0, err)
        self.assertEqual(out, b'"one"\n{"two":2}\n')
