"""Typed, validated stack configuration for a pgha cluster (pure: no pulumi import)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Network, IPv6Network, ip_network
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from catalog import limits
from catalog.roles import ETCD, HAPROXY, POSTGRES, ROLES, host_packages
from config.host_keys import HostKey, parse_key, pin

Name = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$")]
Port = Annotated[int, Field(ge=1, le=65535)]
Identifier = Annotated[str, StringConstraints(pattern=r"^[a-z_][a-z0-9_]{0,62}$")]
# A Debian package version as apt takes it in NAME=VERSION: [epoch:]upstream[-revision].
DebianVersion = Annotated[str, StringConstraints(pattern=r"^([0-9]+:)?[0-9][A-Za-z0-9.+~-]*$", max_length=100)]
# A host's public key as its /etc/ssh/ssh_host_*_key.pub holds it (`TYPE BASE64 [COMMENT]`), kept as `TYPE BASE64`.
HostKeyLine = Annotated[str, AfterValidator(lambda text: parse_key(text).line)]

# Patroni's own lower bounds: one source with the policy pack (catalog/limits.py).
PATRONI_MIN_TTL = limits.PATRONI_MIN_TTL
PATRONI_MIN_LOOP_WAIT = limits.PATRONI_MIN_LOOP_WAIT
PATRONI_MIN_RETRY_TIMEOUT = limits.PATRONI_MIN_RETRY_TIMEOUT

_CRON_FIELD = r"(\*|\d+(-\d+)?)(/\d+)?(,(\*|\d+(-\d+)?)(/\d+)?)*"
CRON_PATTERN = rf"^{_CRON_FIELD}( {_CRON_FIELD}){{4}}$"
Cron = Annotated[str, StringConstraints(pattern=CRON_PATTERN)]

# Parameters Patroni or this program own; a user value would be overridden or break the cluster.
RESERVED_PARAMETERS = frozenset(
    {
        "listen_addresses",
        "port",
        "hba_file",
        "ident_file",
        "data_directory",
        "config_file",
        "archive_mode",
        "archive_command",
        "restore_command",
        "primary_conninfo",
        "primary_slot_name",
        "synchronous_standby_names",
        "cluster_name",
        "wal_level",
        "hot_standby",
        "password_encryption",
    }
)

TIMING_PROFILES: dict[str, dict[str, dict[str, int]]] = {
    # Measured in docs/BENCHMARKS.md. After a hard kill the leader key lives on for ttl minus the age
    # of its last refresh (0..loop_wait), so at Patroni's minimum ttl a longer loop_wait shortens the
    # average hard-kill outage; but a replica may also wait up to loop_wait to take over from a leader
    # that stopped cleanly (4 s measured up to 6.6 s). 3 balances both; retry_timeout takes what is left
    # of loop_wait + 2*retry_timeout <= ttl.
    "tuned": {
        "patroni": {"ttl": 20, "loop_wait": 3, "retry_timeout": 8},
        "check": {"inter_ms": 1000, "fastinter_ms": 500, "downinter_ms": 500, "fall": 2, "rise": 1},
    },
    # Patroni's upstream defaults with HAProxy's usual 3 s checks: slower failover, more tolerance
    # for slow disks and networks.
    "conservative": {
        "patroni": {"ttl": 30, "loop_wait": 10, "retry_timeout": 10},
        "check": {"inter_ms": 3000, "fastinter_ms": 1000, "downinter_ms": 3000, "fall": 3, "rise": 2},
    },
}


class Model(BaseModel):
    """Base for all config models: unknown keys are errors and values never change after parsing."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Host(Model):
    """A machine (ssh target) or container (docker target) that runs one service."""

    name: Name
    address: IPv4Address

    @field_validator("name")
    @classmethod
    def _not_an_etcd_user(cls, value: str) -> str:
        # A host's certificates carry its name as their common name, and etcd takes a client certificate's
        # common name for the user it acts as: a host named as an etcd user would be that user.
        if value in limits.ETCD_USERS:
            users = " and ".join(repr(u) for u in limits.ETCD_USERS)
            raise ValueError(f"'{value}' given; {users} are etcd's user names (a certificate with that name "
                             "would act as that user): name the host otherwise")
        return value


