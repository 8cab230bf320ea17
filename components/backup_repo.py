"""BackupRepo: the pgBackRest repository, its stanza, schedule and retention."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from catalog.roles import BACKUP_COMPONENT
from components.secrets import render_secret, shape_of
from config.models import ClusterConfig, Host
from render import paths
from render.credentials import Credentials
from render.pgbackrest import render_backup_cron, render_backup_script, render_pgbackrest
from targets import File, Storage, Target


@dataclass(frozen=True)
class BackupRepoArgs:
    """Inputs of a BackupRepo."""

    cfg: ClusterConfig
    target: Target
    credentials: pulumi.Output[Credentials]


class BackupRepo(pulumi.ComponentResource):
    """A repository every PostgreSQL node reaches, so archiving and backups follow the leader.

    The stanza is created by Patroni's post_bootstrap on the first primary; scheduled backups run
    from cron on every node but only act on the current primary.
    """

    stanza: pulumi.Output[str]
    repo_path: pulumi.Output[str]

    def __init__(self, name: str, args: BackupRepoArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(BACKUP_COMPONENT, name, None, opts)
        self._args = args
        self._name = name
        self.storage: Storage = args.target.storage(f"{name}-repo", args.cfg.backup.repo_path, "postgres", self)
        self.stanza = pulumi.Output.from_input(args.cfg.stanza)
        self.repo_path = pulumi.Output.from_input(args.cfg.backup.repo_path)
        self.register_outputs({"stanza": self.stanza, "repo_path": self.repo_path})

    def files(self, node: Host) -> tuple[File, ...]:
        """The pgBackRest files a PostgreSQL node needs; the config holds the cipher pass (secret)."""
        cfg = self._args.cfg
        def config(c: Credentials) -> str:
            return render_pgbackrest(cfg, node, c)

        return (
            File(paths.PGBACKREST_CONFIG, render_secret(self._args.credentials, config), mode="0600",
                 owner="postgres", secret=True, kind="pgbackrest", shape=shape_of(config)),
            File(paths.BACKUP_SCRIPT, render_backup_script(cfg), mode="0755"),
            File(paths.BACKUP_CRON, render_backup_cron(cfg), mode="0644", kind="cron"),
        )
