"""A throwaway self-signed certificate for servers a test runs on 127.0.0.1.

The fake Discord's voice websocket needs one (discord.py always opens it as `wss://`), and so
does the deployment test's nginx (the site in deploy/ listens with TLS, as browsers need). It is
made fresh each time (P-256 is fast), lives in a temporary folder that `close()` removes, and
names only 127.0.0.1.
"""

import datetime
import ipaddress
import ssl
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

LOOPBACK = "127.0.0.1"


class LoopbackCertificate:
    """A self-signed CA:TRUE certificate for 127.0.0.1, with server and client SSL contexts."""

    def __init__(self) -> None:
        self._folder = tempfile.TemporaryDirectory(prefix="voxline-test-tls-")
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "voxline-test-loopback")])
        now = datetime.datetime.now(datetime.UTC)
        public = key.public_key()
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(LOOPBACK))]),
                critical=False,
            )
            # CA:TRUE lets OpenSSL accept this very certificate as the trust anchor.
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False
            )
            .sign(key, hashes.SHA256())
        )
        self.cert_pem: bytes = cert.public_bytes(serialization.Encoding.PEM)
        folder = Path(self._folder.name)
        self.cert_path = folder / "cert.pem"
        self.key_path = folder / "key.pem"
        self.cert_path.write_bytes(self.cert_pem)
        self.key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )

    def server_context(self) -> ssl.SSLContext:
        """What a server listens with."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_path, self.key_path)
        return context

    def client_context(self) -> ssl.SSLContext:
        """What a client must verify with: the default checks, trusting only this certificate."""
        context = ssl.create_default_context(cadata=self.cert_pem.decode("ascii"))
        return context

    def close(self) -> None:
        self._folder.cleanup()
