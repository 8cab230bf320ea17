"""The dev stack, deployed for real on Docker from what the program declares, survives real faults.

Every scenario measures from the client side through HAProxy and the virtual IP, with a writer that
records each acknowledged commit, and leaves the cluster healthy for the next one.
"""

from __future__ import annotations

import io
import tarfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import docker
import pytest
import yaml

from clientside.cluster import DockerHosts, Endpoint, Patroni, Writer, container_processes, endpoints, wait_for
from local_engine import Stack, UpdateFailedError
from local_engine.docker_engine import remove_labelled
from local_engine.wire import RUN_LABEL, unwrap
from tests.e2e import attacks, changes, scenarios
from tests.e2e.scenarios import RECOVER_S, ClusterUnderTest, server
from tests.support.docker import keep_requested, require_engine

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
CLUSTER = "pgha-dev"
PG_NODES = ["pg-1", "pg-2", "pg-3"]
ADDRESSES = {"pg-1": "10.89.0.21", "pg-2": "10.89.0.22", "pg-3": "10.89.0.23"}
ETCD = ["etcd-1", "etcd-2", "etcd-3"]
HAPROXY = ["haproxy-1", "haproxy-2"]
# Figures measured by earlier scenarios of this module, for the later ones to compare with.
MEASURED: dict[str, float] = {}


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
def stack(sentinel: object) -> Iterator[Stack]:
    require_engine()
    # Leftovers of an interrupted earlier run of this cluster (an engine restarted on the same data
    # root keeps them) would collide on names and the subnet; other clusters' objects are left alone.
    remove_labelled(f"pgha.cluster={CLUSTER}")
    import program

    dev = Stack("dev", ROOT, project="pgha")
    dev.up(program.main)
    yield dev
    if dev.snapshot and not keep_requested():
        dev.destroy()


@pytest.fixture(scope="module")
def patroni(stack: Stack) -> Patroni:
    return Patroni.of(stack.outputs)


@pytest.fixture(scope="module")
def hosts(stack: Stack) -> DockerHosts:
    return DockerHosts(CLUSTER)


@pytest.fixture(scope="module")
def clients(stack: Stack) -> tuple[Endpoint, Endpoint]:
    """The DSN outputs as an application uses them: verify-full with the `ca_certificate` output."""
    return endpoints(stack.outputs)


@pytest.fixture(scope="module")
def rw(clients: tuple[Endpoint, Endpoint]) -> Endpoint:
    return clients[0]


@pytest.fixture(scope="module")
def ro(clients: tuple[Endpoint, Endpoint]) -> Endpoint:
    return clients[1]


@pytest.fixture(scope="module")
def cluster(stack: Stack, patroni: Patroni, hosts: DockerHosts, rw: Endpoint, ro: Endpoint) -> ClusterUnderTest:
    """What the shared scenarios (tests/e2e/scenarios.py) need to know about the dev cluster."""
    return ClusterUnderTest(name=CLUSTER, patroni=patroni, hosts=hosts, rw=rw, ro=ro, addresses=dict(ADDRESSES),
                            etcd=tuple(ETCD), haproxy=("haproxy-1", "haproxy-2"), vip="10.89.0.30",
                            ca_certificate=stack.outputs["ca_certificate"])


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


def node_of(address: str) -> str:
    return next(n for n, a in ADDRESSES.items() if a == address)


# ------------------------------------------------------------------------------------------ 0


def test_a_new_deployment_refuses_a_leftover_volume(sentinel: object) -> None:
    """Before the module's stack: a volume left by an earlier deployment is not adopted silently."""
    require_engine()
    remove_labelled(f"pgha.cluster={CLUSTER}")
    client = docker.from_env()
    leftover = client.volumes.create(f"{CLUSTER}-backup-repo", labels={"pgha.cluster": CLUSTER})
    import program

    fresh = Stack("dev", ROOT, project="pgha")
    try:
        with pytest.raises(UpdateFailedError, match=rf"docker volume {CLUSTER}-backup-repo already exists: a new "
                                                    "deployment does not adopt it"):
            fresh.up(program.main)
        names = [c.name for c in client.containers.list(all=True, filters={"label": f"pgha.cluster={CLUSTER}"})]
        assert not [n for n in names if "-pg-" in n], f"nothing that would use the repository was created: {names}"
    finally:
        fresh.destroy()
        leftover.remove(force=True)


