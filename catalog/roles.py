"""The role table: every service tier pgha places on hosts, with what each needs and who places it.

Components take their packages, type tokens and service users from here, the node image installs the
union of the packages, and the policy pack counts members per role and names them with these nouns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from catalog import limits


@dataclass(frozen=True)
class Role:
    """One service tier: where its hosts are configured, what it installs and listens on, its minimum."""

    name: str  # the role a placed service carries ("etcd", "postgres", "haproxy")
    component: str  # type token of the ComponentResource that places it
    hosts: str  # the stack-config list of its hosts
    packages: tuple[str, ...]  # Debian packages every host of the role needs
    ports: tuple[str, ...]  # stack-config fields of the ports it listens on
    service_users: tuple[str, ...]  # system users its processes run as (created by the packages)
    singular: str
    plural: str
    minimum: int
    odd: bool  # the count must be odd (a quorum)
    why: str  # why the minimum
    # Packages needed only with an optional feature, by feature name.
    feature_packages: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def packages_for(self, **features: bool) -> tuple[str, ...]:
        """The role's packages plus those of the features given as true; an unknown feature is an error."""
        known = dict(self.feature_packages)
        unknown = sorted(set(features) - set(known))
        if unknown:
            raise ValueError(f"role {self.name}: unknown feature(s) {', '.join(unknown)} (known: {', '.join(known)})")
        extra = [p for feature, on in features.items() if on for p in known[feature]]
        return tuple(dict.fromkeys([*self.packages, *extra]))

    def all_packages(self) -> tuple[str, ...]:
        """Every package the role may need, features included."""
        return self.packages_for(**dict.fromkeys(dict(self.feature_packages), True))

    def noun(self, count: int) -> str:
        """`count` members of this role, in words."""
        return self.singular if count == 1 else self.plural


ETCD: Final = Role(
    name="etcd",
    component="pgha:index:EtcdCluster",
    hosts="etcd.members",
    packages=("etcd-server", "etcd-client"),
    ports=("etcd.client_port", "etcd.peer_port"),
    service_users=("etcd",),
    singular="etcd member",
    plural="etcd members",
    minimum=limits.ETCD_MIN_MEMBERS,
    odd=True,
    why="a quorum of 3 survives the loss of one member; an even count adds no failure tolerance",
)
POSTGRES: Final = Role(
    name="postgres",
    component="pgha:index:PatroniNode",
    hosts="postgres.nodes",
    packages=("postgresql-17", "patroni", "python3-etcd", "python3-psycopg2", "pgbackrest", "cron", "curl"),
    ports=("postgres.port", "patroni.rest_api_port"),
    service_users=("postgres",),
    singular="PostgreSQL node",
    plural="PostgreSQL nodes",
    minimum=limits.POSTGRES_MIN_NODES,
    odd=False,
    why="a primary, a synchronous standby and one more standby to fail over to",
)
HAPROXY: Final = Role(
    name="haproxy",
    component="pgha:index:HAProxyGroup",
    hosts="haproxy.nodes",
    packages=("haproxy", "curl", "socat"),  # socat: the admin socket, to carry server states over a reload
    ports=("haproxy.read_write_port", "haproxy.read_only_port", "haproxy.stats_port"),
    service_users=("haproxy",),
    singular="HAProxy node",
    plural="HAProxy nodes",
    minimum=limits.HAPROXY_MIN_NODES,
    odd=False,
    why="the virtual IP needs a second node to move to",
    # keepalived moves the virtual IP; its check script needs pgrep (procps).
    feature_packages=(("virtual_ip", ("keepalived", "procps")),),
)

ROLES: Final = {role.name: role for role in (ETCD, POSTGRES, HAPROXY)}

# Components that are not a role of their own.
CLUSTER_COMPONENT: Final = "pgha:index:PostgresCluster"
BACKUP_COMPONENT: Final = "pgha:index:BackupRepo"
# What every placed service declares it installs and listens on, for the policy pack (targets.base).
SERVICE_MANIFEST: Final = "pgha:index:ServiceManifest"

# What every ssh-target host needs beyond its roles' packages: the host firewall (render/firewall.py), when enabled.
# Not in the container image: containers are reached only through their own network and carry no firewall.
HOST_EXTRA_PACKAGES: Final = ("nftables",)

# What the container image needs beyond the roles' packages: the container init's tools (setpriv,
# flock: util-linux), TLS roots, and `ip` for the tests that look at the virtual IP.
IMAGE_EXTRA_PACKAGES: Final = ("ca-certificates", "iproute2", "procps", "util-linux")


def role_packages() -> tuple[str, ...]:
    """Every package any role may install, features included."""
    return tuple(dict.fromkeys(p for role in ROLES.values() for p in role.all_packages()))


def host_packages() -> tuple[str, ...]:
    """Every package pgha may install on an ssh-target host (the ones `ssh.packages` may pin)."""
    return tuple(dict.fromkeys([*role_packages(), *HOST_EXTRA_PACKAGES]))


def image_packages() -> tuple[str, ...]:
    """Every package of the one node image the docker target runs for all roles."""
    return tuple(dict.fromkeys([*role_packages(), *IMAGE_EXTRA_PACKAGES]))