def _check_hosts(hosts: list[Host], field: str) -> None:
    for attr in ("name", "address"):
        seen: set[Any] = set()
        for host in hosts:
            value = getattr(host, attr)
            if value in seen:
                raise ValueError(f"{field}: duplicate {attr} '{value}'; every {attr} must be unique")
            seen.add(value)


class EtcdSettings(Model):
    """The etcd cluster that Patroni uses as its distributed configuration store."""

    members: list[Host]
    client_port: Port = 2379
    peer_port: Port = 2380
    # The first of the two deployments that move a cluster an earlier pgha ran with plain-HTTP etcd to TLS
    # (operations/topology.etcd_tls_refusals says when it is needed, and refuses it anywhere else).
    tls_migration: bool = False

    @model_validator(mode="after")
    def _quorum(self) -> EtcdSettings:
        count = len(self.members)
        if count < ETCD.minimum or count % 2 == 0:
            raise ValueError(
                f"members: {count} given; etcd needs an odd number of at least {ETCD.minimum} members "
                "(an even count adds no failure tolerance)"
            )
        _check_hosts(self.members, "members")
        if self.client_port == self.peer_port:
            raise ValueError(f"client_port and peer_port are both {self.client_port}; they must differ")
        return self


class PatroniSettings(Model):
    """Patroni timing and replication; timing left out comes from the cluster's timing_profile."""

    ttl: int = Field(ge=PATRONI_MIN_TTL)
    loop_wait: int = Field(ge=PATRONI_MIN_LOOP_WAIT)
    retry_timeout: int = Field(ge=PATRONI_MIN_RETRY_TIMEOUT)
    maximum_lag_on_failover: int = Field(default=1048576, ge=0)
    synchronous_mode: Literal["off", "on", "strict", "quorum"] = "on"
    synchronous_node_count: int = Field(default=1, ge=1)
    failsafe_mode: bool = False
    use_pg_rewind: bool = True
    use_slots: bool = True
    # How long the leader keeps the replication slot of a member that is gone (Patroni 4's member_slots_ttl,
    # seconds; Patroni's default). With 0 a failover was seen to leave an asynchronous replica without its
    # slot on the new leader: it fell back to the archive, replayed the old timeline past the fork and stuck.
    # A node removed from the stack has its slot dropped at once anyway (*-postgres-membership).
    member_slots_ttl: int = Field(default=1800, ge=0)
    rest_api_port: Port = 8008

    @model_validator(mode="after")
    def _timing(self) -> PatroniSettings:
        budget = self.loop_wait + 2 * self.retry_timeout
        if budget > self.ttl:
            raise ValueError(
                f"loop_wait + 2*retry_timeout = {self.loop_wait} + 2*{self.retry_timeout} = {budget} "
                f"exceeds ttl {self.ttl}; Patroni requires loop_wait + 2*retry_timeout <= ttl"
            )
        return self


