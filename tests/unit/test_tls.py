"""cluster.security.tls: the server certificate passes a real TLS handshake for its hosts, checked
against the CA, and files are reused or remade as they should be; the API's start-up health
check trusts exactly the certificate it deployed. Handshakes run in memory."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from cluster.security.tls import TlsFiles, ensure_certs
from cluster.settings import Settings


def handshake(
    files: TlsFiles, trusted_ca: Path, server_hostname: str, client: ssl.SSLContext | None = None
) -> None:
    """A client that trusts only `trusted_ca` (or `client`) and a server with `files`, over
    memory BIOs."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(files.cert, files.key)
    client_ctx = client or ssl.create_default_context(cafile=trusted_ca)
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    ends = {
        "client": client_ctx.wrap_bio(c_in, c_out, server_hostname=server_hostname),
        "server": server_ctx.wrap_bio(s_in, s_out, server_side=True),
    }
    done = {"client": False, "server": False}
    for _ in range(20):
        for name, end in ends.items():
            if not done[name]:
                try:
                    end.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            return
    raise AssertionError("handshake did not finish")


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_server_certificate_verifies_against_the_ca(tmp_path: Path, host: str) -> None:
    files = ensure_certs(tmp_path / "tls")
    handshake(files, files.ca_cert, host)


def test_other_hosts_and_other_cas_are_refused(tmp_path: Path) -> None:
    files = ensure_certs(tmp_path / "tls")
    other = ensure_certs(tmp_path / "other")
    with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
        handshake(files, files.ca_cert, "example.com")
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
        handshake(files, other.ca_cert, "127.0.0.1")


def test_files_are_reused_and_a_missing_key_is_remade(tmp_path: Path) -> None:
    files = ensure_certs(tmp_path)
    ca, cert = files.ca_cert.read_bytes(), files.cert.read_bytes()
    assert ensure_certs(tmp_path).cert.read_bytes() == cert
    files.key.unlink()
    again = ensure_certs(tmp_path)
    assert again.ca_cert.read_bytes() == ca  # clients keep trusting the same CA
    assert again.cert.read_bytes() != cert
    handshake(again, again.ca_cert, "127.0.0.1")
    assert {p.name: p.stat().st_mode & 0o777 for p in (again.key, again.ca_key)} == {
        "server-key.pem": 0o600,
        "ca-key.pem": 0o600,
    }


def test_new_hosts_get_a_new_server_certificate(tmp_path: Path) -> None:
    ensure_certs(tmp_path)
    files = ensure_certs(tmp_path, hosts=("127.0.0.1", "localhost", "bus.internal"))
    handshake(files, files.ca_cert, "bus.internal")


def test_the_api_health_check_trusts_the_deployed_certificate_even_without_its_ca(
    tmp_path: Path,
) -> None:
    from serve.deploy import health_check_verify

    files = ensure_certs(tmp_path / "tls")
    leaf = tmp_path / "leaf.pem"  # a certificate file without the CA that signed it
    leaf.write_text(
        files.cert.read_text().split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n"
    )
    for certfile in (files.cert, leaf):
        verify = health_check_verify(Settings(api_tls_certfile=certfile, api_tls_keyfile=files.key))
        assert isinstance(verify, ssl.SSLContext)
        handshake(files, files.ca_cert, "127.0.0.1", client=verify)
        with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
            handshake(files, files.ca_cert, "example.com", client=verify)
    other = ensure_certs(tmp_path / "other")
    verify = health_check_verify(Settings(api_tls_certfile=other.cert, api_tls_keyfile=other.key))
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(files, files.ca_cert, "127.0.0.1", client=verify)  # not what was deployed
