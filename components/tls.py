"""Generated TLS for PostgreSQL: one CA per cluster, one server certificate per PostgreSQL node.

Keys never leave pulumi-tls as anything but secret Outputs. Clients verify a node with the CA
(`ca_certificate` stack output): every certificate names the node and each address a client or a
peer dials to reach it (the node itself, the HAProxy nodes, the virtual IP, the target's client addresses),
so `sslmode=verify-full` holds through HAProxy's TCP pass-through as well as between members.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_tls as tls

from components.secrets import secret
from config.models import ClusterConfig, Host

KEY_ALGORITHM = "ECDSA"
KEY_CURVE = "P256"
CA_VALIDITY_HOURS = 10 * 365 * 24
SERVER_VALIDITY_HOURS = 2 * 365 * 24
# Within this many hours of expiry the next `pulumi up` replaces a server certificate.
EARLY_RENEWAL_HOURS = 30 * 24


@dataclass(frozen=True)
class ServerCertificate:
    """A node's certificate and key (PEM); the key is a secret Output."""

    cert_pem: pulumi.Output[str]
    key_pem: pulumi.Output[str]


class ClusterCA:
    """The cluster's certificate authority, declared under `parent`."""

    def __init__(self, name: str, cfg: ClusterConfig, client_addresses: Sequence[str],
                 parent: pulumi.Resource) -> None:
        self._cfg = cfg
        self._client_addresses = client_addresses
        opts = pulumi.ResourceOptions(parent=parent)
        self._key = tls.PrivateKey(f"{name}-ca-key", algorithm=KEY_ALGORITHM, ecdsa_curve=KEY_CURVE, opts=opts)
        self._cert = tls.SelfSignedCert(
            f"{name}-ca-cert",
            private_key_pem=self._key.private_key_pem,
            subject=tls.SelfSignedCertSubjectArgs(common_name=f"{cfg.name} PostgreSQL CA", organization="pgha"),
            is_ca_certificate=True,
            validity_period_hours=CA_VALIDITY_HOURS,
            allowed_uses=["cert_signing", "crl_signing"],
            opts=opts,
        )
        self.cert_pem: pulumi.Output[str] = self._cert.cert_pem

    def server_certificate(self, name: str, node: Host, parent: pulumi.Resource) -> ServerCertificate:
        """Declare a key and a CA-signed server certificate for PostgreSQL node `node`."""
        opts = pulumi.ResourceOptions(parent=parent)
        key = tls.PrivateKey(f"{name}-tls-key", algorithm=KEY_ALGORITHM, ecdsa_curve=KEY_CURVE, opts=opts)
        request = tls.CertRequest(
            f"{name}-tls-request",
            private_key_pem=key.private_key_pem,
            subject=tls.CertRequestSubjectArgs(common_name=node.name, organization="pgha"),
            dns_names=[node.name, "localhost"],
            ip_addresses=server_addresses(self._cfg, node, self._client_addresses),
            opts=opts,
        )
        cert = tls.LocallySignedCert(
            f"{name}-tls-cert",
            cert_request_pem=request.cert_request_pem,
            ca_private_key_pem=self._key.private_key_pem,
            ca_cert_pem=self._cert.cert_pem,
            validity_period_hours=SERVER_VALIDITY_HOURS,
            early_renewal_hours=EARLY_RENEWAL_HOURS,
            allowed_uses=["digital_signature", "key_encipherment", "server_auth"],
            opts=opts,
        )
        return ServerCertificate(cert.cert_pem, secret(key.private_key_pem))


def server_addresses(cfg: ClusterConfig, node: Host, client_addresses: Sequence[str] = ()) -> list[str]:
    """Every IP address a client or a peer may dial to reach PostgreSQL on `node`; `client_addresses` are
    the target's own (the docker target's published address)."""
    addresses = [node.address, *(h.address for h in cfg.haproxy.nodes)]
    if cfg.haproxy.virtual_ip is not None:
        addresses.append(cfg.haproxy.virtual_ip)
    return list(dict.fromkeys(["127.0.0.1", *(str(a) for a in addresses), *client_addresses]))
