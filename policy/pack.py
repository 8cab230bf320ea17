"""The pgha-policy pack itself: every policy with its enforcement level and configuration."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from catalog import limits
from catalog.roles import ETCD, HAPROXY, POSTGRES

if __package__:
    from . import (
        checks_access,
        checks_control,
        checks_exposure,
        checks_firewall,
        checks_postgres,
        checks_topology,
        extract,
        inventory,
    )
else:  # run by the Pulumi policy host, with only the pack directory (and the project) on sys.path
    import checks_access  # type: ignore[no-redef]
    import checks_control  # type: ignore[no-redef]
    import checks_exposure  # type: ignore[no-redef]
    import checks_firewall  # type: ignore[no-redef]
    import checks_postgres  # type: ignore[no-redef]
    import checks_topology  # type: ignore[no-redef]
    import extract  # type: ignore[no-redef]
    import inventory  # type: ignore[no-redef]

PACK_NAME: Final = "pgha-policy"
MANDATORY: Final = EnforcementLevel.MANDATORY
ADVISORY: Final = EnforcementLevel.ADVISORY

Report = Callable[[str, str | None], None]
StackCheck = Callable[[inventory.StackView, Mapping[str, Any], Report], None]
ResourceCheck = Callable[[str, str, dict[str, Any], Mapping[str, Any], Report], None]


@dataclass(frozen=True)
class Option:
    """One policy config property: its JSON schema and the value used when the config leaves it out."""

    schema: dict[str, Any]
    default: Any


def _at_least(minimum: int, default: int, description: str) -> Option:
    return Option({"type": "integer", "minimum": minimum, "description": description}, default)


def _strings(default: list[str], description: str) -> Option:
    return Option({"type": "array", "items": {"type": "string"}, "description": description}, default)


def config_schema(options: Mapping[str, Option]) -> PolicyConfigSchema | None:
    """The pulumi-policy schema of a policy's options, defaults included."""
    if not options:
        return None
    return PolicyConfigSchema(properties={k: {**o.schema, "default": o.default} for k, o in options.items()})


def settings(config: Mapping[str, Any] | None, options: Mapping[str, Option]) -> dict[str, Any]:
    """Configured values, defaults where the policy config leaves a property out."""
    given = dict(config or {})
    return {key: given.get(key, option.default) for key, option in options.items()}


def _runtime_stack() -> str | None:
    """The stack name from the policy host's runtime settings (PULUMI_STACK), when it has one."""
    try:
        import pulumi

        return pulumi.get_stack() or None
    except Exception:  # no runtime settings outside an engine-run policy host
        return None


def stack_policy(name: str, description: str, check: StackCheck, level: EnforcementLevel,
                 options: Mapping[str, Option] | None = None) -> StackValidationPolicy:
    """A stack policy running `check` over the stack view of all resources."""
    opts = dict(options or {})

    def validate(args: StackValidationArgs, report: ReportViolation) -> None:
        view = inventory.build(args.resources)
        view.stack = view.stack or _runtime_stack()
        check(view, settings(args.get_config(), opts), report)

    return StackValidationPolicy(name=name, description=description, validate=validate, enforcement_level=level,
                                 config_schema=config_schema(opts))


def resource_policy(name: str, description: str, check: ResourceCheck, level: EnforcementLevel,
                    options: Mapping[str, Option] | None = None) -> ResourceValidationPolicy:
    """A resource policy running `check` over one resource's plain inputs."""
    opts = dict(options or {})

    def validate(args: ResourceValidationArgs, report: ReportViolation) -> None:
        def about_this_resource(message: str, _urn: str | None = None) -> None:
            report(message, None)  # the engine attributes resource violations to the resource itself

        check(args.resource_type, args.name, extract.plain(args.props), settings(args.get_config(), opts),
              about_this_resource)

    return ResourceValidationPolicy(name=name, description=description, validate=validate, enforcement_level=level,
                                    config_schema=config_schema(opts))


def _count(role: str, option: str, odd: bool = False) -> StackCheck:
    def check(view: inventory.StackView, values: Mapping[str, Any], report: Report) -> None:
        checks_topology.check_count(view, role, int(values[option]), odd, report)

    return check


DEFAULT_PRODUCTION_STACKS: Final = ["prod", "production", "prod-*"]

