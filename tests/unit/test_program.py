"""The program under Pulumi's mock runtime: graph, parents, ordering, target inputs, secrecy, outputs."""

from __future__ import annotations

import itertools
import re
import socket
from typing import Any

import pulumi
import pytest
import yaml

from catalog.roles import image_packages
from render.credentials import ETCD_MEMBER_CN
from render.paths import ETCD_ROOT_KEY, PATRONI_ETCD_KEY
from tests.support.mock_runtime import (
    SSH_KEY,
    Graph,
    Registration,
    converge_files,
    deps,
    is_secret,
    prod_ssh,
    reveal,
    run_program,
)

CONTAINER = "docker:index/container:Container"
COMMAND = "command:remote:Command"
LOCAL_COMMAND = "command:local:Command"
PASSWORD = "random:index/randomPassword:RandomPassword"
TLS_KEY = "tls:index/privateKey:PrivateKey"
COMPONENTS = {
    "pgha:index:PostgresCluster",
    "pgha:index:EtcdCluster",
    "pgha:index:PatroniNode",
    "pgha:index:HAProxyGroup",
    "pgha:index:BackupRepo",
    "pgha:index:ServiceManifest",
}


def hosts(prefix: str, count: int, net: str, start: int) -> list[dict[str, str]]:
    return [{"name": f"{prefix}-{i + 1}", "address": f"{net}.{start + i}"} for i in range(count)]


def scaled(stack: str) -> dict[str, Any]:
    net = "10.89.0" if stack == "dev" else "192.0.2"
    etcd: dict[str, Any] = {"members": hosts("etcd", 5, net, 41)}
    postgres: dict[str, Any] = {"nodes": hosts("pg", 5, net, 51)}
    if stack == "dev":
        return {"etcd": etcd, "postgres": postgres}
    added = [h["address"] for h in (*etcd["members"], *postgres["nodes"])]
    return {"etcd": etcd, "postgres": postgres, "ssh": prod_ssh(added)}


@pytest.fixture(scope="module")
def dev() -> Graph:
    return run_program("dev")


@pytest.fixture(scope="module")
def prod() -> Graph:
    return run_program("prod", secrets_config={"sshPrivateKey": SSH_KEY})


# ---------------------------------------------------------------- graph shape


@pytest.mark.parametrize(("stack", "variant", "etcd", "pg"), [
    ("dev", None, 3, 3), ("prod", None, 3, 3), ("dev", "scaled", 5, 5), ("prod", "scaled", 5, 5),
])
def test_resource_counts(stack: str, variant: str | None, etcd: int, pg: int) -> None:
    graph = run_program(stack, scaled(stack) if variant else None,
                        secrets_config={"sshPrivateKey": SSH_KEY} if stack == "prod" else None)
    count = {t: len(graph.of_type(t)) for t in {r.type for r in graph.resources}}
    assert count["pgha:index:PostgresCluster"] == 1
    assert count["pgha:index:EtcdCluster"] == 1
    assert count["pgha:index:PatroniNode"] == pg
    assert count["pgha:index:HAProxyGroup"] == 1
    assert count["pgha:index:BackupRepo"] == 1
    assert count[PASSWORD] == 10
    if stack == "dev":
        assert count[CONTAINER] == etcd + pg + 2
        assert count["docker:index/network:Network"] == 1
        assert count["docker:index/image:Image"] == 1
        assert count["docker:index/volume:Volume"] == etcd + pg + 1  # data volumes + the backup repository
        assert COMMAND not in count
    else:
        services = [r for r in graph.of_type(COMMAND) if r.name.endswith("-service")]
        installs = [r for r in graph.of_type(COMMAND) if r.name.endswith("-install")]
        assert len(services) == len(installs) == etcd + pg + 2
        assert not any(t.startswith("docker:") for t in count)


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_resource_is_parented_under_the_cluster(stack: str, dev: Graph, prod: Graph) -> None:
    graph = dev if stack == "dev" else prod
    root = graph.of_type("pgha:index:PostgresCluster")[0]
    for res in graph.resources:
        if res is root:
            continue
        cur = res
        while cur.parent != root.urn:
            cur = graph.by_urn(cur.parent)  # raises if the chain leaves the cluster
    components = {r.type for r in graph.resources if not r.custom}
    assert components == COMPONENTS


def test_component_children_are_named_after_their_parent(dev: Graph, prod: Graph) -> None:
    for graph in (dev, prod):
        components = {r.urn: r for r in graph.resources if r.type in COMPONENTS}
        for res in graph.resources:
            parent = components.get(res.parent)
            if parent is not None:
                assert res.name.startswith(parent.name + "-"), f"{res.name} under {parent.name}"


def depends(graph: Graph, res: Registration, on: Registration) -> bool:
    return on.urn in res.dependencies


