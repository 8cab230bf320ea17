"""PatroniNode: one PostgreSQL server managed by Patroni, archiving to the cluster's BackupRepo."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi

from catalog.roles import POSTGRES
from components.backup_repo import BackupRepo
from components.secrets import render_secret
from components.tls import ClusterCA
from config.models import ClusterConfig, Host
from render import paths
from render.bootstrap import render_post_bootstrap_script, render_post_bootstrap_sql
from render.credentials import Credentials
from render.patroni import render_dcs_sync_script, render_dynamic_config, render_patroni
from targets import DataDir, File, Listener, Process, ServiceSpec, Target


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


class PatroniNode(pulumi.ComponentResource):
    """Patroni and PostgreSQL on one host; ready when Patroni's /health answers 200."""

    rest_url: pulumi.Output[str]
    address: pulumi.Output[str]

    def __init__(self, name: str, args: PatroniNodeArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(POSTGRES.component, name, None, opts)
        cfg, node, creds = args.cfg, args.node, args.credentials
        rest_port = cfg.patroni.rest_api_port
        patroni_yml = render_secret(creds, lambda c: render_patroni(cfg, node, c))
        bootstrap_sql = render_secret(creds, lambda c: render_post_bootstrap_sql(cfg, c))
        tls = args.ca.server_certificate(name, node, self)
        spec = ServiceSpec(
            role=POSTGRES.name,
            host=node,
            packages=POSTGRES.packages,
            processes=(
                Process("patroni", ("/usr/bin/patroni", paths.PATRONI_CONFIG), user="postgres", on_change="reload"),
                Process("cron", ("/usr/sbin/cron", "-f"), host_service="cron"),
                Process("dcs-sync", (paths.DCS_SYNC_SCRIPT,), user="postgres"),
            ),
            files=(
                File(paths.PATRONI_CONFIG, patroni_yml, mode="0600", owner="postgres", secret=True, kind="patroni"),
                File(paths.BOOTSTRAP_SQL, bootstrap_sql, mode="0600", owner="postgres", secret=True),
                File(paths.POST_BOOTSTRAP_SCRIPT, render_post_bootstrap_script(cfg), mode="0755"),
                File(paths.DCS_CONFIG, render_dynamic_config(cfg), mode="0640", owner="postgres"),
                File(paths.DCS_SYNC_SCRIPT, render_dcs_sync_script(cfg), mode="0755"),
                File(paths.PG_TLS_CERT, tls.cert_pem, mode="0644"),
                File(paths.PG_TLS_KEY, tls.key_pem, mode="0600", owner="postgres", secret=True),
                File(paths.PG_TLS_CA, args.ca.cert_pem, mode="0644"),
                *args.backup.files(node),
            ),
            data_dirs=(DataDir("data", paths.PG_HOME, "postgres", mode="0750",
                               holds=f"{paths.PG_DATA.removeprefix(paths.PG_HOME + '/')}/PG_VERSION"),),
            shared=(args.backup.storage,),
            listeners=(Listener(rest_port, "0.0.0.0", "Patroni REST API"),
                       Listener(cfg.postgres.port, "0.0.0.0", "PostgreSQL")),
            published_ports=(rest_port,),
            health=("curl", "-sf", "-o", "/dev/null", f"http://127.0.0.1:{rest_port}/health"),
            depends_on=tuple(args.depends_on),
        )
        placement = args.target.place(f"{name}-patroni", spec, self)
        self.ready = placement.ready
        self.address = pulumi.Output.from_input(str(node.address))
        self.rest_url = pulumi.Output.from_input(f"http://{node.address}:{rest_port}")
        self.register_outputs({"address": self.address, "rest_url": self.rest_url})