# ------------------------------------------------------------------------------------------ 1


def test_up_leader_sync_standby_and_routing(stack: Stack, cluster: ClusterUnderTest, patroni: Patroni,
                                            rw: Endpoint, ro: Endpoint) -> None:
    scenarios.leader_sync_standby_and_routing(cluster)
    assert stack.outputs["read_write_endpoint"] == {"host": "10.89.0.30", "port": 5000}
    assert {"app_dsn", "readonly_dsn"} <= stack.secret_outputs
    leader = patroni.leader()
    # The published ports on 127.0.0.1 answer too (one per HAProxy node).
    published = stack.outputs["published_endpoints"]
    for port in published["read_write"]["ports"]:
        local = replace(rw, host="127.0.0.1", port=port)
        assert node_of(server(local)[0]) == leader
    for port in published["read_only"]["ports"]:
        local = replace(ro, host="127.0.0.1", port=port)
        assert server(local)[1] is True


CONTAINER = "docker:index/container:Container"
DEV_CONFIG = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["config"]


def container_ids(stack: Stack) -> dict[str, str]:
    return {s.name: s.id for s in stack.resources(CONTAINER)}


def dcs_config(hosts: DockerHosts, node: str) -> dict:
    return yaml.safe_load(hosts.exec(node, "patronictl", "-c", "/etc/patroni/patroni.yml", "show-config",
                                     user="postgres"))


def test_a_stranger_on_the_network_is_refused(healthy: None, cluster: ClusterUnderTest) -> None:
    with attacks.stranger(cluster, "10.89.0.99") as stranger:
        attacks.postgres_refuses_strangers(cluster, stranger)
        attacks.rest_refuses_strangers(cluster, stranger)
        attacks.etcd_refuses_strangers(cluster, stranger)


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


def test_hard_kill_of_the_primary(healthy: None, cluster: ClusterUnderTest, writer: Writer) -> None:
    scenarios.hard_kill_of_the_primary(cluster, writer)


# ------------------------------------------------------------------------------------------ 3


def test_planned_switchover(healthy: None, cluster: ClusterUnderTest, writer: Writer) -> None:
    MEASURED["switchover"] = scenarios.planned_switchover(cluster, writer)


# ------------------------------------------------------------------------------------------ 4


def test_replica_loss_keeps_reads_and_moves_the_sync_role(healthy: None, cluster: ClusterUnderTest,
                                                           writer: Writer) -> None:
    scenarios.replica_loss_keeps_reads_and_moves_the_sync_role(cluster, writer)


# ------------------------------------------------------------------------------------------ 5


def test_one_etcd_member_down_changes_nothing(healthy: None, cluster: ClusterUnderTest, writer: Writer) -> None:
    scenarios.one_etcd_member_down_changes_nothing(cluster, writer)


def test_etcd_majority_down_never_two_primaries(healthy: None, cluster: ClusterUnderTest) -> None:
    scenarios.etcd_majority_down_never_two_primaries(cluster)


# ------------------------------------------------------------------------------------------ 6


def test_a_client_sent_to_the_wrong_haproxy_node_is_set_right(healthy: None, cluster: ClusterUnderTest) -> None:
    scenarios.a_client_sent_to_the_wrong_node_is_set_right(cluster)


def test_haproxy_node_loss_moves_the_vip(healthy: None, cluster: ClusterUnderTest) -> None:
    scenarios.haproxy_node_loss_moves_the_vip(cluster)


# ------------------------------------------------------------------------------------------ 7


def test_isolated_primary_is_replaced_without_split_brain(healthy: None, cluster: ClusterUnderTest,
                                                          writer: Writer) -> None:
    scenarios.isolated_primary_is_replaced_without_split_brain(cluster, writer)


