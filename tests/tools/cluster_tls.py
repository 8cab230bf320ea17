"""Certificates as components.tls declares them, made for real by the local engine's pulumi-tls stand-in."""

from __future__ import annotations

from components.tls import server_addresses
from config import ClusterConfig, Host
from local_engine.providers import tls as certs
from local_engine.wire import unwrap
from render.paths import HAPROXY_TLS_CA, HAPROXY_TLS_CLIENT, PG_TLS_CA, PG_TLS_CERT, PG_TLS_KEY

ECDSA = {"algorithm": "ECDSA", "ecdsaCurve": "P256"}


class ToolsCA:
    """A CA that signs node and client certificates like the cluster's."""

    def __init__(self, name: str = "tools CA") -> None:
        self.key = unwrap(certs.private_key(ECDSA, "ca-key"))["privateKeyPem"]
        self.cert = certs.self_signed_cert({"privateKeyPem": self.key, "subject": {"commonName": name},
                                            "isCaCertificate": True, "validityPeriodHours": 24,
                                            "allowedUses": ["cert_signing", "crl_signing"]}, "ca")["certPem"]

    def sign(self, common_name: str, uses: list[str], dns: list[str] | None = None,
             ips: list[str] | None = None) -> tuple[str, str]:
        """(certificate, key) PEMs for `common_name`."""
        key = unwrap(certs.private_key(ECDSA, "key"))["privateKeyPem"]
        request = certs.cert_request({"privateKeyPem": key, "subject": {"commonName": common_name},
                                      "dnsNames": dns or [], "ipAddresses": ips or []}, "request")["certRequestPem"]
        cert = certs.locally_signed_cert({"certRequestPem": request, "caPrivateKeyPem": self.key,
                                          "caCertPem": self.cert, "validityPeriodHours": 24, "allowedUses": uses},
                                         "cert")["certPem"]
        return cert, key

    def node_files(self, cfg: ClusterConfig, node: Host) -> dict[str, str]:
        """A PostgreSQL node's files: its certificate (server and client), key and the CA."""
        cert, key = self.sign(node.name, ["digital_signature", "server_auth", "client_auth"],
                              [node.name, "localhost"], server_addresses(cfg, node))
        return {PG_TLS_CA: self.cert, PG_TLS_CERT: cert, PG_TLS_KEY: key}

    def haproxy_files(self, node: Host) -> dict[str, str]:
        """An HAProxy node's files: the CA and its client certificate with the key, in one PEM."""
        cert, key = self.sign(node.name, ["digital_signature", "client_auth"])
        return {HAPROXY_TLS_CA: self.cert, HAPROXY_TLS_CLIENT: cert + key}


def tls_files(cfg: ClusterConfig, node: Host) -> dict[str, str]:
    """A fresh CA and PostgreSQL node `node`'s files signed by it."""
    return ToolsCA().node_files(cfg, node)
