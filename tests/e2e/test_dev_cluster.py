"""The dev stack, deployed for real on Docker from what the program declares, survives real faults.

Every scenario measures from the client side through HAProxy and the virtual IP, with a writer that
records each acknowledged commit, and leaves the cluster healthy for the next one.
"""

from __future__ import annotations

import io
import json
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
import yaml

from tests.e2e.cluster import DockerHosts, Endpoint, Patroni, PrimaryWatch, Writer, wait_for
from tests.e2e.harness.deploy import Deployment, deploy
from tests.e2e.harness.engine import require_engine
from tests.e2e.harness.real_mocks import cleanup_leftovers

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
CLUSTER = "pgha-dev"
PG_NODES = ["pg-1", "pg-2", "pg-3"]
ADDRESSES = {"pg-1": "10.89.0.21", "pg-2": "10.89.0.22", "pg-3": "10.89.0.23"}
ETCD = ["etcd-1", "etcd-2", "etcd-3"]
# ttl 20 + checks: a failover completes well within this; rejoin includes pg_rewind and catch-up.
FAILOVER_S = 60
RECOVER_S = 120


@pytest.fixture(scope="module")
def sentinel() -> Iterator[docker.models.containers.Container]:
    """An unrelated container and volume that destroy must leave alone."""
    require_engine()
    client = docker.from_env()
    for old in client.containers.list(all=True, filters={"label": "pgha.e2e.sentinel"}):
        old.remove(force=True)
    volume = client.volumes.create("pgha-e2e-sentinel", labels={"pgha.e2e.sentinel": "1"})
    container = client.containers.create("debian:trixie-slim", ["sleep", "infinity"], name="pgha-e2e-sentinel",
                                         labels={"pgha.e2e.sentinel": "1"})
    yield container
    container.remove(force=True)
    volume.remove(force=True)


@pytest.fixture(scope="module")
def stack(sentinel: object) -> Iterator[Deployment]:
    require_engine()
    # Leftovers of an interrupted earlier run of this cluster (an engine restarted on the same data
    # root keeps them) would collide on names and the subnet; other clusters' objects are left alone.
    cleanup_leftovers(f"pgha.cluster={CLUSTER}")
    import program

    deployment = deploy(ROOT / "Pulumi.dev.yaml", program.main, stack="dev")
    yield deployment
    deployment.destroy()


@pytest.fixture(scope="module")
def patroni(stack: Deployment) -> Patroni:
    return Patroni(stack.outputs["patroni_rest_urls"])


@pytest.fixture(scope="module")
def hosts(stack: Deployment) -> DockerHosts:
    return DockerHosts(CLUSTER)


@pytest.fixture(scope="module")
def rw(stack: Deployment) -> Endpoint:
    return Endpoint.from_dsn(stack.outputs["app_dsn"])


@pytest.fixture(scope="module")
def ro(stack: Deployment) -> Endpoint:
    return Endpoint.from_dsn(stack.outputs["readonly_dsn"])


@pytest.fixture
def healthy(patroni: Patroni, hosts: DockerHosts) -> Iterator[None]:
    """Each scenario starts and must end with a healthy cluster (every container running again)."""
    wait_for("a healthy cluster before the scenario", lambda: patroni.healthy(3), RECOVER_S)
    yield
    for name in [*PG_NODES, *ETCD, "haproxy-1", "haproxy-2"]:
        container = hosts.container(name)
        container.reload()
        if container.status != "running":
            hosts.start(name)
    wait_for("a healthy cluster after the scenario", lambda: patroni.healthy(3), RECOVER_S)


@pytest.fixture
def writer(rw: Endpoint) -> Iterator[Writer]:
    w = Writer(rw)
    w.start()
    w.wait_acks(20)
    yield w
    w.stop()


def server(endpoint: Endpoint, port: int | None = None) -> tuple[str, bool]:
    row = endpoint.query("SELECT host(inet_server_addr()), pg_is_in_recovery()", port=port)[0]
    return row[0], row[1]


def node_of(address: str) -> str:
    return next(n for n, a in ADDRESSES.items() if a == address)


