"""Generated TLS: one CA per cluster, a certificate per PostgreSQL node (PostgreSQL and the Patroni REST API
serve it; the node presents it to the other members' REST APIs), a client certificate per HAProxy node; for
etcd a certificate per member (served to clients and peers, presented to peers), a `root` client certificate
per member (pgha's own etcdctl calls) and an etcd client certificate per PostgreSQL node (Patroni's).

Keys never leave pulumi-tls as anything but secret Outputs. Clients verify a node with the CA
(`ca_certificate` stack output): every certificate names the node and each address a client or a
peer dials to reach it (the node itself, the HAProxy nodes, the virtual IP, the target's client addresses),
so `sslmode=verify-full` holds through HAProxy's TCP pass-through as well as between members.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import pulumi
import pulumi_tls as tls

from components.secrets import secret
from config.models import ClusterConfig, Host
from render.credentials import ETCD_MEMBER_CN, ETCD_ROOT_USER

KEY_ALGORITHM = "ECDSA"
KEY_CURVE = "P256"
CA_VALIDITY_HOURS = 10 * 365 * 24
CA_USES = ["cert_signing", "crl_signing"]
CLIENT_USES = ["digital_signature", "client_auth"]


@dataclass(frozen=True)
class ServerCertificate:
    """A node's certificate chain and key (PEM); the key is a secret Output."""

    cert_pem: pulumi.Output[str]
    key_pem: pulumi.Output[str]