def test_docker_ordering_etcd_then_patroni_then_haproxy(dev: Graph) -> None:
    containers = dev.of_type(CONTAINER)
    etcd = [c for c in containers if "-etcd-" in c.name]
    pg = [c for c in containers if re.search(r"-pg-\d-patroni$", c.name)]
    hap = [c for c in containers if "-haproxy-" in c.name]
    repo_volume = dev.named("pgha-dev-backup-repo")
    assert repo_volume.parent == dev.named("pgha-dev-backup").urn
    assert len(etcd) == 3 and len(pg) == 3 and len(hap) == 2
    healthy = dev.named("pgha-dev-etcd-healthy")
    service = {c.name: dev.named(f"{c.name}-service") for c in containers}
    for c in containers:
        assert depends(dev, service[c.name], c), "a container's files arrive by its converge step"
    assert all(depends(dev, healthy, service[e.name]) for e in etcd), "the health step waits for every member"
    access = dev.named("pgha-dev-etcd-access")
    assert depends(dev, access, healthy)
    for node in pg:
        assert depends(dev, node, access), f"{node.name} must wait for a healthy etcd with access control on"
        assert depends(dev, node, repo_volume), f"{node.name} must wait for the backup repository"
    # The access control goes on, if it is not yet (a cluster moving from plain HTTP), once every Patroni converged.
    access_on = dev.named("pgha-dev-etcd-access-on")
    assert all(depends(dev, access_on, service[p.name]) for p in pg)
    for h in hap:
        assert all(depends(dev, h, service[p.name]) for p in pg), h.name
    # Groups whose change restarts or moves traffic take it one member at a time.
    for group in (sorted(etcd, key=lambda c: c.name), sorted(hap, key=lambda c: c.name)):
        for before, after in itertools.pairwise(group):
            assert depends(dev, service[after.name], service[before.name]), after.name
    order = [r.name for r in dev.resources]
    assert max(order.index(e.name) for e in etcd) < min(order.index(p.name) for p in pg)
    assert max(order.index(p.name) for p in pg) < min(order.index(h.name) for h in hap)


def test_ssh_ordering(prod: Graph) -> None:
    cmds = {r.name: r for r in prod.of_type(COMMAND)}
    gate = cmds["pgha-prod-etcd-access"]
    for name, res in cmds.items():
        if re.fullmatch(r"pgha-prod-pg-\d-patroni-install", name):
            assert depends(prod, res, gate), name
        if name.startswith("pgha-prod-haproxy-") and name.endswith("-install"):
            for pg in ("pg-1", "pg-2", "pg-3"):
                assert depends(prod, res, cmds[f"pgha-prod-{pg}-patroni-service"]), name
        if name.endswith("-service"):
            assert depends(prod, res, cmds[name.removesuffix("-service") + "-install"]), name
    for pg in ("pg-1", "pg-2", "pg-3"):
        check = cmds[f"pgha-prod-backup-check-{pg}"]
        assert all(depends(prod, check, cmds[f"pgha-prod-{n}-patroni-service"]) for n in ("pg-1", "pg-2", "pg-3"))


# ---------------------------------------------------------------- docker target inputs


def uploads(res: Registration) -> dict[str, dict[str, Any]]:
    """Uploads by path, revealed, with a `secret` flag for those the engine would store encrypted."""
    # The SDK marks a whole list secret when one element holds a secret: the engine encrypts it all.
    whole = is_secret(res.inputs["uploads"])
    found = {}
    for raw in reveal(res.inputs["uploads"]) if whole else res.inputs["uploads"]:
        entry = reveal(raw)
        entry["secret"] = whole or is_secret(raw) or is_secret(raw.get("content"))
        found[entry["file"]] = entry
    return found


def test_docker_image_is_built_locally_from_the_repo(dev: Graph) -> None:
    image = dev.of_type("docker:index/image:Image")[0]
    assert image.inputs["skipPush"] is True
    # Relative to the project directory: another checkout declares the same inputs.
    assert image.inputs["build"]["context"] == "image"
    assert image.inputs["build"]["dockerfile"] == "image/Dockerfile"
    assert image.inputs["build"]["builderVersion"] == "BuilderV1"
    assert image.inputs["build"]["args"] == {"BASE_IMAGE": "debian:trixie-slim", "PACKAGES": " ".join(image_packages())}
    assert re.fullmatch(r"pgha-node:[0-9a-f]{12}", image.inputs["imageName"])
    for c in dev.of_type(CONTAINER):
        assert c.inputs["image"] == image.inputs["imageName"]