# ------------------------------------------------------------------------------------------ 7: later deployments


def snapshot(hosts: DockerHosts) -> dict[str, str]:
    return container_processes(hosts, [*PG_NODES, *ETCD, *HAPROXY], PG_NODES)


@pytest.fixture(scope="module")
def deployments(stack: Stack, hosts: DockerHosts) -> changes.Deployments:
    import program

    def passwords() -> dict[str, str]:
        return {s.name.removeprefix(f"{CLUSTER}-").removesuffix("-password"): unwrap(s.outputs["result"])
                for s in stack.resources("random:index/randomPassword:RandomPassword")}

    return changes.Deployments(config=DEV_CONFIG, up=lambda overrides: stack.up(program.main, overrides),
                               snapshot=lambda: snapshot(hosts), cluster=CLUSTER, passwords=passwords,
                               keep=stack.base_config.update)


def test_no_change_runs_nothing_and_restarts_nothing(healthy: None, deployments: changes.Deployments,
                                                     hosts: DockerHosts) -> None:
    before = snapshot(hosts)
    assert {k for k in before if k.endswith("/patroni")} == {f"{n}/patroni" for n in PG_NODES}, before
    changes.no_change_runs_nothing(deployments)


def test_a_setting_that_is_not_forcenew_updates_containers_in_place(healthy: None, stack: Stack,
                                                                    deployments: changes.Deployments,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import targets.docker

    ids = container_ids(stack)
    before = deployments.snapshot()
    # A new version of the program stops containers more patiently: an update of every container, in place.
    monkeypatch.setattr(targets.docker, "STOP_GRACE_S", 90)
    patient = deployments.up({})
    changes.assert_planned(patient, dict.fromkeys(ids, "update"))
    assert all(patient.plan.of(name, CONTAINER).keys == ("destroyGraceSeconds",) for name in ids)
    after = deployments.snapshot()
    assert container_ids(stack) == ids and after == before, "same containers, not even restarted"
    changes.assert_said(patient, deployments, {}, changes.restarted(before, after))
    assert patient.runs == [], "no converge step depends on a setting that changed nothing inside"
    monkeypatch.undo()
    changes.assert_planned(deployments.up({}), dict.fromkeys(ids, "update"))


def test_reload_parameter_and_patroni_setting_restart_nothing(healthy: None, cluster: ClusterUnderTest,
                                                              deployments: changes.Deployments,
                                                              writer: Writer) -> None:
    changes.reload_parameter_and_patroni_setting(deployments, cluster, writer)


def test_patroni_restarts_paused_when_how_it_connects_to_etcd_changes(healthy: None, stack: Stack,
                                                                      cluster: ClusterUnderTest,
                                                                      deployments: changes.Deployments,
                                                                      writer: Writer) -> None:
    changes.patroni_restarts_paused_for_its_etcd_connection(deployments, cluster, writer, stack.rerun)


def test_restart_parameter_rolls_one_member_at_a_time_leader_last(healthy: None, stack: Stack,
                                                                  cluster: ClusterUnderTest,
                                                                  deployments: changes.Deployments,
                                                                  writer: Writer) -> None:
    ids = container_ids(stack)
    changes.restart_parameter_rolls_replicas_first(deployments, cluster, writer, MEASURED.get("switchover"))
    assert container_ids(stack) == ids, "a parameter change recreates no container"
    changes.back_to_the_stack_file(deployments, cluster)


def test_haproxy_change_one_node_at_a_time_the_vip_answering(healthy: None, stack: Stack,
                                                            cluster: ClusterUnderTest,
                                                            deployments: changes.Deployments,
                                                            writer: Writer) -> None:
    ids = container_ids(stack)
    changes.haproxy_one_node_at_a_time(deployments, cluster, writer)
    assert container_ids(stack) == ids, "an HAProxy change recreates no container"


def test_etcd_members_join_and_leave_without_losing_the_quorum(healthy: None, stack: Stack,
                                                              cluster: ClusterUnderTest,
                                                              deployments: changes.Deployments,
                                                              writer: Writer) -> None:
    figures = changes.etcd_members_join_and_leave(
        deployments, cluster, writer, [{"name": "etcd-4", "address": "10.89.0.14"},
                                       {"name": "etcd-5", "address": "10.89.0.15"}])
    MEASURED.update({f"etcd_{k}": v for k, v in figures.items()})
    gone = (f"{CLUSTER}-etcd-4", f"{CLUSTER}-etcd-5")
    left = [c for c in docker.from_env().containers.list(all=True) if c.name in gone]
    assert left == [], "the members that left are removed with their containers"


# ------------------------------------------------------------------------------------------ 8


def test_backup_archiving_failover_and_point_in_time_restore(healthy: None, stack: Stack,
                                                             cluster: ClusterUnderTest, hosts: DockerHosts) -> None:
    scenarios.backup_archiving_failover_and_point_in_time_restore(
        cluster, lambda target: restore_to(hosts, stack, target))


def container_gone(node: str) -> bool:
    """Whether the container of `node` is gone (stopped and removed)."""
    return not docker.from_env().containers.list(all=True, filters={"name": f"^{CLUSTER}-{node}$"})


def test_postgres_nodes_join_and_leave_the_roles_moved_off_first(healthy: None, stack: Stack,
                                                                 cluster: ClusterUnderTest,
                                                                 deployments: changes.Deployments,
                                                                 writer: Writer) -> None:
    figures = changes.postgres_nodes_join_and_leave(
        deployments, cluster, writer, [{"name": "pg-4", "address": "10.89.0.24"},
                                       {"name": "pg-5", "address": "10.89.0.25"}],
        container_gone, MEASURED.get("switchover"))
    MEASURED.update({f"postgres_{k}": v for k, v in figures.items()})
    gone = (f"{CLUSTER}-pg-4", f"{CLUSTER}-pg-5")
    volumes = [v.name for v in docker.from_env().volumes.list() if v.name.startswith(gone)]
    assert volumes == [], f"on docker a node's data goes with it: {volumes}"


def test_haproxy_nodes_join_and_leave_the_virtual_ip_never_doubled(healthy: None, stack: Stack,
                                                                   cluster: ClusterUnderTest,
                                                                   deployments: changes.Deployments,
                                                                   writer: Writer) -> None:
    figures = changes.haproxy_nodes_join_and_leave(deployments, cluster, writer, {"haproxy-3": "10.89.0.33"},
                                                   container_gone)
    MEASURED.update({f"haproxy_{k}": v for k, v in figures.items()})


def test_hosts_rebuilt_empty_rejoin_with_their_generation_raised(healthy: None, stack: Stack,
                                                                 cluster: ClusterUnderTest,
                                                                 deployments: changes.Deployments,
                                                                 writer: Writer) -> None:
    client = docker.from_env()

    def rebuild(node: str) -> None:
        # The container and its own volumes go (the shared repository stays): an empty host under the name.
        container = client.containers.get(f"{CLUSTER}-{node}")
        own = [m["Name"] for m in container.attrs["Mounts"]
               if m["Type"] == "volume" and m["Name"] != f"{CLUSTER}-backup-repo"]
        container.remove(force=True)
        for volume in own:
            client.volumes.get(volume).remove(force=True)

    figures = changes.hosts_rebuilt_empty_rejoin(deployments, cluster, writer, rebuild)
    MEASURED.update({f"rebuilt_{k}": v for k, v in figures.items()})


def test_hosts_moved_to_new_addresses_rejoin_and_move_back(healthy: None, cluster: ClusterUnderTest,
                                                           deployments: changes.Deployments,
                                                           writer: Writer) -> None:
    def move(node: str, address: str) -> None:
        # The host dies; the deployment then creates its container at `address`, the volume (its disk) kept.
        cluster.hosts.kill(node)

    figures = changes.hosts_moved_rejoin(deployments, cluster, writer, move, ("10.89.0.26", "10.89.0.16"),
                                         data_moves=True)
    MEASURED.update({f"moved_{k}": v for k, v in figures.items()})


def restore_to(hosts: DockerHosts, stack: Stack, target: str) -> list[tuple[str, int]]:
    """Restore the stanza to `target` into a fresh container on the same image and repository."""
    source = hosts.container("pg-1")
    config = hosts.exec("pg-1", "cat", "/etc/pgbackrest/pgbackrest.conf")
    client = hosts.client
    name = f"{CLUSTER}-restore"
    for old in client.containers.list(all=True, filters={"name": name}):
        old.remove(force=True)
    container = client.containers.run(
        source.image.id, ["sleep", "infinity"], name=name, detach=True, network_mode="none",
        labels={RUN_LABEL: stack.run_id},
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
        restore, start = scenarios.restore_commands(CLUSTER, "/var/lib/postgresql/restore", target, "/tmp")
        run(*restore)
        code, _ = container.exec_run(start, user="postgres")
        assert code == 0, container.exec_run(["cat", "/var/lib/postgresql/restore.log"]).output.decode(errors="replace")
        wait_for("the restored server to finish recovery", lambda: run(
            "psql", "-h", "/tmp", "-XtAc", "SELECT NOT pg_is_in_recovery()").strip() == "t", 120)
        return scenarios.parse_counts(run("psql", "-h", "/tmp", "-d", "app", "-XtAc", scenarios.PITR_COUNTS))
    finally:
        container.remove(force=True)


def created(hosts: DockerHosts, node: str) -> str:
    return str(hosts.container(node).attrs["Created"])


def test_a_new_image_is_refused_while_a_transaction_is_open_then_rolls_one_node_at_a_time(
        healthy: None, stack: Stack, cluster: ClusterUnderTest, deployments: changes.Deployments,
        hosts: DockerHosts, writer: Writer) -> None:
    """A rolling upgrade (pgha:docker.image_revision): pre-checks first, refusing while a transaction is older
    than pgha:upgrade.max_transaction_s and replacing nothing; then every container replaced one at a time
    per group, the PostgreSQL replicas first and the leader last after one switchover, data kept."""
    ids = container_ids(stack)
    bumped = {"pgha:docker": {**DEV_CONFIG["pgha:docker"], "image_revision": 1}}
    with cluster.rw.connect() as long_open:
        long_open.execute("BEGIN")
        pid = long_open.execute("SELECT pg_backend_pid()").fetchone()[0]  # type: ignore[index]
        wait_for("a transaction open for 3 s", lambda: cluster.rw.query(
            "SELECT 1 FROM pg_stat_activity WHERE pid = %s AND xact_start < now() - interval '3 seconds'", pid), 30)
        refusal = (rf"refused before any node is touched: transaction of pid {pid} "
                   r"\(user app, application '[^']*'\) open for \d+ s \(at most 2 s\)")
        with pytest.raises(UpdateFailedError, match=refusal):
            deployments.up({**bumped, "pgha:upgrade": {"max_transaction_s": 2}})
    assert container_ids(stack) == ids, "a refused upgrade replaces nothing"
    leader = cluster.patroni.leader()
    assert leader
    vip = cluster.rw.host
    holder = [n for n in HAPROXY if f" {vip}/" in hosts.exec(n, "ip", "-o", "-4", "addr", "show")]
    assert len(holder) == 1, f"one HAProxy node holds the virtual IP {vip}: {holder}"
    before = deployments.snapshot()
    with changes.RoleWatch(cluster) as watch:
        since = time.monotonic()
        update = deployments.up(bumped)
    deployments.keep(bumped)
    after_ids = container_ids(stack)
    assert all(after_ids[n] != ids[n] for n in ids), "every container is recreated on the new image"
    tag = stack.resources("docker:index/image:Image")[0].outputs["imageName"]
    assert {hosts.container(n).attrs["Config"]["Image"] for n in [*PG_NODES, *ETCD, *HAPROXY]} == {tag}
    after = deployments.snapshot()
    changes.assert_said(update, deployments, {n: {"replace"} for n in [*PG_NODES, *ETCD, *HAPROXY]},
                        changes.restarted(before, after))
    # One at a time: the replicas in the configured order, then the leader, after a single switchover.
    order = [n for n in PG_NODES if n != leader] + [leader]
    assert sorted(PG_NODES, key=lambda n: created(hosts, n)) == order, {n: created(hosts, n) for n in PG_NODES}
    for group in (ETCD, HAPROXY):
        assert sorted(group, key=lambda n: created(hosts, n)) == group
    handovers = {r.name: r.stdout for r in update.runs if r.name.endswith("-handover")}
    assert "switchover to" in handovers[f"{CLUSTER}-{leader}-patroni-handover"], handovers
    assert sum("switchover to" in out for out in handovers.values()) == 1, handovers
    assert cluster.patroni.leader() != leader
    wait_for("a healthy cluster on the new image", cluster.healthy, scenarios.RECOVER_S)
    outage = changes.outage_of(writer, since)
    scenarios.assert_nothing_lost(writer)
    print(f"rolling image upgrade: {update.seconds:.0f}s, 8 containers one at a time per group, leader {leader} "
          f"last after one switchover, longest write pause {outage:.2f}s (switchover: {MEASURED.get('switchover')})")
    # The old leader is removed only once HAProxy marked it down, and an HAProxy node only once its peer holds
    # the virtual IP: neither leaves connections waiting on an address that no longer answers.
    # The node that held it hands it over when its turn comes, and the last one replaced holds it by then
    # (the address came to it, or never left it): one move, or two when the first node held it.
    handed = [n for n in HAPROXY if "handed the virtual IP" in handovers[f"{CLUSTER}-haproxy-{n}-handover"]]
    assert handed == [n for n in HAPROXY if n in {*holder, HAPROXY[-1]}], (holder, handovers)
    assert "HAProxy's checks have marked" in handovers[f"{CLUSTER}-{leader}-patroni-handover"], handovers
    changes.assert_no_longer_than_a_switchover("the rolling image upgrade", outage, MEASURED.get("switchover"),
                                               lambda: watch.explain(writer, since))


# ------------------------------------------------------------------------------------------ 9: certificates


def test_server_certificates_renewed_are_served_without_a_restart(healthy: None, cluster: ClusterUnderTest,
                                                                  deployments: changes.Deployments,
                                                                  writer: Writer) -> None:
    changes.server_certificates_renewed(deployments, cluster, writer)


def test_ca_rotation_keeps_clients_of_either_ca_verifying(healthy: None, stack: Stack, cluster: ClusterUnderTest,
                                                         deployments: changes.Deployments, writer: Writer) -> None:
    ids = container_ids(stack)
    changes.ca_rotation_with_overlap(deployments, cluster, writer)
    assert container_ids(stack) == ids, "a CA rotation recreates no container"


# ------------------------------------------------------------------------------------------ 10: rotation


def test_rotating_every_credential_keeps_writes_going_and_refuses_the_old_ones(
        healthy: None, stack: Stack, cluster: ClusterUnderTest, deployments: changes.Deployments,
        writer: Writer) -> None:
    """Last before destroy: the module's endpoints hold the old passwords, which are refused from now on."""
    ids = container_ids(stack)
    changes.rotate_every_credential(deployments, cluster, writer, rest_port=8008,
                                    stats_urls=stack.outputs["haproxy_stats_urls"])
    assert container_ids(stack) == ids, "a rotation recreates no container"


# ------------------------------------------------------------------------------------------ 11


def test_destroy_removes_what_was_declared_and_nothing_else(stack: Stack, sentinel: object) -> None:
    client = docker.from_env()
    declared = {r.id for r in stack.resources() if r.type.startswith(("docker:index/container", "docker:index/volume",
                                                                       "docker:index/network"))}
    assert len(stack.resources("docker:index/container:Container")) == 8
    stack.destroy()
    assert stack.snapshot == {}
    label = f"{RUN_LABEL}={stack.run_id}"
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
