"""Certificates for the TLS tests, made by trustme (and, for the self-signed one, by
``cryptography``, which trustme is built on): a test CA, a server certificate for
127.0.0.1 and localhost, one that has expired, one that is self-signed, all as files for
the command line and as contexts for the API."""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

#: The names every server certificate here is for.
NAMES = ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class Certs:
    """A test CA and the files a server and its clients use.

    Attributes:
      ca: the trustme CA.
      ca_file: its certificate (what ``--ca`` and ``curl --cacert`` take).
      cert, key: the server's certificate (chain) and key, issued by ``ca``.
      expired_cert, expired_key: a certificate from ``ca`` whose time is over.
      self_signed_cert, self_signed_key: a certificate signed by its own key.
    """

    ca: trustme.CA
    ca_file: Path
    cert: Path
    key: Path
    expired_cert: Path
    expired_key: Path
    self_signed_cert: Path
    self_signed_key: Path

    def server_context(self) -> ssl.SSLContext:
        """A server context with the good certificate."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts the test CA only."""
        return ssl.create_default_context(cafile=str(self.ca_file))

    def serve_args(self) -> list[str]:
        """The serve commands' options for the good certificate."""
        return ["--tls-cert", str(self.cert), "--tls-key", str(self.key)]


def make_certs(directory: Path) -> Certs:
    """A new CA and its certificates, written under ``directory``."""
    ca = trustme.CA()
    ca_file = directory / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    good = ca.issue_cert(*NAMES)
    cert, key = directory / "cert.pem", directory / "key.pem"
    good.private_key_pem.write_to_path(str(key))
    cert.write_bytes(b"".join(blob.bytes() for blob in good.cert_chain_pems))
    now = datetime.datetime.now(datetime.UTC)
    old = ca.issue_cert(
        *NAMES,
        not_before=now - datetime.timedelta(days=30),
        not_after=now - datetime.timedelta(days=1),
    )
    expired_cert, expired_key = directory / "expired.pem", directory / "expired.key"
    old.private_key_pem.write_to_path(str(expired_key))
    expired_cert.write_bytes(b"".join(blob.bytes() for blob in old.cert_chain_pems))
    self_cert, self_key = directory / "self-signed.pem", directory / "self-signed.key"
    _self_signed(self_cert, self_key, now)
    return Certs(ca, ca_file, cert, key, expired_cert, expired_key, self_cert, self_key)


def _self_signed(cert_path: Path, key_path: Path, now: datetime.datetime) -> None:
    """What ``openssl req -x509 -newkey ec ...`` makes: a certificate for 127.0.0.1 and
    localhost signed by its own key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    names = x509.SubjectAlternativeName(
        [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(names, critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def spki_hash(cert_file: Path) -> str:
    """The base64 SHA-256 of the first certificate's SubjectPublicKeyInfo in
    ``cert_file``: what chromium's ``--ignore-certificate-errors-spki-list`` takes."""
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()