POLICIES: Final[list[Policy]] = [
    stack_policy(
        "etcd-min-members",
        "etcd keeps a quorum through a member loss only with at least 3 members and an odd number of them.",
        _count(ETCD.name, "minMembers", odd=ETCD.odd), MANDATORY,
        {"minMembers": _at_least(1, ETCD.minimum, "fewest etcd members per cluster (the count must also be odd)")},
    ),
    stack_policy(
        "postgres-min-nodes",
        "A cluster needs at least 3 PostgreSQL nodes: a primary, a synchronous standby and a spare.",
        _count(POSTGRES.name, "minNodes"), MANDATORY,
        {"minNodes": _at_least(1, POSTGRES.minimum, "fewest PostgreSQL (Patroni) nodes per cluster")},
    ),
    stack_policy(
        "haproxy-min-nodes",
        "A cluster needs at least 2 HAProxy nodes, so the virtual IP can fail over.",
        _count(HAPROXY.name, "minNodes"), MANDATORY,
        {"minNodes": _at_least(1, HAPROXY.minimum, "fewest HAProxy nodes per cluster")},
    ),
    stack_policy(
        "patroni-timing",
        "Patroni timing respects Patroni's minimums and loop_wait + 2*retry_timeout <= ttl.",
        checks_postgres.check_timing, MANDATORY,
        {
            "minTtl": _at_least(1, limits.PATRONI_MIN_TTL,
                                f"smallest bootstrap.dcs.ttl in seconds (Patroni's minimum: {limits.PATRONI_MIN_TTL})"),
            "minLoopWait": _at_least(1, limits.PATRONI_MIN_LOOP_WAIT, "smallest bootstrap.dcs.loop_wait in seconds "
                                     f"(Patroni's minimum: {limits.PATRONI_MIN_LOOP_WAIT})"),
            "minRetryTimeout": _at_least(1, limits.PATRONI_MIN_RETRY_TIMEOUT, "smallest bootstrap.dcs.retry_timeout "
                                         f"(Patroni's minimum: {limits.PATRONI_MIN_RETRY_TIMEOUT})"),
        },
    ),
    stack_policy(
        "pg-hba-no-weak-auth",
        "Network (host*) pg_hba rules never use trust, password or md5.",
        checks_postgres.check_hba_methods, MANDATORY,
        {"forbiddenMethods": _strings(list(limits.WEAK_HBA_METHODS), "methods refused on host* pg_hba rules")},
    ),
    stack_policy(
        "pg-tls",
        "PostgreSQL serves TLS and every network pg_hba rule beyond loopback requires it (hostssl).",
        checks_postgres.check_tls, MANDATORY,
    ),
    stack_policy(
        "pg-hba-replication-members",
        "pg_hba admits replication from every PostgreSQL node's address and from 127.0.0.1.",
        checks_postgres.check_replication_rules, MANDATORY,
    ),
    stack_policy(
        "pg-hba-roles",
        "pg_hba admits the superuser only over the local socket, replication and pg_rewind only from the "
        "PostgreSQL members, and no network rule names every role.",
        checks_exposure.check_hba_roles, MANDATORY,
    ),
    stack_policy(
        "client-networks-bounded",
        "No pg_hba rule or HAProxy source filter admits a network wider than a /minPrefix (0.0.0.0/0 is everyone).",
        checks_exposure.check_client_networks, MANDATORY,
        {"minPrefix": _at_least(0, limits.CLIENT_CIDR_MIN_PREFIX,
                                "shortest IPv4 prefix a client network may have (pgha:postgres.client_cidrs)")},
    ),
    stack_policy(
        "haproxy-source-filter",
        "Every HAProxy listener accepts connections only from listed networks.",
        checks_exposure.check_haproxy_sources, MANDATORY,
    ),
    stack_policy(
        "patroni-rest-tls",
        "Patroni's REST API serves HTTPS; unsafe requests need a client certificate of the cluster CA, an allowed "
        "source and the password.",
        checks_control.check_rest_tls, MANDATORY,
    ),
    stack_policy(
        "etcd-tls",
        "etcd serves its client and peer ports over TLS only and requires a client certificate of the cluster CA; "
        "Patroni verifies etcd and logs in with a client certificate and a password.",
        checks_control.check_etcd_tls, MANDATORY,
    ),
    stack_policy(
        "haproxy-check-tls",
        "HAProxy checks Patroni's REST API over HTTPS, verifying each server against the cluster CA.",
        checks_control.check_haproxy_check_tls, MANDATORY,
    ),
    resource_policy(
        "remote-command-host-key",
        "Every remote command pins its host's SSH key, so no machine in the middle receives what it sends.",
        checks_control.check_host_key, MANDATORY,
    ),
    stack_policy(
        "sync-replication-production",
        "Production stacks run Patroni with synchronous replication, so a failover loses no acknowledged commit.",
        checks_postgres.check_synchronous, MANDATORY,
        {"productionStacks": _strings(DEFAULT_PRODUCTION_STACKS,
                                      "shell-style patterns of stack names that count as production")},
    ),
    stack_policy(
        "no-literal-credentials",
        "Credentials come from pulumi-random, and no generated password appears in command text or container "
        "settings.",
        checks_access.check_credentials, MANDATORY,
    ),
    resource_policy(
        "container-env-no-credentials",
        "Containers get no credentials through environment variables.",
        checks_access.check_container_env, MANDATORY,
    ),
    resource_policy(
        "remote-command-no-inline-credentials",
        "Remote commands pass no credentials in their command text.",
        checks_access.check_command_text, MANDATORY,
    ),
    stack_policy(
        "backup-schedule-retention",
        "Every PostgreSQL node has a pgBackRest full-backup retention and a backup schedule.",
        checks_postgres.check_backups, MANDATORY,
        {"minRetentionFull": _at_least(1, limits.BACKUP_MIN_RETENTION_FULL,
                                       "smallest repo1-retention-full (full backups kept)")},
    ),
    stack_policy(
        "keepalived-router-id",
        "keepalived's virtual_router_id is shared within an HAProxy pair and unique between pairs.",
        checks_topology.check_router_ids, MANDATORY,
    ),
    stack_policy(
        "haproxy-stats-auth",
        "The HAProxy stats page is never served without authentication.",
        checks_access.check_stats_auth, MANDATORY,
    ),
    stack_policy(
        "no-port-conflicts",
        "No two services listen on the same port of the same host.",
        checks_topology.check_ports, MANDATORY,
    ),
    stack_policy(
        "host-firewall",
        "Every host of the ssh target carries pgha's nftables firewall: input dropped unless accepted, its services' "
        "ports accepted, none but HAProxy's client ports open to every address.",
        checks_firewall.check_host_firewall, MANDATORY,
    ),
    stack_policy(
        "haproxy-shutdown-sessions",
        "HAProxy cuts client sessions to a server marked down (on-marked-down shutdown-sessions).",
        checks_access.check_shutdown_sessions, ADVISORY,
    ),
]