def test_docker_network_and_addresses(dev: Graph) -> None:
    net = dev.of_type("docker:index/network:Network")[0]
    # An explicit gateway: a daemon that reports one later must not make the network (and all) replace.
    assert net.inputs["ipamConfigs"] == [{"subnet": "10.89.0.0/24", "gateway": "10.89.0.1"}]
    addresses = {c.name: c.inputs["networksAdvanced"][0]["ipv4Address"] for c in dev.of_type(CONTAINER)}
    assert addresses["pgha-dev-pg-1-patroni"] == "10.89.0.21"
    assert addresses["pgha-dev-haproxy-haproxy-2"] == "10.89.0.32"
    assert len(set(addresses.values())) == len(addresses)


def test_docker_container_inputs(dev: Graph) -> None:
    pg = dev.named("pgha-dev-pg-1-patroni").inputs
    assert pg["restart"] == "unless-stopped"
    assert pg["command"] == ["/usr/local/bin/pgha-run"]
    assert pg["healthcheck"]["tests"][:2] == ["CMD", "curl"]
    assert pg["healthcheck"]["tests"][-1] == "https://127.0.0.1:8008/health"
    assert pg["wait"] is False, "the converge step waits for health, after it delivered the files"
    mounts = {v["containerPath"]: v["volumeName"] for v in pg["volumes"]}
    assert mounts == {
        "/var/lib/postgresql": "pgha-dev-pg-1-patroni-data",
        "/var/lib/pgbackrest": "pgha-dev-backup-repo",
    }
    # A container boots with the runner and its process list only: uploads are ForceNew, so a configuration
    # file uploaded would recreate the container on every change.
    files = uploads(dev.named("pgha-dev-pg-1-patroni"))
    assert set(files) == {"/usr/local/bin/pgha-run", "/etc/pgha/processes"}
    processes = files["/etc/pgha/processes"]["content"]
    assert processes.splitlines() == [
        "patroni\tpostgres\t/usr/bin/patroni /etc/patroni/patroni.yml",
        "cron\troot\t/usr/sbin/cron -f",
        "dcs-sync\tpostgres\t/usr/local/bin/pgha-dcs-sync",
    ]
    step = dev.named("pgha-dev-pg-1-patroni-service")
    assert step.inputs["create"] == "docker exec -i pgha-dev-pg-1 bash -s create"
    assert step.inputs["update"] == "docker exec -i pgha-dev-pg-1 bash -s update"
    assert is_secret(step.inputs["stdin"])
    written = converge_files(reveal(step.inputs["stdin"]))
    for path in ("/etc/patroni/patroni.yml", "/etc/pgbackrest/pgbackrest.conf", "/etc/cron.d/pgha-backup",
                 "/usr/local/bin/pgha-backup", "/usr/local/bin/pgha-post-bootstrap", "/etc/patroni/post-bootstrap.sql"):
        assert path in written, path
    assert "/usr/local/bin/pgha-run reload patroni HUP" in reveal(step.inputs["stdin"])
    assert not pg.get("envs"), "no configuration (and no secret) travels in the environment"

    etcd = dev.named("pgha-dev-etcd-etcd-1").inputs
    assert etcd["wait"] is False  # healthy only with a quorum of peers
    assert {v["containerPath"] for v in etcd["volumes"]} == {"/var/lib/etcd"}

    hap = dev.named("pgha-dev-haproxy-haproxy-1").inputs
    # HAProxy's health is its stats page (401 without credentials), never a probe of the SQL ports.
    assert hap["healthcheck"]["tests"] == ["CMD", "curl", "-s", "-o", "/dev/null", "http://10.89.0.31:7000/"]
    assert set(hap["capabilities"]["adds"]) == {"NET_ADMIN", "NET_BROADCAST", "NET_RAW"}
    assert {(p["internal"], p["external"], p["ip"]) for p in hap["ports"]} == {
        (5000, 5000, "127.0.0.1"), (5001, 5001, "127.0.0.1"), (7000, 7000, "127.0.0.1")}
    hap2 = dev.named("pgha-dev-haproxy-haproxy-2").inputs
    assert {p["external"] for p in hap2["ports"]} == {5100, 5101, 7100}
    assert "/etc/keepalived/keepalived.conf" in converge_files(
        reveal(dev.named("pgha-dev-haproxy-haproxy-1-service").inputs["stdin"]))


def test_docker_labels(dev: Graph) -> None:
    for c in dev.of_type(CONTAINER):
        labels = {item["label"]: item["value"] for item in c.inputs["labels"]}
        assert labels["pgha.cluster"] == "pgha-dev"
        assert labels["pgha.role"] in {"etcd", "postgres", "haproxy"}


# ---------------------------------------------------------------- ssh target inputs


