"""Renderers: pure functions from the validated config (and credentials) to on-host file text."""

from render.bootstrap import render_post_bootstrap_script, render_post_bootstrap_sql
from render.credentials import Credentials
from render.etcd import render_etcd
from render.haproxy import render_haproxy
from render.keepalived import render_keepalived
from render.patroni import render_patroni
from render.pgbackrest import render_backup_cron, render_backup_script, render_pgbackrest

__all__ = [
    "Credentials",
    "render_backup_cron",
    "render_backup_script",
    "render_etcd",
    "render_haproxy",
    "render_keepalived",
    "render_patroni",
    "render_pgbackrest",
    "render_post_bootstrap_script",
    "render_post_bootstrap_sql",
]
