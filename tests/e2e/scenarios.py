"""Fault scenarios shared by every target: each acts through `Hosts` and measures from the client side.

A scenario takes a `ClusterUnderTest` (what the deployment's outputs and the test's host fixture
say about the cluster) and, where it writes, a running `Writer`; it leaves every host running and
the cluster healthy again, or fails naming what did not come back.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import psycopg
import pytest

from clientside.cluster import Endpoint, Hosts, Patroni, PrimaryWatch, Writer, wait_for
from render.etcd import ETCDCTL_ARGS
from render.keepalived import GARP_REFRESH_S

# ttl 20 + checks: a failover completes well within this; rejoin includes pg_rewind and catch-up.
FAILOVER_S = 60
RECOVER_S = 120
PATRONI_CONFIG = "/etc/patroni/patroni.yml"


@dataclass(frozen=True)
class ClusterUnderTest:
    """A deployed cluster as the scenarios see it."""

    name: str  # cluster name: Patroni scope and pgBackRest stanza
    patroni: Patroni
    hosts: Hosts
    rw: Endpoint
    ro: Endpoint
    addresses: dict[str, str]  # PostgreSQL node -> address
    etcd: tuple[str, ...]
    haproxy: tuple[str, ...]
    vip: str
    ca_certificate: str  # PEM, the `ca_certificate` stack output

    @property
    def pg_nodes(self) -> list[str]:
        return list(self.addresses)

    @property
    def all_hosts(self) -> list[str]:
        return [*self.pg_nodes, *self.etcd, *self.haproxy]

    def node_of(self, address: str) -> str:
        return next(n for n, a in self.addresses.items() if a == address)

    def healthy(self) -> bool:
        return self.patroni.healthy(len(self.addresses))

    def restore_hosts(self) -> None:
        """Start every host a scenario left stopped, then wait for a healthy cluster."""
        for node in self.all_hosts:
            if not self.hosts.is_running(node):
                self.hosts.start(node)
        wait_for("a healthy cluster after the scenario", self.healthy, RECOVER_S)


def server(endpoint: Endpoint, port: int | None = None) -> tuple[str, bool]:
    """(server address, in recovery) of the PostgreSQL server behind `endpoint`."""
    row = endpoint.query("SELECT host(inet_server_addr()), pg_is_in_recovery()", port=port)[0]
    return row[0], row[1]


def primary_behind(endpoint: Endpoint) -> str | None:
    """The address of the server behind `endpoint` when it is a primary, else None."""
    address, in_recovery = server(endpoint)
    return None if in_recovery else address


def assert_nothing_lost(writer: Writer) -> None:
    log = writer.stop()
    wait_for("the read-write endpoint", lambda: writer.endpoint.query("SELECT 1"), FAILOVER_S)
    lost = writer.lost()
    assert not lost, f"{len(lost)} acknowledged commits lost (first: {lost[:5]})"
    # The writer fixture waits for 20 acknowledged commits, each scenario for 20 more after its fault.
    assert len(log.acked) >= 40, f"only {len(log.acked)} commits acknowledged: the writer did not really write"


def patronictl(c: ClusterUnderTest, node: str, *args: str) -> str:
    return c.hosts.exec(node, "patronictl", "-c", PATRONI_CONFIG, *args, user="postgres")


# ------------------------------------------------------------------------------------------ up


def leader_sync_standby_and_routing(c: ClusterUnderTest) -> None:
    """One leader, streaming replicas, a sync standby, healthy etcd; rw reaches the leader, ro a replica."""
    wait_for("one leader, two streaming replicas, a sync standby", c.healthy, RECOVER_S)
    for etcd in c.etcd:
        assert "is healthy" in c.hosts.exec(etcd, *ETCDCTL_ARGS, "--endpoints=https://127.0.0.1:2379", "endpoint",
                                            "health")
    leader = c.patroni.leader()
    address, in_recovery = server(c.rw)
    assert c.node_of(address) == leader and not in_recovery, "read-write port must reach the leader"
    address, in_recovery = server(c.ro)
    assert c.node_of(address) != leader and in_recovery, "read-only port must reach a replica"
    tls_everywhere_off_loopback(c, leader)
    token = f"up-{time.time_ns()}"
    c.rw.query("CREATE TABLE IF NOT EXISTS pgha_e2e_kv (k text PRIMARY KEY)")
    c.rw.query("INSERT INTO pgha_e2e_kv VALUES (%s)", token)
    wait_for("the write to reach a replica", lambda: c.ro.query("SELECT 1 FROM pgha_e2e_kv WHERE k = %s", token),
             30)


def tls_everywhere_off_loopback(c: ClusterUnderTest, leader: str) -> None:
    """Clients through HAProxy verify the node's certificate with the CA output; plain text is
    refused; the standbys stream over TLS."""
    with tempfile.NamedTemporaryFile("w", suffix=".crt") as ca:
        ca.write(c.ca_certificate)
        ca.flush()
        for endpoint in (c.rw, c.ro):
            verified = replace(endpoint, sslmode="verify-full", sslrootcert=ca.name)
            assert verified.query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()") == [(True,)]
    with pytest.raises(psycopg.OperationalError, match="no encryption"):
        replace(c.rw, sslmode="disable").query("SELECT 1")
    streams = c.hosts.exec(leader, "psql", "-XtAc", "SELECT count(*), bool_and(s.ssl) FROM pg_stat_replication r "
                           "JOIN pg_stat_ssl s USING (pid)", user="postgres")
    assert streams.strip() == f"{len(c.pg_nodes) - 1}|t", f"replication connections and their TLS: {streams}"


# ------------------------------------------------------------------------------------------ faults


def hard_kill_of_the_primary(c: ClusterUnderTest, writer: Writer) -> None:
    old = c.patroni.leader()
    assert old
    fault_at = time.monotonic()
    c.hosts.kill(old)
    new = wait_for("a new leader", lambda: (lead := c.patroni.leader()) and lead != old and lead, FAILOVER_S)
    writer.wait_acks(20, timeout_s=FAILOVER_S)
    outage = writer.log.outage_around(fault_at)
    assert_nothing_lost(writer)
    c.hosts.start(old)
    wait_for(f"{old} to rejoin as a streaming replica on the new timeline", c.healthy, RECOVER_S)
    assert c.patroni.members()[old]["role"] != "leader" and c.patroni.leader() == new
    print(f"hard kill of {old}: {new} leads, write outage {outage:.1f}s")


def planned_switchover(c: ClusterUnderTest, writer: Writer) -> float:
    """Switch to the sync standby; returns the writer's outage (the yardstick of a planned change)."""
    old = c.patroni.leader()
    assert old
    candidate = c.patroni.sync_standbys()[0]
    fault_at = time.monotonic()
    patronictl(c, old, "switchover", "--leader", old, "--candidate", candidate, "--force")
    wait_for(f"{candidate} to lead", lambda: c.patroni.leader() == candidate, FAILOVER_S)
    writer.wait_acks(20, timeout_s=FAILOVER_S)
    outage = writer.log.outage_around(fault_at)
    assert_nothing_lost(writer)
    print(f"switchover {old} -> {candidate}: write outage {outage:.1f}s")
    return outage