def assert_nothing_lost(writer: Writer) -> None:
    log = writer.stop()
    wait_for("the read-write endpoint", lambda: writer.endpoint.query("SELECT 1"), FAILOVER_S)
    lost = writer.lost()
    assert not lost, f"{len(lost)} acknowledged commits lost (first: {lost[:5]})"
    assert len(log.acked) > 40


# ------------------------------------------------------------------------------------------ 1


def test_up_leader_sync_standby_and_routing(stack: Deployment, patroni: Patroni, hosts: DockerHosts,
                                            rw: Endpoint, ro: Endpoint) -> None:
    wait_for("one leader, two streaming replicas, a sync standby", lambda: patroni.healthy(3), RECOVER_S)
    assert stack.outputs["read_write_endpoint"] == {"host": "10.89.0.30", "port": 5000}
    assert {"app_dsn", "readonly_dsn"} <= stack.secret_outputs
    for etcd in ETCD:
        assert "is healthy" in hosts.exec(etcd, "etcdctl", "--endpoints=http://127.0.0.1:2379", "endpoint",
                                          "health")
    leader = patroni.leader()
    address, in_recovery = server(rw)
    assert node_of(address) == leader and not in_recovery, "read-write port must reach the leader"
    address, in_recovery = server(ro)
    assert node_of(address) != leader and in_recovery, "read-only port must reach a replica"
    token = f"up-{time.time_ns()}"
    rw.query("CREATE TABLE IF NOT EXISTS pgha_e2e_kv (k text PRIMARY KEY)")
    rw.query("INSERT INTO pgha_e2e_kv VALUES (%s)", token)
    wait_for("the write to reach a replica", lambda: ro.query("SELECT 1 FROM pgha_e2e_kv WHERE k = %s", token), 30)
    # The published ports on 127.0.0.1 answer too (one per HAProxy node).
    published = stack.outputs["published_endpoints"]
    for port in published["read_write"]["ports"]:
        local = Endpoint("127.0.0.1", port, rw.user, rw.password, rw.dbname)
        assert node_of(server(local)[0]) == leader
    for port in published["read_only"]["ports"]:
        local = Endpoint("127.0.0.1", port, ro.user, ro.password, ro.dbname)
        assert server(local)[1] is True


def dcs_config(hosts: DockerHosts, node: str) -> dict:
    return yaml.safe_load(hosts.exec(node, "patronictl", "-c", "/etc/patroni/patroni.yml", "show-config",
                                     user="postgres"))


def test_dcs_configuration_follows_the_stack_config(healthy: None, patroni: Patroni, hosts: DockerHosts) -> None:
    leader = patroni.leader()
    assert leader
    desired = yaml.safe_load(hosts.exec(leader, "cat", "/etc/patroni/dynamic.yml"))
    assert dcs_config(hosts, leader) == desired
    # Drift (a hand edit, or a changed stack config after bootstrap) is replaced by pgha-dcs-sync.
    def replacements() -> int:
        return hosts.container(leader).logs().decode(errors="replace").count("pgha-dcs-sync: replaced")

    before = replacements()
    hosts.exec(leader, "patronictl", "-c", "/etc/patroni/patroni.yml", "edit-config", "--force", "-s", "ttl=25",
               "-p", "work_mem=8MB", user="postgres")
    wait_for("pgha-dcs-sync to replace the edited DCS configuration", lambda: replacements() > before, 60)
    assert dcs_config(hosts, leader) == desired


# ------------------------------------------------------------------------------------------ 2


def test_hard_kill_of_the_primary(healthy: None, patroni: Patroni, hosts: DockerHosts, writer: Writer) -> None:
    old = patroni.leader()
    assert old
    fault_at = time.monotonic()
    hosts.kill(old)
    new = wait_for("a new leader", lambda: (lead := patroni.leader()) and lead != old and lead, FAILOVER_S)
    writer.wait_acks(20, timeout_s=FAILOVER_S)
    outage = writer.log.outage_around(fault_at)
    assert_nothing_lost(writer)
    hosts.start(old)
    wait_for(f"{old} to rejoin as a streaming replica on the new timeline", lambda: patroni.healthy(3), RECOVER_S)
    assert patroni.members()[old]["role"] != "leader" and patroni.leader() == new
    print(f"hard kill of {old}: {new} leads, write outage {outage:.1f}s")


# ------------------------------------------------------------------------------------------ 3


