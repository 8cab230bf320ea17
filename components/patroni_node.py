"""PatroniNode: one PostgreSQL server managed by Patroni, archiving to the cluster's BackupRepo."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi

from catalog.roles import POSTGRES
from components.backup_repo import BackupRepo
from components.secrets import render_secret, shape_of
from components.tls import ClusterCA
from config.models import ClusterConfig, Host
from operations import passwords, upgrade
from render import paths
from render.bootstrap import render_post_bootstrap_script, render_post_bootstrap_sql
from render.credentials import Credentials
from render.patroni import (
    dynamic_config,
    render_dcs_sync_script,
    render_dynamic_config,
    render_etcd_connection,
    render_patroni,
)
from render.shell import REST_CURL, rest_url, until_ok
from targets import DataDir, File, HostStep, Listener, Process, ServiceSpec, Target


@dataclass(frozen=True)
class PatroniNodeArgs:
    """Inputs of a PatroniNode."""

    cfg: ClusterConfig
    target: Target
    node: Host
    credentials: pulumi.Output[Credentials]
    backup: BackupRepo
    ca: ClusterCA
    depends_on: list[pulumi.Resource] = field(default_factory=list)
    # The node before this one in the rolling order (its `ready`): changes that replace nodes go one by one.
    after: list[pulumi.Resource] = field(default_factory=list)


def processes(cfg: ClusterConfig) -> tuple[Process, ...]:
    """The processes of a PostgreSQL node's service (a node that leaves stops them:
    operations/postgres_membership.py). Patroni takes its files by reload, but how it connects to etcd only
    when it starts: that change restarts it, paused, so PostgreSQL keeps running and no member fails over."""
    return (
        Process("patroni", ("/usr/bin/patroni", paths.PATRONI_CONFIG), user="postgres", on_change="reload",
                packages=("postgresql-17", "patroni", "python3-etcd", "python3-psycopg2"),
                restart_reads=(paths.PATRONI_ETCD_CONNECTION,),
                before_restart=pause_for_restart(cfg.patroni.rest_api_port),
                after_restart=resume_after_restart(cfg.patroni.rest_api_port)),
        # cron re-reads /etc/cron.d when it changes; pgha-dcs-sync re-reads dynamic.yml every loop.
        Process("cron", ("/usr/sbin/cron", "-f"), host_service="cron", reads=()),
        Process("dcs-sync", (paths.DCS_SYNC_SCRIPT,), user="postgres", reads=(paths.DCS_SYNC_SCRIPT,)),
    )


PG_CTL = f"{paths.PG_BIN}/pg_ctl -D {paths.PG_DATA}"
# The generated credentials a PostgreSQL node's files carry (the cipher pass is never rotated).
CREDENTIALS = ("superuser", "replication", "rewind", "app", "readonly", "restapi", "etcd")


def _paused(rest_port: int) -> str:
    """Bash defining `paused` and `resumed`: this member answers that it applies the pause, or that it does not
    (Patroni's /patroni says `"pause": true`, or not); neither holds while it does not answer."""
    def state(expected: str) -> str:
        return (f"{REST_CURL} -sf --max-time 3 {rest_url('127.0.0.1', rest_port, '/patroni')} | python3 -c "
                f"'import json, sys; sys.exit(0 if bool(json.load(sys.stdin).get(\"pause\")) is {expected} else 1)'")
    return f"paused() {{ {state('True')}; }}\nresumed() {{ {state('False')}; }}"


def _patronictl_tries(verb: str, said: str, done: str) -> str:
    """Bash: until the shell condition `done` holds, `patronictl <verb> --wait`, three tries at most, each one's
    output prefixed with `said` (the caller checks `done` afterwards)."""
    return f"""for try in 1 2 3; do
    {done} && break
    timeout 30 runuser -u postgres -- patronictl -c {paths.PATRONI_CONFIG} {verb} --wait 2>&1 |
      sed "s/^/{said}: patronictl {verb} (try $try): /" || true
  done"""


def pause_for_restart(rest_port: int) -> str:
    """Bash run before Patroni restarts on a running node: pause the cluster (Patroni then leaves PostgreSQL
    running when it stops, and no member is promoted while it is away), or fail the deployment without
    restarting it."""
    return f"""{_paused(rest_port)}
  {_patronictl_tries("pause", "pgha", "paused")}
  if ! paused; then
    echo "pgha: Patroni did not take the pause: not restarting it (unpaused, its leader would fail over)" >&2
    exit 1
  fi
  echo "pgha: Patroni paused: it restarts to take how it connects to etcd, PostgreSQL keeps running"
"""


def resume_after_restart(rest_port: int) -> str:
    """Bash run after Patroni's restart ($restart_rc: how it went): once it answers again, resume the cluster.
    One that does not answer leaves the cluster paused (resumed, a leader whose Patroni is away would fail over
    under its running PostgreSQL) and fails the deployment; the next run restarts it again."""
    health = until_ok((*REST_CURL.split(), "-sf", "-o", "/dev/null", rest_url("127.0.0.1", rest_port, "/health")))
    return f"""if [ "$restart_rc" != 0 ] || ! ( {health.strip()} ); then
    echo "pgha: Patroni did not come back after its restart: the cluster stays paused (no failover while" \
      "PostgreSQL runs unmanaged here); deploy again to retry, or fix it and run patronictl resume" >&2
    exit 1
  fi
  {_patronictl_tries("resume", "pgha", "resumed")}
  if ! resumed; then echo "pgha: the cluster did not resume: run patronictl resume" >&2; exit 1; fi
  echo "pgha: Patroni restarted and the cluster resumed"
"""


def pause_before_stop(rest_port: int) -> str:
    """Bash a destroy runs before it stops Patroni: pause the cluster, then check that this member applies
    the pause (Patroni's /patroni says `"pause": true`), three tries. It says what happened: a destroy that
    could not pause goes on (the hosts are going away), warning that a replica may be promoted meanwhile."""
    return f"""{_paused(rest_port)}
if {REST_CURL} -s -o /dev/null --max-time 3 {rest_url('127.0.0.1', rest_port, '/')}; then
  {_patronictl_tries("pause", "pgha-destroy", "paused")}
  if paused; then
    echo "pgha-destroy: Patroni paused: no replica is promoted while the members stop"
  else
    echo "pgha-destroy: WARNING: Patroni did not take the pause; a replica may be promoted while the members stop" >&2
  fi
else
  echo "pgha-destroy: Patroni does not answer here: nothing to pause"
fi"""


def plan_facts(cfg: ClusterConfig) -> dict[str, Any]:
    """What the change plan says per name for a PostgreSQL node: the parameters PostgreSQL runs with (a
    restart or a reload, by each one's context) and the rest of Patroni's dynamic configuration."""
    dcs = dynamic_config(cfg)
    postgresql = dict(dcs.pop("postgresql"))
    parameters = postgresql.pop("parameters")
    flat = {k: str(v) for k, v in dcs.items()} | {f"postgresql.{k}": str(v) for k, v in postgresql.items()}
    return {"parameters": {k: str(v) for k, v in parameters.items()}, "dcs": flat,
            "credentials": cfg.rotate.generations(CREDENTIALS),
            "tls": cfg.tls.model_dump()}


class PatroniNode(pulumi.ComponentResource):
    """Patroni and PostgreSQL on one host; ready when Patroni's /health answers 200."""

    rest_url: pulumi.Output[str]
    address: pulumi.Output[str]

    def __init__(self, name: str, args: PatroniNodeArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(POSTGRES.component, name, None, opts)
        cfg, node, creds = args.cfg, args.node, args.credentials
        rest_port = cfg.patroni.rest_api_port
        def patroni_yml(c: Credentials) -> str:
            return render_patroni(cfg, node, c)

        def bootstrap_sql(c: Credentials) -> str:
            return render_post_bootstrap_sql(cfg, c)

        tls = args.ca.server_certificate(name, node, self)
        etcd_client = args.ca.etcd_client_certificate(name, node, self)
        spec = ServiceSpec(
            role=POSTGRES.name,
            host=node,
            packages=POSTGRES.packages,
            processes=processes(cfg),
            files=(
                File(paths.PATRONI_CONFIG, render_secret(creds, patroni_yml), mode="0600", owner="postgres",
                     secret=True, kind="patroni", shape=shape_of(patroni_yml)),
                File(paths.BOOTSTRAP_SQL, render_secret(creds, bootstrap_sql), mode="0600", owner="postgres",
                     secret=True, shape=shape_of(bootstrap_sql)),
                File(paths.POST_BOOTSTRAP_SCRIPT, render_post_bootstrap_script(cfg), mode="0755"),
                File(paths.DCS_CONFIG, render_dynamic_config(cfg), mode="0640", owner="postgres"),
                File(paths.DCS_SYNC_SCRIPT, render_dcs_sync_script(cfg), mode="0755"),
                File(paths.PG_TLS_CERT, tls.cert_pem, mode="0644"),
                File(paths.PG_TLS_KEY, tls.key_pem, mode="0600", owner="postgres", secret=True),
                File(paths.PG_TLS_CA, args.ca.cert_pem, mode="0644"),
                File(paths.PATRONI_ETCD_CERT, etcd_client.cert_pem, mode="0644"),
                File(paths.PATRONI_ETCD_KEY, etcd_client.key_pem, mode="0600", owner="postgres", secret=True),
                File(paths.PATRONI_ETCD_CONNECTION, render_etcd_connection(), mode="0644"),
                *args.backup.files(node),
            ),
            data_dirs=(DataDir("data", paths.PG_HOME, "postgres", mode="0750",
                               holds=f"{paths.PG_DATA.removeprefix(paths.PG_HOME + '/')}/PG_VERSION"),),
            shared=(args.backup.storage,),
            listeners=(Listener(rest_port, "0.0.0.0", "Patroni REST API"),
                       Listener(cfg.postgres.port, "0.0.0.0", "PostgreSQL")),
            published_ports=(rest_port,),
            health=(*REST_CURL.split(), "-sf", "-o", "/dev/null", rest_url("127.0.0.1", rest_port, "/health")),
            depends_on=tuple(args.depends_on),
            facts=plan_facts(cfg),
            # A rotated password reaches the roles at the leader before any file carries it.
            before_converge=(HostStep(passwords.STEP, passwords.password_script(cfg, node, creds, args.ca.cert_pem)),),
            after=tuple(args.after),
            handover=upgrade.render_handover(cfg, node.name),
            # Adopting data: the roles take this stack's passwords; a standby's data starts once a leader answers.
            on_adopt=passwords.adoption_script(cfg, node, creds),
            deferred_until=passwords.leader_answers(cfg),
            # A destroy stops the members one after another, the leader first (the rolling chain, reversed):
            # paused, no replica is promoted meanwhile, and each data directory keeps its role for a later
            # adoption. Paused, Patroni leaves PostgreSQL running when it stops: that is stopped last.
            before_stop=pause_before_stop(rest_port),
            after_stop=(f"if runuser -u postgres -- {PG_CTL} status >/dev/null 2>&1; "
                        f"then runuser -u postgres -- {PG_CTL} -m fast -w -t 60 stop; fi"),
        )
        self.spec = spec
        placement = args.target.place(f"{name}-patroni", spec, self)
        self.ready = placement.ready
        self.address = pulumi.Output.from_input(str(node.address))
        self.rest_url = pulumi.Output.from_input(rest_url(str(node.address), rest_port))
        self.register_outputs({"address": self.address, "rest_url": self.rest_url})