def replica_loss_keeps_reads_and_moves_the_sync_role(c: ClusterUnderTest, writer: Writer) -> None:
    leader = c.patroni.leader()
    sync = c.patroni.sync_standbys()[0]
    other = next(n for n in c.pg_nodes if n not in (leader, sync))
    c.hosts.kill(other)
    wait_for("reads to keep working without the async replica",
             lambda: server(c.ro)[1] and c.node_of(server(c.ro)[0]) == sync, FAILOVER_S)
    c.hosts.start(other)
    wait_for("the replica back", c.healthy, RECOVER_S)
    c.hosts.kill(sync)
    wait_for(f"the sync role to move from {sync}", lambda: (s := c.patroni.sync_standbys()) and sync not in s,
             FAILOVER_S)
    assert c.patroni.leader() == leader, "losing a standby must not fail over"
    wait_for("reads served by the remaining replica", lambda: server(c.ro)[1], FAILOVER_S)
    writer.wait_acks(20, timeout_s=FAILOVER_S)
    assert_nothing_lost(writer)


def one_etcd_member_down_changes_nothing(c: ClusterUnderTest, writer: Writer) -> None:
    leader = c.patroni.leader()
    c.hosts.kill(c.etcd[1])
    fault_at = time.monotonic()
    writer.wait_acks(50, timeout_s=FAILOVER_S)
    deadline = time.monotonic() + 25  # longer than ttl: a failover would have happened by now
    wait_for("ttl to pass", lambda: time.monotonic() >= deadline, 40)
    assert c.patroni.leader() == leader
    assert writer.log.outage_around(fault_at) < 5
    assert_nothing_lost(writer)