def test_ssh_commands(prod: Graph) -> None:
    for cmd in prod.of_type(COMMAND):
        assert is_secret(cmd.inputs["connection"]), f"{cmd.name}: the connection holds the key: secret"
        conn = reveal(cmd.inputs["connection"])
        assert conn["user"] == "root" and conn["port"] == 22 and conn["privateKey"] == SSH_KEY
        pinned = " ".join(prod_ssh()["host_keys"][conn["host"]].split()[:2])
        assert conn["hostKey"] == pinned, f"{cmd.name}: the host's key is checked before anything is sent"
        expected = "bash -s create" if cmd.name.endswith("-service") else "bash -s"
        assert cmd.inputs["create"] == expected, f"{cmd.name}: scripts travel on stdin, never on the command line"
        assert cmd.inputs["addPreviousOutputInEnv"] is False, f"{cmd.name}: sshd refuses environment variables"
        if cmd.name.endswith("-service"):
            assert cmd.inputs["update"] == "bash -s update"
    install = prod.named("pgha-prod-pg-1-patroni-install").inputs
    assert "postgresql-17" in install["stdin"] and "create_main_cluster = false" in install["stdin"]
    assert "systemctl mask" in install["stdin"]
    # postgres takes the ids of the hosts sharing the backup repository before a package would make its own.
    assert install["stdin"].index("useradd --system --uid") < install["stdin"].index("apt-get update")
    assert "useradd" not in prod.named("pgha-prod-etcd-etcd-1-install").inputs["stdin"], "etcd shares no directory"
    service = prod.named("pgha-prod-pg-1-patroni-service").inputs
    assert is_secret(service["stdin"])
    files = converge_files(reveal(service["stdin"]))
    assert {"/etc/patroni/patroni.yml", "/etc/pgbackrest/pgbackrest.conf", "/etc/cron.d/pgha-backup",
            "/etc/systemd/system/pgha-patroni.service"} <= set(files)
    unit = files["/etc/systemd/system/pgha-patroni.service"]
    assert "User=postgres" in unit and "KillMode=process" in unit
    assert "ExecStart=/usr/bin/patroni /etc/patroni/patroni.yml" in unit
    delete = service["delete"]
    assert "systemctl disable --now pgha-patroni" in delete and "rm -rf" not in delete  # data kept by default
    # Paused first, so no replica is promoted while the members stop one after another; PostgreSQL, which a
    # paused Patroni leaves running, stopped last: each data directory keeps its role for an adoption.
    pause, stop, pg_stop = (delete.index(t) for t in ("pause --wait", "systemctl disable --now pgha-patroni",
                                                      "-m fast -w -t 60 stop"))
    assert pause < stop < pg_stop
    patroni = yaml.safe_load(files["/etc/patroni/patroni.yml"])
    assert patroni["name"] == "pg-1" and patroni["scope"] == "pgha-prod"


def test_ssh_purge_on_destroy_is_opt_in() -> None:
    graph = run_program("prod", {"ssh": prod_ssh(purge_data_on_destroy=True)},
                        secrets_config={"sshPrivateKey": SSH_KEY})
    delete = graph.named("pgha-prod-pg-1-patroni-service").inputs["delete"]
    assert "rm -rf --one-file-system /var/lib/postgresql" in delete


def test_ssh_non_root_user_uses_sudo() -> None:
    graph = run_program("prod", {"ssh": prod_ssh(user="deploy")}, secrets_config={"sshPrivateKey": SSH_KEY})
    for c in graph.of_type(COMMAND):
        # The firewall step checks the connection it came through: sudo keeps $SSH_CONNECTION for it.
        sudo = "sudo -n --preserve-env=SSH_CONNECTION bash -s" if "-firewall" in c.name else "sudo -n bash -s"
        assert c.inputs["create"].startswith(sudo), c.name


