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
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from catalog.roles import host_packages
from clientside.cluster import Endpoint, Patroni, SystemdHosts, Writer, wait_for
from local_engine import Stack, Update, UpdateFailedError
from local_engine.wire import unwrap
from operations.change_plan import PLAN_OUTPUT
from tests.e2e import changes, scenarios
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


# ------------------------------------------------------------------------------------------ fixtures


COMMAND = "command:remote:Command"


class Runs:
    """The deployments of this module: one stack, deployed again and again as `pulumi up` would."""

    def __init__(self, private_key: str) -> None:
        self.stack = Stack("e2e-ssh", ROOT, project="pgha", stack_file=STACK_FILE, config={KEY: private_key},
                           secret_keys=[KEY])
        self.all: list[Update] = []

    @property
    def last(self) -> Update:
        return self.all[-1]

    def up(self, **config: Any) -> Update:
        """Run the program (again); `config` overrides stack keys (e.g. postgres=...)."""
        import program

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
    hosts = fleet_module.start_fleet({**ETCD, **PG_NODES, **HAPROXY}, PG_NODES, REPO_PATH, APT_PACKAGES)
    yield hosts
    if not keep_requested():
        fleet_module.cleanup()


@pytest.fixture(scope="module")
def hosts(fleet: fleet_module.Fleet) -> SystemdHosts:
    return SystemdHosts(CLUSTER, prefix=fleet_module.PREFIX, network=fleet_module.NETWORK)


@pytest.fixture(scope="module")
def runs(fleet: fleet_module.Fleet, hosts: SystemdHosts) -> Runs:
    chain = Runs(fleet.private_key)
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
    return ClusterUnderTest(
        name=CLUSTER, patroni=Patroni(stack.outputs["patroni_rest_urls"]), hosts=hosts,
        rw=Endpoint.from_dsn(stack.outputs["app_dsn"]), ro=Endpoint.from_dsn(stack.outputs["readonly_dsn"]),
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


# ------------------------------------------------------------------------------------------ 4: unreachable host


def test_unreachable_host_fails_naming_it_and_a_later_run_completes(healthy: None, runs: Runs,
                                                                    cluster: ClusterUnderTest,
                                                                    deployments: changes.Deployments,
                                                                    hosts: SystemdHosts) -> None:
    down = "pg-3"
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
    # The reachable hosts were converged (a reload-only change): every service of every other host
    # still runs, the long-running ones in the same process.
    done = {r.name for r in failed.value.update.runs if r.exit_status == 0}
    assert done == {f"{CLUSTER}-{n}-patroni-service" for n in PG_NODES if n != down}
    after = snapshot(hosts)
    for node in others:
        assert set(after[node]) == set(before[node]), node
        assert all(unit["ActiveState"] == "active" for unit in after[node].values()), (node, after[node])
        for name in CORE_UNITS & set(after[node]):
            assert after[node][name]["MainPID"] == before[node][name]["MainPID"], (node, name)
        if node in PG_NODES:
            assert after[f"{node}/postmaster"] == before[f"{node}/postmaster"], node
    wait_for("a healthy cluster with the host unreachable over SSH", cluster.healthy, scenarios.RECOVER_S)
    desired = hosts.exec("pg-1", "cat", "/etc/patroni/dynamic.yml")
    assert hosts.exec(down, "cat", "/etc/patroni/dynamic.yml") != desired, "the unreachable host was not changed"
    # The host is back: the next run does what is left, and only that.
    completed = runs.up(postgres=postgres_config(work_mem="6MB", shared_buffers="160MB",
                                                 maintenance_work_mem="96MB"))
    assert sorted(completed.ran()) == sorted([step, f"{CLUSTER}-pending-restarts"])
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
    assert len(passwords) == 9
    secrets = {name: value for name, value in passwords.items()}
    # keepalived's VRRP PASS uses the first 8 characters only.
    secrets.update({f"{name}[:8]": value[:8] for name, value in passwords.items() if "keepalived" in name})
    # A private key would leak line by line: look for the first line of each key's body.
    keys = runs.private_keys()
    assert len(keys) == 1 + len(PG_NODES), keys.keys()  # the CA's and one per PostgreSQL node
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
    destroyed = runs.stack.destroy()
    deletes = [r for r in destroyed.runs if r.action == "delete"]
    assert sorted(r.name for r in deletes) == sorted(deleted_commands) and len(deletes) == 8
    assert all(r.exit_status == 0 for r in deletes)
    assert runs.stack.snapshot == {}
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
            for path in files[role]:
                assert _missing(hosts, node, path), f"{node}: {path} left"
            kept = data[role]
            if kept:
                assert not _missing(hosts, node, kept), f"{node}: {kept} removed without purge"
    # The data stayed: a new deployment (a new stack) refuses it instead of adopting it silently.
    import program

    fresh = Stack("e2e-ssh", ROOT, project="pgha", stack_file=STACK_FILE, config={KEY: fleet.private_key},
                  secret_keys=[KEY])
    with pytest.raises(UpdateFailedError, match=r"etcd-\d: /var/lib/etcd already holds data \(pgha-e2e/member\): a "
                                                "new deployment does not adopt it"):
        fresh.up(program.main)
    for node in ETCD:
        assert not hosts.exec(node, "bash", "-c", "systemctl list-units 'pgha-*' --no-legend --plain",
                              check=False).strip(), f"{node}: nothing was started on the refused data"
    fresh.destroy()
    # purge_data_on_destroy: true renders a delete that removes the data directories: run it on etcd.
    purge = purge_delete_command(fleet.private_key, f"{CLUSTER}-etcd-etcd-1-service")
    assert "rm -rf --one-file-system /var/lib/etcd" in purge
    for node in ETCD:
        status, output = fleet.ssh(node, purge)
        assert status == 0, output
        assert _missing(hosts, node, "/var/lib/etcd"), node


def _missing(hosts: SystemdHosts, node: str, path: str) -> bool:
    return hosts.exec(node, "bash", "-c", f"test -e {path} && echo present || echo missing").strip() == "missing"


def purge_delete_command(private_key: str, name: str) -> str:
    """The `delete` the program declares for `name` with ssh.purge_data_on_destroy: true."""
    from tests.support.mock_runtime import run_program

    ssh = {**CONFIG["pgha:ssh"], "purge_data_on_destroy": True}
    graph = run_program(STACK_FILE, {"ssh": ssh}, secrets_config={"sshPrivateKey": private_key})
    return str(graph.named(name).inputs["delete"])
