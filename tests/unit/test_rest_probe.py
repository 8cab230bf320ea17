"""The program's probe of a running cluster (Patroni's /cluster) and the hosts' REST helper, against real local
HTTP and HTTPS servers: HTTPS first, plain HTTP only where the server does not speak TLS."""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import json
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from render.shell import python_rest_open
from targets import base as target_base

BODY = {"members": [{"name": "pg-1"}]}
FETCH_JSON = target_base.fetch_json  # the real one (tests/conftest.py stands one in for every test)


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status = 503 if self.path == "/primary" else 200
        data = json.dumps(BODY).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pg-1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp / "server.crt", tmp / "server.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


@pytest.fixture(params=["http", "https"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, int, Path]]:
    """A local server speaking plain HTTP or HTTPS (self-signed, naming 127.0.0.1): (scheme, port, cert)."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    cert, key = _self_signed(tmp_path)
    if request.param == "https":
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield request.param, httpd.server_address[1], cert
    httpd.shutdown()
    httpd.server_close()


def test_the_program_probe_reads_https_and_falls_back_to_http_only_for_a_plain_server(
        server: tuple[str, int, Path]) -> None:
    _, port, _ = server
    assert FETCH_JSON(f"https://127.0.0.1:{port}/cluster") == BODY
    assert FETCH_JSON(f"https://127.0.0.1:{port}/primary") is None, "a 503 is no answer"


def test_the_probe_of_a_closed_port_answers_none() -> None:
    assert FETCH_JSON("https://127.0.0.1:9/cluster") is None


def test_the_hosts_rest_helper_verifies_https_and_falls_back_for_a_plain_server(
        server: tuple[str, int, Path], tmp_path: Path) -> None:
    scheme, port, cert = server
    source = python_rest_open(port).replace("'/etc/patroni/tls/ca.crt'", repr(str(cert)))
    script = source + (
        "import json, sys, urllib.error\n"
        "print(json.load(rest_open('/cluster'))['members'][0]['name'])\n"
        "try:\n    rest_open('/primary')\nexcept urllib.error.HTTPError as error:\n    print(error.code)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and out.stdout.split() == ["pg-1", "503"], out.stderr
    if scheme == "https":  # the control: a server the CA does not vouch for is refused, never asked over http
        (tmp_path / "other").mkdir()
        other, _ = _self_signed(tmp_path / "other")
        source = python_rest_open(port).replace("'/etc/patroni/tls/ca.crt'", repr(str(other)))
        out = subprocess.run([sys.executable, "-c", source + "rest_open('/cluster')\n"], capture_output=True,
                             text=True, timeout=30)
        assert out.returncode != 0 and "CERTIFICATE_VERIFY_FAILED" in out.stderr, out.stderr