# What a writer sees once the primary demoted itself: HAProxy has no primary to route to (it accepts, then
# closes the connection, or holds it past the client's connect timeout while it retries), or, until its
# next checks mark the demoted node down, routes to a read-only one.
# How a write through the read-write port is refused once the primary has demoted itself: the connection cut
# or timed out, a read-only transaction, or the demoted server refusing while it restarts as a standby (HAProxy
# still counting it up until its checks run).
WRITE_REFUSED = (r"server closed the connection unexpectedly|SSL SYSCALL error: EOF detected|unexpected eof"
                 r"|connection timeout expired|cannot execute CREATE TABLE in a read-only transaction"
                 r"|the database system is (starting up|shutting down)")


def etcd_majority_down_never_two_primaries(c: ClusterUnderTest) -> None:
    watch = PrimaryWatch(c.hosts, c.pg_nodes)
    watch.start_watching()  # its positive control: it sees the one primary before the fault
    try:
        for member in c.etcd[1:]:
            c.hosts.kill(member)
        # failsafe_mode is off: without the DCS the primary demotes itself.
        wait_for("the primary to stop accepting writes",
                 lambda: not any(c.hosts.is_writable(n) for n in c.pg_nodes), FAILOVER_S)
        with pytest.raises((psycopg.OperationalError, psycopg.errors.ReadOnlySqlTransaction), match=WRITE_REFUSED):
            c.rw.query("CREATE TABLE IF NOT EXISTS pgha_e2e_refused (x int)")
        for member in c.etcd[1:]:
            c.hosts.start(member)
        wait_for("a leader again", c.patroni.leader, RECOVER_S)
    finally:
        watch.stop()
    assert not watch.split_brain, f"two writable primaries at once: {watch.split_brain[:3]}"


def holds_vip(c: ClusterUnderTest, node: str) -> bool:
    return f"{c.vip}/" in c.hosts.exec(node, "ip", "-4", "addr", "show", "dev", "eth0")


def ip(*argv: str) -> str:
    """`ip` on this machine, the client of the cluster's network."""
    return subprocess.run(["ip", *argv], capture_output=True, text=True, check=True).stdout