def test_ssh_firewall_step_per_service_before_it_listens(prod: Graph) -> None:
    services = [c.name.removesuffix("-service") for c in prod.of_type(COMMAND) if c.name.endswith("-service")]
    assert len(services) == 8
    for name in services:
        step = prod.named(f"{name}-firewall").inputs
        assert step["create"] == "bash -s" and "update" not in step and "triggers" not in step
        # After the packages (nftables among them), before anything of the service starts.
        assert deps(prod, f"{name}-firewall") == [f"{name}-install"]
        assert f"{name}-firewall" in deps(prod, f"{name}-service")
        assert "nftables" in prod.named(f"{name}-install").inputs["stdin"].split("apt-get update")[0]
        script = step["stdin"]
        files = converge_files(script)
        assert set(files) == {"/etc/pgha/firewall.nft", "/etc/systemd/system/pgha-firewall.service"}
        address = reveal(prod.named(f"{name}-service").inputs["connection"])["host"]
        assert f"Host {address}:" in files["/etc/pgha/firewall.nft"]
        # The lockout check comes before anything is loaded; the ruleset is checked before it is loaded.
        order = [script.index(t) for t in ("SSH_CONNECTION", "nft -c -f", "nft -f /etc/pgha/firewall.nft")]
        assert order == sorted(order)
        assert script.rstrip().endswith(f"touch /etc/pgha/firewall.d/{name}")
        delete = step["delete"]
        assert f"rm -f /etc/pgha/firewall.d/{name}" in delete and "nft delete table inet pgha" in delete
        assert delete.index("ls -A /etc/pgha/firewall.d") < delete.index("nft delete table inet pgha")
        assert "flush ruleset" not in script + delete and "/etc/nftables.conf" not in script + delete
        # A host that has the table only gains rules before the services change (nothing closes mid-deployment) ...
        assert script.index("if ! nft list table inet pgha") < script.index("add rule inet pgha input ")
        assert "delete table" not in script.split("elif")[1]
        # ... and takes the ruleset whole once every other step has run.
        exact = prod.named(f"{name}-firewall-exact").inputs
        assert exact["create"] == "bash -s" and "delete" not in exact
        assert converge_files(exact["stdin"])["/etc/pgha/firewall.nft"] == files["/etc/pgha/firewall.nft"]
        assert exact["stdin"].index("SSH_CONNECTION") < exact["stdin"].index("nft -f /etc/pgha/firewall.nft")
        assert set(deps(prod, f"{name}-firewall-exact")) == {
            "pgha-prod-haproxy-haproxy-2-service", "pgha-prod-pending-restarts", "pgha-prod-etcd-membership",
            "pgha-prod-etcd-access-on",
            "pgha-prod-postgres-membership", *(f"pgha-prod-backup-check-pg-{i}" for i in (1, 2, 3))}


def test_ssh_firewall_without_admin_from_warns_that_the_program_cannot_read_patroni(
        monkeypatch: pytest.MonkeyPatch) -> None:
    warned: list[str] = []
    monkeypatch.setattr(pulumi.log, "warn", lambda message, *args, **kwargs: warned.append(message))
    run_program("prod", secrets_config={"sshPrivateKey": SSH_KEY})
    assert warned == []  # the stack file lists the deploying machine
    run_program("prod", {"firewall": {"ssh_from": ["203.0.113.0/24"]}}, secrets_config={"sshPrivateKey": SSH_KEY})
    assert [w for w in warned if w.startswith("pgha:firewall.admin_from is empty")] == [
        "pgha:firewall.admin_from is empty: the hosts' firewalls drop this machine's requests to Patroni's REST API, "
        "so a rolling change keeps the configured order (the leader may not be last) and removing PostgreSQL nodes "
        "is refused; list the address this machine connects from"]


def test_ssh_firewall_disabled_declares_no_step_and_installs_no_nftables() -> None:
    graph = run_program("prod", {"firewall": {"enabled": False}}, secrets_config={"sshPrivateKey": SSH_KEY})
    names = [c.name for c in graph.of_type(COMMAND)]
    assert not [n for n in names if "-firewall" in n]
    assert not any("nftables" in graph.named(n).inputs["stdin"] for n in names if n.endswith("-install"))


# ---------------------------------------------------------------- secrecy


def test_every_generated_password_is_secret(dev: Graph) -> None:
    passwords = dev.of_type(PASSWORD)
    assert {p.name.removeprefix("pgha-dev-").removesuffix("-password") for p in passwords} == {
        "superuser", "replication", "rewind", "app", "readonly", "restapi", "keepalived", "stats", "cipher", "etcd"}
    for p in passwords:
        assert p.inputs["special"] is False  # safe in DSNs, YAML and pgpass


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_credential_bearing_values_are_secret(stack: str, dev: Graph, prod: Graph) -> None:
    graph = dev if stack == "dev" else prod
    plain_texts: list[str] = []
    for res in graph.resources:
        if res.type == CONTAINER:
            for path, up in uploads(res).items():
                if path in {"/etc/patroni/patroni.yml", "/etc/patroni/post-bootstrap.sql",
                            "/etc/pgbackrest/pgbackrest.conf", "/etc/haproxy/haproxy.cfg",
                            "/etc/keepalived/keepalived.conf", "/etc/patroni/tls/server.key"}:
                    assert up["secret"], f"{res.name}: {path} must be secret"
                elif "content" in up:
                    plain_texts.append(up["content"])
            plain_texts.extend(res.inputs.get("envs") or [])
            plain_texts.extend(res.inputs.get("command") or [])
        if res.type in (COMMAND, LOCAL_COMMAND):
            if res.name.endswith("-service") and "-etcd-" not in res.name:
                assert is_secret(res.inputs["stdin"]), res.name
            plain_texts += [res.inputs.get("create", ""), res.inputs.get("delete", "")]
            if not is_secret(res.inputs.get("stdin")):
                plain_texts.append(res.inputs.get("stdin", ""))
    assert {"app_dsn", "readonly_dsn"} <= graph.secret_outputs
    passwords = [reveal(p.outputs["result"]) for p in graph.of_type(PASSWORD)]
    assert len(passwords) == 10 and all(len(p) >= 8 for p in passwords)
    assert reveal(graph.outputs["app_dsn"]).split(":")[2].split("@")[0] in passwords
    keys = [reveal(k.outputs["privateKeyPem"]) for k in graph.of_type(TLS_KEY)]
    assert keys and all(is_secret(k.outputs["privateKeyPem"]) for k in graph.of_type(TLS_KEY))
    for text in plain_texts:
        for password in passwords:
            assert password not in str(text), "a generated password in a plain (non-secret) input"
        for key in keys:
            assert key not in str(text), "a private key in a plain (non-secret) input"