class PostgresSettings(Model):
    """The PostgreSQL nodes Patroni runs, and what every node is configured with."""

    nodes: list[Host]
    version: Literal[17] = 17
    port: Port = 5432
    parameters: dict[str, str | int | float | bool] = Field(default_factory=dict)
    database: Identifier = "app"
    app_user: Identifier = "app"
    readonly_user: Identifier = "app_ro"
    client_cidrs: list[IPv4Network] = Field(default_factory=list)
    # Where a new replica's data comes from: the newest pgBackRest backup then the archive ("backup"; a
    # repository without a backup falls back to the leader), or a pg_basebackup from the leader ("leader").
    new_replicas_from: Literal["backup", "leader"] = "backup"

    @model_validator(mode="after")
    def _nodes(self) -> PostgresSettings:
        if len(self.nodes) < POSTGRES.minimum:
            raise ValueError(
                f"nodes: {len(self.nodes)} given; at least {POSTGRES.minimum} PostgreSQL nodes are required "
                "(a primary, a synchronous standby and one more standby)"
            )
        _check_hosts(self.nodes, "nodes")
        reserved = sorted(RESERVED_PARAMETERS.intersection(self.parameters))
        if reserved:
            raise ValueError(
                f"parameters: {', '.join(reserved)} cannot be set; this program or Patroni manages "
                f"them (reserved: {', '.join(sorted(RESERVED_PARAMETERS))})"
            )
        wide = [str(c) for c in self.client_cidrs if c.prefixlen < limits.CLIENT_CIDR_MIN_PREFIX]
        if wide:
            raise ValueError(
                f"client_cidrs: {', '.join(wide)} given; a client network may be at most a "
                f"/{limits.CLIENT_CIDR_MIN_PREFIX} (wider ones reach beyond any private network, 0.0.0.0/0 is "
                "everyone): list the networks your applications connect from"
            )
        users = [self.app_user, self.readonly_user]
        if len(set(users)) != len(users) or set(users) & {"postgres", "replicator", "rewind"}:
            raise ValueError(
                f"app_user '{self.app_user}' and readonly_user '{self.readonly_user}' must differ "
                "from each other and from postgres, replicator and rewind"
            )
        return self


class HealthCheck(Model):
    """HAProxy's Patroni REST checks; their timing adds directly to the outage after a failover."""

    inter_ms: int = Field(ge=100, le=60000)
    fastinter_ms: int = Field(ge=100, le=60000)
    downinter_ms: int = Field(ge=100, le=60000)
    fall: int = Field(ge=1, le=10)
    rise: int = Field(ge=1, le=10)


class HAProxySettings(Model):
    """The HAProxy nodes, their listeners and the keepalived virtual IP in front of them."""

    nodes: list[Host]
    read_write_port: Port = 5000
    read_only_port: Port = 5001
    stats_port: Port = 7000
    check: HealthCheck
    max_replica_lag_bytes: int = Field(default=1048576, ge=0)
    virtual_ip: IPv4Address | None = None
    virtual_router_id: int | None = Field(default=None, ge=1, le=255)
    interface: Annotated[str, StringConstraints(pattern=r"^[a-zA-Z0-9._-]{1,15}$")] = "eth0"
    client_timeout_s: int = Field(default=1800, ge=1)
    server_timeout_s: int = Field(default=1800, ge=1)

    @model_validator(mode="after")
    def _pair(self) -> HAProxySettings:
        if len(self.nodes) < HAPROXY.minimum:
            raise ValueError(
                f"nodes: {len(self.nodes)} given; at least {HAPROXY.minimum} HAProxy nodes are required "
                "for the virtual IP to fail over"
            )
        _check_hosts(self.nodes, "nodes")
        ports = [self.read_write_port, self.read_only_port, self.stats_port]
        if len(set(ports)) != len(ports):
            raise ValueError(
                f"read_write_port {ports[0]}, read_only_port {ports[1]} and stats_port {ports[2]} "
                "must all differ"
            )
        if self.virtual_ip is not None and self.virtual_ip in {n.address for n in self.nodes}:
            raise ValueError(f"virtual_ip {self.virtual_ip} is also a node address; it must be a free one")
        return self


class BackupSettings(Model):
    """The pgBackRest repository, its schedule and retention."""

    repo_path: Annotated[str, StringConstraints(pattern=r"^/[A-Za-z0-9._/-]*$")] = "/var/lib/pgbackrest"
    retention_full: int = Field(default=2, ge=limits.BACKUP_MIN_RETENTION_FULL, le=limits.BACKUP_MAX_RETENTION)
    retention_diff: int = Field(default=6, ge=1, le=limits.BACKUP_MAX_RETENTION)
    full_schedule: Cron = "15 1 * * 0"
    diff_schedule: Cron = "15 1 * * 1-6"
    incr_schedule: Cron | None = None
    compress_type: Literal["zst", "lz4", "gz", "bz2", "none"] = "zst"
    compress_level: int = Field(default=3, ge=0, le=19)
    cipher_type: Literal["aes-256-cbc", "none"] = "aes-256-cbc"
    process_max: int = Field(default=2, ge=1, le=64)


