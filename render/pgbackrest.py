"""pgBackRest configuration, backup schedule and backup script of the PostgreSQL nodes."""

from __future__ import annotations

from config.models import ClusterConfig, Host
from render.common import render_template, require_member, with_header
from render.credentials import Credentials
from render.paths import BACKUP_LOCK, BACKUP_SCRIPT, PG_DATA, PG_SOCKET_DIR
from render.shell import REST_CURL, has_running_leader, rest_url

BACKUP_TYPES = ("full", "diff", "incr")
CRON_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _ini_value(field: str, value: str) -> str:
    # pgBackRest's INI reader trims values and has no escaping; anything else is taken literally.
    if not value or value != value.strip() or any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError(
            f"{field}: must be non-empty, without control characters or leading/trailing whitespace "
            "(pgbackrest.conf cannot quote them)"
        )
    return value


def render_pgbackrest(cfg: ClusterConfig, node: Host, creds: Credentials) -> str:
    """The pgbackrest.conf of PostgreSQL node `node`: one shared posix repository, one stanza."""
    require_member(node, cfg.postgres.nodes, "postgres.nodes")
    backup = cfg.backup
    cipher = backup.cipher_type != "none"
    text = render_template(
        "pgbackrest.conf.j2",
        backup=backup,
        cipher=cipher,
        cipher_pass=_ini_value("credentials.cipher", creds.cipher) if cipher else "",
        compress=backup.compress_type != "none",
        stanza=cfg.stanza,
        pg_path=PG_DATA,
        pg_port=cfg.postgres.port,
        socket_path=PG_SOCKET_DIR,
    )
    return with_header(text)


def backup_schedules(cfg: ClusterConfig) -> dict[str, str]:
    """Cron schedule by backup type, for the types that are scheduled."""
    b = cfg.backup
    schedules = {"full": b.full_schedule, "diff": b.diff_schedule, "incr": b.incr_schedule}
    return {kind: when for kind, when in schedules.items() if when is not None}


def render_backup_cron(cfg: ClusterConfig) -> str:
    """The /etc/cron.d file running the backup script on every PostgreSQL node (it acts on the leader)."""
    text = render_template(
        "pgha-backup.cron.j2",
        path=CRON_PATH,
        script=BACKUP_SCRIPT,
        schedules=backup_schedules(cfg),
    )
    return with_header(text)


def render_backup_script(cfg: ClusterConfig) -> str:
    """Bash `pgha-backup full|diff|incr`: backs up when this node is the Patroni leader, else does nothing."""
    text = render_template(
        "pgha-backup.sh.j2",
        types=BACKUP_TYPES,
        rest_curl=REST_CURL,
        primary_url=rest_url("127.0.0.1", cfg.patroni.rest_api_port, "/primary"),
        has_running_leader=has_running_leader(cfg.patroni.rest_api_port),
        stanza=cfg.stanza,
        lock=BACKUP_LOCK,
    )
    return with_header(text)
