"""
Throwaway certificate authorities and certificates for the TLS tests,
generated at test time with C{cryptography} (installed by the
C{twisted[tls]} extra).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from typing import List, Optional, Sequence, Tuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key() -> ec.EllipticCurvePrivateKey:
    # EC keys are generated in microseconds; RSA would slow every test.
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


class CA:
    """
    A certificate authority that issues server and client certificates.

    @ivar cert_pem: The CA certificate, PEM.
    """

    def __init__(self, common_name: str = "tsyncp_tx test CA") -> None:
        self._key = _key()
        now = datetime.datetime.now(datetime.timezone.utc)
        self._name = _name(common_name)
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(self._name)
            .issuer_name(self._name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True,
                    crl_sign=True, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .sign(self._key, hashes.SHA256())
        )
        self.cert_pem = self._cert.public_bytes(serialization.Encoding.PEM)

    def issue(self, common_name: str, dns_names: Sequence[str] = (), ips: Sequence[str] = (), client: bool = False) -> Tuple[bytes, bytes]:
        """
        Issue a certificate.

        @param common_name: Its subject's common name.
        @param dns_names: DNS subject alternative names.
        @param ips: IP address subject alternative names.
        @param client: A client certificate (else a server one).
        @return: C{(cert_pem, key_pem)}.
        """
        key = _key()
        now = datetime.datetime.now(datetime.timezone.utc)
        names: List[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
        names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self._name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH]
                ),
                critical=False,
            )
        )
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)


class Files:
    """
    A CA and certificates written to a directory, with the paths the
    endpoint descriptions need.

    @ivar ca_dir: A directory holding only the CA certificate (C{ca.pem}),
        for C{trustRoots=}.
    @ivar ca_file: The CA certificate file, for C{clientCA=}.
    """

    def __init__(self, directory: str, ca: Optional[CA] = None) -> None:
        """
        @param directory: Where to write (created).
        @param ca: The CA (default: a new one).
        """
        self.directory = directory
        self.ca = ca if ca is not None else CA()
        self.ca_dir = os.path.join(directory, "trust")
        os.makedirs(self.ca_dir)
        self.ca_file = self._write("trust/ca.pem", self.ca.cert_pem)

    def _write(self, name: str, data: bytes) -> str:
        path = os.path.join(self.directory, name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def issue(self, stem: str, common_name: str, dns_names: Sequence[str] = (), ips: Sequence[str] = (), client: bool = False) -> Tuple[str, str]:
        """
        Issue a certificate and write it and its key.

        @param stem: File name stem (C{stem.pem}, C{stem.key}).
        @param common_name: The subject's common name.
        @param dns_names: DNS names.
        @param ips: IP addresses.
        @param client: A client certificate.
        @return: C{(cert_path, key_path)}.
        """
        cert, key = self.ca.issue(common_name, dns_names, ips, client)
        return self._write(stem + ".pem", cert), self._write(stem + ".key", key)

    def server(self, stem: str = "server", dns_names: Sequence[str] = ("localhost",)) -> Tuple[str, str]:
        """
        A server certificate for C{localhost} (and 127.0.0.1).

        @param stem: File name stem.
        @param dns_names: The names it is valid for.
        @return: C{(cert_path, key_path)}.
        """
        return self.issue(stem, dns_names[0] if dns_names else "server", dns_names, ("127.0.0.1",))

    def client(self, stem: str = "client") -> Tuple[str, str]:
        """
        A client certificate.

        @param stem: File name stem.
        @return: C{(cert_path, key_path)}.
        """
        return self.issue(stem, stem, client=True)


def escape(path: str) -> str:
    """
    Escape a path for an endpoint description (colons, backslashes).

    @param path: The path.
    @return: The escaped path.
    """
    return path.replace("\\", "\\\\").replace(":", "\\:")