def test_secret_config_key_is_not_a_model_key() -> None:
    graph = run_program("prod", secrets_config={"sshPrivateKey": SSH_KEY})
    assert graph.of_type(COMMAND)


def test_ssh_target_without_key_fails_before_anything_is_declared() -> None:
    declared: list[object] = []
    with pytest.raises(pulumi.RunError, match="pgha:sshPrivateKey: missing; set it with"):
        declared = run_program("prod").resources
    assert declared == []


def test_a_stale_ssh_agent_socket_is_refused_before_anything_is_declared(tmp_path: Any,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSH_AUTH_SOCK", str(tmp_path / "gone.sock"))
    with pytest.raises(pulumi.RunError, match=r"SSH_AUTH_SOCK: .*gone\.sock is not an SSH agent socket; "
                                              "pulumi-command would fail every remote command"):
        run_program("prod", secrets_config={"sshPrivateKey": SSH_KEY})
    monkeypatch.delenv("SSH_AUTH_SOCK")
    agent = tmp_path / "agent.sock"
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(agent))
        graph = run_program("prod", {"ssh": prod_ssh(agent_socket_path=str(agent))},
                            secrets_config={"sshPrivateKey": SSH_KEY})
    conn = reveal(graph.named("pgha-prod-pg-1-patroni-install").inputs["connection"])
    assert conn["agentSocketPath"] == str(agent), "the agent the commands use is explicit"


# ---------------------------------------------------------------- TLS


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_postgres_node_gets_a_ca_signed_certificate_for_each_address_clients_dial(
        stack: str, dev: Graph, prod: Graph) -> None:
    graph, name = (dev, "pgha-dev") if stack == "dev" else (prod, "pgha-prod")
    net, vip = ("10.89.0", "10.89.0.30") if stack == "dev" else ("192.0.2", "192.0.2.30")
    ca_key, ca = graph.named(f"{name}-ca-key"), graph.named(f"{name}-ca-cert")
    assert ca.inputs["isCaCertificate"] is True and set(ca.inputs["allowedUses"]) == {"cert_signing", "crl_signing"}
    assert ca.parent.endswith(f"PostgresCluster::{name}")
    published = {"127.0.0.1"}  # dev publishes on 127.0.0.1; prod dials the VIP
    for i in (1, 2, 3):
        node = f"{name}-pg-{i}"
        key = graph.named(f"{node}-tls-key")
        assert (key.inputs["algorithm"], key.inputs["ecdsaCurve"]) == ("ECDSA", "P256")
        request = graph.named(f"{node}-tls-request")
        assert request.inputs["subject"]["commonName"] == f"pg-{i}"
        assert set(request.inputs["ipAddresses"]) == {f"{net}.2{i}", f"{net}.31", f"{net}.32", vip} | published
        assert depends(graph, request, key)
        cert = graph.named(f"{node}-tls-cert")
        assert "server_auth" in cert.inputs["allowedUses"] and not cert.inputs.get("isCaCertificate")
        assert depends(graph, cert, request) and depends(graph, cert, ca) and depends(graph, cert, ca_key)
        assert all(r.parent.endswith(f"PatroniNode::{node}") for r in (key, request, cert))
    assert graph.outputs["ca_certificate"] == reveal(ca.outputs["certPem"])
    assert "ca_certificate" not in graph.secret_outputs  # public: applications need it to verify