class DockerSettings(Model):
    """Where the docker target puts the cluster: one network on the local engine."""

    subnet: IPv4Network = IPv4Network("10.89.0.0/24")
    publish_address: IPv4Address = IPv4Address("127.0.0.1")
    base_image: str = "debian:trixie-slim"
    # Raise to rebuild the node image with the packages Debian ships now (a rolling upgrade of the containers).
    image_revision: int = Field(default=0, ge=0)


class SshSettings(Model):
    """How the ssh target reaches bare-metal hosts."""

    user: Annotated[str, StringConstraints(pattern=r"^[a-z_][a-z0-9_-]{0,31}$")] = "root"
    port: Port = 22
    private_key_file: str | None = None
    # The SSH agent pulumi-command also offers keys from; unset, it uses SSH_AUTH_SOCK when that is set.
    agent_socket_path: Annotated[str, StringConstraints(pattern=r"^/[^\x00-\x1f]*$")] | None = None
    purge_data_on_destroy: bool = False
    # Debian package -> the exact version every host that installs it runs (`apt-cache policy NAME` lists
    # them). Unpinned packages are installed at the version the hosts' sources offer and never upgraded by
    # a deployment; a changed pin upgrades (or downgrades) one host at a time, the leader last.
    packages: dict[str, DebianVersion] = {}
    # Host address -> its SSH host key: every remote command checks it (pulumi-command's hostKey), so a machine
    # in the middle gets nothing. Every address of the stack needs one, here or in known_hosts_file (an
    # OpenSSH known_hosts file, read by the program; a key here wins over the file's for the same address).
    host_keys: dict[IPv4Address, HostKeyLine] = {}
    known_hosts_file: Annotated[str, StringConstraints(pattern=r"^[^\x00-\x1f]+$")] | None = None

    @model_validator(mode="after")
    def _known_packages(self) -> SshSettings:
        known = host_packages()
        for name in self.packages:
            if name not in known:
                raise ValueError(f"packages.{name}: not a package pgha installs; pin one of {', '.join(known)}")
        return self

    def pins(self, packages: Iterable[str]) -> dict[str, str]:
        """The pinned versions among `packages` (name -> version), in their order."""
        return {p: self.packages[p] for p in packages if p in self.packages}


def _network(value: Any) -> Any:
    """An IPv4 or IPv6 network in CIDR form; host bits set are refused, not masked away."""
    if not isinstance(value, str):
        return value
    try:
        return ip_network(value)
    except ValueError as exc:
        raise ValueError(f"not an IPv4 or IPv6 network in CIDR form such as 10.0.0.0/8 or 2001:db8::/32 "
                         f"({exc})") from None


Network = Annotated[IPv4Network | IPv6Network, BeforeValidator(_network)]
EVERYWHERE: tuple[Network, ...] = (IPv4Network("0.0.0.0/0"), IPv6Network("::/0"))


class FirewallRule(Model):
    """A port the hosts open beyond the cluster's own (an admin's service: monitoring, backups), to `sources`."""

    port: Port
    protocol: Literal["tcp", "udp"] = "tcp"
    sources: list[Network] = Field(min_length=1)