def test_planned_switchover(healthy: None, patroni: Patroni, hosts: DockerHosts, writer: Writer) -> None:
    old = patroni.leader()
    candidate = patroni.sync_standbys()[0]
    fault_at = time.monotonic()
    hosts.exec(old, "patronictl", "-c", "/etc/patroni/patroni.yml", "switchover", "--leader", old,
               "--candidate", candidate, "--force", user="postgres")
    wait_for(f"{candidate} to lead", lambda: patroni.leader() == candidate, FAILOVER_S)
    writer.wait_acks(20, timeout_s=FAILOVER_S)
    outage = writer.log.outage_around(fault_at)
    assert_nothing_lost(writer)
    print(f"switchover {old} -> {candidate}: write outage {outage:.1f}s")


# ------------------------------------------------------------------------------------------ 4


def test_replica_loss_keeps_reads_and_moves_the_sync_role(healthy: None, patroni: Patroni, hosts: DockerHosts,
                                                           ro: Endpoint, writer: Writer) -> None:
    leader = patroni.leader()
    sync = patroni.sync_standbys()[0]
    other = next(n for n in PG_NODES if n not in (leader, sync))
    hosts.kill(other)
    wait_for("reads to keep working without the async replica",
             lambda: server(ro)[1] and node_of(server(ro)[0]) == sync, FAILOVER_S)
    hosts.start(other)
    wait_for("the replica back", lambda: patroni.healthy(3), RECOVER_S)
    hosts.kill(sync)
    wait_for(f"the sync role to move from {sync}", lambda: (s := patroni.sync_standbys()) and sync not in s,
             FAILOVER_S)
    assert patroni.leader() == leader, "losing a standby must not fail over"
    wait_for("reads served by the remaining replica", lambda: server(ro)[1], FAILOVER_S)
    writer.wait_acks(20, timeout_s=FAILOVER_S)
    assert_nothing_lost(writer)


# ------------------------------------------------------------------------------------------ 5


def test_one_etcd_member_down_changes_nothing(healthy: None, patroni: Patroni, hosts: DockerHosts,
                                              writer: Writer) -> None:
    leader = patroni.leader()
    hosts.kill("etcd-2")
    fault_at = time.monotonic()
    writer.wait_acks(50, timeout_s=FAILOVER_S)
    deadline = time.monotonic() + 25  # longer than ttl: a failover would have happened by now
    wait_for("ttl to pass", lambda: time.monotonic() >= deadline, 40)
    assert patroni.leader() == leader
    assert writer.log.outage_around(fault_at) < 5
    assert_nothing_lost(writer)


def test_etcd_majority_down_never_two_primaries(healthy: None, patroni: Patroni, hosts: DockerHosts,
                                                rw: Endpoint) -> None:
    watch = PrimaryWatch(hosts, PG_NODES)
    watch.start()
    try:
        hosts.kill("etcd-2")
        hosts.kill("etcd-3")
        # failsafe_mode is off in the dev stack: without the DCS the primary demotes itself.
        wait_for("the primary to stop accepting writes", lambda: not any(hosts.is_writable(n) for n in PG_NODES),
                 FAILOVER_S)
        with pytest.raises(Exception):  # noqa: B017 - any refusal will do: HAProxy has no primary to route to
            rw.query("CREATE TABLE IF NOT EXISTS pgha_e2e_refused (x int)")
        hosts.start("etcd-2")
        hosts.start("etcd-3")
        wait_for("a leader again", patroni.leader, RECOVER_S)
    finally:
        watch.stop()
    assert watch.samples >= 5, "the watch must really have sampled the nodes"
    assert not watch.split_brain, f"two writable primaries at once: {watch.split_brain[:3]}"


# ------------------------------------------------------------------------------------------ 6


def test_haproxy_node_loss_moves_the_vip(healthy: None, stack: Deployment, hosts: DockerHosts, rw: Endpoint,
                                         ro: Endpoint) -> None:
    holder = next(n for n in ("haproxy-1", "haproxy-2")
                  if "10.89.0.30/" in hosts.exec(n, "ip", "-4", "addr", "show", "dev", "eth0"))
    other = "haproxy-2" if holder == "haproxy-1" else "haproxy-1"
    hosts.kill(holder)
    wait_for(f"the VIP on {other}", lambda: "10.89.0.30/" in hosts.exec(other, "ip", "-4", "addr"), 30)
    assert wait_for("the read-write port through the VIP", lambda: server(rw)[1] is False, 30) is not None
    wait_for("the read-only port through the VIP", lambda: server(ro)[1], 30)


