"""PostgreSQL 17 set up from the rendered files: bootstrap SQL and script, pg_hba, archiving, backups."""

from __future__ import annotations

import dataclasses
import json
import shlex
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Network
from typing import Any

import pytest
import yaml

from config import ClusterConfig
from operations.passwords import render_adoption
from render import (
    render_backup_cron,
    render_backup_script,
    render_patroni,
    render_pgbackrest,
    render_post_bootstrap_script,
    render_post_bootstrap_sql,
)
from render.credentials import Credentials
from render.paths import (
    BACKUP_CRON,
    BACKUP_SCRIPT,
    BOOTSTRAP_SQL,
    PG_BIN,
    PG_DATA,
    PG_TLS_CA,
    PG_TLS_CERT,
    PG_TLS_KEY,
    PGBACKREST_CONFIG,
    POST_BOOTSTRAP_SCRIPT,
)
from tests.golden_util import FAKE_CREDS
from tests.tools import docker_boxes
from tests.tools.cluster_tls import tls_files
from tests.tools.docker_boxes import ToolsEnv, variant_config

pytestmark = pytest.mark.tools


@dataclass(frozen=True)
class Postgres:
    """A running PostgreSQL 17 set up from the rendered files of one node."""

    cfg: ClusterConfig
    box: docker_boxes.Container
    patroni: dict[str, Any]


def _pg_conf_line(key: str, value: object) -> str:
    text = ("on" if value else "off") if isinstance(value, bool) else str(value)
    return f"{key} = '{text.replace(chr(39), chr(39) * 2)}'"


@pytest.fixture(scope="module")
def postgres(tools_env: ToolsEnv) -> Iterator[Postgres]:
    """PostgreSQL 17 initialised and configured as Patroni would from the rendered pg-1 files."""
    cfg = variant_config("dev")
    # The tests' clients connect over loopback: a client network, like an application's (pg_hba admits the
    # application roles only from the HAProxy nodes and client_cidrs).
    cfg = cfg.model_copy(update={"postgres": cfg.postgres.model_copy(
        update={"client_cidrs": [IPv4Network("127.0.0.1/32")]})})
    node = cfg.postgres.nodes[0]
    patroni = yaml.safe_load(render_patroni(cfg, node, FAKE_CREDS))
    box = docker_boxes.start(
        "pgha-tools-postgres",
        network=tools_env.network,
        files={
            PGBACKREST_CONFIG: render_pgbackrest(cfg, node, FAKE_CREDS),
            BOOTSTRAP_SQL: render_post_bootstrap_sql(cfg, FAKE_CREDS),
            POST_BOOTSTRAP_SCRIPT: render_post_bootstrap_script(cfg),
            BACKUP_SCRIPT: render_backup_script(cfg),
            BACKUP_CRON: render_backup_cron(cfg),
            **tls_files(cfg, node),
        },
    )
    box.sh(
        f"chmod 0755 {POST_BOOTSTRAP_SCRIPT} {BACKUP_SCRIPT} && chown postgres: {BOOTSTRAP_SQL} {PG_TLS_KEY} "
        f"&& chmod 0600 {PG_TLS_KEY} "
        f"&& chmod 0600 {BOOTSTRAP_SQL} && install -d -o postgres -g postgres -m 0700 {PG_DATA}",
        check=True,
    )
    initdb = []
    for option in patroni["bootstrap"]["initdb"]:
        items = option.items() if isinstance(option, dict) else [(option, None)]
        initdb += [f"--{k}" if v is None else f"--{k}={v}" for k, v in items]
    box.exec(f"{PG_BIN}/initdb", "-D", PG_DATA, *initdb, user="postgres", check=True)
    pg = patroni["postgresql"]
    params = {
        **patroni["bootstrap"]["dcs"]["postgresql"]["parameters"],
        **pg["parameters"],
        "listen_addresses": "127.0.0.1",
        "port": cfg.postgres.port,
    }
    conf = "\n".join(_pg_conf_line(k, v) for k, v in params.items()) + "\n"
    box.put({"/tmp/pgha.conf": conf, "/tmp/pg_hba.conf": "\n".join(pg["pg_hba"]) + "\n"})
    box.sh(
        f"cat /tmp/pgha.conf >> {PG_DATA}/postgresql.conf && cp /tmp/pg_hba.conf {PG_DATA}/pg_hba.conf",
        user="postgres",
        check=True,
    )
    box.exec(f"{PG_BIN}/pg_ctl", "-D", PG_DATA, "-w", "-l", "/tmp/postgres.log", "start", user="postgres", check=True)
    # What Patroni passes to post_bootstrap (Postgresql.config.format_dsn without the password).
    dsn = f"dbname=postgres user=postgres host={pg['parameters']['unix_socket_directories']} port={cfg.postgres.port}"
    result = box.exec(POST_BOOTSTRAP_SCRIPT, dsn, user="postgres")
    assert result.returncode == 0, result.stdout + result.stderr + box.sh("cat /tmp/postgres.log").stdout
    yield Postgres(cfg, box, patroni)
    docker_boxes.docker("rm", "-f", box.name, check=False)


