"""A stranger on the cluster network, holding no cluster credentials, tries what an attacker would; the same
tries from the cluster's own hosts show each refusal is the rule's, not a network failure (the controls)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import docker

from render.paths import PG_BIN
from tests.e2e.scenarios import ClusterUnderTest
from tests.tools.docker_boxes import ensure_image

PSQL = f"{PG_BIN}/psql"
WRONG = "not-the-password"


class Stranger:
    """A container of the node image (psql, curl, openssl, etcdctl) at an address no rule lists."""

    def __init__(self, container: docker.models.containers.Container, address: str) -> None:
        self.container = container
        self.address = address

    def run(self, *argv: str) -> str:
        """What the command printed (stdout and stderr); its exit status is not the point."""
        _, output = self.container.exec_run(list(argv))
        return str(output.decode(errors="replace"))


@contextlib.contextmanager
def stranger(c: ClusterUnderTest, address: str) -> Iterator[Stranger]:
    """A stranger at `address` on the cluster's network for the block."""
    client = docker.from_env()
    name = f"{c.name}-stranger"
    for old in client.containers.list(all=True, filters={"name": f"^{name}$"}):
        old.remove(force=True)
    container = client.containers.create(ensure_image(), ["sleep", "infinity"], name=name, network_disabled=False)
    try:
        client.networks.get("bridge").disconnect(container)
        client.networks.get(c.hosts.network).connect(container, ipv4_address=address)  # type: ignore[attr-defined]
        container.start()
        yield Stranger(container, address)
    finally:
        container.remove(force=True)


def psql(conninfo: str) -> list[str]:
    return [PSQL, f"{conninfo} connect_timeout=5 password={WRONG}", "-XtAc", "SELECT 1"]


def postgres_refuses_strangers(c: ClusterUnderTest, s: Stranger) -> None:
    """pg_hba by role: from a stranger every role is refused by address before any password; from a member the
    superuser and the application roles are refused too, replication and rewind reach the password check; through
    HAProxy a stranger's connection is closed, a cluster host's reaches PostgreSQL's password check."""
    leader = c.patroni.leader()
    assert leader
    other = next(n for n in c.pg_nodes if n != leader)
    target = f"host={c.addresses[leader]} port=5432 sslmode=require"
    db = c.rw.dbname
    tries = {"superuser": f"{target} user=postgres dbname=postgres",
             "replication": f"{target} user=replicator replication=true",
             "rewind": f"{target} user=rewind dbname=postgres",
             "application": f"{target} user={c.rw.user} dbname={db}",
             "read-only": f"{target} user={c.ro.user} dbname={db}"}
    for role, conninfo in tries.items():
        said = s.run(*psql(conninfo))
        assert f'no pg_hba.conf entry for host "{s.address}"' in said, f"{role} from a stranger: {said}"
    for role in ("superuser", "application", "read-only"):
        said = c.hosts.exec(other, *psql(tries[role]), check=False)
        assert "no pg_hba.conf entry" in said, f"{role} from the member {other}: {said}"
    for role in ("replication", "rewind"):  # the controls: the member's address and role are admitted
        said = c.hosts.exec(other, *psql(tries[role]), check=False)
        assert "password authentication failed" in said, f"{role} from the member {other}: {said}"
    through = f"host={c.vip} port={c.rw.port} sslmode=require user={c.rw.user} dbname={db}"
    said = s.run(*psql(through))
    assert "password authentication failed" not in said and ("closed the connection" in said or "reset" in said
                                                              or "SSL SYSCALL" in said), f"through HAProxy: {said}"
    said = c.hosts.exec(other, *psql(through), check=False)
    assert "password authentication failed" in said, f"through HAProxy from the member {other}: {said}"
    print(f"a stranger at {s.address}: every role refused by pg_hba on {leader}, its connection through HAProxy "
          "closed; from a member only replication and rewind reach the password check")
