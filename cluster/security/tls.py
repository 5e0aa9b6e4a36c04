"""Certificates for TLS in transit: a CA, and a server certificate it signs, as PEM files.

The local stack uses them for Kafka's SSL listener and the tests for HTTPS; production brings
certificates from its own CA. Files are reused while valid, so clients keep trusting the same CA
across restarts; keys are PKCS#8 (what Kafka's PEM keystore reads), mode 0600.

>>> import tempfile
>>> folder = Path(tempfile.mkdtemp())
>>> files = ensure_certs(folder)
>>> sorted(p.name for p in folder.iterdir())
['ca-key.pem', 'ca.pem', 'server-key.pem', 'server.pem']
>>> ensure_certs(folder).cert.read_bytes() == files.cert.read_bytes()  # reused, not remade
True
>>> oct(files.key.stat().st_mode & 0o777)
'0o600'
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

HOSTS = ("127.0.0.1", "localhost")
CA_DAYS = 3650
SERVER_DAYS = 825  # the longest validity clients such as macOS accept for a server certificate
RENEW_BEFORE = dt.timedelta(days=1)


@dataclass(frozen=True)
class TlsFiles:
    ca_cert: Path  # what clients trust
    ca_key: Path
    cert: Path  # the server certificate, then the CA's: the chain a server presents
    key: Path


def ensure_certs(directory: Path, hosts: Sequence[str] = HOSTS) -> TlsFiles:
    """The CA and server files in `directory`, made when missing, expiring or not matching."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    names = ("ca.pem", "ca-key.pem", "server.pem", "server-key.pem")
    files = TlsFiles(*(directory / name for name in names))
    ca = _load_ca(files)
    if ca is None:
        ca = _make_ca()
        _write(files.ca_key, _key_pem(ca[1]), private=True)
        _write(files.ca_cert, ca[0].public_bytes(serialization.Encoding.PEM))
    if not _server_ok(files, ca[0], hosts):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _sign_server(key, ca, hosts)
        _write(files.key, _key_pem(key), private=True)
        chain = cert.public_bytes(serialization.Encoding.PEM)
        _write(files.cert, chain + ca[0].public_bytes(serialization.Encoding.PEM))
    return files


def _load_ca(files: TlsFiles) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
    try:
        cert = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
        key = serialization.load_pem_private_key(files.ca_key.read_bytes(), password=None)
    except (OSError, ValueError):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not _valid(cert):
        return None
    return cert, key


def _server_ok(files: TlsFiles, ca: x509.Certificate, hosts: Sequence[str]) -> bool:
    """Signed by this CA, valid, naming every host, and with its key beside it."""
    try:
        cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
        cert.verify_directly_issued_by(ca)
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        key = serialization.load_pem_private_key(files.key.read_bytes(), password=None)
    except (OSError, ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        return False
    return (
        _valid(cert)
        and set(_alt_names(hosts)) <= set(names)
        and key.public_key() == cert.public_key()
    )


def _valid(cert: x509.Certificate) -> bool:
    return cert.not_valid_after_utc - RENEW_BEFORE > dt.datetime.now(dt.UTC)


def _make_ca() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Event Streaming Bus local CA")])
    cert = (
        _builder(name, name, key.public_key(), CA_DAYS)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage("digital_signature", "key_cert_sign", "crl_sign"), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _sign_server(
    key: ec.EllipticCurvePrivateKey,
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    hosts: Sequence[str],
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
    ca_ski = ca[0].extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (
        _builder(subject, ca[0].subject, key.public_key(), SERVER_DAYS)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage("digital_signature"), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(_alt_names(hosts)), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca[1], hashes.SHA256())
    )


def _builder(
    subject: x509.Name, issuer: x509.Name, public: ec.EllipticCurvePublicKey, days: int
) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))  # tolerates small clock skew
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    )


def _key_usage(*allowed: str) -> x509.KeyUsage:
    flags = (
        "digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
        "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only",
    )  # fmt: skip
    return x509.KeyUsage(**{flag: flag in allowed for flag in flags})


def _alt_names(hosts: Sequence[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes, *, private: bool = False) -> None:
    """Atomic replace; a private file is created 0600, never readable by others in between."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)  # a crashed run's leftover keeps its mode under O_TRUNC
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(tmp, path)