def a_client_sent_to_the_wrong_node_is_set_right(c: ClusterUnderTest) -> float:
    """This machine's neighbour entry for the virtual IP made to name the HAProxy node that does not hold it
    (as after a node held it for a moment, or a move the cache missed): the holder's repeated gratuitous ARP
    (`vrrp_garp_master_refresh`) sets it right within GARP_REFRESH_S and an advert. The control: the kernel's
    own ageing could not have done it in that time (its shortest reachable time, from /proc, is longer), and
    the entry named the wrong node first. Returns how long it took."""
    holder = next(n for n in c.haproxy if holds_vip(c, n))
    other = next(n for n in c.haproxy if n != holder)
    mac = {n: c.hosts.exec(n, "cat", "/sys/class/net/eth0/address").strip() for n in (holder, other)}
    device = ip("-o", "route", "get", c.vip).split(" dev ", 1)[1].split()[0]
    bound = GARP_REFRESH_S + 3.0
    with open(f"/proc/sys/net/ipv4/neigh/{device}/base_reachable_time_ms") as f:
        shortest_reachable_s = int(f.read()) / 2000  # the kernel picks 0.5-1.5 x base
    assert shortest_reachable_s > bound, f"{device}: ageing alone ({shortest_reachable_s}s) could pass this check"

    def entry() -> str:
        return ip("neigh", "show", c.vip, "dev", device)

    ip("neigh", "replace", c.vip, "lladdr", mac[other], "dev", device, "nud", "reachable")
    start = time.monotonic()
    assert mac[other] in entry(), f"the control: the entry names {other}: {entry()}"
    wait_for(f"the entry for {c.vip} naming {holder} ({mac[holder]})", lambda: mac[holder] in entry(), bound, 0.1)
    took = time.monotonic() - start
    wait_for("the read-write port through the VIP", lambda: primary_behind(c.rw), 10)
    print(f"neighbour entry for {c.vip} pointed at {other}: set right by {holder}'s gratuitous ARP in {took:.1f}s")
    return took


def haproxy_node_loss_moves_the_vip(c: ClusterUnderTest) -> None:
    holder = next(n for n in c.haproxy if holds_vip(c, n))
    other = next(n for n in c.haproxy if n != holder)
    c.hosts.kill(holder)
    wait_for(f"the VIP on {other}", lambda: holds_vip(c, other), 30)
    leader = c.patroni.leader()
    address = wait_for("the read-write port through the VIP", lambda: primary_behind(c.rw), 30)
    assert c.node_of(address) == leader, f"the read-write port must reach the leader {leader}"
    wait_for("the read-only port through the VIP", lambda: server(c.ro)[1], 30)


def isolated_primary_is_replaced_without_split_brain(c: ClusterUnderTest, writer: Writer) -> None:
    old = c.patroni.leader()
    assert old
    watch = PrimaryWatch(c.hosts, c.pg_nodes)
    watch.start_watching()  # its positive control: it sees the one primary before the fault
    try:
        fault_at = time.monotonic()
        c.hosts.disconnect(old)
        wait_for(f"{old} to stop accepting writes", lambda: not c.hosts.is_writable(old), FAILOVER_S)
        new = wait_for("a new leader", lambda: (lead := c.patroni.leader()) and lead != old and lead, FAILOVER_S)
        writer.wait_acks(20, timeout_s=FAILOVER_S)
        c.hosts.reconnect(old, c.addresses[old])
        wait_for(f"{old} back as a replica", c.healthy, RECOVER_S)
    finally:
        watch.stop()
    assert not watch.split_brain, f"two writable primaries at once: {watch.split_brain[:3]}"
    print(f"isolation of {old}: {new} leads, write outage {writer.log.outage_around(fault_at):.1f}s")
    assert_nothing_lost(writer)


# ------------------------------------------------------------------------------------------ backup


def pgbackrest(c: ClusterUnderTest, node: str, *args: str) -> str:
    return c.hosts.exec(node, "pgbackrest", f"--stanza={c.name}", *args, user="postgres")


