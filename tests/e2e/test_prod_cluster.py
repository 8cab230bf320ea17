"""The prod (ssh) target, deployed for real over SSH onto bare-metal-like Debian hosts.

Eight systemd containers (tests/e2e/hosts) stand in for the machines of the README's "Running prod":
nothing of the cluster is installed; the program's remote commands install Debian's packages,
write configuration and units, start and converge everything. The local engine runs each
`command:remote:Command` over real SSH and runs the program again against the same hosts the way
`pulumi up` does (unchanged commands do not run, changed ones update, a changed trigger replaces).
The fault scenarios are the dev ones (tests/e2e/scenarios.py), acting on whole hosts.

The tests run in file order and share one cluster: up, a second run that changes nothing, a new
connection, the fault scenarios, a configuration change, an unreachable host, secrets, destroy and
a new deployment that refuses the data left behind.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from catalog.roles import host_packages
from clientside.cluster import Endpoint, Patroni, SystemdHosts, Writer, endpoints, wait_for
from local_engine import Stack, Update, UpdateFailedError
from local_engine.wire import unwrap
from operations.change_plan import PLAN_OUTPUT
from tests.e2e import attacks, changes, scenarios
from tests.e2e.hosts import fleet as fleet_module
from tests.e2e.scenarios import ClusterUnderTest
from tests.support.docker import keep_requested, require_engine

pytestmark = pytest.mark.ssh
ROOT = Path(__file__).resolve().parents[2]
STACK_FILE = Path(__file__).resolve().parent / "Pulumi.e2e-ssh.yaml"
CONFIG = yaml.safe_load(STACK_FILE.read_text())["config"]
CLUSTER = CONFIG["pgha:name"]
PG_NODES = {n["name"]: n["address"] for n in CONFIG["pgha:postgres"]["nodes"]}
ETCD = {m["name"]: m["address"] for m in CONFIG["pgha:etcd"]["members"]}
HAPROXY = {n["name"]: n["address"] for n in CONFIG["pgha:haproxy"]["nodes"]}
VIP = CONFIG["pgha:haproxy"]["virtual_ip"]
REPO_PATH = CONFIG["pgha:backup"]["repo_path"]
KEY = "pgha:sshPrivateKey"
PG_DATA = "/var/lib/postgresql/17/main"
# Every package the program's install steps name, downloaded once into the hosts' shared cache.
APT_PACKAGES = host_packages()
# The long-running services a reload-only change must not restart.
CORE_UNITS = {"pgha-etcd.service", "pgha-patroni.service", "pgha-haproxy.service", "pgha-keepalived.service"}
# What the tests measured, for later comparisons (the switchover's outage is the yardstick of item 3).
MEASURED: dict[str, float] = {}
# What the destroyed deployment left in its data, for the adoption (test 5).
KEPT: dict[str, str] = {"marker": f"kept-{uuid.uuid4().hex[:8]}"}


# ------------------------------------------------------------------------------------------ fixtures


COMMAND = "command:remote:Command"


def with_host_keys(fleet: fleet_module.Fleet, ssh: dict[str, Any] | None = None) -> dict[str, Any]:
    """`pgha:ssh` (the stack file's unless given) pinning every test host's key as it is now: a host rebuilt or
    moved has new ones, and the stack follows, as an operator's would."""
    return {**(ssh or CONFIG["pgha:ssh"]), "host_keys": fleet.host_keys()}


class Runs:
    """The deployments of this module: one stack, deployed again and again as `pulumi up` would."""

    def __init__(self, fleet: fleet_module.Fleet) -> None:
        self.fleet = fleet
        self.stack = Stack("e2e-ssh", ROOT, project="pgha", stack_file=STACK_FILE, config={KEY: fleet.private_key},
                           secret_keys=[KEY])
        self.all: list[Update] = []

    @property
    def last(self) -> Update:
        return self.all[-1]

    def up(self, **config: Any) -> Update:
        """Run the program (again); `config` overrides stack keys (e.g. postgres=...). The hosts' keys are
        those they have now."""
        import program

        config["ssh"] = with_host_keys(self.fleet, config.get("ssh") or self.stack.base_config.get("pgha:ssh"))
        try:
            update = self.stack.up(program.main, {f"pgha:{k}": v for k, v in config.items()})
        except UpdateFailedError as failed:
            self.all.append(failed.update)
            raise
        self.all.append(update)
        return update

    def commands(self) -> dict[str, dict[str, Any]]:
        """Every remote command in the stack's state: name -> its stored inputs (plain)."""
        return {s.name: unwrap(s.inputs) for s in self.stack.resources(COMMAND)}

    def passwords(self) -> dict[str, str]:
        """Every generated password (RandomPassword results, from the stack's state)."""
        return {s.name: unwrap(s.outputs["result"])
                for s in self.stack.resources("random:index/randomPassword:RandomPassword")}

    def private_keys(self) -> dict[str, str]:
        """Every generated TLS private key (PEM), from the stack's state."""
        keys = self.stack.resources("tls:index/privateKey:PrivateKey")
        return {s.name: unwrap(s.outputs["privateKeyPem"]) for s in keys}


class ProcessSampler(threading.Thread):
    """Samples `ps -eo args` on every host while something runs (e.g. a deployment)."""

    def __init__(self, hosts: SystemdHosts, nodes: list[str], interval_s: float = 1.0) -> None:
        super().__init__(daemon=True, name="pgha-ps-sampler")
        self.hosts, self.nodes, self.interval_s = hosts, nodes, interval_s
        self.samples: list[tuple[str, str]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            for node in self.nodes:
                # A host a scenario stopped is sampled again next round.
                with contextlib.suppress(Exception):
                    self.samples.append((node, self.hosts.exec(node, "ps", "-eo", "args", check=False)))
            self._halt.wait(self.interval_s)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=60)


SAMPLES: list[tuple[str, str]] = []  # (host, `ps -eo args` output) gathered during deployments


@pytest.fixture(scope="module")
def fleet() -> Iterator[fleet_module.Fleet]:
    require_engine()
    # The etcd hosts mount the repository too: PostgreSQL nodes added by a test share them (other ports).
    hosts = fleet_module.start_fleet({**ETCD, **PG_NODES, **HAPROXY}, {**PG_NODES, **ETCD}, REPO_PATH, APT_PACKAGES)
    yield hosts
    if not keep_requested():
        fleet_module.cleanup()


@pytest.fixture(scope="module")
def hosts(fleet: fleet_module.Fleet) -> SystemdHosts:
    return SystemdHosts(CLUSTER, prefix=fleet_module.PREFIX, network=fleet_module.NETWORK)


@pytest.fixture(scope="module")
def runs(fleet: fleet_module.Fleet, hosts: SystemdHosts) -> Runs:
    chain = Runs(fleet)
    sampler = ProcessSampler(hosts, list(fleet.addresses))
    sampler.start()
    try:
        chain.up()
    finally:
        sampler.stop()
        SAMPLES.extend(sampler.samples)
    return chain


@pytest.fixture(scope="module")
def stack(runs: Runs) -> Update:
    return runs.all[0]


@pytest.fixture(scope="module")
def cluster(stack: Update, hosts: SystemdHosts) -> ClusterUnderTest:
    rw, ro = endpoints(stack.outputs)  # as an application uses the DSNs: verify-full with the CA output
    return ClusterUnderTest(
        name=CLUSTER, patroni=Patroni.of(stack.outputs), hosts=hosts, rw=rw, ro=ro,
        addresses=dict(PG_NODES), etcd=tuple(ETCD), haproxy=tuple(HAPROXY), vip=VIP,
        ca_certificate=stack.outputs["ca_certificate"])


@pytest.fixture
def healthy(cluster: ClusterUnderTest) -> Iterator[None]:
    """Each scenario starts and must end with a healthy cluster (every host running again)."""
    wait_for("a healthy cluster before the scenario", cluster.healthy, scenarios.RECOVER_S)
    yield
    cluster.restore_hosts()


@pytest.fixture
def writer(cluster: ClusterUnderTest) -> Iterator[Writer]:
    w = Writer(cluster.rw)
    w.start()
    w.wait_acks(20)
    yield w
    w.stop()


# ------------------------------------------------------------------------------------------ helpers


def services(hosts: SystemdHosts, node: str) -> dict[str, dict[str, str]]:
    """The pgha units (and cron on PostgreSQL hosts) of `node` with their MainPID, start time, restarts."""
    names = hosts.exec(node, "bash", "-c", "ls /etc/systemd/system/pgha-*.service 2>/dev/null | xargs -rn1 basename",
                       check=False).split()
    # Not the firewall's boot unit: a oneshot that loads the table at boot (a deployment loads it itself, so the
    # unit never ran here); no process to restart.
    names = [n for n in names if n != "pgha-firewall.service"]
    if node in PG_NODES:
        names.append("cron.service")
    return {name: hosts.unit(node, name) for name in names}


def postmaster(hosts: SystemdHosts, node: str) -> tuple[str, str]:
    """(postmaster PID, start time) of PostgreSQL on `node`."""
    pid = hosts.exec(node, "head", "-1", f"{PG_DATA}/postmaster.pid").strip()
    started = hosts.exec(node, "psql", "-XtAc", "SELECT pg_postmaster_start_time()", user="postgres").strip()
    return pid, started


def snapshot(hosts: SystemdHosts) -> dict[str, Any]:
    """Everything that would change if a service were restarted or reloaded into a new process."""
    state: dict[str, Any] = {node: services(hosts, node) for node in [*ETCD, *PG_NODES, *HAPROXY]}
    for node in PG_NODES:
        state[f"{node}/postmaster"] = postmaster(hosts, node)
    return state


def show(hosts: SystemdHosts, node: str, *names: str) -> list[str]:
    sql = "SELECT " + ", ".join(f"current_setting('{n}')" for n in names)
    return hosts.exec(node, "psql", "-XtAc", sql, user="postgres").strip().split("|")


def postgres_config(**parameters: Any) -> dict[str, Any]:
    """The stack's `pgha:postgres` with `parameters` changed."""
    section = json.loads(json.dumps(CONFIG["pgha:postgres"]))
    section["parameters"] = {**section["parameters"], **parameters}
    return section


def restore_on(c: ClusterUnderTest, node: str) -> Callable[[str], list[tuple[str, int]]]:
    """A point-in-time restore into a scratch directory of PostgreSQL host `node` (its own pgBackRest
    configuration, the shared repository), started privately: no TCP, no archiving."""
    data, sockets = "/var/lib/postgresql/pgha-e2e-restore", "/tmp/pgha-e2e-restore"

    def restore(target: str) -> list[tuple[str, int]]:
        c.hosts.exec(node, "rm", "-rf", data, sockets, f"{data}.log")
        c.hosts.exec(node, "install", "-d", "-o", "postgres", "-g", "postgres", "-m", "0700", data, sockets)
        try:
            for argv in scenarios.restore_commands(c.name, data, target, sockets):
                c.hosts.exec(node, *argv, user="postgres")
            wait_for("the restored server to finish recovery", lambda: c.hosts.exec(
                node, "psql", "-h", sockets, "-XtAc", "SELECT NOT pg_is_in_recovery()", user="postgres").strip() == "t",
                120)
            return scenarios.parse_counts(c.hosts.exec(node, "psql", "-h", sockets, "-d", "app", "-XtAc",
                                                       scenarios.PITR_COUNTS, user="postgres"))
        finally:
            c.hosts.exec(node, "/usr/lib/postgresql/17/bin/pg_ctl", "-D", data, "-m", "immediate", "stop",
                         user="postgres", check=False)
            c.hosts.exec(node, "rm", "-rf", data, sockets, f"{data}.log", check=False)

    return restore


# ------------------------------------------------------------------------------------------ 1: up


def test_up_leader_sync_standby_and_routing(stack: Update, cluster: ClusterUnderTest) -> None:
    scenarios.leader_sync_standby_and_routing(cluster)
    assert stack.outputs["read_write_endpoint"] == {"host": VIP, "port": 5000}
    assert {"app_dsn", "readonly_dsn"} <= stack.secret_outputs
    # Every service is two remote commands per host, and every one of them ran once, over SSH.
    runs = stack.runs
    assert {r.action for r in runs} == {"create"} and all(r.exit_status == 0 for r in runs)
    assert stack.plan.ops() == stack.steps.ops(), "the update did what the plan said"
    hosts_reached = {r.host for r in runs}
    assert hosts_reached == {*ETCD.values(), *PG_NODES.values(), *HAPROXY.values()}
    print(f"deployment: {stack.seconds:.0f}s, {len(runs)} remote commands")


# ------------------------------------------------------------------------------------------ 2: re-runs


def test_a_stranger_on_the_network_is_refused(healthy: None, cluster: ClusterUnderTest) -> None:
    with attacks.stranger(cluster, "10.93.0.99") as stranger:
        attacks.firewall_drops_strangers(cluster, stranger)
        # Each layer behind the firewall holds on its own.
        with attacks.firewall_opened_to(cluster, stranger.address):
            attacks.postgres_refuses_strangers(cluster, stranger)
            attacks.rest_refuses_strangers(cluster, stranger)
            attacks.etcd_refuses_strangers(cluster, stranger)


def test_a_second_run_and_forced_converges_restart_nothing(runs: Runs, cluster: ClusterUnderTest,
                                                           hosts: SystemdHosts) -> None:
    wait_for("a healthy cluster", cluster.healthy, scenarios.RECOVER_S)
    before = snapshot(hosts)
    members_before = {n: m.get("pending_restart") for n, m in cluster.patroni.members().items()}
    first = runs.last
    second = runs.up()
    assert second.runs == [], f"unchanged inputs ran: {second.ran()}"
    assert second.plan.changes() == second.steps.changes() == {}
    assert set(second.plan.ops()) >= set(runs.commands())
    # Same passwords, same endpoints, same applied configuration; only what the plan said differs.
    assert {**second.outputs, PLAN_OUTPUT: None} == {**first.outputs, PLAN_OUTPUT: None}
    assert set(map(tuple, second.outputs[PLAN_OUTPUT].values())) == {("nothing",)}
    # Each service's converge script again, by force: it finds everything in place.
    converges = [name for name in runs.commands() if name.endswith("-service")]
    assert len(converges) == 8
    for name in converges:
        run = runs.stack.rerun(name)
        assert not re.search(r"(started|restarted|reloaded)$", run.stdout, re.M), f"{name}: {run.stdout}"
    after = snapshot(hosts)
    assert after == before, "a re-run restarted or reloaded something"
    assert {n: m.get("pending_restart") for n, m in cluster.patroni.members().items()} == members_before


def test_a_new_connection_is_an_update_that_runs_every_command_again_and_restarts_nothing(
        runs: Runs, cluster: ClusterUnderTest, hosts: SystemdHosts) -> None:
    """pulumi-command: a changed `connection` is an update, not a replacement; it runs `update`, or `create`
    again without one, against the new connection (the hosts' sshd answers on 2222 too)."""
    wait_for("a healthy cluster", cluster.healthy, scenarios.RECOVER_S)
    before = snapshot(hosts)
    moved = runs.up(ssh={**CONFIG["pgha:ssh"], "port": 2222})
    commands = runs.commands()
    assert moved.plan.changes() == moved.steps.changes() == dict.fromkeys(commands, "update"), moved.plan.render()
    assert all(moved.plan.of(name).keys == ("connection",) for name in commands)
    assert sorted(moved.ran("update")) == sorted(commands) and all(r.exit_status == 0 for r in moved.runs)
    for run in moved.runs:  # the converges have an update command; the others run their create again
        assert run.command == ("bash -s update" if run.name.endswith("-service") else "bash -s"), run
    assert all(inputs["connection"]["port"] == 2222 for inputs in commands.values())
    assert snapshot(hosts) == before, "moving the connection restarted or reloaded something"
    runs.stack.base_config["pgha:ssh"] = {**CONFIG["pgha:ssh"], "port": 2222}  # the later runs stay there
    assert runs.up().plan.changes() == {}


def test_every_host_carries_the_firewall_and_drops_what_no_role_there_needs(runs: Runs, hosts: SystemdHosts) -> None:
    """pgha's nftables table is loaded and enabled for boot on every host; a port is reached by the hosts that
    need it (etcd's peer port by another member) and not by the others (an HAProxy host): dropped, no answer."""
    for node in [*ETCD, *PG_NODES, *HAPROXY]:
        assert "policy drop;" in hosts.exec(node, "nft", "list", "table", "inet", "pgha"), node
        assert hosts.exec(node, "systemctl", "is-enabled", "pgha-firewall.service").strip() == "enabled", node
    etcd_1, etcd_2 = list(ETCD)[:2]
    haproxy_1, pg_1 = next(iter(HAPROXY)), next(iter(PG_NODES))

    def connect(node: str, address: str, port: int) -> int:
        script = f"timeout 3 bash -c '</dev/tcp/{address}/{port}'; echo $?"
        return int(hosts.exec(node, "bash", "-c", script, check=False).strip().splitlines()[-1])

    assert connect(etcd_2, ETCD[etcd_1], 2380) == 0, "a member reaches another's peer port"
    assert connect(haproxy_1, ETCD[etcd_1], 2380) == 124, "an HAProxy host's connection is dropped"
    assert connect(haproxy_1, PG_NODES[pg_1], 8008) == 0, "HAProxy checks Patroni's REST API"


# ------------------------------------------------------------------------------------------ faults


def test_hard_kill_of_the_primary_host(healthy: None, cluster: ClusterUnderTest, writer: Writer) -> None:
    scenarios.hard_kill_of_the_primary(cluster, writer)


def test_planned_switchover(healthy: None, cluster: ClusterUnderTest, writer: Writer) -> None:
    MEASURED["switchover"] = scenarios.planned_switchover(cluster, writer)


def test_replica_loss_keeps_reads_and_moves_the_sync_role(healthy: None, cluster: ClusterUnderTest,
                                                           writer: Writer) -> None:
    scenarios.replica_loss_keeps_reads_and_moves_the_sync_role(cluster, writer)


def test_one_etcd_host_down_changes_nothing(healthy: None, cluster: ClusterUnderTest, writer: Writer) -> None:
    scenarios.one_etcd_member_down_changes_nothing(cluster, writer)


def test_a_client_sent_to_the_wrong_haproxy_host_is_set_right(healthy: None, cluster: ClusterUnderTest) -> None:
    scenarios.a_client_sent_to_the_wrong_node_is_set_right(cluster)


def test_haproxy_host_loss_moves_the_vip(healthy: None, cluster: ClusterUnderTest) -> None:
    scenarios.haproxy_node_loss_moves_the_vip(cluster)


def test_isolated_primary_host_is_replaced_without_split_brain(healthy: None, cluster: ClusterUnderTest,
                                                               writer: Writer) -> None:
    scenarios.isolated_primary_is_replaced_without_split_brain(cluster, writer)


def test_backup_archiving_failover_and_point_in_time_restore(healthy: None, cluster: ClusterUnderTest) -> None:
    leader = cluster.patroni.leader()
    scratch = next(n for n in PG_NODES if n != leader)
    scenarios.backup_archiving_failover_and_point_in_time_restore(cluster, restore_on(cluster, scratch))


# ------------------------------------------------------------------------------------------ 3: config change


def processes(hosts: SystemdHosts) -> dict[str, str]:
    """host/process -> identity: each pgha unit (and cron) by main PID and start, each PostgreSQL server by its
    start time (the shape tests/e2e/changes.py compares)."""
    found: dict[str, str] = {}
    for node in [*ETCD, *PG_NODES, *HAPROXY]:
        for unit, props in services(hosts, node).items():
            name = unit.removesuffix(".service").removeprefix("pgha-")
            found[f"{node}/{name}"] = f"{props['MainPID']} {props['ExecMainStartTimestamp']}"
    for node in PG_NODES:
        found[f"{node}/postmaster"] = postmaster(hosts, node)[1]
    return found


@pytest.fixture(scope="module")
def deployments(runs: Runs, hosts: SystemdHosts) -> changes.Deployments:
    def passwords() -> dict[str, str]:
        return {k.removeprefix(f"{CLUSTER}-").removesuffix("-password"): v for k, v in runs.passwords().items()}

    return changes.Deployments(config=CONFIG, up=lambda overrides: runs.up(**{k.removeprefix("pgha:"): v
                                                                           for k, v in overrides.items()}),
                               snapshot=lambda: processes(hosts), cluster=CLUSTER, passwords=passwords,
                               keep=runs.stack.base_config.update)


def test_reload_parameter_and_patroni_setting_restart_nothing(healthy: None, cluster: ClusterUnderTest,
                                                              deployments: changes.Deployments,
                                                              writer: Writer) -> None:
    changes.reload_parameter_and_patroni_setting(deployments, cluster, writer)


def test_patroni_restarts_paused_when_how_it_connects_to_etcd_changes(healthy: None, runs: Runs,
                                                                      cluster: ClusterUnderTest,
                                                                      deployments: changes.Deployments,
                                                                      writer: Writer) -> None:
    changes.patroni_restarts_paused_for_its_etcd_connection(deployments, cluster, writer, runs.stack.rerun)


def test_restart_parameter_rolls_one_member_at_a_time_leader_last(healthy: None, cluster: ClusterUnderTest,
                                                                  deployments: changes.Deployments,
                                                                  hosts: SystemdHosts, writer: Writer) -> None:
    sampler = ProcessSampler(hosts, [*PG_NODES])
    sampler.start()
    try:
        changes.restart_parameter_rolls_replicas_first(deployments, cluster, writer, MEASURED.get("switchover"))
    finally:
        sampler.stop()
        SAMPLES.extend(sampler.samples)
    changes.back_to_the_stack_file(deployments, cluster)


def test_haproxy_change_one_node_at_a_time_the_vip_answering(healthy: None, cluster: ClusterUnderTest,
                                                            deployments: changes.Deployments,
                                                            writer: Writer) -> None:
    changes.haproxy_one_node_at_a_time(deployments, cluster, writer)


def test_etcd_members_join_and_leave_without_losing_the_quorum(healthy: None, cluster: ClusterUnderTest,
                                                              deployments: changes.Deployments, hosts: SystemdHosts,
                                                              writer: Writer) -> None:
    # The two new members share the HAProxy hosts (other ports): the program installs etcd there.
    added = [{"name": "etcd-4", "address": HAPROXY["haproxy-1"]}, {"name": "etcd-5", "address": HAPROXY["haproxy-2"]}]
    changes.etcd_members_join_and_leave(deployments, cluster, writer, added)
    for node in HAPROXY:
        state = hosts.exec(node, "systemctl", "is-active", "pgha-etcd.service", check=False)
        assert state.strip() != "active", f"{node}: the member that left still runs"


def test_postgres_nodes_join_and_leave_the_roles_moved_off_first(healthy: None, cluster: ClusterUnderTest,
                                                                 deployments: changes.Deployments,
                                                                 hosts: SystemdHosts, writer: Writer) -> None:
    # The two new nodes share the etcd hosts (other ports, the repository mounted): the program installs
    # PostgreSQL and Patroni there.
    added = {"pg-4": "etcd-1", "pg-5": "etcd-2"}

    def stopped(node: str) -> bool:
        state = hosts.exec(added[node], "systemctl", "is-active", "pgha-patroni.service", check=False)
        return state.strip() != "active"

    # The scenario reads the new nodes' files by node name: they are the etcd hosts'.
    hosts.aliases.update(added)
    try:
        figures = changes.postgres_nodes_join_and_leave(
            deployments, cluster, writer, [{"name": n, "address": ETCD[h]} for n, h in added.items()], stopped,
            MEASURED.get("switchover"))
    finally:
        for node in added:
            hosts.aliases.pop(node, None)
    MEASURED.update({f"postgres_{k}": v for k, v in figures.items()})


def test_haproxy_nodes_join_and_leave_the_virtual_ip_never_doubled(healthy: None, cluster: ClusterUnderTest,
                                                                   deployments: changes.Deployments,
                                                                   hosts: SystemdHosts, writer: Writer) -> None:
    # The new node shares an etcd host (other ports): the program installs HAProxy and keepalived there.
    host = "etcd-3"

    def stopped(node: str) -> bool:
        return all(hosts.exec(host, "systemctl", "is-active", unit, check=False).strip() != "active"
                   for unit in ("pgha-haproxy.service", "pgha-keepalived.service"))

    hosts.aliases["haproxy-3"] = host
    try:
        figures = changes.haproxy_nodes_join_and_leave(deployments, cluster, writer, {"haproxy-3": ETCD[host]},
                                                       stopped)
    finally:
        hosts.aliases.pop("haproxy-3", None)
    MEASURED.update({f"haproxy_{k}": v for k, v in figures.items()})


def test_hosts_rebuilt_empty_rejoin_with_their_generation_raised(healthy: None, cluster: ClusterUnderTest,
                                                                 deployments: changes.Deployments,
                                                                 fleet: fleet_module.Fleet, writer: Writer) -> None:
    # Rebuilt with their host keys restored from a backup of /etc/ssh: the raised generation replaces the
    # host's converge step, whose delete runs first with the connection the state holds, the old key pinned
    # (pulumi-command reads the stored inputs): against new keys it would fail with "host key mismatch"
    # (README: "A host rebuilt empty"). The moved hosts below are new machines with new keys.
    figures = changes.hosts_rebuilt_empty_rejoin(deployments, cluster, writer,
                                                 lambda node: fleet.rebuild(node, keep_host_keys=True))
    MEASURED.update({f"rebuilt_{k}": v for k, v in figures.items()})


def test_hosts_moved_to_new_addresses_rejoin_and_move_back(healthy: None, cluster: ClusterUnderTest,
                                                           deployments: changes.Deployments,
                                                           fleet: fleet_module.Fleet, writer: Writer) -> None:
    figures = changes.hosts_moved_rejoin(deployments, cluster, writer, fleet.move, ("10.93.0.26", "10.93.0.16"),
                                         data_moves=False)
    MEASURED.update({f"moved_{k}": v for k, v in figures.items()})


# ------------------------------------------------------------------------------------------ 4: unreachable host


def test_unreachable_host_fails_naming_it_and_a_later_run_completes(healthy: None, runs: Runs,
                                                                    cluster: ClusterUnderTest,
                                                                    deployments: changes.Deployments,
                                                                    hosts: SystemdHosts) -> None:
    # In the rolling order (the replicas, the leader last) the chain stops at the unreachable host: the last
    # replica, so one host converges before it and the leader after it.
    leader = cluster.patroni.leader()
    assert leader
    order = [n for n in PG_NODES if n != leader] + [leader]
    down = order[-2]
    others = [n for n in [*ETCD, *PG_NODES, *HAPROXY] if n != down]
    before = snapshot(hosts)
    hosts.exec(down, "systemctl", "stop", "ssh.service")
    try:
        with pytest.raises(UpdateFailedError) as failed:
            runs.up(postgres=postgres_config(work_mem="6MB", shared_buffers="160MB", maintenance_work_mem="96MB"))
    finally:
        hosts.exec(down, "systemctl", "start", "ssh.service")
    message = str(failed.value)
    step = f"{CLUSTER}-{down}-patroni-service"
    assert step in message and PG_NODES[down] in message, message
    assert "connection refused" in message.lower(), message
    print(f"failed run: {message.splitlines()[1][:300]}")
    # A reload-only change: every service of every other host still runs, the long-running ones in the
    # same process.
    done = {r.name for r in failed.value.update.runs if r.exit_status == 0}
    assert done == {f"{CLUSTER}-{n}-patroni-service" for n in order[:-2]}, "the hosts before it converged"
    after = snapshot(hosts)
    for node in others:
        assert set(after[node]) == set(before[node]), node
        assert all(unit["ActiveState"] == "active" for unit in after[node].values()), (node, after[node])
        for name in CORE_UNITS & set(after[node]):
            assert after[node][name]["MainPID"] == before[node][name]["MainPID"], (node, name)
        if node in PG_NODES:
            assert after[f"{node}/postmaster"] == before[f"{node}/postmaster"], node
    wait_for("a healthy cluster with the host unreachable over SSH", cluster.healthy, scenarios.RECOVER_S)
    desired = hosts.exec(order[0], "cat", "/etc/patroni/dynamic.yml")
    assert hosts.exec(down, "cat", "/etc/patroni/dynamic.yml") != desired, "the unreachable host was not changed"
    # The host is back: the next run does what is left, and only that.
    completed = runs.up(postgres=postgres_config(work_mem="6MB", shared_buffers="160MB",
                                                 maintenance_work_mem="96MB"))
    assert sorted(completed.ran()) == sorted([step, f"{CLUSTER}-{leader}-patroni-service",
                                              f"{CLUSTER}-pending-restarts"])
    assert hosts.exec(down, "cat", "/etc/patroni/dynamic.yml") == desired
    for node in PG_NODES:
        assert show(hosts, node, "maintenance_work_mem") == ["96MB"], node
    changes.back_to_the_stack_file(deployments, cluster)


# ------------------------------------------------------------------------------------------ 5: certificates


def test_server_certificates_renewed_are_served_without_a_restart(healthy: None, cluster: ClusterUnderTest,
                                                                  deployments: changes.Deployments,
                                                                  writer: Writer) -> None:
    changes.server_certificates_renewed(deployments, cluster, writer)


def test_ca_rotation_keeps_clients_of_either_ca_verifying(healthy: None, cluster: ClusterUnderTest,
                                                         deployments: changes.Deployments, writer: Writer) -> None:
    changes.ca_rotation_with_overlap(deployments, cluster, writer)


# A package rebuilt with a higher version (Debian's registry offers one version of most packages, and which
# one changes with each point release): the same files, a version apt upgrades to. Served from a flat
# repository in the host's own filesystem, signed by nobody (trusted=yes), as a local mirror would be.
TEST_REPO = "/srv/pgha-test-repo"
REBUILD = rf"""set -euo pipefail
package=$1
work=$(mktemp -d) && cd "$work"
apt-get download -qq "$package"
dpkg-deb -R "$package"_*.deb tree
version="$(sed -n 's/^Version: //p' tree/DEBIAN/control)+pgha1"
sed -i "s/^Version: .*/Version: $version/" tree/DEBIAN/control
mkdir -p {TEST_REPO}
dpkg-deb -b tree "{TEST_REPO}/${{package}}_${{version//:/%3a}}.deb" >/dev/null
cd {TEST_REPO}
: > Packages
for deb in *.deb; do
  dpkg-deb -f "$deb" >> Packages
  printf 'Filename: ./%s\nSize: %s\nSHA256: %s\n\n' "$deb" "$(stat -c %s "$deb")" \
    "$(sha256sum "$deb" | cut -d' ' -f1)" >> Packages
done
echo "deb [trusted=yes] file:{TEST_REPO} ./" > /etc/apt/sources.list.d/pgha-test.list
rm -rf "$work"
echo "$version"
"""


def installed(hosts: SystemdHosts, node: str, package: str) -> str:
    return hosts.exec(node, "dpkg-query", "-W", "-f=${Version}", package).strip()


def test_pinned_packages_roll_one_host_at_a_time_after_pre_checks_the_leader_last(
        healthy: None, cluster: ClusterUnderTest, deployments: changes.Deployments, hosts: SystemdHosts,
        writer: Writer) -> None:
    """pgha:ssh.packages: a pin that is not offered is refused before anything changes; a long transaction
    refuses the PostgreSQL upgrade before any host is touched; then patroni and haproxy move to their new
    versions one host at a time, the PostgreSQL replicas first and the leader last after one switchover,
    HAProxy by a reload that re-executes the new binary (new connections through the virtual IP answering
    throughout it)."""
    versions = {}
    for node, package in [*((n, "patroni") for n in PG_NODES), *((n, "haproxy") for n in HAPROXY)]:
        versions[package] = hosts.exec(node, "bash", "-c", REBUILD + "\n", "rebuild", package).strip().splitlines()[-1]
    before = {n: installed(hosts, n, "patroni") for n in PG_NODES} | {n: installed(hosts, n, "haproxy")
                                                                     for n in HAPROXY}
    ssh = CONFIG["pgha:ssh"]
    # Not offered: refused on the first HAProxy host before it changes anything.
    with pytest.raises(UpdateFailedError, match=r"ssh.packages.haproxy: version 0.1-1 is not offered by this host's "
                                                r"package sources \(offered: [^)]*\+pgha1[^)]*\); nothing was changed"):
        deployments.up({"pgha:ssh": {**ssh, "packages": {"haproxy": "0.1-1"}}})
    pinned = {"pgha:ssh": {**ssh, "packages": {"patroni": versions["patroni"], "haproxy": versions["haproxy"]}}}
    with cluster.rw.connect() as long_open:
        long_open.execute("BEGIN")
        pid = long_open.execute("SELECT pg_backend_pid()").fetchone()[0]  # type: ignore[index]
        wait_for("a transaction open for 3 s", lambda: cluster.rw.query(
            "SELECT 1 FROM pg_stat_activity WHERE pid = %s AND xact_start < now() - interval '3 seconds'", pid), 30)
        with pytest.raises(UpdateFailedError, match=rf"refused before any node is touched: transaction of pid {pid} "):
            deployments.up({**pinned, "pgha:upgrade": {"max_transaction_s": 2}})
    assert {n: installed(hosts, n, "patroni") for n in PG_NODES} == {n: before[n] for n in PG_NODES}, \
        "a refused upgrade changes no PostgreSQL host"
    leader = cluster.patroni.leader()
    assert leader
    masters = {n: services(hosts, n)["pgha-haproxy.service"]["MainPID"] for n in HAPROXY}
    changes.prober_sees_a_refusal(cluster)
    old = deployments.snapshot()
    prober = changes.Prober(cluster.rw)
    prober.start()
    since = time.monotonic()
    try:
        with changes.RoleWatch(cluster) as watch:
            update = deployments.up(pinned)
    finally:
        prober.stop()
    deployments.keep(pinned)
    assert {n: installed(hosts, n, "patroni") for n in PG_NODES} == dict.fromkeys(PG_NODES, versions["patroni"])
    assert {n: installed(hosts, n, "haproxy") for n in HAPROXY} == dict.fromkeys(HAPROXY, versions["haproxy"])
    # HAProxy: the same master, now running the new binary (the old one's file is gone: "(deleted)").
    for node in HAPROXY:
        pid_now = services(hosts, node)["pgha-haproxy.service"]["MainPID"]
        assert pid_now == masters[node], f"{node}: HAProxy reloaded, not restarted"
        exe = hosts.exec(node, "readlink", f"/proc/{pid_now}/exe").strip()
        assert exe == "/usr/sbin/haproxy", f"{node}: the master runs {exe!r}"
    # One host at a time: the PostgreSQL replicas in the configured order, then the leader; HAProxy in order.
    steps = sorted((r for r in update.runs if r.name.endswith("-packages")), key=lambda r: r.started)
    order = [n for n in PG_NODES if n != leader] + [leader]
    pg_steps = [r for r in steps if "-pg-" in r.name]
    assert [r.name for r in pg_steps] == [f"{CLUSTER}-{n}-patroni-packages" for n in order], [r.name for r in steps]
    for group in (pg_steps, [r for r in steps if "-haproxy-" in r.name]):
        for first, second in itertools.pairwise(group):
            assert first.started + first.seconds <= second.started, f"{first.name} and {second.name} overlapped"
    said = {r.name: r.stdout for r in pg_steps}
    assert "switchover to" in said[f"{CLUSTER}-{leader}-patroni-packages"], said
    assert sum("switchover to" in out for out in said.values()) == 1, said
    prechecks = [r.stdout for r in update.runs if r.name.endswith("-packages-precheck")]
    assert sum("pre-checks passed" in out for out in prechecks) == 1, prechecks
    assert cluster.patroni.leader() != leader
    wait_for("a healthy cluster on the new packages", cluster.healthy, scenarios.RECOVER_S)
    new = deployments.snapshot()
    moved = changes.restarted(old, new)
    assert {k.split("/", 1)[0] for k in moved} == set(PG_NODES) and all(f"{n}/patroni" in moved for n in PG_NODES)
    plan = update.outputs[PLAN_OUTPUT]
    for node in PG_NODES:
        assert any(a.startswith(f"install: patroni unpinned -> {versions['patroni']} ") for a in plan[node]), plan
        assert "restart: patroni (new packages: patroni; a leader switches over first)" in plan[node], plan[node]
    for node in HAPROXY:
        assert "reload: haproxy (new packages: haproxy)" in plan[node], plan[node]
    # New connections through the virtual IP: none failed while HAProxy moved to its new binary; some may
    # fail only while the leader switched over (PostgreSQL refuses them while it shuts down).
    haproxy_runs = [r for r in steps if "-haproxy-" in r.name]
    first, last, switched = haproxy_runs[0], haproxy_runs[-1], pg_steps[-1]
    failures = list(zip(prober.failed_at, prober.failures, strict=True))
    assert not [f for at, f in failures if first.started <= at <= last.started + last.seconds + 2], failures
    assert not [f for at, f in failures if not switched.started <= at <= switched.started + switched.seconds], \
        failures
    outage = changes.outage_of(writer, since)
    scenarios.assert_nothing_lost(writer)
    print(f"pinned packages: {update.seconds:.0f}s, 3 PostgreSQL hosts one at a time (leader {leader} last after "
          f"one switchover), 2 HAProxy hosts by reload, longest write pause {outage:.2f}s, {prober.tries} new "
          f"connections through the VIP, {len(failures)} refused during the switchover "
          f"(switchover: {MEASURED.get('switchover')})")
    assert "HAProxy's checks have marked" in said[f"{CLUSTER}-{leader}-patroni-packages"], said
    changes.assert_no_longer_than_a_switchover("the package upgrade", outage, MEASURED.get("switchover"),
                                               lambda: watch.explain(writer, since))


# ------------------------------------------------------------------------------------------ 5: rotation


def test_rotating_every_credential_keeps_writes_going_and_refuses_the_old_ones(
        healthy: None, runs: Runs, cluster: ClusterUnderTest, deployments: changes.Deployments,
        hosts: SystemdHosts, writer: Writer) -> None:
    """After the last scenario with a writer: the module's endpoints hold the old passwords from now on."""
    sampler = ProcessSampler(hosts, [*PG_NODES, *HAPROXY])
    sampler.start()
    try:
        changes.rotate_every_credential(deployments, cluster, writer, rest_port=8008,
                                        stats_urls=runs.last.outputs["haproxy_stats_urls"])
    finally:
        sampler.stop()
        SAMPLES.extend(sampler.samples)


# ------------------------------------------------------------------------------------------ 6: secrets


def test_no_secret_in_process_lists_logs_or_command_output(runs: Runs, hosts: SystemdHosts) -> None:
    passwords = runs.passwords()
    assert len(passwords) == 10
    secrets = {name: value for name, value in passwords.items()}
    # keepalived's VRRP PASS uses the first 8 characters only.
    secrets.update({f"{name}[:8]": value[:8] for name, value in passwords.items() if "keepalived" in name})
    # A private key would leak line by line: look for the first line of each key's body.
    keys = runs.private_keys()
    # The CA's; per PostgreSQL node its own and Patroni's etcd client key; one per HAProxy node (its client
    # certificate for the REST checks); per etcd member its own and root's client key.
    assert len(keys) == 1 + 2 * len(PG_NODES) + len(HAPROXY) + 2 * len(ETCD), keys.keys()
    secrets.update({name: pem.splitlines()[1] for name, pem in keys.items()})
    texts: list[tuple[str, str]] = [(f"ps on {node} during a deployment", text) for node, text in SAMPLES]
    for node in [*ETCD, *PG_NODES, *HAPROXY]:
        texts.append((f"ps on {node}", hosts.exec(node, "ps", "-eo", "args")))
        texts.append((f"journal of {node}", hosts.exec(node, "journalctl", "--no-pager", "-o", "cat")))
    for run in itertools.chain.from_iterable(r.runs for r in runs.all):
        texts.append((f"{run.name} ({run.action}) command", run.command))
        texts.append((f"{run.name} ({run.action}) stdout/stderr", f"{run.stdout}\n{run.stderr}\n{run.error or ''}"))
    for name, inputs in runs.commands().items():
        for key in ("create", "update", "delete"):
            texts.append((f"{name} {key}", str(inputs.get(key) or "")))
    assert len(SAMPLES) > 50, "the process lists were sampled during the deployments"
    leaks = [(where, name) for where, text in texts for name, value in secrets.items() if value in text]
    assert not leaks, f"secrets found: {leaks[:10]}"


# ------------------------------------------------------------------------------------------ 5: destroy


def test_destroy_runs_the_delete_commands_and_keeps_data(runs: Runs, hosts: SystemdHosts,
                                                          fleet: fleet_module.Fleet) -> None:
    deleted_commands = [name for name, inputs in runs.commands().items() if inputs.get("delete")]
    # What the data holds, for the adoption that follows: a row only this deployment wrote, the leader.
    leader = Patroni.of(runs.last.outputs).leader()
    assert leader is not None
    hosts.exec(leader, "psql", "-d", "app", "-XqAc", "SET ROLE app; CREATE TABLE adoption_marker AS "
               f"SELECT {KEPT['marker']!r}::text AS v, now() AS at", user="postgres")
    KEPT.update(leader=leader, app_dsn=runs.last.outputs["app_dsn"],
                sysid=hosts.exec(leader, "psql", "-XtAc", "SELECT system_identifier FROM pg_control_system()",
                                 user="postgres").strip())
    destroyed = runs.stack.destroy()
    deletes = [r for r in destroyed.runs if r.action == "delete"]
    # Each service's converge and its host firewall step (the last claim on a host removes pgha's table).
    assert sorted(r.name for r in deletes) == sorted(deleted_commands) and len(deletes) == 16
    assert all(r.exit_status == 0 for r in deletes)
    assert runs.stack.snapshot == {}
    # Paused before any member stopped, no replica was promoted: one data directory holds a primary's data
    # (the leader's), the others a standby's (pg_controldata: "shut down in recovery").
    pg_deletes = {r.name: r.stdout + r.stderr for r in deletes if "-pg-" in r.name and r.name.endswith("-service")}
    assert len(pg_deletes) == len(PG_NODES), sorted(pg_deletes)
    assert all("pgha-destroy: Patroni paused" in out for out in pg_deletes.values()), pg_deletes
    states = {n: cluster_state(hosts, n) for n in PG_NODES}
    assert states == {n: "shut down" if n == leader else "shut down in recovery" for n in PG_NODES}, \
        (states, pg_deletes)
    files = {"etcd": ["/etc/pgha/etcd.yml"],
             "pg": ["/etc/patroni/patroni.yml", "/etc/pgbackrest/pgbackrest.conf", "/etc/cron.d/pgha-backup",
                    "/usr/local/bin/pgha-backup"],
             "haproxy": ["/etc/haproxy/haproxy.cfg", "/etc/keepalived/keepalived.conf"]}
    data: dict[str, str | None] = {"etcd": "/var/lib/etcd", "pg": PG_DATA, "haproxy": None}
    for role, nodes in (("etcd", ETCD), ("pg", PG_NODES), ("haproxy", HAPROXY)):
        for node in nodes:
            units = hosts.exec(node, "bash", "-c", "ls /etc/systemd/system/ | grep pgha- || true").split()
            assert not units, f"{node}: units left: {units}"
            active = hosts.exec(node, "bash", "-c", "systemctl list-units 'pgha-*' --no-legend --plain", check=False)
            assert not active.strip(), f"{node}: still loaded: {active}"
            assert not hosts.exec(node, "bash", "-c", "pgrep -a 'etcd|patroni|postgres|haproxy|keepalived' || true",
                                  check=False).strip(), f"{node}: a service still runs"
            for path in [*files[role], "/etc/pgha/firewall.nft", "/etc/systemd/system/pgha-firewall.service"]:
                assert _missing(hosts, node, path), f"{node}: {path} left"
            assert "inet pgha" not in hosts.exec(node, "nft", "list", "tables"), f"{node}: pgha's firewall left"
            kept = data[role]
            if kept:
                assert not _missing(hosts, node, kept), f"{node}: {kept} removed without purge"
    # The data stayed: a new deployment (a new stack) refuses it instead of adopting it silently.
    import program

    fresh = Stack("e2e-ssh", ROOT, project="pgha", stack_file=STACK_FILE,
                  config={KEY: fleet.private_key, "pgha:ssh": with_host_keys(fleet)}, secret_keys=[KEY])
    with pytest.raises(UpdateFailedError, match=r"etcd-\d: /var/lib/etcd already holds data \(pgha-e2e/member\): a "
                                                "new deployment does not adopt it"):
        fresh.up(program.main)
    for node in ETCD:
        assert not hosts.exec(node, "bash", "-c", "systemctl list-units 'pgha-*' --no-legend --plain",
                              check=False).strip(), f"{node}: nothing was started on the refused data"
    fresh.destroy()
    # purge_data_on_destroy: true renders a delete that removes the data directories: run it on etcd.
    purge = purge_delete_command(fleet, f"{CLUSTER}-etcd-etcd-1-service")
    assert "rm -rf --one-file-system /var/lib/etcd" in purge
    for node in ETCD:
        status, output = fleet.ssh(node, purge)
        assert status == 0, output
        assert _missing(hosts, node, "/var/lib/etcd"), node


def test_a_new_deployment_adopts_the_data_only_when_the_stack_says_so(hosts: SystemdHosts,
                                                                     fleet: fleet_module.Fleet) -> None:
    """After the destroy (PostgreSQL's data kept, etcd's purged): pgha:adopt_existing_data takes the data over
    under the new stack's passwords and DCS namespace. First refused while the repository holds the old
    deployment's stanza (its passphrase is gone with that stack); once that is moved aside, the node with
    the primary's data leads, the standbys follow it, the old rows are there and only the new passwords work."""
    import program

    def running() -> list[str]:
        return [n for n in PG_NODES if hosts.exec(n, "bash", "-c", "pgrep -x postgres || true").strip()]

    adopting = Stack("e2e-ssh", ROOT, project="pgha", stack_file=STACK_FILE,
                     config={KEY: fleet.private_key, "pgha:ssh": with_host_keys(fleet)}, secret_keys=[KEY])
    adopt = {"pgha:adopt_existing_data": True}
    with pytest.raises(UpdateFailedError, match=rf"the backup repository {REPO_PATH} holds stanza {CLUSTER}, "
                                                "written by the deployment whose data this is") as refused:
        adopting.up(program.main, adopt)
    assert not running(), "no PostgreSQL started on refused data"
    hosts.exec(next(iter(PG_NODES)), "bash", "-c", f"mv {REPO_PATH}/archive {REPO_PATH}/archive.previous && "
               f"mv {REPO_PATH}/backup {REPO_PATH}/backup.previous")
    update = adopting.up(program.main, adopt)
    try:
        patroni = Patroni.of(update.outputs)
        wait_for("the adopted cluster healthy", lambda: patroni.healthy(len(PG_NODES)), scenarios.RECOVER_S)
        assert patroni.leader() == KEPT["leader"], "the node that held the primary's data leads"
        for node in PG_NODES:
            sysid = hosts.exec(node, "psql", "-XtAc", "SELECT system_identifier FROM pg_control_system()",
                               user="postgres").strip()
            assert sysid == KEPT["sysid"], f"{node}: the adopted data, not a new cluster"
        with tempfile.NamedTemporaryFile("w", suffix=".crt") as ca:
            ca.write(update.outputs["ca_certificate"])
            ca.flush()
            new = replace(Endpoint.from_dsn(update.outputs["app_dsn"]), sslmode="verify-full", sslrootcert=ca.name)
            assert new.query("SELECT v FROM adoption_marker") == [(KEPT["marker"],)], "the old rows, read through "\
                "the virtual IP with the new password"
            old = replace(Endpoint.from_dsn(KEPT["app_dsn"]), sslmode="verify-full", sslrootcert=ca.name)
            assert old.password != new.password
            with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
                old.query("SELECT 1")
        # What each node's converge said, in the refused run (a standby converged before it: its start
        # deferred) or in this one; a deferred start was made by the node's `-adopted` step.
        said = {r.name: r.stdout for r in [*refused.value.update.runs, *update.runs] if r.exit_status == 0}
        for node in PG_NODES:
            kind = "a primary's data: its roles took" if node == KEPT["leader"] else "a standby's data"
            converged = said[f"{CLUSTER}-{node}-patroni-service"]
            assert f"pgha-adopt: {node}: {kind}" in converged, (node, said)
            deferred = "it starts once the node with the primary's data leads" in converged
            assert ("pgha-patroni: started" in said[f"{CLUSTER}-{node}-adopted"]) is deferred, (node, said)
    finally:
        adopting.destroy()


def cluster_state(hosts: SystemdHosts, node: str) -> str:
    """pg_controldata's "Database cluster state" of `node`'s data directory."""
    control = hosts.exec(node, "/usr/lib/postgresql/17/bin/pg_controldata", PG_DATA, user="postgres")
    found = re.search(r"^Database cluster state:\s+(.+)$", control, re.MULTILINE)
    assert found, control
    return found.group(1).strip()


def _missing(hosts: SystemdHosts, node: str, path: str) -> bool:
    return hosts.exec(node, "bash", "-c", f"test -e {path} && echo present || echo missing").strip() == "missing"


def purge_delete_command(fleet: fleet_module.Fleet, name: str) -> str:
    """The `delete` the program declares for `name` with ssh.purge_data_on_destroy: true."""
    from tests.support.mock_runtime import run_program

    ssh = with_host_keys(fleet, {**CONFIG["pgha:ssh"], "purge_data_on_destroy": True})
    graph = run_program(STACK_FILE, {"ssh": ssh}, secrets_config={"sshPrivateKey": fleet.private_key})
    return str(graph.named(name).inputs["delete"])