# ------------------------------------------------------------------------------------------ 7


def test_isolated_primary_is_replaced_without_split_brain(healthy: None, patroni: Patroni, hosts: DockerHosts,
                                                          writer: Writer) -> None:
    old = patroni.leader()
    assert old
    watch = PrimaryWatch(hosts, PG_NODES)
    watch.start()
    try:
        fault_at = time.monotonic()
        hosts.disconnect(old)
        wait_for(f"{old} to stop accepting writes", lambda: not hosts.is_writable(old), FAILOVER_S)
        new = wait_for("a new leader", lambda: (lead := patroni.leader()) and lead != old and lead, FAILOVER_S)
        writer.wait_acks(20, timeout_s=FAILOVER_S)
        hosts.reconnect(old, ADDRESSES[old])
        wait_for(f"{old} back as a replica", lambda: patroni.healthy(3), RECOVER_S)
    finally:
        watch.stop()
    assert not watch.split_brain, f"two writable primaries at once: {watch.split_brain[:3]}"
    print(f"isolation of {old}: {new} leads, write outage {writer.log.outage_around(fault_at):.1f}s")
    assert_nothing_lost(writer)


# ------------------------------------------------------------------------------------------ 8


def pgbackrest(hosts: DockerHosts, node: str, *args: str) -> str:
    return hosts.exec(node, "pgbackrest", f"--stanza={CLUSTER}", *args, user="postgres")


def test_backup_archiving_failover_and_point_in_time_restore(healthy: None, stack: Deployment, patroni: Patroni,
                                                             hosts: DockerHosts, rw: Endpoint) -> None:
    leader = patroni.leader()
    assert leader
    assert f"stanza: {CLUSTER}" in pgbackrest(hosts, leader, "info"), "post_bootstrap creates the stanza"
    hosts.exec(leader, "/usr/local/bin/pgha-backup", "full", user="postgres")
    info = pgbackrest(hosts, leader, "info")
    assert "status: ok" in info and "full backup" in info, info
    # Backups follow the leader: on a replica the scheduled job does nothing.
    replica = next(n for n in PG_NODES if n != leader)
    assert "not the primary" in hosts.exec(replica, "/usr/local/bin/pgha-backup", "full", user="postgres")
    pgbackrest(hosts, leader, "check")  # forces a WAL switch and waits until it is archived

    rw.query("CREATE TABLE IF NOT EXISTS pgha_e2e_pitr (batch text, n int)")
    rw.query("INSERT INTO pgha_e2e_pitr SELECT 'before', g FROM generate_series(1, 100) g")
    target = rw.query("SELECT clock_timestamp()::text")[0][0]
    wait_for("the clock to move past the target",
             lambda: rw.query("SELECT clock_timestamp() > %s::timestamptz + interval '1 second'", target)[0][0], 10)
    rw.query("INSERT INTO pgha_e2e_pitr SELECT 'after', g FROM generate_series(1, 50) g")

    # Archiving continues from the new primary after a failover.
    candidate = patroni.sync_standbys()[0]
    hosts.exec(leader, "patronictl", "-c", "/etc/patroni/patroni.yml", "switchover", "--leader", leader,
               "--candidate", candidate, "--force", user="postgres")
    wait_for(f"{candidate} to lead", lambda: patroni.leader() == candidate, FAILOVER_S)
    wait_for("the new primary to archive", lambda: pgbackrest(hosts, candidate, "check") is not None, FAILOVER_S)
    verify = pgbackrest(hosts, candidate, "verify")
    assert "error" not in verify.lower() or "0 error" in verify.lower(), verify

    # A time target older than every backup would silently recover to the end of WAL: make sure the
    # full backup taken above really precedes the target before restoring to it.
    backups = json.loads(pgbackrest(hosts, candidate, "info", "--output=json"))[0]["backup"]
    target_epoch = rw.query("SELECT extract(epoch FROM %s::timestamptz)::bigint", target)[0][0]
    assert any(b["timestamp"]["stop"] < target_epoch for b in backups), (backups, target)
    restored = restore_to(hosts, stack, target)
    assert restored == [("before", 100)], f"restore to {target} holds {restored}"