class ClusterCA:
    """The cluster's certificate authority (its current generation, and the previous one while it is still
    trusted), declared under `parent`.

    `cert_pem` is the trust bundle clients and members verify with: the current CA, and the previous one
    while `tls.trust_previous_ca` holds. While it holds, the current CA is also cross-signed by the previous
    one and every server sends that cross certificate after its own: a client that still trusts only the
    previous CA builds the path leaf -> current CA (cross-signed) -> previous CA, one that trusts the new
    bundle stops at the current CA. The first generation keeps the resource names of before rotation."""

    def __init__(self, name: str, cfg: ClusterConfig, client_addresses: Sequence[str],
                 parent: pulumi.Resource) -> None:
        self._cfg = cfg
        self._name = name
        self._client_addresses = client_addresses
        self._opts = pulumi.ResourceOptions(parent=parent)
        generation = cfg.tls.ca_generation
        self._key, self._cert = self._authority(generation)
        self._cross: pulumi.Output[str] | None = None
        bundle: list[pulumi.Input[str]] = [self._cert.cert_pem]
        if cfg.tls.trust_previous_ca:
            previous_key, previous_cert = self._authority(generation - 1)
            request = tls.CertRequest(
                f"{self._prefix(generation)}-cross-request",
                private_key_pem=self._key.private_key_pem,
                subject=tls.CertRequestSubjectArgs(common_name=self._common_name(generation), organization="pgha"),
                opts=self._opts,
            )
            cross = tls.LocallySignedCert(
                f"{self._prefix(generation)}-cross-cert",
                cert_request_pem=request.cert_request_pem,
                ca_private_key_pem=previous_key.private_key_pem,
                ca_cert_pem=previous_cert.cert_pem,
                is_ca_certificate=True,
                validity_period_hours=CA_VALIDITY_HOURS,
                allowed_uses=CA_USES,
                opts=self._opts,
            )
            self._cross = cross.cert_pem
            bundle.append(previous_cert.cert_pem)
        self.cert_pem: pulumi.Output[str] = pulumi.Output.all(*bundle).apply(_concat)

    def _prefix(self, generation: int) -> str:
        return f"{self._name}-ca" if generation == 0 else f"{self._name}-ca{generation}"

    def _common_name(self, generation: int) -> str:
        return f"{self._cfg.name} PostgreSQL CA" + ("" if generation == 0 else f" {generation}")

    def _authority(self, generation: int) -> tuple[tls.PrivateKey, tls.SelfSignedCert]:
        prefix = self._prefix(generation)
        key = tls.PrivateKey(f"{prefix}-key", algorithm=KEY_ALGORITHM, ecdsa_curve=KEY_CURVE, opts=self._opts)
        cert = tls.SelfSignedCert(
            f"{prefix}-cert",
            private_key_pem=key.private_key_pem,
            subject=tls.SelfSignedCertSubjectArgs(common_name=self._common_name(generation), organization="pgha"),
            is_ca_certificate=True,
            validity_period_hours=CA_VALIDITY_HOURS,
            allowed_uses=CA_USES,
            opts=self._opts,
        )
        return key, cert

    def server_certificate(self, name: str, node: Host, parent: pulumi.Resource) -> ServerCertificate:
        """Declare a key and a certificate for PostgreSQL node `node`, signed by the current CA; the next
        `pulumi up` within `tls.renew_before_days` of its expiry replaces it. PostgreSQL and the REST API serve
        it, and the node presents it to the other members' REST APIs (patronictl, /failsafe): client_auth too."""
        return self._leaf(f"{name}-tls", node, parent, ["digital_signature", "key_encipherment", "server_auth",
                                                         "client_auth"],
                          dns_names=[node.name, "localhost"],
                          ip_addresses=server_addresses(self._cfg, node, self._client_addresses))

    def client_certificate(self, name: str, host: Host, parent: pulumi.Resource) -> ServerCertificate:
        """Declare a key and a client certificate for `host` (an HAProxy node presenting it to the Patroni
        REST APIs it checks), signed by the current CA and renewed like the server certificates."""
        return self._leaf(f"{name}-client", host, parent, CLIENT_USES)

    def etcd_member_certificate(self, name: str, member: Host, parent: pulumi.Resource) -> ServerCertificate:
        """Declare a key and a certificate for etcd member `member`: it serves it on its client and peer ports
        and presents it when it dials the other members (and its own gateway dials its gRPC listener), so
        server_auth and client_auth; the common name is ETCD_MEMBER_CN, which the peer port requires."""
        return self._leaf(f"{name}-etcd-tls", member, parent, ["digital_signature", "key_encipherment",
                                                               "server_auth", "client_auth"],
                          dns_names=[member.name, "localhost"],
                          ip_addresses=list(dict.fromkeys(["127.0.0.1", str(member.address)])),
                          common_name=ETCD_MEMBER_CN)

    def etcd_root_certificate(self, name: str, member: Host, parent: pulumi.Resource) -> ServerCertificate:
        """Declare a key and a client certificate with the common name `root`, kept on etcd member `member`:
        pgha's own etcdctl calls there act as etcd's root user (which has no password)."""
        return self._leaf(f"{name}-etcd-root", member, parent, CLIENT_USES, common_name=ETCD_ROOT_USER)

    def etcd_client_certificate(self, name: str, node: Host, parent: pulumi.Resource) -> ServerCertificate:
        """Declare a key and a client certificate without a common name for PostgreSQL node `node`: Patroni
        presents it to etcd, whose gateway (Patroni's only way in) refuses a certificate that has one; Patroni
        acts as its etcd user by password."""
        return self._leaf(f"{name}-etcd-client", node, parent, CLIENT_USES, common_name=None,
                          unit="patroni etcd client")

    def _leaf(self, prefix: str, host: Host, parent: pulumi.Resource, uses: list[str],
              dns_names: list[str] | None = None, ip_addresses: list[str] | None = None,
              common_name: str | Literal[True] | None = True, unit: str | None = None) -> ServerCertificate:
        """A leaf certificate; its common name is the host's name unless `common_name` says another (None: none)."""
        opts = pulumi.ResourceOptions(parent=parent)
        key = tls.PrivateKey(f"{prefix}-key", algorithm=KEY_ALGORITHM, ecdsa_curve=KEY_CURVE, opts=opts)
        request = tls.CertRequest(
            f"{prefix}-request",
            private_key_pem=key.private_key_pem,
            subject=tls.CertRequestSubjectArgs(common_name=host.name if common_name is True else common_name,
                                               organization="pgha", organizational_unit=unit),
            dns_names=dns_names,
            ip_addresses=ip_addresses,
            opts=opts,
        )
        cert = tls.LocallySignedCert(
            f"{prefix}-cert",
            cert_request_pem=request.cert_request_pem,
            ca_private_key_pem=self._key.private_key_pem,
            ca_cert_pem=self._cert.cert_pem,
            validity_period_hours=self._cfg.tls.server_validity_days * 24,
            early_renewal_hours=self._cfg.tls.renew_before_days * 24,
            allowed_uses=uses,
            opts=opts,
        )
        chain = cert.cert_pem if self._cross is None else pulumi.Output.all(cert.cert_pem, self._cross).apply(_concat)
        return ServerCertificate(chain, secret(key.private_key_pem))


def _concat(pems: list[str]) -> str:
    return "".join(p if p.endswith("\n") else p + "\n" for p in pems)


def server_addresses(cfg: ClusterConfig, node: Host, client_addresses: Sequence[str] = ()) -> list[str]:
    """Every IP address a client or a peer may dial to reach PostgreSQL on `node`; `client_addresses` are
    the target's own (the docker target's published address)."""
    addresses = [node.address, *(h.address for h in cfg.haproxy.nodes)]
    if cfg.haproxy.virtual_ip is not None:
        addresses.append(cfg.haproxy.virtual_ip)
    return list(dict.fromkeys(["127.0.0.1", *(str(a) for a in addresses), *client_addresses]))