def backup_archiving_failover_and_point_in_time_restore(
        c: ClusterUnderTest, restore_to: Callable[[str], list[tuple[str, int]]]) -> None:
    """Full backup on the leader (a no-op on replicas), archiving after a switchover, and a restore
    to a point in time by `restore_to(target)`, which returns the restored pgha_e2e_pitr counts."""
    leader = c.patroni.leader()
    assert leader
    assert f"stanza: {c.name}" in pgbackrest(c, leader, "info"), "post_bootstrap creates the stanza"
    c.hosts.exec(leader, "/usr/local/bin/pgha-backup", "full", user="postgres")
    info = pgbackrest(c, leader, "info")
    assert "status: ok" in info and "full backup" in info, info
    # Backups follow the leader: on a replica the scheduled job does nothing.
    replica = next(n for n in c.pg_nodes if n != leader)
    assert "not the primary" in c.hosts.exec(replica, "/usr/local/bin/pgha-backup", "full", user="postgres")
    pgbackrest(c, leader, "check")  # forces a WAL switch and waits until it is archived

    # pgBackRest picks the backup set for a time target by whole seconds, and only one that stopped
    # strictly before the target's second. Let the clock leave the backup's stop second behind first.
    stop = latest_backup_stop(c, leader)
    wait_for("the clock to pass the backup's stop second",
             lambda: c.rw.query("SELECT floor(extract(epoch FROM clock_timestamp()))::bigint > %s", stop + 1)[0][0],
             10)
    c.rw.query("CREATE TABLE IF NOT EXISTS pgha_e2e_pitr (batch text, n int)")
    c.rw.query("INSERT INTO pgha_e2e_pitr SELECT 'before', g FROM generate_series(1, 100) g")
    target = c.rw.query("SELECT clock_timestamp()::text")[0][0]
    wait_for("the clock to move past the target",
             lambda: c.rw.query("SELECT clock_timestamp() > %s::timestamptz + interval '1 second'", target)[0][0],
             10)
    c.rw.query("INSERT INTO pgha_e2e_pitr SELECT 'after', g FROM generate_series(1, 50) g")

    # Archiving continues from the new primary after a failover.
    candidate = c.patroni.sync_standbys()[0]
    patronictl(c, leader, "switchover", "--leader", leader, "--candidate", candidate, "--force")
    wait_for(f"{candidate} to lead", lambda: c.patroni.leader() == candidate, FAILOVER_S)
    wait_for("the new primary to archive",
             lambda: "check command end: completed successfully" in pgbackrest(c, candidate, "check"), FAILOVER_S)
    verify = pgbackrest(c, candidate, "verify")
    assert "error" not in verify.lower() or "0 error" in verify.lower(), verify

    # The full backup taken above must precede the target the way pgBackRest compares them (whole
    # seconds, strictly earlier), or restore refuses the target.
    target_second = wait_for("the read-write endpoint on the new primary", lambda: c.rw.query(
        "SELECT floor(extract(epoch FROM %s::timestamptz))::bigint", target)[0][0], FAILOVER_S)
    assert latest_backup_stop(c, candidate) < target_second, (stop, target)
    restored = restore_to(target)
    assert restored == [("before", 100)], f"restore to {target} holds {restored}"


def latest_backup_stop(c: ClusterUnderTest, node: str) -> int:
    """Stop time (epoch seconds, as pgBackRest records it) of the newest backup in the stanza."""
    backups = json.loads(pgbackrest(c, node, "info", "--output=json"))[0]["backup"]
    assert backups, "the stanza holds no backup"
    return int(max(b["timestamp"]["stop"] for b in backups))


def restore_commands(stanza: str, data: str, target: str, socket_dir: str) -> list[list[str]]:
    """pgBackRest restore to `target` into `data`, then a private start (no archiving, no TCP)."""
    return [
        ["pgbackrest", f"--stanza={stanza}", f"--pg1-path={data}", "--type=time", f"--target={target}",
         "--target-action=promote", "restore"],
        # archive_mode off: the restored copy must never push WAL into the cluster's stanza. ssl off:
        # it serves no TCP, and the node's certificate files are not on this host.
        ["/usr/lib/postgresql/17/bin/pg_ctl", "-D", data, "-w", "-t", "120",
         "-o", f"-c archive_mode=off -c ssl=off -c listen_addresses='' -c unix_socket_directories={socket_dir} "
         f"-c hba_file={data}/pg_hba.conf -c ident_file={data}/pg_ident.conf",
         "-l", f"{data}.log", "start"],
    ]


PITR_COUNTS = "SELECT batch, count(*) FROM pgha_e2e_pitr GROUP BY batch ORDER BY batch"


def parse_counts(out: str) -> list[tuple[str, int]]:
    return [(b, int(n)) for b, n in (line.split("|") for line in out.split())]