def restore_to(hosts: DockerHosts, stack: Deployment, target: str) -> list[tuple[str, int]]:
    """Restore the stanza to `target` into a fresh container on the same image and repository."""
    source = hosts.container("pg-1")
    config = hosts.exec("pg-1", "cat", "/etc/pgbackrest/pgbackrest.conf")
    client = hosts.client
    name = f"{CLUSTER}-restore"
    for old in client.containers.list(all=True, filters={"name": name}):
        old.remove(force=True)
    container = client.containers.run(
        source.image.id, ["sleep", "infinity"], name=name, detach=True, network_mode="none",
        labels={"pgha.e2e.run": stack.run_id},
        volumes={f"{CLUSTER}-backup-repo": {"bind": "/var/lib/pgbackrest", "mode": "rw"}},
    )
    try:
        def run(*argv: str, user: str = "postgres") -> str:
            code, out = container.exec_run(list(argv), user=user)
            text = out.decode(errors="replace")
            assert code == 0, f"{' '.join(argv)}: {text}"
            return text

        run("install", "-d", "-o", "postgres", "-g", "postgres", "-m", "0700", "/var/lib/postgresql/restore",
            "/var/run/postgresql", "/var/log/pgbackrest", "/etc/pgbackrest", user="root")
        data = config.encode()
        archive = io.BytesIO()
        with tarfile.open(fileobj=archive, mode="w") as tar:
            info = tarfile.TarInfo("pgbackrest.conf")
            info.size, info.mode = len(data), 0o600
            tar.addfile(info, io.BytesIO(data))
        container.put_archive("/etc/pgbackrest", archive.getvalue())
        run("chown", "postgres:postgres", "/etc/pgbackrest/pgbackrest.conf", user="root")
        data = "/var/lib/postgresql/restore"
        run("pgbackrest", f"--stanza={CLUSTER}", f"--pg1-path={data}", "--type=time",
            f"--target={target}", "--target-action=promote", "restore")
        # archive_mode off: the restored copy must never push WAL into the cluster's stanza.
        code, out = container.exec_run(
            ["/usr/lib/postgresql/17/bin/pg_ctl", "-D", data, "-w", "-t", "120",
             "-o", "-c archive_mode=off -c listen_addresses='' -c unix_socket_directories=/tmp "
             f"-c hba_file={data}/pg_hba.conf -c ident_file={data}/pg_ident.conf",
             "-l", "/tmp/restore.log", "start"], user="postgres")
        assert code == 0, container.exec_run(["cat", "/tmp/restore.log"]).output.decode(errors="replace")
        wait_for("the restored server to finish recovery", lambda: run(
            "psql", "-h", "/tmp", "-XtAc", "SELECT NOT pg_is_in_recovery()").strip() == "t", 120)
        out = run("psql", "-h", "/tmp", "-d", "app", "-XtAc",
                  "SELECT batch, count(*) FROM pgha_e2e_pitr GROUP BY batch ORDER BY batch")
        return [(b, int(n)) for b, n in (line.split("|") for line in out.split())]
    finally:
        container.remove(force=True)


# ------------------------------------------------------------------------------------------ 9


def test_destroy_removes_what_was_declared_and_nothing_else(stack: Deployment, sentinel: object) -> None:
    client = docker.from_env()
    declared = {r.docker_id for r in stack.resources if r.kind in ("container", "volume", "network")}
    assert len([r for r in stack.resources if r.kind == "container"]) == 8
    stack.destroy()
    label = f"pgha.e2e.run={stack.run_id}"
    assert not client.containers.list(all=True, filters={"label": label})
    assert not client.volumes.list(filters={"label": label})
    assert not client.networks.list(filters={"label": label})
    assert not client.containers.list(all=True, filters={"label": f"pgha.cluster={CLUSTER}"})
    for docker_id in declared:
        for collection in (client.containers, client.volumes, client.networks):
            with pytest.raises(docker.errors.NotFound):
                collection.get(docker_id)
    assert client.containers.get("pgha-e2e-sentinel").id
    assert client.volumes.get("pgha-e2e-sentinel").name == "pgha-e2e-sentinel"