def test_tls_files_reach_every_postgres_node(dev: Graph, prod: Graph) -> None:
    for c in dev.of_type(CONTAINER):
        if "-pg-" not in c.name:
            continue
        step = dev.named(f"{c.name}-service")
        assert is_secret(step.inputs["stdin"])
        written = converge_files(reveal(step.inputs["stdin"]))
        assert written["/etc/patroni/tls/server.crt"].startswith("-----BEGIN CERTIFICATE-----")
        assert written["/etc/patroni/tls/ca.crt"] == reveal(dev.outputs["ca_certificate"])
    files = converge_files(reveal(prod.named("pgha-prod-pg-2-patroni-service").inputs["stdin"]))
    key = reveal(prod.named("pgha-prod-pg-2-tls-key").outputs["privateKeyPem"])
    assert files["/etc/patroni/tls/server.key"] == key
    assert files["/etc/patroni/tls/ca.crt"] == reveal(prod.outputs["ca_certificate"])


# ---------------------------------------------------------------- outputs


def test_dev_outputs(dev: Graph) -> None:
    out = dev.outputs
    assert out["cluster_name"] == "pgha-dev"
    assert out["read_write_endpoint"] == {"host": "10.89.0.30", "port": 5000}
    assert out["read_only_endpoint"] == {"host": "10.89.0.30", "port": 5001}
    assert out["published_endpoints"]["read_write"] == {"host": "127.0.0.1", "ports": [5000, 5100]}
    assert out["etcd_endpoints"] == [f"https://10.89.0.1{i}:2379" for i in (1, 2, 3)]
    assert out["patroni_rest_urls"] == [f"https://10.89.0.2{i}:8008" for i in (1, 2, 3)]
    assert out["haproxy_stats_urls"] == ["http://10.89.0.31:7000/", "http://10.89.0.32:7000/"]
    assert re.fullmatch(r"postgresql://app:[A-Za-z0-9]{32}@10\.89\.0\.30:5000/app\?sslmode=verify-full",
                        reveal(out["app_dsn"]))
    assert re.fullmatch(r"postgresql://app_ro:[A-Za-z0-9]{32}@10\.89\.0\.30:5001/app\?sslmode=verify-full",
                        reveal(out["readonly_dsn"]))
    assert dev.secret_outputs == {"app_dsn", "readonly_dsn"}


def test_prod_outputs(prod: Graph) -> None:
    out = prod.outputs
    assert out["read_write_endpoint"] == {"host": "192.0.2.30", "port": 5000}
    assert out["published_endpoints"] == {}
    assert out["backup_stanza"] == "pgha-prod"


# ---------------------------------------------------------------- preview and failure


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_preview_with_unknown_values_does_not_crash(stack: str) -> None:
    graph = run_program(stack, preview=True,
                        secrets_config={"sshPrivateKey": SSH_KEY} if stack == "prod" else None)
    assert len([r for r in graph.resources if r.type in (CONTAINER, COMMAND)]) >= 8


def test_invalid_config_declares_nothing() -> None:
    graph_holder: list[Graph] = []
    with pytest.raises(pulumi.RunError, match=r"pgha:etcd.members: 2 given"):
        graph_holder.append(run_program("dev", {"etcd": {"members": hosts("etcd", 2, "10.89.0", 11)}}))
    assert not graph_holder


@pytest.mark.parametrize(("adopt", "expected"), [(False, "a new deployment does not adopt it"),
                                                 (True, "adopting it (pgha:adopt_existing_data)")])
def test_only_a_new_deployment_checks_for_data_left_in_the_data_directories(adopt: bool, expected: str) -> None:
    graph = run_program("prod", {"adopt_existing_data": adopt}, secrets_config={"sshPrivateKey": SSH_KEY})
    pg = reveal(graph.named("pgha-prod-pg-1-patroni-service").inputs["stdin"])
    etcd = reveal(graph.named("pgha-prod-etcd-etcd-1-service").inputs["stdin"])
    assert 'if [ "$mode" = create ] && [ -e /var/lib/postgresql/17/main/PG_VERSION ]; then' in pg
    assert 'if [ "$mode" = create ] && [ -e /var/lib/etcd/pgha-prod/member ]; then' in etcd
    assert expected in pg and expected in etcd
    assert ("exit 1" in pg.split("changed=0")[0]) is not adopt
    dev = run_program("dev", {"adopt_existing_data": adopt})
    guard = dev.named("pgha-dev-pg-1-patroni-data-unclaimed").inputs
    assert guard["update"] == ":" and ("adopting the existing volume" in guard["create"]) is adopt
    volume = dev.named("pgha-dev-pg-1-patroni-data")
    assert dev.named("pgha-dev-pg-1-patroni-data-unclaimed").urn in volume.dependencies


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_adopting_data_sets_passwords_first_and_starts_standbys_after_a_leader(stack: str) -> None:
    """pgha:adopt_existing_data: each PostgreSQL converge runs the adoption (a secret: it holds the verifiers)
    on held data before it starts anything, and one step per node, after every node's converge, starts a
    standby whose start was deferred; the backup checks come after those. Without the setting neither is there."""
    secrets = {"sshPrivateKey": SSH_KEY} if stack == "prod" else None
    for adopt in (True, False):
        graph = run_program(stack, {"adopt_existing_data": adopt}, secrets_config=secrets)
        services = [graph.named(f"pgha-{stack}-pg-{i}-patroni-service") for i in (1, 2, 3)]
        script = reveal(services[0].inputs["stdin"])
        assert is_secret(services[0].inputs["stdin"])
        assert ("pgha-adopt: pg-1" in script) is adopt
        steps = [r for r in graph.resources if r.name.endswith("-adopted")]
        if not adopt:
            assert not steps and "start-deferred" not in script
            continue
        hook = script.index('if [ "$mode" = create ] && [ "$held" = 1 ]; then\nlog() { echo "pgha-adopt')
        assert script.index("then held=1; fi") < hook < script.index('if [ "$defer" = 1 ]; then'), "before any start"
        assert sorted(r.name for r in steps) == [f"pgha-{stack}-pg-{i}-adopted" for i in (1, 2, 3)]
        for step in steps:
            assert all(depends(graph, step, service) for service in services), step.name
            assert "/run/pgha/start-deferred" in step.inputs["stdin"]
        for i in (1, 2, 3):
            check = graph.named(f"pgha-{stack}-backup-check-pg-{i}")
            assert all(depends(graph, check, step) for step in steps)