def _psql(box: docker_boxes.Container, user: str, password: str, database: str, sql: str) -> tuple[int, str]:
    result = box.exec(
        f"{PG_BIN}/psql", "-h", "127.0.0.1", "-U", user, "-d", database, "-v", "ON_ERROR_STOP=1", "-Atc", sql,
        env={"PGPASSWORD": password, "PGCONNECT_TIMEOUT": "5"},
    )  # fmt: skip
    return result.returncode, (result.stdout + result.stderr).strip()


def test_tls_is_served_with_the_node_certificate(postgres: Postgres) -> None:
    cfg, box = postgres.cfg, postgres.box
    pg = cfg.postgres
    query = "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
    result = box.exec(
        f"{PG_BIN}/psql", "-h", "127.0.0.1", "-U", pg.app_user, "-d", pg.database, "-Atc", query,
        env={"PGPASSWORD": FAKE_CREDS.app, "PGSSLMODE": "verify-full", "PGSSLROOTCERT": PG_TLS_CA},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    ssl, version = result.stdout.strip().split("|")
    assert ssl == "t" and version in {"TLSv1.2", "TLSv1.3"}, result.stdout
    # A client trusting another CA refuses the server: verification really happens.
    box.put({"/tmp/other-ca.crt": tls_files(cfg, cfg.postgres.nodes[0])[PG_TLS_CA]})
    result = box.exec(
        f"{PG_BIN}/psql", "-h", "127.0.0.1", "-U", pg.app_user, "-d", pg.database, "-Atc", "SELECT 1",
        env={"PGPASSWORD": FAKE_CREDS.app, "PGSSLMODE": "verify-full", "PGSSLROOTCERT": "/tmp/other-ca.crt"},
    )  # fmt: skip
    assert result.returncode != 0 and "certificate verify failed" in result.stderr, result.stderr


def test_app_roles_log_in_with_scram_over_tcp(postgres: Postgres) -> None:
    cfg, box = postgres.cfg, postgres.box
    pg = cfg.postgres
    code, out = _psql(box, pg.app_user, FAKE_CREDS.app, pg.database, "CREATE TABLE t (x int); INSERT INTO t VALUES (1)")
    assert code == 0, out
    code, out = _psql(box, pg.app_user, "not the password", pg.database, "SELECT 1")
    assert code != 0 and "password authentication failed" in out
    code, out = _psql(box, pg.readonly_user, FAKE_CREDS.readonly, pg.database, "SELECT x FROM t")
    assert (code, out) == (0, "1")
    code, out = _psql(box, pg.readonly_user, FAKE_CREDS.readonly, pg.database, "INSERT INTO t VALUES (2)")
    assert code != 0 and "read-only transaction" in out
    stored = box.exec(
        f"{PG_BIN}/psql", "-Atc", f"SELECT rolpassword FROM pg_authid WHERE rolname = '{pg.app_user}'", user="postgres"
    ).stdout.strip()
    assert stored.startswith("SCRAM-SHA-256$4096:") and FAKE_CREDS.app not in stored
    owner = box.exec(
        f"{PG_BIN}/psql", "-Atc", f"SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{pg.database}'",
        user="postgres",
    ).stdout.strip()  # fmt: skip
    assert owner == pg.app_user


def test_the_superuser_connects_only_over_the_local_socket(postgres: Postgres) -> None:
    box = postgres.box
    code, out = _psql(box, "postgres", FAKE_CREDS.superuser, "postgres", "SELECT 1")
    assert code != 0 and 'no pg_hba.conf entry for host "127.0.0.1", user "postgres"' in out, out
    local = box.exec(f"{PG_BIN}/psql", "-XAtc", "SELECT current_user", user="postgres")  # the control: peer
    assert (local.returncode, local.stdout.strip()) == (0, "postgres"), local.stdout + local.stderr


def test_archiving_and_restore_command_work(postgres: Postgres) -> None:
    cfg, box, patroni = postgres.cfg, postgres.box, postgres.patroni
    # `pgbackrest check` forces a WAL switch and waits until the archive_command pushed it.
    result = box.exec("pgbackrest", f"--stanza={cfg.stanza}", "check", user="postgres")
    assert result.returncode == 0, result.stdout + result.stderr
    wal = box.exec(
        f"{PG_BIN}/psql", "-Atc", "SELECT last_archived_wal FROM pg_stat_archiver", user="postgres", check=True
    ).stdout.strip()
    restore = patroni["postgresql"]["recovery_conf"]["restore_command"]
    command = restore.replace("%f", wal).replace("%p", "/tmp/restored-wal")
    box.sh(command, user="postgres", check=True)
    assert box.exec("stat", "-c", "%s", "/tmp/restored-wal", check=True).stdout.strip() == str(16 * 1024 * 1024)


def test_cipher_pass_reads_back_exactly(postgres: Postgres) -> None:
    # The repository was created with the pass as pgbackrest read it from the file; reading it with
    # the intended pass given through the environment proves the file held exactly that string.
    cfg, box = postgres.cfg, postgres.box
    conf = box.exec("cat", PGBACKREST_CONFIG, check=True).stdout
    box.put({"/tmp/nopass.conf": "\n".join(x for x in conf.splitlines() if "cipher-pass" not in x) + "\n"})

    def info(passphrase: str) -> tuple[int, str]:
        result = box.exec(
            "pgbackrest", "--config=/tmp/nopass.conf", f"--stanza={cfg.stanza}", "--output=json", "info",
            user="postgres", env={"PGBACKREST_REPO1_CIPHER_PASS": passphrase},
        )  # fmt: skip
        return result.returncode, result.stdout + result.stderr

    code, out = info(FAKE_CREDS.cipher)
    assert code == 0, out
    stanza = json.loads(out)[0]
    # Readable: the stanza's database and archived WAL are listed (backups may not exist yet).
    assert stanza["status"]["message"] in {"ok", "no valid backups"} and stanza["db"] and stanza["archive"], out
    code, out = info(FAKE_CREDS.cipher + "x")
    # A wrong pass decrypts to garbage: the stanza is unreadable.
    stanza = json.loads(out, strict=False)[0]
    assert stanza["status"]["code"] == 99 and not stanza["db"], out


def _backups(box: docker_boxes.Container, stanza: str) -> list[str]:
    out = box.exec("pgbackrest", f"--stanza={stanza}", "--output=json", "info", user="postgres", check=True).stdout
    return [b["type"] for b in json.loads(out)[0]["backup"]]


def test_backup_script_follows_the_leader(postgres: Postgres) -> None:
    cfg, box = postgres.cfg, postgres.box
    result = box.exec(BACKUP_SCRIPT, "weekly", user="postgres")
    assert result.returncode == 2 and "full|diff|incr" in result.stderr
    # No Patroni answering /primary: a replica, so nothing happens.
    result = box.exec(BACKUP_SCRIPT, "full", user="postgres")
    assert (result.returncode, result.stdout.strip()) == (0, "pgha-backup: this node is not the primary; nothing to do")
    assert _backups(box, cfg.stanza) == []
    # ...but a check fails: no REST API means no leader is known.
    result = box.exec(BACKUP_SCRIPT, "check", user="postgres")
    assert (result.returncode, result.stderr.strip()) == (
        1, "pgha-backup: the cluster has no running leader (Patroni's /cluster on this node)")

    # A stand-in for Patroni's REST API: files for /cluster and, on the leader, /primary, over HTTPS with the
    # node's certificate, as Patroni serves it.
    port = cfg.patroni.rest_api_port
    box.sh("mkdir -p /tmp/leader", check=True)
    serve = ("import functools, http.server, ssl\n"
             "handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory='/tmp/leader')\n"
             f"httpd = http.server.HTTPServer(('127.0.0.1', {port}), handler)\n"
             "context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\n"
             f"context.load_cert_chain({PG_TLS_CERT!r}, {PG_TLS_KEY!r})\n"
             "httpd.socket = context.wrap_socket(httpd.socket, server_side=True)\n"
             "httpd.serve_forever()\n")
    docker_boxes.docker("exec", "-d", box.name, "python3", "-c", serve)

    def cluster(*members: tuple[str, str]) -> None:
        body = json.dumps({"members": [{"name": f"pg-{i}", "role": role, "state": state}
                                       for i, (role, state) in enumerate(members)]})
        box.put({"/tmp/leader/cluster": body})

    cluster(("replica", "streaming"), ("leader", "stopped"))
    docker_boxes.wait_for(
        "stand-in REST API answers",
        lambda: box.exec("curl", "-sf", "--cacert", PG_TLS_CA, f"https://127.0.0.1:{port}/cluster").returncode == 0,
        deadline_s=10,
    )
    result = box.exec(BACKUP_SCRIPT, "check", user="postgres")
    assert result.returncode == 1 and "no running leader" in result.stderr, result.stdout + result.stderr
    cluster(("sync_standby", "streaming"), ("leader", "running"))
    result = box.exec(BACKUP_SCRIPT, "check", user="postgres")
    assert (result.returncode, result.stdout.strip()) == (0, "pgha-backup: this node is not the primary; nothing to do")
    assert _backups(box, cfg.stanza) == []

    box.sh("touch /tmp/leader/primary", check=True)
    for kind in ("full", "incr"):
        result = box.exec(BACKUP_SCRIPT, kind, user="postgres", timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
    assert _backups(box, cfg.stanza) == ["full", "incr"]


def test_cron_file_runs_the_backup_script(postgres: Postgres) -> None:
    # Debian's cron has no syntax checker; what can be checked is that every job line names the
    # installed script as the postgres user, with a type the script accepts.
    box = postgres.box
    for line in box.exec("cat", BACKUP_CRON, check=True).stdout.splitlines():
        if not line or line.startswith("#") or "=" in line.split()[0]:
            continue
        fields = shlex.split(line)
        assert len(fields) == 8 and fields[5:7] == ["postgres", BACKUP_SCRIPT], line
        assert box.exec("test", "-x", fields[6]).returncode == 0
        assert fields[7] in {"full", "diff", "incr"}


def test_adopted_data_takes_this_stacks_passwords_in_single_user_mode(postgres: Postgres) -> None:
    """Last: what a new deployment's converge runs on a data directory it adopts (operations/passwords.py
    render_adoption), on the data of this module's server once stopped. Refused while the repository holds
    the stanza of the deployment that made the data; then the roles take the new passwords with no server
    running, and the old ones are refused; a standby's data is left alone and its start deferred."""
    cfg, box = postgres.cfg, postgres.box
    node, pg, repo = cfg.postgres.nodes[0], cfg.postgres, cfg.backup.repo_path
    # The roles Patroni's bootstrap makes (no Patroni here), with the old deployment's passwords.
    box.exec(f"{PG_BIN}/psql", "-XqAc", "CREATE ROLE replicator LOGIN REPLICATION; CREATE ROLE rewind LOGIN",
             user="postgres", check=True)
    box.exec(f"{PG_BIN}/pg_ctl", "-D", PG_DATA, "-w", "-m", "fast", "stop", user="postgres", check=True)
    new = dataclasses.replace(FAKE_CREDS, superuser="new super", replication="new repl", rewind="new rewind",
                              app="new app", readonly="new ro")

    def adopt(creds: Credentials, config: ClusterConfig = cfg) -> subprocess.CompletedProcess[str]:
        script = "set -euo pipefail\ndefer=0\n" + render_adoption(config, node, creds) + 'echo "defer=$defer"\n'
        return box.exec("bash", "-c", script, timeout=180)

    refused = adopt(new)
    assert refused.returncode == 1 and f"holds stanza {cfg.stanza}" in refused.stderr, refused.stderr
    assert "defer=" not in refused.stdout and "password set" not in refused.stdout, "refused before any change"
    box.sh(f"mkdir -p /tmp/old-repo && mv {repo}/archive {repo}/backup /tmp/old-repo/", check=True)
    box.exec("sh", "-c", f"echo '{{\"pause\": true}}' > {PG_DATA}/patroni.dynamic.json", user="postgres", check=True)
    # A role this stack names but the data lacks: nothing changes (one transaction), and it says which.
    ghost = cfg.model_copy(update={"postgres": pg.model_copy(update={"readonly_user": "ghost"})})
    failed = adopt(new, ghost)
    assert failed.returncode == 1 and "no role ghost: nothing was changed" in failed.stderr, failed.stderr
    assert "password set" not in failed.stdout
    adopted = adopt(new)
    assert adopted.returncode == 0, adopted.stdout + adopted.stderr
    assert "defer=0" in adopted.stdout and f"pgha-passwords: {pg.app_user} password set" in adopted.stdout
    assert box.exec("test", "-e", f"{PG_DATA}/postmaster.pid").returncode != 0, "no server left running"
    assert box.exec("test", "-e", f"{PG_DATA}/patroni.dynamic.json").returncode != 0, "the old settings' cache"
    box.exec(f"{PG_BIN}/pg_ctl", "-D", PG_DATA, "-w", "-l", "/tmp/postgres.log", "start", user="postgres", check=True)
    assert _psql(box, pg.app_user, new.app, pg.database, "SELECT 1") == (0, "1")
    code, out = _psql(box, pg.app_user, FAKE_CREDS.app, pg.database, "SELECT 1")
    assert code != 0 and "password authentication failed" in out, "the old password is refused"
    box.exec(f"{PG_BIN}/pg_ctl", "-D", PG_DATA, "-w", "-m", "fast", "stop", user="postgres", check=True)
    # A standby's data: nothing is changed, the start waits for a leader (none answers here).
    box.exec("touch", f"{PG_DATA}/standby.signal", user="postgres", check=True)
    standby = adopt(dataclasses.replace(new, app="newer app"))
    assert standby.returncode == 0, standby.stdout + standby.stderr
    assert "defer=1" in standby.stdout and "password set" not in standby.stdout, standby.stdout