class FirewallSettings(Model):
    """The host firewall of the ssh target (render/firewall.py): pgha's own nftables table on every host, whose
    input chain drops what no rule accepts. Each role's ports are open to the hosts that need them; these say
    who else gets in."""

    enabled: bool = True
    # Who may connect to SSH, and on which ports (None: `ssh.port`). The deployment connects through them.
    ssh_from: list[Network] = Field(default_factory=lambda: list(EVERYWHERE))
    ssh_ports: list[Port] | None = None
    # The machines that run `pulumi up` and watch the cluster: the Patroni REST API (the program reads /primary
    # and /cluster for the rolling order and membership changes) and HAProxy's stats page.
    admin_from: list[Network] = Field(default_factory=list)
    allow: list[FirewallRule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _reachable(self) -> FirewallSettings:
        if self.enabled and not self.ssh_from:
            raise ValueError("ssh_from: [] given; the deployment connects over SSH: list the networks it connects "
                             "from (default: everywhere), or set enabled: false")
        if self.ssh_ports is not None and len(set(self.ssh_ports)) != len(self.ssh_ports):
            raise ValueError(f"ssh_ports: {self.ssh_ports} given; list each port once")
        return self


class TlsSettings(Model):
    """The cluster's TLS: which CA signs the PostgreSQL server certificates, and their lifetime.

    A CA rotation takes two deployments: raise `ca_generation` with `trust_previous_ca: true` (a new CA signs
    new server certificates, cross-signed by the previous CA, and both CAs are trusted: clients holding
    either `ca_certificate` keep verifying), move clients to the new `ca_certificate` output, then set
    `trust_previous_ca: false` (the previous CA is dropped)."""

    ca_generation: int = Field(default=0, ge=0)
    trust_previous_ca: bool = False
    server_validity_days: int = Field(default=730, ge=2)
    renew_before_days: int = Field(default=30, ge=1)

    @model_validator(mode="after")
    def _consistent(self) -> TlsSettings:
        if self.renew_before_days >= self.server_validity_days:
            raise ValueError(
                f"renew_before_days: {self.renew_before_days} given with server_validity_days "
                f"{self.server_validity_days}; it must be smaller, or every deployment would renew every certificate")
        if self.trust_previous_ca and self.ca_generation == 0:
            raise ValueError("trust_previous_ca: true given with ca_generation 0; there is no previous CA (raise "
                             "ca_generation to rotate the CA)")
        return self


class UpgradeSettings(Model):
    """The pre-checks of a rolling upgrade (a new image): it is refused, before any container is touched,
    while a member lags or a transaction on the leader is older than this (a switchover would end it)."""

    max_transaction_s: int = Field(default=300, ge=1)


class Rotation(Model):
    """Rotation generations of the generated credentials: raising one replaces that credential with a new
    random value on the next deployment (the roles in PostgreSQL first, then every file that carries it).
    0, the default, is the credential generated by the first deployment."""

    superuser: int = Field(default=0, ge=0)
    replication: int = Field(default=0, ge=0)
    rewind: int = Field(default=0, ge=0)
    app: int = Field(default=0, ge=0)
    readonly: int = Field(default=0, ge=0)
    restapi: int = Field(default=0, ge=0)
    keepalived: int = Field(default=0, ge=0)
    stats: int = Field(default=0, ge=0)
    etcd: int = Field(default=0, ge=0)
    cipher: int | None = None

    @model_validator(mode="after")
    def _cipher(self) -> Rotation:
        if self.cipher is not None:
            raise ValueError(
                f"cipher: {self.cipher} given; the pgBackRest cipher passphrase cannot be rotated: every backup "
                "and archived WAL segment in the repository is encrypted with it once the stanza exists. Remove "
                "rotate.cipher (a new passphrase needs a new repository and a new full backup)")
        return self

    def generation(self, credential: str) -> int:
        """The rotation generation of `credential` (0 for one that cannot be rotated)."""
        return int(getattr(self, credential, 0) or 0) if credential != "cipher" else 0

    def generations(self, credentials: Iterable[str]) -> dict[str, int]:
        """credential -> its generation, for each of `credentials` (what the change plan compares)."""
        return {c: self.generation(c) for c in credentials}


class ClusterConfig(Model):
    """The whole stack configuration, as read from the `pgha:` config namespace."""

    name: Name
    target: Literal["docker", "ssh"]
    timing_profile: Literal["tuned", "conservative"] = "tuned"
    etcd: EtcdSettings
    postgres: PostgresSettings
    patroni: PatroniSettings
    haproxy: HAProxySettings
    backup: BackupSettings = BackupSettings()
    docker: DockerSettings | None = None
    ssh: SshSettings | None = None
    firewall: FirewallSettings | None = None
    # A new deployment refuses a docker volume or a data directory that already holds data (left by an
    # earlier deployment, or another cluster's) unless this says to adopt it.
    adopt_existing_data: bool = False
    rotate: Rotation = Rotation()
    tls: TlsSettings = TlsSettings()
    upgrade: UpgradeSettings = UpgradeSettings()
    # Host name -> its generation: raised after a host was rebuilt empty (or a new machine took its name and
    # address), every command of its services runs again as on a new host. It only ever goes up.
    host_generations: dict[str, Annotated[int, Field(ge=0)]] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _apply_profile(cls, data: Any) -> Any:
        """Fill timing the user left out from the chosen profile; explicit values always win."""
        if not isinstance(data, dict):
            return data
        profile = TIMING_PROFILES.get(data.get("timing_profile", "tuned"))
        if profile is None:
            return data  # the Literal check reports the bad profile name
        data = dict(data)
        patroni = data.get("patroni", {})
        if isinstance(patroni, dict):
            data["patroni"] = {**profile["patroni"], **patroni}
        haproxy = data.get("haproxy")
        if isinstance(haproxy, dict):
            check = haproxy.get("check", {})
            if isinstance(check, dict):
                data["haproxy"] = {**haproxy, "check": {**profile["check"], **check}}
        return data

    @model_validator(mode="after")
    def _cross(self) -> ClusterConfig:
        names: dict[str, str] = {}
        for role, hosts in self.roles().items():
            for i, host in enumerate(hosts):
                if host.name in names:
                    raise ValueError(
                        f"{role}[{i}].name: '{host.name}' is already used by {names[host.name]}; "
                        "node names must be unique across the cluster"
                    )
                names[host.name] = role
        for name in self.host_generations:
            if name not in names:
                raise ValueError(f"host_generations.{name}: not a host of this stack; the hosts are "
                                 f"{', '.join(names)}")
        self._check_ports()
        standbys = len(self.postgres.nodes) - 1
        if self.patroni.synchronous_mode != "off" and self.patroni.synchronous_node_count > standbys:
            raise ValueError(
                f"patroni.synchronous_node_count: {self.patroni.synchronous_node_count} given with "
                f"{len(self.postgres.nodes)} postgres.nodes; at most {standbys} (one node leads, the others are the "
                "synchronous standby candidates)")
        if self.target == "docker":
            if self.ssh is not None:
                raise ValueError("ssh: settings given but target is 'docker'; remove them or set target: ssh")
            if self.firewall is not None:
                raise ValueError("firewall: settings given but target is 'docker'; the host firewall is the ssh "
                                 "target's (containers are reached only through their own network): remove them "
                                 "or set target: ssh")
            self._check_docker_addresses()
        else:
            if self.docker is not None:
                raise ValueError("docker: settings given but target is 'ssh'; remove them or set target: docker")
            if self.haproxy.virtual_ip is None:
                raise ValueError(
                    "haproxy.virtual_ip: missing; the ssh target needs a free IPv4 address on the "
                    "HAProxy nodes' network for keepalived"
                )
            ssh = self.ssh or SshSettings()
            if ssh.known_hosts_file is None:  # otherwise the program reads the file (pinned_host_keys)
                self.pinned_host_keys()
            self._check_firewall()
        return self

    def pinned_host_keys(self, known_hosts: tuple[str, str] | None = None) -> dict[str, HostKey]:
        """Host address -> the key the ssh target pins, for every address of the stack, from ssh.host_keys and
        `known_hosts` ((path, text) of ssh.known_hosts_file); raises ValueError naming the addresses without."""
        ssh = self.ssh or SshSettings()
        return pin([(h.name, str(h.address)) for h in self.all_hosts()], ssh.port,
                             {str(a): k for a, k in ssh.host_keys.items()}, known_hosts)

    def _check_firewall(self) -> None:
        fw, port = self.firewall_settings, (self.ssh.port if self.ssh else SshSettings().port)
        if fw is None or not fw.enabled or fw.ssh_ports is None or port in fw.ssh_ports:
            return
        raise ValueError(f"firewall.ssh_ports: {fw.ssh_ports} given without ssh.port {port}; the deployment "
                         f"connects on ssh.port and the firewall would refuse it: add {port} (to move SSH to "
                         "another port, open both first, then change ssh.port)")

    @property
    def firewall_settings(self) -> FirewallSettings | None:
        """The host firewall's settings (ssh target; defaulted when the section is left out), None on docker."""
        if self.target != "ssh":
            return None
        return self.firewall or FirewallSettings()

    def generation(self, host: Host) -> int:
        """The host's generation (host_generations; 0 until it is raised)."""
        return self.host_generations.get(host.name, 0)

    def roles(self) -> dict[str, list[Host]]:
        """Hosts by the stack-config list they come from ("etcd.members", ...), in the role table's order."""
        return {role.hosts: self.value(role.hosts) for role in ROLES.values()}

    def value(self, path: str) -> Any:
        """The configured value at a dotted path such as "etcd.client_port"."""
        value: Any = self
        for part in path.split("."):
            value = getattr(value, part)
        return value

    def _ports(self) -> dict[str, list[tuple[str, int]]]:
        return {role.hosts: [(field, self.value(field)) for field in role.ports] for role in ROLES.values()}

    def _check_ports(self) -> None:
        ports = self._ports()
        claims: dict[tuple[IPv4Address, int], str] = {}
        for role, hosts in self.roles().items():
            for host in hosts:
                for field, port in ports[role]:
                    key = (host.address, port)
                    if key in claims and claims[key] != field:
                        raise ValueError(
                            f"{field}: port {port} on {host.address} is also claimed by {claims[key]}; "
                            "services sharing a host need distinct ports"
                        )
                    claims[key] = field

    def _check_docker_addresses(self) -> None:
        subnet = self.docker_settings.subnet
        reserved = {subnet.network_address, subnet.broadcast_address, subnet.network_address + 1}
        seen: dict[IPv4Address, str] = {}
        addresses = [
            (f"{role}[{i}].address", h.address)
            for role, hosts in self.roles().items()
            for i, h in enumerate(hosts)
        ]
        if self.haproxy.virtual_ip is not None:
            addresses.append(("haproxy.virtual_ip", self.haproxy.virtual_ip))
        for owner, address in addresses:
            if address not in subnet or address in reserved:
                raise ValueError(
                    f"{owner}: {address} must be a host address of docker.subnet {subnet} "
                    f"other than {', '.join(str(a) for a in sorted(reserved))}"
                )
            if address in seen:
                raise ValueError(
                    f"{owner}: {address} is also used by {seen[address]}; the docker target "
                    "gives every service its own container and address"
                )
            seen[address] = owner

    @property
    def stanza(self) -> str:
        """The pgBackRest stanza: one per cluster, named after it."""
        return self.name

    @property
    def virtual_router_id(self) -> int:
        """VRRP id: configured, or derived from the cluster name so clusters on one segment differ."""
        if self.haproxy.virtual_router_id is not None:
            return self.haproxy.virtual_router_id
        return int(hashlib.sha256(self.name.encode()).hexdigest(), 16) % 254 + 1

    @property
    def docker_settings(self) -> DockerSettings:
        """Docker target settings, defaulted when the section is left out."""
        return self.docker or DockerSettings()

    def all_hosts(self) -> list[Host]:
        """Every host in the cluster, in role order."""
        return [h for hosts in self.roles().values() for h in hosts]

