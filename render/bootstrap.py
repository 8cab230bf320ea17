"""What Patroni runs once after bootstrapping a new cluster: application roles, database, stanza."""

from __future__ import annotations

import base64
import hashlib
import hmac

from config.models import ClusterConfig
from render.common import render_template, with_header
from render.credentials import Credentials
from render.paths import BOOTSTRAP_SQL, PG_BIN

SCRAM_ITERATIONS = 4096  # PostgreSQL's scram_iterations default
SCRAM_SALT_BYTES = 16  # what PostgreSQL itself generates


def scram_salt(cluster: str, user: str) -> bytes:
    """A stable salt from public data only, so the verifier never gives a cheaper password oracle."""
    return hashlib.sha256(f"pgha-scram-salt\0{cluster}\0{user}".encode()).digest()[:SCRAM_SALT_BYTES]


def scram_sha256_verifier(password: str, salt: bytes, iterations: int = SCRAM_ITERATIONS) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for `password` (RFC 5802, RFC 7677)."""
    if not password.isascii():
        # PostgreSQL SASLprep-normalises non-ASCII passwords; ASCII ones pass through unchanged.
        raise ValueError("password: must be ASCII; non-ASCII needs SASLprep, which is not implemented")
    if not salt:
        raise ValueError("salt: must not be empty")
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode("ascii")

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def sql_ident(name: str) -> str:
    """`name` as a quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def sql_literal(text: str) -> str:
    """`text` as a SQL string literal (standard_conforming_strings, PostgreSQL's default)."""
    return "'" + text.replace("'", "''") + "'"


def verifier_literal(cfg: ClusterConfig, user: str, password: str) -> str:
    """The SQL literal of `user`'s SCRAM verifier: what ALTER/CREATE ROLE ... PASSWORD is given, never the
    plain password."""
    return sql_literal(scram_sha256_verifier(password, scram_salt(cfg.name, user)))


def render_post_bootstrap_sql(cfg: ClusterConfig, creds: Credentials) -> str:
    """SQL creating the application role, the read-only role and the application database."""
    pg = cfg.postgres
    app, ro, db = sql_ident(pg.app_user), sql_ident(pg.readonly_user), sql_ident(pg.database)
    lines = [
        "\\set ON_ERROR_STOP on",
        f"CREATE ROLE {app} LOGIN PASSWORD {verifier_literal(cfg, pg.app_user, creds.app)};",
        f"CREATE ROLE {ro} LOGIN PASSWORD {verifier_literal(cfg, pg.readonly_user, creds.readonly)};",
        # Reads everywhere, writes nowhere: pg_read_all_data (PostgreSQL 14+) plus a read-only default.
        f"GRANT pg_read_all_data TO {ro};",
        f"ALTER ROLE {ro} SET default_transaction_read_only = on;",
        f"CREATE DATABASE {db} OWNER {app} ENCODING 'UTF8' TEMPLATE template0;",
        f"REVOKE ALL ON DATABASE {db} FROM PUBLIC;",
        f"GRANT CONNECT, TEMPORARY ON DATABASE {db} TO {app};",
        f"GRANT CONNECT ON DATABASE {db} TO {ro};",
    ]
    return with_header("\n".join(lines) + "\n", "--")


def render_post_bootstrap_script(cfg: ClusterConfig) -> str:
    """Bash script Patroni runs as post_bootstrap (connection string in $1); non-zero on any failure."""
    text = render_template(
        "post-bootstrap.sh.j2",
        psql=f"{PG_BIN}/psql",
        sql_file=BOOTSTRAP_SQL,
        stanza=cfg.stanza,
    )
    return with_header(text)
