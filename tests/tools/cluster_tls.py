"""Certificates as components.tls declares them, made for real by the local engine's pulumi-tls stand-in."""

from __future__ import annotations

from components.tls import server_addresses
from config import ClusterConfig, Host
from local_engine.providers import tls as certs
from local_engine.wire import unwrap
from render.credentials import ETCD_MEMBER_CN, ETCD_ROOT_USER
from render.paths import (
    ETCD_ROOT_CERT,
    ETCD_ROOT_KEY,
    ETCD_TLS_CA,
    ETCD_TLS_CERT,
    ETCD_TLS_KEY,
    HAPROXY_TLS_CA,
    HAPROXY_TLS_CLIENT,
    PATRONI_ETCD_CERT,
    PATRONI_ETCD_KEY,
    PG_TLS_CA,
    PG_TLS_CERT,
    PG_TLS_KEY,
)

ECDSA = {"algorithm": "ECDSA", "ecdsaCurve": "P256"}


class ToolsCA:
    """A CA that signs node and client certificates like the cluster's."""

    def __init__(self, name: str = "tools CA") -> None:
        self.key = unwrap(certs.private_key(ECDSA, "ca-key"))["privateKeyPem"]
        self.cert = certs.self_signed_cert({"privateKeyPem": self.key, "subject": {"commonName": name},
                                            "isCaCertificate": True, "validityPeriodHours": 24,
                                            "allowedUses": ["cert_signing", "crl_signing"]}, "ca")["certPem"]

    def sign(self, common_name: str | None, uses: list[str], dns: list[str] | None = None,
             ips: list[str] | None = None) -> tuple[str, str]:
        """(certificate, key) PEMs for `common_name` (None: a subject without one)."""
        key = unwrap(certs.private_key(ECDSA, "key"))["privateKeyPem"]
        subject = {"organization": "pgha"} | ({"commonName": common_name} if common_name is not None else {})
        request = certs.cert_request({"privateKeyPem": key, "subject": subject,
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

    def etcd_files(self, member: Host) -> dict[str, str]:
        """An etcd member's files: its certificate (ETCD_MEMBER_CN, server and client), the CA, and the root
        client certificate pgha's etcdctl calls present."""
        cert, key = self.sign(ETCD_MEMBER_CN, ["digital_signature", "key_encipherment", "server_auth", "client_auth"],
                              [member.name, "localhost"], ["127.0.0.1", str(member.address)])
        root_cert, root_key = self.sign(ETCD_ROOT_USER, ["digital_signature", "client_auth"])
        return {ETCD_TLS_CA: self.cert, ETCD_TLS_CERT: cert, ETCD_TLS_KEY: key, ETCD_ROOT_CERT: root_cert,
                ETCD_ROOT_KEY: root_key}

    def patroni_etcd_files(self) -> dict[str, str]:
        """A PostgreSQL node's etcd client certificate (no common name) and key."""
        cert, key = self.sign(None, ["digital_signature", "client_auth"])
        return {PATRONI_ETCD_CERT: cert, PATRONI_ETCD_KEY: key}

    def haproxy_files(self, node: Host) -> dict[str, str]:
        """An HAProxy node's files: the CA and its client certificate with the key, in one PEM."""
        cert, key = self.sign(node.name, ["digital_signature", "client_auth"])
        return {HAPROXY_TLS_CA: self.cert, HAPROXY_TLS_CLIENT: cert + key}


def tls_files(cfg: ClusterConfig, node: Host) -> dict[str, str]:
    """A fresh CA and PostgreSQL node `node`'s files signed by it."""
    return ToolsCA().node_files(cfg, node)