def test_a_member_that_waits_only_when_rejoining_asks_before_it_starts(dev: Graph, prod: Graph) -> None:
    """etcd waits for its health after a restart, or when its data existed before this converge (a replaced
    container rejoining); the check comes before the start, which writes the data directory at once."""
    for graph, name in ((dev, "pgha-dev-etcd-etcd-1-service"), (prod, "pgha-prod-etcd-etcd-1-service")):
        script = reveal(graph.named(name).inputs["stdin"]) if is_secret(graph.named(name).inputs["stdin"]) \
            else graph.named(name).inputs["stdin"]
        assert script.index("then held=1; fi") < script.index("base64 -d"), "asked before anything is written"
        assert ('if [ "$restarted" = 1 ] || { [ "$mode" = create ] && [ "$held" = 1 ]; } || [ "$joining" = 1 ]; then'
                in script)
        # A member joining a running cluster (another member serves a quorum read) waits too: asked once the
        # files are written (the probe presents the member's root certificate), before this member (re)starts,
        # which would count in that answer.
        assert script.rindex(ETCD_ROOT_KEY) < script.index("then joining=1; fi") < script.index("etcd: restarted")
        assert "get --consistency=l" in script[:script.index("then joining=1; fi")]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_etcd_certificates_name_no_user_but_root_and_patronis_has_no_name(stack: str, dev: Graph,
                                                                           prod: Graph) -> None:
    graph, name = (dev, "pgha-dev") if stack == "dev" else (prod, "pgha-prod")
    for i in (1, 2, 3):
        member = f"{name}-etcd-etcd-{i}"
        served = graph.named(f"{member}-etcd-tls-request").inputs
        assert served["subject"]["commonName"] == ETCD_MEMBER_CN
        assert set(graph.named(f"{member}-etcd-tls-cert").inputs["allowedUses"]) >= {"server_auth", "client_auth"}
        assert "127.0.0.1" in served["ipAddresses"]
        assert graph.named(f"{member}-etcd-root-request").inputs["subject"]["commonName"] == "root"
        assert graph.named(f"{member}-etcd-root-cert").inputs["allowedUses"] == ["digital_signature", "client_auth"]
        patroni = graph.named(f"{name}-pg-{i}-etcd-client-request").inputs["subject"]
        assert "commonName" not in patroni and patroni["organizationalUnit"] == "patroni etcd client"
        files = converge_files(reveal(graph.named(f"{name}-pg-{i}-patroni-service").inputs["stdin"])) \
            if stack == "prod" else None
        if files is not None:
            assert files[PATRONI_ETCD_KEY] == reveal(graph.named(f"{name}-pg-{i}-etcd-client-key").outputs[
                "privateKeyPem"])


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_etcd_access_control_is_on_before_any_patroni_starts(stack: str, dev: Graph, prod: Graph) -> None:
    graph, name = (dev, "pgha-dev") if stack == "dev" else (prod, "pgha-prod")
    step = graph.named(f"{name}-etcd-access")
    assert is_secret(step.inputs["stdin"]) and "ctl auth enable" in reveal(step.inputs["stdin"])
    assert depends(graph, step, graph.named(f"{name}-etcd-healthy"))
    for i in (1, 2, 3):
        start = graph.named(f"{name}-pg-{i}-patroni" if stack == "dev" else f"{name}-pg-{i}-patroni-install")
        assert depends(graph, start, step), start.name
